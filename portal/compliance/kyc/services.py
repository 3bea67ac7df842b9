"""KYC: a student's submissions and the officers' decisions on them.

Submitting. Each level is a new ``kyc_verifications`` row; the personal data (legal name, birth
date, address, document number) is JSON encrypted with AES-GCM and bound to the row's id and
owner; the country, the document's type and expiry stay in clear for the queue. A level needs the
previous level approved (and, for level 3, an unexpired level-2 document). One submission per
level may be open: the student's submissions wait on a transaction-level advisory lock, so a
double click finds the first one and is told so; the partial unique index
``uq_kyc_verifications_open`` backs this. Every submission is screened against the watchlist
(``portal.compliance.aml.screening.screen_user``) in the same transaction.

Deciding. Officers approve, reject or ask for a revision (a reason for the last two, which the
student reads), only along ``KYC_TRANSITIONS``. The row is locked ``FOR UPDATE`` first, so two
decisions at once queue and the second sees the first. A verification assigned to another officer
is theirs to decide (admins may step in). Level 3 takes two officers: the first approval moves it
to ``awaiting_second`` and frees the assignment; the same officer cannot give the second (the
``four_eyes_for_level_3`` CHECK backs this). Each decision is in the audit trail (the table's
trigger) and in a notification to the student.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import Role, User, UserStatus
from portal.compliance.kyc import documents, levels
from portal.compliance.kyc.models import (
    KYC_TRANSITIONS,
    OPEN_KYC,
    KycDocumentKind,
    KycStatus,
    KycVerification,
)
from portal.compliance.kyc.personal_data import countries, seal, unseal
from portal.compliance.kyc.queries import document_expiry, level_from, own_verifications
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.platform.notifications.services import notify
from portal.security.permissions import Permission, has_permission

DOCUMENT_TYPES = {"passport": "Passport", "national_id": "National ID card", "driving_licence": "Driving licence"}
MIN_AGE = 18
MAX_AGE = 120
MIN_REASON = 5
MAX_REASON = 1000
_NAME_CHARS = re.compile(r"^[^\W\d_]+(?:[ '\-.,][^\W\d_]*)*$")
_DOCUMENT_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9 \-]{2,28}[A-Z0-9]$")


class KycInvalid(DomainError):
    """Bad input on a submission form: every field's message at once (``errors``), the first as
    the message."""

    status_code = 422

    def __init__(self, errors: dict[str, str]):
        field, message = next(iter(errors.items()))
        super().__init__(message, field=field)
        self.errors = errors


class DecisionRefused(DomainError):
    status_code = 422


# ---------------------------------------------------------------------------------- checks


def _check_student(student: User) -> None:
    if not has_permission(student.role, Permission.USE_WALLET) or student.status != UserStatus.ACTIVE:
        raise Forbidden("Only students with an active account can verify their identity.")


def _years_between(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _parse_date(raw, field: str, errors: dict[str, str], label: str) -> date | None:
    if isinstance(raw, date):
        return raw
    text = (raw or "").strip()
    if not text:
        errors[field] = f"Enter your {label}."
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = f"Enter the {label} as a date (YYYY-MM-DD)."
        return None


def _clean_line(raw: str | None) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in (raw or ""))
    return " ".join(text.split())


def _clean_address(raw: str | None) -> str:
    lines = [_clean_line(line) for line in (raw or "").splitlines()]
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class PersonalDetails:
    legal_name: str
    birth_date: date
    country: str
    address: str


def check_personal_details(legal_name: str | None, birth_date, country: str | None, address: str | None,
                           today: date) -> PersonalDetails:
    errors: dict[str, str] = {}
    name = _clean_line(legal_name)
    if not name:
        errors["legal_name"] = "Enter your full legal name as it appears on your identity document."
    elif len(name) < 2 or len(name) > 200:
        errors["legal_name"] = "Your legal name must be between 2 and 200 characters."
    elif not _NAME_CHARS.match(name):
        errors["legal_name"] = "Use letters only, with spaces, hyphens or apostrophes between names."
    born = _parse_date(birth_date, "birth_date", errors, "date of birth")
    if born is not None:
        if born > today:
            errors["birth_date"] = "The date of birth cannot be in the future."
        elif _years_between(born, today) > MAX_AGE:
            errors["birth_date"] = f"That date of birth is more than {MAX_AGE} years ago: check the year."
        elif _years_between(born, today) < MIN_AGE:
            errors["birth_date"] = f"You must be at least {MIN_AGE} years old to verify your identity."
    code = (country or "").strip().upper()
    if not code:
        errors["country"] = "Choose your country of residence."
    elif code not in dict(countries()):
        errors["country"] = "Choose a country from the list."
    clean_address = _clean_address(address)
    if len(clean_address) < 10:
        errors["address"] = "Enter your full home address (street, town, postal code)."
    elif len(clean_address) > 500:
        errors["address"] = "Keep the address to 500 characters or fewer."
    if errors:
        raise KycInvalid(errors)
    return PersonalDetails(name, born, code, clean_address)


# ---------------------------------------------------------------------------------- reading own rows


# ---------------------------------------------------------------------------------- submitting


def _lock_student(student: User) -> None:
    """Serialise one student's submissions: a double submit waits here for the first."""
    db.session.execute(sql("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"kyc:{student.id}"})


def _check_may_submit(student: User, level_number: int, today: date) -> list[KycVerification]:
    _check_student(student)
    _lock_student(student)
    rows = own_verifications(student.id)
    open_row = next((row for row in rows if row.level == level_number and row.status in OPEN_KYC), None)
    if open_row is not None:
        raise Conflict(f"Your level {level_number} submission of {open_row.submitted_at:%d %b %Y} is waiting for "
                       "review. You can submit again once it is decided; nothing new was sent.")
    current = level_from(rows, today)
    if level_number > current + 1:
        needed = level_number - 1
        raise Conflict(f"Level {level_number} needs level {needed} approved first.")
    if level_number <= current:
        expiry = document_expiry(rows)
        renewable = (level_number == 2 and expiry is not None
                     and expiry - today <= timedelta(days=levels.RENEWAL_WINDOW_DAYS))
        if not renewable:
            raise Conflict(f"You are already verified at level {level_number}.")
    return rows


def _insert(verification: KycVerification, *docs) -> None:
    """Add the row and its documents; the open-submission index refuses a second open one."""
    try:
        with db.session.begin_nested():
            db.session.add(verification)
            db.session.flush()
            db.session.add_all([doc for doc in docs if doc is not None])
            db.session.flush()
    except IntegrityError as exc:
        if "uq_kyc_verifications_open" in str(exc.orig):
            raise Conflict(f"Your level {verification.level} submission is already waiting for review; "
                           "nothing new was sent.") from exc
        raise


def _screen(student: User, verification: KycVerification, name: str, birth_date: date | None,
            country: str | None) -> None:
    from portal.compliance.aml import screening

    screening.screen_user(student.id, name, birth_date, country, trigger="kyc_submission",
                          verification_id=verification.id)


def _level1_details(rows: list[KycVerification]) -> dict:
    latest = next((row for row in rows if row.level == 1 and row.status == KycStatus.APPROVED), None)
    return unseal(latest) if latest is not None else {}


def submit_level1(student: User, *, legal_name: str | None, birth_date, country: str | None,
                  address: str | None, today: date | None = None) -> KycVerification:
    today = today or utcnow().date()
    _check_student(student)
    details = check_personal_details(legal_name, birth_date, country, address, today)
    _check_may_submit(student, 1, today)
    verification_id = uuid.uuid4()
    data = {"legal_name": details.legal_name, "birth_date": details.birth_date.isoformat(),
            "address": details.address}
    verification = KycVerification(id=verification_id, user_id=student.id, level=1, status=KycStatus.SUBMITTED,
                                   data_encrypted=seal(verification_id, student.id, data),
                                   country=details.country, submitted_at=utcnow(), decision_reason="")
    _insert(verification)
    _screen(student, verification, details.legal_name, details.birth_date, details.country)
    return verification


def submit_level2(student: User, *, document_type: str | None, document_number: str | None, expires_on,
                  front: documents.Upload | None, back: documents.Upload | None,
                  today: date | None = None) -> KycVerification:
    """An identity document. A passport's photo page is its front; the back is optional for
    a passport and required for an ID card or a driving licence."""
    today = today or utcnow().date()
    _check_student(student)
    errors: dict[str, str] = {}
    kind = (document_type or "").strip()
    if kind not in DOCUMENT_TYPES:
        errors["document_type"] = "Choose the kind of document: passport, national ID card or driving licence."
    number = re.sub(r"\s+", " ", (document_number or "").strip().upper())
    if not number:
        errors["document_number"] = "Enter the document's number."
    elif not _DOCUMENT_NUMBER.match(number):
        errors["document_number"] = "A document number has 4 to 30 letters and digits (spaces and hyphens allowed)."
    expiry = _parse_date(expires_on, "expires_on", errors, "expiry date")
    if expiry is not None and expiry <= today:
        errors["expires_on"] = "This document has expired: upload a document that is still valid."
    elif expiry is not None and expiry > today + timedelta(days=365 * 20):
        errors["expires_on"] = "That expiry date is more than 20 years away: check the year."
    checked = {}
    for field, upload, doc_kind, required in (("front", front, KycDocumentKind.ID_FRONT, True),
                                              ("back", back, KycDocumentKind.ID_BACK, kind != "passport")):
        try:
            checked[field] = documents.check(upload, doc_kind, field, required=required)
        except documents.UploadRefused as exc:
            errors[field] = exc.message
    if errors:
        raise KycInvalid(errors)
    rows = _check_may_submit(student, 2, today)
    verification_id = uuid.uuid4()
    verification = KycVerification(id=verification_id, user_id=student.id, level=2, status=KycStatus.SUBMITTED,
                                   data_encrypted=seal(verification_id, student.id, {"document_number": number}),
                                   document_type=kind, document_expires_on=expiry, submitted_at=utcnow(),
                                   decision_reason="")
    docs = [documents.make_document(checked["front"], KycDocumentKind.ID_FRONT, verification_id, student.id)]
    if checked["back"] is not None:
        docs.append(documents.make_document(checked["back"], KycDocumentKind.ID_BACK, verification_id, student.id))
    _insert(verification, *docs)
    details = _level1_details(rows)
    _screen(student, verification, details.get("legal_name") or student.full_name,
            _birth_date(details), _latest_country(rows))
    return verification


def submit_level3(student: User, *, proof: documents.Upload | None, selfie: documents.Upload | None,
                  today: date | None = None) -> KycVerification:
    today = today or utcnow().date()
    _check_student(student)
    errors: dict[str, str] = {}
    checked = {}
    for field, upload, doc_kind in (("proof", proof, KycDocumentKind.PROOF_OF_ADDRESS),
                                    ("selfie", selfie, KycDocumentKind.SELFIE)):
        try:
            checked[field] = documents.check(upload, doc_kind, field)
        except documents.UploadRefused as exc:
            errors[field] = exc.message
    if errors:
        raise KycInvalid(errors)
    rows = _check_may_submit(student, 3, today)
    verification_id = uuid.uuid4()
    verification = KycVerification(id=verification_id, user_id=student.id, level=3, status=KycStatus.SUBMITTED,
                                   data_encrypted=seal(verification_id, student.id, {}),
                                   country=_latest_country(rows), submitted_at=utcnow(), decision_reason="")
    _insert(verification,
            documents.make_document(checked["proof"], KycDocumentKind.PROOF_OF_ADDRESS, verification_id, student.id),
            documents.make_document(checked["selfie"], KycDocumentKind.SELFIE, verification_id, student.id))
    details = _level1_details(rows)
    _screen(student, verification, details.get("legal_name") or student.full_name,
            _birth_date(details), _latest_country(rows))
    return verification


def _birth_date(details: dict) -> date | None:
    raw = details.get("birth_date")
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _latest_country(rows: list[KycVerification]) -> str | None:
    return next((row.country for row in rows if row.level == 1 and row.status == KycStatus.APPROVED), None)


# ---------------------------------------------------------------------------------- officers


def _check_officer(officer: User) -> None:
    if not has_permission(officer.role, Permission.REVIEW_COMPLIANCE) or officer.status != UserStatus.ACTIVE:
        raise Forbidden("Only compliance officers can review identity verifications.")


def _locked(verification_id: uuid.UUID) -> KycVerification:
    verification = db.session.scalar(select(KycVerification).where(KycVerification.id == verification_id)
                                     .with_for_update().execution_options(populate_existing=True))
    if verification is None:
        raise NotFound("That verification does not exist.")
    return verification


def _name(user_id: uuid.UUID | None) -> str:
    user = db.session.get(User, user_id) if user_id else None
    return user.full_name if user is not None else "another officer"


def _check_open(verification: KycVerification, target: KycStatus) -> None:
    if target in KYC_TRANSITIONS[verification.status]:
        return
    if verification.status in OPEN_KYC:
        raise Conflict(f"A {verification.status.value.replace('_', ' ')} verification cannot become "
                       f"{target.value.replace('_', ' ')}.")
    done = verification.status.value.replace("_", " ")
    when = f" on {verification.decided_at:%d %b %Y %H:%M} UTC" if verification.decided_at else ""
    raise Conflict(f"This verification was already {done} by {_name(verification.decided_by_id)}{when}; "
                   "nothing was changed.")


def _check_assignment(officer: User, verification: KycVerification) -> None:
    if verification.user_id == officer.id:
        raise Forbidden("You cannot review your own identity verification.")
    if (verification.assigned_to_id not in (None, officer.id) and officer.role != Role.ADMIN):
        raise Forbidden(f"This verification is assigned to {_name(verification.assigned_to_id)}. Only they "
                        "or an administrator can decide on it.")


def assign_to_me(officer: User, verification_id: uuid.UUID) -> KycVerification:
    """Take an open verification. One already taken by someone else stays theirs unless an
    administrator takes it over."""
    _check_officer(officer)
    verification = _locked(verification_id)
    if verification.status not in OPEN_KYC:
        raise Conflict("This verification is already decided; there is nothing to assign.")
    if verification.user_id == officer.id:
        raise Forbidden("You cannot review your own identity verification.")
    if verification.assigned_to_id == officer.id:
        return verification
    if verification.assigned_to_id is not None and officer.role != Role.ADMIN:
        raise Conflict(f"{_name(verification.assigned_to_id)} has already taken this verification.")
    if verification.status == KycStatus.AWAITING_SECOND and verification.first_approver_id == officer.id:
        raise Forbidden("You gave the first approval; a second officer must take it now.")
    verification.assigned_to_id = officer.id
    db.session.flush()
    return verification


def _clean_reason(reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise DecisionRefused(f"Give the student a reason for the {what} (at least {MIN_REASON} characters).",
                              field="reason")
    if len(text) > MAX_REASON:
        raise DecisionRefused(f"Keep the reason to {MAX_REASON} characters or fewer.", field="reason")
    return text


def _notify(verification: KycVerification, title: str, body: str | None = None) -> None:
    notify(verification.user_id, "kyc_decision", title, body, levels.VERIFICATION_PATH)


def approve(officer: User, verification_id: uuid.UUID, note: str | None = None) -> KycVerification:
    """Approve; for level 3 the first approval waits for a second officer's."""
    _check_officer(officer)
    verification = _locked(verification_id)
    _check_open(verification, KycStatus.APPROVED)
    _check_assignment(officer, verification)
    note = (note or "").strip()[:MAX_REASON]
    if verification.level == 3 and verification.status == KycStatus.SUBMITTED:
        _check_open(verification, KycStatus.AWAITING_SECOND)
        verification.status = KycStatus.AWAITING_SECOND
        verification.first_approver_id = officer.id
        verification.assigned_to_id = None  # free for the second officer
        db.session.flush()
        return verification
    _check_open(verification, KycStatus.APPROVED)
    if verification.level == 3 and verification.first_approver_id == officer.id:
        raise Forbidden("You gave the first approval of this level 3 verification: a different officer must "
                        "give the second (four eyes).")
    verification.status = KycStatus.APPROVED
    verification.decided_by_id = officer.id
    verification.decided_at = utcnow()
    verification.decision_reason = note
    verification.assigned_to_id = verification.assigned_to_id or officer.id
    db.session.flush()
    _notify(verification, f"Identity verification level {verification.level} approved",
            f"Your level is now {verification.level}: {', '.join(levels.level(verification.level).unlocks).lower()}.")
    return verification


def _close(officer: User, verification_id: uuid.UUID, target: KycStatus, reason: str | None) -> KycVerification:
    _check_officer(officer)
    verification = _locked(verification_id)
    _check_open(verification, target)
    _check_assignment(officer, verification)
    text = _clean_reason(reason, "rejection" if target == KycStatus.REJECTED else "revision request")
    verification.status = target
    verification.decided_by_id = officer.id
    verification.decided_at = utcnow()
    verification.decision_reason = text
    verification.assigned_to_id = verification.assigned_to_id or officer.id
    db.session.flush()
    if target == KycStatus.REJECTED:
        _notify(verification, f"Identity verification level {verification.level} was not accepted", text)
    else:
        _notify(verification, f"Identity verification level {verification.level} needs changes", text)
    return verification


def reject(officer: User, verification_id: uuid.UUID, reason: str | None) -> KycVerification:
    return _close(officer, verification_id, KycStatus.REJECTED, reason)


def request_revision(officer: User, verification_id: uuid.UUID, reason: str | None) -> KycVerification:
    return _close(officer, verification_id, KycStatus.REVISION_REQUESTED, reason)
