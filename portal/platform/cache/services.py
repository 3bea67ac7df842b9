"""The shared cache: keys, get / set / delete, get-or-compute with a stampede lock,
invalidation after commit, and hit and miss counts.

**Keys.** Every key is made by ``shared_key(name, *parts)`` (what any visitor may see: a
catalog page) or ``private_key(user_id, name, *parts)`` (what one user may see: their wallet
totals). The functions below take nothing else, so each call site says which it is, and a
private entry is found only with its user's id. The text is ``<name>:shared[:parts]`` or
``<name>:<user uuid>[:parts]``; a name holds no ``:``, so no shared key can spell a private
one. ``key_prefix(name[, user_id])`` is the prefix of a name's entries (or of one user's).
Private data that is not keyed by its user is not cached at all.

**Values** are plain JSON (jsonb). Decimal amounts are stored exactly, as positional strings
(``Decimal("12.30")`` as ``"12.30"``, ``Decimal("1E-8")`` as ``"0.00000001"``), never as
floats; UUIDs and dates as ISO strings. A call returns what the JSON holds, on a miss as on a
hit (a computed value goes through the same encoding), so the first call never hands back a
Decimal where the next hands back a string: read amounts back with ``Decimal(value["total"])``.

**Where the statements run.** The app runs one transaction per request, and a GET never
commits. The cache keeps out of it: its statements run on a small pool of its own
(autocommit, ``app.cache=on`` for row-level security, short lock and statement timeouts,
migration 0010), so

- a value computed by a GET is stored (in the request's transaction it would be rolled back);
- a cache failure (the table missing, a timeout, a lost connection) never aborts the request's
  transaction: it is logged and counted, and the value is computed as if there were no cache;
- no lock of the cache lives as long as the request.

The price is a second pooled connection for the length of one statement (a hit) or of one
computation (a miss). A computation reads through the request's session, so it sees the
request's own uncommitted changes: cache what a page reads, and after a change in the same
transaction let ``invalidate_on_commit`` keep the cache out of the way (below). When the
request's session is bound to one connection, as the test suite binds each test's, the cache
uses that connection instead, each call in a savepoint, so a test's entries roll back with it
and statement counts include them.

**get_or_compute.** A hit is one SELECT by primary key, expiry checked in it: one round trip,
handed to the driver directly (through SQLAlchemy's execution a hit took about twice as long,
measured on the embedded server). On a miss the caller opens a transaction on the cache's
connection and takes ``pg_try_advisory_xact_lock`` on a hash of the key (the same statement
reads the entry again, in case another caller has just stored it), computes, upserts and
commits, which frees the lock. So the lock is held for the computation and its write only,
never for the request, and a crash or a lost connection frees it too. A caller that does not
get the lock returns the stale value if one is kept (expired entries stay ``grace`` longer,
served while one caller recomputes); with none, it waits on the lock for at most
``WAIT_SECONDS``, then reads what the other stored, or computes itself if the wait runs out.
An advisory lock rather than a claim written into the row (a "refreshing until" lease):
waiters block on the lock instead of polling, the table needs no extra column, and no lease
can outlive a crashed process. The cost is that a caller holds a connection of the cache's
pool while it computes; when none is free within a second, it computes without the cache.

**Invalidation.** ``delete(key)`` and ``invalidate_prefix(prefix)`` act at once, one statement
each. Receivers of domain events call ``invalidate_on_commit(*keys_or_prefixes)``. It drops the
entries when the transaction that changed the data commits: dropping them earlier would let
another request cache the old data again before the commit, and after a rollback nothing
changed. Until then the same transaction reads around those entries and writes none of them,
so it neither shows the old value nor stores one computed from changes not yet committed. A
request that read before the commit may still store its value just after; the TTL bounds that.

**Metrics.** Lookups are counted in process memory, per key name and outcome: ``hit``,
``stale`` (served while another caller recomputes), ``miss`` (not found, or expired; computed
and stored by ``get_or_compute``), ``bypass`` (read around an invalidation not yet committed),
``busy`` (the wait for another caller ran out) and ``error`` (the cache failed; computed
without it). So no write per read. Each process writes its counts to ``metrics`` at most once a
minute: the first cache call after the minute does it through the cache's pool, as
``system:cache``, one row per key name (name ``cache.lookups``, value the number of lookups,
the counts in its labels). The clean-up job flushes the worker's counts.

Not a Flask-Caching backend: its interface takes bare string keys (no user in them) and any
picklable value, and has no stale value or lock to offer; wrapping this module in it would hide
the private keys and add a layer to every hit.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from flask import current_app
from sqlalchemy import create_engine, event, insert, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from portal.platform.analytics.models import Metric
from portal.platform.cache.models import MAX_KEY_LENGTH

log = logging.getLogger(__name__)

#: How long an expired entry is kept and served while one caller recomputes, unless told.
DEFAULT_GRACE = timedelta(minutes=5)
#: The longest a caller with no stale value waits for another one's computation.
WAIT_SECONDS = 2.0
#: A process writes its counts to ``metrics`` at most this often.
FLUSH_SECONDS = 60.0
#: The metric the counts are written under, and who writes them.
METRIC = "cache.lookups"
FLUSHER = Actor.system("cache")
#: The cache's own pool, per process: connections for hits (one statement) and computations; a
#: process serves a few threads at once (README, "Serving"), so a few connections are enough.
POOL_SIZE, POOL_OVERFLOW, POOL_TIMEOUT_SECONDS = 2, 2, 1.0
#: Bounds on any one cache statement, and on a connection left in a transaction (a computation).
STATEMENT_TIMEOUT_MS, IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000, 60_000

#: What a cache statement may raise when the cache fails (SQLAlchemy's errors, and the
#: driver's on the hot path): caught, logged, counted; the caller computes.
_FAILURES = (SQLAlchemyError, psycopg.Error)

_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,59}\Z")
_SHARED = "shared"


# ---------------------------------------------------------------- keys

@dataclass(frozen=True, slots=True)
class Key:
    """A cache key: ``text`` is what the table stores, ``name`` what the metrics count by.
    Made by ``shared_key`` or ``private_key``."""

    text: str
    name: str


def shared_key(name: str, *parts: object) -> Key:
    """The key of a value that any visitor may see, whoever computes it."""
    return _key(name, _SHARED, parts)


def private_key(user_id: uuid.UUID | str, name: str, *parts: object) -> Key:
    """The key of a value that only ``user_id`` may see: it carries their id, so no other user's
    lookup can find it."""
    if user_id is None or user_id == "":
        raise ValueError("a private entry needs its user's id; a visitor who is not logged in has none")
    return _key(name, str(uuid.UUID(str(user_id))), parts)


def key_prefix(name: str, user_id: uuid.UUID | str | None = None) -> str:
    """The prefix of every entry of ``name`` (shared and private), or only of ``user_id``'s."""
    _check_name(name)
    return f"{name}:" if user_id is None else f"{name}:{uuid.UUID(str(user_id))}"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a cache key name is lowercase letters, digits, '.', '_' or '-': {name!r}")


