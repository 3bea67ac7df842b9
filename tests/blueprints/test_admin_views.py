"""User administration pages: list, search, filters, keyset pagination, invitations and the row
actions, each without JavaScript (redirect back) and with htmx (the row fragment)."""

from __future__ import annotations

import base64
import html
import math
import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from portal.accounts.models import Role, User, UserStatus
from portal.compliance.security.models import SessionValidation
from portal.db import db
from portal.platform.email.models import Email
from portal.platform.notifications.models import Notification
from tests.factories import PASSWORD

HTMX = {"HX-Request": "true"}
ROW_ID = re.compile(r'<tr id="user-([0-9a-f-]{36})">')
MORE_LINK = re.compile(r'<tr class="load-more">.*?<a href="([^"]+)"', re.S)
PAGE_SIZE = 25


def row_ids(body: str) -> list[uuid.UUID]:
    return [uuid.UUID(value) for value in ROW_ID.findall(body)]


def next_link(body: str) -> str | None:
    found = MORE_LINK.search(body)
    return html.unescape(found.group(1)) if found else None


def all_user_ids() -> set[uuid.UUID]:
    return set(db.session.scalars(select(User.id)))


def commit_setup() -> None:
    """A refused action rolls the request's transaction back; in a test that would also undo
    setup rows not yet committed (committing here only releases a savepoint)."""
    db.session.commit()


def reload(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


@pytest.fixture
def admin(login_as):
    return login_as("admin")


# ------------------------------------------------------------------ the list


def test_users_page_full_and_as_fragment(client, admin, make_user):
    other = make_user("faculty", full_name="Ada Lovelace")
    page = client.get("/admin/users")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "<html" in body and 'id="results"' in body and 'name="q"' in body
    assert {admin.id, other.id} <= set(row_ids(body))
    assert "Ada Lovelace" in body

    fragment = client.get("/admin/users?q=lovelace", headers=HTMX)
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert "<html" not in text and 'name="q"' not in text  # the results only, not the filter form
    assert text.lstrip().startswith('<div id="results">')
    assert row_ids(text) == [other.id]
    assert "HX-Request" in fragment.headers.get("Vary", "")


def test_search_matches_name_or_email_case_insensitively(client, admin, make_user):
    by_name = make_user("student", full_name="Zebedee Quuxworth")
    by_email = make_user("faculty", email="ZORBA.greek@tests.example", full_name="Someone Else")
    make_user("student", full_name="Unrelated Person")

    assert row_ids(client.get("/admin/users?q=QUUXWORTH").get_data(as_text=True)) == [by_name.id]
    assert row_ids(client.get("/admin/users?q=zorba.GREEK").get_data(as_text=True)) == [by_email.id]
    # no match: a clear empty state
    empty = client.get("/admin/users?q=nobody-has-this-name").get_data(as_text=True)
    assert row_ids(empty) == [] and "No account matches" in empty


def test_search_treats_like_wildcards_literally(client, admin, make_user):
    percent = make_user("student", full_name="Fully 100% Sure")
    underscore = make_user("student", email="snake_case@tests.example")
    make_user("student", full_name="Plain Name")
    make_user("student", full_name="Snake-Case Decoy")  # "e-c" would match an unescaped "e_c"

    ids = row_ids(client.get("/admin/users", query_string={"q": "%"}).get_data(as_text=True))
    assert ids == [percent.id]
    ids = row_ids(client.get("/admin/users", query_string={"q": "e_c"}).get_data(as_text=True))
    assert ids == [underscore.id]
    long_query = client.get("/admin/users", query_string={"q": "x" * 5000})
    assert long_query.status_code == 200


def test_filters_by_role_and_status(client, admin, make_user):
    # Named with a word of this test's own: other tests' committed accounts stay out of the lists.
    tag = f"Filtered{uuid.uuid4().hex[:8]}"
    faculty = make_user("faculty", full_name=f"{tag} Faculty")
    invited = make_user("compliance", status=UserStatus.INVITED, password=None, verified=False,
                        full_name=f"{tag} Invited")
    gone = make_user("student", status=UserStatus.DEACTIVATED, full_name=f"{tag} Gone")
    student = make_user("student", full_name=f"{tag} Student")

    def ids(**query):
        query["q"] = tag
        return set(row_ids(client.get("/admin/users", query_string=query).get_data(as_text=True)))

    assert ids(role="faculty") == {faculty.id}
    assert ids(role="compliance") == {invited.id}
    assert ids(status="invited") == {invited.id}
    assert ids(status="deactivated") == {gone.id}
    assert ids(role="student", status="active") == {student.id}
    assert ids(role="student") == {student.id, gone.id}
    # unknown values are ignored rather than failing
    assert ids(role="emperor", status="sleeping") == {faculty.id, invited.id, gone.id, student.id}
    body = client.get("/admin/users?role=faculty").get_data(as_text=True)
    assert '<option value="faculty" selected>' in body  # the filter shows as chosen


def _walk(client, first_url: str, headers: dict | None = None) -> tuple[list[uuid.UUID], int]:
    seen: list[uuid.UUID] = []
    url, pages = first_url, 0
    while url:
        response = client.get(url, headers=headers or {})
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert ("<html" in body) == (not headers)
        ids = row_ids(body)
        assert 0 < len(ids) <= PAGE_SIZE
        seen.extend(ids)
        pages += 1
        url = next_link(body)
        assert pages < 10
    return seen, pages


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_keyset_pagination_walks_every_user_once(client, admin, make_user, headers):
    for _ in range(60):
        make_user("student")
    everyone = all_user_ids()  # the 61 here and any other tests committed
    seen, pages = _walk(client, "/admin/users", headers)
    assert pages == math.ceil(len(everyone) / PAGE_SIZE)
    assert len(seen) == len(set(seen))
    assert set(seen) == everyone


def test_pagination_keeps_the_filters(client, admin, make_user):
    faculty = {make_user("faculty", full_name=f"Prof Pager {n}").id for n in range(30)}
    for _ in range(5):
        make_user("student", full_name="Pager Student")
    first = client.get("/admin/users?role=faculty&q=pager").get_data(as_text=True)
    link = next_link(first)
    assert "role=faculty" in link and "q=pager" in link
    seen, pages = _walk(client, "/admin/users?role=faculty&q=pager")
    assert pages == 2 and len(seen) == 30 and set(seen) == faculty


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "garbage",
    "%%%",
    "é",
    "A" * 500,
    _b64("2024-01-01T00:00:00+00:00|not-a-uuid"),
    _b64("not-a-date|" + str(uuid.UUID(int=0))),
    _b64("2024-01-01T00:00:00|" + str(uuid.UUID(int=0))),  # no time zone
    _b64("no separator at all"),
    base64.urlsafe_b64encode(b"\xff\xfe\x00|").decode(),
])
def test_tampered_cursor_is_ignored(client, admin, make_user, cursor):
    for _ in range(30):
        make_user("student")
    first = row_ids(client.get("/admin/users").get_data(as_text=True))
    response = client.get("/admin/users", query_string={"after": cursor})
    assert response.status_code == 200
    assert row_ids(response.get_data(as_text=True)) == first
    fragment = client.get("/admin/users", query_string={"after": cursor}, headers=HTMX)
    assert fragment.status_code == 200
    assert row_ids(fragment.get_data(as_text=True)) == first


