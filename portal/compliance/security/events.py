"""Recording security events (the receivers of the domain events that produce them are in
``listeners``).

``record`` adds one row to ``security_events`` inside the current transaction, so it commits or
rolls back with the work it describes. It runs in a SAVEPOINT and swallows database errors (after
logging them): a failure to record must never break the request that triggered it.

The web layer tells this module where a request comes from with ``request_context`` (address,
user agent, path), set by the app's request hook; services and receivers never read the request.
Events from anonymous requests (a failed login) are allowed by the table's insert policy.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from portal.compliance.security.models import SecurityEvent, SecurityEventKind, Severity
from portal.db import db
from portal.db.base import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None = None
    user_agent: str | None = None
    path: str | None = None


_NO_REQUEST = RequestInfo()
_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("azora_security_request",
                                                                             default=None)


def set_request_context(ip: str | None, user_agent: str | None, path: str | None) -> contextvars.Token:
    return _request.set(RequestInfo(clean_ip(ip), _clip(user_agent, 300), _clip(path, 300)))


def reset_request_context(token: contextvars.Token) -> None:
    _request.reset(token)


def current_request() -> RequestInfo:
    return _request.get() or _NO_REQUEST


def clean_ip(value: str | None) -> str | None:
    """A canonical address, or None for anything that is not one."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _clip(value: str | None, size: int) -> str | None:
    if not value:
        return None
    return value.replace("\x00", "")[:size] or None


def record(kind: SecurityEventKind, severity: Severity, summary: str, *, user_id: uuid.UUID | None = None,
           actor_id: uuid.UUID | None = None, ip: str | None = None, details: dict | None = None) -> uuid.UUID | None:
    """Add a security event; returns its id, or None when it could not be recorded.

    ``ip`` defaults to the current request's address. Written with a plain INSERT (no RETURNING),
    so an anonymous request, which may insert but not read events, can record one."""
    info = current_request()
    event_id = uuid.uuid4()
    now = utcnow()
    values = dict(
        id=event_id, created_at=now, updated_at=now, kind=kind, severity=severity,
        user_id=user_id, actor_id=actor_id, ip_address=clean_ip(ip) or info.ip,
        user_agent=info.user_agent, path=info.path, summary=summary[:500], details=details or {},
    )
    try:
        with db.session.begin_nested():
            db.session.execute(insert(SecurityEvent).values(**values))
    except SQLAlchemyError:
        log.exception("could not record security event %s", kind)
        return None
    return event_id


def session_new_ip(record_row, user, ip: str) -> None:
    """A session used from an address other than the one it was opened from (the caller makes
    sure this is recorded once per session and address)."""
    record(SecurityEventKind.SESSION_NEW_IP, Severity.MEDIUM,
           f"Session of {user.email} used from {ip}, opened from {record_row.ip_address or 'an unknown address'}",
           user_id=user.id, ip=ip,
           details={"session_id": str(record_row.id), "opened_from": record_row.ip_address or ""})


def sessions_ended(user, actor, count: int, how: str) -> None:
    """``how``: ``one``, ``others`` (by the user) or ``all`` (by an admin)."""
    by_admin = actor is not None and actor.id != user.id
    if by_admin:
        summary = f"{actor.email} ended {count} session{'s' if count != 1 else ''} of {user.email}"
    else:
        summary = f"{user.email} ended {count} of their own session{'s' if count != 1 else ''}"
    record(SecurityEventKind.SESSIONS_ENDED, Severity.MEDIUM if by_admin else Severity.INFO, summary,
           user_id=user.id, actor_id=getattr(actor, "id", None), details={"count": count, "how": how})


def personal_data_viewed(actor, table: str, *, row: str | None = None, subject_id: uuid.UUID | None = None,
                         details: dict | None = None) -> None:
    """An admin read personal rows in the data browser: one row (``row``, about ``subject_id``
    when the row says whose it is), or a page of a list (``row`` None, the filters and page in
    ``details``)."""
    what = f"row {row} of {table}" if row is not None else f"a list of {table}"
    record(SecurityEventKind.PERSONAL_DATA_VIEWED, Severity.INFO,
           f"{actor.email} viewed {what} in the data browser", user_id=subject_id, actor_id=actor.id,
           details={"table": table, **({"row": row} if row is not None else {}), **(details or {})})
