"""The auth pages through the test client, as a browser would use them (with and without htmx):
registration and verification, login and the session behind it, logout, passwords, invites."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from portal.accounts import services as accounts
from portal.accounts.models import User, UserStatus
from portal.db import db
from portal.platform.gateway.models import RateLimit
from tests.accounts.conftest import (
    cookie_session,
    emails_to,
    link_in,
    live_sessions,
    session_row,
    user_count,
)
from tests.conftest import unique_email
from tests.factories import PASSWORD

NEW_PASSWORD = "another long passphrase 42"
HTMX = {"HX-Request": "true"}
BOOSTED = {"HX-Request": "true", "HX-Boosted": "true"}


def text(response) -> str:
    return response.get_data(as_text=True)


def field_error(response, field_id: str) -> str | None:
    match = re.search(rf'<small id="{field_id}-error" class="field-error">(.*?)</small>', text(response), re.S)
    return html.unescape(match.group(1)).strip() if match else None


def form_errors(response) -> list[str]:
    block = re.search(r'<div class="form-errors" role="alert">(.*?)</div>', text(response), re.S)
    return [html.unescape(m).strip() for m in re.findall(r"<p>(.*?)</p>", block.group(1), re.S)] if block else []


def location(response) -> str:
    return urlsplit(response.headers["Location"]).path


def is_fragment(response) -> bool:
    return "<html" not in text(response) and "<body" not in text(response)


def commit() -> None:
    """Make rows made in the test visible to the views (a view that rolls back after an error
    would otherwise take them along)."""
    db.session.commit()


def log_in(client, email: str, password: str = PASSWORD, **kwargs):
    return client.post("/auth/login", data={"email": email, "password": password, **kwargs.pop("data", {})},
                       **kwargs)


def register_data(address: str, /, **fields) -> dict:
    data = {"full_name": "Ann Lovelace", "email": address, "password": PASSWORD, "confirm": PASSWORD}
    data.update(fields)
    return data


@pytest.fixture
def user(make_user):
    created = make_user()
    commit()
    return created


@pytest.fixture
def new_client(app):
    return app.test_client


# ---------------------------------------------------------------- pages render

ANONYMOUS_PAGES = {
    "/auth/login": "login-form",
    "/auth/register": "register-form",
    "/auth/forgot": "forgot-form",
}


class TestPagesRender:
    @pytest.mark.parametrize(("path", "form_id"), ANONYMOUS_PAGES.items())
    def test_full_page_for_anonymous(self, client, path, form_id):
        response = client.get(path)
        assert response.status_code == 200
        assert f'id="{form_id}"' in text(response) and "<html" in text(response)
        assert "HX-Request" in response.headers.get("Vary", "")

    @pytest.mark.parametrize(("path", "form_id"), ANONYMOUS_PAGES.items())
    def test_htmx_gets_only_the_form(self, client, path, form_id):
        response = client.get(path, headers=HTMX)
        assert response.status_code == 200
        assert f'id="{form_id}"' in text(response) and is_fragment(response)

    @pytest.mark.parametrize(("path", "form_id"), ANONYMOUS_PAGES.items())
    def test_boosted_navigation_gets_the_whole_page(self, client, path, form_id):
        response = client.get(path, headers=BOOSTED)
        assert response.status_code == 200
        assert f'id="{form_id}"' in text(response) and "<html" in text(response)

    def test_check_inbox_renders_without_a_registration(self, client):
        response = client.get("/auth/check-inbox")
        assert response.status_code == 200
        assert "Check your inbox" in text(response) and "your address" in text(response)

    @pytest.mark.parametrize("path", ["/auth/login", "/auth/register"])
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_logged_in_users_are_sent_to_the_dashboard(self, client, login_as, path, headers):
        login_as("student")
        response = client.get(path, headers=headers)
        assert response.status_code == 302 and location(response) == "/dashboard"

    def test_forgot_stays_reachable_when_logged_in(self, client, login_as):
        login_as("faculty")
        assert client.get("/auth/forgot").status_code == 200

    def test_change_password_needs_a_login(self, client):
        response = client.get("/auth/password")
        assert response.status_code == 302 and location(response) == "/auth/login"
        assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["/auth/password"]
        response = client.get("/auth/password", headers=HTMX)
        assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/auth/login?next=")

    def test_change_password_page(self, client, login_as):
        login_as("student")
        response = client.get("/auth/password")
        assert response.status_code == 200 and 'id="change-password-form"' in text(response)
        response = client.get("/auth/password", headers=HTMX)
        assert response.status_code == 200 and is_fragment(response)
        assert 'id="change-password-form"' in text(response)

    @pytest.mark.parametrize("path", ["/auth/verify/nonsense", "/auth/reset/nonsense", "/auth/invite/nonsense"])
    def test_bad_links_get_a_clear_400(self, client, path):
        response = client.get(path)
        assert response.status_code == 400
        assert "This link is not valid." in text(response)
        assert 'href="/auth/login"' in text(response)

    def test_logout_is_post_only(self, client, login_as):
        login_as("student")
        assert client.get("/auth/logout").status_code == 405


# ---------------------------------------------------------------- registration and verification

class TestRegistration:
    def test_register_then_check_inbox(self, client):
        email = unique_email("reg")
        before = user_count()
        response = client.post("/auth/register", data=register_data(email.upper()))
        assert response.status_code == 302 and location(response) == "/auth/check-inbox"
        assert user_count() == before + 1
        page = client.get("/auth/check-inbox")
        assert f"<strong>{email}</strong>" in text(page)
        assert [m.template for m in emails_to(email)] == ["verify_email"]

    def test_register_with_htmx_locates_to_check_inbox(self, client):
        response = client.post("/auth/register", data=register_data(unique_email()), headers=HTMX)
        assert response.status_code == 204
        assert response.headers["HX-Location"] == "/auth/check-inbox"

    def test_verify_link_from_the_outbox_end_to_end(self, client):
        email = unique_email("verify")
        client.post("/auth/register", data=register_data(email))
        # Not confirmed yet: the right password is told so, with a way to get a new link.
        response = log_in(client, email)
        assert response.status_code == 422
        assert form_errors(response) == ["Confirm your e-mail address first: open the link we e-mailed you."]
        assert 'href="/auth/check-inbox"' in text(response)

        [mail] = emails_to(email, "verify_email")
        response = client.get(link_in(mail, "verify"))
        assert response.status_code == 302 and location(response) == "/auth/login"
        assert "Your e-mail address is confirmed" in text(client.get("/auth/login"))
        assert db.session.scalar(select(User).where(User.email == email)).email_verified_at is not None

        response = log_in(client, email)
        assert response.status_code == 302 and location(response) == "/dashboard"
        assert client.get("/dashboard").status_code == 200

    def test_expired_verify_link_says_how_to_recover(self, client, app, monkeypatch):
        email = unique_email("late")
        client.post("/auth/register", data=register_data(email))
        monkeypatch.setitem(app.config, "EMAIL_VERIFY_MAX_AGE", -1)
        response = client.get(link_in(emails_to(email, "verify_email")[0], "verify"))
        assert response.status_code == 400
        assert "This link has expired. Log in to get a new one." in text(response)

    def test_existing_address_gets_the_same_page_and_no_new_account(self, client, user):
        before = user_count()
        response = client.post("/auth/register", data=register_data(user.email.upper(), full_name="Mallory"))
        assert response.status_code == 302 and location(response) == "/auth/check-inbox"
        assert user_count() == before
        assert [m.template for m in emails_to(user.email)] == ["already_registered"]

    @pytest.mark.parametrize(("fields", "field_id", "message"), [
        ({"email": ""}, "email", "Enter your e-mail address."),
        ({"email": "not-an-address"}, "email", "Enter a valid e-mail address"),
        ({"full_name": ""}, "full_name", "Enter your full name."),
        ({"full_name": "Ann <b>"}, "full_name", "The name may not contain < or >."),
        ({"password": "short", "confirm": "short"}, "password", "Use 10 to 200 characters."),
        ({"confirm": "something else entirely"}, "confirm", "The two passwords differ."),
        ({"password": "{email}", "confirm": "{email}"}, "password", "Do not use your e-mail address as your password."),
        ({"password": "ann lovelace", "confirm": "ann lovelace"}, "password", "Do not use your name as your password."),
    ])
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_errors_sit_next_to_their_field(self, client, fields, field_id, message, headers):
        email = unique_email()
        data = register_data(email, **{k: v.format(email=email) for k, v in fields.items()})
        before = user_count()
        response = client.post("/auth/register", data=data, headers=headers)
        assert response.status_code == 422
        assert message in field_error(response, field_id)
        assert 'aria-invalid="true"' in text(response)
        assert is_fragment(response) == bool(headers)
        assert user_count() == before
        assert emails_to(email) == []

    def test_resend_verification(self, client, make_user):
        pending = make_user(verified=False)
        done = make_user()
        commit()
        for address in (pending.email, done.email, unique_email("nobody")):
            response = client.post("/auth/resend-verification", data={"email": address})
            assert response.status_code == 302 and location(response) == "/auth/check-inbox"
        assert "If that address has an account waiting" in text(client.get("/auth/check-inbox"))
        assert len(emails_to(pending.email, "verify_email")) == 1
        assert emails_to(done.email) == []


# ---------------------------------------------------------------- login and sessions

class TestLogin:
    def test_login_starts_a_new_server_side_session(self, app, client, user):
        client.get("/auth/login")
        with client.session_transaction() as sess:
            # (A planted "sid" naming no live session would be dropped before the login, with
            # the whole cookie session and its CSRF secret: the form would expire.)
            sess["pending_email"] = "someone@tests.example"
        before = cookie_session(app, client)
        response = log_in(client, user.email)
        assert response.status_code == 302 and location(response) == "/dashboard"
        data = cookie_session(app, client)
        assert data["sid"] and data.get("csrf_token") != before["csrf_token"]  # a new CSRF secret too
        assert "pending_email" not in data  # the old session's contents are gone
        row = session_row(data["sid"])
        assert row.user_id == user.id and row.revoked_at is None and row.ip_address == "127.0.0.1"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Welcome back, Test" in text(client.get("/dashboard"))

    def test_every_login_gets_a_different_session_id(self, app, new_client, user):
        first, second = new_client(), new_client()
        log_in(first, user.email)
        log_in(second, user.email)
        sids = {cookie_session(app, first)["sid"], cookie_session(app, second)["sid"]}
        assert len(sids) == 2
        assert len(live_sessions(user.id)) == 2

    def test_htmx_login_redirects_with_a_full_reload(self, client, user):
        response = log_in(client, user.email, headers=HTMX)
        assert response.status_code == 204
        assert response.headers["HX-Redirect"] == "/dashboard"

    @pytest.mark.parametrize(("target", "expected"), [
        ("/notifications", "/notifications"),
        ("/notifications?show=unread", "/notifications?show=unread"),
        ("//evil.example", "/dashboard"),
        ("https://evil.example", "/dashboard"),
        ("http:/evil.example", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("\\\\evil.example", "/dashboard"),
        ("/\t/evil.example", "/dashboard"),
        ("/\n/evil.example", "/dashboard"),
        ("/dash\r\nSet-Cookie: x=1", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("evil.example", "/dashboard"),
        ("", "/dashboard"),
    ])
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_next_is_followed_only_to_local_paths(self, client, user, target, expected, headers):
        response = log_in(client, user.email, data={"next": target}, headers=headers)
        if headers:
            assert response.status_code == 204 and response.headers["HX-Redirect"] == expected
        else:
            assert response.status_code == 302 and response.headers["Location"] == expected

    def test_next_survives_the_trip_through_the_login_page(self, client, user):
        response = client.get("/notifications?show=unread")
        target = parse_qs(urlsplit(response.headers["Location"]).query)["next"][0]
        page = client.get("/auth/login", query_string={"next": target})
        assert f'name="next" type="hidden" value="{html.escape(target)}"' in text(page)
        response = log_in(client, user.email, data={"next": target})
        assert response.headers["Location"] == "/notifications?show=unread"
        assert client.get(response.headers["Location"]).status_code == 200

    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_missing_fields(self, client, headers):
        response = client.post("/auth/login", data={"email": "", "password": ""}, headers=headers)
        assert response.status_code == 422
        assert field_error(response, "email") == "Enter your e-mail address."
        assert field_error(response, "password") == "Enter your password."
        assert is_fragment(response) == bool(headers)

    def test_wrong_password_and_unknown_account_answer_alike(self, client, user):
        wrong = log_in(client, user.email, "not the password")
        unknown = log_in(client, unique_email("nobody"), PASSWORD)
        for response in (wrong, unknown):
            assert response.status_code == 422
            assert form_errors(response) == ["E-mail or password is wrong."]
            assert field_error(response, "email") is None and field_error(response, "password") is None
        assert cookie_session(client.application, client).get("sid") is None

    def test_deactivated_account_is_told_with_the_right_password_only(self, client, make_user):
        gone = make_user(status=UserStatus.DEACTIVATED)
        commit()
        assert form_errors(log_in(client, gone.email, "not the password")) == ["E-mail or password is wrong."]
        response = log_in(client, gone.email)
        assert response.status_code == 422
        assert form_errors(response) == ["This account has been deactivated. Contact an administrator."]

    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_throttled_after_repeated_failures(self, app, client, user, headers):
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            assert log_in(client, user.email, f"wrong password {i}").status_code == 422
        response = log_in(client, user.email, headers=headers)
        assert response.status_code == 429
        [message] = form_errors(response)
        assert message == "Too many failed attempts. Try again in 15 minutes, or reset your password."
        assert is_fragment(response) == bool(headers)
        assert 0 < int(response.headers["Retry-After"]) <= app.config["LOGIN_THROTTLE_WINDOW_SECONDS"] + 1
        assert "sid" not in cookie_session(app, client)
        # The attempts were committed by the views, not lost with an error.
        assert db.session.scalar(select(func.count()).select_from(RateLimit)
                                 .where(RateLimit.key == f"login:account:{user.email}")) == 1


    def test_the_way_out_of_a_throttle_the_message_offers_works(self, app, client, user):
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            log_in(client, user.email, f"wrong password {i}")
        assert log_in(client, user.email).status_code == 429
        client.post("/auth/forgot", data={"email": user.email})
        path = link_in(emails_to(user.email, "reset_password")[0], "reset")
        client.post(path, data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        response = log_in(client, user.email, NEW_PASSWORD)
        assert response.status_code == 302 and location(response) == "/dashboard"


class TestLoginUnderAttack:
    """Guessing at an account slows the guessers, not its owner (OWASP's device cookies)."""

    ATTACKER = {"REMOTE_ADDR": "198.51.100.66"}

    def test_a_login_gives_the_browser_a_device_cookie_for_the_login_page_only(self, app, client, user):
        response = log_in(client, user.email)
        assert response.status_code == 302
        header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("azora_device="))
        assert "HttpOnly" in header and "Path=/auth/login" in header and "SameSite=Lax" in header
        assert f"Max-Age={app.config['LOGIN_DEVICE_DAYS'] * 86400}" in header
        assert client.get_cookie("azora_device", path="/auth/login") is not None

    def test_an_attacker_cannot_lock_the_owner_out(self, app, client, user, new_client):
        attacker = new_client()
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] + 3):
            log_in(attacker, user.email, f"wrong password {i}", environ_base=self.ATTACKER)
        assert log_in(attacker, user.email, environ_base=self.ATTACKER).status_code == 429
        # The owner, from their own address and a browser new to the account, is let in.
        response = log_in(client, user.email, environ_base={"REMOTE_ADDR": "192.0.2.44"})
        assert response.status_code == 302 and location(response) == "/dashboard"

    def test_the_owners_browser_gets_in_while_many_addresses_are_slowed(self, app, client, user, new_client):
        assert log_in(client, user.email).status_code == 302
        client.post("/auth/logout")
        for i in range(app.config["LOGIN_SLOWDOWN_AFTER"] + 2):
            log_in(new_client(), user.email, f"wrong password {i}", environ_base={"REMOTE_ADDR": f"198.51.100.{i}"})
        stranger = log_in(new_client(), user.email, environ_base={"REMOTE_ADDR": "192.0.2.99"})
        assert stranger.status_code == 429
        assert 1 <= int(stranger.headers["Retry-After"]) <= app.config["LOGIN_MAX_DELAY_SECONDS"]
        assert "wait its turn" in text(stranger)
        # The device cookie from the earlier login: in at once, from any address.
        response = log_in(client, user.email, environ_base={"REMOTE_ADDR": "198.51.100.3"})
        assert response.status_code == 302 and location(response) == "/dashboard"


