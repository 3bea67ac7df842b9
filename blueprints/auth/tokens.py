"""The account's "API tokens" page: personal access tokens for the JSON API.

``GET /auth/tokens`` lists the live tokens (name, prefix, scopes, expiry, last use) beside the
form that makes one. ``POST /auth/tokens`` makes a token and shows it once, on the page that
answers the POST (never in a redirect, a flash or a log): the portal keeps only its hash.
``POST /auth/tokens/<id>/revoke`` ends one at once. Works without JavaScript; with htmx the list
is swapped in place.
"""

from __future__ import annotations

import uuid

from flask import abort, current_app, flash, request
from flask_login import current_user

from blueprints.auth import bp
from blueprints.web import is_htmx, redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError
from portal.platform.gateway import tokens
from portal.security.access import login_required


def _page(*, status: int = 200, block: str | None = None, new=None, error: DomainError | None = None,
          message: str | None = None, form: dict | None = None):
    return render("auth/tokens.html", block, status=status, items=tokens.live_tokens(current_user.id), new=new,
                  error=error, message=message, lifetimes=tokens.LIFETIMES,
                  form=form or {"name": "", "scopes": ["read"], "days": "30"})


@bp.get("/tokens")
@login_required
def api_tokens():
    return _page()


@bp.post("/tokens")
@login_required
def create_api_token():
    form = {"name": request.form.get("name", "")[:200], "scopes": request.form.getlist("scopes"),
            "days": request.form.get("days", "")}
    try:
        made = tokens.create_token(current_user, form["name"], form["scopes"], form["days"],
                                   tokens.token_key(current_app.config["SECRET_KEY"]))
    except DomainError as exc:
        return _page(status=422, error=refusal(exc), form=form)
    db.session.commit()
    return _page(status=201, new=made)


@bp.post("/tokens/<token_id>/revoke")
@login_required
def revoke_api_token(token_id: str):
    try:
        identifier = uuid.UUID(token_id)
    except ValueError:
        abort(404)
    token = tokens.revoke_token(current_user, identifier)
    db.session.commit()
    message = f"The token “{token.name}” is revoked: it no longer works."
    if is_htmx():
        return _page(block="list", message=message)
    flash(message, "success")
    return redirect_to("auth.api_tokens")
