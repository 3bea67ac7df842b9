"""NUL characters (``\\0``) in any part of a request a view reads: the path, the query, form
fields and their names, uploaded file names and JSON. PostgreSQL's text types refuse them, so
one reaching a query used to end in a 500. Now the first request hook refuses them with a 400
and a clear message, for every route of the app, anonymous or logged in as any role.

The walk covers the real app's URL map: path variables filled with a NUL-bearing value where
they are text, a GET with NUL in the query string, a POST with NUL in form values and in a field
name; half of them as htmx requests, which get the inline error fragment.
"""

from __future__ import annotations

import io
import uuid

import pytest
from werkzeug.routing import IntegerConverter, UUIDConverter

from portal.accounts.models import Role
from tests.factories import PASSWORD

ROLES = ["anonymous", *(role.value for role in Role)]
NUL_VALUES = ["\x00", "a\x00b", "x" * 50 + "\x00", "\x00<script>alert(1)</script>", "é\x00'; --"]
#: Names the forms and filters of the portal use, so a NUL reaches the field a view reads.
FIELD_NAMES = ["q", "search", "code", "email", "password", "full_name", "name", "text", "body", "comment",
               "answer", "reason", "status", "kind", "role", "currency", "amount", "note", "title", "slug",
               "next", "after", "page", "sort", "ip", "question", "message", "description", "value"]
HTMX = {"HX-Request": "true"}
MESSAGE = "contains a NUL character"


def _value(converter, nul: str):
    if isinstance(converter, IntegerConverter):
        return 1
    if isinstance(converter, UUIDConverter):
        return str(uuid.uuid4())
    return nul


def _routes(app):
    return sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


def _build(app, rule, method: str, nul: str | None) -> str:
    """The rule's URL with text variables set to ``nul`` (or a harmless value when None)."""
    values = {name: _value(conv, nul) if nul is not None else _value(conv, "not-a-real-value")
              for name, conv in rule._converters.items()}
    return app.url_map.bind("localhost").build(rule.endpoint, values, method=method)


def _client_for(app, role: str):
    from tests.factories import create_user

    client = app.test_client()
    if role != "anonymous":
        user = create_user(role)
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def _assert_refused(response, what: str, htmx: bool) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 400, (what, response.status_code, body[:300])
    assert MESSAGE in body, (what, body[:300])
    if "/api/" in what:  # the JSON API answers a problem document, htmx or not
        assert response.mimetype == "application/problem+json", what
        return
    assert ("<html" not in body) == htmx, what


@pytest.mark.parametrize("role", ROLES)
def test_every_route_refuses_nul_with_a_clear_400(app, role):
    client = _client_for(app, role)
    sent = 0
    for i, rule in enumerate(_routes(app)):
        nul = NUL_VALUES[i % len(NUL_VALUES)]
        htmx = i % 2 == 1
        headers = HTMX if htmx else {}
        methods = [m for m in ("GET", "POST") if m in rule.methods]
        text_vars = [name for name, conv in rule._converters.items()
                     if not isinstance(conv, (IntegerConverter, UUIDConverter))]
        for method in methods:
            if text_vars:
                url = _build(app, rule, method, nul)
                _assert_refused(client.open(url, method=method, headers=headers), f"{method} {url}", htmx)
                sent += 1
            url = _build(app, rule, method, None)
            if method == "GET":
                query = {name: nul for name in FIELD_NAMES[i % 7::7]}
                response = client.get(url, query_string=query, headers=headers)
                _assert_refused(response, f"GET {url} ?{query}", htmx)
                # A NUL in a parameter's name is refused as well.
                _assert_refused(client.get(url, query_string={f"k{nul}": "1"}, headers=headers), url, htmx)
                sent += 2
            else:
                data = {name: nul for name in FIELD_NAMES}
                _assert_refused(client.post(url, data=data, headers=headers), f"POST {url}", htmx)
                _assert_refused(client.post(url, data={f"f{nul}": "1"}, headers=headers), f"POST {url}", htmx)
                sent += 2
    # Every route was tried: the walk is not silently empty.
    assert sent > 2 * len(_routes(app))
    if role != "anonymous":
        # Still logged in: the refusals neither failed nor ended the session.
        assert client.get("/dashboard").status_code == 200


def test_the_places_the_review_found_answer_400(app, client, login_as):
    """Each place the outside review saw a 500, with the NUL in the way it was sent there."""
    anonymous = app.test_client()
    for url in ("/learning/certificates/verify?code=AZ%00", "/learning/certificates/a%00b",
                "/learning/certificates/a%00b.pdf", "/learning/courses?q=%00", "/learning/courses/a%00b"):
        _assert_refused(anonymous.get(url), url, htmx=False)
    login_as("admin")
    for url in ("/learning/courses?q=x%00y", "/learning/courses/x%00/path", "/learning/courses/x%00/tutor",
                "/admin/users?q=%00", "/wallet/admin/users?email=a%00"):
        _assert_refused(client.get(url), url, htmx=False)
        _assert_refused(client.get(url, headers=HTMX), url, htmx=True)


def test_a_nul_in_an_uploaded_file_name_or_json_is_refused(client, login_as):
    login_as("student")
    data = {"document": (io.BytesIO(b"%PDF-1.4\n"), "passport\x00.pdf"), "kind": "passport"}
    response = client.post("/wallet/verification/level/2", data=data, content_type="multipart/form-data")
    _assert_refused(response, "upload", htmx=False)
    response = client.post("/wallet/send", json={"to": "someone", "note": ["fine", {"k": "x\x00"}]})
    _assert_refused(response, "json", htmx=False)


def test_requests_without_nul_are_untouched(app, client, login_as):
    """The check refuses only the NUL: the same addresses with ordinary text are served."""
    login_as("student")
    assert client.get("/learning/courses?q=%2500%20%5C0").status_code == 200
    assert client.get("/learning/certificates/verify?code=AZ-1234").status_code in (200, 404)
