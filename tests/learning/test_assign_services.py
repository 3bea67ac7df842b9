"""Assignment authoring, submissions, grading and releasing: the services' rules."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal import events
from portal.db import db
from portal.db.audit import AuditLog
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from portal.errors import DomainError, Forbidden, NotFound
from portal.learning.assessment.models import Gradebook
from portal.learning.lms import assignments as service
from portal.learning.lms import grading
from portal.learning.lms.models import Grade, ManagementRole, Submission, SubmissionStatus
from portal.platform.notifications.models import Notification
from tests.learning.factories.assign import (
    RUBRIC,
    add_staff,
    enroll,
    make_assignment,
    make_course,
    make_submission,
)

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"


@pytest.fixture
def setup(make_user):
    owner = make_user(role="faculty")
    student = make_user(role="student")
    course = make_course(owner)
    enroll(course, student)
    return owner, student, course


def _input(**fields) -> service.AssignmentInput:
    values = {"title": "Reflection", "points": Decimal(10)}
    values.update(fields)
    return service.AssignmentInput(**values)


# ------------------------------------------------------------------ late penalty arithmetic


@pytest.mark.parametrize(("raw", "days", "per_day", "floor", "expected"), [
    ("80", 0, "10", "0", "0.00"),  # on time
    ("80", 1, "10", "0", "8.00"),  # one day: 10% of the raw score
    ("80", 3, "10", "0", "24.00"),
    ("80", 3, "10", "50", "24.00"),  # 56 left, above the floor of 40
    ("80", 7, "10", "50", "40.00"),  # 70% off would leave 24; the floor keeps 50% = 40
    ("80", 20, "10", "0", "80.00"),  # never more than the score
    ("7.33", 1, "12.5", "0", "0.92"),  # 0.91625 rounds half up to cents
    ("0", 5, "10", "0", "0.00"),
])
def test_late_penalty_arithmetic(raw, days, per_day, floor, expected):
    penalty = grading.late_penalty(Decimal(raw), days, Decimal(per_day), Decimal(floor))
    assert isinstance(penalty, Decimal)
    assert penalty == Decimal(expected)
    assert Decimal(raw) - penalty >= (Decimal(raw) * Decimal(floor) / 100).quantize(Decimal("0.01")) - Decimal("0.01")


def test_days_late_counts_any_part_of_a_day():
    due = utcnow()
    assert service.days_late(due, due) == 0
    assert service.days_late(due, due - timedelta(hours=5)) == 0
    assert service.days_late(due, due + timedelta(minutes=1)) == 1
    assert service.days_late(due, due + timedelta(days=1)) == 1
    assert service.days_late(due, due + timedelta(days=1, seconds=1)) == 2
    assert service.days_late(None, due) == 0


# ------------------------------------------------------------------ authoring and rubric validation


def test_rubric_best_levels_must_sum_to_points(setup):
    owner, _, course = setup
    assignment = service.create_assignment(owner, course.id, _input(rubric=RUBRIC))
    assert [c["title"] for c in assignment.rubric] == ["Argument", "Style"]
    assert all(c["id"] and all(lv["id"] for lv in c["levels"]) for c in assignment.rubric)
    assert assignment.rubric[0]["levels"][0]["points"] == "6.00"  # best level first

    with pytest.raises(DomainError) as caught:
        service.create_assignment(owner, course.id, _input(points=Decimal(12), rubric=RUBRIC))
    assert caught.value.field == "rubric" and "10" in caught.value.message and "12" in caught.value.message


@pytest.mark.parametrize("rubric", [
    [{"title": "", "levels": [{"title": "A", "points": "10"}]}],
    [{"title": "Only", "levels": []}],
    [{"title": "Only", "levels": [{"title": "", "points": "10"}]}],
    [{"title": "Only", "levels": [{"title": "A", "points": "ten"}]}],
    [{"title": "Only", "levels": [{"title": "A", "points": "-1"}, {"title": "B", "points": "10"}]}],
])
def test_malformed_rubrics_are_refused(setup, rubric):
    owner, _, course = setup
    with pytest.raises(DomainError) as caught:
        service.create_assignment(owner, course.id, _input(rubric=rubric))
    assert caught.value.field == "rubric"


def test_authoring_rules(setup, make_user):
    owner, student, course = setup
    with pytest.raises(DomainError):
        service.create_assignment(owner, course.id, _input(points=Decimal(0)))
    due = utcnow()
    with pytest.raises(DomainError) as caught:
        service.create_assignment(owner, course.id, _input(due_at=due, cutoff_at=due - timedelta(hours=1)))
    assert caught.value.field == "cutoff_at"
    with pytest.raises(DomainError):
        service.create_assignment(owner, course.id, _input(allow_text=False, allow_files=False))
    with pytest.raises(DomainError):
        service.create_assignment(owner, course.id, _input(allow_files=True, allowed_extensions=[]))
    # Only editing staff author: students, strangers and assistants are refused.
    assistant = make_user(role="faculty")
    add_staff(course, assistant, ManagementRole.ASSISTANT)
    for who in (student, make_user(role="faculty"), assistant):
        with pytest.raises(Forbidden):
            service.create_assignment(who, course.id, _input())
    admin = make_user(role="admin")
    made = service.create_assignment(admin, course.id, _input(allowed_extensions=[".PDF", "txt"], allow_files=True))
    assert made.allowed_extensions == ["pdf", "txt"] and made.published is False


# ------------------------------------------------------------------ submissions


def test_submit_and_resubmit_until_the_cutoff(setup):
    _, student, course = setup
    due = utcnow() + timedelta(days=1)
    assignment = make_assignment(course, due_at=due, cutoff_at=due + timedelta(days=3))
    first = service.submit(student, assignment.id, text="draft", now=due - timedelta(hours=1))
    assert first.days_late == 0 and first.version == 1
    again = service.submit(student, assignment.id, text="final", now=due + timedelta(hours=30))
    assert again.id == first.id and again.version == 2 and again.days_late == 2 and again.text_answer == "final"
    with pytest.raises(service.SubmissionRefused) as caught:
        service.submit(student, assignment.id, text="too late", now=due + timedelta(days=3, seconds=1))
    assert "closed" in caught.value.message
    db.session.refresh(again)
    assert again.text_answer == "final"


def test_no_cutoff_means_due_date_is_the_cutoff(setup):
    _, student, course = setup
    due = utcnow() - timedelta(minutes=1)
    assignment = make_assignment(course, due_at=due)
    with pytest.raises(service.SubmissionRefused):
        service.submit(student, assignment.id, text="late")


def test_extension_replaces_due_and_cutoff_for_one_student(setup, make_user):
    owner, student, course = setup
    other = make_user(role="student")
    enroll(course, other)
    due = utcnow() - timedelta(days=2)
    assignment = make_assignment(course, due_at=due, cutoff_at=due + timedelta(days=1))
    service.set_extension(owner, assignment.id, student.id, utcnow() + timedelta(days=2))
    submission = service.submit(student, assignment.id, text="thanks for the extension")
    assert submission.days_late == 0
    with pytest.raises(service.SubmissionRefused):
        service.submit(other, assignment.id, text="no extension for me")
    # Late against the extension counts from it.
    service.set_extension(owner, assignment.id, other.id, utcnow() - timedelta(hours=2))
    with pytest.raises(service.SubmissionRefused):
        service.submit(other, assignment.id, text="still closed")
    service.set_extension(owner, assignment.id, other.id, None)
    assert str(other.id) not in assignment.extensions
    with pytest.raises(DomainError):
        service.set_extension(owner, assignment.id, make_user(role="student").id, utcnow())


def test_days_late_with_an_extension_and_a_cutoff_after_it(setup):
    owner, student, course = setup
    due = utcnow() - timedelta(days=5)
    assignment = make_assignment(course, due_at=due, cutoff_at=utcnow() + timedelta(days=5))
    late = service.submit(student, assignment.id, text="late", now=due + timedelta(days=2, hours=1))
    assert late.days_late == 3


def test_unpublished_or_not_enrolled_cannot_submit(setup, make_user):
    _, student, course = setup
    hidden = make_assignment(course, published=False)
    with pytest.raises(NotFound):
        service.submit(student, hidden.id, text="x")
    stranger = make_user(role="student")
    with pytest.raises(NotFound):
        service.submit(stranger, make_assignment(course).id, text="x")


def _count_submissions(assignment_id) -> int:
    return len(list(db.session.scalars(select(Submission.id).where(Submission.assignment_id == assignment_id))))


@pytest.mark.parametrize(("filename", "data", "words"), [
    ("notes.exe", b"MZ\x90\x00", "not accepted"),  # extension not allowed
    ("big.pdf", b"%PDF-" + b"x" * 2000, "larger than"),  # over the 1000-byte limit
    ("fake.pdf", b"<html><script>alert(1)</script></html>", "not really a .pdf"),  # HTML pretending
    ("prog.txt", b"MZ\x90\x00\x03", "program"),  # an executable named .txt
    ("page.txt", b"  <!DOCTYPE html><html></html>", "web page"),
    ("empty.pdf", b"", "empty"),
    ("noext", b"hello", "not accepted"),
])
def test_bad_files_are_refused_and_nothing_is_stored(setup, filename, data, words):
    _, student, course = setup
    assignment = make_assignment(course)
    with pytest.raises(service.SubmissionRefused) as caught:
        service.submit(student, assignment.id, upload=service.Upload(filename=filename, data=data))
    assert words in caught.value.message
    assert _count_submissions(assignment.id) == 0


def test_text_only_or_file_only_and_empty_submissions(setup):
    _, student, course = setup
    files_only = make_assignment(course, allow_text=False)
    with pytest.raises(service.SubmissionRefused):
        service.submit(student, files_only.id, text="words")
    text_only = make_assignment(course, allow_files=False)
    with pytest.raises(service.SubmissionRefused):
        service.submit(student, text_only.id, upload=service.Upload("a.pdf", PDF))
    with pytest.raises(service.SubmissionRefused):
        service.submit(student, text_only.id, text="   ")
    assert _count_submissions(files_only.id) == _count_submissions(text_only.id) == 0


def test_file_is_stored_encrypted_under_a_server_name(setup, app):
    owner, student, course = setup
    assignment = make_assignment(course)
    submission = service.submit(student, assignment.id,
                                upload=service.Upload(filename="../../etc/My report.pdf", data=PDF))
    db.session.expire(submission)
    stored = db.session.scalar(select(Submission.file_content).where(Submission.id == submission.id))
    from portal.security.crypto import file_cipher

    assert PDF not in stored
    assert stored.startswith(file_cipher(app.config).current_key_id.encode() + b":")
    assert submission.file_name == "My report.pdf"  # no directories survive
    assert submission.file_size == len(PDF) and submission.file_type == "application/pdf"
    name, content_type, data = service.submission_file(owner, submission.id)
    assert (name, content_type, data) == ("My report.pdf", "application/pdf", PDF)


def test_student_sees_own_submission_only_under_rls(setup, make_user):
    _, student, course = setup
    other = make_user(role="student")
    enroll(course, other)
    assignment = make_assignment(course)
    make_submission(assignment, student)
    make_submission(assignment, other)
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        visible = list(db.session.scalars(select(Submission.user_id).where(Submission.assignment_id == assignment.id)))
    assert visible == [student.id]


# ------------------------------------------------------------------ grading


def test_grade_from_rubric_with_late_penalty(setup):
    owner, student, course = setup
    assignment = service.create_assignment(owner, course.id, _input(rubric=RUBRIC, late_penalty_percent_per_day=Decimal(10),
                                                                     late_penalty_floor_percent=Decimal(75)))
    submission = make_submission(assignment, student, days_late=2)
    argument, style = assignment.rubric
    grade = grading.grade_submission(owner, submission.id, grading.GradeChange(
        rubric_levels={argument["id"]: argument["levels"][0]["id"]}))
    assert grade.raw_score == Decimal("6.00") and not grading.is_complete(assignment, grade)
    grade = grading.grade_submission(owner, submission.id, grading.GradeChange(
        rubric_levels={style["id"]: style["levels"][0]["id"]}, feedback="  Well argued.  "))
    assert grade.raw_score == Decimal("10.00")
    assert grade.penalty == Decimal("2.00") and grade.score == Decimal("8.00")
    assert grade.feedback == "Well argued." and grading.is_complete(assignment, grade)
    assert submission.status == SubmissionStatus.GRADED
    # The floor: 4 days late would be 40% off, but the score keeps 75% of the raw score.
    submission.days_late = 4
    grade = grading.grade_submission(owner, submission.id, grading.GradeChange())
    assert grade.score == Decimal("7.50") and grade.penalty == Decimal("2.50")
    with pytest.raises(DomainError):
        grading.grade_submission(owner, submission.id, grading.GradeChange(rubric_levels={argument["id"]: "nope"}))
    with pytest.raises(DomainError):
        grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(5)))


def test_grade_above_the_points_is_refused(setup):
    owner, student, course = setup
    assignment = make_assignment(course, points=Decimal(20))
    submission = make_submission(assignment, student)
    with pytest.raises(DomainError) as caught:
        grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal("20.01")))
    assert caught.value.field == "raw_score" and "20" in caught.value.message
    assert db.session.scalar(select(Grade).where(Grade.submission_id == submission.id)) is None
    with pytest.raises(DomainError):
        grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(-1)))
    with pytest.raises(DomainError):
        grading.parse_score("NaN")
    grade = grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(20)))
    assert grade.score == Decimal(20)


def test_only_course_staff_grade(setup, make_user):
    owner, student, course = setup
    submission = make_submission(make_assignment(course), student)
    for who in (student, make_user(role="faculty")):
        with pytest.raises(Forbidden):
            grading.grade_submission(who, submission.id, grading.GradeChange(raw_score=Decimal(1)))
    assistant = make_user(role="faculty")
    add_staff(course, assistant, ManagementRole.ASSISTANT)
    assert grading.grade_submission(assistant, submission.id, grading.GradeChange(raw_score=Decimal(1))).score == 1
    with pytest.raises(Forbidden):  # assistants grade but do not release
        grading.release_grades(assistant, submission.assignment_id)


def test_a_grade_update_writes_an_audit_row(setup):
    owner, student, course = setup
    submission = make_submission(make_assignment(course), student)
    grade = grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(5)))
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(7)))
    rows = list(db.session.scalars(select(AuditLog).where(AuditLog.table_name == "grades",
                                                          AuditLog.row_id == str(grade.id)).order_by(AuditLog.seq)))
    assert [row.action for row in rows] == ["INSERT", "UPDATE"]
    assert Decimal(str(rows[1].old_values["score"])) == 5 and Decimal(str(rows[1].new_values["score"])) == 7


# ------------------------------------------------------------------ releasing


def test_release_makes_grades_visible_notifies_and_emits(setup, make_user):
    owner, student, course = setup
    other = make_user(role="student")
    enroll(course, other)
    assignment = make_assignment(course)
    mine = make_submission(assignment, student)
    theirs = make_submission(assignment, other)
    grading.grade_submission(owner, mine.id, grading.GradeChange(raw_score=Decimal(9), feedback="Good"))

    # Before release the student sees neither score nor feedback.
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        assert service.own_submission(student, assignment.id)[1] is None

    received = []

    def listener(sender, **kwargs):
        received.append(kwargs)

    events.assignment_graded.connect(listener)
    try:
        count = grading.release_grades(owner, assignment.id, link_for=lambda a: f"/learning/assignments/{a.id}")
    finally:
        events.assignment_graded.disconnect(listener)
    assert count == 1
    assert [(k["user"].id, k["grade"].score) for k in received] == [(student.id, Decimal(9))]
    assert mine.status == SubmissionStatus.RELEASED and theirs.status == SubmissionStatus.SUBMITTED
    note = db.session.scalar(select(Notification).where(Notification.user_id == student.id))
    assert note.kind == "grade_released" and str(assignment.id) in note.link
    assert db.session.scalar(select(Notification).where(Notification.user_id == other.id)) is None
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        submission, grade = service.own_submission(student, assignment.id)
        assert grade.score == Decimal(9) and grade.feedback == "Good"
    # The gradebook row follows the release.
    row = db.session.scalar(select(Gradebook).where(Gradebook.course_id == course.id, Gradebook.user_id == student.id))
    assert row.percent == Decimal("90.00") and row.letter == "A"
    # Releasing again releases nothing new.
    assert grading.release_grades(owner, assignment.id) == 0


def test_incomplete_rubric_grades_are_not_released(setup):
    owner, student, course = setup
    assignment = service.create_assignment(owner, course.id, _input(rubric=RUBRIC))
    assignment.published = True
    submission = make_submission(assignment, student)
    argument = assignment.rubric[0]
    grading.grade_submission(owner, submission.id, grading.GradeChange(
        rubric_levels={argument["id"]: argument["levels"][1]["id"]}))
    assert grading.release_grades(owner, assignment.id) == 0
    assert submission.status == SubmissionStatus.GRADED


def test_changing_a_released_grade_updates_the_gradebook(setup):
    owner, student, course = setup
    assignment = make_assignment(course)
    submission = make_submission(assignment, student)
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(9)))
    grading.release_grades(owner, assignment.id)
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(5)))
    row = db.session.scalar(select(Gradebook).where(Gradebook.course_id == course.id, Gradebook.user_id == student.id))
    assert row.percent == Decimal("50.00") and row.letter == "F"


def test_a_released_grade_closes_resubmission(setup):
    owner, student, course = setup
    assignment = make_assignment(course)
    submission = make_submission(assignment, student)
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(7), feedback="Fine"))
    # graded but not released: the student may still improve the work
    service.submit(student, assignment.id, text="A better version")
    assert submission.status == SubmissionStatus.SUBMITTED and submission.version == 2
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(8), feedback="Better"))
    grading.release_grades(owner, assignment.id)
    with pytest.raises(service.SubmissionRefused, match="released"):
        service.submit(student, assignment.id, text="Yet another version")
    assert submission.status == SubmissionStatus.RELEASED and submission.version == 2
    assert submission.text_answer == "A better version"