class TestLogout:
    def test_logout_ends_the_server_side_session(self, app, client, user, new_client):
        log_in(client, user.email)
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
        sid = cookie_session(app, client)["sid"]
        response = client.post("/auth/logout")
        assert response.status_code == 302 and location(response) == "/auth/login"
        row = session_row(sid)
        db.session.refresh(row)
        assert row.revoked_reason == "logout"
        assert "You are logged out." in text(client.get("/auth/login"))
        # Replaying the cookie from before the logout gets an anonymous visitor.
        replay = new_client()
        replay.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
        response = replay.get("/dashboard")
        assert response.status_code == 302 and location(response) == "/auth/login"
        assert replay.get("/auth/login").status_code == 200

    def test_htmx_logout(self, client, user):
        log_in(client, user.email)
        response = client.post("/auth/logout", headers=HTMX)
        assert response.status_code == 204 and response.headers["HX-Redirect"] == "/auth/login"
        assert client.get("/dashboard").status_code == 302

    def test_anonymous_logout_goes_to_login(self, client):
        response = client.post("/auth/logout")
        assert response.status_code == 302 and location(response) == "/auth/login"

    def test_other_sessions_of_the_user_stay(self, new_client, user):
        first, second = new_client(), new_client()
        log_in(first, user.email)
        log_in(second, user.email)
        first.post("/auth/logout")
        assert second.get("/dashboard").status_code == 200


