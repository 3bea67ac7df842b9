"""The API described once: every operation is declared with ``operation`` beside its view, and
both the Flask route and its part of the OpenAPI 3.1 document (``document``) come from that one
declaration: method, path, summary, scope, permission, parameters, request body and response
schema. The schemas (``SCHEMAS``) are JSON Schema 2020-12, which OpenAPI 3.1 uses as it is; the
same schema that documents a request body also checks it (``check_body``), so the reference and
the validation cannot drift apart. The tests check real responses against the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.security.access import public, token_required
from portal.security.permissions import Permission

VERSION = "1.0.0"
PREFIX = "/api/v1"

_MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$",
          "description": "An exact decimal amount, as text (never a binary float)."}
_UUID = {"type": "string", "format": "uuid"}
_TIME = {"type": "string", "format": "date-time"}
_CURSOR = {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last."}


def _obj(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, "additionalProperties": False}


def _list(item: str, **extra) -> dict:
    return _obj({"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}, **extra})


SCHEMAS: dict[str, dict] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": _obj({"field": {"type": "string"}, "message": {"type": "string"}})},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "Me": _obj({"id": _UUID, "email": {"type": "string"}, "full_name": {"type": "string"},
                "role": {"type": "string", "enum": ["student", "faculty", "compliance", "admin"]},
                "token": _obj({"id": _UUID, "name": {"type": "string"},
                               "scopes": {"type": "array", "items": {"type": "string", "enum": ["read", "write"]}},
                               "expires_at": _TIME})}),
    "Course": _obj({"id": _UUID, "slug": {"type": "string"}, "title": {"type": "string"},
                    "summary": {"type": ["string", "null"]}, "category": {"type": ["string", "null"]},
                    "level": {"type": ["string", "null"]}, "estimated_hours": {"type": ["integer", "null"]},
                    "price": {"oneOf": [_MONEY, {"type": "null"}]}, "price_currency": {"type": ["string", "null"]},
                    "instructor_name": {"type": ["string", "null"]}}),
    "CoursePage": _list("Course", page={"type": "integer"}, pages={"type": "integer"}, total={"type": "integer"}),
    "Enrolment": _obj({"id": _UUID, "course_id": _UUID, "slug": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "string"}, "progress_percent": {"type": "integer"}}),
    "EnrolmentList": _list("Enrolment"),
    "Grade": _obj({"id": _UUID, "assignment_id": _UUID, "assignment": {"type": "string"},
                   "course": {"type": "string"}, "course_slug": {"type": "string"}, "score": _MONEY,
                   "points": _MONEY, "released_at": _TIME}),
    "CourseTotal": _obj({"course_id": _UUID, "course": {"type": "string"}, "course_slug": {"type": "string"},
                         "percent": {"oneOf": [_MONEY, {"type": "null"}]}, "letter": {"type": ["string", "null"]},
                         "status": {"type": "string"}}),
    "Grades": _obj({"totals": {"type": "array", "items": {"$ref": "#/components/schemas/CourseTotal"}},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Grade"}},
                    "page": {"type": "integer"}, "has_next": {"type": "boolean"}}),
    "Wallet": _obj({"currency": {"type": "string"}, "name": {"type": "string"}, "balance": _MONEY,
                    "locked": _MONEY, "available": _MONEY,
                    "status": {"type": ["string", "null"], "description": "null: no wallet opened yet"}}),
    "WalletList": _list("Wallet"),
    "Transaction": _obj({"id": _UUID, "created_at": _TIME, "type": {"type": "string"}, "currency": {"type": "string"},
                         "direction": {"type": "string", "enum": ["in", "out"]}, "amount": _MONEY,
                         "counterparty": {"type": "string"}, "description": {"type": "string"},
                         "note": {"type": "string"}, "status": {"type": "string"}}),
    "TransactionPage": _list("Transaction", next_cursor=_CURSOR),
    "Notification": _obj({"id": _UUID, "kind": {"type": "string"}, "title": {"type": "string"},
                          "body": {"type": ["string", "null"]}, "link": {"type": ["string", "null"]},
                          "created_at": _TIME, "read_at": {"type": ["string", "null"], "format": "date-time"}}),
    "NotificationPage": _list("Notification", next_cursor=_CURSOR),
    "MarkedRead": _obj({"marked": {"type": "integer"}}),
    "TransferRequest": _obj({
        "recipient": {"type": "string", "maxLength": 254, "description": "The recipient's e-mail address."},
        "amount": {"type": "string", "maxLength": 40, "description": "Decimal amount as text, e.g. \"12.50\"."},
        "currency": {"type": "string", "maxLength": 8},
        "note": {"type": "string", "maxLength": 500},
    }, required=["recipient", "amount", "currency"]),
    "Transfer": _obj({"transaction_id": _UUID, "recipient_name": {"type": "string"}, "amount": _MONEY,
                      "fee": _MONEY, "total": _MONEY, "currency": {"type": "string"}, "created_at": _TIME,
                      "replayed": {"type": "boolean",
                                   "description": "True when an earlier request with this key made the transfer."}}),
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query", "path" or "header"
    schema: dict
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI form: /notifications/{note_id}/read
    endpoint: str
    summary: str
    scope: str | None  # None: public
    permission: Permission | None
    response: str
    status: int = 200
    params: tuple[Param, ...] = ()
    body: str | None = None
    group: str = "read"
    errors: tuple[int, ...] = field(default=())
    #: Other success statuses with the same body (a replayed transfer: 200 beside 201).
    also: tuple[int, ...] = ()


OPERATIONS: list[Operation] = []


def _flask_rule(path: str) -> str:
    return path.replace("{", "<").replace("}", ">")


def operation(bp, method: str, path: str, *, summary: str, response: str, scope: str | None = "read",
              permission: Permission | None = None, status: int = 200, params: tuple[Param, ...] = (),
              body: str | None = None, group: str | None = None, errors: tuple[int, ...] = (),
              also: tuple[int, ...] = ()):
    """Declare an API operation: registers the view on ``bp`` under ``/v1`` + ``path``, labels
    its access (a token with ``scope``, and ``permission`` for the user's role) and records it
    for the OpenAPI document."""

    def decorate(view):
        op = Operation(method, path, f"{bp.name}.{view.__name__}", summary, scope, permission, response, status,
                       params, body, group or scope or "docs", errors, also)
        OPERATIONS.append(op)
        view.__api_operation__ = op
        if scope is not None:
            token_required(scope, permission)(view)
        else:
            public(view)
        bp.add_url_rule("/v1" + _flask_rule(path), view_func=view, methods=[method])
        return view

    return decorate


def operation_of(view) -> Operation | None:
    return getattr(view, "__api_operation__", None)


# -- request bodies -----------------------------------------------------------------------------


_JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}


def _type_name(value) -> str:
    for name, kind in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                       ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def check_body(name: str, body) -> list[dict]:
    """The field errors of ``body`` against schema ``name`` (an object of scalar fields): not an
    object, unknown fields, missing fields, wrong types and values too long. Empty: valid."""
    schema = SCHEMAS[name]
    if not isinstance(body, dict):
        return [{"field": "", "message": f"The body must be a JSON object, not {_type_name(body)}."}]
    errors = []
    for key in body:
        if key not in schema["properties"]:
            errors.append({"field": key, "message": "Unknown field: leave it out."})
    for key in schema.get("required", []):
        if key not in body:
            errors.append({"field": key, "message": "This field is required."})
    for key, rule in schema["properties"].items():
        if key not in body:
            continue
        value, expected = body[key], rule["type"]
        kind = _JSON_TYPES[expected]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            errors.append({"field": key, "message": f"Must be a {expected}, not {_type_name(value)}."})
        elif "maxLength" in rule and len(value) > rule["maxLength"]:
            errors.append({"field": key, "message": f"At most {rule['maxLength']} characters."})
    return errors


# -- the document -------------------------------------------------------------------------------


_ERROR_TEXT = {400: "Malformed request (e.g. a body that is not JSON)", 401: "No token, or a bad, expired or revoked one",
               403: "The token lacks the scope, or the user's role the permission",
               404: "No such resource (or not the token owner's)", 409: "The Idempotency-Key was used for another request",
               413: "Body too large", 415: "The body is not application/json", 422: "Invalid input (field errors)",
               429: "Rate limited (see Retry-After)"}

_RATE_HEADERS = {
    "RateLimit-Limit": {"description": "Requests allowed in the window (of the nearest limit).",
                        "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window starts anew.", "schema": {"type": "integer"}},
}


def _problem_response(status: int) -> dict:
    headers = dict(_RATE_HEADERS)
    if status == 429:
        headers["Retry-After"] = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    return {"description": _ERROR_TEXT.get(status, "Error"), "headers": headers,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _operation_object(op: Operation) -> dict:
    media = "text/html" if op.response == "html" else "application/json"
    schema = {"type": "string"} if op.response == "html" else (
        {"type": "object"} if op.response == "document" else {"$ref": f"#/components/schemas/{op.response}"})
    out: dict = {
        "operationId": op.endpoint.split(".", 1)[1],
        "summary": op.summary,
        "responses": {str(status): {"description": "Success", "headers": dict(_RATE_HEADERS),
                                    "content": {media: {"schema": schema}}} for status in (op.status, *op.also)},
    }
    if op.scope is None:
        out["security"] = []
    else:
        out["security"] = [{"token": [op.scope]}]
        needs = f" Needs the `{op.scope}` scope"
        out["description"] = needs + (f" and a role that may {op.permission.label}." if op.permission else ".")
    if op.params:
        out["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                              "schema": p.schema, "description": p.description} for p in op.params]
    if op.body:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body}"}}}}
    codes = set(op.errors) | {429}
    if op.scope is not None:
        codes |= {401, 403}
    if op.body:
        codes |= {400, 413, 415, 422}
    for code in sorted(codes):
        out["responses"][str(code)] = _problem_response(code)
    return out


def document(server_url: str = "") -> dict:
    """The OpenAPI 3.1 document of every declared operation."""
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation_object(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Azora Portal API", "version": VERSION,
                 "description": "Your own data in Azora Portal: profile, courses, enrolments, grades, wallets, "
                                "transactions and notifications. Authenticate with a personal access token "
                                "(Account > API tokens) sent as `Authorization: Bearer <token>`. Errors are "
                                "`application/problem+json` (RFC 9457)."},
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "A personal access token (azp_...)."}},
        },
    }