def _key(name: str, scope: str, parts: tuple[object, ...]) -> Key:
    _check_name(name)
    text_ = ":".join((name, scope, *map(str, parts)))
    if len(text_) > MAX_KEY_LENGTH:  # long parts (a search query) become their digest
        digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
        text_ = f"{name}:{scope}:#{digest}"
    return Key(text_, name)


def _require_key(key: object) -> None:
    if type(key) is not Key:
        raise TypeError("cache keys are made by shared_key(...) or private_key(user_id, ...), "
                        f"not given as {type(key).__name__}")


# ---------------------------------------------------------------- values

def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"the cache stores finite amounts only, not {value}")
        return format(value, "f")  # positional: "0.00000001", never "1E-8"; the scale kept
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"the cache stores plain JSON (and Decimal, UUID, dates as strings), not {type(value).__name__}")


def _encode(value: object) -> str:
    return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))


def _as_stored(value: object) -> Any:
    """``value`` as the cache would return it."""
    return json.loads(_encode(value))


def _interval(seconds: float | timedelta, what: str, *, positive: bool) -> timedelta:
    interval = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
    if interval < timedelta(0) or (positive and interval == timedelta(0)):
        raise ValueError(f"the {what} must be {'positive' if positive else 'zero or more'}: {seconds!r}")
    return interval


# ---------------------------------------------------------------- where statements run

_LOOKUP = 'SELECT value, "expiresAt" > now() AS fresh FROM cache_entries WHERE key = %(key)s AND "staleUntil" > now()'
#: Try the key's lock and read the entry again, in one statement.
_CLAIM = ("SELECT pg_try_advisory_xact_lock(hashtextextended('cache:' || %(key)s, 0)) AS claimed, "
          "e.value, e.key IS NOT NULL AS found FROM (SELECT 1) AS one "
          'LEFT JOIN cache_entries AS e ON e.key = %(key)s AND e."expiresAt" > now()')