# ---------------------------------------------------------------- passwords

def change_data(current: str = PASSWORD, new: str = NEW_PASSWORD, confirm: str | None = None) -> dict:
    return {"current_password": current, "new_password": new, "confirm": new if confirm is None else confirm}


class TestChangePassword:
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_change_ends_the_other_sessions_only(self, new_client, user, headers):
        here, elsewhere = new_client(), new_client()
        log_in(here, user.email)
        log_in(elsewhere, user.email)
        response = here.post("/auth/password", data=change_data(), headers=headers)
        if headers:
            assert response.status_code == 204 and response.headers["HX-Location"] == "/dashboard"
        else:
            assert response.status_code == 302 and location(response) == "/dashboard"
        assert "Every other session has been logged out" in text(here.get("/dashboard"))
        assert here.get("/dashboard").status_code == 200
        response = elsewhere.get("/dashboard")
        assert response.status_code == 302 and location(response) == "/auth/login"
        fresh = new_client()
        assert log_in(fresh, user.email, PASSWORD).status_code == 422
        assert log_in(fresh, user.email, NEW_PASSWORD).status_code == 302

    @pytest.mark.parametrize(("data", "field_id", "message"), [
        (change_data(current="not my password"), "current_password", "Your current password is not right."),
        (change_data(current=""), "current_password", "Enter your current password."),
        (change_data(confirm="something different"), "confirm", "The two passwords differ."),
        (change_data(new="short"), "new_password", "Use 10 to 200 characters."),
        (change_data(new=PASSWORD), "new_password", "Choose a password different from the current one."),
    ])
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_errors(self, client, user, data, field_id, message, headers):
        log_in(client, user.email)
        before = db.session.get(User, user.id).password_hash
        response = client.post("/auth/password", data=data, headers=headers)
        assert response.status_code == 422
        assert field_error(response, field_id) == message
        assert is_fragment(response) == bool(headers)
        db.session.expire_all()
        assert db.session.get(User, user.id).password_hash == before
        assert client.get("/dashboard").status_code == 200


