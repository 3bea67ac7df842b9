"""Entitlements: what each plan allows, read in one statement and remembered for the request,
and where the portal enforces them: the tutor's daily question cap and language model
(learning asks through the ``entitlement_asked`` event) and the earnings reward multiplier."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import event, select

from portal import events
from portal.db import db
from portal.learning.tutoring import answers
from portal.learning.tutoring import services as tutor
from portal.money.billing import entitlements, services
from portal.money.earnings.models import Earning
from portal.money.earnings.services import boosted_reward
from tests.factories import create_user
from tests.learning.factories.quiz import make_course
from tests.learning.tutoring.factories.chat import student_in, tutor_course
from tests.money.billing.helpers import as_user, plans, student, utc
from tests.money.factories import make_milestone


@pytest.fixture
def catalogue():
    return plans()


def test_without_any_plan_nothing_is_limited():
    user = student()
    assert entitlements.may(user.id, "tutor_model")
    assert entitlements.limit(user.id, "tutor_questions_per_day") is None
    assert entitlements.limit(user.id, "reward_multiplier") == Decimal("1")
    assert not entitlements.may(user.id, "reward_multiplier")


def test_free_paid_past_due_and_canceled(catalogue):
    free_user, paid = student(), student("25.00")
    entitlements.forget()
    assert not entitlements.may(free_user.id, "tutor_model")
    assert entitlements.limit(free_user.id, "tutor_questions_per_day") == 3
    with time_machine.travel(utc(2026, 9, 1), tick=False):
        services.subscribe(paid, catalogue["pro"].id)
    assert entitlements.may(paid.id, "tutor_model")
    assert entitlements.limit(paid.id, "tutor_questions_per_day") is None
    assert entitlements.may(paid.id, "tutor_questions_per_day")
    assert entitlements.limit(paid.id, "reward_multiplier") == Decimal("2")
    assert entitlements.limit(paid.id, "transfer_limit_multiplier") == Decimal("1")  # not set: default
    # Past due (the renewal failed): kept while the retries run.
    with time_machine.travel(utc(2026, 10, 1, 0, 1), tick=False):
        services.run_due()
    assert services.live_subscription(paid.id).status.value == "past_due"
    assert entitlements.may(paid.id, "tutor_model")
    # Canceled after the last retry: back to the free plan's.
    for day in (2, 4, 6, 8):
        with time_machine.travel(utc(2026, 10, day, 0, 1), tick=False):
            services.run_due()
    assert not entitlements.may(paid.id, "tutor_model")
    assert entitlements.limit(paid.id, "tutor_questions_per_day") == 3


def _statements(action) -> int:
    statements = []
    engine = db.session.get_bind()

    def count(*_args, **_kwargs):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def _all_features(user_id):
    for feature, kind in entitlements.FEATURES.items():
        entitlements.may(user_id, feature) if kind is bool else entitlements.limit(user_id, feature)


def test_one_statement_then_remembered_for_the_session(catalogue):
    user = student("25")
    services.subscribe(user, catalogue["pro"].id)
    db.session.flush()
    entitlements.forget()
    with as_user(user):
        db.session.execute(select(1))  # the request's identity is set already
        assert _statements(lambda: _all_features(user.id)) == 1
        assert entitlements.limit(user.id, "reward_multiplier") == Decimal("2")
        assert _statements(lambda: _all_features(user.id)) == 0
    # Someone else asking (a teacher's grading paying the student's reward) switches to the
    # billing role around the one SELECT, and still finds the student's plan.
    entitlements.forget()
    with as_user(create_user("faculty")):
        db.session.execute(select(1))
        assert _statements(lambda: _all_features(user.id)) <= 3
        assert entitlements.limit(user.id, "reward_multiplier") == Decimal("2")


def test_unknown_features_are_a_callers_bug():
    with pytest.raises(entitlements.UnknownFeature):
        entitlements.may(student().id, "flying")
    with pytest.raises(entitlements.UnknownFeature):
        events.entitlement_asked.send(user_id=student().id, feature="flying")


def test_the_tutor_stops_at_the_free_plans_daily_cap_and_a_paid_plan_lifts_it(catalogue):
    course = tutor_course()
    learner = student_in(course.course)
    entitlements.forget()
    start = utc(2026, 11, 3, 10)
    with time_machine.travel(start, tick=True), as_user(learner):
        for n in range(3):
            tutor.ask(learner, course.course, f"What do plants need number {n}?")
        with pytest.raises(tutor.TutorLimitReached, match="3 questions your plan allows") as refused:
            tutor.ask(learner, course.course, "One more about leaves?")
        assert refused.value.status_code == 429 and refused.value.field == "question"
        # The same question again (a double submit) is not counted and still answered.
        tutor.ask(learner, course.course, "What do plants need number 2?")
    # Tomorrow (UTC) the count starts again.
    with time_machine.travel(start + timedelta(days=1), tick=True), as_user(learner):
        tutor.ask(learner, course.course, "And the roots?")
    # A paid plan: unlimited.
    from tests.money.billing.helpers import fund

    fund(learner, "25")
    with time_machine.travel(start + timedelta(days=1, hours=1), tick=True), as_user(learner):
        services.subscribe(learner, catalogue["pro"].id)
        for n in range(5):
            tutor.ask(learner, course.course, f"Paid question {n}?")


def test_the_tutors_language_model_only_on_plans_that_include_it(catalogue, app, monkeypatch):
    course = tutor_course()
    free_learner, paying = student_in(course.course), student_in(course.course)
    from tests.money.billing.helpers import fund

    fund(paying, "25")
    services.subscribe(paying, catalogue["pro"].id)
    entitlements.forget()
    drafted = []
    monkeypatch.setattr(answers, "draft_reply", lambda *a, **k: drafted.append(1) or
                        type("Draft", (), {"for_the_model": True})())
    monkeypatch.setitem(app.config, "TUTOR_MODEL_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setitem(app.config, "TUTOR_MODEL_NAME", "test")
    assert tutor.draft_for_the_model(free_learner, course.course, "Why are leaves green?") is None
    assert drafted == []
    assert tutor.draft_for_the_model(paying, course.course, "Why are leaves green?") is not None
    assert drafted == [1]


def test_rewards_are_multiplied_by_the_plan_and_rounded_down():
    assert boosted_reward(Decimal("5.00000000"), "AZR", Decimal("2")) == Decimal("10.00000000")
    # 0.01 x 1.5 = 0.015 -> 0.01 in USD (down, never up).
    assert boosted_reward(Decimal("0.01"), "USD", Decimal("1.5")) == Decimal("0.01")
    assert boosted_reward(Decimal("3"), "USD", Decimal("1")) == Decimal("3")


def test_earnings_pay_the_multiplied_reward_to_a_pro_subscriber(catalogue):
    course = make_course(create_user("faculty"), title="Budgeting")
    milestone = make_milestone(course_id=course.id, reward="5", title="Finish Budgeting")
    pro_user, free_user = student("25.00"), student()
    services.subscribe(pro_user, catalogue["pro"].id)
    entitlements.forget()
    for user in (pro_user, free_user):
        with as_user(user):
            events.course_completed.send(user=user, course=course)
    amounts = {e.user_id: e.amount for e in db.session.scalars(select(Earning).where(
        Earning.milestone_id == milestone.id))}
    assert amounts == {pro_user.id: Decimal("10"), free_user.id: Decimal("5")}


def test_a_plans_transfer_limit_multiplier_raises_the_daily_transfer_limit(app, monkeypatch):
    from portal.money.wallets import services as wallets

    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {"USD": "5000"})
    admin = create_user("admin")
    generous = services.create_plan(admin, "generous", services.PlanInput(
        name="Generous", price="5.00", entitlements={"transfer_limit_multiplier": "2.5"}))
    plain, subscriber = student(), student("5")
    services.subscribe(subscriber, generous.id)
    entitlements.forget()
    base = wallets.daily_limit("USD", plain.id)
    assert base is not None and base > 0
    # Both at the same verification level: the subscriber's limit is 2.5 times, rounded down.
    assert wallets.daily_limit("USD", subscriber.id) == (base * Decimal("2.5")).quantize(Decimal("0.01"))
