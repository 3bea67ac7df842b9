"""The permission matrix: every route of the URL map, every method it accepts, requested by an
anonymous visitor and by each role, must answer as ``tests/permission_matrix.txt`` says.

The table is the specification, written from what each role should be able to do and reviewed
like one; the matrix never asks the code (``access_of``, ``has_permission``) what to expect, so a
change of who may do what fails here until the table says so too. A route the table does not
list, or a row for a route that no longer exists, fails as well.

The routes are collected from the same blueprints the app factory registers (on a bare Flask
app, so collection needs no database); ``test_matrix_covers_every_route_of_the_app`` proves the
collected set is the real app's.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from werkzeug.routing import IntegerConverter, UUIDConverter

from portal.accounts.models import Role
from portal.app import BUILTIN_PUBLIC_ENDPOINTS, _register_blueprints, check_access_declared
from portal.security.access import (
    ANONYMOUS_ONLY,
    LOGIN,
    PUBLIC,
    access_of,
    is_csrf_exempt,
    login_required,
    public,
    requires,
)
from portal.security.permissions import Permission

ANONYMOUS = "anonymous"
ROLES = [ANONYMOUS, *(role.value for role in Role)]
METHODS = ("GET", "POST")
LOGIN_PATH = "/auth/login"
DASHBOARD_PATH = "/dashboard"
TABLE_FILE = Path(__file__).with_name("permission_matrix.txt")
OUTCOMES = {"ok", "403", "login", "dashboard", "token"}


def _read_table() -> dict[str, dict[str, str]]:
    """``{endpoint: {role: outcome}}`` from the table: one row per endpoint, ``#`` comments."""
    rows = [line.split() for line in TABLE_FILE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    header, *body = rows
    assert header == ["endpoint", *ROLES], header
    table: dict[str, dict[str, str]] = {}
    for endpoint, *outcomes in body:
        assert endpoint not in table, f"{endpoint} is listed twice"
        assert len(outcomes) == len(ROLES) and set(outcomes) <= OUTCOMES, (endpoint, outcomes)
        table[endpoint] = dict(zip(ROLES, outcomes, strict=True))
    return table


TABLE = _read_table()


@dataclass(frozen=True)
class Route:
    endpoint: str
    rule: str
    method: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.rule}"


