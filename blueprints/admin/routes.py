"""User administration: list, search, filter, create staff, change role, (de)activate.

Each row action is a small form that posts to its own URL: with htmx it swaps the row in
place; without JavaScript the same post redirects back to the list.
"""

from __future__ import annotations

import uuid

from flask import abort, flash, request
from flask_login import current_user

from blueprints.admin import bp
from blueprints.admin.forms import RoleForm, StaffForm
from blueprints.web import UrlLinks, attach_error, is_htmx, redirect_to, render
from portal.accounts import queries
from portal.accounts import services as accounts
from portal.accounts.models import Role, UserStatus
from portal.compliance.security import services as sessions
from portal.db import db
from portal.errors import DomainError
from portal.security.access import requires
from portal.security.permissions import Permission


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


def _filters() -> dict:
    return {
        "q": request.args.get("q", "")[:100],
        "role": request.args.get("role", ""),
        "status": request.args.get("status", ""),
    }


@bp.get("/users")
@requires(Permission.MANAGE_USERS)
def users():
    filters = _filters()
    page = queries.user_page(search=filters["q"], role=filters["role"], status=filters["status"],
                             cursor=request.args.get("after"))
    block = None
    if is_htmx():
        block = "rows" if request.args.get("after") else "results"
    return render("admin/users.html", block, page=page, filters=filters, roles=list(Role),
                  statuses=list(UserStatus))


@bp.route("/users/new", methods=["GET", "POST"])
@requires(Permission.MANAGE_USERS)
def create_staff():
    form = StaffForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_staff(current_user, form.email.data, form.full_name.data, form.role.data,
                                         UrlLinks())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"Invitation sent to {user.email}. The account becomes active when they choose a password.",
                  "success")
            return redirect_to("admin.users")
    return render("admin/new_user.html", "form", form=form, status=422 if form.is_submitted() else 200)


def _row_action(user_id: str, action):
    """Run one row action; answer with the row (htmx) or back to the list."""
    try:
        user = action(current_user, _uuid(user_id))
    except DomainError as exc:
        db.session.rollback()
        if is_htmx():
            user = accounts.get_user(_uuid(user_id))
            return render("admin/_user_row.html", user=user, roles=list(Role), error=exc.message)
        flash(exc.message, "error")
        return redirect_to("admin.users")
    db.session.commit()
    if is_htmx():
        return render("admin/_user_row.html", user=user, roles=list(Role))
    flash(f"{user.email} updated.", "success")
    return redirect_to("admin.users")


@bp.post("/users/<user_id>/role")
@requires(Permission.MANAGE_USERS)
def change_role(user_id: str):
    form = RoleForm()
    role = form.role.data if form.validate() else ""
    return _row_action(user_id, lambda actor, uid: accounts.change_role(actor, uid, role))


@bp.post("/users/<user_id>/deactivate")
@requires(Permission.MANAGE_USERS)
def deactivate(user_id: str):
    return _row_action(user_id, accounts.deactivate)


@bp.post("/users/<user_id>/reactivate")
@requires(Permission.MANAGE_USERS)
def reactivate(user_id: str):
    return _row_action(user_id, accounts.reactivate)


@bp.post("/users/<user_id>/resend-invite")
@requires(Permission.MANAGE_USERS)
def resend_invite(user_id: str):
    return _row_action(user_id, lambda actor, uid: accounts.resend_invite(actor, uid, UrlLinks()))


@bp.post("/users/<user_id>/end-sessions")
@requires(Permission.MANAGE_USERS)
def end_sessions(user_id: str):
    """End every login session of a user: they must log in again everywhere."""
    uid = _uuid(user_id)
    try:
        user, count = sessions.admin_end_all(current_user, uid)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            abort(404)
        if is_htmx():
            return render("admin/_user_row.html", user=accounts.get_user(uid), roles=list(Role), error=exc.message)
        flash(exc.message, "error")
        return redirect_to("admin.users")
    db.session.commit()
    message = f"Ended {count} session{'s' if count != 1 else ''} of {user.email}."
    if is_htmx():
        return render("admin/_user_row.html", user=user, roles=list(Role), notice=message)
    flash(message, "success")
    return redirect_to("admin.users")
