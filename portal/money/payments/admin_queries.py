"""Reads for finance's pages of payments: the payments list with its filters, one payment with
everything about it (payer, ledger rows, timeline, refunds, the webhooks that named it), the
refunds queue and the webhook log.

Lists are keyset-paginated on ``(createdAt DESC, id DESC)`` (``receivedAt`` for webhooks), so a
page is one statement on any page and rows with the same time keep a stable order; the counts
beside them stop at ``COUNT_CAP`` (``count_upto``). A filter value that makes no sense is
reported in the filters' ``errors`` and left out instead of failing. Money staff see every row
through row-level security (the ``money_staff`` and ``payment_staff`` policies of 0011).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import Row, func, or_, select, tuple_
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance import count_upto
from portal.db import db
from portal.errors import NotFound
from portal.money.currency import CURRENCIES, MAX_INTEGER_DIGITS, format_amount, parse_amount
from portal.money.payments import states as st
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
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet
from portal.pagination import Page, decode_cursor, encode_cursor

PAGE_SIZE = 25


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _parse_amount(value: str, code: str | None) -> tuple[Decimal | None, str | None]:
    """``(amount, None)`` for a figure a person typed, or ``(None, message)``."""
    text = value.strip().replace(",", "").replace(" ", "")
    if not text or text == "." or text.count(".") > 1 or not all(ch in "0123456789." for ch in text):
        return None, "Not an amount: type a number like 25 or 12.50."
    amount = Decimal(text)  # only ASCII digits and one point remain: always a valid Decimal
    if len(text.split(".")[0].lstrip("0")) > MAX_INTEGER_DIGITS:
        return None, "That amount is too large."
    places = len(text.split(".")[1]) if "." in text else 0
    scale = CURRENCIES[code].scale if code in CURRENCIES else max(c.scale for c in CURRENCIES.values())
    if places > scale:
        return None, (f"{code} amounts have at most {scale} decimal places." if code in CURRENCIES
                      else f"At most {scale} decimal places.")
    return amount, None


# -- The payments list ----------------------------------------------------------------------------


@dataclass
class PaymentFilters:
    """The list's filters as typed (strings); ``payments_page`` fills ``errors``."""

    user: str = ""
    state: str = ""
    purpose: str = ""
    provider: str = ""
    method: str = ""
    currency: str = ""
    amount_min: str = ""
    amount_max: str = ""
    date_from: str = ""
    date_to: str = ""
    #: Messages for values that could not be used, by the name of their query argument.
    errors: dict[str, str] = field(default_factory=dict)

    def as_args(self) -> dict[str, str]:
        """The query arguments that give these filters back (the pager's and the links')."""
        pairs = (("user", self.user), ("state", self.state), ("purpose", self.purpose), ("provider", self.provider),
                 ("method", self.method), ("currency", self.currency), ("min", self.amount_min),
                 ("max", self.amount_max), ("from", self.date_from), ("to", self.date_to))
        return {name: value for name, value in pairs if value}


@dataclass
class PaymentListRow:
    payment: Payment
    user_email: str
    user_name: str
    course_title: str | None


@dataclass
class PaymentList:
    page: Page
    #: The payments matching the filters, counted up to ``COUNT_CAP + 1``.
    total: int


def _enum_filter(value: str, enum, errors: dict, name: str, message: str):
    if not value:
        return None
    if value in enum._value2member_map_:
        return enum(value)
    errors[name] = message
    return None


def _payment_conditions(filters: PaymentFilters) -> list:
    """The WHERE conditions of the filters that make sense; the others go to ``errors``."""
    errors = filters.errors
    where = []
    state = _enum_filter(filters.state, PaymentState, errors, "state", "Unknown state.")
    if state is not None:
        where.append(Payment.state == state)
    purpose = _enum_filter(filters.purpose, Purpose, errors, "purpose", "Unknown purpose.")
    if purpose is not None:
        where.append(Payment.purpose == purpose)
    method = _enum_filter(filters.method, PayWith, errors, "method", "Unknown method.")
    if method is not None:
        where.append(Payment.method_kind == method)
    if filters.provider:
        if filters.provider in PROVIDER_NAMES:
            where.append(Payment.provider == filters.provider)
        else:
            errors["provider"] = "Unknown provider."
    code = None
    if filters.currency:
        if filters.currency in CURRENCIES:
            code = filters.currency
            where.append(Payment.currency == code)
        else:
            errors["currency"] = "Unknown currency."
    low = high = None
    if filters.amount_min:
        low, message = _parse_amount(filters.amount_min, code)
        if message:
            errors["min"] = message
        else:
            where.append(Payment.amount >= low)
    if filters.amount_max:
        high, message = _parse_amount(filters.amount_max, code)
        if message:
            errors["max"] = message
        elif low is not None and high < low:
            errors["max"] = "The upper amount is below the lower one."
        else:
            where.append(Payment.amount <= high)
    start, end = _parse_date(filters.date_from), _parse_date(filters.date_to)
    if filters.date_from and start is None:
        errors["from"] = "Not a date (YYYY-MM-DD)."
    if filters.date_to and end is None:
        errors["to"] = "Not a date (YYYY-MM-DD)."
    if start and end and end < start:
        errors["to"] = "The end is before the start."
        end = None
    if start:
        where.append(Payment.created_at >= datetime.combine(start, time.min, UTC))
    if end:
        where.append(Payment.created_at < datetime.combine(end + timedelta(days=1), time.min, UTC))
    who = " ".join(filters.user.split()).lower()
    if who:
        if len(who) < 2:
            errors["user"] = "Type at least two characters of an e-mail or a name."
        else:
            # An e-mail's beginning (the whole address too), or a part of the name.
            pattern = _escape_like(who)
            payer = select(User.id).where(or_(func.lower(User.email).like(pattern + "%", escape="\\"),
                                             func.lower(User.full_name).like("%" + pattern + "%", escape="\\")))
            where.append(Payment.user_id.in_(payer.scalar_subquery()))
    return where


