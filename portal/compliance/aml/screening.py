"""AML screening of a person against the imported sanctions and PEP watchlist.

``screen_user`` is called at each KYC submission (and by officers on demand): it finds the
candidate entries, scores each of their names against the screened name, keeps those at or
above the threshold as hits, each explained, and stores one ``AmlCheck``. Hits wait for an
officer, who confirms them or marks them a false positive (``review_check``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from flask import current_app
from sqlalchemy import Row, bindparam, case, func, literal, select, tuple_, union_all
from sqlalchemy.orm import aliased

from portal.accounts.models import Role, User, UserStatus
from portal.compliance import count_upto
from portal.compliance.aml import matching
from portal.compliance.aml.models import AmlCheck, AmlStatus, AmlTrigger, WatchlistEntry
from portal.compliance.cases.models import CaseSeverity
from portal.compliance.kyc.models import KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.pagination import Page, decode_ranked_cursor, encode_ranked_cursor
from portal.security.permissions import Permission, has_permission

#: An officer may screen with another threshold, within these bounds: below 50 nearly every
#: name shares enough letters to "match", which buries real hits in noise.
MIN_THRESHOLD = 50
MAX_THRESHOLD = 100
#: Hits kept per check (highest first): beyond this an officer learns nothing more.
MAX_HITS = 20
#: Control characters: never part of a name, a reason or an address (PostgreSQL refuses NUL).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class _Candidate:
    entry_id: uuid.UUID
    name: str
    aliases: tuple[str, ...]
    birth_date: date | None
    country: str | None
    list_source: str
    kind: str
    normalized_names: tuple[str, ...]


class _KeyIndex:
    """Blocking key -> entry ids, for one import of the list, built once per process.

    Building it reads every entry's normalised names (one query) and computes their keys:
    O(E * N) for E entries of N names each, a fraction of a second for tens of thousands. Each
    screening then costs one lookup per key of the screened name, O(K), plus one query for the
    candidates' rows, whatever the list's size. An import has a new ``import_id``, so a new
    list is indexed afresh the first time it is screened against; a process keeps the last two.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_import: dict[uuid.UUID, dict[str, list[uuid.UUID]]] = {}

    def candidates(self, import_id: uuid.UUID, keys: set[str]) -> set[uuid.UUID]:
        index = self._by_import.get(import_id)
        if index is None:
            index = self._build(import_id)
            with self._lock:
                while len(self._by_import) >= 2:
                    self._by_import.pop(next(iter(self._by_import)))
                self._by_import[import_id] = index
        found: set[uuid.UUID] = set()
        for key in keys:
            found.update(index.get(key, ()))
        return found

    @staticmethod
    def _build(import_id: uuid.UUID) -> dict[str, list[uuid.UUID]]:
        index: dict[str, list[uuid.UUID]] = {}
        rows = db.session.execute(select(WatchlistEntry.id, WatchlistEntry.normalized_names)
                                  .where(WatchlistEntry.import_id == import_id))
        for entry_id, names in rows:
            for key in set().union(*(matching.blocking_keys(n) for n in names or ())):
                index.setdefault(key, []).append(entry_id)
        return index


_index = _KeyIndex()


def _load_candidates(screened_keys: set[str]) -> list[_Candidate]:
    """Every entry of the current list sharing at least one blocking key with the screened name
    (two queries once the list is indexed: its import id, then the candidates' rows)."""
    import_id = db.session.scalar(select(WatchlistEntry.import_id).limit(1))
    if import_id is None:
        return []
    ids = _index.candidates(import_id, screened_keys)
    if not ids:
        return []
    rows = db.session.execute(select(
        WatchlistEntry.id, WatchlistEntry.name, WatchlistEntry.aliases, WatchlistEntry.birth_date,
        WatchlistEntry.country, WatchlistEntry.list_source, WatchlistEntry.kind, WatchlistEntry.normalized_names,
    ).where(WatchlistEntry.id.in_(ids))).all()
    return [_Candidate(row.id, row.name, tuple(row.aliases or ()), row.birth_date, row.country, row.list_source,
                       str(row.kind), tuple(row.normalized_names or ())) for row in rows]


