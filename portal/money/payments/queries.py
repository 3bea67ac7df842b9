"""Reads for the payer's pages: their payments (keyset pages), one payment with its timeline
and refunds, their saved methods, the checkout's facts, and what the reconciliation job asks
about. Each function is one or two statements whatever the data size; row-level security keeps
a student to their own rows (the ``own_rows`` policies of migration 0011)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import select, tuple_

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.money.payments import states as st
from portal.money.payments.models import (
    Payment,
    PaymentEvent,
    PaymentMethod,
    PayWith,
    Purpose,
    Refund,
    RefundState,
)
from portal.money.payments.providers.base import PaymentState
from portal.pagination import Page, decode_cursor, encode_cursor
from portal.security.permissions import Permission, has_permission

PAGE_SIZE = 20


@dataclass(frozen=True)
class PaymentRow:
    id: uuid.UUID
    created_at: datetime
    purpose: Purpose
    course_title: str | None
    amount: Decimal
    currency: str
    state: PaymentState
    method_kind: PayWith
    method_label: str
    amount_refunded: Decimal
    failure_message: str | None
    next_action_url: str | None

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def open(self) -> bool:
        """Still moving: the page polls it for a live state."""
        return self.state in st.OPEN_PAYMENT_STATES


STATE_LABELS = {
    PaymentState.REQUIRES_PAYMENT_METHOD: "Waiting for payment",
    PaymentState.REQUIRES_ACTION: "Needs your action",
    PaymentState.PROCESSING: "Processing",
    PaymentState.SUCCEEDED: "Succeeded",
    PaymentState.CANCELED: "Canceled",
    PaymentState.FAILED: "Failed",
}


def _method_label(kind: PayWith, brand: str, last4: str) -> str:
    if last4:
        return f"{(brand or kind.label).capitalize()} ending {last4}"
    return kind.label


def _payment_columns():
    from portal.learning.education.models import Course

    return (select(Payment.id, Payment.created_at, Payment.purpose, Course.title.label("course_title"),
                   Payment.amount, Payment.currency, Payment.state, Payment.method_kind, Payment.method_brand,
                   Payment.method_last4, Payment.amount_refunded, Payment.failure_message, Payment.next_action_url)
            .outerjoin(Course, Course.id == Payment.course_id))


def _row(raw) -> PaymentRow:
    return PaymentRow(raw.id, raw.created_at, raw.purpose, raw.course_title, raw.amount, raw.currency, raw.state,
                      raw.method_kind, _method_label(raw.method_kind, raw.method_brand, raw.method_last4),
                      raw.amount_refunded, raw.failure_message, raw.next_action_url)


def my_payments(user: User, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The payer's payments, newest first, ``size`` per page after ``cursor`` (one statement)."""
    stmt = _payment_columns().where(Payment.user_id == user.id)
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(size + 1)).all()
    items = [_row(r) for r in rows[:size]]
    return Page(items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None)


@dataclass
class PaymentDetail:
    payment: Payment
    course_title: str | None
    timeline: list[PaymentEvent] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.payment.state]

    @property
    def refundable(self) -> Decimal:
        """Captured minus every refund not failed, canceled or rejected."""
        if self.payment.state != PaymentState.SUCCEEDED:
            return Decimal(0)
        taken = sum((r.amount for r in self.refunds if r.state in st.OUTSTANDING_REFUND_STATES), Decimal(0))
        return self.payment.amount - taken

    @property
    def refund_requested(self) -> bool:
        return any(r.state in (RefundState.REQUESTED, RefundState.PENDING) for r in self.refunds)


def payment_detail(viewer: User, payment_id: uuid.UUID | str, *, staff: bool = False) -> PaymentDetail:
    """One payment with its course's title, timeline (oldest first) and refunds: three
    statements. A student reaches only their own (``NotFound`` otherwise); finance (or
    ``staff=True``, e.g. a compliance officer's page) any."""
    from portal.learning.education.models import Course

    try:
        payment_id = uuid.UUID(str(payment_id))
    except ValueError:
        raise NotFound("There is no such payment.") from None
    row = db.session.execute(select(Payment, Course.title).outerjoin(Course, Course.id == Payment.course_id)
                             .where(Payment.id == payment_id)).first()
    staff = staff or has_permission(viewer.role, Permission.MANAGE_MONEY)
    if row is None or (not staff and row[0].user_id != viewer.id):
        raise NotFound("There is no such payment.")
    payment, title = row
    timeline = list(db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                       .order_by(PaymentEvent.created_at, PaymentEvent.id)))
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)
                                      .order_by(Refund.created_at)))
    return PaymentDetail(payment, title, timeline, refunds)