#: Wait for the key's lock, at most ``timeout`` (set first: the subquery's row comes first).
_WAIT = ("SELECT pg_advisory_xact_lock(hashtextextended('cache:' || %(key)s, 0)) "
         "FROM (SELECT set_config('lock_timeout', %(timeout)s, true)) AS bounded")
_FRESH = 'SELECT value FROM cache_entries WHERE key = %(key)s AND "expiresAt" > now()'
_UPSERT = ('INSERT INTO cache_entries (key, value, "expiresAt", "staleUntil", "createdAt", "updatedAt") '
           "VALUES (%(key)s, %(value)s::jsonb, now() + %(ttl)s, now() + %(ttl)s + %(grace)s, now(), now()) "
           'ON CONFLICT (key) DO UPDATE SET value = excluded.value, "expiresAt" = excluded."expiresAt", '
           '"staleUntil" = excluded."staleUntil", "updatedAt" = excluded."updatedAt"')
_DELETE = "DELETE FROM cache_entries WHERE key = ANY(%(keys)s)"
#: ``starts_with`` rather than LIKE: no wildcards to escape, and it is leakproof, so under
#: row-level security the planner may still turn it into a range of the key's index.
_DELETE_PREFIX = "DELETE FROM cache_entries WHERE starts_with(key, %(prefix)s)"
_CLEAR_EXPIRED = text('DELETE FROM cache_entries WHERE "staleUntil" <= now()')


