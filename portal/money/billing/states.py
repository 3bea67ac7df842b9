"""The allowed moves of subscriptions and invoices, in one place: a forbidden move raises."""

from __future__ import annotations

from portal.errors import Conflict
from portal.money.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus

S = SubscriptionStatus
I = InvoiceStatus  # noqa: E741 - the invoice states, beside S

SUBSCRIPTION_TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    S.TRIALING: frozenset({S.ACTIVE, S.CANCELED}),
    S.ACTIVE: frozenset({S.PAST_DUE, S.CANCELED}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.CANCELED}),
    S.CANCELED: frozenset(),
}

INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    I.DRAFT: frozenset({I.OPEN, I.VOID}),
    I.OPEN: frozenset({I.PAID, I.VOID, I.UNCOLLECTIBLE}),
    I.UNCOLLECTIBLE: frozenset({I.PAID, I.VOID}),
    I.PAID: frozenset(),
    I.VOID: frozenset(),
}


class ForbiddenMove(Conflict):
    """A state change the rules do not allow (a bug in the caller, or a stale page)."""


def move_subscription(subscription: Subscription, to: SubscriptionStatus) -> None:
    if to not in SUBSCRIPTION_TRANSITIONS[subscription.status]:
        raise ForbiddenMove(f"A subscription that is {subscription.status.label.lower()} cannot become "
                            f"{to.label.lower()}.")
    subscription.status = to


def move_invoice(invoice: Invoice, to: InvoiceStatus) -> None:
    if to not in INVOICE_TRANSITIONS[invoice.status]:
        raise ForbiddenMove(f"An invoice that is {invoice.status.value} cannot become {to.value}.")
    invoice.status = to
