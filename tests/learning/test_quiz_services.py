"""Quiz services: authoring rules, attempts and their refusals, the server's deadline, grading
by machine and by hand, which attempt counts, and the deadline job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal import events
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict, Forbidden, NotFound
from portal.learning.assessment import services as quizzes
from portal.learning.assessment import tasks
from portal.learning.assessment.models import (
    Answer,
    AttemptScoring,
    AttemptStatus,
    QuestionKind,
    QuestionOption,
    QuizAttempt,
    QuizQuestion,
    ShowAnswers,
)
from portal.learning.assessment.services import AnswerInput, OptionInput, QuestionInput, QuizSettings
from portal.learning.education.models import EnrollmentStatus
from portal.learning.lms.models import ManagementRole
from tests.factories import create_user
from tests.learning.factories.quiz import (
    add_question,
    add_staff,
    enroll,
    make_course,
    make_quiz,
    options_of,
    setup,
)

D = Decimal
START = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    """The services' clock, fixed; ``clock.advance(minutes=5)`` moves it."""
    fixed = Clock(START)
    monkeypatch.setattr("portal.db.base.utcnow", fixed)
    return fixed


@pytest.fixture
def passed_events():
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    events.quiz_passed.connect(receiver)
    yield received
    events.quiz_passed.disconnect(receiver)


def refreshed(row):
    db.session.refresh(row)
    return row


def answer_count(attempt) -> int:
    return db.session.scalar(select(func.count()).select_from(Answer).where(Answer.attempt_id == attempt.id))


def answer_all_right(student, attempt, questions, essay="A thoughtful essay."):
    opts = {kind: options_of(q) for kind, q in questions.items()}
    quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput([opts["single"]["Paris"]]))
    quizzes.save_answer(student, attempt.id, questions["multiple"].id,
                        AnswerInput([opts["multiple"][x] for x in ("2", "3", "5")]))
    quizzes.save_answer(student, attempt.id, questions["true_false"].id, AnswerInput([opts["true_false"]["True"]]))
    quizzes.save_answer(student, attempt.id, questions["short"].id, AnswerInput(text="  ada LOVELACE "))
    quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number="3.15"))
    if essay is not None:
        quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text=essay))


# ------------------------------------------------------------------ authoring


