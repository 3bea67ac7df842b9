"""Learning insights: mastery from quiz answers and released grades, the evidence minimum, pace
against the course's schedule, and replacing the stored set."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from portal.db import db
from portal.db.base import utcnow
from portal.learning.education.models import Enrollment, Progress
from portal.learning.tutoring import insights
from portal.learning.tutoring.insights import (
    MIN_ANSWERS,
    InsightKind,
    mastery,
    pace_of,
    refresh_insights,
    schedule_for,
    topic_stats,
)
from portal.learning.tutoring.models import LearningInsight
from tests.learning.factories.assign import graded_attempt, make_quiz
from tests.learning.tutoring.factories.paths import (
    build_course,
    complete_lessons,
    create_user,
    enrol,
    release_grade,
    take_quiz,
)

WEIGHTS = {"assignments": Decimal(50), "quizzes": Decimal(50)}


@pytest.fixture
def student():
    return create_user("student")


def by_kind(found, kind):
    return [i for i in found if i.kind == kind]


# ------------------------------------------------------------------ the mastery formula


def test_mastery_of_quiz_points_alone():
    assert mastery(Decimal(3), Decimal(9), Decimal(0), Decimal(0), WEIGHTS) == Decimal("33.33")


def test_mastery_weighs_quizzes_and_assignments_by_the_course_weights():
    # quizzes 50% share, assignment 80%: equal weights -> 65; 60/40 toward assignments -> 68.
    assert mastery(Decimal(5), Decimal(10), Decimal(8), Decimal(10), WEIGHTS) == Decimal("65.00")
    weights = {"assignments": Decimal(60), "quizzes": Decimal(40)}
    assert mastery(Decimal(5), Decimal(10), Decimal(8), Decimal(10), weights) == Decimal("68.00")


def test_mastery_uses_equal_weights_when_the_present_evidence_weighs_nothing():
    weights = {"assignments": Decimal(100), "quizzes": Decimal(0)}
    assert mastery(Decimal(2), Decimal(4), Decimal(0), Decimal(0), weights) == Decimal("50.00")


def test_mastery_without_evidence_is_none():
    assert mastery(Decimal(0), Decimal(0), Decimal(0), Decimal(0), WEIGHTS) is None


# ------------------------------------------------------------------ topics from real attempts


def test_topic_mastery_from_the_latest_attempt_and_a_released_grade(student):
    built = build_course(questions=4, max_attempts=3)
    enrol(student, built)
    loops = built.topic("Loops")
    take_quiz(student, loops.quiz, correct=1)  # 25%, then the latest: 3 of 4
    take_quiz(student, loops.quiz, correct=3)
    release_grade(loops.assignment, student, 6)  # 6 of 10
    stats = {t.title: t for t in topic_stats(student.id, built.course.id, {})}
    assert (stats["Loops"].answers, stats["Loops"].correct) == (4, 3)
    assert stats["Loops"].graded_assignments == 1
    # (75% + 60%) / 2 with the default equal weights.
    assert stats["Loops"].mastery == Decimal("67.50")
    assert stats["Functions"].mastery is None and stats["Functions"].answers == 0


def test_a_worse_retry_lowers_mastery(student):
    built = build_course(questions=4)
    enrol(student, built)
    quiz = built.topic("Loops").quiz
    take_quiz(student, quiz, correct=4)
    take_quiz(student, quiz, correct=1)
    stats = {t.title: t for t in topic_stats(student.id, built.course.id, {})}
    assert stats["Loops"].mastery == Decimal("25.00")


def test_unanswered_questions_count_as_nothing_earned(student):
    built = build_course(questions=4)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=2, answer=2)
    loops = next(t for t in topic_stats(student.id, built.course.id, {}) if t.title == "Loops")
    assert (loops.answers, loops.correct, loops.mastery) == (4, 2, Decimal("50.00"))


def test_unreleased_grades_and_in_progress_attempts_are_not_evidence(student):
    from portal.learning.assessment import services as quizzes
    from portal.learning.lms.models import Grade

    built = build_course()
    enrol(student, built)
    grade = release_grade(built.topic("Loops").assignment, student, 2)
    grade.released_at = None
    quizzes.start_attempt(student, built.topic("Functions").quiz.id)
    db.session.flush()
    stats = {t.title: t for t in topic_stats(student.id, built.course.id, {})}
    assert stats["Loops"].graded_assignments == 0 and stats["Loops"].mastery is None
    assert stats["Functions"].answers == 0
    assert db.session.scalar(select(func.count()).select_from(Grade).where(Grade.user_id == student.id)) == 1


# ------------------------------------------------------------------ weak and strong, with evidence


def test_weak_and_strong_topics_with_summaries_and_basis(student):
    built = build_course(questions=3)
    enrol(student, built)
    complete_lessons(student, built.topic("Loops").lessons[:1])
    take_quiz(student, built.topic("Loops").quiz, correct=1)
    take_quiz(student, built.topic("Functions").quiz, correct=3)
    found = refresh_insights(student.id, built.course.id)
    (weak,) = by_kind(found, InsightKind.WEAK_TOPIC)
    (strong,) = by_kind(found, InsightKind.STRONG_TOPIC)
    assert weak.module_id == built.topic("Loops").module.id and weak.score == Decimal("33.33")
    assert weak.summary == "Loops needs more work: you answered 1 of 3 questions correctly (mastery 33%)."
    assert weak.basis["quiz_answers"] == 3 and weak.basis["correct"] == 1
    assert weak.basis["lessons_done"] == 1 and weak.basis["lessons_total"] == 2
    assert insights.basis_text(weak) == "based on 3 quiz answers, 1 of 2 lessons"
    assert strong.module_id == built.topic("Functions").module.id and strong.score == Decimal("100.00")
    assert "is a strength" in strong.summary


def test_too_little_evidence_is_neither_weak_nor_strong(student):
    built = build_course(questions=MIN_ANSWERS - 1)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=0)
    take_quiz(student, built.topic("Functions").quiz, correct=MIN_ANSWERS - 1)
    found = refresh_insights(student.id, built.course.id)
    assert not by_kind(found, InsightKind.WEAK_TOPIC) and not by_kind(found, InsightKind.STRONG_TOPIC)


def test_one_graded_assignment_is_enough_evidence(student):
    built = build_course(questions=1)
    enrol(student, built)
    release_grade(built.topic("Classes").assignment, student, 3)
    (weak,) = by_kind(refresh_insights(student.id, built.course.id), InsightKind.WEAK_TOPIC)
    assert weak.module_id == built.topic("Classes").module.id
    assert weak.summary == "Classes needs more work: you scored 3 of 10 on its assignment (mastery 30%)."
    assert insights.basis_text(weak) == "based on 1 graded assignment, 0 of 2 lessons"


def test_weak_topics_come_weakest_first(student):
    built = build_course(questions=4)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=2)
    take_quiz(student, built.topic("Functions").quiz, correct=0)
    take_quiz(student, built.topic("Classes").quiz, correct=1)
    weak = by_kind(refresh_insights(student.id, built.course.id), InsightKind.WEAK_TOPIC)
    assert [i.module_id for i in weak] == [built.topic(t).module.id for t in ("Functions", "Classes", "Loops")]


def test_quizzes_without_a_module_have_no_topic(student):
    built = build_course(questions=1)
    enrol(student, built)
    loose = make_quiz(built.course, title="Final exam")
    graded_attempt(loose, student, 10)
    found = refresh_insights(student.id, built.course.id)
    assert not by_kind(found, InsightKind.WEAK_TOPIC)


# ------------------------------------------------------------------ pace


def test_schedule_prefers_the_latest_due_date_then_hours_then_lesson_minutes():
    start = utcnow() - timedelta(days=10)
    due = start + timedelta(days=20)
    assert schedule_for(start, due, 10, 90).source == "due_dates"
    by_hours = schedule_for(start, None, 10, 90)
    assert by_hours.source == "estimated_hours" and by_hours.ends_at - start == timedelta(days=14)
    by_minutes = schedule_for(start, start - timedelta(days=1), None, 300)  # a due date before the start
    assert by_minutes.source == "lesson_minutes" and by_minutes.ends_at - start == timedelta(days=7)
    assert schedule_for(start, None, None, None) is None


@pytest.mark.parametrize(("done", "total", "verdict", "score"), [
    (8, 10, "ahead", Decimal("30.00")),  # 80% done, 50% expected
    (2, 10, "behind", Decimal("-30.00")),
    (11, 20, "on_track", Decimal("5.00")),
    (6, 10, "ahead", Decimal("10.00")),  # the tolerance itself is no longer "on track"
    (4, 10, "behind", Decimal("-10.00")),
    (9, 20, "on_track", Decimal("-5.00")),
])
def test_pace_ahead_behind_on_track(done, total, verdict, score):
    now = utcnow()
    start = now - timedelta(days=5)
    pace = pace_of(done, total, schedule_for(start, start + timedelta(days=10), None, None), now)
    assert pace.expected_percent == Decimal("50.00")
    assert (pace.verdict, pace.score) == (verdict, score)


def test_pace_past_the_end_expects_everything():
    now = utcnow()
    start = now - timedelta(days=30)
    pace = pace_of(3, 4, schedule_for(start, start + timedelta(days=10), None, None), now)
    assert pace.expected_percent == Decimal("100.00") and pace.verdict == "behind"


def test_pace_insight_from_the_enrolment_and_estimated_hours(student):
    built = build_course(estimated_hours=10, questions=1)  # 2 weeks at 5 hours a week
    enrol(student, built)
    db.session.execute(update(Enrollment).where(Enrollment.user_id == student.id)
                       .values(created_at=utcnow() - timedelta(days=7)))
    complete_lessons(student, built.topic("Loops").lessons)  # 2 of 6 lessons: 33% against 50%
    (pace,) = by_kind(refresh_insights(student.id, built.course.id), InsightKind.PACE)
    assert pace.module_id is None
    assert Decimal("-17.00") <= pace.score <= Decimal("-16.00")
    assert pace.basis["verdict"] == "behind" and pace.basis["schedule"] == "estimated_hours"
    assert pace.summary.startswith("You are behind schedule: 2 of 6 lessons done (33%)")
    assert insights.basis_text(pace) == "based on 2 of 6 lessons and the course's estimated hours"


def test_pace_starts_at_the_first_lesson_opened_if_earlier_than_the_enrolment(student):
    built = build_course(estimated_hours=10, questions=1)
    enrol(student, built)
    complete_lessons(student, built.topic("Loops").lessons[:1])
    db.session.execute(update(Progress).where(Progress.user_id == student.id)
                       .values(first_viewed_at=utcnow() - timedelta(days=14)))
    (pace,) = by_kind(refresh_insights(student.id, built.course.id), InsightKind.PACE)
    assert pace.basis["expected_percent"] == 100.0


def test_pace_uses_the_students_own_extension_as_the_latest_due_date(student):
    built = build_course(questions=1, assignments=True)
    enrol(student, built)
    assignment = built.topic("Loops").assignment
    assignment.due_at = utcnow() + timedelta(days=1)
    assignment.extensions = {str(student.id): (utcnow() + timedelta(days=30)).isoformat()}
    db.session.flush()
    (pace,) = by_kind(refresh_insights(student.id, built.course.id), InsightKind.PACE)
    assert pace.basis["schedule"] == "due_dates"
    assert pace.basis["ends_at"][:10] == (utcnow() + timedelta(days=30)).date().isoformat()


def test_no_schedule_no_pace(student):
    built = build_course(questions=1)
    enrol(student, built)
    assert not by_kind(refresh_insights(student.id, built.course.id), InsightKind.PACE)


# ------------------------------------------------------------------ replacing the set


def test_refresh_replaces_the_set_in_one_go(student):
    built = build_course(questions=3, estimated_hours=5)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=0)
    refresh_insights(student.id, built.course.id)
    refresh_insights(student.id, built.course.id)
    rows = db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id)).all()
    assert sorted(r.kind.value for r in rows) == ["pace", "weak_topic"]


def test_refresh_uses_few_statements_whatever_the_course_size(student, statements):
    small = build_course(titles=("A",), questions=3)
    large = build_course(titles=tuple(f"T{n}" for n in range(8)), questions=6, lessons=4)
    for built in (small, large):
        enrol(student, built)
        for topic in built.topics:
            take_quiz(student, topic.quiz, correct=1)
    counts = []
    for course_id in (small.course.id, large.course.id):
        user_id = student.id
        with statements() as counted:
            refresh_insights(user_id, course_id)
        counts.append(counted.count)
    assert counts[0] == counts[1] <= 5, [s[:80] for s in counted.statements]


def test_a_student_who_left_keeps_no_insights(student):
    from portal.learning.education import services as education

    built = build_course(questions=3)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=0)
    assert refresh_insights(student.id, built.course.id)
    education.leave(student, built.course.id)
    assert refresh_insights(student.id, built.course.id) == []
    assert not db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id)).all()


def test_an_attempt_graded_by_hand_refreshes_the_insights_when_its_last_essay_is_graded(student):
    """An attempt with essays waits for its grader; the low marks, once all given, are new
    evidence (the ``quiz_graded`` event), so the topic turns weak without any other event."""
    from portal.learning.assessment import services as quizzes
    from portal.learning.assessment.models import Answer, QuestionKind
    from tests.learning.factories.quiz import add_question

    built = build_course(titles=("Essays",), questions=0, lessons=1)
    quiz = built.topic("Essays").quiz
    essays = [add_question(quiz, QuestionKind.ESSAY, points="4", prompt=f"Explain recursion, part {n}.")
              for n in range(1, insights.MIN_ANSWERS + 1)]
    enrol(student, built)
    complete_lessons(student, built.topic("Essays").lessons)
    attempt = quizzes.start_attempt(student, quiz.id)
    for essay in essays:
        quizzes.save_answer(student, attempt.id, essay.id, quizzes.AnswerInput(text="It calls itself."))
    quizzes.submit_attempt(student, attempt.id)

    def weak_topics() -> list:
        return list(db.session.scalars(select(LearningInsight.module_id).where(
            LearningInsight.user_id == student.id, LearningInsight.course_id == built.course.id,
            LearningInsight.kind == "weak_topic")))

    answer_ids = list(db.session.scalars(select(Answer.id).where(Answer.attempt_id == attempt.id)))
    for answer_id in answer_ids[:-1]:
        quizzes.grade_essay(built.teacher, answer_id, "0", "Say what the base case is.")
    assert weak_topics() == []  # the attempt still waits: nothing final to learn from
    quizzes.grade_essay(built.teacher, answer_ids[-1], "0", "Say what the base case is.")
    assert weak_topics() == [built.topic("Essays").module.id]