def payment_state(user: User, payment_id: uuid.UUID | str) -> PaymentRow:
    """The live state of one of the payer's payments (one statement), for the polling fragment."""
    try:
        payment_id = uuid.UUID(str(payment_id))
    except ValueError:
        raise NotFound("There is no such payment.") from None
    raw = db.session.execute(_payment_columns().where(Payment.id == payment_id, Payment.user_id == user.id)).first()
    if raw is None:
        raise NotFound("There is no such payment.")
    return _row(raw)


def saved_methods(user: User) -> list[PaymentMethod]:
    """The payer's saved methods not removed, default first (one statement)."""
    return list(db.session.scalars(select(PaymentMethod).where(PaymentMethod.user_id == user.id,
                                                               PaymentMethod.removed_at.is_(None))
                                   .order_by(PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc())))


def top_up_currencies() -> list[str]:
    """Currencies a top-up may be made in (a minimum and a maximum are configured)."""
    config = current_app.config
    return sorted(set(config.get("TOP_UP_MINIMUMS", {})) & set(config.get("TOP_UP_MAXIMUMS", {})))


def stuck_payments(limit: int = 100) -> list[Payment]:
    """Payments the reconciliation job asks about: still open and unchanged for longer than
    ``PAYMENT_STUCK_MINUTES``, or never reached the provider (``needsReconcile``)."""
    since = utcnow() - timedelta(minutes=current_app.config.get("PAYMENT_STUCK_MINUTES", 10))
    return list(db.session.scalars(
        select(Payment).where(Payment.provider != "wallet",
                              Payment.state.in_(tuple(st.OPEN_PAYMENT_STATES)),
                              (Payment.updated_at < since) | Payment.needs_reconcile)
        .order_by(Payment.updated_at).limit(limit)))


def pending_refunds(limit: int = 100) -> list[Refund]:
    """Refunds sent (or to send) to a provider and not settled yet, oldest first."""
    return list(db.session.scalars(select(Refund).where(Refund.state == RefundState.PENDING)
                                   .order_by(Refund.created_at, Refund.id).limit(limit)))


@dataclass
class TopUpLimit:
    currency: str
    minimum: Decimal
    #: What may still be topped up in the next 24 hours at the payer's verification level.
    maximum: Decimal


@dataclass
class TopUpForm:
    """What the top-up page needs: the currencies and their limits for this payer, and the
    payer's saved methods (default first)."""

    limits: list[TopUpLimit]
    methods: list[PaymentMethod]
    method_kinds: tuple[PayWith, ...] = (PayWith.CARD, PayWith.MOBILE_MONEY)

    @property
    def default_method(self) -> PaymentMethod | None:
        return next((m for m in self.methods if m.is_default), None)


def top_up_form(user: User) -> TopUpForm:
    """The top-up page's facts: 2 statements per currency offered plus one (the verification
    level, the last day's top-ups, the saved methods)."""
    from portal.money.payments.services import top_up_limits

    limits = []
    for code in top_up_currencies():
        minimum, maximum = top_up_limits(user, code)
        limits.append(TopUpLimit(code, minimum, maximum))
    return TopUpForm(limits, saved_methods(user))


@dataclass
class CourseCheckout:
    """What a paid course's buy box needs."""

    course_id: uuid.UUID
    title: str
    price: Decimal | None
    currency: str | None
    #: The payer's available balance in the price's currency (None: no wallet in it).
    available: Decimal | None
    #: A purchase the payer owns already (bought, not refunded): enrolling again costs nothing.
    owned_payment_id: uuid.UUID | None
    enrolled: bool
    methods: list[PaymentMethod] = field(default_factory=list)

    @property
    def free(self) -> bool:
        return self.price is None or self.price <= 0

    @property
    def wallet_covers(self) -> bool:
        return not self.free and self.available is not None and self.available >= self.price


def course_checkout(user: User, course) -> CourseCheckout:
    """The buy box of ``course`` for ``user``: its price, the wallet's available balance, whether
    the payer owns it already or is enrolled, and the saved methods. Four statements."""
    from portal.learning.education.models import Enrollment, EnrollmentStatus
    from portal.money.payments.services import owned_purchase
    from portal.money.wallets import ledger

    available = None
    if course.price_currency:
        wallet = ledger.user_wallet(user.id, course.price_currency)
        available = wallet.available if wallet is not None else None
    status = db.session.scalar(select(Enrollment.status).where(Enrollment.course_id == course.id,
                                                               Enrollment.user_id == user.id))
    owned = owned_purchase(user.id, course.id) if course.is_paid else None
    return CourseCheckout(course.id, course.title, course.price, course.price_currency, available,
                          owned.id if owned is not None else None,
                          status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED), saved_methods(user))