class TestAuthoring:
    def test_owner_creates_and_updates_a_quiz_with_every_setting(self):
        teacher = create_user("faculty")
        course = make_course(teacher)
        quiz = quizzes.create_quiz(teacher, course.id, QuizSettings(
            title="  Week 1  ", description="Read *first*.", opens_at=START, closes_at=START + timedelta(days=7),
            time_limit_minutes=30, max_attempts=3, scoring="average", passing_percent="75.5",
            shuffle_questions=True, shuffle_options=True, show_answers="after_close"))
        assert (quiz.title, quiz.time_limit_minutes, quiz.max_attempts, quiz.scoring, quiz.passing_percent,
                quiz.shuffle_questions, quiz.shuffle_options, quiz.show_answers, quiz.published) == (
            "Week 1", 30, 3, AttemptScoring.AVERAGE, D("75.50"), True, True, ShowAnswers.AFTER_CLOSE, False)
        quizzes.update_quiz(teacher, quiz.id, QuizSettings(title="Week one", scoring="first"))
        assert (refreshed(quiz).title, quiz.scoring, quiz.time_limit_minutes, quiz.opens_at) == (
            "Week one", AttemptScoring.FIRST, None, None)

    @pytest.mark.parametrize(("settings", "field"), [
        (QuizSettings(title=" "), "title"),
        (QuizSettings(title="x" * 161), "title"),
        (QuizSettings(title="T", time_limit_minutes=0), "time_limit_minutes"),
        (QuizSettings(title="T", time_limit_minutes=1441), "time_limit_minutes"),
        (QuizSettings(title="T", max_attempts=0), "max_attempts"),
        (QuizSettings(title="T", passing_percent="101"), "passing_percent"),
        (QuizSettings(title="T", passing_percent="-1"), "passing_percent"),
        (QuizSettings(title="T", passing_percent="lots"), "passing_percent"),
        (QuizSettings(title="T", opens_at=START, closes_at=START), "closes_at"),
    ])
    def test_invalid_settings_are_refused(self, settings, field):
        teacher = create_user("faculty")
        course = make_course(teacher)
        with pytest.raises(quizzes.ValidationError) as caught:
            quizzes.create_quiz(teacher, course.id, settings)
        assert caught.value.field == field

    def test_a_module_of_another_course_is_refused(self):
        from portal.learning.education.models import Module

        teacher = create_user("faculty")
        course, other = make_course(teacher), make_course(teacher)
        module = Module(course_id=other.id, position=1, title="Elsewhere")
        db.session.add(module)
        db.session.flush()
        with pytest.raises(quizzes.ValidationError, match="not part of this course"):
            quizzes.create_quiz(teacher, course.id, QuizSettings(title="T", module_id=module.id))

    def test_who_may_author(self):
        owner, assistant, stranger, student = (create_user("faculty"), create_user("faculty"),
                                               create_user("faculty"), create_user("student"))
        admin = create_user("admin")
        course = make_course(owner)
        add_staff(course, assistant, ManagementRole.ASSISTANT)
        quiz = make_quiz(course)
        for user in (assistant, stranger, student):
            with pytest.raises(Forbidden):
                quizzes.create_quiz(user, course.id, QuizSettings(title="T"))
        with pytest.raises(Forbidden):  # staff, but without the right to edit
            quizzes.update_quiz(assistant, quiz.id, QuizSettings(title="Hijack"))
        with pytest.raises(NotFound):  # not on the staff: the quiz is not theirs to know of
            quizzes.update_quiz(stranger, quiz.id, QuizSettings(title="Hijack"))
        with pytest.raises(NotFound):
            quizzes.add_question(stranger, quiz.id, QuestionInput("essay", "Q"))
        assert refreshed(quiz).title != "Hijack"
        assert quizzes.update_quiz(admin, quiz.id, QuizSettings(title="By admin")).title == "By admin"

    def test_publishing_needs_a_question(self):
        teacher = create_user("faculty")
        quiz = make_quiz(make_course(teacher), published=False)
        with pytest.raises(quizzes.ValidationError, match="at least one question"):
            quizzes.set_published(teacher, quiz.id, True)
        add_question(quiz, QuestionKind.ESSAY)
        assert quizzes.set_published(teacher, quiz.id, True).published
        assert not quizzes.set_published(teacher, quiz.id, False).published


