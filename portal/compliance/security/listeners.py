"""Receivers of the domain events that become security events: failed logins (which may also
block an address, ``blocks.after_failed_login``), refused pages and account changes.
``create_app`` connects them (``portal.app._connect_listeners``).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from portal import events
from portal.accounts.models import User
from portal.compliance.security import blocks
from portal.compliance.security.events import clean_ip, current_request, record
from portal.compliance.security.models import SecurityEventKind, Severity
from portal.db import db

log = logging.getLogger(__name__)


_LOGIN_REASONS = {
    "bad_credentials": (SecurityEventKind.LOGIN_FAILED, Severity.LOW, "Failed login for {email}"),
    "inactive": (SecurityEventKind.LOGIN_FAILED, Severity.LOW, "Login to the deactivated account {email}"),
    "throttled": (SecurityEventKind.LOGIN_THROTTLED, Severity.MEDIUM, "Login throttled for {email}"),
}


@events.login_failed.connect
def _login_failed(_sender=None, *, email: str, ip: str | None, reason: str, **_):
    kind, severity, text = _LOGIN_REASONS.get(
        reason, (SecurityEventKind.LOGIN_FAILED, Severity.LOW, "Failed login for {email}"))
    user_id = db.session.scalar(select(User.id).where(User.email == email)) if email else None
    record(kind, severity, text.format(email=email or "an unknown address"), user_id=user_id, ip=ip,
           details={"email": (email or "")[:254], "reason": reason})
    if reason in ("bad_credentials", "throttled"):
        try:
            with db.session.begin_nested():
                blocks.after_failed_login(clean_ip(ip) or current_request().ip)
        except SQLAlchemyError:  # the login's own answer (and its throttling) must not suffer
            log.exception("could not check for an automatic block")


@events.permission_denied.connect
def _permission_denied(_sender=None, *, user=None, endpoint: str | None = None, needed=None, **_):
    who = user.email if user is not None else "an anonymous visitor"
    needed_text = getattr(needed, "label", None) or str(needed or "")
    record(SecurityEventKind.PERMISSION_DENIED, Severity.LOW,
           f"{who} was refused {current_request().path or endpoint or 'a page'}",
           user_id=getattr(user, "id", None),
           details={"endpoint": endpoint or "", "needed": needed_text})


_ACCOUNT_CHANGES = {
    "created": (Severity.INFO, "created the account"),
    "role": (Severity.MEDIUM, "changed the role"),
    "deactivated": (Severity.MEDIUM, "deactivated the account"),
    "reactivated": (Severity.LOW, "reactivated the account"),
}


@events.account_changed.connect
def _account_changed(_sender=None, *, user, actor=None, change: str, **_):
    severity, verb = _ACCOUNT_CHANGES.get(change, (Severity.LOW, f"changed the account ({change})"))
    role = getattr(getattr(user, "role", None), "value", "")
    if change == "role" and role == "admin":
        severity = Severity.HIGH  # a new administrator is the change an attacker wants most
    who = actor.email if actor is not None else "The system"
    summary = f"{who} {verb} of {user.email}" + (f" (now {role})" if change in ("role", "created") else "")
    record(SecurityEventKind.ACCOUNT_ACTION, severity, summary, user_id=user.id,
           actor_id=getattr(actor, "id", None), details={"change": change, "role": role})
