"""Assignments: authoring (faculty) and submissions (students).

Deadlines. ``due_at`` is when work is due; ``cutoff_at`` is when submissions stop (NULL: the due
date is also the cut-off; both NULL: no deadline). A per-student extension replaces both for that
student. A submission after the due date but before the cut-off is late by whole days, any part
of a day counting as a day, and the grading service takes the penalty off for them.

Files. The upload's size and extension are checked against the assignment, and its first bytes
against what the extension claims (a "pdf" must start like a PDF; a document must not be an
executable or an HTML page in disguise). The original name is kept only for display; the bytes
are stored encrypted (portal.security.crypto) and served by an access-checked view.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy import text as sql
from sqlalchemy.orm import undefer

from portal import events
from portal.accounts.models import Role, User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden, NotFound
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus
from portal.learning.education.services import check_course_completion
from portal.learning.lms import access
from portal.learning.lms.models import Assignment, Grade, Submission, SubmissionStatus
from portal.security.crypto import CryptoError, file_cipher

#: Largest rubric the editor accepts.
MAX_CRITERIA = 20
MAX_LEVELS = 8
#: Extensions a faculty member may allow, and for each the content it must not be.
ALLOWED_EXTENSION_CHOICES = ("pdf", "txt", "md", "docx", "odt", "png", "jpg", "jpeg", "zip", "csv", "py")
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


class SubmissionRefused(DomainError):
    status_code = 422


# ---------------------------------------------------------------------------------- deadlines


def _extension_for(assignment: Assignment, user_id: uuid.UUID) -> datetime | None:
    raw = (assignment.extensions or {}).get(str(user_id))
    if not raw:
        return None
    return datetime.fromisoformat(raw)


def due_for(assignment: Assignment, user_id: uuid.UUID) -> datetime | None:
    """When the work is due for this student (their extension, if any, replaces the due date)."""
    return _extension_for(assignment, user_id) or assignment.due_at


def cutoff_for(assignment: Assignment, user_id: uuid.UUID) -> datetime | None:
    """The last moment this student may submit: their extension, else the cut-off, else the due date."""
    extension = _extension_for(assignment, user_id)
    if extension is not None:
        return extension
    return assignment.cutoff_at or assignment.due_at


def days_late(due: datetime | None, submitted_at: datetime) -> int:
    """Whole days late, any part of a day counting as one; 0 when on time or without a due date."""
    if due is None or submitted_at <= due:
        return 0
    return math.ceil((submitted_at - due) / timedelta(days=1))


# ---------------------------------------------------------------------------------- authoring


@dataclass
class AssignmentInput:
    title: str
    points: Decimal
    instructions: str = ""
    due_at: datetime | None = None
    cutoff_at: datetime | None = None
    late_penalty_percent_per_day: Decimal = Decimal(0)
    late_penalty_floor_percent: Decimal = Decimal(0)
    allow_text: bool = True
    allow_files: bool = False
    max_file_bytes: int = 5_000_000
    allowed_extensions: list[str] | None = None
    rubric: list | None = None
    module_id: uuid.UUID | None = None


def _decimal(value, field: str, label: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise DomainError(f"{label} must be a number.", field=field) from exc
    if not number.is_finite():
        raise DomainError(f"{label} must be a number.", field=field)
    return number


def validate_rubric(rubric: list | None, points: Decimal) -> list:
    """The rubric, checked and normalised: ids given to new criteria and levels, points as
    strings with two decimals, levels best first. The best level of each criterion together must
    make the assignment's points exactly. An empty rubric means scores are entered directly."""
    if not rubric:
        return []
    if len(rubric) > MAX_CRITERIA:
        raise DomainError(f"A rubric has at most {MAX_CRITERIA} criteria.", field="rubric")
    clean = []
    best_total = Decimal(0)
    seen: set[str] = set()
    for index, criterion in enumerate(rubric, start=1):
        title = str(criterion.get("title") or "").strip()
        if not title:
            raise DomainError(f"Criterion {index} needs a title.", field="rubric")
        levels_in = criterion.get("levels") or []
        if not levels_in:
            raise DomainError(f"Criterion \u201c{title}\u201d needs at least one level.", field="rubric")
        if len(levels_in) > MAX_LEVELS:
            raise DomainError(f"Criterion \u201c{title}\u201d has more than {MAX_LEVELS} levels.", field="rubric")
        levels = []
        for level in levels_in:
            level_title = str(level.get("title") or "").strip()
            if not level_title:
                raise DomainError(f"Every level of \u201c{title}\u201d needs a title.", field="rubric")
            level_points = _decimal(level.get("points"), "rubric", f"Points of \u201c{level_title}\u201d")
            if level_points < 0 or level_points > points:
                raise DomainError(f"Points of \u201c{level_title}\u201d must be between 0 and {points}.",
                                  field="rubric")
            level_id = str(level.get("id") or uuid.uuid4().hex[:12])
            if level_id in seen:
                level_id = uuid.uuid4().hex[:12]
            seen.add(level_id)
            levels.append({"id": level_id, "title": level_title[:120],
                           "description": str(level.get("description") or "").strip()[:500],
                           "points": str(level_points.quantize(Decimal("0.01")))})
        levels.sort(key=lambda item: Decimal(item["points"]), reverse=True)
        best_total += Decimal(levels[0]["points"])
        criterion_id = str(criterion.get("id") or uuid.uuid4().hex[:12])
        if criterion_id in seen:
            criterion_id = uuid.uuid4().hex[:12]
        seen.add(criterion_id)
        clean.append({"id": criterion_id, "title": title[:160],
                      "description": str(criterion.get("description") or "").strip()[:1000], "levels": levels})
    if best_total != points:
        raise DomainError(f"The best levels of the criteria add up to {best_total}, but the assignment is worth "
                          f"{points} points: they must be equal.", field="rubric")
    return clean


