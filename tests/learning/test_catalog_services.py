"""Studying a course, the service rules: enrol and leave, lessons and locked modules, idempotent
completion, course completion rules, events and achievements."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from portal import events
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, Forbidden, NotFound
from portal.learning.education import services
from portal.learning.education.models import (
    Achievement,
    AchievementKind,
    CourseStatus,
    EnrollmentStatus,
    Progress,
)
from portal.platform.notifications.models import Notification
from tests.learning.factories.catalog import (
    enrollment_of,
    lessons_of,
    make_assignment,
    make_attempt,
    make_course,
    make_lesson,
    make_module,
    make_quiz,
    make_submission,
)


@contextmanager
def captured(signal):
    calls = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    signal.connect(receiver)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


def achievements(user, kind=None):
    stmt = select(Achievement).where(Achievement.user_id == user.id)
    if kind is not None:
        stmt = stmt.where(Achievement.kind == kind)
    return list(db.session.scalars(stmt))


def progress_row(user, lesson):
    return db.session.scalar(select(Progress).where(Progress.user_id == user.id, Progress.lesson_id == lesson.id)
                             .execution_options(populate_existing=True))


@pytest.fixture
def student(make_user):
    return make_user("student")


@pytest.fixture
def course():
    """Published, two modules of two lessons; completion needs the lessons only."""
    return make_course(modules=2, lessons_per_module=2, requires_quizzes_passed=False)


# ------------------------------------------------------------------ enrol and leave


def test_student_enrols_in_a_published_course(student, course):
    enrollment = services.enrol(student, course.id)
    assert enrollment.status == EnrollmentStatus.ACTIVE
    assert enrollment.progress_percent == 0
    assert enrollment_of(student, course).id == enrollment.id


def test_enrolling_twice_keeps_one_enrollment(student, course):
    first = services.enrol(student, course.id)
    second = services.enrol(student, course.id)
    assert first.id == second.id
    count = db.session.scalar(select(func.count()).where(
        services.Enrollment.course_id == course.id, services.Enrollment.user_id == student.id))
    assert count == 1


@pytest.mark.parametrize("status", [CourseStatus.DRAFT, CourseStatus.ARCHIVED])
def test_unpublished_courses_refuse_enrolment(student, status):
    course = make_course(status=status, modules=1, lessons_per_module=1)
    with pytest.raises(NotFound):
        services.enrol(student, course.id)
    assert enrollment_of(student, course) is None


@pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
def test_only_students_enrol(make_user, course, role):
    with pytest.raises(Forbidden, match="Only students"):
        services.enrol(make_user(role), course.id)


def test_leave_and_enrol_again_keeps_progress(student, course):
    services.enrol(student, course.id)
    first = lessons_of(course)[0]
    services.complete_lesson(student, first.id)
    left = services.leave(student, course.id)
    assert left.status == EnrollmentStatus.LEFT and left.left_at is not None

    back = services.enrol(student, course.id)
    assert back.id == left.id
    assert back.status == EnrollmentStatus.ACTIVE and back.left_at is None
    assert back.progress_percent == 25  # one of four lessons, still counted


def test_cannot_leave_a_course_one_is_not_in(student, course):
    with pytest.raises(Conflict):
        services.leave(student, course.id)
    services.enrol(student, course.id)
    services.leave(student, course.id)
    with pytest.raises(Conflict):
        services.leave(student, course.id)


def test_a_completed_course_cannot_be_left(student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    services.complete_lesson(student, lessons_of(course)[0].id)
    with pytest.raises(Conflict, match="completed"):
        services.leave(student, course.id)
    assert enrollment_of(student, course).status == EnrollmentStatus.COMPLETED


# ------------------------------------------------------------------ lessons


def test_viewing_a_lesson_records_progress_and_where_to_continue(student, course):
    services.enrol(student, course.id)
    lesson = lessons_of(course)[1]
    services.view_lesson(student, lesson.id)
    row = progress_row(student, lesson)
    assert row is not None and row.first_viewed_at is not None and row.completed_at is None
    enrollment = enrollment_of(student, course)
    assert enrollment.last_lesson_id == lesson.id
    assert enrollment.last_activity_at is not None

    first_view = row.first_viewed_at
    services.view_lesson(student, lesson.id)  # a second view keeps the first time
    assert progress_row(student, lesson).first_viewed_at == first_view


def test_viewing_the_same_lesson_again_soon_writes_nothing(student, course, monkeypatch, statements):
    services.enrol(student, course.id)
    first, second = lessons_of(course)[:2]
    services.view_lesson(student, first.id)
    seen_at = enrollment_of(student, course).last_activity_at
    with statements() as counted:
        services.view_lesson(student, first.id)  # a reload: the enrolment already says so
    assert not any(sql.lstrip().upper().startswith(("UPDATE", "INSERT")) for sql in counted.statements)
    assert enrollment_of(student, course).last_activity_at == seen_at

    later = utcnow() + services.ACTIVITY_RESOLUTION
    monkeypatch.setattr(services, "utcnow", lambda: later)
    services.view_lesson(student, first.id)  # the same lesson, a while later
    assert enrollment_of(student, course).last_activity_at == later
    services.view_lesson(student, second.id)  # another lesson: at once
    assert enrollment_of(student, course).last_lesson_id == second.id


def test_lessons_need_an_enrolment(student, course):
    lesson = lessons_of(course)[0]
    with pytest.raises(Forbidden, match="Enrol"):
        services.view_lesson(student, lesson.id)
    services.enrol(student, course.id)
    services.leave(student, course.id)
    with pytest.raises(Forbidden):
        services.view_lesson(student, lesson.id)
    with pytest.raises(Forbidden):
        services.complete_lesson(student, lesson.id)
    assert progress_row(student, lesson) is None


def test_staff_preview_records_nothing(make_user, course):
    admin = make_user("admin")
    lesson = lessons_of(course)[0]
    access = services.view_lesson(admin, lesson.id)
    assert access.preview
    assert progress_row(admin, lesson) is None
    with pytest.raises(Forbidden, match="preview"):
        services.complete_lesson(admin, lesson.id)


def test_faculty_outside_the_course_staff_cannot_open_lessons(make_user, course):
    with pytest.raises(Forbidden):
        services.view_lesson(make_user("faculty"), lessons_of(course)[0].id)


def test_faculty_on_the_staff_previews_even_a_draft(make_user):
    teacher = make_user("faculty")
    course = make_course(status=CourseStatus.DRAFT, instructor=teacher, modules=1, lessons_per_module=1)
    assert services.view_lesson(teacher, lessons_of(course)[0].id).preview
    with pytest.raises(NotFound):
        services.view_lesson(make_user("faculty"), lessons_of(course)[0].id)


def test_lessons_of_an_unpublished_course_are_closed_to_its_students(student, course):
    services.enrol(student, course.id)
    course.status = CourseStatus.DRAFT
    db.session.flush()
    with pytest.raises(NotFound):
        services.view_lesson(student, lessons_of(course)[0].id)


def test_unknown_lesson(student):
    with pytest.raises(NotFound):
        services.view_lesson(student, services.uuid.uuid4())


# ------------------------------------------------------------------ locked modules


@pytest.fixture
def gated():
    """Module 2 requires module 1 (two lessons and a quiz) to be passed."""
    course = make_course(requires_quizzes_passed=False)
    first = make_module(course, title="Basics")
    make_lesson(first)
    make_lesson(first)
    quiz = make_quiz(course, module=first)
    second = make_module(course, title="Advanced", requires_previous=True)
    make_lesson(second)
    return course, quiz


def test_locked_module_refuses_its_lessons_until_the_previous_is_passed(student, gated):
    course, quiz = gated
    services.enrol(student, course.id)
    one, two, locked = lessons_of(course)
    with pytest.raises(Conflict, match="“Advanced” opens once you have passed “Basics”"):
        services.view_lesson(student, locked.id)
    with pytest.raises(Conflict):
        services.complete_lesson(student, locked.id)

    services.complete_lesson(student, one.id)
    services.complete_lesson(student, two.id)
    with pytest.raises(Conflict):  # lessons done, the quiz not passed yet
        services.view_lesson(student, locked.id)
    make_attempt(quiz, student, passed=False)
    with pytest.raises(Conflict):  # a failed attempt does not open it
        services.view_lesson(student, locked.id)

    make_attempt(quiz, student, passed=True)
    services.view_lesson(student, locked.id)
    assert progress_row(student, locked) is not None


def test_an_unpublished_quiz_does_not_hold_the_next_module(student, gated):
    course, quiz = gated
    quiz.published = False
    db.session.flush()
    services.enrol(student, course.id)
    one, two, third = lessons_of(course)
    services.complete_lesson(student, one.id)
    services.complete_lesson(student, two.id)
    services.view_lesson(student, third.id)


def test_staff_preview_is_not_locked(make_user, gated):
    course, _ = gated
    assert services.view_lesson(make_user("admin"), lessons_of(course)[2].id).preview


# ------------------------------------------------------------------ completing lessons


def test_complete_lesson_is_idempotent_and_emits_once(student, course):
    services.enrol(student, course.id)
    lesson = lessons_of(course)[0]
    with captured(events.lesson_completed) as fired:
        first = services.complete_lesson(student, lesson.id)
        completed_at = progress_row(student, lesson).completed_at
        again = services.complete_lesson(student, lesson.id)
    assert first.newly_completed and not again.newly_completed
    assert len(fired) == 1
    assert fired[0]["user"].id == student.id and fired[0]["lesson"].id == lesson.id
    assert progress_row(student, lesson).completed_at == completed_at
    assert enrollment_of(student, course).progress_percent == 25


def test_completing_without_opening_first_records_the_view_too(student, course):
    services.enrol(student, course.id)
    lesson = lessons_of(course)[3]
    services.complete_lesson(student, lesson.id)
    row = progress_row(student, lesson)
    assert row.first_viewed_at is not None and row.completed_at is not None
    assert enrollment_of(student, course).last_lesson_id == lesson.id


def test_progress_percent_follows_completed_lessons(student):
    course = make_course(modules=1, lessons_per_module=3, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    percents = []
    for lesson in lessons_of(course):
        percents.append(services.complete_lesson(student, lesson.id).enrollment.progress_percent)
    assert percents == [33, 66, 100]


# ------------------------------------------------------------------ course completion


def test_course_completes_when_all_lessons_are_done(student, course):
    services.enrol(student, course.id)
    with captured(events.course_completed) as fired:
        results = [services.complete_lesson(student, lesson.id) for lesson in lessons_of(course)]
        services.complete_lesson(student, lessons_of(course)[0].id)  # again: nothing more
    assert [r.course_completed for r in results] == [False, False, False, True]
    assert len(fired) == 1 and fired[0]["course"].id == course.id and fired[0]["user"].id == student.id
    enrollment = enrollment_of(student, course)
    assert enrollment.status == EnrollmentStatus.COMPLETED and enrollment.completed_at is not None
    assert enrollment.progress_percent == 100
    note = db.session.scalar(select(Notification).where(Notification.user_id == student.id,
                                                        Notification.kind == "course_completed"))
    assert note is not None and course.title in note.title and note.link == f"/learning/courses/{course.slug}"


def test_completion_waits_for_every_published_quiz(student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=True)
    quiz = make_quiz(course)
    make_quiz(course, published=False)  # not published: does not count
    services.enrol(student, course.id)
    result = services.complete_lesson(student, lessons_of(course)[0].id)
    assert not result.course_completed
    make_attempt(quiz, student, passed=False)
    assert not services.check_course_completion(student, course.id)
    make_attempt(quiz, student, passed=True)
    assert services.check_course_completion(student, course.id)
    assert enrollment_of(student, course).status == EnrollmentStatus.COMPLETED


def test_quiz_passed_event_completes_the_course(student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=True)
    quiz = make_quiz(course)
    services.enrol(student, course.id)
    services.complete_lesson(student, lessons_of(course)[0].id)
    attempt = make_attempt(quiz, student, passed=True)
    with captured(events.course_completed) as fired:
        events.quiz_passed.send(user=student, quiz=quiz, score=attempt.score, attempt=attempt)
    assert len(fired) == 1
    assert enrollment_of(student, course).status == EnrollmentStatus.COMPLETED


def test_quizzes_do_not_count_when_the_course_does_not_require_them(student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False)
    make_quiz(course)
    services.enrol(student, course.id)
    assert services.complete_lesson(student, lessons_of(course)[0].id).course_completed


def test_completion_waits_for_a_submission_to_every_published_assignment(student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False,
                         requires_assignments_submitted=True)
    assignment = make_assignment(course)
    make_assignment(course, published=False)
    services.enrol(student, course.id)
    assert not services.complete_lesson(student, lessons_of(course)[0].id).course_completed
    make_submission(assignment, student)
    assert services.check_course_completion(student, course.id)


def test_a_course_that_does_not_require_all_lessons(student):
    course = make_course(modules=1, lessons_per_module=2, requires_all_lessons=False, requires_quizzes_passed=True)
    quiz = make_quiz(course)
    services.enrol(student, course.id)
    make_attempt(quiz, student, passed=True)
    assert services.check_course_completion(student, course.id)


def test_completion_check_needs_an_active_enrolment(student, course):
    assert not services.check_course_completion(student, course.id)
    services.enrol(student, course.id)
    services.leave(student, course.id)
    assert not services.check_course_completion(student, course.id)


# ------------------------------------------------------------------ achievements


def test_first_lesson_is_awarded_once_across_courses(student, course):
    other = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    services.enrol(student, other.id)
    services.complete_lesson(student, lessons_of(course)[0].id)
    services.complete_lesson(student, lessons_of(course)[1].id)
    services.complete_lesson(student, lessons_of(other)[0].id)
    earned = achievements(student, AchievementKind.FIRST_LESSON)
    assert len(earned) == 1 and earned[0].course_id is None


def test_course_completed_achievement_per_course(student):
    courses = [make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False) for _ in range(2)]
    for course in courses:
        services.enrol(student, course.id)
        services.complete_lesson(student, lessons_of(course)[0].id)
    earned = achievements(student, AchievementKind.COURSE_COMPLETED)
    assert sorted(a.course_id for a in earned) == sorted(c.id for c in courses)


def test_award_is_once_even_when_asked_twice(student):
    assert services.award(student, AchievementKind.STREAK_7, "Streak")
    assert not services.award(student, AchievementKind.STREAK_7, "Streak")
    assert len(achievements(student, AchievementKind.STREAK_7)) == 1
    notes = db.session.scalar(select(func.count()).where(Notification.user_id == student.id,
                                                         Notification.kind == "achievement"))
    assert notes == 1


def _backdate(user, lesson, days_ago: int):
    db.session.execute(update(Progress).where(Progress.user_id == user.id, Progress.lesson_id == lesson.id)
                       .values(completed_at=utcnow() - timedelta(days=days_ago)))


def test_streak_of_seven_consecutive_days(student):
    course = make_course(modules=1, lessons_per_module=8, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    lessons = lessons_of(course)
    for days_ago, lesson in zip(range(6, 0, -1), lessons, strict=False):  # six days before today
        services.complete_lesson(student, lesson.id)
        _backdate(student, lesson, days_ago)
    assert achievements(student, AchievementKind.STREAK_7) == []
    services.complete_lesson(student, lessons[6].id)  # today: the seventh day
    assert len(achievements(student, AchievementKind.STREAK_7)) == 1
    services.complete_lesson(student, lessons[7].id)
    assert len(achievements(student, AchievementKind.STREAK_7)) == 1


def test_a_gap_breaks_the_streak(student):
    course = make_course(modules=1, lessons_per_module=8, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    lessons = lessons_of(course)
    for days_ago, lesson in zip([7, 6, 5, 4, 3, 2], lessons, strict=False):  # yesterday missing
        services.complete_lesson(student, lesson.id)
        _backdate(student, lesson, days_ago)
    services.complete_lesson(student, lessons[6].id)
    assert achievements(student, AchievementKind.STREAK_7) == []


def test_perfect_quiz_from_the_quiz_passed_event(student):
    course = make_course(modules=1, lessons_per_module=1)
    quiz = make_quiz(course, points=(4, 6))
    events.quiz_passed.send(user=student, quiz=quiz, score=Decimal("9"))
    assert achievements(student, AchievementKind.PERFECT_QUIZ) == []
    events.quiz_passed.send(user=student, quiz=quiz, score=Decimal("10"))  # the sum of the points
    other = make_quiz(course, points=(1,))
    attempt = make_attempt(other, student, passed=True, score=Decimal(5), max_score=Decimal(5))
    events.quiz_passed.send(user=student, quiz=other, score=attempt.score, attempt=attempt)
    earned = achievements(student, AchievementKind.PERFECT_QUIZ)
    assert len(earned) == 1 and quiz.title in earned[0].title


def test_perfect_quiz_uses_the_attempts_maximum_when_sent(student):
    course = make_course(modules=1, lessons_per_module=1)
    quiz = make_quiz(course, points=(4, 6))
    attempt = make_attempt(quiz, student, passed=True, score=Decimal(8), max_score=Decimal(8))
    events.quiz_passed.send(user=student, quiz=quiz, score=attempt.score, attempt=attempt)
    assert len(achievements(student, AchievementKind.PERFECT_QUIZ)) == 1
