"""Reads for the case pages and the officers' dashboard: a fixed, small number of statements per
page whatever the number of cases, alerts or events (keyset pagination on the queues)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    Row,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from portal.accounts.models import User, UserStatus
from portal.compliance import count_upto
from portal.compliance.aml.models import MonitoringAlert
from portal.compliance.cases import services as case_services
from portal.compliance.cases.models import CaseEvent, CaseSeverity, CaseStatus, SuspiciousActivity
from portal.compliance.kyc.models import KycStatus, KycVerification
from portal.compliance.kyc.queries import approved_levels, level_from_approved
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.money.wallets.models import Transaction, Wallet, WalletStatus
from portal.pagination import decode_ranked_cursor, encode_ranked_cursor

QUEUE_PAGE = 25
MAX_ALERTS_SHOWN = 50
MAX_EVENTS_SHOWN = 300
QUEUES = ("unassigned", "mine", "escalated", "all")
#: The queue the case page opens on: the same for every officer, since unassigned cases are the
#: ones nobody is working on yet (each officer may open this one, see ``queues_for``).
DEFAULT_QUEUE = "unassigned"
SUPERVISOR_QUEUES = ("escalated", "all")
#: The statuses of a case not closed yet.
OPEN_STATUSES = tuple(status for status in CaseStatus if status != CaseStatus.CLOSED)
SEVERITY_ORDER = (CaseSeverity.CRITICAL, CaseSeverity.HIGH, CaseSeverity.MEDIUM, CaseSeverity.LOW)
#: Age buckets of open cases, in days since detection: (label, lower bound, upper bound or None).
AGE_BUCKETS = (("Under 7 days", 0, 7), ("7-14 days", 7, 14), ("14-30 days", 14, 30), ("Over 30 days", 30, None))
KYC_AGE_BUCKETS = (("Today", 0, 1), ("1-3 days", 1, 3), ("3-7 days", 3, 7), ("Over 7 days", 7, None))
ALERT_DAYS = 14


def queues_for(officer: User) -> tuple[str, ...]:
    return QUEUES if case_services.supervises(officer) else ("unassigned", "mine")


# -- Queues ----------------------------------------------------------------------------------------


@dataclass
class QueueRow:
    #: The case's columns the queue shows (``_QUEUE_COLUMNS``).
    case: Row
    subject_name: str
    subject_email: str
    assignee_name: str | None
    alert_count: int

    @property
    def overdue(self) -> bool:
        return self.case.status != CaseStatus.CLOSED and self.case.due_at < utcnow()

    @property
    def age_days(self) -> int:
        return max(0, (utcnow() - self.case.detected_at).days)

    @property
    def due_in_days(self) -> int:
        return (self.case.due_at - utcnow()).days


@dataclass
class QueuePage:
    queue: str
    rows: list[QueueRow]
    next_cursor: str | None
    counts: dict[str, int] = field(default_factory=dict)


def _queue_filter(queue: str):
    """Which cases a queue holds; "mine" compares with the bound ``officer``."""
    if queue == "unassigned":
        return and_(SuspiciousActivity.assigned_to_id.is_(None),
                    SuspiciousActivity.status.in_([CaseStatus.OPEN, CaseStatus.INVESTIGATING]))
    if queue == "mine":
        return and_(SuspiciousActivity.assigned_to_id == bindparam("officer"),
                    SuspiciousActivity.status.in_(OPEN_STATUSES))
    if queue == "escalated":
        return SuspiciousActivity.status == CaseStatus.ESCALATED
    return true()


def _queue_count_columns(queues: tuple[str, ...]) -> list:
    """How many cases each queue holds (labelled ``count_<queue>``), each counted up to
    ``COUNT_CAP`` and one on the queue's indexes (the page shows "1000+"), so the cost does not
    grow with the cases."""
    return [count_upto(SuspiciousActivity, _queue_filter(q)).label(f"count_{q}") for q in queues]


def _counts_of(row, queues: tuple[str, ...]) -> dict[str, int]:
    return {q: getattr(row, f"count_{q}") for q in queues}


@functools.cache
def _queue_counts_statement(queues: tuple[str, ...]):
    return select(*_queue_count_columns(queues))


def queue_counts(officer: User) -> dict[str, int]:
    """How many cases each queue the officer may see holds, up to the cap (one statement)."""
    queues = queues_for(officer)
    return _counts_of(db.session.execute(_queue_counts_statement(queues), {"officer": officer.id}).one(), queues)


#: What a queue row shows of a case.
_QUEUE_COLUMNS = (SuspiciousActivity.id, SuspiciousActivity.user_id, SuspiciousActivity.title,
                  SuspiciousActivity.status, SuspiciousActivity.severity, SuspiciousActivity.risk_score,
                  SuspiciousActivity.detected_at, SuspiciousActivity.due_at, SuspiciousActivity.closed_at,
                  SuspiciousActivity.assigned_to_id)


@functools.cache
def _queue_statement(name: str, counted: tuple[str, ...], after_rank: int | None, size: int):
    """A queue's page for one shape of request, built once (``officer`` and the cursor's
    ``after_due`` and ``after_id`` are bound; ``after_rank`` is the cursor's part).
    ``counted``: the queues whose counts ride along on each row (uncorrelated subqueries, which
    PostgreSQL runs once).

    The page is chosen before anything is joined to it or counted for it. In "all" the cases
    not closed (rank 0) and the closed ones (rank 1, which pile up for ever) are two parts
    merged by UNION ALL, the closed part walking the due-date index: closed cases are not all
    sorted on every request."""
    key = tuple_(SuspiciousActivity.due_at, SuspiciousActivity.id)
    position = tuple_(bindparam("after_due", type_=SuspiciousActivity.due_at.type),
                      bindparam("after_id", type_=SuspiciousActivity.id.type))
    ranked = ([(0, SuspiciousActivity.status.in_(OPEN_STATUSES)), (1, SuspiciousActivity.status == CaseStatus.CLOSED)]
              if name == "all" else [(0, _queue_filter(name))])
    parts = []
    for rank, where in ranked:
        if after_rank is not None and rank < after_rank:
            continue  # the cursor is past this part
        part = select(*_QUEUE_COLUMNS, literal(rank, Integer).label("rank")).where(where)
        if after_rank == rank:
            part = part.where(key > position)
        parts.append(part.order_by(SuspiciousActivity.due_at, SuspiciousActivity.id).limit(size + 1))
    page = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("page")
    assignee = aliased(User)
    alert_count = count_upto(MonitoringAlert, MonitoringAlert.case_id == page.c.id, correlate=page)
    return (select(page, User.full_name.label("subject_name"), User.email.label("subject_email"),
                   assignee.full_name.label("assignee_name"), alert_count.label("alert_count"),
                   *_queue_count_columns(counted))
            .join(User, User.id == page.c.user_id)
            .outerjoin(assignee, assignee.id == page.c.assigned_to_id)
            .order_by(page.c.rank, page.c.due_at, page.c.id)
            .limit(size + 1))


def queue(officer: User, name: str, cursor: str | None = None, *, size: int = QUEUE_PAGE) -> QueuePage:
    """One page of a queue, soonest due first (closed cases last in "all"). One statement: the
    first page's queue counts ride along on its rows (a second statement only when it is empty)."""
    queues = queues_for(officer)
    if name not in queues:
        raise NotFound("That queue does not exist.")
    position = decode_ranked_cursor(cursor)
    params = {"officer": officer.id}
    if position is not None:
        params["after_due"], params["after_id"] = position[1], position[2]
    counted = queues if cursor is None else ()
    rows = db.session.execute(_queue_statement(name, counted, position[0] if position else None, size),
                              params).all()
    counts = {}
    if counted:
        counts = _counts_of(rows[0], queues) if rows else queue_counts(officer)
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_cursor = encode_ranked_cursor(last.rank, last.due_at, last.id)
    # Each row carries the case's columns under their attribute names: it stands for the case.
    return QueuePage(name, [QueueRow(r, r.subject_name, r.subject_email, r.assignee_name, r.alert_count)
                            for r in rows], next_cursor, counts)