def _validated(data: AssignmentInput) -> dict:
    title = (data.title or "").strip()
    if not title:
        raise DomainError("Give the assignment a title.", field="title")
    if len(title) > 160:
        raise DomainError("The title is at most 160 characters.", field="title")
    points = _decimal(data.points, "points", "Points")
    if points <= 0 or points > Decimal("9999.99"):
        raise DomainError("Points must be more than 0 and at most 9999.99.", field="points")
    points = points.quantize(Decimal("0.01"))
    if data.due_at and data.cutoff_at and data.cutoff_at < data.due_at:
        raise DomainError("The cut-off cannot be before the due date.", field="cutoff_at")
    penalty = _decimal(data.late_penalty_percent_per_day, "late_penalty_percent_per_day", "The late penalty")
    floor = _decimal(data.late_penalty_floor_percent, "late_penalty_floor_percent", "The penalty floor")
    for value, field in ((penalty, "late_penalty_percent_per_day"), (floor, "late_penalty_floor_percent")):
        if value < 0 or value > 100:
            raise DomainError("Percentages are between 0 and 100.", field=field)
    if not data.allow_text and not data.allow_files:
        raise DomainError("Allow text answers, file uploads or both.", field="allow_text")
    if not 1 <= int(data.max_file_bytes) <= 50_000_000:
        raise DomainError("The file size limit is between 1 byte and 50 MB.", field="max_file_mb")
    extensions = sorted({str(ext).strip().lower().lstrip(".") for ext in (data.allowed_extensions or [])} - {""})
    for ext in extensions:
        if not _EXTENSION.match(ext):
            raise DomainError(f"\u201c{ext}\u201d is not a file extension.", field="allowed_extensions")
    if data.allow_files and not extensions:
        raise DomainError("List the file types students may upload.", field="allowed_extensions")
    return {
        "title": title,
        "instructions": data.instructions or "",
        "points": points,
        "due_at": data.due_at,
        "cutoff_at": data.cutoff_at,
        "late_penalty_percent_per_day": penalty.quantize(Decimal("0.01")),
        "late_penalty_floor_percent": floor.quantize(Decimal("0.01")),
        "allow_text": bool(data.allow_text),
        "allow_files": bool(data.allow_files),
        "max_file_bytes": int(data.max_file_bytes),
        "allowed_extensions": extensions,
        "rubric": validate_rubric(data.rubric, points),
        "module_id": data.module_id,
    }