class TestQuestions:
    @pytest.fixture
    def quiz_and_teacher(self):
        teacher = create_user("faculty")
        return make_quiz(make_course(teacher)), teacher

    def test_every_kind_can_be_added(self, quiz_and_teacher):
        quiz, teacher = quiz_and_teacher
        choices = [OptionInput("A", True), OptionInput("B"), OptionInput("")]  # blank rows are dropped
        added = [
            quizzes.add_question(teacher, quiz.id, QuestionInput("single", "Pick", 2, choices)),
            quizzes.add_question(teacher, quiz.id, QuestionInput(
                "multiple", "Pick all", "1.5", [OptionInput("A", True), OptionInput("B", True), OptionInput("C")])),
            quizzes.add_question(teacher, quiz.id, QuestionInput(
                "true_false", "Sky is blue", 1, [OptionInput("True", True), OptionInput("False")])),
            quizzes.add_question(teacher, quiz.id, QuestionInput(
                "short", "Name", 1, accepted_answers=["Ada", " "], match="pattern")),
            quizzes.add_question(teacher, quiz.id, QuestionInput(
                "numeric", "Pi", 1, numeric_answer="3,14", numeric_tolerance="")),
            quizzes.add_question(teacher, quiz.id, QuestionInput("essay", "Discuss", 5, feedback="Guide")),
        ]
        assert [q.position for q in added] == [1, 2, 3, 4, 5, 6]
        assert len(options_of(added[0])) == 2
        assert added[3].accepted_answers == ["Ada"]
        assert (added[4].numeric_answer, added[4].numeric_tolerance) == (D("3.14"), D(0))
        assert added[1].points == D("1.5")

    @pytest.mark.parametrize(("data", "field", "message"), [
        (QuestionInput("single", "Q", 1, [OptionInput("A", True), OptionInput("B", True)]), "options", "exactly one"),
        (QuestionInput("single", "Q", 1, [OptionInput("A"), OptionInput("B")]), "options", "exactly one"),
        (QuestionInput("true_false", "Q", 1, [OptionInput("True"), OptionInput("False")]), "options", "exactly one"),
        (QuestionInput("true_false", "Q", 1, [OptionInput("True", True), OptionInput("False"), OptionInput("Maybe")]),
         "options", "exactly two"),
        (QuestionInput("multiple", "Q", 1, [OptionInput("A"), OptionInput("B")]), "options", "at least one"),
        (QuestionInput("multiple", "Q", 1, [OptionInput("A", True)]), "options", "at least two"),
        (QuestionInput("single", "Q", 0, [OptionInput("A", True), OptionInput("B")]), "points", "more than zero"),
        (QuestionInput("essay", "Q", "-1"), "points", "more than zero"),
        (QuestionInput("essay", "Q", "abc"), "points", "more than zero"),
        (QuestionInput("essay", "Q", "1.005"), "points", "two decimals"),
        (QuestionInput("essay", "  ", 1), "prompt", "Write the question"),
        (QuestionInput("nonsense", "Q", 1), "kind", "question type"),
        (QuestionInput("short", "Q", 1, accepted_answers=["x"], match=None), "match", "compared"),
        (QuestionInput("short", "Q", 1, accepted_answers=[], match="exact"), "accepted_answers", "at least one"),
        (QuestionInput("short", "Q", 1, accepted_answers=["(a"], match="pattern"), "accepted_answers", "not a valid"),
        (QuestionInput("short", "Q", 1, accepted_answers=["(a+)+$"], match="pattern"), "accepted_answers",
         "repeats a group"),
        (QuestionInput("short", "Q", 1, accepted_answers=["a" * 201], match="pattern"), "accepted_answers", "at most"),
        (QuestionInput("numeric", "Q", 1, numeric_answer="x"), "numeric_answer", "number"),
        (QuestionInput("numeric", "Q", 1, numeric_answer="1", numeric_tolerance="-0.1"), "numeric_tolerance",
         "zero or more"),
    ])
    def test_invalid_questions_are_refused_and_change_nothing(self, quiz_and_teacher, data, field, message):
        quiz, teacher = quiz_and_teacher
        with pytest.raises(quizzes.ValidationError, match=message) as caught:
            quizzes.add_question(teacher, quiz.id, data)
        assert caught.value.field == field
        assert db.session.scalar(select(func.count()).where(QuizQuestion.quiz_id == quiz.id)) == 0

    def test_editing_keeps_option_ids_by_position(self, quiz_and_teacher):
        quiz, teacher = quiz_and_teacher
        question = quizzes.add_question(teacher, quiz.id, QuestionInput(
            "single", "Q", 1, [OptionInput("A", True), OptionInput("B"), OptionInput("C")]))
        before = options_of(question)
        quizzes.update_question(teacher, question.id, QuestionInput(
            "single", "Q2", 2, [OptionInput("A2"), OptionInput("B2", True)]))
        after = options_of(question)
        assert after == {"A2": before["A"], "B2": before["B"]}  # C is gone
        correct = db.session.scalars(select(QuestionOption.text).where(
            QuestionOption.question_id == question.id, QuestionOption.is_correct)).all()
        assert correct == ["B2"] and refreshed(question).prompt == "Q2"

    def test_type_cannot_change_once_answered(self, quiz_and_teacher, clock):
        quiz, teacher = quiz_and_teacher
        student = create_user("student")
        enroll(student, make_course_of(quiz))
        question = add_question(quiz, QuestionKind.ESSAY)
        attempt = quizzes.start_attempt(student, quiz.id)
        quizzes.save_answer(student, attempt.id, question.id, AnswerInput(text="x"))
        with pytest.raises(quizzes.ValidationError, match="cannot change"):
            quizzes.update_question(teacher, question.id, QuestionInput("short", "Q", 1, accepted_answers=["a"],
                                                                        match="exact"))

    def test_delete_and_reorder(self, quiz_and_teacher):
        quiz, teacher = quiz_and_teacher
        a, b, c = (add_question(quiz, QuestionKind.ESSAY, prompt=p) for p in "abc")
        quizzes.move_question(teacher, c.id, "up")
        quizzes.move_question(teacher, a.id, "up")  # already first: nothing happens
        db.session.flush()
        order = lambda: db.session.scalars(select(QuizQuestion.prompt).where(  # noqa: E731
            QuizQuestion.quiz_id == quiz.id).order_by(QuizQuestion.position)).all()
        assert order() == ["a", "c", "b"]
        quizzes.delete_question(teacher, a.id)
        assert order() == ["c", "b"]
        assert [q.position for q in map(refreshed, (c, b))] == [1, 2]
        with pytest.raises(quizzes.ValidationError):
            quizzes.move_question(teacher, b.id, "sideways")


