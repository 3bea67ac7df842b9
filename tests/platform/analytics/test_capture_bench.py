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
    assert [c.label for c in costs] == ["GET /healthz (records nothing)", "a commit recording 3 events",
                                        "  its write, after the response"]
    assert all(c.on_ms > 0 and c.off_ms > 0 for c in costs)
    assert _recorded() - before == 3  # three writes with capture on, none with it off
    assert app.config["ANALYTICS_CAPTURE"] is True  # restored


def test_the_request_log_cost_is_measured_with_every_page_logged_and_none(app, client, login_as, monkeypatch):
    from portal.platform.gateway.models import ApiLog

    def logged() -> int:
        return db.session.scalar(select(func.count()).select_from(ApiLog).where(ApiLog.route == "/notifications"))

    monkeypatch.setattr(analytics, "REQUESTS", 3)
    monkeypatch.setitem(app.config, "API_LOG_BATCH_SIZE", 1)  # each logged page written at once
    login_as("admin")
    app.extensions["portal.request_log"].entries.clear()  # pages sampled by earlier tests are not this test's
    before = logged()
    cost = analytics.logging_cost(app, client, "/notifications")
    assert cost.label == "GET /notifications, logged in api_logs" and cost.on_ms > 0 and cost.off_ms > 0
    assert logged() - before == 4  # the warm-up and three requests with every page logged, none after
    assert app.config["API_LOG_PAGE_SAMPLE"] == 0.05  # restored
