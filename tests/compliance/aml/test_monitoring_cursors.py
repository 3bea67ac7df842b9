"""The monitoring sweeps' watermark (portal.compliance.aml.cursors): batches that catch up a
backlog row by row, exactly once, never past the settle delay, and one run at a time."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from portal.compliance.aml import cursors
from portal.compliance.aml.models import MonitoringCursor
from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from tests.races import committed, read


def _rows(times):
    """A fake source of rows: ``find`` over ``(id, at)`` pairs, as the sweeps' queries answer."""
    rows = sorted(((uuid.uuid4(), at) for at in times), key=lambda r: (r[1], r[0]))

    def find(start, end, limit):
        found = [r for r in rows if start <= r[1] < end]
        return found if limit is None else found[:limit]

    return rows, find


def _start(name, at):
    db.session.add(MonitoringCursor(name=name, checked_until=at))
    db.session.flush()


def _until(name):
    return db.session.scalar(select(MonitoringCursor.checked_until).where(MonitoringCursor.name == name))


def test_a_backlog_is_caught_up_in_bounded_runs_each_row_once():
    now = utcnow()
    settle = timedelta(minutes=1)
    start = now - timedelta(hours=2)
    # A burst: five rows at one instant, more than a batch; and rows up to the present.
    times = [start + timedelta(minutes=m) for m in range(0, 125, 5)] + [start + timedelta(minutes=33)] * 5
    rows, find = _rows(times)
    _start("test_backlog", start)
    judged = []
    runs = []
    for _ in range(50):
        run = cursors.sweep("test_backlog", find=find, judge=lambda ids: judged.extend(ids) or [],
                            settle=settle, batch=3, batches=2, now=now)
        runs.append(run)
        if run.checked_until == now - settle:
            break
    assert len(runs) > 3  # a bounded run never takes the whole backlog
    # A cut batch judges at most batch - 1 rows (its last instant goes to the next), the burst's
    # instant is taken whole: no run judges more than 2 + 5.
    assert max(run.judged for run in runs) <= 7 and sum(run.judged for run in runs) == len(judged)
    due = [row_id for row_id, at in rows if at < now - settle]
    assert sorted(judged) == sorted(due) and len(judged) == len(set(judged))  # each due row, once
    assert all(at >= now - settle for row_id, at in rows if row_id not in judged)  # the rest: not settled
    assert _until("test_backlog") == now - settle


def test_the_watermark_never_passes_the_settle_delay():
    now = utcnow()
    settle = timedelta(seconds=60)
    rows, find = _rows([now - timedelta(seconds=90), now - timedelta(seconds=30)])
    _start("test_settle", now - timedelta(minutes=5))
    judged = []
    run = cursors.sweep("test_settle", find=find, judge=lambda ids: judged.extend(ids) or [], settle=settle,
                        batch=100, batches=5, now=now)
    assert run.checked_until == now - settle == _until("test_settle")
    assert judged == [rows[0][0]]  # the row 30 s old is not settled yet
    later = cursors.sweep("test_settle", find=find, judge=lambda ids: judged.extend(ids) or [], settle=settle,
                          batch=100, batches=5, now=now + timedelta(seconds=31))
    assert judged == [rows[0][0], rows[1][0]] and later.checked_until == now + timedelta(seconds=31) - settle


def test_a_first_run_creates_the_cursor_a_lookback_behind():
    now = utcnow()
    rows, find = _rows([now - timedelta(hours=3)])
    run = cursors.sweep("test_first", find=find, judge=lambda ids: ids, settle=timedelta(minutes=1), batch=10,
                        batches=1, now=now)
    assert run.checked_from == now - timedelta(minutes=1) - cursors.FIRST_LOOKBACK and run.judged == 1
    assert _until("test_first") == now - timedelta(minutes=1)


@pytest.fixture
def committed_cursor(app):
    name = f"test_race_{uuid.uuid4().hex[:8]}"
    start = utcnow() - timedelta(hours=1)
    committed(app, lambda: _start(name, start))
    yield name, start
    committed(app, lambda: db.session.execute(delete(MonitoringCursor).where(MonitoringCursor.name == name)))


@pytest.mark.no_db_rollback
def test_two_runs_at_once_judge_nothing_twice(app, committed_cursor):
    name, start = committed_cursor
    now = utcnow()
    rows, find = _rows([start + timedelta(minutes=m) for m in range(0, 50, 5)])
    judged: list = []
    first_is_judging, second_done = threading.Event(), threading.Event()
    outcomes: dict = {}
    errors: list = []

    def judge_slowly(ids):
        first_is_judging.set()
        assert second_done.wait(30), "the second run waited for the first"
        judged.extend(ids)
        return ids

    def run(label, judge):
        try:
            with app.app_context(), acting_as(Actor.system("worker")):
                try:
                    outcomes[label] = cursors.sweep(name, find=find, judge=judge, settle=timedelta(minutes=1),
                                                    batch=100, batches=1, now=now)
                    db.session.commit()
                finally:
                    db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            errors.append(exc)
        finally:
            if label == "second":
                second_done.set()

    first = threading.Thread(target=run, args=("first", judge_slowly))
    first.start()
    assert first_is_judging.wait(30)
    # The first run holds the cursor, mid-judging: the second finds it locked and does nothing.
    second = threading.Thread(target=run, args=("second", lambda ids: judged.extend(ids) or ids))
    second.start()
    second.join(30)
    first.join(30)
    assert errors == []
    assert outcomes["second"] is None
    assert outcomes["first"].judged == len(rows)
    assert sorted(judged) == sorted(r[0] for r in rows)  # each once
    assert read(app, lambda: _until(name)) == now - timedelta(minutes=1)


def test_cursors_are_private_to_compliance_and_audited():
    from sqlalchemy import text

    from portal.db.audit import AuditLog
    from tests.factories import create_user
    from tests.helpers import as_user
    from tests.rls import visible

    _start("test_private", utcnow())
    row_id = db.session.scalar(select(MonitoringCursor.id).where(MonitoringCursor.name == "test_private"))
    assert db.session.scalar(select(AuditLog.id).where(AuditLog.table_name == "monitoring_cursors",
                                                       AuditLog.row_id == str(row_id))) is not None
    for role in ("student", "faculty"):
        with as_user(create_user(role)):
            assert visible(MonitoringCursor) == set()
            moved = db.session.execute(text('UPDATE monitoring_cursors SET "checkedUntil" = now()'))
            assert moved.rowcount == 0
    with as_user(create_user("compliance")):
        assert row_id in visible(MonitoringCursor)
        assert db.session.execute(text('UPDATE monitoring_cursors SET "checkedUntil" = now()')).rowcount == 0