def make_course_of(quiz):
    from portal.learning.education.models import Course

    return db.session.get(Course, quiz.course_id)


# ------------------------------------------------------------------ attempts


class TestStarting:
    def test_start_fixes_the_deadline_and_layout(self, clock):
        _, student, _, quiz, questions = setup(time_limit_minutes=20)
        attempt = quizzes.start_attempt(student, quiz.id)
        assert (attempt.number, attempt.status, attempt.started_at) == (1, AttemptStatus.IN_PROGRESS, START)
        assert attempt.deadline_at == START + timedelta(minutes=20)
        assert attempt.layout["questions"] == [str(q.id) for q in questions.values()]  # not shuffled
        assert attempt.layout["options"][str(questions["single"].id)] == list(options_of(questions["single"]).values())

    def test_the_close_caps_the_deadline(self, clock):
        _, student, _, quiz, _ = setup(time_limit_minutes=60, closes_at=START + timedelta(minutes=15))
        assert quizzes.start_attempt(student, quiz.id).deadline_at == START + timedelta(minutes=15)

    def test_untimed_and_never_closing_has_no_deadline(self, clock):
        _, student, _, quiz, _ = setup()
        assert quizzes.start_attempt(student, quiz.id).deadline_at is None

    def test_shuffled_layout_is_stored_per_attempt(self, clock, monkeypatch):
        class Reverse:
            def shuffle(self, items):
                items.reverse()

        monkeypatch.setattr(quizzes.random, "SystemRandom", Reverse)
        _, student, _, quiz, questions = setup(shuffle_questions=True, shuffle_options=True)
        attempt = quizzes.start_attempt(student, quiz.id)
        assert attempt.layout["questions"] == [str(q.id) for q in reversed(questions.values())]
        single = list(options_of(questions["single"]).values())
        assert attempt.layout["options"][str(questions["single"].id)] == single[::-1]
        tf = list(options_of(questions["true_false"]).values())
        assert attempt.layout["options"][str(questions["true_false"].id)] == tf  # True stays first

    def test_refused_before_it_opens_and_after_it_closes(self, clock):
        _, student, _, quiz, _ = setup(opens_at=START + timedelta(hours=1), closes_at=START + timedelta(hours=2))
        with pytest.raises(Conflict, match="opens at"):
            quizzes.start_attempt(student, quiz.id)
        clock.advance(hours=2)
        with pytest.raises(Conflict, match="has closed"):
            quizzes.start_attempt(student, quiz.id)
        assert quizzes.attempts_used(student, quiz.id) == 0

    def test_refused_when_attempts_are_used_up(self, clock):
        _, student, _, quiz, _ = setup(max_attempts=2)
        for _ in range(2):
            quizzes.submit_attempt(student, quizzes.start_attempt(student, quiz.id).id)
        with pytest.raises(Conflict, match="used all 2 attempts"):
            quizzes.start_attempt(student, quiz.id)

    def test_a_start_while_one_is_open_returns_it(self, clock):
        _, student, _, quiz, _ = setup()
        first = quizzes.start_attempt(student, quiz.id)
        assert quizzes.start_attempt(student, quiz.id).id == first.id
        assert quizzes.attempts_used(student, quiz.id) == 1

    def test_a_double_insert_is_caught_and_returns_the_open_attempt(self, clock, monkeypatch):
        """The check for an open attempt saw none (as the second of two racing requests would):
        the unique index refuses the insert and the open attempt is returned."""
        _, student, _, quiz, _ = setup()
        first = quizzes.start_attempt(student, quiz.id)
        monkeypatch.setattr(quizzes, "_open_attempt", _missing_once(quizzes._open_attempt))
        assert quizzes.start_attempt(student, quiz.id).id == first.id
        assert quizzes.attempts_used(student, quiz.id) == 1

    def test_an_expired_open_attempt_is_closed_before_a_new_one(self, clock):
        _, student, _, quiz, _ = setup(time_limit_minutes=5)
        first = quizzes.start_attempt(student, quiz.id)
        clock.advance(minutes=6)
        second = quizzes.start_attempt(student, quiz.id)
        assert second.id != first.id and second.number == 2
        assert refreshed(first).status != AttemptStatus.IN_PROGRESS and first.auto_submitted

    @pytest.mark.parametrize("case", ["not_enrolled", "left", "unpublished", "no_questions"])
    def test_refused_to_outsiders_and_for_unready_quizzes(self, clock, case):
        teacher, student, course, quiz, _ = setup()
        if case == "not_enrolled":
            student = create_user("student")
        elif case == "left":
            student = create_user("student")
            enroll(student, course, EnrollmentStatus.LEFT)
        elif case == "unpublished":
            quiz.published = False
        else:
            quiz = make_quiz(course)
        db.session.flush()
        with pytest.raises(NotFound if case != "no_questions" else Conflict):
            quizzes.start_attempt(student, quiz.id)

    def test_a_completed_course_still_allows_quizzes(self, clock):
        teacher, _, course, quiz, _ = setup()
        student = create_user("student")
        enroll(student, course, EnrollmentStatus.COMPLETED)
        assert quizzes.start_attempt(student, quiz.id).number == 1