def _explain(candidate: _Candidate, screened_name: str, birth_date: date | None,
             country: str | None) -> dict:
    """One candidate scored and explained: its best-matching name or alias, the name score and
    the name parts it is made of, the facts that agreed or disagreed and how much they moved it, and where the entry comes from."""
    names = (candidate.name, *candidate.aliases)
    best_name, best_score, best_parts = names[0], -1.0, []
    for listed in names:
        score, parts = matching.name_match(screened_name, listed)
        if score > best_score:
            best_name, best_score, best_parts = listed, score, parts
    facts = matching.compare_facts(birth_date, country, candidate.birth_date, candidate.country)
    return {
        "entryId": str(candidate.entry_id),
        "name": candidate.name,
        "matchedName": best_name,
        "matchedAlias": best_name != candidate.name,
        "screenedName": screened_name,
        "nameScore": best_score,
        # Part by part: each part of the screened name, its partner in the listed name ("" when
        # left over), the part's score and why (a nickname, a spelling variant, one typo ...).
        "nameParts": [{"screened": part.screened, "listed": part.listed, "score": round(part.score, 1),
                       "how": part.how} for part in best_parts],
        "score": matching.combined_score(best_score, facts),
        "adjustment": facts.adjustment,
        "agreeing": facts.agreeing,
        "disagreeing": facts.disagreeing,
        "listBirthDate": candidate.birth_date.isoformat() if candidate.birth_date else None,
        "listCountry": candidate.country,
        "listSource": candidate.list_source,
        "kind": candidate.kind,
    }


def check_threshold(value) -> Decimal:
    try:
        threshold = Decimal(str(value))
    except ArithmeticError:
        raise DomainError("The threshold must be a number.", field="threshold") from None
    if not threshold.is_finite() or not MIN_THRESHOLD <= threshold <= MAX_THRESHOLD:
        raise DomainError(f"The threshold must be between {MIN_THRESHOLD} and {MAX_THRESHOLD}.", field="threshold")
    return threshold.quantize(Decimal("0.01"))


def find_hits(name: str, birth_date: date | None, country: str | None, threshold: Decimal) -> list[dict]:
    """The explained hits for one person, highest score first."""
    normalized = matching.normalize_name(name)
    if not normalized:
        return []
    keys = matching.blocking_keys(normalized)
    hits = []
    for candidate in _load_candidates(keys):
        hit = _explain(candidate, name, birth_date, country)
        if hit["score"] >= float(threshold):
            hits.append(hit)
    hits.sort(key=lambda h: (-h["score"], h["name"]))
    return hits[:MAX_HITS]


def screen_user(user_id, name: str, birth_date: date | None, country: str | None, *,
                trigger: str | AmlTrigger = AmlTrigger.KYC_SUBMISSION, verification_id=None,
                threshold=None) -> AmlCheck:
    """Screen one person and store the result as an ``AmlCheck`` (added and flushed; the caller
    commits). ``threshold`` defaults to ``AML_MATCH_THRESHOLD``."""
    name = " ".join((name or "").split())
    if _CONTROL.search(name):
        raise DomainError("The name contains a control character.", field="name")
    if not matching.normalize_name(name):
        raise DomainError("A name to screen is required.", field="name")
    if len(name) > 300:
        raise DomainError("The name is too long (300 characters at most).", field="name")
    threshold = check_threshold(current_app.config["AML_MATCH_THRESHOLD"] if threshold is None else threshold)
    country = (country or "").strip().upper() or None
    hits = find_hits(name, birth_date, country, threshold)
    check = AmlCheck(
        user_id=user_id,
        verification_id=verification_id,
        trigger=AmlTrigger(trigger),
        screened_name=name,
        screened_birth_date=birth_date,
        screened_country=country,
        threshold=threshold,
        top_score=Decimal(str(hits[0]["score"])).quantize(Decimal("0.01")) if hits else Decimal(0),
        hits=hits,
        status=AmlStatus.PENDING_REVIEW if hits else AmlStatus.CLEAR,
    )
    db.session.add(check)
    db.session.flush()
    return check


# ---------------------------------------------------------------------------------- officers


class ReviewInvalid(DomainError):
    status_code = 422


#: Decisions an officer may take on a check waiting for review.
DECISIONS = (AmlStatus.CONFIRMED, AmlStatus.FALSE_POSITIVE)
MIN_REASON = 10
MAX_REASON = 1000


def _check_officer(officer: User) -> None:
    if not has_permission(officer.role, Permission.REVIEW_COMPLIANCE) or officer.status != UserStatus.ACTIVE:
        raise Forbidden("Only compliance officers may screen people and review screening hits.")


def _case_severity(hits: list[dict]) -> CaseSeverity:
    """A confirmed sanctions match is critical (no business may continue); a confirmed PEP is
    high (enhanced due diligence, not a ban)."""
    sanction = any(isinstance(h, dict) and h.get("kind") == "sanction" for h in hits or ())
    return CaseSeverity.CRITICAL if sanction else CaseSeverity.HIGH


