"""Reads for the notifications page."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from portal.pagination import Page, keyset_page
from portal.platform.notifications.models import Notification


def page_for(user_id: uuid.UUID, cursor: str | None, *, unread_only: bool = False, size: int = 20) -> Page:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return keyset_page(stmt, Notification.created_at, Notification.id, cursor, size)