def _missing_once(real):
    calls = {"n": 0}

    def fake(user, quiz_id):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(user, quiz_id)

    return fake


class TestAnswering:
    def test_answers_upsert_one_row_per_question(self, clock):
        _, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        opts = options_of(questions["single"])
        quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput([opts["Rome"]]))
        clock.advance(seconds=30)
        saved = quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput([opts["Paris"]]))
        assert saved.selected_option_ids == [opts["Paris"]] and saved.saved_at == START + timedelta(seconds=30)
        quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number=" 2,5 "))
        quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number=""))  # cleared
        assert answer_count(attempt) == 2
        numeric = db.session.scalar(select(Answer).where(Answer.question_id == questions["numeric"].id))
        assert numeric.numeric_answer is None

    def test_as_the_student_under_row_level_security(self, clock):
        _, student, _, quiz, questions = setup()
        with acting_as(Actor.for_user(student.id, "student"), db.session):
            attempt = quizzes.start_attempt(student, quiz.id)
            quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="Mine"))
            quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="Mine, edited"))
            assert db.session.scalar(select(Answer.text_answer).where(Answer.attempt_id == attempt.id)) == "Mine, edited"

    def test_another_students_attempt_is_not_found_and_unchanged(self, clock):
        _, student, course, quiz, questions = setup()
        other = create_user("student")
        enroll(other, course)
        attempt = quizzes.start_attempt(student, quiz.id)
        quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="Mine"))
        with pytest.raises(NotFound):
            quizzes.save_answer(other, attempt.id, questions["essay"].id, AnswerInput(text="Vandal"))
        with pytest.raises(NotFound):
            quizzes.submit_attempt(other, attempt.id)
        assert db.session.scalar(select(Answer.text_answer).where(Answer.attempt_id == attempt.id)) == "Mine"
        assert refreshed(attempt).status == AttemptStatus.IN_PROGRESS

    def test_a_question_of_another_quiz_is_not_found(self, clock):
        _, student, course, quiz, _ = setup()
        elsewhere = add_question(make_quiz(course), QuestionKind.ESSAY)
        attempt = quizzes.start_attempt(student, quiz.id)
        with pytest.raises(NotFound, match="not part of this quiz"):
            quizzes.save_answer(student, attempt.id, elsewhere.id, AnswerInput(text="x"))
        assert answer_count(attempt) == 0

    def test_an_option_of_another_question_is_refused(self, clock):
        _, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        foreign = options_of(questions["multiple"])["2"]
        with pytest.raises(NotFound, match="not part of this question"):
            quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput([foreign]))
        with pytest.raises(NotFound):
            quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput(["not-a-uuid"]))
        assert answer_count(attempt) == 0

    def test_bad_values_are_refused(self, clock):
        _, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        single = list(options_of(questions["single"]).values())
        with pytest.raises(quizzes.ValidationError, match="Choose one"):
            quizzes.save_answer(student, attempt.id, questions["single"].id, AnswerInput(single[:2]))
        with pytest.raises(quizzes.ValidationError, match="Enter a number"):
            quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number="three"))
        with pytest.raises(quizzes.ValidationError, match="at most 500"):
            quizzes.save_answer(student, attempt.id, questions["short"].id, AnswerInput(text="x" * 501))
        assert answer_count(attempt) == 0

    def test_saving_after_the_deadline_is_refused_and_closes_the_attempt(self, clock):
        _, student, _, quiz, questions = setup(time_limit_minutes=10)
        attempt = quizzes.start_attempt(student, quiz.id)
        quizzes.save_answer(student, attempt.id, questions["short"].id, AnswerInput(text="Ada Lovelace"))
        clock.advance(minutes=9, seconds=59)
        quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number="3.14"))
        clock.advance(seconds=1)  # exactly at the deadline: over
        with pytest.raises(quizzes.DeadlinePassed, match="Time is up") as caught:
            quizzes.save_answer(student, attempt.id, questions["single"].id,
                                AnswerInput([options_of(questions["single"])["Paris"]]))
        assert caught.value.attempt.id == attempt.id
        refreshed(attempt)
        assert (attempt.status, attempt.auto_submitted, attempt.submitted_at) == (
            AttemptStatus.GRADED, True, START + timedelta(minutes=10))
        assert (attempt.score, attempt.max_score) == (D("3.00"), D("10.00"))  # short 1 + numeric 2
        assert answer_count(attempt) == 2  # the late answer was not saved
        with pytest.raises(Conflict, match="submitted"):
            quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="late"))

    def test_submitting_after_the_deadline_counts_as_closed_by_it(self, clock):
        _, student, _, quiz, _ = setup(time_limit_minutes=1)
        attempt = quizzes.start_attempt(student, quiz.id)
        clock.advance(minutes=3)
        quizzes.submit_attempt(student, attempt.id)
        assert attempt.auto_submitted and attempt.submitted_at == START + timedelta(minutes=3)
        with pytest.raises(Conflict, match="already been submitted"):
            quizzes.submit_attempt(student, attempt.id)