class _Pool:
    """The cache's engine in one app and process, made on first use (so after a fork)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.pid: int | None = None
        self.lock = threading.Lock()


def _engine() -> Engine:
    pool = current_app.extensions.get("portal.cache")
    if pool is None:
        pool = current_app.extensions.setdefault("portal.cache", _Pool())
    if pool.pid != os.getpid():
        with pool.lock:
            if pool.pid != os.getpid():
                pool.engine = _make_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
                pool.pid = os.getpid()
    return pool.engine


def _make_engine(database_url: str) -> Engine:
    """Autocommit (a hit is one statement, no BEGIN or COMMIT), the setting the row-level
    security policy of ``cache_entries`` admits, and timeouts that keep a slow cache from
    holding a page: a lock waited for ``WAIT_SECONDS`` at most. No ``pool_pre_ping`` (it would
    double a hit): a connection the server dropped fails its statement, which the caller
    survives by computing, and the pool replaces it."""
    url = make_url(database_url)
    given = url.query.get("options")
    options = " ".join(filter(None, [
        given if isinstance(given, str) else None, "-c app.cache=on",
        f"-c lock_timeout={int(WAIT_SECONDS * 1000)}", f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"]))
    return create_engine(url.difference_update_query(["options"]), isolation_level="AUTOCOMMIT",
                         pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=POOL_TIMEOUT_SECONDS,
                         connect_args={"options": options})


@contextlib.contextmanager
def _connection(session: Session, *, transaction: bool = False,
                after_commit: bool = False) -> Iterator[Connection]:
    """A connection for the cache's statements: one of its own pool (in a transaction when
    asked), or, when ``session`` is bound to one connection, that one in a savepoint."""
    bind = session.get_bind()
    if isinstance(bind, Connection):
        # A savepoint of the connection, not of the session: the session's would run its
        # after_begin hooks (the identity statement) on every call. In its after_commit hook the
        # session cannot run statements; otherwise it begins first, so the savepoint is inside.
        conn = bind if after_commit else session.connection()
        with conn.begin_nested():
            yield conn
        return
    with _engine().connect() as conn:
        if not transaction:
            yield conn
            return
        conn.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            yield conn


def _lookup(session: Session, key: Key):
    """``(value, fresh)`` of ``key`` while it is within its grace, else None: one statement.
    On the cache's pool it goes to the driver directly, one round trip with no BEGIN or COMMIT
    (autocommit), and about a third of the Python that SQLAlchemy's execution spends on it. A
    connection that broke under it is taken out of the pool here, as SQLAlchemy would."""
    bind = session.get_bind()
    if isinstance(bind, Connection):
        with _connection(session) as conn:
            return conn.exec_driver_sql(_LOOKUP, {"key": key.text}).first()
    pooled = _engine().raw_connection()
    try:
        return pooled.driver_connection.execute(_LOOKUP, {"key": key.text}).fetchone()
    except psycopg.Error:
        if pooled.driver_connection.broken:
            pooled.invalidate()
        raise
    finally:
        pooled.close()


def _lock_not_available(exc: Exception) -> bool:
    # 55P03: lock_timeout ran out; 40P01: two computations waited for each other's keys.
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("55P03", "40P01")


def _failed(key_or_what: Key | str, exc: Exception) -> None:
    what = key_or_what.name if isinstance(key_or_what, Key) else key_or_what
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    log.warning("cache unavailable (%s), going on without it: %s", what, reason[0] if reason else type(exc).__name__)


# ---------------------------------------------------------------- reading and writing

def get(key: Key, default: Any = None) -> Any:
    """The fresh value of ``key``, or ``default`` (missing, expired, or the cache failing)."""
    _require_key(key)
    session = db.session()
    if _invalidated(session, key):
        _count(key, "bypass")
        return default
    try:
        row = _lookup(session, key)
    except _FAILURES as exc:
        _failed(key, exc)
        _count(key, "error")
        return default
    fresh = row is not None and row[1]
    _count(key, "hit" if fresh else "miss")
    _maybe_flush()
    return row[0] if fresh else default


def set(key: Key, value: Any, ttl: float | timedelta, *, grace: float | timedelta = DEFAULT_GRACE) -> None:
    """Store ``value`` (plain JSON) under ``key``: fresh for ``ttl`` (seconds or a timedelta),
    then kept ``grace`` longer for ``get_or_compute`` to serve while it recomputes. A cache
    that fails stores nothing and says so in the log."""
    _require_key(key)
    encoded = _encode(value)
    ttl, grace = _interval(ttl, "ttl", positive=True), _interval(grace, "grace", positive=False)
    session = db.session()
    if _invalidated(session, key):
        return
    try:
        with _connection(session) as conn:
            conn.exec_driver_sql(_UPSERT, {"key": key.text, "value": encoded, "ttl": ttl, "grace": grace})
    except _FAILURES as exc:
        _failed(key, exc)


def get_or_compute(key: Key, compute: Callable[[], Any], ttl: float | timedelta, *,
                   grace: float | timedelta = DEFAULT_GRACE) -> Any:
    """The value of ``key``: cached, or ``compute()``'d (once, whoever else asks at the same time)
    and stored for ``ttl``. While one caller recomputes an expired entry, the others get the
    stale value for up to ``grace`` after its expiry, or wait up to ``WAIT_SECONDS`` for the
    new one. Errors of ``compute`` reach the caller; errors of the cache never do."""
    _require_key(key)
    ttl, grace = _interval(ttl, "ttl", positive=True), _interval(grace, "grace", positive=False)
    session = db.session()
    if _invalidated(session, key):
        _count(key, "bypass")
        return _as_stored(compute())
    try:
        row = _lookup(session, key)
    except _FAILURES as exc:
        _failed(key, exc)
        _count(key, "error")
        return _as_stored(compute())
    if row is not None and row[1]:
        _count(key, "hit")
        _maybe_flush()
        return row[0]
    value = _refresh(session, key, compute, ttl, grace, stale=row)
    _maybe_flush()
    return value


_UNSET = object()


def _refresh(session: Session, key: Key, compute: Callable[[], Any], ttl: timedelta, grace: timedelta,
             stale) -> Any:
    """The miss of ``get_or_compute``: claim the key's lock and compute, or serve ``stale``, or
    wait for whoever holds the lock."""
    computing = False
    value = _UNSET
    try:
        with _connection(session, transaction=True) as conn:
            claim = conn.exec_driver_sql(_CLAIM, {"key": key.text}).one()
            if claim.found:  # stored by another caller since our lookup
                _count(key, "hit")
                return claim.value
            if not claim.claimed:
                if stale is not None:
                    _count(key, "stale")
                    return stale[0]
                # Until the other commits, or lock_timeout ends the wait.
                conn.exec_driver_sql(_WAIT, {"key": key.text, "timeout": f"{int(WAIT_SECONDS * 1000)}ms"})
                fresh = conn.exec_driver_sql(_FRESH, {"key": key.text}).first()
                if fresh is not None:
                    _count(key, "hit")
                    return fresh.value
            computing = True
            value = compute()
            computing = False
            encoded = _encode(value)
            conn.exec_driver_sql(_UPSERT, {"key": key.text, "value": encoded, "ttl": ttl, "grace": grace})
        _count(key, "miss")
        return json.loads(encoded)
    except _FAILURES as exc:
        if computing:
            raise  # the computation's own error
        if _lock_not_available(exc):
            _count(key, "busy")
        else:
            _failed(key, exc)
            _count(key, "error")
        return _as_stored(compute() if value is _UNSET else value)


# ---------------------------------------------------------------- invalidation

def delete(key: Key) -> None:
    """Drop ``key`` now (one statement)."""
    _require_key(key)
    _drop_now(db.session(), [key.text], [])


def invalidate_prefix(prefix: str) -> int | None:
    """Drop every entry whose key starts with ``prefix`` (taken literally), now, in one
    statement: ``key_prefix("catalog")`` for every catalog entry, ``key_prefix("wallet",
    user_id)`` for one user's. Returns how many went, or None when the cache failed."""
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("an empty prefix would drop the whole cache")
    return _drop_now(db.session(), [], [prefix])


