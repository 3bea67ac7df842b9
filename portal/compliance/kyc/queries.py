"""KYC reads for pages and for the money services: a student's level and submissions, the
officers' queue, one verification's review, and the documents behind the access-checked views.

Each function is a fixed number of queries whatever the data size (the page budget is 12)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Row, bindparam, func, literal, select, true, tuple_, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance import count_upto
from portal.compliance.aml.models import AmlCheck, AmlStatus
from portal.compliance.kyc import documents, levels
from portal.compliance.kyc.models import OPEN_KYC, KycDocument, KycDocumentKind, KycStatus, KycVerification
from portal.compliance.kyc.personal_data import unseal
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.pagination import decode_cursor, encode_cursor

QUEUE_PAGE = 25
_DOCUMENT_COLUMNS = (KycDocument.id, KycDocument.verification_id, KycDocument.user_id, KycDocument.kind,
                     KycDocument.original_name, KycDocument.content_type, KycDocument.size_bytes,
                     KycDocument.created_at)


# ---------------------------------------------------------------------------------- levels


def own_verifications(user_id: uuid.UUID) -> list[KycVerification]:
    """Every verification of the student, newest first (a handful; one query)."""
    return list(db.session.scalars(select(KycVerification).where(KycVerification.user_id == user_id)
                                   .order_by(KycVerification.submitted_at.desc(), KycVerification.id.desc())))


def level_from(rows: list[KycVerification], today: date) -> int:
    """The effective level the rows give: every level up to it approved, and the level-2 document
    (the latest-expiring approved one) not expired."""
    approved: dict[int, list[KycVerification]] = {}
    for row in rows:
        if row.status == KycStatus.APPROVED:
            approved.setdefault(row.level, []).append(row)
    current = 0
    for number in range(1, levels.MAX_LEVEL + 1):
        if number not in approved:
            break
        if number == 2 and not _valid_document(approved[2], today):
            break
        current = number
    return current


def _valid_document(rows: list[KycVerification], today: date) -> bool:
    expiry = max((row.document_expires_on for row in rows if row.document_expires_on), default=None)
    return expiry is not None and expiry >= today


def document_expiry(rows: list[KycVerification]) -> date | None:
    return max((row.document_expires_on for row in rows
                if row.level == 2 and row.status == KycStatus.APPROVED and row.document_expires_on), default=None)


def effective_level(user_id: uuid.UUID, today: date | None = None) -> int:
    """The student's verification level now (0 to 3), one query. Row-level security lets a
    student read their own rows, so this works in the student's own request."""
    today = today or utcnow().date()
    rows = db.session.execute(
        select(KycVerification.level, KycVerification.status, KycVerification.document_expires_on)
        .where(KycVerification.user_id == user_id, KycVerification.status == KycStatus.APPROVED)).all()
    shaped = [KycVerification(level=row.level, status=row.status, document_expires_on=row.document_expires_on)
              for row in rows]
    return level_from(shaped, today)


@dataclass(frozen=True)
class _Approved:
    level: int
    document_expires_on: date | None
    status: KycStatus = KycStatus.APPROVED


def approved_levels(user_id):
    """A scalar subquery, correlated to ``user_id`` (a column of the enclosing query): the
    student's approved verifications as a JSON array of ``[level, document expiry]``, for
    ``level_from_approved``: another page's statement reads the student's level with its own."""
    return (select(func.json_agg(func.json_build_array(KycVerification.level, KycVerification.document_expires_on)))
            .where(KycVerification.user_id == user_id, KycVerification.status == KycStatus.APPROVED)
            .scalar_subquery())


def level_from_approved(items: list | None, today: date | None = None) -> int:
    """``effective_level`` from what ``approved_levels`` read."""
    rows = [_Approved(level, date.fromisoformat(expiry) if expiry else None) for level, expiry in items or ()]
    return level_from(rows, today or utcnow().date())


# ---------------------------------------------------------------------------------- the student


