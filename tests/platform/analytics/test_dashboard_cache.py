"""The analytics dashboard's rollups in the shared cache: the second read of a range computes
nothing, a rollup run that writes daily rows drops every kept range when it commits, and the
entry is shared (the figures count every row, whoever asks)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from portal.db import db
from portal.db.context import acting_as
from portal.platform.analytics import queries, rollups
from portal.platform.analytics.models import Metric
from portal.platform.cache.models import CacheEntry

#: Days no other test rolls up (tests/platform/analytics/test_pages.py uses April 2029).
START = datetime(2031, 6, 10, tzinfo=UTC)
PERIOD = queries.DateRange(date(2031, 6, 10), date(2031, 6, 12))


def _daily(name: str, day: datetime, value, **labels) -> None:
    db.session.add(Metric(name=name, value=Decimal(str(value)), labels=labels, recorded_at=day, period="day"))
    db.session.flush()


def _never():
    raise AssertionError("read the rollups, where the cached ones should have been used")


def _total(view: queries.Dashboard, key: str) -> Decimal | None:
    return next(p.total for p in view.panels if p.key == key)


def test_the_second_read_of_a_range_comes_from_the_cache(monkeypatch, statements):
    _daily("tutoring.questions", START, 4)
    with statements() as miss:
        first = queries.dashboard(PERIOD)
    assert _total(first, "tutoring.questions") == 4
    monkeypatch.setattr(queries, "_read_daily", lambda period: _never())
    with statements() as hit:
        again = queries.dashboard(PERIOD)
        csv_panel = queries.panel("tutoring.questions", PERIOD)  # the CSV reads the same entry
    assert again == first and csv_panel.total == 4
    assert hit.count == 2 < miss.count, hit.statements  # one lookup each


def test_a_rollup_run_shows_at_once(app):
    _daily("tutoring.questions", START + timedelta(days=2), 4)
    db.session.commit()
    assert _total(queries.dashboard(PERIOD), "tutoring.questions") == 4
    _daily("tutoring.questions", START + timedelta(days=1), 3)  # behind the rollups' back: not seen yet
    assert _total(queries.dashboard(PERIOD), "tutoring.questions") == 4
    with acting_as(rollups.ROLLER, db.session):
        rollups.rollup_range("day", START, START)  # rewrites the range's first day
    db.session.commit()
    view = queries.dashboard(PERIOD)
    assert _total(view, "tutoring.questions") == 7  # the entry was dropped: both rows are read


def test_an_hourly_run_keeps_the_daily_figures(app):
    _daily("tutoring.questions", START, 4)
    db.session.commit()
    queries.dashboard(PERIOD)
    _daily("tutoring.questions", START + timedelta(days=1), 3)
    with acting_as(rollups.ROLLER, db.session):
        rollups.rollup_range("hour", START, START)
    db.session.commit()
    assert _total(queries.dashboard(PERIOD), "tutoring.questions") == 4


def test_the_entry_is_shared_and_names_no_reader(client, login_as):
    _daily("money.transfer_volume", START, "12.50", currency="USD")
    admin = login_as("admin")
    queries.dashboard(PERIOD)
    key = queries.daily_key(PERIOD)
    assert key.text == "analytics-daily:shared:2031-06-07:2031-06-12"
    stored = db.session.get(CacheEntry, key.text)
    assert ["money.transfer_volume", "USD", "2031-06-10", "12.5"] in stored.value
    assert str(admin.id) not in str(stored.value)
