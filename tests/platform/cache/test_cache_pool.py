"""The cache as it runs in production: on its own pool, outside the caller's transaction, with
callers on separate connections at once. Race tests (``no_db_rollback``): what they store is
committed, and each removes its entries afterwards.

- get_or_compute computes once however many callers ask at the same moment; the others wait
  for the computation and get its value;
- a hit is one statement on the cache's pool and none on the caller's connection, whose
  transaction the cache never begins, so a value computed by a page that commits nothing stays;
- a caller waits at most ``WAIT_SECONDS`` for another's computation, then computes itself;
- a dropped or unreachable database connection of the cache never fails the caller.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.platform.cache import services as cache
from tests.conftest import count_statements

pytestmark = pytest.mark.no_db_rollback

TESTS = Actor.system("tests")
_LOOKUP_TEXT = 'SELECT value, "expiresAt" > now() AS fresh FROM cache_entries WHERE key = $1'



@pytest.fixture
def name(app):
    """A key name of the test's own; its committed entries are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    with app.app_context():
        assert cache.invalidate_prefix(cache.key_prefix(name)) is not None
        db.session.remove()


@contextmanager
def _request(app):
    """What a request of the app has: its app context, its session, an identity."""
    with app.app_context(), acting_as(TESTS):
        try:
            yield
        finally:
            db.session.rollback()
            db.session.remove()


def _at_once(app, n: int, work) -> list:
    """Run ``work()`` in ``n`` threads at the same moment, each in an app context of its own (so
    its own session, and its own connections of the cache's pool); their results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with _request(app):
                barrier.wait(timeout=30)
                results[index] = work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not errors, errors
    return results


def test_concurrent_callers_compute_once_and_the_others_get_its_value(app, name):
    key = cache.shared_key(name, "report")
    computed = []

    def slow_report():
        computed.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every other caller to find the key locked
        return {"total": "1234.50", "by": len(computed)}

    with app.app_context():
        callers = cache.POOL_SIZE + cache.POOL_OVERFLOW  # each holds a pool connection while it waits
    assert callers >= 4
    results = _at_once(app, callers, lambda: cache.get_or_compute(key, slow_report, 60))
    assert len(computed) == 1
    assert results == [{"total": "1234.50", "by": 1}] * callers


@contextmanager
def _on_the_wire():
    """The messages the cache's pool sends to the server inside the block, as libpq traces them
    (``[(type, text)]``, e.g. ``("Bind", ...)``, ``("Sync", "")``, ``("Query", '"BEGIN"')``). The
    pool is left with one connection, so the block's calls all use the traced one."""
    engine = cache._engine()
    engine.dispose()
    with tempfile.TemporaryFile("w+") as trace:
        pooled = engine.raw_connection()
        pooled.driver_connection.pgconn.trace(trace.fileno())
        pooled.close()
        sent: list[tuple[str, str]] = []
        try:
            yield sent
        finally:
            pooled = engine.raw_connection()
            pooled.driver_connection.pgconn.untrace()  # flushes the trace
            pooled.close()
            trace.seek(0)
            for line in trace:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 4 and fields[1] == "F":
                    sent.append((fields[3], "\t".join(fields[4:]).strip()))


def _statements(sent: list[tuple[str, str]]) -> list[str]:
    """One entry per statement sent: a simple query's text, or "prepared" for the Bind of one
    sent with parameters."""
    return [text_ if kind == "Query" else "prepared" for kind, text_ in sent if kind in ("Query", "Bind")]


