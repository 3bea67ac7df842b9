"""Security for officers and admins: the searchable log of security events, and blocks on
addresses, ranges and users.

Officers and admins (``VIEW_SECURITY``) read the events and the blocks; only admins
(``MANAGE_USERS``) add and lift blocks. Thin views over ``portal.compliance.security``: with htmx
the results, the form and each lifted row swap in place; without JavaScript every form posts and
redirects back.
"""

from __future__ import annotations

import uuid

from flask import abort, flash, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from blueprints.compliance import bp
from blueprints.web import attach_error, client_ip, is_htmx, redirect_to, render
from portal.compliance.security import blocks, queries
from portal.compliance.security.models import BlockKind, SecurityEventKind, Severity
from portal.db import db
from portal.errors import DomainError
from portal.security.access import requires
from portal.security.permissions import Permission

KIND_LABELS = {
    SecurityEventKind.LOGIN_FAILED: "Failed login",
    SecurityEventKind.LOGIN_THROTTLED: "Login throttled",
    SecurityEventKind.REQUEST_BLOCKED: "Request blocked",
    SecurityEventKind.PERMISSION_DENIED: "Permission denied",
    SecurityEventKind.SESSION_NEW_IP: "Session from a new address",
    SecurityEventKind.ACCOUNT_ACTION: "Admin action on an account",
    SecurityEventKind.BLOCK_ADDED: "Block added",
    SecurityEventKind.BLOCK_LIFTED: "Block lifted",
    SecurityEventKind.SESSIONS_ENDED: "Sessions ended",
    SecurityEventKind.PERSONAL_DATA_VIEWED: "Personal data viewed (data browser)",
}
TARGET_LABELS = {BlockKind.IP: "One address", BlockKind.NETWORK: "Address range (CIDR)", BlockKind.USER: "User"}


class BlockForm(FlaskForm):
    kind = SelectField("Block", choices=[SelectChoice(k.value, label) for k, label in TARGET_LABELS.items()])
    target = StringField("Address, range or e-mail")
    duration = SelectField("For", choices=[*(SelectChoice(value, label) for value, (label, _) in blocks.DURATIONS.items()),
                                           SelectChoice("until", "Until a date…")], default="24h")
    until = DateTimeLocalField("Until (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    reason = TextAreaField("Reason")
    confirm_own_address = BooleanField("Block it even though my own address is in it")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


# -- Events ---------------------------------------------------------------------------------------

@bp.get("/security/events")
@requires(Permission.VIEW_SECURITY)
def security_events():
    args = request.args
    filters = queries.EventFilters(
        kind=args.get("kind", "")[:40], severity=args.get("severity", "")[:20], email=args.get("email", "")[:254],
        ip=args.get("ip", "")[:60], date_from=args.get("from", "")[:10], date_to=args.get("to", "")[:10])
    page = queries.event_page(filters, args.get("after"))
    block = None
    if is_htmx():
        block = "rows" if args.get("after") else "results"
    return render("compliance/security/events.html", block, page=page, filters=filters, kinds=KIND_LABELS,
                  severities=list(Severity), status=422 if filters.errors and block != "rows" else 200)


# -- Blocks ---------------------------------------------------------------------------------------

def _blocks_page(form: BlockForm, *, status: int = 200, block: str | None = None):
    view = request.args.get("show", "active")
    view = view if view in queries.BLOCK_VIEWS else "active"
    search = request.args.get("q", "")[:254]
    page = queries.block_page(view, request.args.get("after"), search)
    return render("compliance/security/blocks.html", block, status=status, form=form, page=page, view=view,
                  search=search, own_ip=client_ip(), kind_labels=TARGET_LABELS,
                  needs_confirmation=bool(form.confirm_own_address.errors))


@bp.get("/security/blocks")
@requires(Permission.VIEW_SECURITY)
def security_blocks():
    # A link from an event ("block this address") fills the form; nothing changes on GET.
    form = BlockForm(formdata=None, kind=request.args.get("kind", "ip"), target=request.args.get("target", "")[:254])
    if form.kind.data not in BlockKind._value2member_map_:
        form.kind.data = "ip"
    block = None
    if is_htmx():
        block = "rows" if request.args.get("after") else "results"
    return _blocks_page(form, block=block)


@bp.post("/security/blocks")
@requires(Permission.MANAGE_USERS)
def add_block():
    form = BlockForm()
    if form.validate():
        try:
            added = blocks.add_block(current_user, kind=form.kind.data, target=form.target.data or "",
                                     reason=form.reason.data or "", duration=form.duration.data,
                                     until=form.until.data, actor_ip=client_ip(),
                                     confirm_own_address=form.confirm_own_address.data)
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            return _blocks_page(form, status=exc.status_code, block="form")
        db.session.commit()
        until = ("permanently" if added.expires_at is None
                 else f"until {added.expires_at:%d %b %Y %H:%M} UTC")
        flash(f"Blocked {blocks.describe_target(added)} {until}.", "success")
        return redirect_to("compliance.security_blocks")
    return _blocks_page(form, status=422, block="form")


@bp.post("/security/blocks/<block_id>/lift")
@requires(Permission.MANAGE_USERS)
def lift_block(block_id: str):
    identifier = _uuid(block_id)
    try:
        lifted = blocks.lift_block(current_user, identifier)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            abort(404)
        if is_htmx():
            row = queries.block_row(identifier)
            return render("compliance/security/_block_row.html", row=row, error=exc.message,
                          kind_labels=TARGET_LABELS, status=exc.status_code)
        flash(exc.message, "error")
        return redirect_to("compliance.security_blocks")
    db.session.commit()
    if is_htmx():
        return render("compliance/security/_block_row.html", row=queries.block_row(lifted.id),
                      kind_labels=TARGET_LABELS, lifted_now=True)
    flash(f"The block on {blocks.describe_target(lifted)} is lifted.", "success")
    return redirect_to("compliance.security_blocks")