def payments_page(filters: PaymentFilters, cursor: str | None = None, size: int = PAGE_SIZE) -> PaymentList:
    """Payments newest first, filtered: the page in one statement (the payer and the course come
    with it), and the capped count of all that match in a second one (skipped on later pages,
    whose fragment does not show it)."""
    from portal.learning.education.models import Course

    where = _payment_conditions(filters)
    stmt = (select(Payment, User.email, User.full_name, Course.title)
            .join(User, User.id == Payment.user_id)
            .outerjoin(Course, Course.id == Payment.course_id)
            .where(*where))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(size + 1)).all()
    items = [PaymentListRow(p, email, name, title) for p, email, name, title in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = items[-1].payment
        next_cursor = encode_cursor(last.created_at, last.id)
    total = 0 if position is not None else db.session.scalar(select(count_upto(Payment, *where)))
    return PaymentList(Page(items, next_cursor), total)


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
    payment: Payment
    user: User
    course_title: str | None
    method_label: str | None
    events: list[PaymentEvent]
    refunds: list[Refund]
    transactions: list[LedgerLine]
    #: The provider's event ids of the timeline -> the webhook log's row, for links.
    webhook_ids: dict[str, uuid.UUID]

    @property
    def refundable(self) -> Decimal:
        """Captured minus every refund requested, pending or succeeded (the service checks it
        again under the payment's row lock)."""
        if self.payment.state != PaymentState.SUCCEEDED:
            return Decimal(0)
        taken = sum((r.amount for r in self.refunds if r.state in st.OUTSTANDING_REFUND_STATES), Decimal(0))
        return max(self.payment.amount - taken, Decimal(0))

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


def payment_page(payment_id: uuid.UUID) -> PaymentPage:
    """One payment for finance: five statements (the payment with its payer, course and saved
    method; the timeline, oldest first; the refunds; the ledger rows of the payment and its
    refunds; the webhooks that named it)."""
    from portal.learning.education.models import Course

    row = db.session.execute(
        select(Payment, User, Course.title, PaymentMethod)
        .join(User, User.id == Payment.user_id)
        .outerjoin(Course, Course.id == Payment.course_id)
        .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
        .where(Payment.id == payment_id)).first()
    if row is None:
        raise NotFound("There is no such payment.")
    payment, user, title, method = row
    events = list(db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                     .order_by(PaymentEvent.created_at, PaymentEvent.id)))
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)
                                      .order_by(Refund.created_at, Refund.id)))
    groups = [g for g in (payment.ledger_group_id, *(r.ledger_group_id for r in refunds)) if g is not None]
    hooks = {}
    if payment.provider != "wallet":
        hooks = dict(db.session.execute(select(WebhookEvent.event_id, WebhookEvent.id)
                                        .where(WebhookEvent.payment_id == payment.id)).all())
    return PaymentPage(payment, user, title, method.label if method is not None else None, events, refunds,
                       _ledger_lines(groups), hooks)


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


# -- Refunds --------------------------------------------------------------------------------------


@dataclass
class RefundRow:
    refund: Refund
    user_email: str
    user_name: str
    purpose_label: str
    course_title: str | None
    payment_amount: Decimal
    paid_at: datetime | None


def _refund_rows(where, order, limit: int | None = None) -> list[Row]:
    from portal.learning.education.models import Course

    stmt = (select(Refund, User.email, User.full_name, Payment.purpose, Course.title, Payment.amount,
                   Payment.credited_at)
            .join(Payment, Payment.id == Refund.payment_id)
            .join(User, User.id == Refund.user_id)
            .outerjoin(Course, Course.id == Payment.course_id)
            .where(*where).order_by(*order))
    if limit is not None:
        stmt = stmt.limit(limit)
    return db.session.execute(stmt).all()