@dataclass
class StudentOverview:
    level: int
    verifications: list[KycVerification]
    documents: dict[uuid.UUID, list]
    #: The latest submission of each level (None: never submitted).
    latest: dict[int, KycVerification | None]
    document_expires_on: date | None
    expired: bool
    renewal_due: bool
    #: The level the form offers next (None: nothing to submit now).
    next_level: int | None
    open_levels: list[int] = field(default_factory=list)


def student_overview(student: User, today: date | None = None) -> StudentOverview:
    """What the verification page shows: two queries."""
    today = today or utcnow().date()
    rows = own_verifications(student.id)
    docs: dict[uuid.UUID, list] = {}
    if rows:
        for doc in db.session.execute(select(*_DOCUMENT_COLUMNS).where(KycDocument.user_id == student.id)
                                      .order_by(KycDocument.created_at, KycDocument.kind)):
            docs.setdefault(doc.verification_id, []).append(doc)
        order = list(documents.KIND_LABELS)
        for listed in docs.values():
            listed.sort(key=lambda doc: order.index(doc.kind.value))
    current = level_from(rows, today)
    latest = {number: next((row for row in rows if row.level == number), None) for number in (1, 2, 3)}
    expiry = document_expiry(rows)
    approved_two = any(row.level == 2 and row.status == KycStatus.APPROVED for row in rows)
    expired = approved_two and (expiry is None or expiry < today)
    renewal_due = (current >= 2 and expiry is not None
                   and expiry - today <= timedelta(days=levels.RENEWAL_WINDOW_DAYS))
    open_levels = sorted({row.level for row in rows if row.status in OPEN_KYC})
    candidate = 2 if (expired or renewal_due) and current >= 1 else current + 1
    next_level = candidate if candidate <= levels.MAX_LEVEL and candidate not in open_levels else None
    return StudentOverview(current, rows, docs, latest, expiry, expired, renewal_due, next_level, open_levels)


def own_document(student: User, document_id: uuid.UUID) -> tuple[KycDocument, bytes]:
    """A student's own document, decrypted; anyone else's does not exist for them."""
    doc = db.session.scalar(select(KycDocument).where(KycDocument.id == document_id,
                                                      KycDocument.user_id == student.id))
    if doc is None:
        raise NotFound("That document does not exist.")
    return doc, documents.decrypt(doc.id, doc.user_id, doc.content_encrypted)


# ---------------------------------------------------------------------------------- the queue


STATUS_FILTERS = {"open": OPEN_KYC, "submitted": (KycStatus.SUBMITTED,),
                  "awaiting_second": (KycStatus.AWAITING_SECOND,), "approved": (KycStatus.APPROVED,),
                  "rejected": (KycStatus.REJECTED,), "revision_requested": (KycStatus.REVISION_REQUESTED,),
                  "all": None}
ASSIGNED_FILTERS = ("all", "unassigned", "mine")


@dataclass(frozen=True)
class QueueFilters:
    level: int | None = None
    status: str = "open"
    older_than_days: int | None = None
    assigned: str = "all"

    @classmethod
    def parse(cls, args) -> QueueFilters:
        """From query arguments; anything unexpected falls back to the default."""
        level = args.get("level", "")
        days = args.get("age", "")
        status = args.get("status", "open")
        assigned = args.get("assigned", "all")
        return cls(level=int(level) if level in ("1", "2", "3") else None,
                   status=status if status in STATUS_FILTERS else "open",
                   older_than_days=int(days) if days.isdigit() and 0 < int(days) <= 3650 else None,
                   assigned=assigned if assigned in ASSIGNED_FILTERS else "all")

    def as_args(self) -> dict:
        args = {"status": self.status, "assigned": self.assigned}
        if self.level:
            args["level"] = self.level
        if self.older_than_days:
            args["age"] = self.older_than_days
        return args