# -- One case --------------------------------------------------------------------------------------


@dataclass
class AlertView:
    #: The alert's ``risk_score`` and ``rules``.
    alert: Row
    #: The transaction's ``id``, ``amount``, ``currency``, ``type``, ``description``, ``created_at``.
    transaction: Row
    #: "to Demo Student 2", "from Deposits".
    counterparty: str
    #: The counterparty's user id when it is a person (for the admins' link), else None.
    counterparty_id: uuid.UUID | None = None
    #: For an alert on card activity: the card authorization's ``card_id``, ``merchant_name``,
    #: ``mcc``, ``merchant_country``, ``merchant_amount``/``merchant_currency``,
    #: ``card_amount``/``card_currency`` (the wallet's), ``card_state`` and ``decline_reason``.
    card: Row | None = None


@dataclass
class EventView:
    #: The event's columns but its attachment (``_EVENT_COLUMNS``).
    event: Row
    actor_name: str | None


@dataclass(frozen=True)
class CaseSubject:
    id: uuid.UUID
    full_name: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class WalletLine:
    currency: str
    balance: Decimal
    locked_balance: Decimal
    status: WalletStatus


@dataclass(frozen=True)
class Officer:
    id: uuid.UUID
    full_name: str


@dataclass
class CaseView:
    #: The case's columns (``_CASE_COLUMNS``).
    case: Row
    subject: CaseSubject
    assignee_name: str | None
    kyc_level: int
    wallets: list[WalletLine]
    alerts: list[AlertView]
    #: The case's alerts, counted up to ``COUNT_CAP`` and one.
    alert_total: int
    events: list[EventView]
    events_truncated: bool
    officers: list[Officer]
    can_act: bool
    supervises: bool

    @property
    def overdue(self) -> bool:
        return self.case.status != CaseStatus.CLOSED and self.case.due_at < utcnow()

    @property
    def age_days(self) -> int:
        return max(0, (utcnow() - self.case.detected_at).days)