class TestPasswordReset:
    def test_reset_by_emailed_link_end_to_end(self, new_client, user):
        logged_in = new_client()
        log_in(logged_in, user.email)
        client = new_client()
        response = client.post("/auth/forgot", data={"email": user.email.upper()})
        assert response.status_code == 200
        assert "If an account uses that address, we sent it a link" in text(response)
        [mail] = emails_to(user.email, "reset_password")
        path = link_in(mail, "reset")

        page = client.get(path)
        assert page.status_code == 200 and user.email in text(page) and 'id="new-password-form"' in text(page)
        response = client.post(path, data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert response.status_code == 302 and location(response) == "/auth/login"
        assert "Your password is changed. Log in with it now." in text(client.get("/auth/login"))

        # Every session of the account ended, the old password is gone, the new one works.
        assert logged_in.get("/dashboard").status_code == 302
        assert log_in(new_client(), user.email, PASSWORD).status_code == 422
        assert log_in(client, user.email, NEW_PASSWORD).status_code == 302
        # The link worked once.
        again = new_client().get(path)
        assert again.status_code == 400 and "already been used" in text(again)

    def test_reset_with_htmx(self, client, user):
        path = f"/auth/reset/{accounts.password_reset_token(user)}"
        response = client.post(path, data={"new_password": "short", "confirm": "short"}, headers=HTMX)
        assert response.status_code == 422 and is_fragment(response)
        assert field_error(response, "new_password") == "Use 10 to 200 characters."
        response = client.post(path, data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, headers=HTMX)
        assert response.status_code == 204 and response.headers["HX-Location"] == "/auth/login"

    def test_reset_errors_keep_the_link_usable(self, client, user):
        path = f"/auth/reset/{accounts.password_reset_token(user)}"
        response = client.post(path, data={"new_password": NEW_PASSWORD, "confirm": "different passphrase"})
        assert response.status_code == 422
        assert field_error(response, "confirm") == "The two passwords differ."
        response = client.post(path, data={"new_password": user.email, "confirm": user.email})
        assert response.status_code == 422
        assert field_error(response, "new_password") == "Do not use your e-mail address as your password."
        assert client.get(path).status_code == 200

    def test_tampered_reset_link(self, client, user):
        token = accounts.password_reset_token(user)
        # Change a character well inside the signature (the last one may carry only padding
        # bits, so changing it could leave the same signature).
        position = len(token) - 6
        tampered = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1:]
        response = client.post(f"/auth/reset/{tampered}", data={"new_password": NEW_PASSWORD,
                                                                 "confirm": NEW_PASSWORD})
        assert response.status_code == 400 and "This link is not valid." in text(response)

    def test_forgot_answers_the_same_for_unknown_addresses(self, client, user):
        known = client.post("/auth/forgot", data={"email": user.email})
        unknown = client.post("/auth/forgot", data={"email": unique_email("nobody")})
        assert known.status_code == unknown.status_code == 200
        assert text(known) == text(unknown)
        assert len(emails_to(user.email, "reset_password")) == 1

    @pytest.mark.parametrize("headers", [{}, HTMX, BOOSTED], ids=["plain", "htmx", "boosted"])
    def test_forgot_errors(self, client, headers):
        response = client.post("/auth/forgot", data={"email": ""}, headers=headers)
        assert response.status_code == 422
        assert field_error(response, "email") == "Enter your e-mail address."
        # Only an explicit htmx request gets the fragment; a boosted form swaps the whole body.
        assert is_fragment(response) == (headers == HTMX)