def get_assignment(assignment_id: uuid.UUID) -> Assignment:
    assignment = db.session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound("That assignment does not exist.")
    return assignment


def create_assignment(actor: User, course_id: uuid.UUID, data: AssignmentInput) -> Assignment:
    access.require(actor, course_id, access.CAN_EDIT, "add assignments to this course")
    if db.session.get(Course, course_id) is None:
        raise NotFound("That course does not exist.")
    assignment = Assignment(course_id=course_id, published=False, extensions={}, **_validated(data))
    db.session.add(assignment)
    db.session.flush()
    return assignment


def update_assignment(actor: User, assignment_id: uuid.UUID, data: AssignmentInput) -> Assignment:
    assignment = get_assignment(assignment_id)
    access.require(actor, assignment.course_id, access.CAN_EDIT, "edit this assignment")
    values = _validated(data)
    if values["points"] != assignment.points and db.session.scalar(
            select(func.count()).select_from(Grade).where(Grade.assignment_id == assignment.id)):
        raise DomainError("Grades have been given out of the current points; the points cannot change now.",
                          field="points")
    for name, value in values.items():
        setattr(assignment, name, value)
    db.session.flush()
    return assignment


def set_published(actor: User, assignment_id: uuid.UUID, published: bool) -> Assignment:
    assignment = get_assignment(assignment_id)
    access.require(actor, assignment.course_id, access.CAN_EDIT, "publish this assignment")
    assignment.published = published
    db.session.flush()
    return assignment


def set_extension(actor: User, assignment_id: uuid.UUID, student_id: uuid.UUID,
                  until: datetime | None) -> Assignment:
    """Give ``student_id`` until ``until`` (replacing due date and cut-off for them), or remove
    their extension with ``until=None``."""
    assignment = get_assignment(assignment_id)
    access.require(actor, assignment.course_id, access.CAN_GRADE, "grant extensions on this assignment")
    enrolled = db.session.scalar(select(Enrollment.id).where(Enrollment.course_id == assignment.course_id,
                                                             Enrollment.user_id == student_id))
    if enrolled is None:
        raise DomainError("That student is not enrolled in this course.", field="student")
    extensions = dict(assignment.extensions or {})
    if until is None:
        extensions.pop(str(student_id), None)
    else:
        if until.tzinfo is None:
            raise DomainError("Give the extension with a time zone.", field="until")
        extensions[str(student_id)] = until.isoformat()
    assignment.extensions = extensions  # a new dict: JSONB changes are seen on assignment only
    db.session.flush()
    return assignment


# ---------------------------------------------------------------------------------- submissions


@dataclass
class Upload:
    """A file as the view read it: the name the browser sent, its bytes (at most the limit plus
    one byte, so an oversized file is recognised without reading it all)."""

    filename: str
    data: bytes
    content_type: str = ""


def is_enrolled(user: User, course_id: uuid.UUID) -> bool:
    return db.session.scalar(select(Enrollment.id).where(
        Enrollment.course_id == course_id, Enrollment.user_id == user.id,
        Enrollment.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED]))) is not None


def student_assignment(student: User, assignment_id: uuid.UUID) -> Assignment:
    """The assignment as a student may see it: published, in a course they are enrolled in."""
    assignment = db.session.get(Assignment, assignment_id)
    if assignment is None or not assignment.published or not is_enrolled(student, assignment.course_id):
        raise NotFound("That assignment does not exist or is not open to you.")
    return assignment


#: Content that no document upload may be, whatever its extension says.
_FORBIDDEN_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa", b"\xcf\xfa\xed\xfe", b"#!")
_HTML_HINTS = (b"<!doctype html", b"<html", b"<script", b"<svg", b"<?xml", b"<body", b"<iframe")
#: What the first bytes must be for extensions with a fixed signature.
_MAGIC = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "docx": (b"PK\x03\x04",),
    "odt": (b"PK\x03\x04",),
}
_TEXT_EXTENSIONS = {"txt", "md", "csv", "py"}


