"""What every API request goes through before and after its view: the token, the rate limits,
the body, and the refusals.

1. ``authenticate`` (called by the app factory's ``identify_and_authorise`` for a view declared
   ``token_required``): the ``Authorization: Bearer`` token is looked up by its keyed hash; a
   missing, malformed, unknown, expired or revoked token, or one of a deactivated user, is 401;
   a token without the view's scope, or whose user's role lacks its permission, is 403. Session
   cookies are never read under ``/api``: the request is anonymous unless its token says who.
   The request then acts as the token's user (row-level security and the audit trail see them).
2. ``limit_rate`` (before the view): one statement counts the request against the token, its
   user and the client's address for the view's route group (``API_RATE_LIMITS*``); past any
   limit, 429 with ``Retry-After``. The counts and the token's last use are committed here, so a
   view that fails keeps them. Every answer carries ``RateLimit-Limit``, ``-Remaining`` and
   ``-Reset``. A refused token counts against its address only, so guessing tokens is limited too.
3. ``json_body``: the body must be ``application/json``, at most ``API_MAX_BODY_BYTES``, valid
   JSON, and match the operation's schema (unknown fields, wrong types, missing fields: 422 with
   one error per field).
"""

from __future__ import annotations

import json

from flask import current_app, g, request
from werkzeug.wrappers import Response

from blueprints.api import bp
from blueprints.api.problems import problem
from blueprints.api.spec import check_body, operation_of
from portal.accounts.models import User
from portal.compliance.security import blocks
from portal.db import context as db_context
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Throttled
from portal.platform.gateway import services as rate_limits
from portal.platform.gateway import tokens
from portal.security.permissions import has_permission

_REFUSED = {
    "missing": "Send a personal access token: Authorization: Bearer <token>. Make one under Account > API tokens.",
    "malformed": "The Authorization header must read 'Bearer <token>' with a token that starts with azp_.",
    "unknown": "This token is not known. Check that it was copied whole, or make a new one.",
    "expired": "This token has expired. Make a new one under Account > API tokens.",
    "revoked": "This token was revoked. Make a new one under Account > API tokens.",
    "inactive": "The account this token belongs to is not active.",
}


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, *, errors: list[dict] | None = None, kind: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.kind = status, detail, errors, kind


def _key() -> bytes:
    return tokens.token_key(current_app.config["SECRET_KEY"])


def _presented() -> tuple[str | None, str | None]:
    """(token, problem) from the Authorization header."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None, "missing"
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None, "malformed"
    return value.strip(), None


def _group() -> str:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    op = operation_of(view) if view is not None else None
    return op.group if op is not None else "read"


def _limits(group: str, token=None) -> dict[str, int]:
    config = current_app.config
    limits = {}
    if token is not None and group in config["API_RATE_LIMITS"]:
        limits[f"api:token:{token.id}:{group}"] = config["API_RATE_LIMITS"][group]
    if token is not None and group in config["API_RATE_LIMITS_PER_USER"]:
        limits[f"api:user:{token.user_id}:{group}"] = config["API_RATE_LIMITS_PER_USER"][group]
    if group in config["API_RATE_LIMITS_PER_ADDRESS"]:
        limits[f"api:ip:{request.remote_addr or '-'}:{group}"] = config["API_RATE_LIMITS_PER_ADDRESS"][group]
    return limits


def _count(token=None) -> rate_limits.Decision | None:
    limits = _limits(_group(), token)
    if not limits:
        return None
    decision = rate_limits.limit(limits, current_app.config["API_RATE_WINDOW_SECONDS"])
    g.api_rate = decision
    return decision


def _too_many(decision: rate_limits.Decision) -> Response:
    return problem(429, f"Too many requests: wait {decision.reset} seconds before the next one.",
                   headers=decision.headers())


def blocked(block) -> Response:
    """A blocked address or user: 403, with ``Retry-After`` when the block ends."""
    headers = {}
    if block.expires_at is not None:
        headers["Retry-After"] = str(max(1, int((block.expires_at - utcnow()).total_seconds())))
    return problem(403, f"Requests {'by this account' if block.user_id else 'from this address'} are blocked "
                        f"(reference {str(block.id)[:8].upper()}). Ask an administrator if this is a mistake.",
                   kind="blocked", headers=headers)


def authenticate(access) -> Response | None:
    """Identify the request by its token and check the scope and the permission; a refusal
    as a problem response, or None to go on."""
    presented, trouble = _presented()
    check = tokens.check_token(presented, _key()) if presented else tokens.Check(None, trouble)
    token = check.token
    user = db.session.get(User, token.user_id) if token is not None else None
    if token is not None and (user is None or not user.is_active):
        token, check = None, tokens.Check(None, "inactive")
    if token is None:
        decision = _count()
        db.session.commit()
        if decision is not None and not decision.allowed:
            return _too_many(decision)
        return problem(401, _REFUSED[check.problem], headers={
            "WWW-Authenticate": 'Bearer realm="api"' + ("" if check.problem == "missing" else ', error="invalid_token"')})
    db_context.set_actor(db_context.Actor.for_user(user.id, user.role.value), db.session)
    block = blocks.block_on_user(user.id)
    if block is not None:
        blocks.note_blocked_request(block, ip=request.remote_addr, user_id=user.id)
        db.session.commit()
        return blocked(block)
    g._login_user = user
    g.api_token = token
    g.api_token_id, g.api_user_id = token.id, user.id  # for the request log, after the commits
    if access.scope not in token.scopes:
        return problem(403, f"This token may not do that: it needs the '{access.scope}' scope. Make a token "
                            "with it under Account > API tokens.", kind="insufficient-scope",
                       headers={"WWW-Authenticate": f'Bearer realm="api", error="insufficient_scope", '
                                                    f'scope="{access.scope}"'})
    if access.permission is not None and not has_permission(user.role, access.permission):
        return problem(403, f"This needs permission to {access.permission.label}; your account does not have it.")
    return None


@bp.before_request
def limit_rate():
    token = g.get("api_token")
    decision = _count(token)
    if token is not None:
        tokens.touch(token)
    db.session.commit()  # the counts and the last use stay, whatever the view does next
    if decision is not None and not decision.allowed:
        return _too_many(decision)
    limit = current_app.config["API_MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        return problem(413, f"The body has {request.content_length} bytes; the API reads at most {limit}.")
    request.max_content_length = limit
    return None


@bp.after_request
def rate_headers(response: Response) -> Response:
    decision = g.get("api_rate")
    if decision is not None:
        for name, value in decision.headers().items():
            response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(ApiProblem)
def api_problem(exc: ApiProblem):
    db.session.rollback()
    return problem(exc.status, exc.detail, errors=exc.errors, kind=exc.kind)


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    """A service's refusal: its status; a rule about one field of the body is 422 with that field."""
    db.session.rollback()
    status = exc.status_code
    errors = None
    if exc.field:
        errors = [{"field": exc.field, "message": exc.message}]
        if status == 400:
            status = 422
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    return problem(status, exc.message, errors=errors, headers=headers)


def json_body(schema: str) -> dict:
    """The request's JSON object, checked against ``schema`` (``ApiProblem`` when it is not)."""
    if request.mimetype != "application/json":
        raise ApiProblem(415, "Send the body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"The body is not valid JSON: {exc}.", kind="malformed-json") from exc
    errors = check_body(schema, body)
    if errors:
        raise ApiProblem(422, "The body has invalid fields: see errors.", errors=errors)
    return body