def test_cursor_at_the_ends_of_time_is_not_an_error(client, admin):
    def page_after(stamp: str) -> list[uuid.UUID]:
        response = client.get("/admin/users", query_string={"after": _b64(f"{stamp}|{uuid.uuid4()}")})
        assert response.status_code == 200
        return row_ids(response.get_data(as_text=True))

    assert page_after("0001-01-01T00:00:00+14:00") == []  # nothing is older
    first_page = row_ids(client.get("/admin/users").get_data(as_text=True))
    assert admin.id in first_page  # the newest account
    assert page_after("9999-12-31T23:59:59-12:00") == first_page  # everything is older


@pytest.mark.parametrize("count", [5, 60])
def test_users_page_statement_budget(client, admin, make_user, statements, count):
    for _ in range(count - 1):
        make_user("student")
    client.get("/admin/users")  # warm: the session's last-seen touch, caches
    with statements() as counted:
        response = client.get("/admin/users")
    assert response.status_code == 200
    assert len(row_ids(response.get_data(as_text=True))) == min(len(all_user_ids()), PAGE_SIZE)
    assert counted.count <= 12, counted.statements


def test_users_page_statement_count_does_not_grow(client, admin, make_user, statements):
    def measure() -> int:
        with statements() as counted:
            assert client.get("/admin/users").status_code == 200
        return counted.count

    client.get("/admin/users")
    small = measure()
    for _ in range(60):
        make_user("student")
    assert measure() == small <= 12


# ------------------------------------------------------------------ inviting staff


