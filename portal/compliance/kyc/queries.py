"""KYC reads for pages and for the money services: a student's level and submissions, the
officers' queue, one verification's review, and the documents behind the access-checked views.

Each function is a fixed number of queries whatever the data size (the page budget is 12)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Row, bindparam, select, tuple_
from sqlalchemy.orm import aliased, defer

from portal.accounts.models import User
from portal.compliance import count_upto
from portal.compliance.aml.models import AmlCheck
from portal.compliance.kyc import documents, levels
from portal.compliance.kyc.models import OPEN_KYC, KycDocument, KycStatus, KycVerification
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

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


#: What a queue row shows of a verification.
_QUEUE_COLUMNS = (KycVerification.id, KycVerification.user_id, KycVerification.level, KycVerification.status,
                  KycVerification.country, KycVerification.document_type, KycVerification.document_expires_on,
                  KycVerification.submitted_at, KycVerification.assigned_to_id, KycVerification.first_approver_id)


def _queue_select():
    student, assignee, first = aliased(User), aliased(User), aliased(User)
    return (select(*_QUEUE_COLUMNS, student.full_name.label("student_name"), student.email.label("student_email"),
                   assignee.full_name.label("assignee_name"), first.full_name.label("first_approver_name"))
            .join(student, student.id == KycVerification.user_id)
            .outerjoin(assignee, assignee.id == KycVerification.assigned_to_id)
            .outerjoin(first, first.id == KycVerification.first_approver_id))


@functools.cache
def _queue_statement(status: str, level: bool, older: bool, assigned: str, after: bool):
    """The queue's statement for one shape of filters, built once (building it costs more than
    running it); the values are bound at execution: ``level``, ``before``, ``officer``,
    ``after_at`` and ``after_id``."""
    stmt = _queue_select()
    statuses = STATUS_FILTERS[status]
    if statuses is not None:
        stmt = stmt.where(KycVerification.status.in_(statuses))
    if level:
        stmt = stmt.where(KycVerification.level == bindparam("level"))
    if older:
        stmt = stmt.where(KycVerification.submitted_at < bindparam("before", type_=KycVerification.submitted_at.type))
    if assigned == "unassigned":
        stmt = stmt.where(KycVerification.assigned_to_id.is_(None))
    elif assigned == "mine":
        stmt = stmt.where(KycVerification.assigned_to_id == bindparam("officer"))
    if after:
        stmt = stmt.where(tuple_(KycVerification.submitted_at, KycVerification.id)
                          > tuple_(bindparam("after_at", type_=KycVerification.submitted_at.type),
                                   bindparam("after_id", type_=KycVerification.id.type)))
    return stmt.order_by(KycVerification.submitted_at, KycVerification.id).limit(QUEUE_PAGE + 1)


def _queue_row(row: Row) -> QueueRow:
    # The row carries the verification's columns under their attribute names: it stands for it.
    return QueueRow(row, row.student_name, row.student_email, row.assignee_name, row.first_approver_name)


def queue(officer: User, filters: QueueFilters, cursor: str | None = None,
          now: datetime | None = None) -> QueuePage:
    """Oldest first (the longest wait is worked first), keyset on (submittedAt, id): one query."""
    position = decode_cursor(cursor)
    params = {"level": filters.level, "officer": officer.id}
    if filters.older_than_days:
        params["before"] = (now or utcnow()) - timedelta(days=filters.older_than_days)
    if position is not None:
        params["after_at"], params["after_id"] = position
    stmt = _queue_statement(filters.status, bool(filters.level), bool(filters.older_than_days), filters.assigned,
                            position is not None)
    rows = db.session.execute(stmt, params).all()
    next_cursor = None
    if len(rows) > QUEUE_PAGE:
        rows = rows[:QUEUE_PAGE]
        last = rows[-1]
        next_cursor = encode_cursor(last.submitted_at, last.id)
    return QueuePage([_queue_row(row) for row in rows], next_cursor)


@functools.cache
def _queue_row_statement():
    return _queue_select().where(KycVerification.id == bindparam("verification_id"))


def queue_row(verification_id: uuid.UUID) -> QueueRow:
    row = db.session.execute(_queue_row_statement(), {"verification_id": verification_id}).first()
    if row is None:
        raise NotFound("That verification does not exist.")
    return _queue_row(row)


@functools.cache
def _open_counts_statement():
    waiting = KycVerification.status.in_(OPEN_KYC)
    return select(count_upto(KycVerification, waiting).label("open"),
                  count_upto(KycVerification, waiting, KycVerification.assigned_to_id.is_(None)).label("unassigned"))


def open_counts() -> dict[str, int]:
    """How many verifications wait, and how many of them nobody has taken (one query), each
    counted up to ``COUNT_CAP`` and one (the page shows "1000+"): on the queue's index, never
    every open row however long the backlog."""
    return dict(db.session.execute(_open_counts_statement()).one()._mapping)


# ---------------------------------------------------------------------------------- one review


@dataclass
class Review:
    row: QueueRow
    student: User
    data: dict
    documents: list
    #: The student's other verifications, newest first (without their personal data).
    history: list[KycVerification]
    level: int
    screening: AmlCheck | None
    decided_by_name: str | None

    @property
    def verification(self) -> KycVerification:
        return self.row.verification


def review(officer: User, verification_id: uuid.UUID) -> Review:  # noqa: ARG001 - officers' view
    """Everything the review page shows, in five queries."""
    student, assignee, first, decider = aliased(User), aliased(User), aliased(User), aliased(User)
    found = db.session.execute(
        select(KycVerification, student, assignee.full_name, first.full_name, decider.full_name)
        .join(student, student.id == KycVerification.user_id)
        .outerjoin(assignee, assignee.id == KycVerification.assigned_to_id)
        .outerjoin(first, first.id == KycVerification.first_approver_id)
        .outerjoin(decider, decider.id == KycVerification.decided_by_id)
        .where(KycVerification.id == verification_id)).first()
    if found is None:
        raise NotFound("That verification does not exist.")
    verification, user, assignee_name, first_name, decider_name = found
    order = list(documents.KIND_LABELS)
    docs = sorted(db.session.execute(select(*_DOCUMENT_COLUMNS).where(KycDocument.verification_id == verification.id)),
                  key=lambda doc: order.index(doc.kind.value))
    history = list(db.session.scalars(
        select(KycVerification).options(defer(KycVerification.data_encrypted))
        .where(KycVerification.user_id == user.id)
        .order_by(KycVerification.submitted_at.desc(), KycVerification.id.desc()).limit(50)))
    screening = db.session.scalar(select(AmlCheck).where(AmlCheck.user_id == user.id)
                                  .order_by(AmlCheck.created_at.desc(), AmlCheck.id.desc()).limit(1))
    data = unseal(verification)
    row = QueueRow(verification, user.full_name, user.email, assignee_name, first_name)
    return Review(row, user, data, docs, [h for h in history if h.id != verification.id],
                  level_from(history, utcnow().date()), screening, decider_name)


def officer_document(officer: User, document_id: uuid.UUID) -> tuple[KycDocument, bytes]:  # noqa: ARG001
    """A document for a compliance officer (the view declares the permission; row-level security
    lets officers read every document)."""
    doc = db.session.get(KycDocument, document_id)
    if doc is None:
        raise NotFound("That document does not exist.")
    return doc, documents.decrypt(doc.id, doc.user_id, doc.content_encrypted)

