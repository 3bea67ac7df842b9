"""Rollups: the figures of each finished hour and day, written to ``metrics``.

``rollup(period)`` finds the last period rolled up and computes every finished one since, in
order, so a job that did not run for a while (a worker down over the weekend) catches up on
its next run; the first run reaches back ``ANALYTICS_BACKFILL_DAYS``. Each period's figures
are upserted on the unique key (name, period, start, labels), so running it again, or
``rollup_range`` over periods already done, rewrites the same rows with the same values.

The figures read the areas' tables by name in SQL: analytics sits below the domains in the
layers and imports none of their models. Each figure is one statement per period:

======================================  ================================================
name                                    value (labels)
======================================  ================================================
``analytics.active_students``           students with any event in the period
``learning.enrolments``                 enrolments made
``learning.completions``                courses completed
``learning.quiz_attempts``              quiz attempts graded (submitted in the period)
``learning.quiz_pass_rate``             percent of those that passed (only with attempts)
``tutoring.questions``                  questions asked of the tutor
``money.transfer_volume``               sum of transfers (``currency``)
``money.top_up_volume``                 sum of top-ups (``currency``)
``kyc.queue_size``                      verifications waiting at the period's end
``kyc.time_to_decision_hours``          mean hours from submission to decision (``decision``)
``cases.open``                          cases open at the period's end
``ledger.problems``                     problems found by the last verification before the end (the
                                        points are ``ledger.verification``: a rollup has a name of
                                        its own, so a reader of the last run never takes it for one)
======================================  ================================================
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert

from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from portal.platform.analytics.models import PERIODS, Metric
from portal.platform.cache import services as cache

#: The name of the shared cache entries of the rollups a dashboard reads (``queries.daily_key``).
DAILY_CACHE = "analytics-daily"
#: Who computes the rollups asked for from a page (the jobs act as ``system:worker``).
ROLLER = Actor.system("analytics")
STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
#: The most periods one run computes (the next run goes on from there).
MAX_PERIODS_PER_RUN = 24 * 45

_BETWEEN = "{column} >= :start AND {column} < :end"


@dataclass(frozen=True)
class Figure:
    name: str
    label: str  #: what a page calls it
    sql: str  #: selects (labels jsonb, value) rows for :start, :end
    unit: str = ""
    #: How the days of a range make one figure: ``sum`` (counts, volumes), ``mean`` (rates,
    #: durations, daily actives) or ``last`` (levels: a queue, open cases).
    aggregate: str = "sum"
    #: The label its rows are split by (the one key of their ``labels``), or None.
    split_by: str | None = None


def _count(name: str, label: str, table: str, column: str, extra: str = "") -> Figure:
    where = _BETWEEN.format(column=f'"{column}"') + (f" AND {extra}" if extra else "")
    return Figure(name, label, f"SELECT '{{}}'::jsonb, count(*) FROM {table} WHERE {where}")


FIGURES: tuple[Figure, ...] = (
    Figure("analytics.active_students", "Active students (daily)",
           "SELECT '{}'::jsonb, count(DISTINCT e.\"userId\") FROM events AS e JOIN users AS u ON u.id = e.\"userId\" "
           "WHERE e.\"occurredAt\" >= :start AND e.\"occurredAt\" < :end AND u.role = 'student'", aggregate="mean"),
    _count("learning.enrolments", "Enrolments", "enrollments", "createdAt"),
    _count("learning.completions", "Course completions", "enrollments", "completedAt"),
    _count("learning.quiz_attempts", "Quiz attempts graded", "quiz_attempts", "submittedAt", "status = 'graded'"),
    Figure("learning.quiz_pass_rate", "Quiz pass rate",
           "SELECT '{}'::jsonb, round(100.0 * count(*) FILTER (WHERE passed) / count(*), 2) FROM quiz_attempts "
           "WHERE \"submittedAt\" >= :start AND \"submittedAt\" < :end AND status = 'graded' HAVING count(*) > 0",
           unit="%", aggregate="mean"),
    _count("tutoring.questions", "Tutor questions", "tutor_questions", "createdAt"),
    Figure("money.transfer_volume", "Transfer volume",
           "SELECT jsonb_build_object('currency', currency), sum(amount) FROM transactions "
           "WHERE type = 'transfer' AND phase IN ('single', 'post') AND \"createdAt\" >= :start "
           "AND \"createdAt\" < :end GROUP BY currency", split_by="currency"),
    Figure("money.top_up_volume", "Top-up volume",
           "SELECT jsonb_build_object('currency', currency), sum(amount) FROM transactions "
           "WHERE type = 'top_up' AND phase IN ('single', 'post') AND \"createdAt\" >= :start "
           "AND \"createdAt\" < :end GROUP BY currency", split_by="currency"),
    Figure("kyc.queue_size", "KYC queue",
           "SELECT '{}'::jsonb, count(*) FROM kyc_verifications WHERE \"submittedAt\" < :end "
           "AND (\"decidedAt\" IS NULL OR \"decidedAt\" >= :end)", aggregate="last"),
    Figure("kyc.time_to_decision_hours", "KYC time to decision",
           "SELECT jsonb_build_object('decision', status), "
           "round(avg(extract(epoch FROM \"decidedAt\" - \"submittedAt\")) / 3600, 2) FROM kyc_verifications "
           "WHERE \"decidedAt\" >= :start AND \"decidedAt\" < :end AND status IN ('approved', 'rejected') "
           "GROUP BY status", unit="h", aggregate="mean", split_by="decision"),
    Figure("cases.open", "Open cases",
           "SELECT '{}'::jsonb, count(*) FROM suspicious_activities WHERE \"detectedAt\" < :end "
           "AND (\"closedAt\" IS NULL OR \"closedAt\" >= :end)", aggregate="last"),
    Figure("ledger.problems", "Ledger problems found",
           "SELECT '{}'::jsonb, value FROM metrics WHERE name = 'ledger.verification' AND period IS NULL "
           "AND \"recordedAt\" < :end ORDER BY \"recordedAt\" DESC LIMIT 1", aggregate="last"),
)
BY_NAME = {figure.name: figure for figure in FIGURES}
#: The labels figures are split by, which the dashboard can filter on.
SPLITS = tuple(sorted({figure.split_by for figure in FIGURES if figure.split_by}))


def floor(moment: datetime, period: str) -> datetime:
    """The start of the period ``moment`` falls in (UTC)."""
    moment = moment.astimezone(utcnow().tzinfo)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if period == "day" else start


def _check(period: str) -> timedelta:
    if period not in PERIODS:
        raise ValueError(f"a rollup period is one of {PERIODS}, not {period!r}")
    return STEPS[period]


def last_rolled_up(period: str) -> datetime | None:
    """The start of the last period rolled up (every figure run writes at least the counts)."""
    return db.session.scalar(select(func.max(Metric.recorded_at)).where(
        Metric.period == period, Metric.name == "learning.enrolments"))


def rollup(period: str, now: datetime | None = None) -> list[datetime]:
    """Compute every finished ``period`` since the last one rolled up (at most
    ``MAX_PERIODS_PER_RUN``); returns the starts computed, oldest first."""
    step = _check(period)
    now = now or utcnow()
    newest = floor(now, period) - step  # the last period that has ended
    last = last_rolled_up(period)
    if last is None:
        backfill = timedelta(days=current_app.config["ANALYTICS_BACKFILL_DAYS"])
        start = min(floor(now - backfill, period), newest)
    else:
        start = last + step
    starts = []
    while start <= newest and len(starts) < MAX_PERIODS_PER_RUN:
        starts.append(start)
        start += step
    for start in starts:
        _roll(period, start, start + step)
    return starts


def rollup_range(period: str, first: datetime, last: datetime) -> list[datetime]:
    """Compute (again) the periods from ``first`` to ``last`` (their starts, inclusive)."""
    step = _check(period)
    start, starts = floor(first, period), []
    while start <= last:
        _roll(period, start, start + step)
        starts.append(start)
        start += step
    return starts


def compute(start: datetime, end: datetime) -> list[tuple[str, dict, Decimal]]:
    """Every figure over [start, end): (name, labels, value)."""
    found = []
    for figure in FIGURES:
        for labels, value in db.session.execute(text(figure.sql), {"start": start, "end": end}):
            found.append((figure.name, labels or {}, Decimal(value if value is not None else 0)))
    return found


def _roll(period: str, start: datetime, end: datetime) -> None:
    now = utcnow()
    rows = [{"id": uuid.uuid4(), "name": name, "labels": labels, "value": value, "recorded_at": start,
             "period": period, "created_at": now, "updated_at": now}
            for name, labels, value in compute(start, end)]
    columns = Metric.__mapper__.columns  # by attribute name
    statement = insert(Metric).values(rows)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[columns.name, columns.period, columns.recorded_at, columns.labels],
        index_where=text("period IS NOT NULL"),
        set_={columns.value: statement.excluded.value, columns.updated_at: now}))
    if period == "day":  # the dashboard reads the daily rollups only
        forget_figures()


def forget_figures() -> None:
    """Rollup rows were written: every range a dashboard keeps in the cache is dropped when the
    run commits (a run rewrites any day, and a range's entry may hold it)."""
    cache.invalidate_on_commit(cache.key_prefix(DAILY_CACHE))


def bring_days_up_to_date(now: datetime | None = None) -> list[datetime]:
    """Every missing finished day, then today so far (rewritten when today ends): what an admin's
    "bring up to date" asks for, in the caller's transaction. Returns the day starts computed."""
    now = now or utcnow()
    # As the system, as the job runs: the figures count every row, not what the asker may read.
    with acting_as(ROLLER, db.session):
        done = rollup("day", now)
        today = floor(now, "day")
        _roll("day", today, today + STEPS["day"])
    return [*done, today]