def test_invite_form_renders(client, admin):
    response = client.get("/admin/users/new")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body
    for name in ("full_name", "email", "role"):
        assert f'name="{name}"' in body and f'for="{name}"' in body
    assert '<option value="student"' not in body  # students register themselves


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_invite_staff(client, admin, headers):
    response = client.post("/admin/users/new", headers=headers or {}, data={
        "full_name": "  Grace   Hopper ", "email": "Grace.Hopper@Tests.Example", "role": "faculty"})
    if headers:
        assert response.status_code == 204 and urlsplit(response.headers["HX-Location"]).path == "/admin/users"
    else:
        assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/admin/users"
    user = db.session.scalar(select(User).where(User.email == "grace.hopper@tests.example"))
    assert user is not None
    assert user.full_name == "Grace Hopper" and user.role == Role.FACULTY
    assert user.status == UserStatus.INVITED and user.password_hash is None
    invite = db.session.scalar(select(Email).where(Email.user_id == user.id))
    assert invite is not None and invite.template == "invite"
    listing = client.get("/admin/users").get_data(as_text=True)
    assert "Invitation sent to grace.hopper@tests.example" in listing


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"full_name": "", "email": "a@tests.example", "role": "faculty"}, "full_name", "Enter the person"),
    ({"full_name": "Ann Bee", "email": "", "role": "faculty"}, "email", "Enter an e-mail address."),
    ({"full_name": "Ann Bee", "email": "not an address", "role": "faculty"}, "email", "Enter a valid e-mail"),
    ({"full_name": "Ann Bee", "email": "a@tests.example", "role": "student"}, "role", "Not a valid choice"),
    ({"full_name": "Ann Bee", "email": "a@tests.example", "role": "emperor"}, "role", "Not a valid choice"),
    ({"full_name": "Ann <b>", "email": "a@tests.example", "role": "faculty"}, "full_name", "may not contain"),
    ({"full_name": "x" * 200, "email": "a@tests.example", "role": "faculty"}, "full_name", "120"),
], ids=["no-name", "no-email", "bad-email", "student-role", "unknown-role", "markup-in-name", "long-name"])
@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_invite_with_invalid_input_shows_the_error_next_to_its_field(client, admin, data, field, message,
                                                                      headers):
    before = db.session.scalar(select(func.count()).select_from(User))
    response = client.post("/admin/users/new", data=data, headers=headers or {})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', body)
    assert error is not None, body
    assert html.escape(message) in error.group(1)
    control = re.search(rf'<(?:input|select)[^>]*\bid="{field}"[^>]*>', body)
    assert control is not None and 'aria-invalid="true"' in control.group(0)
    assert ("<html" in body) == (not headers)
    assert db.session.scalar(select(func.count()).select_from(User)) == before