# ------------------------------------------------------------------ grading


class TestGrading:
    def test_all_right_with_an_essay_waits_for_a_grader(self, clock, passed_events):
        teacher, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        answer_all_right(student, attempt, questions)
        quizzes.submit_attempt(student, attempt.id)
        assert (attempt.status, attempt.score, attempt.max_score, attempt.passed) == (
            AttemptStatus.SUBMITTED, None, D("10.00"), None)
        assert not attempt.auto_submitted and passed_events == []
        essay = db.session.scalar(select(Answer).where(Answer.question_id == questions["essay"].id))
        assert essay.points_awarded is None
        with pytest.raises(quizzes.ValidationError, match="between 0 and 2"):
            quizzes.grade_essay(teacher, essay.id, "2.5")
        with pytest.raises(quizzes.ValidationError, match="between 0 and 2"):
            quizzes.grade_essay(teacher, essay.id, "-1")
        assert refreshed(essay).points_awarded is None
        quizzes.grade_essay(teacher, essay.id, "1.5", "Good, but cite sources.")
        assert (essay.points_awarded, essay.is_correct, essay.grader_id, essay.grader_feedback) == (
            D("1.5"), False, teacher.id, "Good, but cite sources.")
        assert (attempt.status, attempt.score, attempt.percent, attempt.passed) == (
            AttemptStatus.GRADED, D("9.50"), D("95.00"), True)
        assert len(passed_events) == 1
        assert passed_events[0]["user"].id == student.id and passed_events[0]["quiz"].id == quiz.id
        assert passed_events[0]["score"] == D("9.50")
        with pytest.raises(Conflict, match="final"):
            quizzes.grade_essay(teacher, essay.id, "2")
        assert len(passed_events) == 1

    def test_per_kind_points(self, clock):
        _, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        multi = options_of(questions["multiple"])
        quizzes.save_answer(student, attempt.id, questions["multiple"].id,
                            AnswerInput([multi["2"], multi["3"], multi["4"]]))  # 2 right, 1 wrong of 3 -> 1/3
        quizzes.save_answer(student, attempt.id, questions["true_false"].id,
                            AnswerInput([options_of(questions["true_false"])["False"]]))
        quizzes.save_answer(student, attempt.id, questions["short"].id, AnswerInput(text="Charles Babbage"))
        quizzes.save_answer(student, attempt.id, questions["numeric"].id, AnswerInput(number="3.13"))  # edge
        quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="   "))  # empty essay
        quizzes.submit_attempt(student, attempt.id)
        points = dict(db.session.execute(select(Answer.question_id, Answer.points_awarded)
                                         .where(Answer.attempt_id == attempt.id)).all())
        assert points == {questions["multiple"].id: D("1.00"), questions["true_false"].id: D("0.00"),
                          questions["short"].id: D("0.00"), questions["numeric"].id: D("2.00"),
                          questions["essay"].id: D("0.00")}
        assert (attempt.status, attempt.score, attempt.percent, attempt.passed) == (
            AttemptStatus.GRADED, D("3.00"), D("30.00"), False)

    def test_an_empty_attempt_scores_zero_and_never_emits(self, clock, passed_events):
        _, student, _, quiz, _ = setup(passing_percent=0)
        attempt = quizzes.submit_attempt(student, quizzes.start_attempt(student, quiz.id).id)
        assert (attempt.status, attempt.score, attempt.percent) == (AttemptStatus.GRADED, D("0.00"), D("0.00"))
        assert attempt.passed is True and len(passed_events) == 1  # a 0% pass mark is passed by anyone

    def test_who_may_grade(self, clock):
        teacher, student, course, quiz, questions = setup()
        assistant, stranger = create_user("faculty"), create_user("faculty")
        add_staff(course, assistant, ManagementRole.ASSISTANT)
        attempt = quizzes.start_attempt(student, quiz.id)
        answer_all_right(student, attempt, questions)
        quizzes.submit_attempt(student, attempt.id)
        essay = db.session.scalar(select(Answer).where(Answer.question_id == questions["essay"].id))
        for outsider in (stranger, student):
            with pytest.raises(NotFound):
                quizzes.grade_essay(outsider, essay.id, "2")
        assert refreshed(essay).points_awarded is None
        single = db.session.scalar(select(Answer).where(Answer.question_id == questions["single"].id))
        with pytest.raises(quizzes.ValidationError, match="Only essay"):
            quizzes.grade_essay(assistant, single.id, "0")
        quizzes.grade_essay(assistant, essay.id, "2")  # assistants grade
        assert attempt.status == AttemptStatus.GRADED and attempt.score == D("10.00")

    def test_an_open_attempts_essay_cannot_be_graded(self, clock):
        teacher, student, _, quiz, questions = setup()
        attempt = quizzes.start_attempt(student, quiz.id)
        essay = quizzes.save_answer(student, attempt.id, questions["essay"].id, AnswerInput(text="Draft"))
        with pytest.raises(Conflict, match="not waiting"):
            quizzes.grade_essay(teacher, essay.id, "1")

    def test_visibility_of_answers(self, clock):
        _, student, _, quiz, _ = setup(closes_at=START + timedelta(hours=1))
        attempt = quizzes.start_attempt(student, quiz.id)
        assert not quizzes.answers_visible(quiz, attempt)
        quizzes.submit_attempt(student, attempt.id)
        assert quizzes.answers_visible(quiz, attempt)
        quiz.show_answers = ShowAnswers.AFTER_CLOSE
        assert not quizzes.answers_visible(quiz, attempt)
        clock.advance(hours=1)
        assert quizzes.answers_visible(quiz, attempt)
        quiz.show_answers = ShowAnswers.NEVER
        assert not quizzes.answers_visible(quiz, attempt)


