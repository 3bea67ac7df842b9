"""Security events: each kind recorded by the real flows, the searchable page (filters, keyset
pagination, htmx fragments, statement budget), and row-level security on ``security_events``."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from portal.compliance.security import events as security_events
from portal.compliance.security.models import SecurityEvent, SecurityEventKind, Severity
from portal.db import context as db_context
from portal.db import db
from portal.db.base import utcnow
from tests.conftest import unique_email
from tests.factories import PASSWORD, create_user

HTMX = {"HX-Request": "true"}
ATTACKER = "198.51.100.23"


def _events(kind: SecurityEventKind, **where) -> list[SecurityEvent]:
    stmt = select(SecurityEvent).where(SecurityEvent.kind == kind)
    for name, value in where.items():
        stmt = stmt.where(getattr(SecurityEvent, name) == value)
    return list(db.session.scalars(stmt.order_by(SecurityEvent.created_at)))


# -- Each kind from the real flow -----------------------------------------------------------------

def test_a_failed_login_through_the_login_view_is_recorded(client):
    user = create_user("student")
    response = client.post("/auth/login", data={"email": user.email, "password": "wrong password!"},
                           environ_base={"REMOTE_ADDR": ATTACKER}, headers={"User-Agent": "curl/8.0"})
    assert response.status_code == 422
    (event,) = _events(SecurityEventKind.LOGIN_FAILED, user_id=user.id)
    assert event.severity == Severity.LOW
    assert event.user_id == user.id
    assert str(event.ip_address) == ATTACKER
    assert event.details == {"email": user.email, "reason": "bad_credentials"}
    assert event.path == "/auth/login" and event.user_agent == "curl/8.0"


def test_a_failed_login_for_an_unknown_address_is_recorded_without_a_user(client):
    email = unique_email("nobody-here")
    client.post("/auth/login", data={"email": email, "password": "whatever it is"})
    # Other tests commit failed logins too (the browser journeys): this address's is the one.
    (event,) = [e for e in _events(SecurityEventKind.LOGIN_FAILED) if e.details.get("email") == email]
    assert event.user_id is None


def test_throttled_logins_are_recorded_with_medium_severity(client, app):
    user = create_user("student")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit):
        client.post("/auth/login", data={"email": user.email, "password": "wrong password!"})
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 429
    (event,) = _events(SecurityEventKind.LOGIN_THROTTLED, user_id=user.id)
    assert event.severity == Severity.MEDIUM
    assert len(_events(SecurityEventKind.LOGIN_FAILED, user_id=user.id)) == limit


def test_a_permission_denial_through_a_forbidden_url_is_recorded(client, login_as):
    student = login_as("student")
    assert client.get("/compliance/security/events").status_code == 403
    # Refusals other tests committed (the browser journeys') are other users' events.
    (event,) = _events(SecurityEventKind.PERMISSION_DENIED, user_id=student.id)
    assert event.path == "/compliance/security/events"
    assert event.details["endpoint"] == "compliance.security_events"
    assert event.details["needed"] == "view security events"


def test_an_admin_action_through_the_admin_view_is_recorded(client, login_as):
    admin = login_as("admin")
    target = create_user("student")
    assert client.post(f"/admin/users/{target.id}/deactivate").status_code == 302
    client.post(f"/admin/users/{target.id}/reactivate")
    deactivated, reactivated = _events(SecurityEventKind.ACCOUNT_ACTION, user_id=target.id)
    assert deactivated.actor_id == admin.id and deactivated.details["change"] == "deactivated"
    assert deactivated.severity == Severity.MEDIUM
    assert reactivated.details["change"] == "reactivated"
    assert admin.email in deactivated.summary and target.email in deactivated.summary


def test_making_someone_an_admin_is_a_high_severity_event(client, login_as):
    login_as("admin")
    target = create_user("faculty")
    client.post(f"/admin/users/{target.id}/role", data={"role": "admin"})
    (event,) = _events(SecurityEventKind.ACCOUNT_ACTION, user_id=target.id)
    assert event.severity == Severity.HIGH and event.details == {"change": "role", "role": "admin"}


def test_a_session_used_from_a_new_address_is_recorded_once_per_session_and_address(client, login_as):
    user = login_as("student")
    assert client.get("/dashboard").status_code == 200
    assert _events(SecurityEventKind.SESSION_NEW_IP, user_id=user.id) == []
    for _ in range(3):
        assert client.get("/dashboard", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    (event,) = _events(SecurityEventKind.SESSION_NEW_IP, user_id=user.id)
    assert event.severity == Severity.MEDIUM
    assert str(event.ip_address) == "203.0.113.9" and event.details["opened_from"] == "127.0.0.1"
    client.get("/dashboard", environ_base={"REMOTE_ADDR": "2001:db8::5"})
    client.get("/dashboard", environ_base={"REMOTE_ADDR": "2001:db8::5"})
    assert [str(e.ip_address) for e in _events(SecurityEventKind.SESSION_NEW_IP, user_id=user.id)] == [
        "203.0.113.9", "2001:db8::5"]


def test_recording_never_breaks_the_request(app, monkeypatch):
    """A database error while recording is logged and swallowed; the transaction goes on."""
    user = create_user("student")
    with db_context.acting_as(db_context.ANONYMOUS_WEB, db.session):
        # details that JSONB cannot hold (a NUL in text) make the INSERT fail
        assert security_events.record(SecurityEventKind.LOGIN_FAILED, Severity.LOW, "x",
                                      details={"bad": "a\x00b"}) is None
        assert db.session.execute(text("SELECT 1")).scalar() == 1
    assert db.session.get(type(user), user.id) is not None


def _total() -> int:
    return db.session.execute(text("SELECT count(*) FROM security_events")).scalar()


def test_anonymous_requests_may_record_but_not_read_events():
    before = _total()
    with db_context.acting_as(db_context.ANONYMOUS_WEB, db.session):
        assert security_events.record(SecurityEventKind.LOGIN_FAILED, Severity.LOW, "anonymous") is not None
        assert _total() == 0
    assert _total() == before + 1


@pytest.mark.parametrize("role, sees", [("student", False), ("faculty", False), ("compliance", True),
                                        ("admin", True)])
def test_row_level_security_on_security_events(role, sees):
    someone = create_user("student")
    security_events.record(SecurityEventKind.LOGIN_FAILED, Severity.LOW, "about them", user_id=someone.id)
    reader = someone if role == "student" else create_user(role)
    total = _total()
    with db_context.acting_as(db_context.Actor.for_user(reader.id, role), db.session):
        count = _total()
    assert total >= 1 and count == (total if sees else 0)


# -- The page -------------------------------------------------------------------------------------

#: Seeded events come from here (other tests' committed events never do), so pages can filter on it.
SEED_RANGE = "100.64.0.0/16"


def _seed(n: int, **fields) -> None:
    base = utcnow()
    for i in range(n):
        security_events.record(fields.get("kind", SecurityEventKind.LOGIN_FAILED), fields.get("severity", Severity.LOW),
                               f"event {i}", ip=fields.get("ip", f"100.64.{i // 250}.{i % 250 + 1}"),
                               user_id=fields.get("user_id"))
    db.session.execute(
        text('UPDATE security_events SET "createdAt" = :t - (random() * interval \'1 day\') WHERE summary LIKE \'event %\''),
        {"t": base})


@pytest.mark.parametrize("role, status", [("compliance", 200), ("admin", 200), ("student", 403), ("faculty", 403)])
def test_who_may_open_the_events_page(client, login_as, role, status):
    login_as(role)
    assert client.get("/compliance/security/events").status_code == status


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/compliance/security/events")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_filters_kind_severity_email_ip_and_dates(client, login_as):
    login_as("compliance")
    victim = create_user("student")
    # Addresses of this test's own: other tests commit events too (the browser journeys), and
    # enough of them push these off the first page, so every look is narrowed to this network.
    net = f"10.{secrets.randbelow(250) + 1}"
    mine = f"{net}.0.0/16"
    security_events.record(SecurityEventKind.LOGIN_FAILED, Severity.LOW, "first-marker", ip=f"{net}.7.5",
                           user_id=victim.id, details={"email": victim.email})
    security_events.record(SecurityEventKind.REQUEST_BLOCKED, Severity.MEDIUM, "second-marker", ip=f"{net}.7.200")
    security_events.record(SecurityEventKind.PERMISSION_DENIED, Severity.LOW, "third-marker", ip=f"{net}.9.3")
    old = security_events.record(SecurityEventKind.LOGIN_FAILED, Severity.HIGH, "old-marker", ip=f"{net}.9.4")
    db.session.execute(text('UPDATE security_events SET "createdAt" = "createdAt" - interval \'40 days\' WHERE id = :i'),
                       {"i": old})

    def shown(**args) -> set[str]:
        args.setdefault("ip", mine)
        body = client.get("/compliance/security/events", query_string=args).get_data(as_text=True)
        return set(re.findall(r"(\w+)-marker", body))

    assert shown() == {"first", "second", "third", "old"}
    assert shown(kind="login_failed") == {"first", "old"}
    assert shown(severity="medium") == {"second"}
    assert shown(email=victim.email.upper(), ip="") == {"first"}
    assert shown(ip=f"{net}.7.5") == {"first"}
    assert shown(ip=f"{net}.7.0/24") == {"first", "second"}
    assert shown(ip=f"{net}.9.0/24", kind="login_failed") == {"old"}
    today = utcnow().date()
    assert shown(**{"from": (today - timedelta(days=1)).isoformat()}) == {"first", "second", "third"}
    assert shown(to=(today - timedelta(days=30)).isoformat()) == {"old"}


def test_bad_filter_values_get_a_message_not_an_error(client, login_as):
    login_as("admin")
    response = client.get("/compliance/security/events?ip=999.1.1.1&from=yesterday&kind=nope")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Not an address or a CIDR range." in body and "Not a date." in body and "Unknown kind." in body


def test_keyset_pagination_and_htmx_fragments(client, login_as):
    login_as("admin")
    _seed(60)
    first = client.get(f"/compliance/security/events?ip={SEED_RANGE}")
    body = first.get_data(as_text=True)
    assert body.count('id="event-') == 50
    after = re.search(r'after=([\w-]+)', body).group(1)
    more = client.get(f"/compliance/security/events?ip={SEED_RANGE}&after={after}", headers=HTMX)
    rest = more.get_data(as_text=True)
    assert "<html" not in rest and rest.count('id="event-') == 10
    ids_first = set(re.findall(r'id="event-([0-9a-f-]+)"', body))
    ids_rest = set(re.findall(r'id="event-([0-9a-f-]+)"', rest))
    assert not ids_first & ids_rest and len(ids_first | ids_rest) == 60
    filtered = client.get("/compliance/security/events?severity=low", headers=HTMX).get_data(as_text=True)
    assert filtered.strip().startswith('<div id="results">') and "<form" not in filtered


def test_the_events_page_keeps_its_statement_budget(client, login_as, statements):
    login_as("compliance")
    _seed(5)
    with statements() as few:
        assert client.get(f"/compliance/security/events?ip={SEED_RANGE}&severity=low").status_code == 200
    _seed(120)
    with statements() as many:
        assert client.get(f"/compliance/security/events?ip={SEED_RANGE}&severity=low").status_code == 200
    assert many.count == few.count == 2, many.statements  # who is asking, then the page


def test_the_default_page_order_is_answered_by_the_index():
    db.session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables would be scanned anyway
    plan = db.session.execute(text(
        'EXPLAIN SELECT * FROM security_events ORDER BY "createdAt" DESC, id DESC LIMIT 51')).scalars().all()
    assert any("ix_security_events_created" in line for line in plan), plan


def test_the_system_sees_every_event():
    before = db.session.scalar(select(func.count()).select_from(SecurityEvent))
    _seed(3)
    assert db.session.scalar(select(func.count()).select_from(SecurityEvent)) == before + 3
