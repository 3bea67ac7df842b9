"""Receivers that turn domain events into rows of ``events`` (through ``capture.record``, so
each is written after its transaction commits). The event names the log uses are ``NAMES``;
the properties are ids and figures, never free text a user typed."""

from __future__ import annotations

from portal import events
from portal.platform.analytics.capture import record

#: The names written to ``events.name``.
NAMES = ("signed_up", "logged_in", "enrolled", "lesson_completed", "quiz_submitted", "quiz_passed",
         "assignment_submitted", "course_completed", "certificate_issued", "tutor_asked", "money_sent",
         "topped_up", "case_opened")


@events.user_registered.connect
def _on_registered(_sender=None, *, user, **_) -> None:
    record("signed_up", user.id, role=str(user.role))


@events.user_logged_in.connect
def _on_logged_in(_sender=None, *, user, **_) -> None:
    record("logged_in", user.id, role=str(user.role))


@events.enrolled.connect
def _on_enrolled(_sender=None, *, user, course, **_) -> None:
    record("enrolled", user.id, course_id=course.id)


@events.lesson_completed.connect
def _on_lesson_completed(_sender=None, *, user, lesson, **_) -> None:
    record("lesson_completed", user.id, course_id=lesson.course_id, lesson_id=lesson.id)


@events.quiz_submitted.connect
def _on_quiz_submitted(_sender=None, *, user, quiz, attempt, **_) -> None:
    record("quiz_submitted", user.id, course_id=quiz.course_id, quiz_id=quiz.id, attempt_id=attempt.id)


@events.quiz_passed.connect
def _on_quiz_passed(_sender=None, *, user, quiz, score, attempt=None, **_) -> None:
    """``attempt`` may be left out by a sender (the event's table names the score first)."""
    record("quiz_passed", user.id, course_id=quiz.course_id, quiz_id=quiz.id, score=score,
           percent=attempt.percent if attempt is not None else None)


@events.assignment_submitted.connect
def _on_assignment_submitted(_sender=None, *, user, submission, **_) -> None:
    record("assignment_submitted", user.id, assignment_id=submission.assignment_id, submission_id=submission.id)


@events.course_completed.connect
def _on_course_completed(_sender=None, *, user, course, **_) -> None:
    record("course_completed", user.id, course_id=course.id)


@events.certificate_issued.connect
def _on_certificate_issued(_sender=None, *, user, certificate, **_) -> None:
    record("certificate_issued", user.id, course_id=certificate.course_id)


@events.tutor_asked.connect
def _on_tutor_asked(_sender=None, *, user, course, question, **_) -> None:
    record("tutor_asked", user.id, course_id=course.id, answered=question.answered)


@events.case_opened.connect
def _on_case_opened(_sender=None, *, case, source, **_) -> None:
    record("case_opened", case.user_id, case_id=case.id, source=source)


#: Transaction types that are a user's own act, and the side of the row that is that user.
_MONEY_EVENTS = {"transfer": ("money_sent", "debit_user_id"), "top_up": ("topped_up", "credit_user_id")}


@events.transaction_committed.connect
def _on_transaction_committed(_sender=None, *, moved, **_) -> None:
    """Sent after the ledger's commit: the rows go straight to the buffer."""
    for row in moved:
        kind = _MONEY_EVENTS.get(row["type"])
        if kind is None or row["phase"] == "pending" or row["phase"] == "void":
            continue
        name, side = kind
        record(name, row[side], committed=True, amount=row["amount"], currency=row["currency"])
