"""The capture part of the bench (tests/perf/analytics.py), on the test database: it measures capture on and off, and
with capture on its writes really record (off, nothing)."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.db import db
from portal.platform.analytics.models import Event
from tests.perf import analytics


def _recorded() -> int:
    return db.session.scalar(select(func.count()).select_from(Event).where(Event.name == "quiz_passed"))


def test_capture_costs_are_measured_on_and_off(app, client, monkeypatch):
    monkeypatch.setattr(analytics, "REQUESTS", 3)
    before = _recorded()
    costs = analytics.capture_costs(app, client, "/healthz")
    assert [c.label for c in costs] == ["GET /healthz (records nothing)", "a commit recording 3 events"]
    assert all(c.on_ms > 0 and c.off_ms > 0 for c in costs)
    assert _recorded() - before == 3  # three writes with capture on, none with it off
    assert app.config["ANALYTICS_CAPTURE"] is True  # restored