def _open_case(officer: User, check: AmlCheck) -> None:
    """A confirmed hit opens a case for the student, or joins the one already open."""
    from portal.compliance.cases import services as cases

    top = next((h for h in check.hits or () if isinstance(h, dict)), {})
    title = f"Confirmed watchlist match: {top.get('name', check.screened_name)}"
    if top.get("listSource"):
        title += f" ({top['listSource']})"
    cases.open_or_attach(
        check.user_id,
        title=title,
        severity=_case_severity(check.hits),
        risk_score=int(check.top_score),
        source="aml_screening",
        details={"amlCheckId": str(check.id), "reason": check.review_reason,
                 "hits": [{"entryId": h.get("entryId"), "name": h.get("name"), "score": h.get("score"),
                           "listSource": h.get("listSource"), "kind": h.get("kind")}
                          for h in check.hits if isinstance(h, dict)]},
        actor=officer,
    )


def review_check(officer: User, check_id: uuid.UUID, decision: str | None, reason: str | None) -> AmlCheck:
    """Confirm the hits of a check waiting for review, or mark them a false positive, with a
    reason (kept, never shown to the student; the student is not told). The row is locked, so
    two officers deciding at once cannot both succeed. A confirmation opens or joins a case."""
    _check_officer(officer)
    try:
        target = AmlStatus(decision or "")
    except ValueError:
        target = None
    if target not in DECISIONS:
        raise ReviewInvalid("Choose a decision: confirmed match or false positive.", field="decision")
    reason = " ".join((reason or "").split())
    if _CONTROL.search(reason):
        raise ReviewInvalid("The reason contains a control character.", field="reason")
    if len(reason) < MIN_REASON:
        raise ReviewInvalid(f"Give the reason for the decision (at least {MIN_REASON} characters): "
                            "which facts decided it.", field="reason")
    if len(reason) > MAX_REASON:
        raise ReviewInvalid(f"The reason is too long ({MAX_REASON} characters at most).", field="reason")
    check = db.session.execute(select(AmlCheck).where(AmlCheck.id == check_id).with_for_update()
                               .execution_options(populate_existing=True)).scalar_one_or_none()
    if check is None:
        raise NotFound("That screening check does not exist.")
    if check.status != AmlStatus.PENDING_REVIEW:
        raise Conflict("This check is not waiting for review any more"
                       + (f": it was marked {STATUS_LABELS[check.status].lower()}." if check.status in STATUS_LABELS
                          else "."))
    check.status = target
    check.reviewed_by_id = officer.id
    check.reviewed_at = utcnow()
    check.review_reason = reason
    db.session.flush()
    if target == AmlStatus.CONFIRMED:
        _open_case(officer, check)
    return check


STATUS_LABELS = {
    AmlStatus.PENDING_REVIEW: "Pending review",
    AmlStatus.CLEAR: "Clear",
    AmlStatus.CONFIRMED: "Confirmed match",
    AmlStatus.FALSE_POSITIVE: "False positive",
}


@dataclass
class Subject:
    """What an on-demand screening screens: the student, and the data it came from."""

    user: User
    name: str
    birth_date: date | None
    country: str | None
    verification_id: uuid.UUID | None
    #: "kyc" when the name comes from a KYC level-1 submission, "account" for the account's name.
    source: str
    note: str | None = None


def find_student(email: str | None) -> User:
    email = (email or "").strip().lower()
    if not email:
        raise ReviewInvalid("Enter the student's e-mail address.", field="email")
    if len(email) > 320 or _CONTROL.search(email):
        raise ReviewInvalid("That is not an e-mail address.", field="email")
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None or user.role != Role.STUDENT:
        raise ReviewInvalid("No student has that e-mail address.", field="email")
    return user


def subject_for(user: User) -> Subject:
    """The student's latest level-1 KYC data (approved first, else the latest submitted),
    decrypted; the account's full name when there is none or it cannot be read."""
    from portal.compliance.kyc.personal_data import unseal

    verification = db.session.scalar(
        select(KycVerification).where(KycVerification.user_id == user.id, KycVerification.level == 1)
        .order_by((KycVerification.status == KycStatus.APPROVED).desc(), KycVerification.submitted_at.desc())
        .limit(1))
    if verification is None:
        return Subject(user, user.full_name, None, None, None, "account",
                       "No KYC submission: the account's name is screened, without birth date or country.")
    data = unseal(verification)
    if "error" in data:
        return Subject(user, user.full_name, None, verification.country, None, "account",
                       "The KYC data could not be decrypted: the account's name is screened.")
    birth = None
    with contextlib.suppress(TypeError, ValueError):
        birth = date.fromisoformat(data.get("birth_date") or "")
    return Subject(user, data.get("legal_name") or user.full_name, birth, verification.country,
                   verification.id, "kyc")


