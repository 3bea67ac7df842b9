"""Earning rewards from the learning events: which milestones pay, exactly once, through the
ledger; the minimum score; streaks; a frozen wallet leaves the reward pending until it is paid
later; reversal; and the learning services themselves paying a reward end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal import events
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict
from portal.learning.assessment import services as quizzes
from portal.learning.assessment.models import QuestionKind
from portal.learning.assessment.services import AnswerInput
from portal.learning.education import services as education
from portal.learning.education.models import Progress
from portal.money.earnings import queries, services
from portal.money.earnings.models import Earning, EarningStatus, MilestoneKind
from portal.money.earnings.services import MilestoneInvalid
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, WalletStatus
from portal.platform.notifications.models import Notification
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.factories import catalog as catalog
from tests.learning.factories.assign import graded_attempt
from tests.learning.factories.quiz import (
    add_question,
    enroll,
    make_course,
    make_quiz,
    options_of,
)
from tests.learning.factories.quiz import setup as quiz_setup
from tests.money.factories import make_milestone

D = Decimal


def earnings_of(user) -> dict:
    rows = db.session.scalars(select(Earning).where(Earning.user_id == user.id)
                              .execution_options(populate_existing=True))
    return {e.milestone_id: e for e in rows}


def balance(user, code="AZR") -> Decimal:
    wallet = ledger.user_wallet(user.id, code)
    if wallet is None:
        return D(0)
    db.session.refresh(wallet)
    return wallet.balance


def rewards_paid(code="AZR") -> Decimal:
    return -ledger.system_balance(SystemWallet.REWARDS, code)


def notes_of(user) -> list[str]:
    return list(db.session.scalars(select(Notification.title).where(Notification.user_id == user.id)
                                   .order_by(Notification.created_at)))


@pytest.fixture
def student():
    return create_user("student")


@pytest.fixture
def course():
    return make_course(create_user("faculty"), title="Personal Finance")


class TestCourseCompleted:
    def test_pays_the_course_and_any_course_milestones_once(self, student, course):
        this = make_milestone(course_id=course.id, reward="5", title="Finish Personal Finance")
        anything = make_milestone(reward="2.5", currency="USD", title="First course")
        other = make_milestone(course_id=make_course().id)
        inactive = make_milestone(course_id=course.id, active=False)
        quiz_kind = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id)
        paid_before = rewards_paid()
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        earned = earnings_of(student)
        assert set(earned) == {this.id, anything.id}
        for earning in earned.values():
            assert earning.status == EarningStatus.CREDITED
            assert earning.transaction_id is not None and earning.credited_at is not None
            assert earning.source == "course_completed" and earning.source_ref == "Personal Finance"
        tx = db.session.get(Transaction, earned[this.id].transaction_id)
        assert tx.type == TransactionType.REWARD and tx.amount == D(5) and tx.credit_user_id == student.id
        assert tx.details["earning_id"] == str(earned[this.id].id)
        assert balance(student) == D(5) and balance(student, "USD") == D("2.50")
        assert rewards_paid() - paid_before == D(5)
        assert "You earned 5.00 AZR for Finish Personal Finance" in notes_of(student)
        assert "You earned 2.50 USD for First course" in notes_of(student)
        assert other.id not in earned and inactive.id not in earned and quiz_kind.id not in earned

        # The same event again: nothing more.
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        assert len(earnings_of(student)) == 2
        assert balance(student) == D(5) and rewards_paid() - paid_before == D(5)
        assert ledger.verify().ok

    def test_staff_earn_nothing(self, course):
        make_milestone(course_id=course.id)
        teacher = create_user("faculty")
        events.course_completed.send(user=teacher, course=course)
        assert earnings_of(teacher) == {}


class TestQuizPassed:
    def test_matching_quiz_milestones_and_the_minimum_score(self, student, course):
        quiz = make_quiz(course, title="Budgets")
        exact_80 = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id, quiz_id=quiz.id,
                                  min_score=D(80), title="Budgets, 80%")
        any_of_course = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id, title="Any quiz here")
        any_quiz_50 = make_milestone(MilestoneKind.QUIZ_PASSED, min_score=D(50), title="Any quiz at 50%")
        other_quiz = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id,
                                    quiz_id=make_quiz(course).id)
        other_course = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=make_course().id)
        inactive = make_milestone(MilestoneKind.QUIZ_PASSED, active=False)
        enroll(student, course)
        graded_attempt(quiz, student, 70)
        with as_user(student):
            events.quiz_passed.send(user=student, quiz=quiz, score=D(7))
        earned = earnings_of(student)
        assert set(earned) == {any_of_course.id, any_quiz_50.id}
        assert earned[any_of_course.id].source == "quiz_passed"
        assert earned[any_of_course.id].source_ref == "Budgets (70%)"
        assert balance(student) == D(10)

        # A better attempt reaches the 80% minimum: only that milestone pays now.
        graded_attempt(quiz, student, 90, number=2)
        with as_user(student):
            events.quiz_passed.send(user=student, quiz=quiz, score=D(9))
        earned = earnings_of(student)
        assert set(earned) == {any_of_course.id, any_quiz_50.id, exact_80.id}
        assert earned[exact_80.id].source_ref == "Budgets (90%)"
        assert balance(student) == D(15)
        for left_out in (other_quiz, other_course, inactive):
            assert left_out.id not in earned
        assert ledger.verify().ok

    def test_a_percent_sent_with_the_event_is_used(self, student, course):
        quiz = make_quiz(course)
        high = make_milestone(MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id, course_id=course.id, min_score=D(95))
        with as_user(student):
            services.reward_quiz_passed(student, quiz, D("94.99"))
        assert earnings_of(student) == {}
        with as_user(student):
            services.reward_quiz_passed(student, quiz, D(95))
        assert set(earnings_of(student)) == {high.id}


class TestStreak:
    def _complete_on(self, student, lessons, days_ago: list[int]):
        now = utcnow()
        for lesson, ago in zip(lessons, days_ago, strict=True):
            at = now - timedelta(days=ago)
            db.session.add(Progress(user_id=student.id, lesson_id=lesson.id, course_id=lesson.course_id,
                                    first_viewed_at=at, completed_at=at))
        db.session.flush()

    def test_the_run_of_days_ending_today(self, student):
        course = catalog.make_course(modules=1, lessons_per_module=5)
        other = catalog.make_course(modules=1, lessons_per_module=1)
        lessons = catalog.lessons_of(course)
        three = make_milestone(MilestoneKind.STREAK, streak_days=3, reward="3")
        five = make_milestone(MilestoneKind.STREAK, streak_days=5)
        in_course = make_milestone(MilestoneKind.STREAK, streak_days=2, course_id=course.id)
        in_other = make_milestone(MilestoneKind.STREAK, streak_days=2, course_id=other.id)
        # Today, yesterday, two days ago; then a gap; then five days ago.
        self._complete_on(student, lessons[:4], [0, 1, 2, 4])
        with as_user(student):
            events.lesson_completed.send(user=student, lesson=lessons[0])
        earned = earnings_of(student)
        assert set(earned) == {three.id, in_course.id}
        assert earned[three.id].source == "lesson_completed" and earned[three.id].source_ref == "3 days in a row"
        assert five.id not in earned and in_other.id not in earned

    def test_streak_length(self):
        today = datetime(2031, 5, 10, tzinfo=UTC).date()
        days = {today - timedelta(days=n) for n in (0, 1, 2, 4)}
        assert queries.streak_length(days, today) == 3
        assert queries.streak_length(days - {today}, today) == 0
        assert queries.streak_length(days - {today}, today, alive_from_yesterday=True) == 2
        assert queries.streak_length(set(), today, alive_from_yesterday=True) == 0


class TestPendingAndRetry:
    def _frozen_wallet(self, student):
        wallet = ledger.open_user_wallet(student.id, "AZR")
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
        return wallet

    def test_a_frozen_wallet_leaves_it_pending_then_an_admin_pays_it(self, student, course):
        milestone = make_milestone(course_id=course.id, title="Finish it")
        wallet = self._frozen_wallet(student)
        with as_user(student):
            events.course_completed.send(user=student, course=course)  # the learning request goes on
        earning = earnings_of(student)[milestone.id]
        assert earning.status == EarningStatus.PENDING and earning.transaction_id is None
        assert balance(student) == 0
        assert "You earned 5.00 AZR for Finish it" in notes_of(student)

        admin = create_user("admin")
        with pytest.raises(Conflict, match="frozen"):
            services.pay_earning(admin, earning.id, ledger.new_key())
        assert earnings_of(student)[milestone.id].status == EarningStatus.PENDING

        wallet.status = WalletStatus.ACTIVE
        db.session.flush()
        key = ledger.new_key()
        paid, replayed = services.pay_earning(admin, earning.id, key)
        assert not replayed and paid.status == EarningStatus.CREDITED and balance(student) == D(5)
        # A double submit of the same form pays once.
        again, replayed = services.pay_earning(admin, earning.id, key)
        assert replayed and again.status == EarningStatus.CREDITED and balance(student) == D(5)
        # The same key sent for another earning is refused.
        other = make_milestone(course_id=course.id)
        db.session.add(Earning(user_id=student.id, milestone_id=other.id, amount=D(5), currency="AZR",
                               source="course_completed", status=EarningStatus.PENDING))
        db.session.flush()
        with pytest.raises(ledger.IdempotencyMismatch):
            services.pay_earning(admin, earnings_of(student)[other.id].id, key)
        assert "Your reward of 5.00 AZR for Finish it was paid" in notes_of(student)
        assert ledger.verify().ok

    def test_pay_pending_pays_what_it_can_and_keeps_the_rest(self, student, course):
        milestone = make_milestone(course_id=course.id)
        second_student = create_user("student")
        wallet = self._frozen_wallet(student)
        still_frozen = self._frozen_wallet(second_student)
        for who in (student, second_student):
            with as_user(who):
                events.course_completed.send(user=who, course=course)
        wallet.status = WalletStatus.ACTIVE
        db.session.flush()
        admin = create_user("admin")
        report, replayed = services.pay_all_pending(admin, ledger.new_key())
        assert not replayed and report.paid >= 1 and report.still_pending >= 1
        assert earnings_of(student)[milestone.id].status == EarningStatus.CREDITED
        assert earnings_of(second_student)[milestone.id].status == EarningStatus.PENDING
        assert still_frozen.status == WalletStatus.FROZEN
        assert ledger.verify().ok

    def test_the_next_matching_event_retries_a_pending_one(self, student, course):
        milestone = make_milestone(course_id=course.id)
        wallet = self._frozen_wallet(student)
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        wallet.status = WalletStatus.ACTIVE
        db.session.flush()
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        earning = earnings_of(student)[milestone.id]
        assert earning.status == EarningStatus.CREDITED and balance(student) == D(5)
        assert db.session.scalar(select(func.count()).select_from(Transaction)
                                 .where(Transaction.credit_user_id == student.id)) == 1

    def test_the_hourly_job_pays_pending_ones(self, student, course, monkeypatch):
        from portal.money.earnings import tasks

        milestone = make_milestone(course_id=course.id)
        wallet = self._frozen_wallet(student)
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        wallet.status = WalletStatus.ACTIVE
        db.session.flush()
        # The job's body, without its own unit of work (the test's transaction is rolled back).
        monkeypatch.setattr(tasks, "services", services)
        assert services.pay_pending().paid >= 1
        assert earnings_of(student)[milestone.id].status == EarningStatus.CREDITED

    def test_a_ledger_refusal_is_caught_but_a_database_error_propagates(self, student, course, monkeypatch):
        milestone = make_milestone(course_id=course.id)

        def refuse(*args, **kwargs):
            raise ledger.LedgerError("No.")

        monkeypatch.setattr(ledger, "post", refuse)
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        assert earnings_of(student)[milestone.id].status == EarningStatus.PENDING

        make_milestone(course_id=course.id)

        def broken(*args, **kwargs):
            raise IntegrityError("INSERT", {}, Exception("boom"))

        monkeypatch.setattr(ledger, "post", broken)
        with as_user(student), pytest.raises(IntegrityError):
            events.course_completed.send(user=student, course=course)


class TestReversal:
    def _credited(self, student, course):
        milestone = make_milestone(course_id=course.id, reward="5", title="Finish it")
        with as_user(student):
            events.course_completed.send(user=student, course=course)
        return earnings_of(student)[milestone.id]

    def test_an_admin_reverses_with_a_reason(self, student, course):
        earning = self._credited(student, course)
        admin = create_user("admin")
        paid_before = rewards_paid()
        reversed_, replayed = services.reverse_earning(admin, earning.id, "Course completed by mistake",
                                                       ledger.new_key())
        assert not replayed and reversed_.status == EarningStatus.REVERSED
        assert balance(student) == 0 and rewards_paid() == paid_before - D(5)
        reversal = db.session.scalar(select(Transaction).where(Transaction.reverses_id == earning.transaction_id))
        assert reversal.description == "Reward reversed: Course completed by mistake"
        assert "Your reward of 5.00 AZR for Finish it was reversed" in notes_of(student)
        row = queries.earnings_of(student).items[0]
        assert row.reversal_note == "Reward reversed: Course completed by mistake"
        with pytest.raises(Conflict, match="Only a paid reward"):
            services.reverse_earning(admin, earning.id, "Again, please", ledger.new_key())
        assert ledger.verify().ok

    def test_refused_when_the_student_spent_it(self, student, course):
        earning = self._credited(student, course)
        friend = create_user("student")
        ledger.post([ledger.Leg(ledger.user_wallet(student.id, "AZR"), ledger.open_user_wallet(friend.id, "AZR"),
                                D(2), TransactionType.TRANSFER)])
        admin = create_user("admin")
        with pytest.raises(Conflict, match="no longer has the funds") as caught:
            services.reverse_earning(admin, earning.id, "Taken back", ledger.new_key())
        assert "3 AZR" in caught.value.message or "3.00000000 AZR" in caught.value.message
        assert earnings_of(student)[earning.milestone_id].status == EarningStatus.CREDITED
        assert balance(student) == D(3)

    @pytest.mark.parametrize("reason", ["", "no", "x" * 251])
    def test_a_reason_is_required(self, student, course, reason):
        earning = self._credited(student, course)
        with pytest.raises(MilestoneInvalid) as caught:
            services.reverse_earning(create_user("admin"), earning.id, reason, ledger.new_key())
        assert caught.value.field == "reason"

    def test_only_admins(self, student, course):
        from portal.errors import Forbidden

        earning = self._credited(student, course)
        for role in ("faculty", "student", "compliance"):
            with pytest.raises(Forbidden):
                services.reverse_earning(create_user(role), earning.id, "Taken back", ledger.new_key())
            with pytest.raises(Forbidden):
                services.pay_earning(create_user(role), earning.id, ledger.new_key())


def take_quiz(student, quiz, questions):
    """Start, answer every question right and submit (the essay waits for a grader)."""
    attempt = quizzes.start_attempt(student, quiz.id)
    opts = {kind: options_of(q) for kind, q in questions.items()}
    answers = {
        "single": AnswerInput([opts["single"]["Paris"]]),
        "multiple": AnswerInput([opts["multiple"][x] for x in ("2", "3", "5")]),
        "true_false": AnswerInput([opts["true_false"]["True"]]),
        "short": AnswerInput(text="Ada Lovelace"),
        "numeric": AnswerInput(number="3.14"),
        "essay": AnswerInput(text="An essay."),
    }
    for kind, answer in answers.items():
        quizzes.save_answer(student, attempt.id, questions[kind].id, answer)
    quizzes.submit_attempt(student, attempt.id)
    return attempt


def essay_of(attempt, questions):
    return db.session.scalar(select(quizzes.Answer.id).where(quizzes.Answer.attempt_id == attempt.id,
                                                             quizzes.Answer.question_id == questions["essay"].id))


class TestThroughTheLearningServices:
    def test_passing_a_real_quiz_pays_the_reward(self):
        teacher, student, course, quiz, questions = quiz_setup()
        milestone = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id, quiz_id=quiz.id, min_score=D(50),
                                   reward="12.5", title="Quiz champion")
        with as_user(student):
            attempt = take_quiz(student, quiz, questions)
        assert earnings_of(student) == {}  # the essay is still to be graded: not passed yet
        # The teacher's grading finishes the attempt: the event is sent in the teacher's request.
        with as_user(teacher):
            quizzes.grade_essay(teacher, essay_of(attempt, questions), "2", "Good.")
        earning = earnings_of(student)[milestone.id]
        assert earning.status == EarningStatus.CREDITED and earning.source_ref.startswith(quiz.title)
        assert balance(student) == D("12.5")
        assert ledger.verify().ok

    def test_a_teacher_finishing_the_grading_for_a_frozen_wallet_leaves_it_pending(self):
        teacher, student, course, quiz, questions = quiz_setup()
        milestone = make_milestone(MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id, course_id=course.id)
        ledger.open_user_wallet(student.id, "AZR").status = WalletStatus.FROZEN
        db.session.flush()
        with as_user(student):
            attempt = take_quiz(student, quiz, questions)
        with as_user(teacher):  # the teacher's request goes on; the reward waits
            quizzes.grade_essay(teacher, essay_of(attempt, questions), "2", "")
        earning = earnings_of(student)[milestone.id]
        assert earning.status == EarningStatus.PENDING and balance(student) == 0

    def test_a_machine_graded_quiz_pays_at_submission(self):
        teacher, student = create_user("faculty"), create_user("student")
        course = make_course(teacher)
        enroll(student, course)
        quiz = make_quiz(course)
        question = add_question(quiz, QuestionKind.SINGLE, options=[("Yes", True), ("No", False)])
        milestone = make_milestone(MilestoneKind.QUIZ_PASSED, min_score=D(100), title="Perfect")
        with as_user(student):
            attempt = quizzes.start_attempt(student, quiz.id)
            quizzes.save_answer(student, attempt.id, question.id, AnswerInput([options_of(question)["Yes"]]))
            quizzes.submit_attempt(student, attempt.id)
        assert earnings_of(student)[milestone.id].status == EarningStatus.CREDITED
        assert balance(student) == D(5)

    def test_completing_a_course_pays_the_course_and_streak_rewards(self):
        course = catalog.make_course(modules=1, lessons_per_module=2, requires_quizzes_passed=False,
                                     requires_assignments_submitted=False)
        student = create_user("student")
        course_reward = make_milestone(course_id=course.id, title="Done")
        with as_user(student):
            education.enrol(student, course.id)
        yesterday = utcnow() - timedelta(days=1)
        first, second = catalog.lessons_of(course)
        db.session.add(Progress(user_id=student.id, lesson_id=first.id, course_id=course.id,
                                first_viewed_at=yesterday, completed_at=yesterday))
        db.session.flush()
        streak = make_milestone(MilestoneKind.STREAK, streak_days=2, title="Two days")
        with as_user(student):
            result = education.complete_lesson(student, second.id)
        assert result.course_completed
        earned = earnings_of(student)
        assert earned[course_reward.id].status == EarningStatus.CREDITED
        assert earned[streak.id].status == EarningStatus.CREDITED
        assert balance(student) == D(10)