def test_invite_for_an_existing_address_is_refused_next_to_the_email(client, admin, make_user):
    existing = make_user("student")
    commit_setup()
    response = client.post("/admin/users/new", data={
        "full_name": "Copy Cat", "email": existing.email.upper(), "role": "compliance"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert re.search(r'<small id="email-error" class="field-error">[^<]*already exists', body)
    assert 'value="Copy Cat"' in body  # what was typed is kept
    assert reload(existing).role == Role.STUDENT


# ------------------------------------------------------------------ row actions


def _assert_row(response, user: User) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith(f'<tr id="user-{user.id}">')
    assert body.count("<tr") == 1
    return body


def _assert_back_to_list(client, response, flash: str) -> None:
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/admin/users"
    assert flash in client.get("/admin/users").get_data(as_text=True)


def _sessions_live(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(SessionValidation).where(
        SessionValidation.user_id == user.id, SessionValidation.revoked_at.is_(None)))


def _log_in_elsewhere(app, user: User) -> None:
    other = app.test_client()
    assert other.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code == 302


def test_change_role_without_js(app, client, admin, make_user):
    target = make_user("student")
    _log_in_elsewhere(app, target)
    assert _sessions_live(target) == 1
    response = client.post(f"/admin/users/{target.id}/role", data={"role": "faculty"})
    _assert_back_to_list(client, response, f"{target.email} updated.")
    target = reload(target)
    assert target.role == Role.FACULTY and target.faculty is not None
    assert _sessions_live(target) == 0  # logged out everywhere: the role changed under them
    note = db.session.scalar(select(Notification).where(Notification.user_id == target.id))
    assert note is not None and "Faculty" in note.title


def test_change_role_with_htmx_returns_the_row(client, admin, make_user):
    target = make_user("faculty")
    response = client.post(f"/admin/users/{target.id}/role", data={"role": "compliance"}, headers=HTMX)
    body = _assert_row(response, target)
    assert '<option value="compliance" selected>' in body
    assert reload(target).role == Role.COMPLIANCE


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_change_role_to_an_unknown_role_is_refused(client, admin, make_user, headers):
    target = make_user("student")
    commit_setup()
    response = client.post(f"/admin/users/{target.id}/role", data={"role": "emperor"}, headers=headers or {})
    if headers:
        assert "Choose a role." in _assert_row(response, target)
    else:
        _assert_back_to_list(client, response, "Choose a role.")
    assert reload(target).role == Role.STUDENT


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_deactivate_and_reactivate(app, client, admin, make_user, headers):
    target = make_user("student")
    _log_in_elsewhere(app, target)
    response = client.post(f"/admin/users/{target.id}/deactivate", headers=headers or {})
    if headers:
        body = _assert_row(response, target)
        assert "status-deactivated" in body and f"/admin/users/{target.id}/reactivate" in body
    else:
        _assert_back_to_list(client, response, f"{target.email} updated.")
    assert reload(target).status == UserStatus.DEACTIVATED
    assert _sessions_live(target) == 0

    response = client.post(f"/admin/users/{target.id}/reactivate", headers=headers or {})
    if headers:
        body = _assert_row(response, target)
        assert "status-active" in body and f"/admin/users/{target.id}/deactivate" in body
    else:
        _assert_back_to_list(client, response, f"{target.email} updated.")
    assert reload(target).status == UserStatus.ACTIVE


def test_reactivating_an_invitation_that_was_never_accepted_goes_back_to_invited(client, admin, make_user):
    target = make_user("faculty", status=UserStatus.DEACTIVATED, password=None, verified=False)
    body = _assert_row(client.post(f"/admin/users/{target.id}/reactivate", headers=HTMX), target)
    assert "status-invited" in body and "resend-invite" in body
    assert reload(target).status == UserStatus.INVITED


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_resend_invite(client, admin, make_user, headers):
    target = make_user("compliance", status=UserStatus.INVITED, password=None, verified=False)
    response = client.post(f"/admin/users/{target.id}/resend-invite", headers=headers or {})
    if headers:
        _assert_row(response, target)
    else:
        _assert_back_to_list(client, response, f"{target.email} updated.")
    sent = db.session.scalars(select(Email).where(Email.user_id == target.id)).all()
    assert [email.template for email in sent] == ["invite"]


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_resend_invite_to_an_active_account_is_refused(client, admin, make_user, headers):
    target = make_user("faculty")
    commit_setup()
    response = client.post(f"/admin/users/{target.id}/resend-invite", headers=headers or {})
    if headers:
        assert "invitation is pending" in _assert_row(response, target)
    else:
        _assert_back_to_list(client, response, "invitation is pending")
    assert db.session.scalar(select(func.count()).select_from(Email).where(Email.user_id == target.id)) == 0


@pytest.mark.parametrize(("action", "data", "message"), [
    ("deactivate", {}, "You cannot deactivate your own account."),
    ("role", {"role": "student"}, "You cannot change your own role"),
])
@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_admin_cannot_deactivate_or_demote_themselves(client, admin, action, data, message, headers):
    response = client.post(f"/admin/users/{admin.id}/{action}", data=data, headers=headers or {})
    if headers:
        assert html.escape(message) in _assert_row(response, admin)
    else:
        _assert_back_to_list(client, response, html.escape(message))
    admin = reload(admin)
    assert admin.role == Role.ADMIN and admin.status == UserStatus.ACTIVE
    assert client.get("/admin/users").status_code == 200  # still logged in, still an admin


@pytest.mark.parametrize("action", ["role", "deactivate", "reactivate", "resend-invite"])
@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_row_action_on_a_missing_account(client, admin, action, headers):
    missing = uuid.uuid4()
    response = client.post(f"/admin/users/{missing}/{action}", data={"role": "faculty"}, headers=headers or {})
    if headers:
        assert response.status_code == 404
        assert "<html" not in response.get_data(as_text=True)
    else:
        _assert_back_to_list(client, response, "That account does not exist.")
    malformed = client.post(f"/admin/users/not-a-uuid/{action}", data={"role": "faculty"}, headers=headers or {})
    assert malformed.status_code == 404


# ------------------------------------------------------------------ everyone else


@pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
def test_non_admins_are_refused_and_change_nothing(client, login_as, make_user, role):
    login_as(role)
    target = make_user("faculty", status=UserStatus.INVITED, password=None, verified=False)
    for method, url, data in [
        ("GET", "/admin/users", None),
        ("GET", "/admin/users/new", None),
        ("POST", "/admin/users/new", {"full_name": "Sneaky", "email": "sneaky@tests.example", "role": "admin"}),
        ("POST", f"/admin/users/{target.id}/role", {"role": "admin"}),
        ("POST", f"/admin/users/{target.id}/deactivate", None),
        ("POST", f"/admin/users/{target.id}/resend-invite", None),
    ]:
        response = client.open(url, method=method, data=data)
        assert response.status_code == 403, url
        assert "manage user accounts" in response.get_data(as_text=True)
    target = reload(target)
    assert target.role == Role.FACULTY and target.status == UserStatus.INVITED
    assert db.session.scalar(select(User).where(User.email == "sneaky@tests.example")) is None
    assert db.session.scalar(select(func.count()).select_from(Email).where(Email.user_id == target.id)) == 0