def screen_on_demand(officer: User, email: str | None, threshold=None) -> AmlCheck:
    """An officer screens a student now, with the configured threshold or another (50-100)."""
    _check_officer(officer)
    if threshold is not None and str(threshold).strip() == "":
        threshold = None
    threshold = check_threshold(threshold) if threshold is not None else None
    subject = subject_for(find_student(email))
    return screen_user(subject.user.id, subject.name, subject.birth_date, subject.country,
                       trigger=AmlTrigger.ON_DEMAND, verification_id=subject.verification_id, threshold=threshold)


# ---------------------------------------------------------------------------------- reads


@dataclass
class CheckRow:
    #: The check's columns the list shows (``_LIST_COLUMNS``), its hits summed up as
    #: ``hit_count`` and ``first_hit_name``.
    check: Row
    student_name: str
    student_email: str


@dataclass
class ChecksPage(Page):
    #: The counts of the status tabs, when they came with the page (its first page).
    counts: dict[str, int] | None = None


def _cursor(check) -> str:
    return encode_ranked_cursor(0 if check.status == AmlStatus.PENDING_REVIEW else 1, check.created_at, check.id)


_HITS_ARE_A_LIST = func.jsonb_typeof(AmlCheck.hits) == "array"
#: What a list row shows of a check: its hits only as their number and the first one's name
#: (a check keeps up to 20 explained hits, which the list never shows).
_LIST_COLUMNS = (
    AmlCheck.id, AmlCheck.user_id, AmlCheck.created_at, AmlCheck.trigger, AmlCheck.status, AmlCheck.screened_name,
    AmlCheck.screened_birth_date, AmlCheck.screened_country, AmlCheck.top_score, AmlCheck.threshold,
    case((_HITS_ARE_A_LIST, func.jsonb_array_length(AmlCheck.hits)), else_=0).label("hit_count"),
    func.coalesce(AmlCheck.hits[0]["name"].astext, "").label("first_hit_name"),
)
#: The status tabs: each status, and every check.
COUNTED = (*(s.value for s in AmlStatus), "all")


def _count_columns() -> list:
    """The checks in each state and in all, each counted up to ``COUNT_CAP`` and one on the
    status index (the tabs show "1000+"), whatever the table's size."""
    return [*(count_upto(AmlCheck, AmlCheck.status == status).label(f"count_{status.value}") for status in AmlStatus),
            count_upto(AmlCheck).label("count_all")]


def _counts_of(row) -> dict[str, int]:
    return {name: getattr(row, f"count_{name}") for name in COUNTED}


def _part(where, order, after, rank: int, size: int):
    stmt = select(*_LIST_COLUMNS, literal(rank).label("rank")).where(*where)
    if after is not None:
        stmt = stmt.where(after)
    return stmt.order_by(*order).limit(size + 1)


@functools.cache
def _checks_statement(status: str | None, pending: bool, rest: bool, cursor_rank: int | None, size: int,
                      counted: bool):
    """The list's statement for one shape of request, built once (the cursor's ``after_at`` and
    ``after_id`` bound). Two parts, each walking an index in order: the checks waiting for
    review oldest first (``ix_aml_checks_status_created``), then the others newest first
    (``ix_aml_checks_created``, or the status index for a filtered list), joined by UNION ALL
    and ordered pending first; the students' names are joined to the page only. ``counted``: the tabs' counts ride along on each row
    (uncorrelated subqueries, which PostgreSQL runs once)."""
    key = tuple_(AmlCheck.created_at, AmlCheck.id)
    position = tuple_(bindparam("after_at", type_=AmlCheck.created_at.type),
                      bindparam("after_id", type_=AmlCheck.id.type))
    parts = []
    if pending:
        parts.append(_part([AmlCheck.status == AmlStatus.PENDING_REVIEW], [AmlCheck.created_at, AmlCheck.id],
                           key > position if cursor_rank == 0 else None, 0, size))
    if rest:
        where = [AmlCheck.status == AmlStatus(status)] if status else [AmlCheck.status != AmlStatus.PENDING_REVIEW]
        parts.append(_part(where, [AmlCheck.created_at.desc(), AmlCheck.id.desc()],
                           key < position if cursor_rank == 1 else None, 1, size))
    rows = union_all(*parts).subquery("checks") if len(parts) > 1 else parts[0].subquery("checks")
    first = rows.c.rank == 0
    return (select(rows, User.full_name.label("student_name"), User.email.label("student_email"),
                   *(_count_columns() if counted else ()))
            .join(User, User.id == rows.c.user_id)
            .order_by(rows.c.rank, case((first, rows.c.created_at)), case((first, rows.c.id)),
                      rows.c.created_at.desc(), rows.c.id.desc())
            .limit(size + 1))


