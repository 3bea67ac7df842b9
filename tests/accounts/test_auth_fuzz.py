"""Property tests: whatever a client posts into the auth forms, the answer is a page or a redirect,
never a server error, and no account appears unless the registration succeeded. A NUL anywhere
in the request is refused with a 400 that says so (every route is walked in tests/test_nul_input.py).

Every example of one test runs in that test's single rolled-back transaction, so the assertions
compare against counts taken before each example, and addresses are unique per example.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from portal.accounts import services as accounts
from portal.accounts.models import User
from portal.db import db
from tests.accounts.conftest import user_count
from tests.factories import PASSWORD, create_user

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Short runs of the characters that break things: NUL and other controls, newlines, tabs,
#: direction overrides, markup and URL punctuation.
nasty = st.text(alphabet="\x00\x01\x7f\t\r\n \u200b\u202e<>\"'%&;\\/:.@", max_size=40)
#: Anything a form field might carry: arbitrary unicode (NUL included), very long values,
#: the nasty characters, and a few hand-picked values.
values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=3000),
    nasty,
    st.sampled_from(["", " ", "\x00", "a\x00b@tests.example", "x" * 100_000, "<script>alert(1)</script>",
                     "ann@localhost", "@", "ann@@tests.example", "ann@tests.example\x00", "' OR 1=1 --",
                     "\ud7ff\ue000\U0010ffff", "ａｎｎ@ｔｅｓｔｓ.example"]),
)
#: Redirect targets: what an attacker would try after ``?next=``.
targets = st.one_of(values, st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["/", "//", "/\\", "\\", "http:", "https://", "/\t/", "/\n/", "/%2F", "/ /", "///"]),
    st.one_of(nasty, st.text(max_size=30), st.just("evil.example"))))
#: Addresses that pass the syntax check, so the service rules behind it are reached too.
addresses = st.builds(lambda local, n: f"{local}.{n}@tests.example",
                      st.from_regex(r"[a-z][a-z0-9]{0,20}", fullmatch=True), st.integers(0, 10**9))

OK_STATUSES = {200, 204, 302, 400, 422, 429}


def fresh(app):
    return app.test_client()


def assert_handled(response, also: frozenset = frozenset()) -> None:
    assert response.status_code in OK_STATUSES | also, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.status_code < 500


def carries_nul(*values: str) -> bool:
    return any("\x00" in value for value in values)


def assert_nul_refused(response) -> None:
    """A NUL anywhere in the request is refused before any view reads it (portal/app.py)."""
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:500])
    assert "contains a NUL character" in response.get_data(as_text=True)


@FUZZ
@given(email=values, password=values, nxt=targets, htmx=st.booleans())
def test_login_never_fails(app, email, password, nxt, htmx):
    response = fresh(app).post("/auth/login", data={"email": email, "password": password, "next": nxt},
                               headers={"HX-Request": "true"} if htmx else {})
    assert_handled(response)
    assert response.status_code != 302  # nothing here is a real account's password
    if carries_nul(email, password, nxt):
        assert_nul_refused(response)


@FUZZ
@given(nxt=targets, htmx=st.booleans())
def test_login_next_never_leaves_the_site(app, nxt, htmx):
    user = create_user()
    db.session.commit()
    response = fresh(app).post("/auth/login", data={"email": user.email, "password": PASSWORD, "next": nxt},
                               headers={"HX-Request": "true"} if htmx else {})
    assert_handled(response)
    if carries_nul(nxt):
        assert_nul_refused(response)
        return
    target = response.headers["HX-Redirect" if htmx else "Location"]
    parts = urlsplit(target)
    assert target.startswith("/") and not target.startswith("//")
    assert not parts.scheme and not parts.netloc
    assert target.isprintable() and "\\" not in target


@FUZZ
@given(name=values, email=st.one_of(values, addresses), password=values, confirm_same=st.booleans(),
       htmx=st.booleans())
def test_register_never_fails_and_writes_only_on_success(app, name, email, password, confirm_same, htmx):
    before = user_count()
    data = {"full_name": name, "email": email, "password": password,
            "confirm": password if confirm_same else password + "?"}
    response = fresh(app).post("/auth/register", data=data, headers={"HX-Request": "true"} if htmx else {})
    assert_handled(response)
    if carries_nul(name, email, password):
        assert_nul_refused(response)
        assert user_count() == before
        return
    if response.status_code in (302, 204):
        # Accepted: exactly one new account for that address (or none if it already existed).
        created = db.session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
        assert created is not None
        assert user_count() - before in (0, 1)
    else:
        assert response.status_code == 422
        assert user_count() == before


@FUZZ
@given(name=values, password=values)
def test_register_with_a_good_address_creates_an_account_only_for_valid_input(app, name, password):
    email = f"fuzz-{uuid.uuid4().hex[:12]}@tests.example"
    before = user_count()
    response = fresh(app).post("/auth/register", data={"full_name": name, "email": email, "password": password,
                                                        "confirm": password})
    assert_handled(response)
    valid = True
    try:
        cleaned = accounts.clean_name(name)
        accounts.check_password(password, email=email, name=cleaned)
    except accounts.InvalidInput:
        valid = False
    # The form's own checks come first: required (blank counts as missing) and lengths.
    valid = valid and len(name) <= 120 and name.strip() != "" and password.strip() != ""
    if carries_nul(name, password):
        assert_nul_refused(response)
        assert user_count() == before
    elif valid:
        assert response.status_code == 302
        assert user_count() == before + 1
    else:
        assert response.status_code == 422
        assert user_count() == before


@FUZZ
@given(email=st.one_of(values, addresses), htmx=st.booleans())
def test_forgot_and_resend_never_fail(app, email, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    client = fresh(app)
    for path in ("/auth/forgot", "/auth/resend-verification"):
        response = client.post(path, data={"email": email}, headers=headers)
        assert_handled(response)
        if carries_nul(email):
            assert_nul_refused(response)


@FUZZ
@given(token=values, password=values, confirm_same=st.booleans())
def test_reset_with_any_token_never_fails(app, token, password, confirm_same):
    data = {"new_password": password, "confirm": password if confirm_same else ""}
    client = fresh(app)
    # Slashes would leave the route; percent-encode everything so the token reaches the view.
    raw = token.encode()[:2000]  # what is sent, so the NUL check below looks at the same bytes
    path = "/auth/reset/" + "".join(f"%{b:02X}" for b in raw)
    for method in (client.get, client.post):
        response = method(path, data=data) if method is client.post else method(path)
        # A token with a slash in it is another address: 404, or the router's 308 that
        # merges a doubled slash.
        assert_handled(response, also=frozenset({404, 308}))
        assert response.status_code in (400, 404, 308)
        if b"\x00" in raw:
            assert_nul_refused(response)


@FUZZ
@given(password=values, confirm_same=st.booleans(), htmx=st.booleans())
def test_reset_with_a_valid_token_changes_only_on_success(app, password, confirm_same, htmx):
    user = create_user()
    db.session.commit()
    before = user.password_hash
    path = f"/auth/reset/{accounts.password_reset_token(user)}"
    response = fresh(app).post(path, data={"new_password": password, "confirm": password if confirm_same else ""},
                               headers={"HX-Request": "true"} if htmx else {})
    assert_handled(response)
    db.session.expire(user)
    if carries_nul(password):
        assert_nul_refused(response)
        assert user.password_hash == before
    elif response.status_code in (302, 204):
        assert user.password_hash != before
    else:
        assert response.status_code == 422
        assert user.password_hash == before


@FUZZ
@given(current=values, new=values, confirm_same=st.booleans(), htmx=st.booleans())
def test_change_password_never_fails(app, current, new, confirm_same, htmx):
    user = create_user()
    db.session.commit()
    client = fresh(app)
    assert client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
    before = user.password_hash
    response = client.post("/auth/password", data={"current_password": current, "new_password": new,
                                                    "confirm": new if confirm_same else new + "!"},
                           headers={"HX-Request": "true"} if htmx else {})
    assert_handled(response)
    # None of the generated values is the real current password.
    if carries_nul(current, new):
        assert_nul_refused(response)
    else:
        assert response.status_code == 422
    db.session.expire(user)
    assert user.password_hash == before
    assert client.get("/dashboard").status_code == 200


@FUZZ
@given(user_agent=st.one_of(
    st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=600),
    st.text(alphabet="\x00\x01\x7f\t Mozilla/5.0 é", max_size=40),
))
def test_login_with_any_user_agent(app, user_agent):
    user = create_user()
    db.session.commit()
    response = fresh(app).post("/auth/login", data={"email": user.email, "password": PASSWORD},
                               headers={"User-Agent": user_agent})
    assert_handled(response)
    assert response.status_code == 302
