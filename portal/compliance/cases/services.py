"""Suspicious-activity cases: opening them from monitoring alerts and the officers' work on them.

- One case open per subject at a time (a partial unique index holds it): ``open_or_attach`` opens
  one, or attaches to the open one and raises its severity and risk when the new alert is worse.
  It writes with the system's row-level-security role, so a screening run inside a student's own
  request can open a case the student can never read.
- Who may act: any compliance officer reads every case; an officer acts on a case that is
  unassigned or assigned to them; supervisors (``SUPERVISE_CASES``) act on any case and assign
  to others. Escalating hands the case to the supervisors: only they act on an escalated case.
  Every action locks the case row first, so two officers acting at once queue on it.
- Status moves only along ``CASE_TRANSITIONS``; closing needs a disposition and a note, and the
  disposition ``reported`` needs a suspicious activity report (``reports``).
- Attachments: type by extension and content, size by ``KYC_MAX_UPLOAD_BYTES``; stored AES-GCM
  encrypted and bound to their case and event (associated data), served by an access-checked view.
- Every change is a line of the case's timeline (``case_events``) and of the audit trail.
"""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import undefer

from portal import events
from portal.accounts.models import Role, User, UserStatus
from portal.compliance.cases.models import (
    CASE_TRANSITIONS,
    CaseEvent,
    CaseEventKind,
    CaseSeverity,
    CaseStatus,
    Disposition,
    SuspiciousActivity,
)
from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, current_actor, push, reset
from portal.errors import DomainError, Forbidden, NotFound
from portal.platform.notifications.services import notify
from portal.security.crypto import CryptoError, file_cipher
from portal.security.permissions import Permission, has_permission

#: Days an officer has to work a case after detection.
DUE_DAYS = 30

_SEVERITY_ORDER = [CaseSeverity.LOW, CaseSeverity.MEDIUM, CaseSeverity.HIGH, CaseSeverity.CRITICAL]


def severity_for_score(score: int) -> CaseSeverity:
    """The case severity a risk score (0-100) calls for."""
    if score >= 80:
        return CaseSeverity.CRITICAL
    if score >= 60:
        return CaseSeverity.HIGH
    if score >= 35:
        return CaseSeverity.MEDIUM
    return CaseSeverity.LOW


def _max_severity(a: CaseSeverity, b: CaseSeverity) -> CaseSeverity:
    return a if _SEVERITY_ORDER.index(a) >= _SEVERITY_ORDER.index(b) else b


@contextlib.contextmanager
def as_case_system() -> Iterator[None]:
    """Write case rows with the row-level-security role ``system``, keeping the acting identity
    for the audit trail. A screening run inside a student's own KYC submission must be able to
    open a case that the student can neither see nor touch; the callers are trusted services,
    never a view acting on a request's say-so."""
    actor = current_actor() or Actor(label="")
    token = push(Actor(label=actor.label, user_id=actor.user_id, role="system"), db.session)
    try:
        yield
    except BaseException:
        # After a failed statement the transaction is aborted and cannot take the settings; the
        # statement's own error is the one to report.
        with contextlib.suppress(SQLAlchemyError):
            reset(token, db.session)
        raise
    reset(token, db.session)


def open_or_attach(
    user_id: uuid.UUID,
    *,
    title: str,
    severity: CaseSeverity | str,
    risk_score: int,
    source: str,
    details: dict | None = None,
    actor: User | None = None,
) -> SuspiciousActivity:
    """Open a case for ``user_id`` or attach to the one already open, adding a timeline event.

    ``source`` names what raised it (``monitoring``, ``aml_screening`` ...); ``details`` is kept on
    the event (JSON). ``actor`` is the officer who raised it, None for the system. Safe against a
    concurrent opener: the insert skips on the open-case unique index, then the open row is
    locked and updated.
    """
    with as_case_system():
        return _open_or_attach(user_id, title=title, severity=CaseSeverity(severity), risk_score=risk_score,
                               source=source, details=details, actor=actor)