def checks(officer: User, status: str | None = None, cursor: str | None = None, size: int = 25) -> ChecksPage:
    """Screening checks for officers: those pending review first, oldest first (a queue), then
    the others newest first; ``status`` filters (unknown values are ignored). Keyset-paginated.

    One statement (``_checks_statement``); the first page brings the tabs' counts along (a
    second statement only when the list is empty)."""
    _check_officer(officer)
    status = status if status in AmlStatus._value2member_map_ else None
    position = decode_ranked_cursor(cursor)
    pending = status in (None, AmlStatus.PENDING_REVIEW.value) and (position is None or position[0] == 0)
    rest = status != AmlStatus.PENDING_REVIEW.value
    if not (pending or rest):  # a cursor past the pending checks of the pending list
        return ChecksPage([], None, None)
    params = {}
    if position is not None:
        params["after_at"], params["after_id"] = position[1], position[2]
    counted = position is None
    rows = db.session.execute(_checks_statement(status, pending, rest, position[0] if position else None, size,
                                                counted), params).all()
    counts = (_counts_of(rows[0]) if rows else status_counts(officer)) if counted else None
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = _cursor(rows[-1])
    return ChecksPage([CheckRow(row, row.student_name, row.student_email) for row in rows], next_cursor, counts)


@functools.cache
def _counts_statement():
    return select(*_count_columns())


def status_counts(officer: User) -> dict[str, int]:
    """How many checks are in each state and in all, each up to the cap (one statement), for
    the filter tabs."""
    _check_officer(officer)
    return _counts_of(db.session.execute(_counts_statement()).one())


#: What an explained hit holds when a field is missing (a hit recorded by an older version).
_HIT_DEFAULTS = {"name": "", "score": 0.0, "adjustment": 0.0, "agreeing": [], "disagreeing": [], "listSource": "",
                 "kind": "", "listBirthDate": None, "listCountry": None, "matchedAlias": False}


@dataclass(frozen=True)
class Person:
    full_name: str
    email: str


@dataclass
class CheckDetail:
    #: The check's columns (``_DETAIL_COLUMNS``).
    check: Row
    student: Person
    #: Who decided on its hits (``full_name``), None while nobody has.
    reviewer: Person | None

    @functools.cached_property
    def hits(self) -> list[dict]:
        """The check's hits, each with every field the page shows (worked out once per page)."""
        return [{**_HIT_DEFAULTS, "nameScore": hit.get("score", 0.0), "matchedName": hit.get("name", ""), **hit}
                for hit in self.check.hits or () if isinstance(hit, dict)]


_DETAIL_COLUMNS = (AmlCheck.id, AmlCheck.user_id, AmlCheck.verification_id, AmlCheck.trigger, AmlCheck.status,
                   AmlCheck.created_at, AmlCheck.screened_name, AmlCheck.screened_birth_date,
                   AmlCheck.screened_country, AmlCheck.threshold, AmlCheck.top_score, AmlCheck.hits,
                   AmlCheck.reviewed_by_id, AmlCheck.reviewed_at, AmlCheck.review_reason)


@functools.cache
def _detail_statement():
    reviewer = aliased(User)
    return (select(*_DETAIL_COLUMNS, User.full_name.label("student_name"), User.email.label("student_email"),
                   reviewer.full_name.label("reviewer_name"), reviewer.email.label("reviewer_email"))
            .join(User, User.id == AmlCheck.user_id)
            .outerjoin(reviewer, reviewer.id == AmlCheck.reviewed_by_id)
            .where(AmlCheck.id == bindparam("check_id")))


def check_detail(officer: User, check_id: uuid.UUID) -> CheckDetail:
    """One check with its student and reviewer, one statement built once. Columns, not
    entities: read after a decision in the same request, it shows what was just written."""
    _check_officer(officer)
    found = db.session.execute(_detail_statement(), {"check_id": check_id}).one_or_none()
    if found is None:
        raise NotFound("That screening check does not exist.")
    reviewer = Person(found.reviewer_name, found.reviewer_email) if found.reviewer_name is not None else None
    return CheckDetail(found, Person(found.student_name, found.student_email), reviewer)
