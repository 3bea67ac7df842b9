"""Rollups: the figures of a period, upserted idempotently, catching up every missing period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, insert, select, update

from portal.db import db
from portal.learning.education.models import Enrollment
from portal.money.wallets import ledger
from portal.money.wallets.models import TransactionType
from portal.platform.analytics import partitions, rollups
from portal.platform.analytics.models import Event, Metric
from portal.platform.analytics.rollups import floor
from tests.factories import create_user
from tests.learning.factories.catalog import make_attempt, make_course, make_quiz
from tests.learning.factories.quiz import enroll
from tests.money.factories import fund

#: An hour no other test uses: rows placed in it are the only ones there.
HOUR = datetime(2029, 3, 14, 15, tzinfo=UTC)


def _figures(start, end) -> dict:
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in rollups.compute(start, end)}


def _rollup_rows(period: str, start: datetime) -> dict:
    rows = db.session.execute(select(Metric.name, Metric.labels, Metric.value)
                              .where(Metric.period == period, Metric.recorded_at == start))
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in rows}


def _place_learning_in(hour: datetime):
    """Two enrolments, one completion, three graded attempts (two passed), one active student."""
    course = make_course()
    quiz = make_quiz(course)
    students = [create_user("student") for _ in range(2)]
    for student in students:
        enroll(student, course)
    attempts = [make_attempt(quiz, students[0], passed=True), make_attempt(quiz, students[1], passed=True),
                make_attempt(quiz, students[1], passed=False)]
    at = hour + timedelta(minutes=20)
    db.session.execute(update(Enrollment).where(Enrollment.course_id == course.id)
                       .values(created_at=at))
    db.session.execute(update(Enrollment).where(Enrollment.course_id == course.id,
                                                Enrollment.user_id == students[0].id).values(completed_at=at))
    for attempt in attempts:
        attempt.submitted_at = at
    partitions.ensure_ahead(hour, ahead=0)
    db.session.execute(insert(Event).values([
        {"id": uuid.uuid4(), "occurred_at": at, "name": "logged_in", "user_id": students[0].id, "properties": {}},
        {"id": uuid.uuid4(), "occurred_at": at, "name": "enrolled", "user_id": students[0].id, "properties": {}},
    ]))
    db.session.flush()


def test_the_figures_of_an_hour_count_what_happened_in_it():
    _place_learning_in(HOUR)
    figures = _figures(HOUR, HOUR + timedelta(hours=1))
    assert figures[("analytics.active_students", ())] == 1
    assert figures[("learning.enrolments", ())] == 2
    assert figures[("learning.completions", ())] == 1
    assert figures[("learning.quiz_attempts", ())] == 3
    assert figures[("learning.quiz_pass_rate", ())] == Decimal("66.67")
    # The hour after holds none of it, and no pass rate without attempts.
    after = _figures(HOUR + timedelta(hours=1), HOUR + timedelta(hours=2))
    assert after[("learning.enrolments", ())] == 0
    assert ("learning.quiz_pass_rate", ()) not in after


def test_transfer_volume_is_summed_per_currency():
    start = floor(datetime.now(UTC), "hour")
    end = start + timedelta(hours=1)
    before = _figures(start, end).get(("money.transfer_volume", (("currency", "USD"),)), Decimal(0))
    sender, recipient = create_user("student"), create_user("student")
    fund(sender, "50", "USD")
    ledger.open_user_wallet(recipient.id, "USD")
    source, target = ledger.user_wallet(sender.id, "USD"), ledger.user_wallet(recipient.id, "USD")
    for amount in ("12.50", "7.25"):
        ledger.post([ledger.Leg(source, target, Decimal(amount), TransactionType.TRANSFER, "Test transfer", {})])
    after = _figures(start, end)[("money.transfer_volume", (("currency", "USD"),))]
    assert after - before == Decimal("19.75")


def test_rolling_up_again_rewrites_the_same_rows():
    _place_learning_in(HOUR)
    rollups.rollup_range("hour", HOUR, HOUR)
    first = _rollup_rows("hour", HOUR)
    assert first[("learning.enrolments", ())] == 2
    enroll(create_user("student"), make_course())  # made now, outside the hour: changes nothing there
    rollups.rollup_range("hour", HOUR, HOUR)
    again = _rollup_rows("hour", HOUR)
    assert again == first
    count = db.session.scalar(select(func.count()).select_from(Metric)
                              .where(Metric.period == "hour", Metric.recorded_at == HOUR))
    assert count == len(first)


def test_a_late_change_is_taken_in_when_the_period_is_rolled_up_again():
    _place_learning_in(HOUR)
    rollups.rollup_range("hour", HOUR, HOUR)
    course = make_course()
    student = create_user("student")
    enroll(student, course)
    db.session.execute(update(Enrollment).where(Enrollment.course_id == course.id)
                       .values(created_at=HOUR + timedelta(minutes=50)))
    rollups.rollup_range("hour", HOUR, HOUR)
    assert _rollup_rows("hour", HOUR)[("learning.enrolments", ())] == 3


def _mark_rolled_up(period: str, start: datetime) -> None:
    db.session.add(Metric(name="learning.enrolments", value=0, labels={}, recorded_at=start, period=period))
    db.session.flush()


def test_the_job_catches_up_every_missing_hour_after_downtime_then_has_nothing_to_do():
    last = datetime(2030, 1, 1, 5, tzinfo=UTC)
    _mark_rolled_up("hour", last)
    now = datetime(2030, 1, 1, 10, 30, tzinfo=UTC)  # the worker was down from 06:00 to 10:30
    done = rollups.rollup("hour", now)
    assert done == [datetime(2030, 1, 1, h, tzinfo=UTC) for h in (6, 7, 8, 9)]  # 10:00 has not ended
    assert all(_rollup_rows("hour", start)[("learning.enrolments", ())] == 0 for start in done)
    assert rollups.rollup("hour", now) == []
    assert rollups.rollup("hour", now + timedelta(hours=1)) == [datetime(2030, 1, 1, 10, tzinfo=UTC)]


def test_days_catch_up_the_same_way():
    _mark_rolled_up("day", datetime(2030, 2, 1, tzinfo=UTC))
    done = rollups.rollup("day", datetime(2030, 2, 4, 0, 20, tzinfo=UTC))
    assert done == [datetime(2030, 2, d, tzinfo=UTC) for d in (2, 3)]


def test_the_first_run_reaches_back_the_backfill(app, monkeypatch):
    monkeypatch.setitem(app.config, "ANALYTICS_BACKFILL_DAYS", 1)
    monkeypatch.setattr(rollups, "last_rolled_up", lambda period: None)
    now = datetime(2030, 6, 1, 12, 10, tzinfo=UTC)
    done = rollups.rollup("hour", now)
    assert done[0] == datetime(2030, 5, 31, 12, tzinfo=UTC)
    assert done[-1] == datetime(2030, 6, 1, 11, tzinfo=UTC)
    assert len(done) == 24


def test_the_jobs_are_registered_with_the_queue():
    from portal.platform import jobs
    from portal.platform.analytics import tasks

    assert "portal.platform.analytics.tasks" in jobs.job_app.import_paths  # the worker loads them
    crons = {d.task.name: d.cron for d in jobs.job_app.periodic_registry.periodic_tasks.values()}
    assert crons[tasks.roll_up_hours.name] == "5 * * * *"
    assert crons[tasks.roll_up_days_and_partitions.name] == "20 0 * * *"


def test_the_rollup_of_the_ledger_check_never_reads_as_a_verification_run():
    """The admin pages read the last ``ledger.verification`` point as the last run: a rollup of
    it goes under a name of its own, with the value of the last run before the period's end."""
    db.session.add(Metric(name="ledger.verification", value=Decimal(2), labels={}, recorded_at=HOUR))
    db.session.flush()
    rollups.rollup_range("hour", HOUR + timedelta(hours=1), HOUR + timedelta(hours=1))
    names = set(db.session.scalars(select(Metric.name).where(Metric.period.is_not(None))))
    assert "ledger.verification" not in names
    assert _rollup_rows("hour", HOUR + timedelta(hours=1))[("ledger.problems", ())] == 2
