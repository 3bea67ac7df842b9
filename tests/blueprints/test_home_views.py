"""The landing page, the dashboards, liveness, the response headers every page carries and the
error pages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from portal.accounts.models import Role
from portal.db import context as db_context
from portal.db import db
from tests.factories import PASSWORD, create_notification

HTMX = {"HX-Request": "true"}

#: Something only that role's dashboard says.
DASHBOARD_MARKERS = {
    "student": ["My courses", 'id="wallet"', "Student AZ-T"],
    "faculty": ["Courses I teach", "To grade", "Faculty · Testing"],
    "compliance": ["KYC and screening", "Identity verifications to review", "Cases and alerts", "Compliance officer"],
    "admin": ["Manage users", "Invite staff", 'class="stat-value"'],
}


def test_landing_page_for_visitors(client):
    response = client.get("/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in body and "Learn. Earn. Grow." in body
    assert 'href="/auth/register"' in body and 'href="/auth/login"' in body
    assert "Log out" not in body


def test_landing_page_sends_logged_in_users_to_their_dashboard(client, login_as):
    login_as("student")
    response = client.get("/")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/dashboard"


@pytest.mark.parametrize("role", [role.value for role in Role])
def test_dashboard_shows_the_roles_own_content(client, login_as, role):
    user = login_as(role)
    response = client.get("/dashboard")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"Hello, {user.first_name}" in body
    for marker in DASHBOARD_MARKERS[role]:
        assert marker in body, marker
    for other, markers in DASHBOARD_MARKERS.items():
        if other != role:
            assert markers[0] not in body, other
    # only administrators see the admin link in the navigation
    assert ('href="/admin/users"' in body) == (role == "admin")
    assert "Log out" in body and 'href="/notifications"' in body


def test_admin_dashboard_counts_accounts_by_role(client, login_as, make_user):
    # Accounts other tests committed (the browser journeys keep theirs) are counted too: the
    # page must show what was there before plus exactly the accounts made here.
    before = dict(db.session.execute(text("SELECT role, count(*) FROM users GROUP BY role")).all())
    login_as("admin")
    for _ in range(3):
        make_user("faculty")
    make_user("compliance")
    body = client.get("/dashboard").get_data(as_text=True)
    counts = dict(re.findall(
        r'href="/admin/users\?role=(\w+)">\s*<span class="stat-value">(\d+)</span>', body))
    made = {"student": 0, "faculty": 3, "compliance": 1, "admin": 1}
    assert counts == {role: str(before.get(role, 0) + extra) for role, extra in made.items()}


def test_admin_dashboard_counts_are_kept_and_renewed_by_new_accounts(client, login_as, make_user):
    """The counts per role are kept in the shared cache (counting every user on each view grew
    with the users): an account made behind the services' back is not counted at once, one made
    through them (its event drops the counts) is, together with the other. (The test client rolls
    back what each request stored, so the kept counts are read here, the page at the end.)"""
    from portal.accounts import services as accounts
    from portal.accounts.queries import counts_by_role

    admin = login_as("admin")
    first = counts_by_role()
    make_user("faculty")  # straight into the table, as the demo data's bulk load does
    assert counts_by_role() == first
    accounts.create_staff(admin, "new.officer@example.org", "New Officer", "compliance", None,
                          password="a long enough passphrase 42")
    db.session.commit()
    renewed = {**first, "faculty": first.get("faculty", 0) + 1, "compliance": first.get("compliance", 0) + 1}
    assert counts_by_role() == renewed
    body = client.get("/dashboard").get_data(as_text=True)
    shown = dict(re.findall(r'href="/admin/users\?role=(\w+)">\s*<span class="stat-value">(\d+)</span>', body))
    assert {role: int(n) for role, n in shown.items() if int(n)} == {r: n for r, n in renewed.items() if n}


def test_dashboard_lists_the_latest_notifications(client, login_as, make_user):
    user = login_as("student")
    someone_else = make_user("student")
    create_notification(user, title="Your grade is out")
    create_notification(someone_else, title="Not for you")
    body = client.get("/dashboard").get_data(as_text=True)
    assert "Your grade is out" in body and "Not for you" not in body
    assert 'class="bell-count">1<' in body


def test_dashboard_needs_a_login(client):
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/auth/login"


def test_healthz_is_public_and_touches_no_database(client, statements):
    with statements() as counted:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert counted.count == 0, counted.statements


@pytest.mark.parametrize("path", ["/", "/healthz", "/auth/login", "/no-such-page", "/dashboard"])
def test_every_response_varies_on_hx_request(client, path):
    response = client.get(path)
    assert "HX-Request" in response.headers.get("Vary", "")


@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page", "/dashboard"])
def test_security_headers(client, login_as, path):
    login_as("student")
    response = client.get(path)
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp or headers.get("X-Frame-Options") == "DENY"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "same-origin"
    assert headers.get("Cache-Control") == "no-store"  # a logged-in page is never cached


def test_not_found_is_the_styled_error_page(client):
    response = client.get("/no-such-page")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "<html" in body and 'class="narrow error-page"' in body
    assert "Page not found" in body and "There is nothing at this address" in body
    assert 'href="/static/' in body  # the site's own styles


def test_not_found_for_htmx_is_an_inline_fragment(client):
    response = client.get("/no-such-page", headers=HTMX)
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "<html" not in body and 'class="inline-error"' in body and "Page not found" in body


def test_wrong_method_is_the_styled_405_page(client, login_as):
    login_as("student")
    response = client.get("/auth/logout")
    body = response.get_data(as_text=True)
    assert response.status_code == 405
    assert "<html" in body and "error-page" in body and "does not accept that kind of request" in body


def _csrf_token(body: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', body) or re.search(
        r'name="csrf_token" value="([^"]+)"', body)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_csrf_failure_is_a_clear_400_page(client, make_user):
    user = make_user("student")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD}, csrf=False)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<html" in body and "error-page" in body
    assert "The form expired" in body and "Reload it and try again" in body

    fragment = client.post("/auth/login", data={"email": user.email, "password": PASSWORD}, headers=HTMX,
                           csrf=False)
    assert fragment.status_code == 400
    assert "<html" not in fragment.get_data(as_text=True)
    assert "The form expired" in fragment.get_data(as_text=True)

    forged = client.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                              "csrf_token": "forged"}, csrf=False)
    assert forged.status_code == 400


def test_csrf_failure_of_a_logged_in_user_leaves_no_identity_behind(client, login_as):
    user = login_as("student")
    create_notification(user)
    before = db_context.current_actor()
    response = client.post("/notifications/read-all", csrf=False)
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "The form expired" in body
    assert 'class="bell-count">1<' in body  # the page is still theirs...
    assert db_context.current_actor() == before  # ...but their identity ends with the request
    assert db.session.execute(text("SELECT current_setting('app.actor')")).scalar() == before.label


def test_missing_static_file_of_a_logged_in_user_leaves_no_identity_behind(client, login_as):
    login_as("faculty")
    before = db_context.current_actor()
    response = client.get("/static/no-such-file.css")
    body = response.get_data(as_text=True)
    assert response.status_code == 404 and "error-page" in body
    assert "Log out" in body  # rendered for the logged-in user
    assert db_context.current_actor() == before


def test_csrf_token_from_the_page_is_accepted(client, make_user):
    """The tokens the pages carry are the ones that work (the client sends none of its own here)."""
    user = make_user("student")
    token = _csrf_token(client.get("/auth/login").get_data(as_text=True))
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token},
                           csrf=False)
    assert response.status_code == 302
    # Login starts a new session (and a new CSRF secret): the login page's token no longer works.
    assert client.post("/notifications/read-all", data={"csrf_token": token}, csrf=False).status_code == 400
    # htmx sends the token in a header (hx-headers on <body>)
    page = client.get("/notifications").get_data(as_text=True)
    header_token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    assert client.post("/notifications/read-all", headers={**HTMX}, csrf=False).status_code == 400
    assert client.post("/notifications/read-all", headers={**HTMX, "X-CSRFToken": header_token},
                       csrf=False).status_code == 200


def _dashboard_statements(client, statements) -> int:
    with statements() as counted:
        response = client.get("/dashboard")
    assert response.status_code == 200
    return counted.count


@pytest.mark.parametrize("role", [role.value for role in Role])
def test_dashboard_statement_budget_does_not_grow_with_notifications(client, login_as, statements, role):
    user = login_as(role)
    client.get("/dashboard")  # warm up
    before = _dashboard_statements(client, statements)
    for n in range(40):
        create_notification(user, title=f"Note {n}", read_at=None)
    after = _dashboard_statements(client, statements)
    assert after == before <= 12


#: The main navigation each role sees, in order.
MAIN_NAV = {
    "student": ["Dashboard", "Learning", "Wallet"],
    "faculty": ["Dashboard", "Learning"],
    "compliance": ["Dashboard", "Compliance"],
    "admin": ["Dashboard", "Learning", "Money", "Compliance", "Analytics", "Admin", "Data"],
}


@pytest.mark.parametrize("role", sorted(MAIN_NAV))
def test_the_main_navigation_shows_each_role_its_sections_and_marks_where_it_is(client, login_as, role):
    from portal.security.permissions import Permission, has_permission

    login_as(role)
    page = client.get("/notifications").get_data(as_text=True)
    nav = page.split('<ul class="main-nav">', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r">([A-Za-z]+)</a>", nav) == MAIN_NAV[role]
    assert 'aria-current="page"' not in nav  # the notifications page belongs to no section
    dashboard = client.get("/dashboard").get_data(as_text=True).split('<ul class="main-nav">', 1)[1]
    assert re.search(r'<a href="/dashboard" aria-current="page">Dashboard</a>', dashboard)
    if has_permission(Role(role), Permission.LEARN) or has_permission(Role(role), Permission.TEACH):
        catalog = client.get("/learning/courses").get_data(as_text=True).split('<ul class="main-nav">', 1)[1]
        assert re.search(r'<a href="/learning/courses" aria-current="page">Learning</a>', catalog)


def test_id_url_builds_the_same_addresses_as_url_for(app):
    """The rows' addresses come from a pattern built once per endpoint: they must be exactly
    url_for's, for any ids, under any application root; anything but UUIDs goes to url_for."""
    import uuid

    from flask import render_template_string, url_for

    ids = [uuid.uuid4() for _ in range(3)]
    for root in ("", "/portal"):
        with app.test_request_context("/", base_url=f"http://localhost{root}"):
            for user_id in ids:
                for endpoint in ("admin.change_role", "admin.deactivate", "admin.end_sessions"):
                    built = render_template_string("{{ id_url(e, user_id=u) }}", e=endpoint, u=user_id)
                    assert built == url_for(endpoint, user_id=user_id)
                    assert built.startswith(f"{root}/admin/users/{user_id}")
            assert render_template_string("{{ id_url('admin.change_role', user_id='not-an-id') }}") == \
                url_for("admin.change_role", user_id="not-an-id")
