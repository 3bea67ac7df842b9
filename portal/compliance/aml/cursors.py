"""Gap-free monitoring sweeps: a durable watermark per sweep, moved forward with the alerts.

A periodic job that judges "the slice of time one minute back" misses every slice whose run
never happened: the job queue catches up only a few minutes of missed schedules after the
worker was down. Instead each sweep keeps, in ``monitoring_cursors``, the instant up to which
everything has been judged (``checkedUntil``). A run:

1. locks its cursor row (``SELECT ... FOR UPDATE SKIP LOCKED``): a second worker running the
   same sweep at the same moment finds it locked and does nothing, so no row is judged by two
   runs at once; the first run ever inserts the row (``ON CONFLICT DO NOTHING``: of two first
   runs, the later finds it there and does nothing);
2. judges what was created in ``[checkedUntil, now - settle)`` oldest first, in batches of at
   most ``batch`` rows and at most ``batches`` batches per run, so an outage of hours is caught
   up over a few runs, none of them one huge transaction;
3. sets ``checkedUntil`` to where it got, in the caller's transaction: the alerts and the new
   watermark commit together, or neither does.

``settle`` is the time a row may take from its ``createdAt`` to its commit (a transaction still
open): the watermark never passes ``now - settle``, so a row committed late is not skipped.

A batch that reached its size limit stops before the ``createdAt`` of its last row (the rows of
that instant go to the next batch whole), so each row is judged by exactly one batch. If a whole
batch shares one instant, that instant is judged in one go, so the watermark always moves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from portal.compliance.aml.models import MonitoringCursor
from portal.db import db
from portal.db.base import utcnow

log = logging.getLogger(__name__)

#: Where a sweep whose cursor does not exist yet starts: this far behind ``now - settle``.
#: Judging again what an earlier mechanism judged adds nothing (alerts are unique per subject).
FIRST_LOOKBACK = timedelta(days=1)
#: The smallest step of a timestamp in PostgreSQL.
_TICK = timedelta(microseconds=1)

#: ``find(start, end, limit)``: ``(id, createdAt)`` of the rows created in ``[start, end)``,
#: oldest first (ties by id), at most ``limit`` of them (``None``: all).
Find = Callable[[datetime, datetime, int | None], Sequence[tuple[uuid.UUID, datetime]]]
#: ``judge(ids)``: runs the rules on the rows; returns the alerts it raised.
Judge = Callable[[list[uuid.UUID]], Sequence]


@dataclass(frozen=True)
class SweepRun:
    """What one run did: rows looked at, alerts raised, the watermark before and after."""

    judged: int
    alerts: int
    checked_from: datetime
    checked_until: datetime


def lock(name: str, first: datetime) -> MonitoringCursor | None:
    """The cursor row of sweep ``name``, locked for this transaction; ``None`` when another run
    holds it. A sweep's first run creates it at ``first``."""
    cursor = db.session.scalar(select(MonitoringCursor).where(MonitoringCursor.name == name)
                               .with_for_update(skip_locked=True))
    if cursor is not None:
        return cursor
    now = utcnow()
    created = db.session.execute(
        insert(MonitoringCursor)
        .values(id=uuid.uuid4(), name=name, checked_until=first, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[MonitoringCursor.name])
        .returning(MonitoringCursor.id)).scalar_one_or_none()
    # The row this transaction inserted is locked by it until the commit.
    return db.session.get(MonitoringCursor, created) if created is not None else None


def sweep(name: str, *, find: Find, judge: Judge, settle: timedelta, batch: int, batches: int,
          now: datetime | None = None) -> SweepRun | None:
    """Judge what sweep ``name`` has not judged yet, up to ``now - settle``, and move its
    watermark; ``None`` when another run of the same sweep holds the cursor. The caller commits."""
    limit = (now or utcnow()) - settle
    cursor = lock(name, limit - FIRST_LOOKBACK)
    if cursor is None:
        log.info("monitoring sweep %s is being run by another worker", name)
        return None
    start = until = cursor.checked_until
    judged = alerts = 0
    for _ in range(batches):
        if until >= limit:
            break
        rows = list(find(until, limit, batch))
        if len(rows) < batch:
            reached = limit  # everything up to the limit is in this batch
        else:
            # The batch may have cut the rows of its last instant in two: leave them all to
            # the next batch, or, if the whole batch is that one instant, take it whole now.
            last = rows[-1][1]
            head = [row for row in rows if row[1] < last]
            if head:
                rows, reached = head, last
            else:
                reached = last + _TICK
                rows = list(find(until, reached, None))
        ids = [row_id for row_id, _at in rows]
        if ids:
            alerts += len(judge(ids))
            judged += len(ids)
        until = reached
    if until > cursor.checked_until:
        cursor.checked_until = until
        db.session.flush()
    if until < limit:
        log.warning("monitoring sweep %s is behind: judged up to %s, %s short of the settle limit",
                    name, until.isoformat(), limit - until)
    return SweepRun(judged, alerts, start, until)