def test_a_hit_is_one_round_trip_on_the_cache_pool_and_none_on_the_request_connection(app, name, monkeypatch):
    # No once-a-minute flush of the hit counts may fall due mid-test (a long run reaches one).
    monkeypatch.setattr(cache, "_flush_due", float("inf"))
    key, missing = cache.shared_key(name), cache.shared_key(name, "missing")
    with _request(app):
        # Fresh connections: another test may have ended the server's side of pooled ones (a
        # restart), and a cache call on such a connection quietly falls back, as it should.
        cache._engine().dispose()
        cache.set(key, ["cached"], 60)
        with _on_the_wire() as sent, count_statements(db.engine) as on_request:
            assert cache.get_or_compute(key, lambda: ["computed"], 60) == ["cached"]
        # One statement, one round trip (one Sync), no BEGIN or COMMIT.
        assert _statements(sent) == ["prepared"] and [k for k, _ in sent].count("Sync") == 1, sent
        assert _LOOKUP_TEXT in " ".join(text_ for kind, text_ in sent if kind == "Parse")
        assert on_request.count == 0
        assert not db.session().in_transaction()  # the request's transaction was not even begun

        with _on_the_wire() as sent, count_statements(db.engine) as on_request:
            assert cache.get_or_compute(missing, lambda: ["computed"], 60) == ["computed"]
        # The lookup; then in a transaction of its own: the claim, the upsert.
        assert _statements(sent) == ["prepared", '"BEGIN ISOLATION LEVEL READ COMMITTED"', "prepared", "prepared",
                                   '"COMMIT"'], sent
        assert on_request.count == 0
    with _request(app):  # the request above committed nothing, yet what it computed is stored
        assert cache.get(missing) == ["computed"]


def test_a_caller_waits_for_the_one_computing_and_takes_its_value(app, name):
    key = cache.shared_key(name)
    got: list = []
    with _request(app), cache._engine().connect() as computing:
        # Another caller computing, on a connection of the cache's pool: it holds the key's lock
        # in its transaction.
        computing.execution_options(isolation_level="READ COMMITTED")
        computing.begin()
        computing.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('cache:' || :k, 0))"),
                          {"k": key.text})

        def waiter():
            with _request(app):
                got.append(cache.get_or_compute(key, lambda: "computed by the waiter", 60))

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        _until_waiting(computing)
        computing.execute(text(
            'INSERT INTO cache_entries (key, value, "expiresAt", "staleUntil") '
            "VALUES (:k, '\"computed by the other\"', now() + interval '1 minute', now() + interval '2 minutes')"),
            {"k": key.text})
        computing.commit()  # stores and frees the lock
        thread.join(timeout=30)
    assert got == ["computed by the other"]


def _until_waiting(conn) -> None:
    """Return once a session of this database waits for an advisory lock."""
    for _ in range(200):
        waiting = conn.execute(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("no caller waited for the lock")


def test_a_caller_with_nothing_stale_waits_at_most_the_wait_then_computes(app, name, monkeypatch):
    monkeypatch.setattr(cache, "_maybe_flush", lambda: None)  # a flush would start the counts afresh
    key = cache.shared_key(name)
    with _request(app), db.engine.connect() as computing:
        computing.execute(text("SELECT pg_advisory_lock(hashtextextended('cache:' || :k, 0))"), {"k": key.text})
        try:
            before = cache._counts[name, "busy"]
            started = time.monotonic()
            assert cache.get_or_compute(key, lambda: "not waited for", 60) == "not waited for"
            waited = time.monotonic() - started
        finally:
            computing.execute(text("SELECT pg_advisory_unlock_all()"))
        assert cache.WAIT_SECONDS * 0.9 <= waited < cache.WAIT_SECONDS + 3
        assert cache._counts[name, "busy"] == before + 1
        assert cache.get(key) is None  # the other caller will store it


def test_a_dropped_cache_connection_never_fails_the_caller(app, name):
    key = cache.shared_key(name)
    with _request(app):
        cache._engine().dispose()  # so the pool has one connection, the next call's
        cache.set(key, "cached", 60)
        with cache._engine().connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        db.session.commit()
        time.sleep(0.1)
        assert cache.get_or_compute(key, lambda: "computed", 60) == "computed"
        assert cache.get_or_compute(key, lambda: "recomputed", 60) == "cached"  # a fresh connection
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_an_unreachable_cache_never_fails_the_caller(app, name, monkeypatch):
    key = cache.shared_key(name)
    with _request(app):
        url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(host="127.0.0.1", port=1, query={})
        unreachable = create_engine(url, isolation_level="AUTOCOMMIT", pool_timeout=1)
        monkeypatch.setattr(cache, "_engine", lambda: unreachable)
        db.session.execute(text("SELECT 1"))  # the request's transaction, begun
        assert cache.get_or_compute(key, lambda: {"computed": True}, 60) == {"computed": True}
        assert cache.get(key) is None
        cache.set(key, "lost", 60)
        assert cache.invalidate_prefix(cache.key_prefix(name)) is None
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        unreachable.dispose()
