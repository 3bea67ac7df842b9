"""Reads for the notifications page."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from portal.pagination import Page, keyset_page
from portal.platform.notifications.models import Notification


def page_for(user_id: uuid.UUID, cursor: str | None, *, unread_only: bool = False, size: int = 20) -> Page:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return keyset_page(stmt, Notification.created_at, Notification.id, cursor, size)


#: The bell shows "99+" from here on, so no count goes further: the cost stays flat however many
#: notifications a user leaves unread.
UNREAD_COUNT_CAP = 100


def unread_count_subquery(user_id_column):
    """Scalar subquery: the user's unread notifications, counted up to ``UNREAD_COUNT_CAP``
    (through the partial index of unread rows)."""
    unread = (select(Notification.id)
              .where(Notification.user_id == user_id_column, Notification.read_at.is_(None))
              .limit(UNREAD_COUNT_CAP).correlate_except(Notification).subquery())
    return select(func.count()).select_from(unread).scalar_subquery()
