"""The request log: sampling, the buffer and its batches (one multi-row INSERT, after the
response, never failing a request), what an API or page request records, the clean-up job and
the Traffic page's figures."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from portal.db import db
from portal.db.base import utcnow
from portal.platform import jobs
from portal.platform.gateway import log_queries, logs, tasks
from portal.platform.gateway.models import ApiLog


def _entry(route: str, *, status: int = 200, duration: int = 10, at: datetime | None = None,
           kind: str = "api", request_id: str | None = None) -> logs.Entry:
    return logs.Entry(kind=kind, method="GET", route=route, status=status, duration_ms=duration, user_id=None,
                      token_id=None, ip_address="192.0.2.1", request_id=request_id or uuid.uuid4().hex,
                      created_at=at or utcnow())


def _rows(**where) -> list[ApiLog]:
    stmt = select(ApiLog)
    for name, value in where.items():
        stmt = stmt.where(getattr(ApiLog, name) == value)
    return list(db.session.scalars(stmt))


@pytest.fixture
def url(app):
    return app.config["SQLALCHEMY_DATABASE_URI"]


def test_sampling_rates():
    assert not logs.sampled(0, draw=lambda: 0.0)
    assert logs.sampled(1, draw=lambda: 0.999)
    assert logs.sampled(0.25, draw=lambda: 0.2) and not logs.sampled(0.25, draw=lambda: 0.3)


def test_a_batch_is_due_by_size_or_by_age(monkeypatch):
    buffer = logs.Buffer()
    assert not logs.due(buffer, 3, 60)  # empty
    logs.record(buffer, _entry("/a"))
    logs.record(buffer, _entry("/a"))
    assert not logs.due(buffer, 3, 60)
    logs.record(buffer, _entry("/a"))
    assert logs.due(buffer, 3, 60)
    young = logs.Buffer()
    logs.record(young, _entry("/a"))
    clock = young.oldest
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock + 61)
    assert logs.due(young, 100, 60)


def test_a_flush_writes_the_whole_buffer_in_one_insert(url):
    buffer = logs.Buffer()
    route = f"/test/{uuid.uuid4().hex}"
    for n in range(5):
        logs.record(buffer, _entry(route, duration=n))
    engine = logs._engine(buffer, url)
    sent = []
    listener = lambda *args: sent.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert logs.flush(buffer, url) == 5
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len([s for s in sent if s.lstrip().upper().startswith("INSERT")]) == 1
    assert sorted(r.duration_ms for r in _rows(route=route)) == [0, 1, 2, 3, 4]
    assert not buffer.entries and logs.flush(buffer, url) == 0


def test_a_failed_flush_is_logged_and_never_raised(url, monkeypatch, caplog):
    buffer = logs.Buffer()
    route = f"/test/{uuid.uuid4().hex}"
    logs.record(buffer, _entry(route))

    def refuse(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("the database is away"))

    monkeypatch.setattr(logs, "insert", refuse)
    with caplog.at_level(logging.WARNING, logger=logs.__name__):
        assert logs.flush(buffer, url) == 0
    assert "could not write 1 request log entries" in caplog.text
    assert _rows(route=route) == []


def test_the_buffer_is_bounded(monkeypatch):
    monkeypatch.setattr(logs, "MAX_BUFFERED", 3)
    buffer = logs.Buffer()
    buffer.entries = logs.deque(maxlen=3)
    for n in range(5):
        logs.record(buffer, _entry(f"/r{n}"))
    assert [e.route for e in buffer.entries] == ["/r2", "/r3", "/r4"] and buffer.dropped == 2


@pytest.fixture
def log_config(app):
    names = ("API_LOG_PAGE_SAMPLE", "API_LOG_BATCH_SIZE", "API_LOG_FLUSH_SECONDS")
    saved = {name: app.config[name] for name in names}
    buffer = app.extensions["portal.request_log"]
    logs.flush(buffer, app.config["SQLALCHEMY_DATABASE_URI"])  # start from an empty buffer

    def configure(**values):
        app.config.update(values)
        return buffer

    yield configure
    app.config.update(saved)


def test_an_api_request_is_logged_with_its_route_template_user_and_token(api, make_user, make_token, log_config):
    log_config(API_LOG_BATCH_SIZE=1)
    user = make_user()
    secret = make_token(user)
    user_id = user.id
    request_id = f"test-{uuid.uuid4().hex}"
    note_id = uuid.uuid4()
    response = api("POST", f"/notifications/{note_id}/read", secret, headers={"X-Request-Id": request_id})
    assert response.status_code == 403  # a read token: refused, and logged all the same
    assert response.headers["X-Request-Id"] == request_id
    assert _rows(request_id=request_id) == []  # not while the response is being sent ...
    response.close()  # ... but once the server is done with it (WSGI close), as the batch size is 1
    (row,) = _rows(request_id=request_id)
    assert (row.kind, row.method, row.route, row.status) == ("api", "POST", "/api/v1/notifications/<note_id>/read", 403)
    assert row.user_id == user_id and row.token_id is not None and row.duration_ms >= 0


def test_requests_wait_in_the_buffer_until_a_batch_is_full(api, log_config):
    buffer = log_config(API_LOG_BATCH_SIZE=1000, API_LOG_FLUSH_SECONDS=3600)
    request_id = f"test-{uuid.uuid4().hex}"
    api("GET", "/me", headers={"X-Request-Id": request_id})
    assert [e.request_id for e in buffer.entries][-1:] == [request_id]
    assert _rows(request_id=request_id) == []  # not yet written


def test_pages_are_logged_at_the_sampling_rate(client, log_config):
    buffer = log_config(API_LOG_PAGE_SAMPLE=0, API_LOG_BATCH_SIZE=1000, API_LOG_FLUSH_SECONDS=3600)
    skipped, kept = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    client.get("/auth/login", headers={"X-Request-Id": skipped})
    log_config(API_LOG_PAGE_SAMPLE=1)
    client.get("/auth/login", headers={"X-Request-Id": kept})
    ids = {e.request_id: e for e in buffer.entries}
    assert skipped not in ids and ids[kept].kind == "page" and ids[kept].route == "/auth/login"


def test_a_failing_log_write_never_fails_the_request(api, make_user, make_token, log_config, monkeypatch):
    log_config(API_LOG_BATCH_SIZE=1)

    def refuse(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("the database is away"))

    monkeypatch.setattr(logs, "insert", refuse)
    response = api("GET", "/me", make_token(make_user()))
    response.close()  # the write after the response fails, quietly
    assert response.status_code == 200 and response.get_json()["role"] == "student"


def test_old_rows_are_dropped_by_the_job(url):
    buffer = logs.Buffer()
    old_route, new_route = f"/test/{uuid.uuid4().hex}", f"/test/{uuid.uuid4().hex}"
    logs.record(buffer, _entry(old_route, at=utcnow() - timedelta(days=40)))
    logs.record(buffer, _entry(new_route, at=utcnow() - timedelta(days=1)))
    logs.flush(buffer, url)
    assert tasks.drop_old_api_logs(0) >= 1  # as the worker runs it (retention 30 days)
    assert _rows(route=old_route) == [] and len(_rows(route=new_route)) == 1
    name = "portal.platform.gateway.tasks.drop_old_api_logs"
    assert any(p.task.name == name for p in jobs.job_app.periodic_registry.periodic_tasks.values())


def test_traffic_figures_per_minute_and_per_route(url):
    """A window nobody else writes in (a day in 2031): 100 requests of one route lasting 1..100
    ms, ten of them server errors, over three minutes."""
    start = datetime(2031, 3, 4, 10, 0, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 300)
    buffer = logs.Buffer()
    route = f"/test/{uuid.uuid4().hex}"
    for n in range(1, 101):
        at = start + timedelta(minutes=0 if n <= 50 else 1 if n <= 80 else 2, seconds=n % 50)
        logs.record(buffer, _entry(route, duration=n, status=500 if n % 10 == 0 else 200, at=at))
    logs.record(buffer, _entry(route + "/quick", duration=1, status=404, at=start))
    logs.flush(buffer, url)
    figures = log_queries.traffic(15, now=start + timedelta(minutes=5))
    counts = [(m.at - start, m.requests, m.errors) for m in figures.per_minute if m.at >= start]
    assert counts[:4] == [(timedelta(0), 51, 5), (timedelta(minutes=1), 30, 3), (timedelta(minutes=2), 20, 2),
                          (timedelta(minutes=3), 0, 0)]
    assert figures.total == 101 and figures.peak == 51
    (slow,) = [r for r in figures.routes if r.route == route]
    assert (slow.requests, slow.server_errors, slow.slowest) == (100, 10, 100)
    assert (slow.p50, slow.p95, slow.p99) == (50.5, 95.05, 99.01)  # linear interpolation
    assert slow.error_rate == 10.0
    (quick,) = [r for r in figures.routes if r.route == route + "/quick"]
    assert quick.client_error_rate == 100.0 and quick.error_rate == 0.0
    assert [r.route for r in figures.slowest] == [route, route + "/quick"]


def test_the_traffic_page_shows_the_figures_within_its_budget(client, login_as, url, statements):
    buffer = logs.Buffer()
    route = f"/test/{uuid.uuid4().hex}"
    for n in range(1, 21):
        logs.record(buffer, _entry(route, duration=n * 10, at=utcnow() - timedelta(minutes=2)))
    logs.flush(buffer, url)
    login_as("admin")
    client.get("/admin/traffic")  # warm
    with statements() as counter:
        response = client.get("/admin/traffic?minutes=15")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert route in html and "<svg" in html
    table = html[html.index('id="routes"'):]
    row = table[table.index(route):].split("</tr>")[0]
    cells = [f"<td>{value:.0f}</td>" for value in (105.0, 190.5, 198.1)]  # p50, p95, p99 of 10, 20 ... 200
    assert all(cell in row for cell in cells), row
    assert counter.count <= 12
    for n in range(300):  # ten times the rows, over more routes: the same statements
        logs.record(buffer, _entry(f"{route}/{n % 30}", duration=n, at=utcnow() - timedelta(minutes=3)))
    logs.flush(buffer, url)
    with statements() as more:
        assert client.get("/admin/traffic?minutes=15").status_code == 200
    assert more.count == counter.count


def test_the_traffic_page_is_for_admins_only(client, login_as):
    login_as("compliance")
    assert client.get("/admin/traffic").status_code == 403
    assert db.session.scalar(select(func.count()).select_from(ApiLog).where(ApiLog.id < 0)) == 0
