"""Reads for finance's pages (admins; compliance officers read too through row-level security):
the payments list with filters and keyset pages, one payment with everything about it (payer,
ledger rows, timeline, refunds, the webhooks that named it), the refunds queue, the webhook log,
the last reconciliation run, and faculty's sales of their courses. Each function is one
statement whatever the data size (``payment_page``: six, ``last_reconciliation``: two).

Filters come from the query string through ``parse_payment_filters`` and
``parse_webhook_filters``, which never raise: a value they cannot read is dropped and reported
in ``errors`` (the page shows it beside the field). Counts beside the lists stop at
``COUNT_CAP`` (``portal.compliance.count_upto``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance import count_upto
from portal.db import db
from portal.errors import NotFound
from portal.money.currency import CURRENCIES, format_amount, parse_amount
from portal.money.payments import reconcile
from portal.money.payments.models import (
    PROVIDER_NAMES,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PayWith,
    Purpose,
    Refund,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.queries import PaymentDetail, payment_detail
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet
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
    currency: str | None = None

    def as_args(self) -> dict[str, str]:
        """The filters as query-string values (for the next page's link)."""
        out = {"state": self.state, "provider": self.provider, "method": self.method, "purpose": self.purpose,
               "since": self.since, "until": self.until, "min": self.min_amount, "max": self.max_amount,
               "user": self.user, "currency": self.currency}
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
    filters.currency = take("currency", lambda r: r if r in CURRENCIES else None, "Choose a currency from the list.")
    user = (args.get("user") or "").strip()[:100]
    filters.user = user or None
    if filters.since and filters.until and filters.until < filters.since:
        errors["until"] = "The end is before the start."
        filters.until = None
    if filters.min_amount is not None and filters.max_amount is not None and filters.max_amount < filters.min_amount:
        errors["max"] = "The upper amount is below the lower one."
        filters.max_amount = None
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
    method_brand: str = ""
    course_title: str | None = None


def _payment_where(f: PaymentFilters) -> list:
    """The conditions of the filters (those that could be read)."""
    where = []
    if f.state:
        where.append(Payment.state == f.state)
    if f.provider:
        where.append(Payment.provider == f.provider)
    if f.method:
        where.append(Payment.method_kind == f.method)
    if f.purpose:
        where.append(Payment.purpose == f.purpose)
    if f.currency:
        where.append(Payment.currency == f.currency)
    if f.since:
        where.append(Payment.created_at >= datetime.combine(f.since, time.min, UTC))
    if f.until and f.until < date.max:  # the last day there is: no upper bound
        where.append(Payment.created_at < datetime.combine(f.until + timedelta(days=1), time.min, UTC))
    if f.min_amount is not None:
        where.append(Payment.amount >= f.min_amount)
    if f.max_amount is not None:
        where.append(Payment.amount <= f.max_amount)
    if f.user:
        pattern = "%" + f.user.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(Payment.user_id.in_(select(User.id).where(or_(User.email.ilike(pattern),
                                                                    User.full_name.ilike(pattern)))))
    return where


def payments(filters: PaymentFilters | None = None, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Every payment newest first, filtered, ``size`` per page after ``cursor`` (one statement,
    along ``ix_payments_created`` or the state index); ties in time keep the order of their ids."""
    from portal.learning.education.models import Course

    f = filters or PaymentFilters()
    stmt = (select(Payment.id, Payment.created_at, Payment.user_id, User.full_name, User.email, Payment.purpose,
                   Payment.amount, Payment.currency, Payment.fee, Payment.amount_refunded, Payment.state,
                   Payment.provider, Payment.method_kind, Payment.method_last4, Payment.provider_ref,
                   Payment.method_brand, Course.title)
            .join(User, User.id == Payment.user_id)
            .outerjoin(Course, Course.id == Payment.course_id)
            .where(*_payment_where(f)))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(size + 1)).all()
    items = [AdminPaymentRow(*row) for row in rows[:size]]
    return Page(items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None)


def payments_count(filters: PaymentFilters | None = None) -> int:
    """The payments matching ``filters``, counted up to ``COUNT_CAP + 1`` (one statement)."""
    return db.session.scalar(select(count_upto(Payment, *_payment_where(filters or PaymentFilters()))))


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
    decided_at: datetime | None = None
    decision_note: str = ""
    failure_reason: str | None = None
    payment_amount: Decimal | None = None
    #: When the payment was credited (its money arrived).
    paid_at: datetime | None = None


def _refund_select():
    from portal.learning.education.models import Course

    return (select(Refund.id, Refund.created_at, Refund.payment_id, User.full_name, User.email, Refund.amount,
                   Refund.currency, Refund.reason, Refund.state, Refund.automatic, Course.title, Payment.purpose,
                   Refund.decided_at, Refund.decision_note, Refund.failure_reason, Payment.amount,
                   Payment.credited_at)
            .join(Payment, Payment.id == Refund.payment_id)
            .join(User, User.id == Refund.user_id)
            .outerjoin(Course, Course.id == Payment.course_id))


def refunds_queue(state: RefundState | None = RefundState.REQUESTED, cursor: str | None = None,
                  size: int = PAGE_SIZE) -> Page:
    """Refunds in ``state`` (default: waiting for finance), oldest first; any state newest first
    when ``state`` is None. One statement."""
    stmt = _refund_select()
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


def refund_row(refund_id: uuid.UUID) -> RefundRow:
    """One refund as the queue shows it (after a decision, its row again). One statement."""
    row = db.session.execute(_refund_select().where(Refund.id == refund_id)).first()
    if row is None:
        raise NotFound("There is no such refund.")
    return RefundRow(*row)


def refund_counts() -> dict[str, int]:
    """Refunds per state and in all, each counted up to ``COUNT_CAP + 1``; one statement."""
    columns = [count_upto(Refund, Refund.state == s).label(s.value) for s in RefundState]
    row = db.session.execute(select(*columns, count_upto(Refund).label("all"))).one()
    return dict(row._mapping)


def refund_requests_waiting() -> int:
    """Course refund requests waiting for finance, counted up to ``COUNT_CAP + 1``."""
    return db.session.scalar(select(count_upto(Refund, Refund.state == RefundState.REQUESTED)))


def parse_webhook_filters(args: Mapping[str, str]) -> tuple[dict, dict[str, str]]:
    """``webhook_log``'s keyword filters from a query string, and a message per value it could
    not read (never raises)."""
    errors: dict[str, str] = {}
    found: dict = {}
    provider = (args.get("provider") or "").strip()
    if provider:
        if provider in PROVIDER_NAMES and provider != "wallet":
            found["provider"] = provider
        else:
            errors["provider"] = "Choose a provider from the list."
    outcome = (args.get("outcome") or "").strip()
    if outcome:
        if outcome in WebhookOutcome._value2member_map_:
            found["outcome"] = WebhookOutcome(outcome)
        else:
            errors["outcome"] = "Choose an outcome from the list."
    event_id = (args.get("event") or "").strip()[:200]
    if event_id:
        found["event_id"] = event_id
    return found, errors


def webhook_log(*, provider: str | None = None, outcome: WebhookOutcome | None = None, event_id: str | None = None,
                cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Stored webhooks newest first (the payload is left out of the list), one statement."""
    stmt = select(WebhookEvent.id, WebhookEvent.received_at, WebhookEvent.provider, WebhookEvent.event_id,
                  WebhookEvent.event_type, WebhookEvent.outcome, WebhookEvent.detail, WebhookEvent.payment_id,
                  WebhookEvent.attempts, WebhookEvent.applied_at, WebhookEvent.verified)
    if provider:
        stmt = stmt.where(WebhookEvent.provider == provider)
    if outcome:
        stmt = stmt.where(WebhookEvent.outcome == outcome)
    if event_id:
        stmt = stmt.where(WebhookEvent.event_id == event_id)
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


# -- One payment ----------------------------------------------------------------------------------


@dataclass
class LedgerLine:
    """A ledger row of a payment or of one of its refunds, with both sides named."""

    id: uuid.UUID
    created_at: datetime
    type: TransactionType
    phase: str
    amount: Decimal
    currency: str
    description: str
    debit_label: str
    debit_user_id: uuid.UUID | None
    credit_label: str
    credit_user_id: uuid.UUID | None

    @property
    def type_label(self) -> str:
        return TransactionType(self.type).label


@dataclass
class PaymentPage:
    """A payment's story for its payer's page (``queries.PaymentDetail``: timeline, refunds,
    what is refundable) and what finance reads beside it."""

    story: PaymentDetail
    user: User
    method_label: str | None
    transactions: list[LedgerLine]
    #: The provider's event ids of the timeline -> the webhook log's row, for links.
    webhook_ids: dict[str, uuid.UUID]

    @property
    def payment(self) -> Payment:
        return self.story.payment

    @property
    def course_title(self) -> str | None:
        return self.story.course_title

    @property
    def events(self) -> list[PaymentEvent]:
        return self.story.timeline

    @property
    def refunds(self) -> list[Refund]:
        return self.story.refunds

    @property
    def refundable(self) -> Decimal:
        """Captured minus every refund requested, pending or succeeded (the service checks it
        again under the payment's row lock)."""
        return self.story.refundable

    @property
    def refunds_in_flight(self) -> Decimal:
        """Refunds asked for or sent to the provider, not settled yet."""
        return sum((r.amount for r in self.refunds if r.state in (RefundState.REQUESTED, RefundState.PENDING)),
                   Decimal(0))

    @property
    def refund_blocked(self) -> str | None:
        """Why no refund can be made now, or None."""
        if self.payment.state != PaymentState.SUCCEEDED:
            return "Only a succeeded payment can be refunded."
        if self.refundable <= 0:
            return "Nothing is left to refund: refunds made or asked for cover the whole payment."
        return None


def _side_label(system_name, full_name, email) -> str:
    if system_name:
        return SystemWallet(system_name).label
    return full_name or email or "\u2014"


def _ledger_lines(group_ids: list[uuid.UUID]) -> list[LedgerLine]:
    if not group_ids:
        return []
    debit_wallet, credit_wallet = aliased(Wallet), aliased(Wallet)
    debit_user, credit_user = aliased(User), aliased(User)
    rows = db.session.execute(
        select(Transaction.id, Transaction.created_at, Transaction.type, Transaction.phase, Transaction.amount,
               Transaction.currency, Transaction.description,
               debit_wallet.system_name.label("debit_system"), debit_user.full_name.label("debit_name"),
               debit_user.email.label("debit_email"), Transaction.debit_user_id,
               credit_wallet.system_name.label("credit_system"), credit_user.full_name.label("credit_name"),
               credit_user.email.label("credit_email"), Transaction.credit_user_id)
        .join(debit_wallet, debit_wallet.id == Transaction.debit_wallet_id)
        .join(credit_wallet, credit_wallet.id == Transaction.credit_wallet_id)
        .outerjoin(debit_user, debit_user.id == Transaction.debit_user_id)
        .outerjoin(credit_user, credit_user.id == Transaction.credit_user_id)
        .where(Transaction.group_id.in_(group_ids))
        .order_by(Transaction.created_at, Transaction.id)).all()
    return [LedgerLine(r.id, r.created_at, r.type, getattr(r.phase, "value", r.phase), r.amount, r.currency,
                       r.description, _side_label(r.debit_system, r.debit_name, r.debit_email), r.debit_user_id,
                       _side_label(r.credit_system, r.credit_name, r.credit_email), r.credit_user_id)
            for r in rows]


def payment_page(viewer: User, payment_id: uuid.UUID) -> PaymentPage:
    """One payment for finance: its story (``queries.payment_detail``, three statements), then
    its payer and saved method, the ledger rows of the payment and its refunds, and the webhooks
    that named it (one statement each)."""
    story = payment_detail(viewer, payment_id, staff=True)
    payment = story.payment
    user, method = db.session.execute(
        select(User, PaymentMethod).outerjoin(PaymentMethod, PaymentMethod.id == payment.method_id)
        .where(User.id == payment.user_id)).one()
    groups = [g for g in (payment.ledger_group_id, *(r.ledger_group_id for r in story.refunds)) if g is not None]
    hooks = {}
    if payment.provider != "wallet":
        hooks = dict(db.session.execute(select(WebhookEvent.event_id, WebhookEvent.id)
                                        .where(WebhookEvent.payment_id == payment.id)).all())
    return PaymentPage(story, user, method.label if method is not None else None, _ledger_lines(groups), hooks)


def check_refund(page: PaymentPage, amount: str | None, reason: str | None) -> Decimal:
    """What finance's refund form asks for, checked as the refund service will check it (which
    it does again, under the payment's lock, when the refund is confirmed): the amount to refund
    (all that is left when empty), or the ``DomainError`` that refuses it, naming its field."""
    from portal.money.payments.services import MAX_REASON, RefundRefused

    if page.refund_blocked:
        raise RefundRefused(page.refund_blocked, field=None)
    left = page.refundable
    value = left if not (amount or "").strip() else parse_amount(amount, page.payment.currency)
    if value > left:
        raise RefundRefused(f"At most {format_amount(left, page.payment.currency, exact=True)} can still be "
                            "refunded.", field="amount")
    text = " ".join((reason or "").split())
    if not text:
        raise RefundRefused("Say why the money is given back.", field="reason")
    if len(text) > MAX_REASON:
        raise RefundRefused(f"Keep the reason to {MAX_REASON} characters or fewer.", field="reason")
    return value


# -- Reconciliation -------------------------------------------------------------------------------


@dataclass
class DifferenceRow:
    """One difference of a run, beside the payment as the portal has it now."""

    kind: str
    message: str
    payment_id: uuid.UUID
    refund_id: uuid.UUID | None
    payment: Payment | None
    user_email: str | None


@dataclass
class LastReconciliation:
    """The last recorded run (``reconcile.last_reconciliation``) with its differences' rows."""

    ran_at: datetime
    ran_by: str
    payments: int
    refunds: int
    #: Payments and refunds brought up to date from the providers before comparing.
    fixed: int
    difference_count: int
    differences: list[DifferenceRow]
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.difference_count == 0


#: How each kind of difference is named on the page.
DIFFERENCE_KINDS = {"provider": "Provider and portal disagree", "ledger": "Ledger and portal disagree",
                    "refund": "Refund", "unreachable": "Provider not reached"}


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def last_reconciliation() -> LastReconciliation | None:
    """The last recorded run, with the payments its differences name as the portal has them now
    (two statements)."""
    run = reconcile.last_reconciliation()
    if run is None:
        return None
    kept = [d for d in run.differences if _uuid_or_none(d.get("payment_id"))]
    ids = {_uuid_or_none(d["payment_id"]) for d in kept}
    found = {}
    if ids:
        found = {p.id: (p, email) for p, email in db.session.execute(
            select(Payment, User.email).join(User, User.id == Payment.user_id).where(Payment.id.in_(ids))).all()}
    rows = []
    for d in kept:
        payment_id = _uuid_or_none(d["payment_id"])
        payment, email = found.get(payment_id, (None, None))
        rows.append(DifferenceRow(DIFFERENCE_KINDS.get(d.get("kind"), str(d.get("kind", ""))), str(d.get("message", "")),
                                  payment_id, _uuid_or_none(d.get("refund_id")), payment, email))
    return LastReconciliation(run.recorded_at, run.ran_by, run.payments, run.refunds, run.fixed,
                              run.difference_count, rows, run.truncated)