class TestInvitation:
    def test_accept_invite_end_to_end(self, client, make_user, links):
        admin = make_user("admin")
        staff = accounts.create_staff(admin, unique_email("prof"), "Grace Hopper", "faculty", links)
        commit()
        path = link_in(emails_to(staff.email, "invite")[0], "invite")
        page = client.get(path)
        assert page.status_code == 200 and "Welcome: choose your password" in text(page)
        response = client.post(path, data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert response.status_code == 302 and location(response) == "/auth/login"
        assert log_in(client, staff.email, NEW_PASSWORD).status_code == 302
        assert client.get("/dashboard").status_code == 200
        assert client.get(path).status_code == 400

    def test_invited_account_cannot_log_in_before_accepting(self, client, make_user, links):
        admin = make_user("admin")
        staff = accounts.create_staff(admin, unique_email("prof"), "Grace Hopper", "faculty", links)
        commit()
        assert form_errors(log_in(client, staff.email, PASSWORD)) == ["E-mail or password is wrong."]


class TestAdminActionsEndSessions:
    def test_deactivated_user_is_logged_out_and_cannot_log_in(self, new_client, make_user):
        admin = make_user("admin")
        target = make_user()
        commit()
        victim = new_client()
        log_in(victim, target.email)
        accounts.deactivate(admin, target.id)
        commit()
        assert victim.get("/dashboard").status_code == 302
        response = log_in(new_client(), target.email)
        assert form_errors(response) == ["This account has been deactivated. Contact an administrator."]


@pytest.mark.parametrize(("backend", "shown"), [("console", True), ("smtp", False)])
def test_where_to_find_emails_in_development(client, app, monkeypatch, backend, shown):
    monkeypatch.setitem(app.config, "MAIL_BACKEND", backend)
    for response in (client.get("/auth/check-inbox"),
                     client.post("/auth/forgot", data={"email": "someone@tests.example"})):
        assert response.status_code == 200
        assert ("e-mails are printed in the" in response.get_data(as_text=True)) is shown