_CASE_COLUMNS = (SuspiciousActivity.id, SuspiciousActivity.user_id, SuspiciousActivity.title,
                 SuspiciousActivity.status, SuspiciousActivity.severity, SuspiciousActivity.risk_score,
                 SuspiciousActivity.detected_at, SuspiciousActivity.due_at, SuspiciousActivity.assigned_to_id,
                 SuspiciousActivity.disposition, SuspiciousActivity.closed_at, SuspiciousActivity.report,
                 SuspiciousActivity.report_generated_at)
_EVENT_COLUMNS = (CaseEvent.id, CaseEvent.kind, CaseEvent.body, CaseEvent.data, CaseEvent.attachment_name,
                  CaseEvent.created_at)


@functools.cache
def _case_statement(with_officers: bool):
    """The case with everything about its subject the page shows, in one statement built once
    (``case_id`` bound): the subject and the assignee's name, the subject's wallets and approved
    verifications (JSON arrays), the case's alerts counted up to the cap and, ``with_officers``,
    the officers a supervisor may assign it to."""
    assignee = aliased(User)
    wallets = (select(func.json_agg(aggregate_order_by(
                   func.json_build_array(Wallet.currency, cast(Wallet.balance, Text), cast(Wallet.locked_balance, Text),
                                         Wallet.status), Wallet.currency)))
               .where(Wallet.user_id == SuspiciousActivity.user_id).scalar_subquery())
    columns = [*_CASE_COLUMNS, User.full_name.label("subject_name"), User.email.label("subject_email"),
               User.created_at.label("subject_created_at"), assignee.full_name.label("assignee_name"),
               wallets.label("wallets"), approved_levels(SuspiciousActivity.user_id).label("kyc_levels"),
               count_upto(MonitoringAlert, MonitoringAlert.case_id == SuspiciousActivity.id,
                          correlate=SuspiciousActivity).label("alert_total")]
    if with_officers:
        officer = aliased(User)
        columns.append(select(func.json_agg(aggregate_order_by(
            func.json_build_array(officer.id, officer.full_name), officer.full_name, officer.id)))
            .where(officer.role.in_(case_services.OFFICER_ROLES), officer.status == UserStatus.ACTIVE)
            .scalar_subquery().label("officers"))
    return (select(*columns)
            .join(User, User.id == SuspiciousActivity.user_id)
            .outerjoin(assignee, assignee.id == SuspiciousActivity.assigned_to_id)
            .where(SuspiciousActivity.id == bindparam("case_id")))


