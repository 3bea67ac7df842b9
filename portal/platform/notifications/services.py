"""Notifications: any area calls ``notify``; users read and mark them."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.platform.notifications.models import Notification


def notify(user_id: uuid.UUID, kind: str, title: str, body: str | None = None, link: str | None = None) -> Notification:
    """Queue a notification for ``user_id`` in the current transaction."""
    note = Notification(user_id=user_id, kind=kind[:40], title=title[:200], body=body, link=link)
    db.session.add(note)
    return note


def mark_read(user: User, notification_id: uuid.UUID) -> Notification:
    note = db.session.get(Notification, notification_id)
    if note is None or note.user_id != user.id:
        raise NotFound("That notification does not exist.")
    if note.read_at is None:
        note.read_at = utcnow()
    return note


def mark_all_read(user: User) -> int:
    return db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    ).rowcount


def unread_count(user_id: uuid.UUID) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.read_at.is_(None)
        )
    )
