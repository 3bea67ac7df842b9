"""Submitting the last required assignment completes the course and issues its certificate."""

from __future__ import annotations

from portal.db import db
from portal.learning.education import services
from portal.learning.education.models import Achievement, AchievementKind, EnrollmentStatus
from portal.learning.lms import assignments as assignment_service
from portal.learning.lms.models import Certificate
from tests.learning.factories.assign import enroll, make_assignment
from tests.learning.factories.catalog import enrollment_of, lessons_of, make_course


def _course_waiting_for_the_assignment(student):
    """A course whose lessons the student has completed; only the assignment is left."""
    course = make_course(title="Submitting Sculpture", modules=1, lessons_per_module=1,
                         requires_assignments_submitted=True)
    assignment = make_assignment(course, title="Final piece")
    enroll(course, student)
    result = services.complete_lesson(student, lessons_of(course)[0].id)
    assert not result.course_completed  # the assignment is still missing
    return course, assignment


def _certificate(student, course):
    return db.session.scalar(db.select(Certificate).where(Certificate.user_id == student.id,
                                                          Certificate.course_id == course.id))


def test_submitting_the_last_assignment_completes_the_course(client, login_as):
    student = login_as("student")
    course, assignment = _course_waiting_for_the_assignment(student)
    assert enrollment_of(student, course).status == EnrollmentStatus.ACTIVE

    response = client.post(f"/learning/assignments/{assignment.id}/submit", data={"text_answer": "Done."})
    assert response.status_code == 302

    enrollment = enrollment_of(student, course)
    assert enrollment.status == EnrollmentStatus.COMPLETED and enrollment.completed_at is not None
    certificate = _certificate(student, course)
    assert certificate is not None and certificate.course_title == course.title
    assert db.session.scalar(db.select(Achievement).where(
        Achievement.user_id == student.id, Achievement.kind == AchievementKind.COURSE_COMPLETED,
        Achievement.course_id == course.id)) is not None
    # The course page now leads to the certificate.
    page = client.get(f"/learning/courses/{course.slug}").get_data(as_text=True)
    assert f"/learning/certificates/{certificate.code}" in page


def test_a_submission_does_not_complete_a_course_with_other_work_left(make_user):
    student = make_user(role="student")
    course, assignment = _course_waiting_for_the_assignment(student)
    other = make_assignment(course, title="Second piece")
    assignment_service.submit(student, assignment.id, text="One of two.")
    assert enrollment_of(student, course).status == EnrollmentStatus.ACTIVE
    assert _certificate(student, course) is None

    assignment_service.submit(student, other.id, text="Two of two.")
    assert enrollment_of(student, course).status == EnrollmentStatus.COMPLETED
    assert _certificate(student, course) is not None


def test_resubmitting_after_completion_issues_nothing_new(make_user):
    student = make_user(role="student")
    course, assignment = _course_waiting_for_the_assignment(student)
    assignment_service.submit(student, assignment.id, text="First.")
    first = _certificate(student, course)
    assignment_service.submit(student, assignment.id, text="Second.")
    assert _certificate(student, course).code == first.code
    assert db.session.scalar(db.select(db.func.count()).select_from(Certificate)
                             .where(Certificate.user_id == student.id)) == 1