@dataclass(frozen=True)
class QueueRow:
    #: The verification's columns the queue shows (``_QUEUE_COLUMNS``), never its personal data.
    verification: Row
    student_name: str
    student_email: str
    assignee_name: str | None
    first_approver_name: str | None


@dataclass
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None
    #: ``open_counts`` when asked for with the page.
    counts: dict[str, int] | None = None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


#: What a queue row shows of a verification.
_QUEUE_COLUMNS = (KycVerification.id, KycVerification.user_id, KycVerification.level, KycVerification.status,
                  KycVerification.country, KycVerification.document_type, KycVerification.document_expires_on,
                  KycVerification.submitted_at, KycVerification.assigned_to_id, KycVerification.first_approver_id)


def _with_names(verifications, columns):
    """``columns`` of ``verifications`` (the table or a subquery of it) with the names of the
    student, the assignee and the first approver."""
    student, assignee, first = aliased(User), aliased(User), aliased(User)
    return (select(*columns, student.full_name.label("student_name"), student.email.label("student_email"),
                   assignee.full_name.label("assignee_name"), first.full_name.label("first_approver_name"))
            .join(student, student.id == verifications.c.user_id)
            .outerjoin(assignee, assignee.id == verifications.c.assigned_to_id)
            .outerjoin(first, first.id == verifications.c.first_approver_id))


def _queue_select():
    return _with_names(KycVerification.__table__, _QUEUE_COLUMNS)


@functools.cache
def _queue_statement(status: str, level: bool, older: bool, assigned: str, after: bool, counted: bool = False):
    """The queue's statement for one shape of filters, built once (building it costs more than
    running it); the values are bound at execution: ``level``, ``before``, ``officer``,
    ``after_at`` and ``after_id``. ``counted``: the counts above the queue (``open_counts``)
    ride along on each row (uncorrelated subqueries, which PostgreSQL runs once).

    The page is chosen before any name is joined, one part per status, each walking the queue
    index (status, submittedAt) in order, the parts merged by UNION ALL: the cost is the page's,
    not the number of verifications waiting (or, for "all", ever made)."""
    where = []
    if level:
        where.append(KycVerification.level == bindparam("level"))
    if older:
        where.append(KycVerification.submitted_at < bindparam("before", type_=KycVerification.submitted_at.type))
    if assigned == "unassigned":
        where.append(KycVerification.assigned_to_id.is_(None))
    elif assigned == "mine":
        where.append(KycVerification.assigned_to_id == bindparam("officer"))
    if after:
        where.append(tuple_(KycVerification.submitted_at, KycVerification.id)
                     > tuple_(bindparam("after_at", type_=KycVerification.submitted_at.type),
                              bindparam("after_id", type_=KycVerification.id.type)))
    parts = [select(*_QUEUE_COLUMNS).where(KycVerification.status == one, *where)
             .order_by(KycVerification.submitted_at, KycVerification.id).limit(QUEUE_PAGE + 1)
             for one in STATUS_FILTERS[status] or KycStatus]
    page = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("page")
    stmt = _with_names(page, page.c)
    if counted:
        stmt = stmt.add_columns(*_open_count_columns())
    return stmt.order_by(page.c.submitted_at, page.c.id).limit(QUEUE_PAGE + 1)


def _queue_row(row: Row) -> QueueRow:
    # The row carries the verification's columns under their attribute names: it stands for it.
    return QueueRow(row, row.student_name, row.student_email, row.assignee_name, row.first_approver_name)


