"""The monthly partitions of ``events``: made ahead by the job, dropped past the retention."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, select, text

from portal.db import db
from portal.platform.analytics import partitions
from portal.platform.analytics.models import Event

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_month_arithmetic_crosses_years():
    assert partitions.month_start(date(2026, 12, 7), 1) == date(2027, 1, 1)
    assert partitions.month_start(date(2026, 1, 31), -13) == date(2024, 12, 1)
    assert partitions.partition_name(date(2027, 3, 1)) == "events_2027_03"


def test_the_job_makes_the_missing_months_ahead_once():
    far = datetime(2031, 11, 20, tzinfo=UTC)
    made = partitions.ensure_ahead(far, ahead=2)
    assert made == ["events_2031_11", "events_2031_12", "events_2032_01"]
    assert partitions.ensure_ahead(far, ahead=2) == []
    assert {"events_2031_11", "events_2032_01"} <= set(partitions.existing())
    # A row of that month now has somewhere to go.
    db.session.execute(insert(Event).values(id=uuid.uuid4(), occurred_at=datetime(2032, 1, 15, tzinfo=UTC),
                                            name="logged_in", properties={}))
    assert db.session.scalar(select(Event.name).where(Event.occurred_at == datetime(2032, 1, 15, tzinfo=UTC))) == "logged_in"


def test_a_new_partition_cannot_be_read_past_the_parent_s_row_security(app):
    partitions.ensure_ahead(datetime(2033, 5, 1, tzinfo=UTC), ahead=0)
    forced = db.session.scalar(text(
        "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'events_2033_05'"))
    assert forced is True


def test_the_retention_drops_whole_months_before_it_and_keeps_the_rest():
    partitions.ensure_ahead(datetime(2020, 1, 1, tzinfo=UTC), ahead=1)  # January and February 2020
    old_id = uuid.uuid4()
    db.session.execute(insert(Event).values(id=old_id, occurred_at=datetime(2020, 1, 10, tzinfo=UTC),
                                            name="logged_in", properties={}))
    dropped = partitions.drop_expired(NOW, retention_months=13)
    assert {"events_2020_01", "events_2020_02"} <= set(dropped)
    assert all(name < "events_2025_11" for name in dropped)  # Nov 2025 is 13 months back: kept
    left = set(partitions.existing())
    assert "events_2020_01" not in left
    assert partitions.partition_name(NOW) in left
    assert db.session.scalar(select(Event.id).where(Event.id == old_id)) is None


def test_a_retention_under_a_month_is_refused():
    with pytest.raises(ValueError, match="at least one month"):
        partitions.drop_expired(NOW, retention_months=0)
