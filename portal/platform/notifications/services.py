"""Notifications: any area calls ``notify``; users read and mark them."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from portal.accounts.models import User
from portal.db import db, request_cache
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.platform.notifications.models import Notification
from portal.platform.notifications.queries import unread_count_subquery


def notify(user_id: uuid.UUID, kind: str, title: str, body: str | None = None, link: str | None = None) -> Notification:
    """Queue a notification for ``user_id`` in the current transaction."""
    _forget_unread_count(user_id)
    note = Notification(user_id=user_id, kind=kind[:40], title=title[:200], body=body, link=link)
    db.session.add(note)
    return note


def mark_read(user: User, notification_id: uuid.UUID) -> Notification:
    note = db.session.get(Notification, notification_id)
    if note is None or note.user_id != user.id:
        raise NotFound("That notification does not exist.")
    if note.read_at is None:
        note.read_at = utcnow()
        _forget_unread_count(user.id)
    return note


def mark_all_read(user: User) -> int:
    _forget_unread_count(user.id)
    return db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    ).rowcount


def unread_count(user_id: uuid.UUID) -> int:
    """The user's unread notifications, up to ``queries.UNREAD_COUNT_CAP``: the count the
    request's session lookup made (``remember_unread_count``) while nothing in this transaction
    has changed it, else one query."""
    known = request_cache().get((_UNREAD, user_id))
    if known is not None:
        return known
    return db.session.scalar(select(unread_count_subquery(user_id)))


#: The request cache's key of a user's unread count (with the user's id).
_UNREAD = "unread_notifications"


def remember_unread_count(user_id: uuid.UUID, count: int) -> None:
    """Keep a count made elsewhere (the session lookup) for the rest of the transaction; any
    change to the user's notifications, a commit or a rollback forgets it."""
    request_cache()[(_UNREAD, user_id)] = count


def _forget_unread_count(user_id: uuid.UUID) -> None:
    request_cache().pop((_UNREAD, user_id), None)