def queue(officer: User, filters: QueueFilters, cursor: str | None = None,
          now: datetime | None = None, *, counted: bool = False) -> QueuePage:
    """Oldest first (the longest wait is worked first), keyset on (submittedAt, id): one query.
    ``counted``: ``QueuePage.counts`` comes with it (``open_counts``; a second query only when
    the page is empty)."""
    position = decode_cursor(cursor)
    params = {"level": filters.level, "officer": officer.id}
    if filters.older_than_days:
        params["before"] = (now or utcnow()) - timedelta(days=filters.older_than_days)
    if position is not None:
        params["after_at"], params["after_id"] = position
    stmt = _queue_statement(filters.status, bool(filters.level), bool(filters.older_than_days), filters.assigned,
                            position is not None, counted)
    rows = db.session.execute(stmt, params).all()
    counts = None
    if counted:
        counts = {"open": rows[0].open, "unassigned": rows[0].unassigned} if rows else open_counts()
    next_cursor = None
    if len(rows) > QUEUE_PAGE:
        rows = rows[:QUEUE_PAGE]
        last = rows[-1]
        next_cursor = encode_cursor(last.submitted_at, last.id)
    return QueuePage([_queue_row(row) for row in rows], next_cursor, counts)


@functools.cache
def _queue_row_statement():
    return _queue_select().where(KycVerification.id == bindparam("verification_id"))


def queue_row(verification_id: uuid.UUID) -> QueueRow:
    row = db.session.execute(_queue_row_statement(), {"verification_id": verification_id}).first()
    if row is None:
        raise NotFound("That verification does not exist.")
    return _queue_row(row)


def _open_count_columns() -> list:
    waiting = KycVerification.status.in_(OPEN_KYC)
    return [count_upto(KycVerification, waiting).label("open"),
            count_upto(KycVerification, waiting, KycVerification.assigned_to_id.is_(None)).label("unassigned")]


@functools.cache
def _open_counts_statement():
    return select(*_open_count_columns())


def open_counts() -> dict[str, int]:
    """How many verifications wait, and how many of them nobody has taken (one query), each
    counted up to ``COUNT_CAP`` and one (the page shows "1000+"): on the queue's index, never
    every open row however long the backlog."""
    return dict(db.session.execute(_open_counts_statement()).one()._mapping)


# ---------------------------------------------------------------------------------- one review


@dataclass(frozen=True)
class ReviewDocument:
    """A document as the review page lists it (its content stays in the database)."""

    id: str
    kind: KycDocumentKind
    original_name: str
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class HistoryEntry:
    """One of the student's verifications as the review page lists them (no personal data)."""

    id: uuid.UUID
    level: int
    status: KycStatus
    submitted_at: datetime
    document_expires_on: date | None


@dataclass(frozen=True)
class LatestScreening:
    id: uuid.UUID
    status: AmlStatus
    created_at: datetime
    screened_name: str
    screened_birth_date: date | None
    top_score: Decimal
    threshold: Decimal
    hits: list


@dataclass(frozen=True)
class ReviewStudent:
    full_name: str
    email: str


@dataclass
class Review:
    row: QueueRow
    student: ReviewStudent
    data: dict
    documents: list[ReviewDocument]
    #: The student's other verifications, newest first (without their personal data).
    history: list[HistoryEntry]
    level: int
    screening: LatestScreening | None
    decided_by_name: str | None

    @property
    def verification(self) -> Row:
        return self.row.verification


#: The verification's columns the review page reads (with its sealed data, which it shows).
_REVIEW_COLUMNS = (*_QUEUE_COLUMNS, KycVerification.data_encrypted, KycVerification.decided_by_id,
                   KycVerification.decided_at, KycVerification.decision_reason)
_SCREENING_COLUMNS = ("id", "status", "created_at", "screened_name", "screened_birth_date", "top_score",
                      "threshold", "hits")
#: The student's verifications the review lists at most.
HISTORY_SHOWN = 50


def _json_object(**columns):
    return func.json_build_object(*(part for name, column in columns.items() for part in (literal(name), column)))


