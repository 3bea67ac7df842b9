"""Errors of the JSON API as ``application/problem+json`` (RFC 9457).

Every answer under ``/api`` that is not a success is a problem document: ``type`` (a stable URI
naming the kind of problem, documented on the reference page), ``title`` (the same for every
problem of a kind), ``status``, ``detail`` (this occurrence, for a person) and, for invalid
input, ``errors``: one ``{"field", "message"}`` per field. The app factory's error handlers call
``problem`` for any request under ``/api``, so a 404 or 405 of an address that has no route, a
refused NUL character and an unexpected error answer in the same form as the API's own refusals.
"""

from __future__ import annotations

import json

from werkzeug.wrappers import Response

PROBLEM_JSON = "application/problem+json"
#: Where the kinds of problem are described (the reference page).
TYPE_BASE = "/api/v1/reference#problem-"

#: status -> (kind, title)
KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
    500: ("server-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


def problem(status: int, detail: str, *, kind: str | None = None, errors: list[dict] | None = None,
            headers: dict | None = None) -> Response:
    default_kind, title = KINDS.get(status, ("error", "Error"))
    body = {"type": TYPE_BASE + (kind or default_kind), "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