@functools.cache
def _alerts_statement():
    """The case's latest alerts with what each is about (``case_id`` bound): a ledger movement
    and its counterparties, or a card authorization (a declined one has no ledger row, hence the
    outer joins), with its merchant, amounts, state and decline reason."""
    from portal.money.cards.models import CardTransaction

    debit_user, credit_user = aliased(User), aliased(User)
    debit_wallet, credit_wallet = aliased(Wallet), aliased(Wallet)
    return (select(MonitoringAlert.user_id.label("alert_user_id"), MonitoringAlert.risk_score, MonitoringAlert.rules,
                   Transaction.id, Transaction.amount, Transaction.currency, Transaction.type, Transaction.description,
                   func.coalesce(Transaction.created_at, CardTransaction.created_at).label("created_at"),
                   Transaction.debit_user_id, Transaction.credit_user_id,
                   debit_user.full_name.label("debit_name"), credit_user.full_name.label("credit_name"),
                   debit_wallet.system_name.label("debit_system"), credit_wallet.system_name.label("credit_system"),
                   CardTransaction.id.label("card_id"), CardTransaction.merchant_name, CardTransaction.mcc,
                   CardTransaction.merchant_country, CardTransaction.merchant_amount,
                   CardTransaction.merchant_currency, CardTransaction.amount.label("card_amount"),
                   CardTransaction.currency.label("card_currency"), CardTransaction.state.label("card_state"),
                   CardTransaction.decline_reason)
            .outerjoin(Transaction, Transaction.id == MonitoringAlert.transaction_id)
            .outerjoin(debit_wallet, debit_wallet.id == Transaction.debit_wallet_id)
            .outerjoin(credit_wallet, credit_wallet.id == Transaction.credit_wallet_id)
            .outerjoin(debit_user, debit_user.id == Transaction.debit_user_id)
            .outerjoin(credit_user, credit_user.id == Transaction.credit_user_id)
            .outerjoin(CardTransaction, CardTransaction.id == MonitoringAlert.card_transaction_id)
            .where(MonitoringAlert.case_id == bindparam("case_id"))
            .order_by(MonitoringAlert.created_at.desc(), MonitoringAlert.id.desc())
            .limit(MAX_ALERTS_SHOWN))


@functools.cache
def _events_statement():
    """The case's timeline, newest first, with each actor's name (``case_id`` bound)."""
    actor = aliased(User)
    return (select(*_EVENT_COLUMNS, actor.full_name.label("actor_name"))
            .outerjoin(actor, actor.id == CaseEvent.actor_id)
            .where(CaseEvent.case_id == bindparam("case_id"))
            .order_by(CaseEvent.created_at.desc(), CaseEvent.id.desc())
            .limit(MAX_EVENTS_SHOWN + 1))