class TestWhichAttemptCounts:
    @pytest.mark.parametrize(("scoring", "percent"), [
        ("highest", D("80.00")), ("latest", D("40.00")), ("first", D("60.00")), ("average", D("60.00")),
    ])
    def test_quiz_score(self, clock, scoring, percent):
        _, student, _, quiz, _ = setup(scoring=scoring, passing_percent=50)
        assert quizzes.quiz_score(student, quiz) is None
        for number, score in enumerate((D(6), D(8), D(4)), 1):
            db.session.add(QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=number,
                                       status=AttemptStatus.GRADED, started_at=START, submitted_at=START,
                                       score=score, max_score=D(10), percent=score * 10, passed=score >= 5))
        db.session.add(QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=4, status=AttemptStatus.SUBMITTED,
                                   started_at=START, submitted_at=START, max_score=D(10)))  # not graded: ignored
        db.session.flush()
        counted = quizzes.quiz_score(student, quiz)
        assert counted.percent == percent and counted.attempts == 3
        assert counted.passed is (percent >= 50)
        assert counted.score == (percent / 10).quantize(D("0.01"))
        assert quizzes.quiz_score(student.id, quiz) == counted


class TestDeadlineJob:
    def test_closes_only_attempts_past_their_deadline(self, clock):
        _, student, course, quiz, questions = setup(time_limit_minutes=10)
        other = create_user("student")
        enroll(other, course)
        late = quizzes.start_attempt(student, quiz.id)
        quizzes.save_answer(student, late.id, questions["numeric"].id, AnswerInput(number="3.14"))
        clock.advance(minutes=5)
        fresh = quizzes.start_attempt(other, quiz.id)
        clock.advance(minutes=5)  # late's deadline now; fresh has 5 minutes left
        assert quizzes.close_due_attempts() == 1
        assert (refreshed(late).status, late.auto_submitted, late.score) == (AttemptStatus.GRADED, True, D("2.00"))
        assert refreshed(fresh).status == AttemptStatus.IN_PROGRESS
        assert quizzes.close_due_attempts() == 0  # nothing twice

    def test_the_periodic_task_runs_the_sweep(self, app, clock):
        from portal.platform import jobs

        assert "portal.learning.assessment.tasks.close_expired_attempts" in jobs.job_app.tasks
        assert "portal.learning.assessment.tasks" in jobs.job_app.import_paths
        _, student, _, quiz, _ = setup(time_limit_minutes=1)
        attempt = quizzes.start_attempt(student, quiz.id)
        clock.advance(minutes=2)
        # As the worker runs it: in an app context and a unit of work of ``system:worker``.
        assert tasks.close_expired_attempts(0) == 1
        assert refreshed(attempt).auto_submitted