def _collect_routes() -> list[Route]:
    bare = Flask("permission_matrix")
    _register_blueprints(bare)
    routes = []
    for rule in sorted(bare.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in BUILTIN_PUBLIC_ENDPOINTS:
            continue
        for method in METHODS:
            if method in rule.methods:
                routes.append(Route(rule.endpoint, rule.rule, method))
    return routes


ROUTES = _collect_routes()
ENDPOINTS = sorted({route.endpoint for route in ROUTES})


def _dummy_value(name: str, converter) -> str | int:
    if isinstance(converter, IntegerConverter):
        return 1
    if isinstance(converter, UUIDConverter) or name == "id" or name.endswith("_id"):
        return str(uuid.uuid4())
    return "not-a-real-token"


def concrete_url(app, route: Route) -> str:
    """The route's URL with every variable part filled with a harmless dummy value."""
    (rule,) = [r for r in app.url_map.iter_rules() if r.endpoint == route.endpoint and r.rule == route.rule]
    values = {name: _dummy_value(name, rule._converters[name]) for name in rule.arguments}
    return app.url_map.bind("localhost").build(route.endpoint, values, method=route.method)


def _location_path(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def _assert_sent_to_login(response, url: str, method: str) -> None:
    assert response.status_code == 302, response.status_code
    assert _location_path(response) == LOGIN_PATH
    if method == "GET":
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert urlsplit(query["next"][0]).path == url


# ------------------------------------------------------------------ the table and the declarations


def test_matrix_covers_every_route_of_the_app(app):
    real = {(rule.endpoint, rule.rule) for rule in app.url_map.iter_rules()
            if rule.endpoint not in BUILTIN_PUBLIC_ENDPOINTS}
    collected = {(route.endpoint, route.rule) for route in ROUTES}
    assert real == collected
    assert len(collected) >= 20  # the matrix is not silently empty


def test_the_table_lists_every_route_and_nothing_else():
    missing = sorted(set(ENDPOINTS) - set(TABLE))
    gone = sorted(set(TABLE) - set(ENDPOINTS))
    assert not missing, f"routes the permission table does not list: {missing}"
    assert not gone, f"rows of the permission table for routes that do not exist: {gone}"


def test_every_route_serves_someone():
    """A JSON API route serves the holders of tokens: the API's own table says which roles
    (tests/blueprints/api/test_api_permissions.py), and it must list the route."""
    from tests.blueprints.api.test_api_permissions import TABLE as API_TABLE

    assert not [endpoint for endpoint, outcomes in TABLE.items()
                if "ok" not in outcomes.values() and "token" not in outcomes.values()]
    token_routes = {endpoint for endpoint, outcomes in TABLE.items() if "token" in outcomes.values()}
    assert token_routes == set(API_TABLE)
    assert all(any(read == "ok" or write == "ok" for read, write in API_TABLE[e].values()) for e in token_routes)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_route_declares_its_access(app, endpoint):
    access = access_of(app.view_functions[endpoint])
    assert access is not None, f"{endpoint} declares no access"
    assert access.kind in {"public", "anonymous", "login", "permission", "token"}
    if access.kind == "permission":
        assert isinstance(access.permission, Permission)
    if access.kind == "token":
        assert access.scope in {"read", "write"}


def test_a_route_without_declared_access_stops_the_app():
    dummy = Flask("undeclared")

    @dummy.get("/declared")
    @public
    def declared():
        return "ok"

    check_access_declared(dummy)  # every route declares: no complaint

    @dummy.get("/forgotten")
    def forgotten_view():
        return "oops"

    @dummy.post("/also-forgotten")
    def another_forgotten_view():
        return "oops"

    with pytest.raises(RuntimeError) as caught:
        check_access_declared(dummy)
    listed = str(caught.value).rsplit(": ", 1)[1].split(", ")
    assert listed == ["another_forgotten_view", "forgotten_view"]  # the declared one is not named


def test_declaration_decorators_label_without_wrapping():
    def view():
        return "x"

    assert access_of(view) is None
    assert login_required(view) is view and access_of(view) is LOGIN
    guarded = requires(Permission.MANAGE_USERS)(lambda: "x")
    assert access_of(guarded).permission is Permission.MANAGE_USERS
    assert "manage user accounts" in access_of(guarded).describe()
    assert PUBLIC.kind == "public" and ANONYMOUS_ONLY.kind == "anonymous"


# ------------------------------------------------------------------ the matrix


@pytest.fixture
def as_role(client, login_as):
    """A fresh client, logged in as a new user of ``role`` unless the role is anonymous."""

    def become(role: str):
        if role != ANONYMOUS:
            login_as(role)
        return client

    return become


MATRIX = [pytest.param(route, role, id=f"{route.label} [{role}]") for route in ROUTES for role in ROLES]


@pytest.mark.parametrize(("route", "role"), MATRIX)
def test_route_answers_as_the_table_says(app, as_role, route: Route, role: str):
    expected = TABLE.get(route.endpoint, {}).get(role)
    assert expected is not None, f"{route.endpoint} is not in {TABLE_FILE.name}"
    url = concrete_url(app, route)
    client = as_role(role)
    response = client.open(url, method=route.method)
    status = response.status_code
    body = response.get_data(as_text=True)
    assert status < 500, body[:1000]

    if expected == "ok":
        assert status not in (401, 403), body[:500]
        if route.method == "GET":  # a POST may end at the login page (logging out does)
            assert _location_path(response) != LOGIN_PATH

    elif expected == "token":  # the JSON API: a session is no credential there
        assert status == 401, status
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == 401

    elif expected == "dashboard":
        assert status == 302 and _location_path(response) == DASHBOARD_PATH, status

    elif expected == "login":
        _assert_sent_to_login(response, url, route.method)
        fragment = client.open(url, method=route.method, headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert urlsplit(fragment.headers["HX-Redirect"]).path == LOGIN_PATH

    else:  # 403: the full error page says what is needed; htmx gets the fragment
        assert status == 403, status
        assert "<html" in body
        access = access_of(app.view_functions[route.endpoint])
        if access.permission is not None:
            assert html.escape(access.permission.label) in body
        fragment = client.open(url, method=route.method, headers={"HX-Request": "true"})
        assert fragment.status_code == 403
        assert "<html" not in fragment.get_data(as_text=True)


# ------------------------------------------------------------------ CSRF on every state-changing route


def _csrf_case(route: Route) -> tuple[Route, str]:
    """The route with a visitor who may use it: a logged-in role if one may, else anonymous."""
    outcomes = TABLE.get(route.endpoint, {})
    allowed = [role for role in ROLES[1:] if outcomes.get(role) == "ok"]
    return route, (allowed[0] if allowed else ANONYMOUS)


def _exempt_endpoints() -> set[str]:
    bare = Flask("csrf_exemptions")
    _register_blueprints(bare)
    return {endpoint for endpoint, view in bare.view_functions.items() if is_csrf_exempt(view)}


EXEMPT = _exempt_endpoints()


def _signed_by_sender(route: Route) -> bool:
    """A route a machine calls with its own signature (payment webhooks), exempt from the token."""
    return route.endpoint in EXEMPT


CSRF_CASES = [pytest.param(*_csrf_case(route), id=route.label) for route in ROUTES
              if route.method == "POST" and not _signed_by_sender(route)]


def test_only_signed_webhooks_and_token_routes_are_exempt_from_the_csrf_token():
    """A webhook checks its sender's signature; a JSON API route reads no cookie, only a bearer
    token, which a browser never sends on its own."""
    exempt = sorted(route.endpoint for route in ROUTES if route.method == "POST" and _signed_by_sender(route))
    assert [e for e in exempt if not e.startswith("api.")] == [
        "wallet.card_network_authorize", "wallet.card_network_capture", "wallet.card_network_refund",
        "wallet.card_network_reverse", "wallet.payment_webhook"]
    assert [e for e in exempt if e.startswith("api.")] == [
        "api.notification_read", "api.notification_read_all", "api.send_money"]
    bare = Flask("token_routes")
    _register_blueprints(bare)
    assert all(access_of(bare.view_functions[e]).kind == "token" for e in exempt if e.startswith("api."))


@pytest.mark.parametrize(("route", "role"), CSRF_CASES)
def test_a_post_without_the_csrf_token_is_refused(app, as_role, route: Route, role: str):
    """Every state-changing route, asked by someone who may use it but without the token, gets
    the "form expired" page."""
    client = as_role(role)
    response = client.open(concrete_url(app, route), method=route.method, csrf=False)
    assert response.status_code == 400, response.status_code
    assert "The form expired" in response.get_data(as_text=True)


# ------------------------------------------------------------------ learning paths on a real course


PATH_ROUTES = [("GET", "/learning/courses/{slug}/path"), ("POST", "/learning/courses/{slug}/path/regenerate")]


@pytest.mark.parametrize(("method", "rule"), PATH_ROUTES)
@pytest.mark.parametrize(("role", "enrolled", "expected"), [
    ("student", True, {200, 302}),  # the page, or back to it after regenerating
    ("student", False, {403}),
    ("faculty", False, {403}),
    ("compliance", False, {403}),
    ("admin", False, {403}),
    (ANONYMOUS, False, {302}),
])
def test_learning_path_routes_on_a_real_course(client, login_as, method, rule, role, enrolled, expected):
    """The matrix above fills the slug with a dummy (a 404 for everyone who may ask); here the
    course exists: only its enrolled students reach their path."""
    from portal.db import db
    from portal.learning.education import services as education
    from tests.learning.factories.assign import make_course

    course = make_course()
    user = login_as(role) if role != ANONYMOUS else None
    if enrolled:
        education.enrol(user, course.id)
    db.session.commit()  # an error page rolls its transaction back: keep the course
    response = client.open(rule.format(slug=course.slug), method=method)
    assert response.status_code in expected, response.status_code
    if role == ANONYMOUS:
        assert _location_path(response) == LOGIN_PATH



# ------------------------------------------------------------------ the tutor on a real course


#: Each tutor route, and what it answers on a real course: to the student whose conversation
#: and question it is (enrolled), to a student not enrolled, to a faculty member on the
#: course's staff and to one not on it, to a compliance officer and to an admin.
TUTOR_ROUTES = [
    # (method, rule, student, not enrolled, staff faculty, other faculty, compliance, admin)
    ("GET", "/learning/courses/{slug}/tutor", 200, 403, 403, 403, 403, 403),
    ("GET", "/learning/courses/{slug}/tutor/sessions/{session}", 200, 403, 403, 403, 403, 403),
    ("GET", "/learning/courses/{slug}/tutor/panel", 302, 403, 403, 403, 403, 403),
    ("POST", "/learning/courses/{slug}/tutor/ask", 302, 403, 403, 403, 403, 403),
    ("POST", "/learning/courses/{slug}/tutor/sessions/{session}/end", 302, 403, 403, 403, 403, 403),
    ("POST", "/learning/tutor/questions/{question}/mark", 302, 404, 403, 403, 403, 403),
    ("GET", "/learning/tutor/history", 200, 200, 403, 403, 403, 403),
    ("GET", "/learning/courses/{slug}/tutor/report", 403, 403, 200, 404, 403, 200),
]
TUTOR_CASES = ["student", "not enrolled", "staff faculty", "other faculty", "compliance", "admin"]


@pytest.mark.parametrize("route", TUTOR_ROUTES, ids=[f"{r[0]} {r[1]}" for r in TUTOR_ROUTES])
@pytest.mark.parametrize("case", [*TUTOR_CASES, ANONYMOUS])
def test_tutor_routes_on_a_real_course(client, login_as, route, case):
    """The matrix above fills the slug and ids with dummies (a 404 for everyone who may ask);
    here the course, the conversation and the question exist and are one student's."""
    from portal.db import db
    from portal.learning.lms.models import CourseManagement, ManagementRole
    from tests.learning.factories.assign import enroll
    from tests.learning.tutoring.factories.chat import record_question, student_in, tutor_course

    course = tutor_course().course
    owner = student_in(course)
    asked = record_question(owner, course, "What does chlorophyll do?")
    roles = {"student": "student", "not enrolled": "student", "staff faculty": "faculty",
             "other faculty": "faculty", "compliance": "compliance", "admin": "admin"}
    user = login_as(roles[case]) if case != ANONYMOUS else None
    if case == "student":  # the owner's rows, reached as the owner
        enroll(course, user)
        asked = record_question(user, course, "What does chlorophyll do?")
    if case == "staff faculty":
        db.session.add(CourseManagement(course_id=course.id, user_id=user.id, role=ManagementRole.ASSISTANT))
    db.session.commit()  # an error page rolls its transaction back: keep the rows
    method, rule, *expected = route
    url = rule.format(slug=course.slug, session=asked.session_id, question=asked.id)
    data = {"question": "How do roots drink?", "helpful": "1"} if method == "POST" else None
    response = client.open(url, method=method, data=data)
    if case == ANONYMOUS:
        assert response.status_code == 302 and _location_path(response) == LOGIN_PATH
    else:
        assert response.status_code == expected[TUTOR_CASES.index(case)], response.get_data(as_text=True)[:300]