def _alert_view(row) -> AlertView:
    if row.card_id is not None:
        return AlertView(row, row, f"at {row.merchant_name or 'an unnamed merchant'}", card=row)
    if row.debit_user_id == row.alert_user_id:
        other = row.credit_name or (row.credit_system.label if row.credit_system else "")
        return AlertView(row, row, f"to {other}", row.credit_user_id)
    other = row.debit_name or (row.debit_system.label if row.debit_system else "")
    return AlertView(row, row, f"from {other}", row.debit_user_id)


def case_view(officer: User, case_id: uuid.UUID) -> CaseView:
    """Everything the case page shows, in three statements: the case with its subject, its
    latest alerts, its timeline."""
    if not case_services.is_officer(officer):
        raise NotFound("That case does not exist.")
    supervises = case_services.supervises(officer)
    params = {"case_id": case_id}
    row = db.session.execute(_case_statement(supervises), params).first()
    if row is None:
        raise NotFound("That case does not exist.")
    alerts = [_alert_view(alert) for alert in db.session.execute(_alerts_statement(), params)]
    event_rows = db.session.execute(_events_statement(), params).all()
    officers = []
    if supervises and row.status != CaseStatus.CLOSED:
        officers = [Officer(uuid.UUID(officer_id), name) for officer_id, name in row.officers or ()]
    return CaseView(
        case=row, subject=CaseSubject(row.user_id, row.subject_name, row.subject_email, row.subject_created_at),
        assignee_name=row.assignee_name, kyc_level=level_from_approved(row.kyc_levels),
        wallets=[WalletLine(currency, Decimal(balance), Decimal(locked), WalletStatus(status))
                 for currency, balance, locked, status in row.wallets or ()],
        alerts=alerts, alert_total=row.alert_total,
        events=[EventView(event, event.actor_name) for event in event_rows[:MAX_EVENTS_SHOWN]],
        events_truncated=len(event_rows) > MAX_EVENTS_SHOWN,
        officers=officers, can_act=case_services.may_act(officer, row), supervises=supervises,
    )


def case_summary(officer: User, case_id: uuid.UUID) -> SuspiciousActivity:
    return case_services.case_for(officer, case_id)


# -- The officers' dashboard -----------------------------------------------------------------------


@dataclass
class Dashboard:
    #: severity -> [count per AGE_BUCKETS]
    open_by_age: dict[CaseSeverity, list[int]]
    open_total: int
    overdue: int
    #: status -> [count per KYC_AGE_BUCKETS]
    kyc_backlog: dict[KycStatus, list[int]]
    #: (day, count) for the last ALERT_DAYS days, oldest first.
    alerts_per_day: list[tuple[date, int]]
    queue_counts: dict[str, int]

    @property
    def alerts_max(self) -> int:
        return max((count for _, count in self.alerts_per_day), default=0)

    @property
    def alerts_total(self) -> int:
        return sum(count for _, count in self.alerts_per_day)

    @property
    def kyc_total(self) -> int:
        return sum(sum(v) for v in self.kyc_backlog.values())


def _bucket_expr(column, buckets, now):
    """The index of the age bucket ``column`` falls in at ``now``: ``width_bucket`` over the
    buckets' bounds in days (0 below the first, one more past each). Shorter than a CASE with a
    branch per bucket, which kept the dashboard's statement over the length psycopg caches."""
    bounds = ", ".join(str(upper) for _label, _lower, upper in buckets if upper is not None)
    return func.width_bucket(func.extract("epoch", now - column) / 86400, literal_column(f"ARRAY[{bounds}]"))


def _json_rows(subquery):
    """A scalar subquery: the rows of ``subquery`` as one JSON array of arrays (NULL when none)."""
    return select(func.json_agg(func.json_build_array(*subquery.c))).select_from(subquery).scalar_subquery()