def invalidate_on_commit(*targets: Key | str) -> None:
    """For receivers of domain events: drop ``targets`` (keys, or prefixes as strings) when the
    current transaction commits, and until then read around them in this transaction. Outside
    a transaction they are dropped at once."""
    keys = [t.text for t in targets if type(t) is Key]
    prefixes = [t for t in targets if type(t) is not Key]
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"invalidate_on_commit takes keys and non-empty prefixes, not {prefix!r}")
    session = db.session()
    if not session.in_transaction():
        _drop_now(session, keys, prefixes)
        return
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = _Pending()
    pending.keys.update(keys)
    pending.prefixes += tuple(prefixes)


#: ``Session.info`` key of the invalidations waiting for the transaction's commit.
_PENDING = "cache_invalidations"


@dataclass
class _Pending:
    keys: builtins.set[str] = field(default_factory=builtins.set)
    prefixes: tuple[str, ...] = ()


def _invalidated(session: Session, key: Key) -> bool:
    pending = session.info.get(_PENDING)
    return pending is not None and (key.text in pending.keys or key.text.startswith(pending.prefixes))


def _drop_now(session: Session, keys: list[str], prefixes: list[str], *, after_commit: bool = False) -> int | None:
    """One statement for the keys, one per prefix (each a range of the primary key)."""
    dropped = 0
    try:
        with _connection(session, after_commit=after_commit) as conn:
            if keys:
                dropped += conn.exec_driver_sql(_DELETE, {"keys": keys}).rowcount
            for prefix in prefixes:
                dropped += conn.exec_driver_sql(_DELETE_PREFIX, {"prefix": prefix}).rowcount
    except _FAILURES as exc:
        _failed("invalidation", exc)
        return None
    return dropped


@event.listens_for(Session, "after_commit")
def _drop_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    try:
        _drop_now(session, sorted(pending.keys), list(pending.prefixes), after_commit=True)
    except Exception:  # never fail a committed transaction; the TTL bounds what stays
        log.exception("could not drop cache entries after commit")


@event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


def clear_expired() -> int:
    """Delete the entries past their grace (the clean-up job), in the caller's transaction."""
    return db.session.execute(_CLEAR_EXPIRED).rowcount


# ---------------------------------------------------------------- metrics

_counts: Counter[tuple[str, str]] = Counter()
_counts_lock = threading.Lock()
_flush_due = time.monotonic() + FLUSH_SECONDS


def _count(key: Key, outcome: str) -> None:
    with _counts_lock:
        _counts[key.name, outcome] += 1


def _maybe_flush() -> None:
    if time.monotonic() >= _flush_due:
        flush_metrics(force=False)


def flush_metrics(*, force: bool = True) -> int:
    """Write this process's counts since the last flush to ``metrics`` (one row per key name)
    and start counting afresh; without ``force``, only when the minute has passed. Returns how
    many rows were written. Counts that could not be written are kept for the next flush."""
    global _flush_due
    with _counts_lock:
        if not force and time.monotonic() < _flush_due:
            return 0
        _flush_due = time.monotonic() + FLUSH_SECONDS
        counts = dict(_counts)
        _counts.clear()
    if not counts:
        return 0
    by_name: dict[str, dict[str, int]] = {}
    for (name, outcome), n in counts.items():
        by_name.setdefault(name, {})[outcome] = n
    now = utcnow()
    rows = [{"name": METRIC, "value": sum(outcomes.values()), "labels": {"key": name, **outcomes},
             "recorded_at": now} for name, outcomes in sorted(by_name.items())]
    try:
        # A transaction of its own (the audit trigger of ``metrics`` needs the actor in it).
        engine = _engine().execution_options(isolation_level="READ COMMITTED")
        with acting_as(FLUSHER), Session(engine) as session, session.begin():
            session.execute(insert(Metric), rows)
    except _FAILURES as exc:
        _failed("metrics", exc)
        with _counts_lock:
            _counts.update(counts)
        return 0
    return len(rows)