@functools.cache
def _review_statement():
    """Everything the review page shows in one statement, built once (``verification_id`` is
    bound): the verification with the names of the student and the officers, the student's
    latest screening (a LATERAL subquery, none when never screened), and as JSON arrays the
    verification's documents and the student's latest ``HISTORY_SHOWN`` verifications."""
    student, assignee, first, decider = aliased(User), aliased(User), aliased(User), aliased(User)
    screening = (select(*(getattr(AmlCheck, name).label(f"screening_{name}") for name in _SCREENING_COLUMNS))
                 .where(AmlCheck.user_id == KycVerification.user_id)
                 .order_by(AmlCheck.created_at.desc(), AmlCheck.id.desc()).limit(1).lateral("screening"))
    docs = (select(func.json_agg(_json_object(
                id=KycDocument.id, kind=KycDocument.kind, original_name=KycDocument.original_name,
                content_type=KycDocument.content_type, size_bytes=KycDocument.size_bytes)))
            .where(KycDocument.verification_id == KycVerification.id).scalar_subquery())
    other = aliased(KycVerification)
    recent = (select(other.id, other.level, other.status, other.submitted_at, other.document_expires_on)
              .where(other.user_id == KycVerification.user_id)
              .order_by(other.submitted_at.desc(), other.id.desc()).limit(HISTORY_SHOWN)
              .correlate(KycVerification).subquery("recent"))
    history = (select(func.json_agg(aggregate_order_by(
                   _json_object(id=recent.c.id, level=recent.c.level, status=recent.c.status,
                                submitted_at=recent.c.submitted_at, document_expires_on=recent.c.document_expires_on),
                   recent.c.submitted_at.desc(), recent.c.id.desc())))
               .select_from(recent).scalar_subquery())
    return (select(*_REVIEW_COLUMNS, student.full_name.label("student_name"), student.email.label("student_email"),
                   assignee.full_name.label("assignee_name"), first.full_name.label("first_approver_name"),
                   decider.full_name.label("decided_by_name"), *screening.c, docs.label("documents"),
                   history.label("history"))
            .join(student, student.id == KycVerification.user_id)
            .outerjoin(assignee, assignee.id == KycVerification.assigned_to_id)
            .outerjoin(first, first.id == KycVerification.first_approver_id)
            .outerjoin(decider, decider.id == KycVerification.decided_by_id)
            .outerjoin(screening, true())
            .where(KycVerification.id == bindparam("verification_id")))


def _history_entry(item: dict) -> HistoryEntry:
    expires = item["document_expires_on"]
    return HistoryEntry(uuid.UUID(item["id"]), item["level"], KycStatus(item["status"]),
                        datetime.fromisoformat(item["submitted_at"]), date.fromisoformat(expires) if expires else None)


def review(officer: User, verification_id: uuid.UUID) -> Review:  # noqa: ARG001 - officers' view
    """Everything the review page shows, in one statement (``_review_statement``)."""
    found = db.session.execute(_review_statement(), {"verification_id": verification_id}).first()
    if found is None:
        raise NotFound("That verification does not exist.")
    order = list(documents.KIND_LABELS)
    docs = sorted((ReviewDocument(item["id"], KycDocumentKind(item["kind"]), item["original_name"],
                                  item["content_type"], item["size_bytes"]) for item in found.documents or ()),
                  key=lambda doc: order.index(doc.kind.value))
    history = [_history_entry(item) for item in found.history or ()]
    screening = None
    if found.screening_id is not None:
        screening = LatestScreening(*(getattr(found, f"screening_{name}") for name in _SCREENING_COLUMNS))
    row = QueueRow(found, found.student_name, found.student_email, found.assignee_name, found.first_approver_name)
    return Review(row, ReviewStudent(found.student_name, found.student_email), unseal(found), docs,
                  [h for h in history if h.id != verification_id],
                  level_from(history, utcnow().date()), screening, found.decided_by_name)


def officer_document(officer: User, document_id: uuid.UUID) -> tuple[KycDocument, bytes]:  # noqa: ARG001
    """A document for a compliance officer (the view declares the permission; row-level security
    lets officers read every document)."""
    doc = db.session.get(KycDocument, document_id)
    if doc is None:
        raise NotFound("That document does not exist.")
    return doc, documents.decrypt(doc.id, doc.user_id, doc.content_encrypted)