def _open_or_attach(user_id: uuid.UUID, *, title: str, severity: CaseSeverity, risk_score: int, source: str,
                    details: dict | None, actor: User | None) -> SuspiciousActivity:
    risk_score = max(0, min(100, int(risk_score)))
    details = dict(details or {})
    now = utcnow()
    inserted_id = db.session.execute(
        insert(SuspiciousActivity)
        .values(
            id=uuid.uuid4(), user_id=user_id, title=title[:200], status=CaseStatus.OPEN, severity=severity,
            risk_score=risk_score, detected_at=now, due_at=now + timedelta(days=DUE_DAYS),
        )
        # The predicate as a literal: the partial index is inferred only from the same constant
        # (a bound parameter, once the statement is prepared, no longer proves it).
        .on_conflict_do_nothing(index_elements=["userId"], index_where=text("status <> 'closed'"))
        .returning(SuspiciousActivity.id)
    ).scalar_one_or_none()
    actor_id = actor.id if actor is not None else None
    if inserted_id is not None:
        case = db.session.get(SuspiciousActivity, inserted_id)
        db.session.add(CaseEvent(case_id=case.id, kind=CaseEventKind.CREATED, actor_id=actor_id,
                                 body=title[:2000], data={"source": source, "riskScore": risk_score,
                                                          "severity": severity.value, **details}))
        events.case_opened.send(case=case, source=source)
    else:
        case = db.session.execute(
            select(SuspiciousActivity)
            .where(SuspiciousActivity.user_id == user_id, SuspiciousActivity.status != CaseStatus.CLOSED)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        data = {"source": source, "riskScore": risk_score, "severity": severity.value, **details}
        if _SEVERITY_ORDER.index(severity) > _SEVERITY_ORDER.index(case.severity):
            # A more severe alert names the case: officers sort and read queues by the title, and
            # the opening alert's may describe the least of it. The alert's event keeps what the
            # case was called and how severe it was, so the timeline says when and why it changed.
            data["retitled"] = {"fromTitle": case.title, "fromSeverity": case.severity.value}
            case.title = title[:200]
        case.severity = _max_severity(case.severity, severity)
        case.risk_score = max(case.risk_score, risk_score)
        db.session.add(CaseEvent(case_id=case.id, kind=CaseEventKind.ALERT, actor_id=actor_id,
                                 body=title[:2000], data=data))
    db.session.flush()
    return case


# -- Officers' work on a case -----------------------------------------------------------------------


class CaseActionRefused(DomainError):
    status_code = 409


class InvalidCaseInput(DomainError):
    status_code = 422


#: Longest comment, closing note or narrative.
MAX_TEXT = 5000
MIN_CLOSING_NOTE = 10
MIN_NARRATIVE = 20

STATUS_LABELS = {CaseStatus.OPEN: "Open", CaseStatus.INVESTIGATING: "Investigating",
                 CaseStatus.ESCALATED: "Escalated", CaseStatus.CLOSED: "Closed"}
DISPOSITION_LABELS = {Disposition.FALSE_POSITIVE: "False positive", Disposition.CONFIRMED_RISK: "Confirmed risk",
                      Disposition.REPORTED: "Reported (suspicious activity report filed)"}


def is_officer(user: User | None) -> bool:
    return user is not None and has_permission(user.role, Permission.REVIEW_COMPLIANCE)


def supervises(user: User | None) -> bool:
    return user is not None and has_permission(user.role, Permission.SUPERVISE_CASES)


def case_for(actor: User, case_id: uuid.UUID) -> SuspiciousActivity:
    """The case, for a compliance officer: ``NotFound`` when there is none, ``Forbidden`` for
    anyone else."""
    case = db.session.get(SuspiciousActivity, case_id)
    if case is None:
        raise NotFound("That case does not exist.")
    if not is_officer(actor):
        raise Forbidden("Only compliance officers can open a case.")
    return case


def may_act(actor: User, case: SuspiciousActivity) -> bool:
    """Supervisors act on any case; an officer on an open case that is unassigned or theirs and
    not escalated (an escalated case waits for a supervisor)."""
    if not is_officer(actor) or case.status == CaseStatus.CLOSED:
        return False
    if supervises(actor):
        return True
    return case.status != CaseStatus.ESCALATED and case.assigned_to_id in (None, actor.id)


def _locked(actor: User, case_id: uuid.UUID) -> SuspiciousActivity:
    if not is_officer(actor):
        raise NotFound("That case does not exist.")
    case = db.session.scalar(select(SuspiciousActivity).where(SuspiciousActivity.id == case_id)
                             .with_for_update().execution_options(populate_existing=True))
    if case is None:
        raise NotFound("That case does not exist.")
    return case


def _for_action(actor: User, case_id: uuid.UUID) -> SuspiciousActivity:
    """The case locked for a change by ``actor``, or a refusal that says why."""
    case = _locked(actor, case_id)
    if case.status == CaseStatus.CLOSED:
        raise CaseActionRefused("This case is closed; nothing more can be done on it.")
    if not may_act(actor, case):
        if case.status == CaseStatus.ESCALATED:
            raise Forbidden("This case is escalated: only a supervising officer can work on it now.")
        raise Forbidden("This case is assigned to another officer; only they or a supervisor can act on it.")
    return case


def _event(case: SuspiciousActivity, kind: CaseEventKind, actor: User | None, body: str = "",
           data: dict | None = None, **fields) -> CaseEvent:
    event = CaseEvent(id=fields.pop("id", None) or uuid.uuid4(), case_id=case.id, kind=kind,
                      actor_id=actor.id if actor else None, body=body, data=data or {}, **fields)
    db.session.add(event)
    return event


def _text(value: str | None, label: str, field: str, *, minimum: int = 1) -> str:
    cleaned = (value or "").strip()
    if len(cleaned) < minimum:
        if minimum <= 1:
            raise InvalidCaseInput(f"Write the {label}.", field=field)
        raise InvalidCaseInput(f"The {label} must be at least {minimum} characters.", field=field)
    if len(cleaned) > MAX_TEXT:
        raise InvalidCaseInput(f"The {label} must be at most {MAX_TEXT:,} characters.", field=field)
    return cleaned


#: The roles whose active users a supervisor may assign a case to (the case page lists them).
OFFICER_ROLES = (Role.COMPLIANCE, Role.ADMIN)


def assign(actor: User, case_id: uuid.UUID, assignee_id: uuid.UUID | None = None, *,
           link: str | None = None) -> SuspiciousActivity:
    """Assign the case to ``actor`` (no ``assignee_id``) or, for a supervisor, to another officer.
    An officer takes an unassigned case; only a supervisor takes one from somebody else."""
    case = _for_action(actor, case_id)
    target_id = assignee_id or actor.id
    if target_id != actor.id:
        if not supervises(actor):
            raise Forbidden("Only a supervising officer can assign a case to someone else.")
        assignee = db.session.get(User, target_id)
        if assignee is None or not is_officer(assignee) or assignee.status != UserStatus.ACTIVE:
            raise InvalidCaseInput("Choose an active compliance officer.", field="assignee")
    else:
        assignee = actor
    if case.assigned_to_id == assignee.id:
        raise CaseActionRefused(f"This case is already assigned to {'you' if assignee.id == actor.id else assignee.full_name}.")
    previous = case.assigned_to_id
    case.assigned_to_id = assignee.id
    _event(case, CaseEventKind.ASSIGNED, actor, "",
           {"to": str(assignee.id), "toName": assignee.full_name, "from": str(previous) if previous else None})
    if assignee.id != actor.id:
        notify(assignee.id, "case_assigned", f"Case assigned to you: {case.title}"[:200],
               f"{actor.full_name} assigned you a {case.severity.value} case.", link)
    db.session.flush()
    return case


def comment(actor: User, case_id: uuid.UUID, body: str | None) -> CaseEvent:
    case = _for_action(actor, case_id)
    event = _event(case, CaseEventKind.COMMENT, actor, _text(body, "comment", "body"))
    db.session.flush()
    return event


def change_status(actor: User, case_id: uuid.UUID, status: str | None, note: str | None = None) -> SuspiciousActivity:
    """Move the case along ``CASE_TRANSITIONS`` (closing goes through ``close``). Taking up an
    unassigned case assigns it to whoever takes it up."""
    try:
        target = CaseStatus(status or "")
    except ValueError:
        raise InvalidCaseInput("Choose a status.", field="status") from None
    case = _for_action(actor, case_id)
    if target == CaseStatus.CLOSED:
        raise InvalidCaseInput("Close the case with a disposition and a note.", field="status")
    if target not in CASE_TRANSITIONS[case.status]:
        allowed = ", ".join(STATUS_LABELS[s].lower() for s in sorted(CASE_TRANSITIONS[case.status])
                            if s != CaseStatus.CLOSED) or "none"
        raise CaseActionRefused(f"A case that is {STATUS_LABELS[case.status].lower()} cannot become "
                                f"{STATUS_LABELS[target].lower()} (allowed: {allowed}, or closed).")
    text_note = (note or "").strip()
    if len(text_note) > MAX_TEXT:
        raise InvalidCaseInput(f"The note must be at most {MAX_TEXT:,} characters.", field="note")
    previous = case.status
    case.status = target
    if target == CaseStatus.INVESTIGATING and case.assigned_to_id is None:
        case.assigned_to_id = actor.id
        _event(case, CaseEventKind.ASSIGNED, actor, "", {"to": str(actor.id), "toName": actor.full_name,
                                                        "from": None})
    _event(case, CaseEventKind.STATUS, actor, text_note, {"from": previous.value, "to": target.value})
    db.session.flush()
    return case


def escalate(actor: User, case_id: uuid.UUID, note: str | None) -> SuspiciousActivity:
    """Hand the case to the supervisors, saying why."""
    _text(note, "reason for escalating", "note", minimum=MIN_CLOSING_NOTE)
    return change_status(actor, case_id, CaseStatus.ESCALATED, note)


def close(actor: User, case_id: uuid.UUID, disposition: str | None, note: str | None) -> SuspiciousActivity:
    """Close with a disposition and a note; ``reported`` needs a suspicious activity report."""
    try:
        chosen = Disposition(disposition or "")
    except ValueError:
        raise InvalidCaseInput("Choose a disposition.", field="disposition") from None
    text_note = _text(note, "closing note", "note", minimum=MIN_CLOSING_NOTE)
    case = _for_action(actor, case_id)
    if CaseStatus.CLOSED not in CASE_TRANSITIONS[case.status]:
        raise CaseActionRefused(f"A case that is {STATUS_LABELS[case.status].lower()} cannot be closed.")
    if chosen == Disposition.REPORTED and case.report is None:
        raise CaseActionRefused("Build the suspicious activity report before closing the case as reported.",
                                field="disposition")
    previous = case.status
    case.status = CaseStatus.CLOSED
    case.disposition = chosen
    case.closed_at = utcnow()
    if case.assigned_to_id is None:
        case.assigned_to_id = actor.id
    _event(case, CaseEventKind.STATUS, actor, text_note,
           {"from": previous.value, "to": CaseStatus.CLOSED.value, "disposition": chosen.value})
    db.session.flush()
    return case


# -- Attachments --------------------------------------------------------------------------------------


@dataclass
class Upload:
    """A file as the view read it (at most the limit plus one byte)."""

    filename: str
    data: bytes


#: Accepted evidence: extension -> (content type, leading bytes it must start with; None: UTF-8 text).
ATTACHMENT_TYPES: dict[str, tuple[str, tuple[bytes, ...] | None]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "txt": ("text/plain", None),
    "csv": ("text/csv", None),
}
_MARKUP = (b"<!doctype", b"<html", b"<script", b"<svg", b"<?xml", b"<body", b"<iframe")


def max_attachment_bytes() -> int:
    return int(current_app.config.get("KYC_MAX_UPLOAD_BYTES") or 5 * 1024 * 1024)


def safe_filename(filename: str | None) -> str:
    """The uploaded name made safe to show and to offer for download; never used as a path."""
    name = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?;').strip(" .")
    return (name or "evidence")[-200:]


def _check_attachment(upload: Upload) -> tuple[str, str]:
    name = safe_filename(upload.filename)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in ATTACHMENT_TYPES:
        listed = ", ".join("." + ext for ext in ATTACHMENT_TYPES)
        raise InvalidCaseInput(f"Files of type .{extension or '(none)'} cannot be attached. Allowed: {listed}.",
                               field="file")
    if not upload.data:
        raise InvalidCaseInput("The file is empty.", field="file")
    limit = max_attachment_bytes()
    if len(upload.data) > limit:
        raise InvalidCaseInput(f"The file is larger than the limit of {limit / 1_000_000:.1f} MB.", field="file")
    content_type, signatures = ATTACHMENT_TYPES[extension]
    head = upload.data[:512]
    if signatures is not None:
        if not any(head.startswith(sig) for sig in signatures):
            raise InvalidCaseInput(f"That file is not really a .{extension} file.", field="file")
    else:
        if any(head.lstrip().lower().startswith(hint) for hint in _MARKUP) or b"\x00" in upload.data:
            raise InvalidCaseInput(f"That file is not plain text: it cannot be attached as .{extension}.",
                                   field="file")
        try:
            upload.data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCaseInput(f"A .{extension} file must be UTF-8 text.", field="file") from None
    return name, content_type


def _attachment_aad(case_id: uuid.UUID, event_id: uuid.UUID) -> bytes:
    return f"case-attachment:{case_id}:{event_id}".encode()


def attach(actor: User, case_id: uuid.UUID, upload: Upload | None, note: str | None = None) -> CaseEvent:
    """Attach a file of evidence (type, size and content checked; stored encrypted, bound to its
    case and event)."""
    if upload is None or not upload.filename:
        raise InvalidCaseInput("Choose a file to attach.", field="file")
    name, content_type = _check_attachment(upload)
    text_note = (note or "").strip()
    if len(text_note) > MAX_TEXT:
        raise InvalidCaseInput(f"The note must be at most {MAX_TEXT:,} characters.", field="note")
    case = _for_action(actor, case_id)
    event_id = uuid.uuid4()
    try:
        blob = file_cipher(current_app.config).encrypt(upload.data, _attachment_aad(case.id, event_id))
    except CryptoError as exc:
        raise InvalidCaseInput("File storage is not configured on this portal.", field="file") from exc
    event = _event(case, CaseEventKind.ATTACHMENT, actor, text_note,
                   {"size": len(upload.data), "sha256": hashlib.sha256(upload.data).hexdigest()},
                   id=event_id, attachment_name=name, attachment_content_type=content_type,
                   attachment_encrypted=blob)
    db.session.flush()
    return event


def attachment(actor: User, case_id: uuid.UUID, event_id: uuid.UUID) -> tuple[str, str, bytes]:
    """(name, content type, bytes) of an attachment, for officers; anyone else, or a wrong pair
    of ids, is told it does not exist."""
    if not is_officer(actor):
        raise NotFound("That file does not exist.")
    event = db.session.scalar(select(CaseEvent).options(undefer(CaseEvent.attachment_encrypted))
                              .where(CaseEvent.id == event_id, CaseEvent.case_id == case_id,
                                     CaseEvent.kind == CaseEventKind.ATTACHMENT))
    if event is None or event.attachment_encrypted is None:
        raise NotFound("That file does not exist.")
    try:
        data = file_cipher(current_app.config).decrypt(event.attachment_encrypted,
                                                       _attachment_aad(event.case_id, event.id))
    except CryptoError as exc:
        raise Forbidden(f"The file cannot be opened: {exc}") from exc
    return event.attachment_name or "evidence", event.attachment_content_type or "application/octet-stream", data


# -- The suspicious activity report -------------------------------------------------------------------


def build_report(actor: User, case_id: uuid.UUID, narrative: str | None) -> SuspiciousActivity:
    """Assemble the report from the case's facts and the officer's narrative; store it on the
    case and record it on the timeline. Building again replaces it (each version is on the
    timeline and in the audit trail)."""
    from portal.compliance.cases import reports

    text_narrative = _text(narrative, "narrative", "narrative", minimum=MIN_NARRATIVE)
    case = _for_action(actor, case_id)
    now = utcnow()
    case.report = reports.assemble(case, text_narrative, actor, now)
    case.report_generated_at = now
    _event(case, CaseEventKind.REPORT, actor, "", {"reference": case.report["reference"],
                                                   "transactions": len(case.report["transactions"])})
    db.session.flush()
    return case