def _refund_row(raw) -> RefundRow:
    refund, email, name, purpose, title, amount, paid_at = raw
    return RefundRow(refund, email, name, Purpose(purpose).label, title, amount, paid_at)


def refunds_page(state: RefundState | None, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Refunds in ``state`` (every one for None), newest first; one statement."""
    where = [Refund.state == state] if state is not None else []
    position = decode_cursor(cursor)
    if position is not None:
        where.append(tuple_(Refund.created_at, Refund.id) < tuple_(*position))
    rows = _refund_rows(where, (Refund.created_at.desc(), Refund.id.desc()), size + 1)
    items = [_refund_row(r) for r in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        next_cursor = encode_cursor(items[-1].refund.created_at, items[-1].refund.id)
    return Page(items, next_cursor)


def refund_row(refund_id: uuid.UUID) -> RefundRow:
    rows = _refund_rows([Refund.id == refund_id], (Refund.id,))
    if not rows:
        raise NotFound("There is no such refund.")
    return _refund_row(rows[0])


def refund_counts() -> dict[str, int]:
    """Refunds per state and in all, each counted up to ``COUNT_CAP + 1``; one statement."""
    columns = [count_upto(Refund, Refund.state == s).label(s.value) for s in RefundState]
    row = db.session.execute(select(*columns, count_upto(Refund).label("all"))).one()
    return dict(row._mapping)


def refund_requests_waiting() -> int:
    """Course refund requests waiting for finance, counted up to ``COUNT_CAP + 1``."""
    return db.session.scalar(select(count_upto(Refund, Refund.state == RefundState.REQUESTED)))


# -- The webhook log ------------------------------------------------------------------------------


@dataclass
class WebhookFilters:
    provider: str = ""
    outcome: str = ""
    event: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in (("provider", self.provider), ("outcome", self.outcome), ("event", self.event)) if v}


#: The webhook log's columns (not the payload or headers: those are on an event's own page).
_WEBHOOK_COLUMNS = (WebhookEvent.id, WebhookEvent.provider, WebhookEvent.event_id, WebhookEvent.event_type,
                    WebhookEvent.received_at, WebhookEvent.verified, WebhookEvent.applied_at, WebhookEvent.outcome,
                    WebhookEvent.detail, WebhookEvent.payment_id)


def webhooks_page(filters: WebhookFilters, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Webhooks newest received first, filtered; one statement."""
    where = []
    if filters.provider:
        if filters.provider in PROVIDER_NAMES and filters.provider != "wallet":
            where.append(WebhookEvent.provider == filters.provider)
        else:
            filters.errors["provider"] = "Unknown provider."
    outcome = _enum_filter(filters.outcome, WebhookOutcome, filters.errors, "outcome", "Unknown outcome.")
    if outcome is not None:
        where.append(WebhookEvent.outcome == outcome)
    if filters.event.strip():
        where.append(WebhookEvent.event_id == filters.event.strip())
    position = decode_cursor(cursor)
    if position is not None:
        where.append(tuple_(WebhookEvent.received_at, WebhookEvent.id) < tuple_(*position))
    rows = db.session.execute(select(*_WEBHOOK_COLUMNS).where(*where)
                              .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc()).limit(size + 1)).all()
    items = rows[:size]
    next_cursor = encode_cursor(items[-1].received_at, items[-1].id) if len(rows) > size else None
    return Page(items, next_cursor)


def webhook_event(event_id: uuid.UUID) -> WebhookEvent:
    hook = db.session.get(WebhookEvent, event_id)
    if hook is None:
        raise NotFound("There is no such webhook.")
    return hook


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
    ran_at: datetime
    ran_by: str
    payments: int
    refunds: int
    #: Payments and refunds brought up to date from the providers first (None: not asked to).
    fixed: int | None
    period: str
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
    """The last run kept by ``admin_services.reconcile_and_record``, with the payments its
    differences name (two statements)."""
    from portal.money.payments.admin_services import RECONCILIATION_METRIC
    from portal.platform.analytics.models import Metric

    metric = db.session.scalar(select(Metric).where(Metric.name == RECONCILIATION_METRIC)
                               .order_by(Metric.recorded_at.desc()).limit(1))
    if metric is None:
        return None
    labels = metric.labels or {}
    kept = [d for d in labels.get("differences", []) if _uuid_or_none(d.get("payment_id"))]
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
    return LastReconciliation(metric.recorded_at, str(labels.get("ran_by", "")), int(labels.get("payments", 0)),
                              int(labels.get("refunds", 0)), labels.get("fixed"), str(labels.get("period", "")),
                              int(metric.value), rows, bool(labels.get("truncated")))
