"""Blocks: adding (address, range, user; temporary or permanent), validation, lifting, the
automatic block after repeated failed logins (once), and enforcement on every request (the page,
its status with and without htmx, the rate-limited event, what stays reachable)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from portal.compliance.security import blocks
from portal.compliance.security.models import (
    BlockedEntity,
    BlockKind,
    BlockSource,
    SecurityEvent,
    SecurityEventKind,
)
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, Forbidden
from tests.factories import PASSWORD, create_user

HTMX = {"HX-Request": "true"}
BAD = "198.51.100.77"


def _count(kind: SecurityEventKind) -> int:
    return db.session.scalar(select(func.count()).select_from(SecurityEvent).where(SecurityEvent.kind == kind))


def _block(admin, **fields) -> BlockedEntity:
    values = {"kind": "ip", "target": BAD, "reason": "testing", "duration": "24h"} | fields
    return blocks.add_block(admin, **values)


@pytest.fixture
def admin():
    return create_user("admin")


# -- The service ----------------------------------------------------------------------------------

def test_an_address_block_is_stored_as_a_single_address_network(admin):
    block = _block(admin)
    assert block.kind == BlockKind.IP and str(block.network) == f"{BAD}/32"
    assert block.source == BlockSource.ADMIN and block.created_by_id == admin.id
    assert timedelta(hours=23, minutes=59) < block.expires_at - utcnow() <= timedelta(hours=24)
    assert blocks.check_request(BAD) == block.id
    assert blocks.check_request("198.51.100.78") is None
    assert _count(SecurityEventKind.BLOCK_ADDED) == 1


def test_a_range_block_covers_every_address_in_it_ipv4_and_ipv6(admin):
    v4 = _block(admin, kind="network", target="203.0.113.77/24", duration="permanent")
    assert str(v4.network) == "203.0.113.0/24" and v4.expires_at is None  # host bits cleared
    assert blocks.check_request("203.0.113.1") == v4.id
    assert blocks.check_request("203.0.114.1") is None
    v6 = _block(admin, kind="network", target="2001:db8:abcd::/48")
    assert blocks.check_request("2001:db8:abcd:12::1") == v6.id
    assert blocks.check_request("2001:db8:abce::1") is None


def test_a_slash_32_range_is_an_address_block(admin):
    assert _block(admin, kind="network", target=f"{BAD}/32").kind == BlockKind.IP


@pytest.mark.parametrize("kind, target, message", [
    ("ip", "not-an-ip", "not an IP address"),
    ("ip", "300.1.1.1", "not an IP address"),
    ("network", "10.0.0.0/33", "not an address range"),
    ("network", "0.0.0.0/0", "far too wide"),
    ("network", "12.0.0.0/7", "far too wide"),
    ("network", "2001::/16", "far too wide"),
    ("user", "nobody@tests.example", "No account"),
    ("ip", "", "Say what to block"),
    ("planet", "x", "Choose what to block"),
])
def test_bad_targets_are_refused_with_a_message(admin, kind, target, message):
    with pytest.raises(blocks.BlockInvalid, match=message):
        _block(admin, kind=kind, target=target)
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 0


def test_a_slash_8_is_the_widest_ipv4_range_allowed(admin):
    assert str(_block(admin, kind="network", target="10.0.0.0/8").network) == "10.0.0.0/8"


def test_a_range_holding_the_admins_own_address_needs_confirmation(admin):
    with pytest.raises(blocks.NeedsConfirmation, match="lock yourself out"):
        _block(admin, kind="network", target="192.0.2.0/24", actor_ip="192.0.2.50")
    block = _block(admin, kind="network", target="192.0.2.0/24", actor_ip="192.0.2.50", confirm_own_address=True)
    assert str(block.network) == "192.0.2.0/24"


def test_reason_duration_and_date_are_checked(admin):
    with pytest.raises(blocks.BlockInvalid, match="reason"):
        _block(admin, reason=" ")
    with pytest.raises(blocks.BlockInvalid, match="how long"):
        _block(admin, duration="forever-ish")
    with pytest.raises(blocks.BlockInvalid, match="date and time"):
        _block(admin, duration="until")
    with pytest.raises(blocks.BlockInvalid, match="future"):
        _block(admin, duration="until", until=utcnow() - timedelta(hours=1))
    with pytest.raises(blocks.BlockInvalid, match="ten years"):
        _block(admin, duration="until", until=utcnow() + timedelta(days=4000))
    until = (utcnow() + timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    assert _block(admin, duration="until", until=until).expires_at.replace(tzinfo=None) == until


def test_a_second_block_on_the_same_target_is_refused(admin):
    _block(admin)
    with pytest.raises(Conflict, match="already blocked"):
        _block(admin, duration="permanent")


def test_only_admins_block_and_no_one_blocks_themselves(admin):
    with pytest.raises(Forbidden):
        _block(create_user("compliance"))
    with pytest.raises(blocks.BlockInvalid, match="your own account"):
        _block(admin, kind="user", target=admin.email)


def test_a_user_block_is_found_with_the_session_and_on_its_own(admin):
    student = create_user("student")
    block = _block(admin, kind="user", target=student.email.upper(), duration="permanent")
    assert block.user_id == student.id and block.network is None
    assert blocks.block_on_user(student.id).id == block.id


def test_an_expired_block_stops_applying_with_no_job(admin):
    past = utcnow() - timedelta(hours=2)
    expired = BlockedEntity(kind=BlockKind.IP, network=f"{BAD}/32", reason="old", created_at=past,
                            expires_at=past + timedelta(hours=1), created_by_id=admin.id)
    db.session.add(expired)
    db.session.flush()
    assert blocks.check_request(BAD) is None
    assert not blocks.is_in_force(expired)
    # and a new one on the same target is allowed, since the old one no longer applies
    assert _block(admin).id != expired.id


def test_lifting_a_block(admin):
    block = _block(admin)
    blocks.lift_block(admin, block.id)
    assert block.lifted_at is not None and block.lifted_by_id == admin.id
    assert blocks.check_request(BAD) is None
    assert _count(SecurityEventKind.BLOCK_LIFTED) == 1
    with pytest.raises(Conflict, match="no longer in force"):
        blocks.lift_block(admin, block.id)


# -- The automatic block ---------------------------------------------------------------------------

@pytest.fixture
def three_strikes(app, monkeypatch):
    monkeypatch.setitem(app.config, "AUTO_BLOCK_FAILURES", 3)
    monkeypatch.setitem(app.config, "AUTO_BLOCK_MINUTES", 30)


def test_repeated_failed_logins_block_the_address_once(client, three_strikes):
    for i in range(3):
        response = client.post("/auth/login", data={"email": f"guess{i}@tests.example", "password": "nope nope"},
                               environ_base={"REMOTE_ADDR": BAD})
        assert response.status_code == 422
    (block,) = db.session.scalars(select(BlockedEntity)).all()
    assert block.source == BlockSource.AUTOMATIC and str(block.network) == f"{BAD}/32"
    assert timedelta(minutes=29) < block.expires_at - utcnow() <= timedelta(minutes=30)
    assert "3 failed logins" in block.reason
    # the next attempt from there is refused before it reaches the login form
    response = client.post("/auth/login", data={"email": "guess9@tests.example", "password": "nope nope"},
                           environ_base={"REMOTE_ADDR": BAD})
    assert response.status_code == 403 and "Access from your address is blocked" in response.get_data(as_text=True)
    # more failures counted by the service still make no second block
    assert blocks.after_failed_login(BAD) is None
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 1
    assert _count(SecurityEventKind.BLOCK_ADDED) == 1
    # other addresses are not affected
    assert client.get("/auth/login", environ_base={"REMOTE_ADDR": "198.51.100.78"}).status_code == 200


def test_failures_before_an_earlier_automatic_block_do_not_count_again(client, three_strikes, app):
    for i in range(3):
        client.post("/auth/login", data={"email": f"g{i}@tests.example", "password": "nope nope"},
                    environ_base={"REMOTE_ADDR": BAD})
    block = db.session.scalars(select(BlockedEntity)).one()
    # the block ends early (as if it had expired); one more failure must not block again at once
    db.session.execute(text('UPDATE blocked_entities SET "expiresAt" = "createdAt" + interval \'1 second\', '
                            '"createdAt" = "createdAt" - interval \'1 minute\' WHERE id = :i'), {"i": block.id})
    db.session.execute(text('UPDATE security_events SET "createdAt" = "createdAt" - interval \'2 minutes\''))
    db.session.expire_all()
    client.post("/auth/login", data={"email": "g9@tests.example", "password": "nope nope"},
                environ_base={"REMOTE_ADDR": BAD})
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 1


def test_failures_from_different_addresses_do_not_add_up(client, three_strikes):
    for i in range(3):
        client.post("/auth/login", data={"email": f"g{i}@tests.example", "password": "nope nope"},
                    environ_base={"REMOTE_ADDR": f"198.51.100.{10 + i}"})
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 0


# -- Enforcement ----------------------------------------------------------------------------------

def test_a_blocked_address_gets_the_blocked_page_with_and_without_htmx(client, admin):
    block = _block(admin)
    page = client.get("/auth/login", environ_base={"REMOTE_ADDR": BAD})
    body = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "Access from your address is blocked" in body and "until" in body and "contact support" in body
    assert str(block.id)[:8].upper() in body and "<html" in body
    assert "testing" not in body  # the admin's reason stays internal
    assert 0 < int(page.headers["Retry-After"]) <= 24 * 3600
    fragment = client.get("/dashboard", environ_base={"REMOTE_ADDR": BAD}, headers=HTMX)
    assert fragment.status_code == 403 and fragment.headers["HX-Refresh"] == "true"
    text_ = fragment.get_data(as_text=True)
    assert "<html" not in text_ and "Access from your address is blocked" in text_


def test_a_logged_in_user_at_a_blocked_address_is_refused_too(client, login_as, admin, statements):
    login_as("student")
    with statements() as before:
        assert client.get("/dashboard", environ_base={"REMOTE_ADDR": BAD}).status_code == 200
    _block(admin, kind="network", target="198.51.100.0/24")
    response = client.get("/dashboard", environ_base={"REMOTE_ADDR": BAD})
    assert response.status_code == 403 and "Access from your address is blocked" in response.get_data(as_text=True)
    # the address check rode in the session lookup: an allowed page has no extra statement for it
    with statements() as after:
        assert client.get("/dashboard").status_code == 200
    assert after.count <= before.count


def test_a_permanent_block_says_until_further_notice(client, admin):
    _block(admin, duration="permanent")
    page = client.get("/", environ_base={"REMOTE_ADDR": BAD})
    assert page.status_code == 403 and "until further notice" in page.get_data(as_text=True)
    assert "Retry-After" not in page.headers


def test_static_files_and_the_health_check_stay_reachable(client, admin):
    _block(admin)
    assert client.get("/static/css/app.css", environ_base={"REMOTE_ADDR": BAD}).status_code == 200
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": BAD}).status_code == 200


def test_blocked_requests_record_at_most_one_event_per_block_per_minute(client, admin):
    block = _block(admin)
    for _ in range(5):
        assert client.get("/auth/login", environ_base={"REMOTE_ADDR": BAD}).status_code == 403
    (event,) = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.kind == SecurityEventKind.REQUEST_BLOCKED)).all()
    assert event.details["block_id"] == str(block.id) and str(event.ip_address) == BAD


def test_a_blocked_user_is_refused_on_every_request(client, login_as, admin):
    student = login_as("student")
    assert client.get("/dashboard").status_code == 200
    _block(admin, kind="user", target=student.email, duration="7d")
    page = client.get("/dashboard")
    assert page.status_code == 403 and "Your account is blocked" in page.get_data(as_text=True)
    fragment = client.get("/learning/courses", headers=HTMX)
    assert fragment.status_code == 403 and fragment.headers["HX-Refresh"] == "true"
    assert "<html" not in fragment.get_data(as_text=True)
    event = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.kind == SecurityEventKind.REQUEST_BLOCKED)).one()
    assert event.user_id == student.id


def test_a_blocked_user_cannot_log_in(client, admin):
    student = create_user("student")
    _block(admin, kind="user", target=student.email, duration="permanent")
    db.session.commit()  # the view rolls back the login it refuses; the test's rows must survive it
    response = client.post("/auth/login", data={"email": student.email, "password": PASSWORD})
    assert response.status_code == 403 and "Your account is blocked" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302  # no session was opened
    # with htmx the message takes the page's place (a reload would only show the form again)
    fragment = client.post("/auth/login", data={"email": student.email, "password": PASSWORD}, headers=HTMX)
    assert fragment.status_code == 403 and "HX-Refresh" not in fragment.headers
    assert fragment.headers["HX-Retarget"] == "#main" and "Your account is blocked" in fragment.get_data(as_text=True)


def test_lifting_lets_requests_through_again(client, admin):
    block = _block(admin)
    assert client.get("/auth/login", environ_base={"REMOTE_ADDR": BAD}).status_code == 403
    blocks.lift_block(admin, block.id)
    assert client.get("/auth/login", environ_base={"REMOTE_ADDR": BAD}).status_code == 200


def test_the_block_check_is_one_statement_that_uses_the_gist_index(admin):
    _block(admin, kind="network", target="203.0.113.0/24")
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.session.execute(text(
        "EXPLAIN SELECT id FROM blocked_entities WHERE network >>= '203.0.113.9'::inet AND \"liftedAt\" IS NULL "
        "AND (\"expiresAt\" IS NULL OR \"expiresAt\" > now())")).scalars())
    assert "ix_blocked_entities_network" in plan, plan


# -- The pages ------------------------------------------------------------------------------------

ROUTES = [("GET", "/compliance/security/blocks", "compliance"),
          ("GET", "/compliance/security/blocks?show=ended&q=10.0.0.1", "compliance"),
          ("POST", "/compliance/security/blocks", "admin"),
          ("POST", "/compliance/security/blocks/{id}/lift", "admin"),
          ("GET", "/compliance/security/events", "compliance")]
ALLOWED = {"compliance": {"compliance", "admin"}, "admin": {"admin"}}


@pytest.mark.parametrize("role", ["student", "faculty", "compliance", "admin"])
@pytest.mark.parametrize("method, url, lowest", ROUTES)
def test_every_route_for_every_role(client, login_as, admin, role, method, url, lowest):
    block = _block(admin)
    login_as(role)
    response = client.open(url.format(id=block.id), method=method,
                           data={"kind": "ip", "target": "192.0.2.1", "duration": "1h", "reason": "role test"})
    if role in ALLOWED[lowest]:
        assert response.status_code in (200, 302), response.status_code
    else:
        assert response.status_code == 403
    assert _count(SecurityEventKind.BLOCK_LIFTED) == (1 if role == "admin" and url.endswith("lift") else 0)


@pytest.mark.parametrize("method, url, _", ROUTES)
def test_anonymous_visitors_get_nothing(client, admin, method, url, _):
    block = _block(admin)
    response = client.open(url.format(id=block.id), method=method)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert blocks.is_in_force(block)


def test_an_admin_adds_a_block_through_the_form(client, login_as):
    login_as("admin")
    response = client.post("/compliance/security/blocks", data={
        "kind": "network", "target": "203.0.113.0/24", "duration": "7d", "reason": "Credential stuffing"})
    assert response.status_code == 302
    block = db.session.scalars(select(BlockedEntity)).one()
    assert str(block.network) == "203.0.113.0/24" and block.reason == "Credential stuffing"
    page = client.get("/compliance/security/blocks").get_data(as_text=True)
    assert "203.0.113.0/24" in page and "Credential stuffing" in page and "Blocked 203.0.113.0/24" in page


def test_form_errors_are_shown_beside_their_field_with_htmx_and_without(client, login_as):
    login_as("admin")
    data = {"kind": "network", "target": "0.0.0.0/0", "duration": "1h", "reason": "too wide"}
    plain = client.post("/compliance/security/blocks", data=data)
    assert plain.status_code == 422 and "far too wide" in plain.get_data(as_text=True)
    fragment = client.post("/compliance/security/blocks", data=data, headers=HTMX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 422 and "far too wide" in body and "<html" not in body
    assert body.strip().startswith('<section id="block-form"')
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 0


def test_blocking_your_own_range_asks_for_confirmation_on_the_form(client, login_as):
    login_as("admin")
    data = {"kind": "network", "target": "127.0.0.0/8", "duration": "1h", "reason": "own range"}
    asked = client.post("/compliance/security/blocks", data=data, headers=HTMX)
    body = asked.get_data(as_text=True)
    assert asked.status_code == 409 and "lock yourself out" in body and 'name="confirm_own_address"' in body
    done = client.post("/compliance/security/blocks", data=data | {"confirm_own_address": "y"})
    assert done.status_code == 302
    # the admin is now refused too, as they confirmed
    assert client.get("/compliance/security/blocks").status_code == 403


def test_lifting_inline_with_htmx_and_without(client, login_as, admin):
    login_as("admin")
    first, second = _block(admin), _block(admin, target="198.51.100.99")
    row = client.post(f"/compliance/security/blocks/{first.id}/lift", headers=HTMX)
    body = row.get_data(as_text=True)
    assert row.status_code == 200 and body.strip().startswith(f'<tr id="block-{first.id}"') and "Lifted" in body
    again = client.post(f"/compliance/security/blocks/{first.id}/lift", headers=HTMX)
    assert again.status_code == 409 and "no longer in force" in again.get_data(as_text=True)
    plain = client.post(f"/compliance/security/blocks/{second.id}/lift")
    assert plain.status_code == 302
    assert "is lifted" in client.get("/compliance/security/blocks").get_data(as_text=True)
    ended = client.get("/compliance/security/blocks?show=ended").get_data(as_text=True)
    assert BAD in ended and "198.51.100.99" in ended
    assert client.post(f"/compliance/security/blocks/{'0' * 8}-0000-0000-0000-{'0' * 12}/lift").status_code == 404
    assert client.post("/compliance/security/blocks/not-an-id/lift").status_code == 404


def test_a_link_from_an_event_fills_the_form_without_changing_anything(client, login_as):
    login_as("admin")
    page = client.get(f"/compliance/security/blocks?kind=ip&target={BAD}").get_data(as_text=True)
    assert re.search(rf'name="target"[^>]*value="{re.escape(BAD)}"', page)
    assert db.session.scalar(select(func.count()).select_from(BlockedEntity)) == 0


def test_officers_see_blocks_but_no_form(client, login_as, admin):
    _block(admin)
    login_as("compliance")
    page = client.get("/compliance/security/blocks").get_data(as_text=True)
    assert BAD in page and "Add a block" not in page and ">Lift<" not in page


def test_the_blocks_page_keeps_its_statement_budget(client, login_as, admin, statements):
    login_as("admin")
    _block(admin)
    with statements() as few:
        assert client.get("/compliance/security/blocks").status_code == 200
    for i in range(60):
        _block(admin, target=f"192.0.2.{i + 1}", reason=f"bulk {i}")
    with statements() as many:
        assert client.get("/compliance/security/blocks").status_code == 200
    assert many.count == few.count <= 12, many.statements


def test_pages_with_a_blocked_check_stay_within_budget_for_every_role(client, login_as, statements):
    """The per-request block check adds one statement; the dashboards stay within 12."""
    for role in ("student", "faculty", "compliance", "admin"):
        login_as(role)
        with statements() as counted:
            assert client.get("/dashboard").status_code == 200
        assert counted.count <= 12, (role, counted.statements)
        client.post("/auth/logout")
