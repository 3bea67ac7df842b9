"""Path steps complete themselves from the real services (lesson completed, quiz submitted,
passed or bettered, assignment submitted), paths complete, and the quiz_submitted and
assignment_submitted events fire from every place work is handed in."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from portal import events
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.learning.assessment import services as quizzes
from portal.learning.assessment import tasks as quiz_tasks
from portal.learning.assessment.models import AttemptStatus
from portal.learning.education import services as education
from portal.learning.lms import assignments as assignment_service
from portal.learning.lms import grading as lms_grading
from portal.learning.tutoring import listeners, paths
from portal.learning.tutoring.models import (
    InsightKind,
    LearningInsight,
    LearningPath,
    PathStatus,
    StepKind,
    StepStatus,
)
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


def reload(path: LearningPath) -> LearningPath:
    db.session.refresh(path)
    return path


@pytest.fixture
def received():
    """Records the quiz_submitted and assignment_submitted events sent during the test."""
    seen: list[tuple[str, dict]] = []

    # Plain values, read when the event is sent (the job's session ends with the job).
    def on_quiz(sender, **kwargs):
        attempt = kwargs["attempt"]
        seen.append(("quiz_submitted", {"user": kwargs["user"].id, "quiz": kwargs["quiz"].id, "attempt": attempt.id,
                                        "status": attempt.status, "auto": attempt.auto_submitted}))

    def on_assignment(sender, **kwargs):
        seen.append(("assignment_submitted", {"user": kwargs["user"].id, "submission": kwargs["submission"].id}))

    events.quiz_submitted.connect(on_quiz)
    events.assignment_submitted.connect(on_assignment)
    try:
        yield seen
    finally:
        events.quiz_submitted.disconnect(on_quiz)
        events.assignment_submitted.disconnect(on_assignment)


# ------------------------------------------------------------------ the events fire


def test_submitting_an_attempt_sends_quiz_submitted(student, received):
    built = build_course(questions=2)
    enrol(student, built)
    attempt = take_quiz(student, built.topic("Loops").quiz, correct=1)
    (name, kwargs), = [r for r in received if r[0] == "quiz_submitted"]
    assert kwargs["user"] == student.id and kwargs["quiz"] == built.topic("Loops").quiz.id
    assert kwargs["attempt"] == attempt.id and kwargs["status"] == AttemptStatus.GRADED


def test_an_attempt_waiting_for_essays_sends_quiz_submitted_while_submitted(student, received):
    from tests.learning.factories.quiz import full_quiz

    built = build_course(titles=("Loops",), questions=1)
    enrol(student, built)
    quiz, _ = full_quiz(built.course)
    attempt = quizzes.start_attempt(student, quiz.id)
    quizzes.submit_attempt(student, attempt.id)
    assert [r[1]["status"] for r in received] == [AttemptStatus.GRADED]  # an unanswered essay is 0
    essay_quiz, questions = full_quiz(built.course)
    attempt = quizzes.start_attempt(student, essay_quiz.id)
    quizzes.save_answer(student, attempt.id, questions["essay"].id, quizzes.AnswerInput(text="Because."))
    quizzes.submit_attempt(student, attempt.id)
    assert received[-1][1]["status"] == AttemptStatus.SUBMITTED


def test_the_deadline_sends_quiz_submitted(student, received, monkeypatch):
    built = build_course(titles=("Loops",), questions=2)
    quiz = built.topic("Loops").quiz
    quiz.time_limit_minutes = 5
    db.session.flush()
    enrol(student, built)
    attempt = quizzes.start_attempt(student, quiz.id)
    later = utcnow() + timedelta(minutes=10)
    monkeypatch.setattr("portal.db.base.utcnow", lambda: later)
    with pytest.raises(quizzes.DeadlinePassed):
        quizzes.enforce_deadline(attempt)
    assert [(r[1]["attempt"], r[1]["auto"]) for r in received] == [(attempt.id, True)]


def test_the_deadline_job_sends_quiz_submitted(student, received):
    built = build_course(titles=("Loops",), questions=2)
    quiz = built.topic("Loops").quiz
    quiz.time_limit_minutes = 5
    db.session.flush()
    enrol(student, built)
    path = paths.generate_path(student.id, built.course.id)
    attempt = quizzes.start_attempt(student, quiz.id)
    attempt.deadline_at = utcnow() - timedelta(minutes=1)
    db.session.flush()
    attempt_id = attempt.id
    assert quiz_tasks.close_expired_attempts(0) == 1  # as the worker runs it, as system:worker
    assert [(r[1]["attempt"], r[1]["auto"]) for r in received] == [(attempt_id, True)]
    take = next(s for s in path_steps(path) if s.kind == StepKind.TAKE_QUIZ)
    assert take.status == StepStatus.DONE


def test_submitting_an_assignment_sends_assignment_submitted(student, received):
    built = build_course(titles=("Loops",), questions=1)
    enrol(student, built)
    submission = assignment_service.submit(student, built.topic("Loops").assignment.id, text="My work")
    assert [(r[0], r[1]["submission"], r[1]["user"]) for r in received] == [
        ("assignment_submitted", submission.id, student.id)]
    assignment_service.submit(student, built.topic("Loops").assignment.id, text="Better work")
    assert len(received) == 2  # a resubmission is a submission too


def test_a_refused_submission_sends_nothing(student, received):
    built = build_course(titles=("Loops",), questions=1)
    enrol(student, built)
    with pytest.raises(assignment_service.SubmissionRefused):
        assignment_service.submit(student, built.topic("Loops").assignment.id, text="   ")
    assert received == []


# ------------------------------------------------------------------ steps complete themselves


def test_completing_a_lesson_completes_its_study_step(student):
    built = build_course(questions=2, lessons=2)
    enrol(student, built)
    path = paths.generate_path(student.id, built.course.id)
    first_lesson = built.topic("Loops").lessons[0]
    education.complete_lesson(student, first_lesson.id)
    done = [s for s in path_steps(path) if s.status == StepStatus.DONE]
    assert [(s.kind, s.lesson_id) for s in done] == [(StepKind.STUDY_LESSON, first_lesson.id)]
    assert done[0].completed_at is not None
    assert reload(path).steps_done == 1
    education.complete_lesson(student, first_lesson.id)  # again: nothing new
    assert reload(path).steps_done == 1


def test_taking_a_quiz_completes_its_step_even_when_failed(student):
    built = build_course(questions=4, lessons=1)
    enrol(student, built)
    path = paths.generate_path(student.id, built.course.id)
    take_quiz(student, built.topic("Loops").quiz, correct=0)
    take = next(s for s in path_steps(path) if s.kind == StepKind.TAKE_QUIZ)
    assert take.status == StepStatus.DONE and reload(path).steps_done == 1


def test_a_retry_is_done_when_the_score_is_better_not_when_worse(student):
    built = build_course(questions=4, lessons=1, passing=90)
    enrol(student, built)
    quiz = built.topic("Loops").quiz
    complete_lessons(student, built.topic("Loops").lessons)
    take_quiz(student, quiz, correct=2)
    path = paths.generate_path(student.id, built.course.id)
    retry = next(s for s in path_steps(path) if s.kind == StepKind.RETRY_QUIZ)
    take_quiz(student, quiz, correct=1)  # worse
    assert next(s for s in path_steps(path) if s.id == retry.id).status == StepStatus.PENDING
    take_quiz(student, quiz, correct=2)  # only as good
    assert next(s for s in path_steps(path) if s.id == retry.id).status == StepStatus.PENDING
    take_quiz(student, quiz, correct=3)  # better, though still not passed (75% < 90%)
    assert next(s for s in path_steps(path) if s.id == retry.id).status == StepStatus.DONE


def test_passing_a_topics_quiz_ends_its_reviews_and_retry(student):
    built = build_course(questions=4, lessons=2, assignments=False)
    enrol(student, built)
    loops = built.topic("Loops")
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=1)
    path = paths.generate_path(student.id, built.course.id)
    before = path_steps(path)
    assert [s.kind for s in before[:3]] == [StepKind.REVIEW_LESSON, StepKind.REVIEW_LESSON, StepKind.RETRY_QUIZ]
    take_quiz(student, loops.quiz, correct=4)
    after = {s.id: s.status for s in path_steps(path)}
    assert [after[s.id] for s in before[:3]] == [StepStatus.DONE] * 3
    assert reload(path).steps_done == 3


def test_submitting_an_assignment_completes_its_step(student):
    built = build_course(titles=("Loops",), questions=1, lessons=1)
    enrol(student, built)
    path = paths.generate_path(student.id, built.course.id)
    assignment_service.submit(student, built.topic("Loops").assignment.id, text="My work")
    step = next(s for s in path_steps(path) if s.kind == StepKind.SUBMIT_ASSIGNMENT)
    assert step.status == StepStatus.DONE


def test_marking_a_review_as_read(student):
    built = build_course(questions=4, lessons=1, assignments=False, max_attempts=1)
    enrol(student, built)
    loops = built.topic("Loops")
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=0)
    path = paths.generate_path(student.id, built.course.id)
    review = next(s for s in path_steps(path) if s.kind == StepKind.REVIEW_LESSON)
    paths.mark_reviewed(student.id, built.course.id, review.id)
    assert next(s for s in path_steps(path) if s.id == review.id).status == StepStatus.DONE
    paths.mark_reviewed(student.id, built.course.id, review.id)  # twice: counted once
    assert reload(path).steps_done == 1
    study = next(s for s in path_steps(path) if s.kind == StepKind.STUDY_LESSON)
    with pytest.raises(NotFound):  # only reviews are marked by hand
        paths.mark_reviewed(student.id, built.course.id, study.id)
    other = create_user("student")
    with pytest.raises(NotFound):  # and only one's own
        paths.mark_reviewed(other.id, built.course.id, review.id)


def test_the_path_completes_when_every_step_is_done(student):
    built = build_course(titles=("Loops",), questions=2, lessons=2)
    enrol(student, built)
    loops = built.topic("Loops")
    path = paths.generate_path(student.id, built.course.id)
    assert path.steps_total == 4
    complete_lessons(student, loops.lessons)
    take_quiz(student, loops.quiz, correct=2)
    assert reload(path).status == PathStatus.ACTIVE
    assignment_service.submit(student, loops.assignment.id, text="Done")
    path = reload(path)
    assert (path.status, path.steps_done) == (PathStatus.COMPLETED, 4) and path.completed_at is not None


def test_a_replaced_path_is_not_completed_by_later_work(student):
    built = build_course(titles=("Loops",), questions=2, lessons=1)
    enrol(student, built)
    old = paths.generate_path(student.id, built.course.id)
    new = paths.generate_path(student.id, built.course.id)
    complete_lessons(student, built.topic("Loops").lessons)
    assert reload(old).steps_done == 0 and reload(old).status == PathStatus.REPLACED
    assert reload(new).steps_done == 1


def test_an_essay_graded_to_a_pass_completes_the_retry(student):
    from tests.learning.factories.quiz import full_quiz

    built = build_course(titles=("Loops",), questions=1, lessons=1, assignments=False)
    teacher = built.teacher
    enrol(student, built)
    quiz, questions = full_quiz(built.course, module_id=built.topic("Loops").module.id, passing_percent=50)
    first = quizzes.start_attempt(student, quiz.id)
    quizzes.submit_attempt(student, first.id)  # nothing answered: 0%
    path = paths.generate_path(student.id, built.course.id)
    retry = next(s for s in path_steps(path) if s.kind == StepKind.RETRY_QUIZ and s.quiz_id == quiz.id)
    attempt = quizzes.start_attempt(student, quiz.id)
    options = {o.text: str(o.id) for o in db.session.scalars(select(quizzes.QuestionOption))}
    quizzes.save_answer(student, attempt.id, questions["multiple"].id,
                        quizzes.AnswerInput(selected_option_ids=[options["2"], options["3"], options["5"]]))
    quizzes.save_answer(student, attempt.id, questions["numeric"].id, quizzes.AnswerInput(number="3.14"))
    quizzes.save_answer(student, attempt.id, questions["essay"].id, quizzes.AnswerInput(text="An essay."))
    quizzes.submit_attempt(student, attempt.id)  # waits for the essay
    assert next(s for s in path_steps(path) if s.id == retry.id).status == StepStatus.PENDING
    essay = next(a for a in db.session.scalars(select(quizzes.Answer).where(quizzes.Answer.attempt_id == attempt.id))
                 if a.question_id == questions["essay"].id)
    quizzes.grade_essay(teacher, essay.id, 2)
    assert next(s for s in path_steps(path) if s.id == retry.id).status == StepStatus.DONE


# ------------------------------------------------------------------ insights refresh on events


def test_events_refresh_the_insights(student):
    built = build_course(questions=3, lessons=1)
    enrol(student, built)
    take_quiz(student, built.topic("Loops").quiz, correct=0)
    kinds = {i.kind for i in db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id))}
    assert kinds == {InsightKind.WEAK_TOPIC}
    take_quiz(student, built.topic("Loops").quiz, correct=3)
    rows = db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id)
                              .execution_options(populate_existing=True)).all()
    assert [(r.kind, r.module_id) for r in rows] == [(InsightKind.STRONG_TOPIC, built.topic("Loops").module.id)]


def test_a_released_grade_refreshes_the_insights(student):
    built = build_course(titles=("Loops",), questions=1, lessons=1)
    enrol(student, built)
    assignment = built.topic("Loops").assignment
    submission = assignment_service.submit(student, assignment.id, text="Work")
    lms_grading.grade_submission(built.teacher, submission.id, lms_grading.GradeChange(raw_score=Decimal(2)))
    assert not db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id)).all()
    lms_grading.release_grades(built.teacher, assignment.id)
    (weak,) = db.session.scalars(select(LearningInsight).where(LearningInsight.user_id == student.id)).all()
    assert weak.kind == InsightKind.WEAK_TOPIC and weak.basis["graded_assignments"] == 1


def test_a_failing_update_never_stops_the_lesson(student, monkeypatch, caplog):
    built = build_course(titles=("Loops",), questions=1, lessons=1)
    enrol(student, built)

    def broken(*args, **kwargs):
        db.session.execute(text("SELECT 1 / 0"))  # a real database error inside the savepoint

    monkeypatch.setattr(listeners, "refresh_insights", broken)
    result = education.complete_lesson(student, built.topic("Loops").lessons[0].id)
    assert result.newly_completed and result.enrollment.progress_percent == 100
    assert "learning insights/path update failed after lesson_completed" in caplog.text
    # The transaction is still usable.
    assert db.session.scalar(select(1)) == 1
