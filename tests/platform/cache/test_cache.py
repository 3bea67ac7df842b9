"""The shared cache through its API, inside the test's rolled-back transaction: keys (shared and
private), set / get / delete, expiry read from the database's clock, prefix invalidation and
invalidation on commit, Decimal amounts, the statements of a hit and a miss, a failing cache that
never fails the caller, stale values served while another caller computes, the clean-up job, the
metrics, and the table itself (UNLOGGED, row-level security).

Here the session is bound to the test's connection, so the cache runs its statements on it, in
savepoints (``portal.platform.cache.services``); ``test_cache_pool.py`` runs the cache's own pool
with concurrent callers."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.platform import jobs
from portal.platform.analytics.models import Metric
from portal.platform.cache import services as cache
from portal.platform.cache import tasks
from portal.platform.cache.models import CacheEntry
from tests.factories import create_user
from tests.helpers import as_user


def _name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _key(*parts) -> cache.Key:
    return cache.shared_key(_name(), *parts)


def _age(key: cache.Key, seconds: float) -> None:
    """Move an entry into the past instead of waiting (the cache reads the database's clock)."""
    db.session.execute(text('UPDATE cache_entries SET "expiresAt" = "expiresAt" - make_interval(secs => :s), '
                            '"staleUntil" = "staleUntil" - make_interval(secs => :s) WHERE key = :k'),
                       {"s": seconds, "k": key.text})


def _stored(key: cache.Key) -> bool:
    """Whether the row exists, fresh or not."""
    return db.session.scalar(select(func.count()).select_from(CacheEntry).where(CacheEntry.key == key.text)) == 1


def _never():
    raise AssertionError("computed, where the cached value should have been returned")


@contextlib.contextmanager
def _computing_elsewhere(key: cache.Key):
    """Another connection holds the key's lock, as a caller computing the key does."""
    with db.engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(hashtextextended('cache:' || :k, 0))"), {"k": key.text})
        try:
            yield
        finally:
            other.execute(text("SELECT pg_advisory_unlock(hashtextextended('cache:' || :k, 0))"), {"k": key.text})


# ---------------------------------------------------------------- keys

def test_keys_say_whether_they_are_shared_or_whose_they_are():
    user_id = uuid.uuid4()
    assert cache.shared_key("catalog", "page", 2).text == "catalog:shared:page:2"
    assert cache.private_key(user_id, "wallet.totals", "USD").text == f"wallet.totals:{user_id}:USD"
    assert cache.private_key(str(user_id), "wallet.totals").text == f"wallet.totals:{user_id}"
    # A shared key cannot spell a private one: the name ends at the first ":".
    assert cache.shared_key("wallet.totals", user_id).text != cache.private_key(user_id, "wallet.totals").text
    for bad in ("", "Catalog", "wallet:totals", "a b", "x" * 61):
        with pytest.raises(ValueError):
            cache.shared_key(bad)
    with pytest.raises(ValueError):
        cache.private_key(None, "wallet.totals")
    with pytest.raises(ValueError):
        cache.private_key("not-a-uuid", "wallet.totals")
    assert cache.key_prefix("catalog") == "catalog:"
    assert cache.key_prefix("wallet.totals", user_id) == f"wallet.totals:{user_id}"


def test_the_api_takes_only_keys_made_by_its_helpers():
    with pytest.raises(TypeError):
        cache.get("catalog:shared")
    with pytest.raises(TypeError):
        cache.set("catalog:shared", 1, 60)
    with pytest.raises(TypeError):
        cache.get_or_compute("catalog:shared", lambda: 1, 60)
    with pytest.raises(TypeError):
        cache.delete("catalog:shared")


def test_long_parts_become_a_digest_that_still_finds_the_entry():
    name = _name()
    long_query = "q" * 2000
    key = cache.shared_key(name, long_query)
    assert len(key.text) < 200 and key.text.startswith(f"{name}:shared:#")
    assert key != cache.shared_key(name, long_query + "!")
    cache.set(key, ["found"], 60)
    assert cache.get(cache.shared_key(name, long_query)) == ["found"]


# ---------------------------------------------------------------- set / get / delete / expiry

def test_set_get_and_delete():
    key, other = _key(), _key()
    assert cache.get(key) is None
    assert cache.get(key, default="none") == "none"
    cache.set(key, {"title": "Algebra", "count": 3, "tags": ["a", "b"], "ok": True, "none": None}, 60)
    cache.set(other, [1, 2], timedelta(minutes=1))
    assert cache.get(key) == {"title": "Algebra", "count": 3, "tags": ["a", "b"], "ok": True, "none": None}
    cache.set(key, {"title": "Geometry"}, 60)  # a second set replaces the value
    assert cache.get(key) == {"title": "Geometry"}
    cache.delete(key)
    assert cache.get(key) is None and not _stored(key)
    assert cache.get(other) == [1, 2]
    cache.delete(_key())  # an unknown key is fine


def test_ttl_and_grace_must_make_sense():
    with pytest.raises(ValueError):
        cache.set(_key(), 1, 0)
    with pytest.raises(ValueError):
        cache.set(_key(), 1, 60, grace=-1)
    with pytest.raises(ValueError):
        cache.get_or_compute(_key(), lambda: 1, timedelta(seconds=-5))


def test_an_entry_expires_on_read_and_its_row_stays_until_past_its_grace():
    key = _key()
    cache.set(key, "v1", ttl=60, grace=300)
    _age(key, 59)
    assert cache.get(key) == "v1"
    _age(key, 2)  # 61 s old: expired
    assert cache.get(key) is None
    assert _stored(key)  # kept for its grace, to be served stale
    assert cache.get_or_compute(key, lambda: "v2", 60) == "v2"  # nobody else computing: recomputed
    assert cache.get(key) == "v2"


def test_values_come_back_as_json_on_a_miss_as_on_a_hit_and_amounts_exactly():
    key = _key()
    user_id = uuid.uuid4()

    def totals():
        return {"total": Decimal("12.30"), "fee": Decimal("0.000000000000000001"), "user": user_id,
                "rates": (Decimal("1E+3"),)}

    first = cache.get_or_compute(key, totals, 60)
    again = cache.get_or_compute(key, _never, 60)
    assert first == again == {"total": "12.30", "fee": "0.000000000000000001", "user": str(user_id),
                              "rates": ["1000"]}
    assert Decimal(again["total"]) == Decimal("12.30") and str(Decimal(again["total"])) == "12.30"
    assert Decimal(again["fee"]).as_tuple() == Decimal("0.000000000000000001").as_tuple()
    assert Decimal(again["rates"][0]) == 1000
    with pytest.raises(TypeError):
        cache.set(_key(), {"when": object()}, 60)
    with pytest.raises(ValueError):
        cache.set(_key(), {"ratio": float("nan")}, 60)
    with pytest.raises(ValueError):
        cache.set(_key(), {"amount": Decimal("Infinity")}, 60)


# ---------------------------------------------------------------- private data

def test_a_private_entry_of_one_user_is_never_returned_for_another():
    alice, bob = create_user("student"), create_user("student")
    with as_user(alice):
        mine = cache.get_or_compute(cache.private_key(alice.id, "wallet.totals", "USD"),
                                    lambda: {"owner": "alice", "total": "250.00"}, 60)
    assert mine == {"owner": "alice", "total": "250.00"}
    with as_user(bob):  # the same page for Bob: his own key, his own value, computed for him
        assert cache.get(cache.private_key(bob.id, "wallet.totals", "USD")) is None
        his = cache.get_or_compute(cache.private_key(bob.id, "wallet.totals", "USD"),
                                   lambda: {"owner": "bob", "total": "3.00"}, 60)
        assert his == {"owner": "bob", "total": "3.00"}
        # Nor through a shared key naming Alice's id: it is another key.
        assert cache.get(cache.shared_key("wallet.totals", alice.id, "USD")) is None
    with as_user(alice):
        assert cache.get(cache.private_key(alice.id, "wallet.totals", "USD"))["owner"] == "alice"


# ---------------------------------------------------------------- invalidation

def test_invalidate_prefix_drops_only_the_entries_it_starts():
    user, other_user = uuid.uuid4(), uuid.uuid4()
    name = _name()
    underscore = f"{name}_x"  # were "_" LIKE's any-character, its prefix would start "lookalike"
    keys = {
        "page1": cache.shared_key(name, "page", 1), "page2": cache.shared_key(name, "page", 2),
        "mine": cache.private_key(user, name, "a"), "mine2": cache.private_key(user, name),
        "theirs": cache.private_key(other_user, name),
        "longer_name": cache.shared_key(f"{name}x"), "lookalike": cache.shared_key(f"{name}ax"),
        "underscore": cache.shared_key(underscore),
    }
    for key in keys.values():
        cache.set(key, 1, 60)

    assert cache.invalidate_prefix(cache.key_prefix(name, user)) == 2
    assert {k for k, key in keys.items() if cache.get(key) is None} == {"mine", "mine2"}
    assert cache.invalidate_prefix(cache.key_prefix(underscore)) == 1
    assert cache.get(keys["lookalike"]) == 1
    assert cache.invalidate_prefix(cache.key_prefix(name)) == 3
    assert {k for k, key in keys.items() if cache.get(key) is not None} == {"longer_name", "lookalike"}
    with pytest.raises(ValueError):
        cache.invalidate_prefix("")


def test_invalidate_on_commit_drops_at_commit_and_reads_around_until_then():
    key, kept = _key(), _key()
    cache.set(key, "old", 60)
    cache.set(kept, "kept", 60)
    db.session.commit()
    create_user("student")  # a request's transaction, changing what ``key`` shows; its receiver:
    cache.invalidate_on_commit(key, cache.key_prefix(key.name))
    assert _stored(key)  # still there for everyone else until the change commits
    assert cache.get(key) is None  # but not for this transaction
    assert cache.get_or_compute(key, lambda: "new, uncommitted", 60) == "new, uncommitted"
    cache.set(key, "also uncommitted", 60)
    assert db.session.scalar(select(CacheEntry.value).where(CacheEntry.key == key.text)) == "old"  # nothing stored
    assert cache.get(kept) == "kept"
    db.session.commit()
    assert not _stored(key)
    assert cache.get(kept) == "kept"
    assert cache.get_or_compute(key, lambda: "fresh", 60) == "fresh"


def test_invalidate_on_commit_drops_nothing_when_the_change_rolls_back():
    key = _key()
    cache.set(key, "still right", 60)
    db.session.commit()
    create_user("student")
    cache.invalidate_on_commit(key)
    assert cache.get(key) is None
    db.session.rollback()
    assert cache.get(key) == "still right"
    db.session.commit()
    assert cache.get(key) == "still right"


# ---------------------------------------------------------------- statements, stale values, failures

def test_a_hit_is_one_statement_and_a_miss_adds_the_claim_and_one_upsert(statements):
    key, missing = _key(), _key()
    cache.set(key, {"cached": True}, 60)
    with statements() as counter:
        assert cache.get_or_compute(key, _never, 60) == {"cached": True}
    assert counter.count == 1, counter.statements
    assert counter.statements[0].startswith('SELECT value, "expiresAt" > now()')
    assert "WHERE key = " in counter.statements[0]

    with statements() as counter:
        assert cache.get_or_compute(missing, lambda: "computed", 60) == "computed"
    assert [s.split()[0] for s in counter.statements] == ["SELECT", "SELECT", "INSERT"], counter.statements
    assert "pg_try_advisory_xact_lock" in counter.statements[1]


def test_the_lookup_is_an_index_scan_of_the_primary_key():
    plan = "\n".join(db.session.execute(text(
        'EXPLAIN SELECT value, "expiresAt" > now() AS fresh FROM cache_entries '
        'WHERE key = \'x:shared\' AND "staleUntil" > now()')).scalars())
    assert "pk_cache_entries" in plan
    with db.session.begin_nested() as planning:  # the table is tiny here: make the planner show it can
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        prefix_plan = "\n".join(db.session.connection().exec_driver_sql(
            "EXPLAIN " + cache._DELETE_PREFIX, {"prefix": "catalog:"}).scalars())
        planning.rollback()
    # A range of the key's index (COLLATE "C"), not a filter over every row.
    assert "Index Cond: ((key >= 'catalog:'::text) AND (key < 'catalog;'::text))" in prefix_plan


def test_the_stale_value_is_served_while_another_caller_computes():
    key = _key()
    cache.set(key, {"v": "old"}, ttl=60, grace=300)
    _age(key, 61)
    with _computing_elsewhere(key):
        assert cache.get_or_compute(key, _never, 60) == {"v": "old"}
    assert cache.get_or_compute(key, lambda: {"v": "new"}, 60) == {"v": "new"}  # the lock is free again
    assert cache.get(key) == {"v": "new"}


def test_no_stale_value_past_the_grace():
    key = _key()
    cache.set(key, "old", ttl=60, grace=10)
    _age(key, 75)
    assert cache.get_or_compute(key, lambda: "new", 60) == "new"


def test_a_missing_table_never_fails_the_caller_who_gets_the_value_computed(monkeypatch):
    monkeypatch.setattr(cache, "_maybe_flush", lambda: None)  # a flush would start the counts afresh
    key = _key()
    cache.set(key, "cached", 60)
    before = cache._counts[key.name, "error"]
    hidden = db.session.begin_nested()
    # From here the table cannot be found, as before migration 0010 ran: "relation does not exist".
    db.session.execute(text("SET LOCAL search_path TO pg_catalog"))
    try:
        assert cache.get(key) is None
        assert cache.get_or_compute(key, lambda: "computed", 60) == "computed"
        assert cache.get_or_compute(key, lambda: {"n": Decimal("1.50")}, 60) == {"n": "1.50"}
        cache.set(key, "ignored", 60)
        cache.delete(key)
        assert cache.invalidate_prefix(cache.key_prefix(key.name)) is None
        # The caller's transaction was never aborted: it goes on.
        assert db.session.execute(text("SELECT 1")).scalar() == 1
    finally:
        hidden.rollback()
    assert cache._counts[key.name, "error"] == before + 3
    assert cache.get(key) == "cached"


def test_errors_of_the_computation_reach_the_caller_and_store_nothing():
    key = _key()

    class Refused(Exception):
        pass

    def refuse():
        raise Refused

    with pytest.raises(Refused):
        cache.get_or_compute(key, refuse, 60)
    assert not _stored(key)
    with pytest.raises(TypeError):  # a value that is not JSON is the caller's bug, not a cache failure
        cache.get_or_compute(key, lambda: {1, 2}, 60)
    assert not _stored(key)
    assert db.session.execute(text("SELECT 1")).scalar() == 1


# ---------------------------------------------------------------- clean-up job and metrics

def test_the_clean_up_job_deletes_only_entries_past_their_grace():
    fresh, stale, gone = _key(), _key(), _key()
    for key in (fresh, stale, gone):
        cache.set(key, key.name, ttl=60, grace=300)
    _age(stale, 120)  # expired, within its grace
    _age(gone, 361)  # past its grace
    assert tasks.clear_expired_cache(0) >= 1  # as the worker runs it: app context, unit of work
    assert _stored(fresh) and _stored(stale) and not _stored(gone)
    assert cache.get(fresh) == fresh.name


def test_the_clean_up_job_is_declared_every_minute():
    name = "portal.platform.cache.tasks.clear_expired_cache"
    assert name in jobs.job_app.tasks
    assert "portal.platform.cache.tasks" in jobs.job_app.import_paths
    assert any(p.task.name == name and p.cron == "* * * * *"
               for p in jobs.job_app.periodic_registry.periodic_tasks.values())


@pytest.fixture
def metric_rows():
    """Read the ``cache.lookups`` rows of a key name (committed by the flush on the cache's own
    connection), and remove them afterwards."""
    names = []

    def rows(name: str) -> list[Metric]:
        names.append(name)
        return list(db.session.scalars(select(Metric).where(Metric.name == cache.METRIC,
                                                            Metric.labels["key"].astext == name)))

    yield rows
    with Session(db.engine) as session, session.begin():  # a transaction of its own, as system:tests
        session.execute(delete(Metric).where(Metric.name == cache.METRIC, Metric.labels["key"].astext.in_(names)))


def test_lookups_are_counted_in_memory_and_flushed_to_metrics(metric_rows, monkeypatch):
    # No once-a-minute flush during the test (one may fall due mid-test on a slow run): only the
    # explicit flush below writes.
    monkeypatch.setattr(cache, "_flush_due", float("inf"))
    hit, missing = _key(), cache.shared_key(_name())
    cache.set(hit, 1, 60)
    cache.get(hit)
    cache.get_or_compute(hit, _never, 60)
    cache.get(cache.shared_key(missing.name, "x"))
    cache.get_or_compute(missing, lambda: 2, 60)
    assert metric_rows(hit.name) == []  # counted in memory: no write per read
    assert cache.flush_metrics() >= 2
    [hits] = metric_rows(hit.name)
    [misses] = metric_rows(missing.name)
    assert hits.value == 2 and hits.labels == {"key": hit.name, "hit": 2}
    assert misses.value == 2 and misses.labels == {"key": missing.name, "miss": 2}
    assert cache._counts[hit.name, "hit"] == 0  # counting starts afresh


def test_a_process_flushes_at_most_once_a_minute(monkeypatch, metric_rows):
    key = _key()
    cache.set(key, 1, 60)
    monkeypatch.setattr(cache, "_flush_due", float("inf"))
    cache.get(key)
    assert metric_rows(key.name) == []
    monkeypatch.setattr(cache, "_flush_due", 0.0)  # the minute has passed: the next lookup flushes
    cache.get(key)
    [row] = metric_rows(key.name)
    assert row.labels == {"key": key.name, "hit": 2}
    assert cache._flush_due > 0.0
    cache.get(key)  # and then not again within the minute
    assert metric_rows(key.name) == [row]


# ---------------------------------------------------------------- the table

def test_the_table_is_unlogged_with_row_level_security_forced():
    persistence, enabled, forced = db.session.execute(text(
        "SELECT relpersistence, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE oid = 'cache_entries'::regclass")).one()
    assert (persistence, enabled, forced) == ("u", True, True)


def test_every_identified_actor_reaches_the_entries_and_no_identity_none():
    key = cache.private_key(uuid.uuid4(), "wallet.totals")
    cache.set(key, "private", 60)
    count = select(func.count()).select_from(CacheEntry).where(CacheEntry.key == key.text)
    for actor in (Actor(label="anonymous:web", role="anonymous"), Actor.system("worker"),
                  Actor.for_user(uuid.uuid4(), "student")):
        with acting_as(actor, db.session):
            assert db.session.scalar(count) == 1, actor
    with acting_as(Actor(label=""), db.session):  # code that forgot the context
        assert db.session.scalar(count) == 0
        assert cache.get(key) is None
