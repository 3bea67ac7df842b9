"""Reads for finance's pages (admins; compliance officers read too through row-level security):
the payments list with filters and keyset pages, the refunds queue, the webhook log, and
faculty's sales of their courses. Each function is one statement whatever the data size.

Filters come from the query string through ``parse_payment_filters``, which never raises: a
value it cannot read is dropped and reported in ``errors`` (the page shows it beside the field).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, or_, select, tuple_

from portal.accounts.models import User
from portal.db import db
from portal.money.payments.models import (
    PROVIDER_NAMES,
    Payment,
    PayWith,
    Purpose,
    Refund,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from portal.money.payments.providers.base import PaymentState
from portal.pagination import Page, decode_cursor, encode_cursor

PAGE_SIZE = 50


@dataclass
class PaymentFilters:
    state: PaymentState | None = None
    provider: str | None = None
    method: PayWith | None = None
    purpose: Purpose | None = None
    since: date | None = None
    until: date | None = None  #: inclusive
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    user: str | None = None  #: e-mail or name, contains (case-insensitive)

    def as_args(self) -> dict[str, str]:
        """The filters as query-string values (for the next page's link)."""
        out = {"state": self.state, "provider": self.provider, "method": self.method, "purpose": self.purpose,
               "since": self.since, "until": self.until, "min": self.min_amount, "max": self.max_amount,
               "user": self.user}
        return {k: str(v) for k, v in out.items() if v not in (None, "")}


def _enum(enum_cls, raw):
    try:
        return enum_cls(raw) if raw else None
    except ValueError:
        return None


def _date(raw):
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _amount(raw):
    try:
        value = Decimal(raw) if raw else None
    except InvalidOperation:
        return None
    return value if value is None or (value.is_finite() and value >= 0) else None


def parse_payment_filters(args: Mapping[str, str]) -> tuple[PaymentFilters, dict[str, str]]:
    """Filters from a query string, and a message per field it could not read."""
    errors: dict[str, str] = {}
    filters = PaymentFilters()

    def take(name, parse, message):
        raw = (args.get(name) or "").strip()
        if not raw:
            return None
        value = parse(raw)
        if value is None:
            errors[name] = message
        return value

    filters.state = take("state", lambda r: _enum(PaymentState, r), "Choose a state from the list.")
    filters.provider = take("provider", lambda r: r if r in PROVIDER_NAMES else None, "Choose a provider from the list.")
    filters.method = take("method", lambda r: _enum(PayWith, r), "Choose a method from the list.")
    filters.purpose = take("purpose", lambda r: _enum(Purpose, r), "Choose a purpose from the list.")
    filters.since = take("since", _date, "Enter a date like 2026-12-31.")
    filters.until = take("until", _date, "Enter a date like 2026-12-31.")
    filters.min_amount = take("min", _amount, "Enter an amount like 10 or 12.50.")
    filters.max_amount = take("max", _amount, "Enter an amount like 10 or 12.50.")
    user = (args.get("user") or "").strip()[:100]
    filters.user = user or None
    return filters, errors


@dataclass(frozen=True)
class AdminPaymentRow:
    id: uuid.UUID
    created_at: datetime
    user_id: uuid.UUID
    user_name: str
    user_email: str
    purpose: Purpose
    amount: Decimal
    currency: str
    fee: Decimal | None
    amount_refunded: Decimal
    state: PaymentState
    provider: str
    method_kind: PayWith
    method_last4: str
    provider_ref: str | None


def payments(filters: PaymentFilters | None = None, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Every payment newest first, filtered, ``size`` per page after ``cursor`` (one statement,
    along ``ix_payments_created`` or the state index)."""
    f = filters or PaymentFilters()
    stmt = (select(Payment.id, Payment.created_at, Payment.user_id, User.full_name, User.email, Payment.purpose,
                   Payment.amount, Payment.currency, Payment.fee, Payment.amount_refunded, Payment.state,
                   Payment.provider, Payment.method_kind, Payment.method_last4, Payment.provider_ref)
            .join(User, User.id == Payment.user_id))
    if f.state:
        stmt = stmt.where(Payment.state == f.state)
    if f.provider:
        stmt = stmt.where(Payment.provider == f.provider)
    if f.method:
        stmt = stmt.where(Payment.method_kind == f.method)
    if f.purpose:
        stmt = stmt.where(Payment.purpose == f.purpose)
    if f.since:
        stmt = stmt.where(Payment.created_at >= datetime.combine(f.since, time.min, UTC))
    if f.until:
        stmt = stmt.where(Payment.created_at < datetime.combine(f.until + timedelta(days=1), time.min, UTC))
    if f.min_amount is not None:
        stmt = stmt.where(Payment.amount >= f.min_amount)
    if f.max_amount is not None:
        stmt = stmt.where(Payment.amount <= f.max_amount)
    if f.user:
        pattern = "%" + f.user.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(User.email.ilike(pattern), User.full_name.ilike(pattern)))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(size + 1)).all()
    items = [AdminPaymentRow(*row) for row in rows[:size]]
    return Page(items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None)


@dataclass(frozen=True)
class RefundRow:
    id: uuid.UUID
    created_at: datetime
    payment_id: uuid.UUID
    user_name: str
    user_email: str
    amount: Decimal
    currency: str
    reason: str
    state: RefundState
    automatic: bool
    course_title: str | None
    purpose: Purpose


def refunds_queue(state: RefundState | None = RefundState.REQUESTED, cursor: str | None = None,
                  size: int = PAGE_SIZE) -> Page:
    """Refunds in ``state`` (default: waiting for finance), oldest first; any state newest first
    when ``state`` is None. One statement."""
    from portal.learning.education.models import Course

    stmt = (select(Refund.id, Refund.created_at, Refund.payment_id, User.full_name, User.email, Refund.amount,
                   Refund.currency, Refund.reason, Refund.state, Refund.automatic, Course.title, Payment.purpose)
            .join(Payment, Payment.id == Refund.payment_id)
            .join(User, User.id == Refund.user_id)
            .outerjoin(Course, Course.id == Payment.course_id))
    position = decode_cursor(cursor)
    if state is not None:
        stmt = stmt.where(Refund.state == state)
        if position is not None:
            stmt = stmt.where(tuple_(Refund.created_at, Refund.id) > tuple_(*position))
        stmt = stmt.order_by(Refund.created_at, Refund.id)
    else:
        if position is not None:
            stmt = stmt.where(tuple_(Refund.created_at, Refund.id) < tuple_(*position))
        stmt = stmt.order_by(Refund.created_at.desc(), Refund.id.desc())
    rows = db.session.execute(stmt.limit(size + 1)).all()
    items = [RefundRow(*row) for row in rows[:size]]
    return Page(items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None)


def webhook_log(*, provider: str | None = None, outcome: WebhookOutcome | None = None, cursor: str | None = None,
                size: int = PAGE_SIZE) -> Page:
    """Stored webhooks newest first (the payload is left out of the list), one statement."""
    stmt = select(WebhookEvent.id, WebhookEvent.received_at, WebhookEvent.provider, WebhookEvent.event_id,
                  WebhookEvent.event_type, WebhookEvent.outcome, WebhookEvent.detail, WebhookEvent.payment_id,
                  WebhookEvent.attempts, WebhookEvent.applied_at)
    if provider:
        stmt = stmt.where(WebhookEvent.provider == provider)
    if outcome:
        stmt = stmt.where(WebhookEvent.outcome == outcome)
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(WebhookEvent.received_at, WebhookEvent.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
                              .limit(size + 1)).all()
    items = list(rows[:size])
    return Page(items, encode_cursor(items[-1].received_at, items[-1].id) if len(rows) > size else None)


def webhook_event(event_id: uuid.UUID | str) -> WebhookEvent | None:
    try:
        return db.session.get(WebhookEvent, uuid.UUID(str(event_id)))
    except ValueError:
        return None


@dataclass
class CourseSales:
    course_id: uuid.UUID
    title: str
    currency: str | None
    sold: int = 0
    revenue: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        return self.revenue - self.refunded


@dataclass
class SalesSummary:
    courses: list[CourseSales] = field(default_factory=list)


def course_sales(owner: User) -> SalesSummary:
    """Sales of the courses ``owner`` manages (all courses for an admin): purchases succeeded,
    revenue and refunds, per course. One statement. Faculty do not read payments through
    row-level security, so this runs with the ledger's reading role over payment rows of their
    courses only (aggregates: no payer is named)."""
    from portal.accounts.models import Role
    from portal.learning.education.models import Course
    from portal.learning.lms.models import CourseManagement
    from portal.money.wallets import ledger

    stmt = (select(Course.id, Course.title, Payment.currency, func.count(Payment.id),
                   func.coalesce(func.sum(Payment.amount), 0), func.coalesce(func.sum(Payment.amount_refunded), 0))
            .join(Payment, (Payment.course_id == Course.id) & (Payment.state == PaymentState.SUCCEEDED))
            .group_by(Course.id, Course.title, Payment.currency)
            .order_by(Course.title))
    if owner.role != Role.ADMIN:
        stmt = stmt.where(select(CourseManagement.id).where(CourseManagement.course_id == Course.id,
                                                            CourseManagement.user_id == owner.id).exists())
    with ledger.as_ledger():
        rows = db.session.execute(stmt).all()
    return SalesSummary([CourseSales(cid, title, code, sold, Decimal(revenue), Decimal(refunded))
                         for cid, title, code, sold, revenue, refunded in rows])