@functools.cache
def _dashboard_statement(queues: tuple[str, ...]):
    """The whole dashboard in one statement, built once (``now``, ``since`` and ``officer``
    are bound): each figure a subquery. Each reads only what it shows: open cases (the status
    index, never the closed cases, which pile up), verifications waiting (an index-only scan of the queue index), the
    alerts of the last ``ALERT_DAYS`` days (the alerts' time index) and the queue counts, which
    stop at the cap."""
    now = bindparam("now", type_=DateTime(timezone=True))
    bucket = _bucket_expr(SuspiciousActivity.detected_at, AGE_BUCKETS, now).label("bucket")
    open_cases = (select(SuspiciousActivity.severity, bucket, func.count(),
                         func.count().filter(SuspiciousActivity.due_at < now))
                  .where(SuspiciousActivity.status.in_(OPEN_STATUSES))
                  .group_by(SuspiciousActivity.severity, bucket).subquery())
    kyc_bucket = _bucket_expr(KycVerification.submitted_at, KYC_AGE_BUCKETS, now).label("bucket")
    waiting = (select(KycVerification.status, kyc_bucket, func.count())
               .where(KycVerification.status.in_(_KYC_WAITING))
               .group_by(KycVerification.status, kyc_bucket).subquery())
    day = cast(func.timezone("UTC", MonitoringAlert.created_at), Date).label("day")
    alerts = (select(day, func.count())
              .where(MonitoringAlert.created_at >= bindparam("since", type_=DateTime(timezone=True)))
              .group_by(day).subquery())
    return select(_json_rows(open_cases).label("open_cases"), _json_rows(waiting).label("kyc_waiting"),
                  _json_rows(alerts).label("alerts"), *_queue_count_columns(queues))


_KYC_WAITING = (KycStatus.SUBMITTED, KycStatus.AWAITING_SECOND)


def dashboard(officer: User, now: datetime | None = None) -> Dashboard:
    """One statement (``_dashboard_statement``): open cases by severity and age with the
    overdue count, the KYC backlog by status and age, alerts per day, and the queue counts."""
    now = now or utcnow()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=ALERT_DAYS - 1)
    queues = queues_for(officer)
    row = db.session.execute(_dashboard_statement(queues), {
        "now": now, "since": datetime(first.year, first.month, first.day, tzinfo=UTC), "officer": officer.id,
    }).one()
    open_by_age = {severity: [0] * len(AGE_BUCKETS) for severity in SEVERITY_ORDER}
    overdue = 0
    for severity, index, count, late in row.open_cases or ():
        open_by_age[CaseSeverity(severity)][int(index)] += count
        overdue += late
    kyc_backlog = {status: [0] * len(KYC_AGE_BUCKETS) for status in _KYC_WAITING}
    for status, index, count in row.kyc_waiting or ():
        kyc_backlog[KycStatus(status)][int(index)] += count
    per_day = {date.fromisoformat(day): count for day, count in row.alerts or ()}
    alerts_per_day = [(first + timedelta(days=i), per_day.get(first + timedelta(days=i), 0)) for i in range(ALERT_DAYS)]
    return Dashboard(open_by_age, sum(sum(v) for v in open_by_age.values()), overdue, kyc_backlog, alerts_per_day,
                     _counts_of(row, queues))


def summary(officer: User) -> dict[str, int]:
    """The home dashboard's card: open cases, overdue ones, the officer's own (one statement).
    Every figure is of open cases, so only they are read (the status index), not the closed
    ones, which pile up."""
    now = utcnow()
    row = db.session.execute(select(
        func.count().label("open"),
        func.count().filter(SuspiciousActivity.due_at < now).label("overdue"),
        func.count().filter(SuspiciousActivity.assigned_to_id == officer.id).label("mine"),
        func.count().filter(SuspiciousActivity.assigned_to_id.is_(None),
                            SuspiciousActivity.status != CaseStatus.ESCALATED).label("unassigned"),
        func.count().filter(SuspiciousActivity.status == CaseStatus.ESCALATED).label("escalated"),
    ).where(SuspiciousActivity.status.in_(OPEN_STATUSES))).one()
    return dict(row._mapping)

