"""The OpenAPI 3.1 document against the real API: the document is valid OpenAPI, lists every
API route, and every request and response of a tour through the API (successes and refusals,
headers included) is checked against it by openapi-core."""

from __future__ import annotations

import json
import uuid

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from blueprints.api.spec import OPERATIONS, document
from portal.db import db
from portal.platform.notifications.services import notify
from tests.learning.factories.assign import make_course
from tests.money.factories import fund


@pytest.fixture
def spec(client):
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.mimetype == "application/json"
    return served.get_json()


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_the_document_lists_every_api_route_and_nothing_else(app, spec):
    routes = {(method, rule.rule.replace("<", "{").replace(">", "}"))
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert routes == documented
    assert len(documented) == len(OPERATIONS)


def test_the_document_is_built_from_the_declarations_not_repeated():
    assert document()["paths"] == document("http://elsewhere")["paths"]
    assert {op.endpoint for op in OPERATIONS} >= {"api.me", "api.send_money", "api.transactions"}


def _openapi(spec: dict) -> OpenAPI:
    """openapi-core reads problem documents as the JSON they are."""
    return OpenAPI.from_dict(spec, config=Config(extra_media_type_deserializers={"application/problem+json": json.loads}))


def _check(openapi: OpenAPI, response, sent: Request) -> None:
    request = WerkzeugOpenAPIRequest(sent)
    if response.status_code < 400:  # a refused request may break the document on purpose
        openapi.validate_request(request)
    openapi.validate_response(request, WerkzeugOpenAPIResponse(response))


def test_real_responses_match_the_document(api, spec, make_user, make_token):
    openapi = _openapi(spec)
    student, friend = make_user(role="student"), make_user(role="student")
    fund(student, "50", "USD")
    course = make_course()
    from portal.learning.education import services as education

    education.enrol(student, course.id)
    note = notify(student.id, "account", "Hello", "A body", "/dashboard")
    db.session.flush()
    note_id, friend_email = note.id, friend.email
    writer = make_token(student, ("read", "write"))
    reader = make_token(make_user(role="faculty"))

    def call(method, path, token=None, headers=None, **kwargs):
        """The request as the API got it (rebuilt, as its body is read) and the answer."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        request = Request(EnvironBuilder(path="/api/v1" + path, method=method, headers=sent,
                                         base_url="http://localhost", **kwargs).get_environ())
        return api(method, path, token, headers=headers, **kwargs), request

    key = uuid.uuid4().hex
    transfer = {"recipient": friend_email, "amount": "5", "currency": "USD", "note": "lunch"}
    tour = [
        call("GET", "/me", writer),
        call("GET", "/courses", writer, query_string={"q": course.title}),
        call("GET", "/courses", reader, query_string={"page": "2"}),
        call("GET", "/enrolments", writer),
        call("GET", "/grades", writer),
        call("GET", "/wallets", writer),
        call("GET", "/transactions", writer, query_string={"limit": "1"}),
        call("GET", "/notifications", writer, query_string={"unread": "true"}),
        call("POST", f"/notifications/{note_id}/read", writer),
        call("POST", "/notifications/read-all", writer),
        call("POST", "/transfers", writer, headers={"Idempotency-Key": key}, json=transfer),
        call("POST", "/transfers", writer, headers={"Idempotency-Key": key}, json=transfer),
        # refusals
        call("GET", "/me"),
        call("GET", "/wallets", reader),
        call("POST", "/notifications/read-all", reader),
        call("POST", f"/notifications/{uuid.uuid4()}/read", writer),
        call("POST", "/transfers", writer, headers={"Idempotency-Key": key}, json={**transfer, "amount": "6"}),
        call("POST", "/transfers", writer, headers={"Idempotency-Key": uuid.uuid4().hex}, json={"amount": 5}),
        call("POST", "/transfers", writer, headers={"Idempotency-Key": uuid.uuid4().hex}, data="{",
            content_type="application/json"),
        call("GET", "/transactions", writer, query_string={"limit": "500"}),
    ]
    statuses = [r.status_code for r, _ in tour]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 200,
                        401, 403, 403, 404, 409, 422, 400, 422]
    for response, sent in tour:
        _check(openapi, response, sent)


def test_a_response_that_breaks_the_document_is_caught(api, spec, make_user, make_token):
    """The check is not vacuous: a field the document does not describe fails it."""
    from openapi_core.validation.response.exceptions import InvalidData

    openapi = _openapi(spec)
    response = api("GET", "/grades", make_token(make_user(role="student")))
    broken = response.get_json()
    broken["surprise"] = True
    response.set_data(json.dumps(broken))
    sent = Request(EnvironBuilder(path="/api/v1/grades", base_url="http://localhost").get_environ())
    with pytest.raises(InvalidData):
        openapi.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))


def test_the_reference_page_lists_every_operation(client):
    html = client.get("/api/v1/reference").get_data(as_text=True)
    for op in OPERATIONS:
        if op.response not in ("html", "document"):
            assert f"{op.method} /api/v1{op.path}" in html
    assert "application/problem+json" in html and "Idempotency-Key" in html
