"""The transition tables of subscriptions and invoices: every allowed move passes, every other
one raises, and the final states allow none."""

from __future__ import annotations

import itertools

import pytest

from portal.money.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from portal.money.billing.states import (
    INVOICE_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    ForbiddenMove,
    move_invoice,
    move_subscription,
)

S, I = SubscriptionStatus, InvoiceStatus  # noqa: E741 - the invoice states, beside S


@pytest.mark.parametrize(("start", "to"), list(itertools.product(S, S)))
def test_subscription_moves(start, to):
    subscription = Subscription(status=start)
    if to in SUBSCRIPTION_TRANSITIONS[start]:
        move_subscription(subscription, to)
        assert subscription.status == to
    else:
        with pytest.raises(ForbiddenMove, match="cannot become"):
            move_subscription(subscription, to)
        assert subscription.status == start


@pytest.mark.parametrize(("start", "to"), list(itertools.product(I, I)))
def test_invoice_moves(start, to):
    invoice = Invoice(status=start)
    if to in INVOICE_TRANSITIONS[start]:
        move_invoice(invoice, to)
        assert invoice.status == to
    else:
        with pytest.raises(ForbiddenMove):
            move_invoice(invoice, to)
        assert invoice.status == start


def test_the_tables_say_what_the_rules_say():
    assert SUBSCRIPTION_TRANSITIONS[S.CANCELED] == frozenset()
    assert INVOICE_TRANSITIONS[I.PAID] == frozenset() and INVOICE_TRANSITIONS[I.VOID] == frozenset()
    assert S.ACTIVE in SUBSCRIPTION_TRANSITIONS[S.PAST_DUE]  # paying restores
    assert I.PAID in INVOICE_TRANSITIONS[I.UNCOLLECTIBLE]  # paying late is still possible
    assert S.PAST_DUE not in SUBSCRIPTION_TRANSITIONS[S.TRIALING]
