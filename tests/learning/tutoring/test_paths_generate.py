"""Generating learning paths: weakest topics first, then the next unfinished module; step kinds,
difficulty and reasons; the length cap; regenerating."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.learning.education import services as education
from portal.learning.tutoring import paths
from portal.learning.tutoring.models import Difficulty, LearningPath, PathStatus, StepKind
from tests.learning.tutoring.factories.paths import (
    build_course,
    complete_lessons,
    create_user,
    enrol,
    path_steps,
    take_quiz,
)


@pytest.fixture
def student():
    return create_user("student")


def shape(path: LearningPath) -> list[tuple[str, str]]:
    return [(s.kind.value, s.difficulty.value) for s in path_steps(path)]


def test_weakest_topic_first_then_the_next_unfinished_module(student):
    built = build_course(questions=4, lessons=2)
    enrol(student, built)
    loops, functions, classes = built.topics
    complete_lessons(student, loops.lessons + functions.lessons)
    take_quiz(student, loops.quiz, correct=2)  # 50%: weak, not passed
    take_quiz(student, functions.quiz, correct=1)  # 25%: the weakest
    path = paths.generate_path(student.id, built.course.id)
    found = path_steps(path)
    # Functions (25%) before Loops (50%): review both lessons, retry the quiz; then Loops.
    assert [(s.kind, s.module_id) for s in found[:6]] == [
        (StepKind.REVIEW_LESSON, functions.module.id), (StepKind.REVIEW_LESSON, functions.module.id),
        (StepKind.RETRY_QUIZ, functions.module.id),
        (StepKind.REVIEW_LESSON, loops.module.id), (StepKind.REVIEW_LESSON, loops.module.id),
        (StepKind.RETRY_QUIZ, loops.module.id),
    ]
    # The first unfinished module in course order is Loops (its quiz is not passed; already on
    # the path), so nothing is repeated; its assignment comes next.
    assert [(s.kind, s.assignment_id) for s in found[6:]] == [(StepKind.SUBMIT_ASSIGNMENT, loops.assignment.id)]
    assert path.status == PathStatus.ACTIVE and path.steps_total == 7 and path.steps_done == 0
    assert [s.position for s in found] == list(range(1, 8))


def test_step_kinds_difficulty_and_reasons(student):
    built = build_course(questions=4, lessons=2)
    enrol(student, built)
    loops = built.topic("Loops")
    complete_lessons(student, loops.lessons[:1])
    take_quiz(student, loops.quiz, correct=1)
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert [(s.kind.value, s.difficulty.value) for s in found] == [
        ("review_lesson", "introductory"),
        ("retry_quiz", "core"),
        ("study_lesson", "core"),
        ("submit_assignment", "challenge"),
    ]
    review, retry, study, submit = found
    assert review.reason.startswith("\u201cLoops\u201d is your weakest topic (1 of 4 quiz answers correct; mastery 25%)")
    assert retry.reason == "Your best score here is 25%; 60% passes. Try again after reviewing \u201cLoops\u201d."
    assert study.lesson_id == loops.lessons[1].id and "not completed this lesson" in study.reason
    assert submit.assignment_id == loops.assignment.id


def test_a_fresh_student_starts_with_the_first_module(student):
    built = build_course(questions=2, lessons=3)
    enrol(student, built)
    found = path_steps(paths.generate_path(student.id, built.course.id))
    loops = built.topic("Loops")
    assert [s.kind for s in found] == [StepKind.STUDY_LESSON] * 3 + [StepKind.TAKE_QUIZ, StepKind.SUBMIT_ASSIGNMENT]
    assert [s.lesson_id for s in found[:3]] == [lesson.id for lesson in loops.lessons]
    assert found[3].quiz_id == loops.quiz.id and found[3].difficulty == Difficulty.CORE


def test_hard_quizzes_are_a_challenge(student):
    built = build_course(titles=("Proofs",), passing=80, questions=2)
    enrol(student, built)
    take_quiz_step = next(s for s in path_steps(paths.generate_path(student.id, built.course.id))
                          if s.kind == StepKind.TAKE_QUIZ)
    assert take_quiz_step.difficulty == Difficulty.CHALLENGE
    assert "80% is needed to pass" in take_quiz_step.reason

    single = build_course(titles=("Exam",), max_attempts=1, questions=2)
    enrol(student, single)
    step = next(s for s in path_steps(paths.generate_path(student.id, single.course.id)) if s.kind == StepKind.TAKE_QUIZ)
    assert step.difficulty == Difficulty.CHALLENGE and "one attempt" in step.reason


def test_no_retry_when_no_attempt_is_left(student):
    built = build_course(titles=("Loops", "Functions"), questions=4, max_attempts=1)
    enrol(student, built)
    loops = built.topic("Loops")
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=0)
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert StepKind.RETRY_QUIZ not in [s.kind for s in found]
    # Loops still has its assignment, so it stays the module to finish.
    assert [s.kind for s in found] == [StepKind.REVIEW_LESSON, StepKind.REVIEW_LESSON, StepKind.SUBMIT_ASSIGNMENT]


def test_a_closed_assignment_and_a_closed_quiz_are_left_out(student):
    built = build_course(titles=("Loops", "Functions"), questions=2, lessons=1)
    enrol(student, built)
    loops = built.topic("Loops")
    loops.assignment.due_at = utcnow() - timedelta(days=2)
    loops.quiz.closes_at = utcnow() - timedelta(days=1)
    loops.quiz.opens_at = utcnow() - timedelta(days=9)
    db.session.flush()
    complete_lessons(student, loops.lessons)
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert {s.module_id for s in found} == {built.topic("Functions").module.id}


def test_a_locked_module_is_skipped(student):
    built = build_course(titles=("Loops", "Functions"), questions=2, lessons=1, assignments=False,
                         max_attempts=1)
    built.topic("Functions").module.requires_previous = True
    db.session.flush()
    enrol(student, built)
    loops = built.topic("Loops")
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=0)  # failed with no attempt left: Functions stays locked
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert built.topic("Functions").module.id not in {s.module_id for s in found}


def test_course_wide_work_comes_once_the_modules_are_done(student):
    from tests.learning.factories.assign import make_assignment

    built = build_course(titles=("Only",), questions=1, lessons=1, assignments=False)
    final = make_assignment(built.course, title="Final essay")
    enrol(student, built)
    complete_lessons(student, built.topic("Only").lessons)
    take_quiz(student, built.topic("Only").quiz, correct=1)
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert [(s.kind, s.assignment_id, s.module_id) for s in found] == [(StepKind.SUBMIT_ASSIGNMENT, final.id, None)]
    assert "for the whole course" in found[0].reason


def test_the_path_is_capped(student):
    built = build_course(titles=("Big",), lessons=20, questions=1)
    enrol(student, built)
    path = paths.generate_path(student.id, built.course.id)
    assert path.steps_total == paths.MAX_STEPS == len(path_steps(path))


def test_nothing_to_do_is_a_completed_empty_path(student):
    built = build_course(titles=("Only",), questions=1, lessons=1, assignments=False)
    enrol(student, built)
    complete_lessons(student, built.topic("Only").lessons)
    take_quiz(student, built.topic("Only").quiz, correct=1)
    path = paths.generate_path(student.id, built.course.id)
    assert path.status == PathStatus.COMPLETED and path.completed_at is not None and path.steps_total == 0


def test_regenerate_replaces_the_active_path(student):
    built = build_course(questions=2)
    enrol(student, built)
    first = paths.generate_path(student.id, built.course.id)
    second = paths.generate_path(student.id, built.course.id)
    db.session.refresh(first)
    assert first.status == PathStatus.REPLACED and second.status == PathStatus.ACTIVE
    active = db.session.scalar(select(func.count()).select_from(LearningPath).where(
        LearningPath.user_id == student.id, LearningPath.status == PathStatus.ACTIVE))
    assert active == 1
    assert paths.current_path(student.id, built.course.id).id == second.id


def test_ensure_path_creates_once(student):
    built = build_course(questions=2)
    enrol(student, built)
    path, created = paths.ensure_path(student.id, built.course.id)
    again, created_again = paths.ensure_path(student.id, built.course.id)
    assert created and not created_again and again.id == path.id


def test_only_enrolled_students_get_a_path(student):
    built = build_course(questions=1)
    with pytest.raises(NotFound):
        paths.generate_path(student.id, built.course.id)
    enrol(student, built)
    education.leave(student, built.course.id)
    with pytest.raises(NotFound):
        paths.ensure_path(student.id, built.course.id)


def test_weak_topic_reasons_rank_the_topics(student):
    built = build_course(questions=4, lessons=1, assignments=False)
    enrol(student, built)
    for topic, correct in zip(built.topics[:2], (0, 1), strict=True):
        complete_lessons(student, topic.lessons)
        take_quiz(student, topic.quiz, correct=correct)
    reviews = [s for s in path_steps(paths.generate_path(student.id, built.course.id)) if s.kind == StepKind.REVIEW_LESSON]
    assert "your weakest topic" in reviews[0].reason and "one of your weaker topics" in reviews[1].reason
    assert all(len(s.reason) <= 300 for s in reviews)


def test_a_module_whose_work_is_all_on_the_path_gives_way_to_the_next(student):
    built = build_course(titles=("Loops", "Functions"), questions=4, lessons=1, assignments=False)
    enrol(student, built)
    loops, functions = built.topics
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=1)  # Loops: only its retry is left, already planned
    found = path_steps(paths.generate_path(student.id, built.course.id))
    assert [(s.kind, s.module_id) for s in found] == [
        (StepKind.REVIEW_LESSON, loops.module.id), (StepKind.RETRY_QUIZ, loops.module.id),
        (StepKind.STUDY_LESSON, functions.module.id), (StepKind.TAKE_QUIZ, functions.module.id)]