def _sniff(extension: str, data: bytes) -> None:
    head = data[:512]
    if any(head.startswith(magic) for magic in _FORBIDDEN_MAGIC):
        raise SubmissionRefused("That file is a program, not a document: it cannot be submitted.", field="file")
    expected = _MAGIC.get(extension)
    if expected and not any(head.startswith(magic) for magic in expected):
        raise SubmissionRefused(f"That file is not really a .{extension} file.", field="file")
    if extension in _TEXT_EXTENSIONS or not expected:
        lowered = head.lstrip().lower()
        if any(lowered.startswith(hint) for hint in _HTML_HINTS):
            raise SubmissionRefused("That file is a web page, not a document: it cannot be submitted.",
                                    field="file")
        if extension in _TEXT_EXTENSIONS:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SubmissionRefused(f"A .{extension} file must be UTF-8 text.", field="file") from exc


def display_name(filename: str) -> str:
    """The original name made safe to show and to offer as a download name: no directories,
    no control characters, at most 200 characters. Never used as a path."""
    name = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?').strip(" .")
    return (name or "upload")[-200:]


def _file_aad(assignment_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    return f"submission:{assignment_id}:{user_id}".encode()


def _check_upload(assignment: Assignment, upload: Upload) -> tuple[str, str]:
    name = display_name(upload.filename)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    allowed = assignment.allowed_extensions or []
    if extension not in allowed:
        listed = ", ".join("." + ext for ext in allowed)
        raise SubmissionRefused(f"Files of type .{extension or '(none)'} are not accepted here. Allowed: {listed}.",
                                field="file")
    if len(upload.data) > assignment.max_file_bytes:
        raise SubmissionRefused(f"The file is larger than the limit of {human_size(assignment.max_file_bytes)}.",
                                field="file")
    if not upload.data:
        raise SubmissionRefused("The file is empty.", field="file")
    _sniff(extension, upload.data)
    return name, extension


def human_size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB".replace(".0 ", " ")
    if size >= 1_000:
        return f"{size / 1_000:.0f} kB"
    return f"{size} bytes"


_CONTENT_TYPES = {"pdf": "application/pdf", "txt": "text/plain", "md": "text/markdown", "csv": "text/csv",
                  "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "zip": "application/zip",
                  "py": "text/x-python",
                  "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                  "odt": "application/vnd.oasis.opendocument.text"}


def submit(student: User, assignment_id: uuid.UUID, *, text: str | None = None, upload: Upload | None = None,
           now: datetime | None = None) -> Submission:
    """Submit (or resubmit) work. Refused after the student's cut-off, for a file the
    assignment does not accept, or with nothing in it. Nothing is stored when refused."""
    now = now or utcnow()
    assignment = student_assignment(student, assignment_id)
    cutoff = cutoff_for(assignment, student.id)
    if cutoff is not None and now > cutoff:
        raise SubmissionRefused(f"Submissions closed on {cutoff:%d %b %Y at %H:%M} UTC; this one cannot be accepted.")
    text = (text or "").strip() or None
    if text and not assignment.allow_text:
        raise SubmissionRefused("This assignment takes files only.", field="text_answer")
    if upload is not None and not assignment.allow_files:
        raise SubmissionRefused("This assignment takes text only.", field="file")
    if text and len(text) > 100_000:
        raise SubmissionRefused("The answer is longer than 100,000 characters.", field="text_answer")
    file_values = {}
    if upload is not None:
        name, extension = _check_upload(assignment, upload)
        try:
            blob = file_cipher(current_app.config).encrypt(upload.data, _file_aad(assignment.id, student.id))
        except CryptoError as exc:
            raise SubmissionRefused("File uploads are not configured on this portal; submit text instead.",
                                    field="file") from exc
        file_values = {"file_name": name, "file_type": _CONTENT_TYPES.get(extension, "application/octet-stream"),
                       "file_size": len(upload.data), "file_content": blob}
    if text is None and upload is None:
        raise SubmissionRefused("The submission is empty: write an answer or attach a file.")

    # One submission per student and assignment: a double click waits here for the first
    # request, then updates the row it made instead of failing on the unique constraint.
    db.session.execute(sql("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"submission:{assignment.id}:{student.id}"})
    submission = db.session.scalar(select(Submission).where(Submission.assignment_id == assignment.id,
                                                            Submission.user_id == student.id))
    if submission is not None and submission.status == SubmissionStatus.RELEASED:
        raise SubmissionRefused("Your grade for this assignment has been released, so it cannot be "
                                "resubmitted. Ask your instructor if you need to hand in new work.")
    late = days_late(due_for(assignment, student.id), now)
    if submission is None:
        submission = Submission(assignment_id=assignment.id, user_id=student.id, version=1)
        db.session.add(submission)
    else:
        submission.version += 1
        if upload is None:  # a resubmission replaces the whole submission
            file_values = {"file_name": None, "file_type": None, "file_size": None, "file_content": None}
    submission.text_answer = text
    for name, value in file_values.items():
        setattr(submission, name, value)
    submission.submitted_at = now
    submission.days_late = late
    submission.status = SubmissionStatus.SUBMITTED
    db.session.flush()
    events.assignment_submitted.send(user=student, submission=submission)
    check_course_completion(student, assignment.course_id)
    return submission


# ---------------------------------------------------------------------------------- reading


def can_view_submission(user: User, submission: Submission, course_id: uuid.UUID) -> bool:
    if submission.user_id == user.id:
        return True
    if user.role == Role.ADMIN:
        return True
    return access.may(user, course_id, access.CAN_GRADE)


def submission_file(user: User, submission_id: uuid.UUID) -> tuple[str, str, bytes]:
    """(display name, content type, bytes) of a submission's file, for its submitter, the
    course's staff and admins; anyone else is told it does not exist."""
    row = db.session.execute(
        select(Submission, Assignment.course_id)
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .options(undefer(Submission.file_content))
        .where(Submission.id == submission_id)
    ).first()
    if row is None or not can_view_submission(user, row[0], row[1]):
        raise NotFound("That file does not exist.")
    submission = row[0]
    if submission.file_content is None:
        raise NotFound("That submission has no file.")
    try:
        data = file_cipher(current_app.config).decrypt(submission.file_content,
                                                       _file_aad(submission.assignment_id, submission.user_id))
    except CryptoError as exc:
        raise Forbidden(f"The file cannot be opened: {exc}") from exc
    return display_name(submission.file_name or "upload"), submission.file_type or "application/octet-stream", data


def course_assignments(user: User, course_id: uuid.UUID) -> tuple[Course, list[Assignment], bool]:
    """The course, its assignments and whether ``user`` is on its staff. Students see the
    published ones of a course they are enrolled in."""
    course = db.session.get(Course, course_id)
    if course is None:
        raise NotFound("That course does not exist.")
    staff = access.may(user, course_id, access.CAN_GRADE)
    stmt = select(Assignment).where(Assignment.course_id == course_id).order_by(
        Assignment.due_at.asc().nulls_last(), Assignment.title)
    if not staff:
        if not is_enrolled(user, course_id):
            raise Forbidden("You are not enrolled in this course.")
        stmt = stmt.where(Assignment.published.is_(True))
    return course, list(db.session.scalars(stmt.limit(200))), staff


def own_submission(student: User, assignment_id: uuid.UUID) -> tuple[Submission | None, Grade | None]:
    """The student's submission and, only once released, its grade."""
    row = db.session.execute(
        select(Submission, Grade)
        .outerjoin(Grade, (Grade.submission_id == Submission.id) & Grade.released_at.is_not(None))
        .where(Submission.assignment_id == assignment_id, Submission.user_id == student.id)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def parse_extensions(raw: str) -> list[str]:
    return [part.strip().lower().lstrip(".") for part in re.split(r"[,\s]+", raw or "") if part.strip()]
