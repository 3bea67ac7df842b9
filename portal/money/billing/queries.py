"""Reads for the student's "Plan & billing" pages: the plans to compare, their subscription and
what the next invoice will be, their invoices (newest first, paginated) and one invoice with its
lines. Each is a fixed number of statements, whatever the data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from portal.accounts.models import Role, User
from portal.db import db
from portal.errors import NotFound
from portal.money.billing import entitlements
from portal.money.billing.models import (
    DunningAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Plan,
    PlanStatus,
    Subscription,
    SubscriptionStatus,
)
from portal.money.payments import services as payments
from portal.money.payments.models import Payment, PaymentMethod
from portal.money.payments.pages import safe_external
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.states import OPEN_PAYMENT_STATES

#: Invoices per page.
PAGE_SIZE = 20


def offered_plans() -> list[Plan]:
    """Plans anyone may subscribe to now, in their order, cheapest first among equals."""
    return list(db.session.scalars(select(Plan).where(Plan.status == PlanStatus.ACTIVE)
                                   .order_by(Plan.position, Plan.price, Plan.name)))


@dataclass(frozen=True)
class Current:
    """The student's subscription as a page shows it."""

    subscription: Subscription
    plan: Plan
    #: The plan the subscription moves to at the period end (a downgrade), if any.
    scheduled_plan: Plan | None
    #: The unpaid invoice of a past-due subscription (the page's "pay now" banner).
    unpaid: Invoice | None

    @property
    def next_invoice_at(self) -> datetime | None:
        """When the next invoice comes (None: none will: free, or canceling)."""
        if self.subscription.cancel_at_period_end:
            return None
        plan = self.scheduled_plan or self.plan
        return None if plan.is_free else self.subscription.current_period_end

    @property
    def next_invoice_total(self) -> Decimal | None:
        if self.next_invoice_at is None:
            return None
        return (self.scheduled_plan or self.plan).price

    @property
    def features(self) -> dict:
        return entitlements.of_user(self.subscription.user_id)


def current(user: User) -> Current | None:
    """The student's live subscription with its plans and any unpaid invoice (three statements
    at most), or None."""
    subscription = db.session.scalar(select(Subscription).where(Subscription.user_id == user.id,
                                                               Subscription.status != SubscriptionStatus.CANCELED))
    if subscription is None:
        return None
    ids = [subscription.plan_id] + ([subscription.scheduled_plan_id] if subscription.scheduled_plan_id else [])
    by_id = {p.id: p for p in db.session.scalars(select(Plan).where(Plan.id.in_(ids)))}
    unpaid = None
    if subscription.status == SubscriptionStatus.PAST_DUE:
        unpaid = db.session.scalar(select(Invoice).where(Invoice.subscription_id == subscription.id,
                                                         Invoice.status == InvoiceStatus.OPEN)
                                   .order_by(Invoice.period_start).limit(1))
    return Current(subscription, by_id[subscription.plan_id],
                   by_id.get(subscription.scheduled_plan_id) if subscription.scheduled_plan_id else None, unpaid)


def invoices(user: User, page: int = 1) -> tuple[list[Invoice], bool]:
    """The student's invoices, newest first: (this page, whether there is another)."""
    page = max(1, page)
    rows = list(db.session.scalars(select(Invoice).where(Invoice.user_id == user.id)
                                   .order_by(Invoice.created_at.desc(), Invoice.id.desc())
                                   .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    lines: list[InvoiceLine]
    attempts: list[DunningAttempt]
    customer: User
    #: The latest payment of the invoice through the payment gateway (pending, paid or failed).
    card_payment: Payment | None = None
    #: The owner's saved payment methods, to pay an unpaid invoice with (the owner's view only).
    methods: tuple[PaymentMethod, ...] = ()

    @property
    def payment_pending(self) -> bool:
        return self.card_payment is not None and self.card_payment.state in OPEN_PAYMENT_STATES

    @property
    def continue_url(self) -> str | None:
        """Where the payer confirms a pending card payment with their bank (a challenge), if
        the provider asks and its address may be followed."""
        if not self.payment_pending or self.card_payment.state != PaymentState.REQUIRES_ACTION:
            return None
        return safe_external(self.card_payment.next_action_url)


def invoice(viewer: User, invoice_id: uuid.UUID | str) -> InvoiceView:
    """One invoice with its lines and charge attempts, for its owner or staff (admins and
    compliance); NotFound for anyone else and for a malformed id."""
    try:
        wanted = invoice_id if isinstance(invoice_id, uuid.UUID) else uuid.UUID(str(invoice_id))
    except ValueError:
        raise NotFound("There is no such invoice.") from None
    query = select(Invoice).where(Invoice.id == wanted)
    if viewer.role not in (Role.ADMIN, Role.COMPLIANCE):
        query = query.where(Invoice.user_id == viewer.id)
    found = db.session.scalar(query)
    if found is None:
        raise NotFound("There is no such invoice.")
    lines = list(db.session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == found.id)
                                    .order_by(InvoiceLine.position)))
    attempts = list(db.session.scalars(select(DunningAttempt).where(DunningAttempt.invoice_id == found.id)
                                       .order_by(DunningAttempt.attempt)))
    customer = viewer if viewer.id == found.user_id else db.session.get(User, found.user_id)
    card_payment = db.session.scalar(select(Payment).where(Payment.invoice_id == found.id)
                                     .order_by(Payment.created_at.desc(), Payment.id.desc()).limit(1))
    unpaid = found.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    methods = tuple(saved_methods(viewer)) if unpaid and viewer.id == found.user_id else ()
    return InvoiceView(found, lines, attempts, customer, card_payment, methods)


def saved_methods(user: User) -> list[PaymentMethod]:
    """The student's saved payment methods (the gateway's), default first: what an invoice or a
    subscription can be paid with besides the wallet."""
    return payments.list_methods(user)


def past_due_invoice(user: User) -> Invoice | None:
    """The oldest unpaid invoice of the student's past-due subscription, for the "payment
    failed" banner of the wallet and the dashboard (one statement; None when all is paid)."""
    return db.session.scalar(
        select(Invoice).join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(Subscription.user_id == user.id, Subscription.status == SubscriptionStatus.PAST_DUE,
               Invoice.status == InvoiceStatus.OPEN)
        .order_by(Invoice.period_start).limit(1))
