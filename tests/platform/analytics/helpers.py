"""Reading the analytics tables in tests."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.platform.analytics.models import Event


def events_of(user_id, name: str | None = None) -> list[Event]:
    query = select(Event).where(Event.user_id == user_id).order_by(Event.occurred_at)
    if name is not None:
        query = query.where(Event.name == name)
    return list(db.session.scalars(query))


def event_inserts(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("INSERT INTO EVENTS")]
