"""Fixed-window rate limits: hit / peek / peek_many / peek_windows / reset / reset_prefix, window
expiry, concurrent hits, and turns (``claim``) that pace attempts, one winner at a time."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from portal.db import context as db_context
from portal.db import db
from portal.platform.gateway import services as rate_limits
from portal.platform.gateway.models import RateLimit

WINDOW = 600


def _key(prefix: str = "test") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def _age(key: str, seconds: int) -> None:
    """Move the window of ``key`` into the past instead of waiting."""
    db.session.execute(update(RateLimit).where(RateLimit.key == key)
                       .values(window_start=RateLimit.window_start - timedelta(seconds=seconds)))


def test_hit_counts_within_a_window():
    key = _key()
    first = rate_limits.hit(key, WINDOW)
    assert first.count == 1
    second = rate_limits.hit(key, WINDOW)
    third = rate_limits.hit(key, WINDOW)
    assert (second.count, third.count) == (2, 3)
    assert third.window_start == first.window_start
    assert db.session.scalar(select(RateLimit.count).where(RateLimit.key == key)) == 3


def test_keys_are_counted_separately():
    a, b = _key(), _key()
    rate_limits.hit(a, WINDOW)
    rate_limits.hit(a, WINDOW)
    rate_limits.hit(b, WINDOW)
    assert rate_limits.peek(a, WINDOW).count == 2
    assert rate_limits.peek(b, WINDOW).count == 1


def test_peek_does_not_count():
    key = _key()
    assert rate_limits.peek(key, WINDOW) is None
    rate_limits.hit(key, WINDOW)
    assert rate_limits.peek(key, WINDOW).count == 1
    assert rate_limits.peek(key, WINDOW).count == 1
    assert rate_limits.hit(key, WINDOW).count == 2


def test_peek_many_returns_only_live_windows():
    live, other, expired, missing = _key(), _key(), _key(), _key()
    rate_limits.hit(live, WINDOW)
    rate_limits.hit(live, WINDOW)
    rate_limits.hit(other, WINDOW)
    rate_limits.hit(expired, WINDOW)
    _age(expired, WINDOW + 1)
    found = rate_limits.peek_many([live, other, expired, missing], WINDOW)
    assert set(found) == {live, other}
    assert found[live].count == 2
    assert found[other].count == 1
    assert rate_limits.peek_many([], WINDOW) == {}


def test_reset_forgets_the_key():
    key, kept = _key(), _key()
    rate_limits.hit(key, WINDOW)
    rate_limits.hit(kept, WINDOW)
    rate_limits.reset(key)
    assert rate_limits.peek(key, WINDOW) is None
    assert rate_limits.peek(kept, WINDOW).count == 1
    assert rate_limits.hit(key, WINDOW).count == 1
    rate_limits.reset(_key())  # an unknown key is fine


def test_an_expired_window_counts_as_empty_and_restarts():
    key = _key()
    for _ in range(3):
        rate_limits.hit(key, WINDOW)
    old_start = rate_limits.peek(key, WINDOW).window_start
    _age(key, WINDOW - 5)
    assert rate_limits.peek(key, WINDOW).count == 3  # not yet over
    _age(key, 10)
    assert rate_limits.peek(key, WINDOW) is None
    restarted = rate_limits.hit(key, WINDOW)
    assert restarted.count == 1
    assert restarted.window_start >= old_start  # a new window from now, not the aged one
    assert rate_limits.hit(key, WINDOW).count == 2


def test_retry_after_is_the_rest_of_the_window():
    key = _key()
    rate_limits.hit(key, WINDOW)
    _age(key, 100)
    window = rate_limits.peek(key, WINDOW)
    assert WINDOW - 100 - 5 <= window.retry_after <= WINDOW - 100 + 2
    _age(key, WINDOW - 100 - 1)
    window = rate_limits.peek(key, WINDOW)
    assert window is not None and 1 <= window.retry_after <= 3


def _age_last(key: str, seconds: int) -> None:
    db.session.execute(update(RateLimit).where(RateLimit.key == key)
                       .values(updated_at=RateLimit.updated_at - timedelta(seconds=seconds)))


def test_a_window_knows_when_it_was_last_hit():
    key = _key()
    first = rate_limits.hit(key, WINDOW)
    assert first.last_at is not None and first.seconds_since_last() < 5
    _age_last(key, 100)
    assert 99 <= rate_limits.peek(key, WINDOW).seconds_since_last() <= 105


def test_peek_windows_gives_each_key_its_own_window():
    short, long_, missing = _key(), _key(), _key()
    rate_limits.hit(short, WINDOW)
    rate_limits.hit(long_, WINDOW)
    _age(short, 120)
    _age(long_, 120)
    found = rate_limits.peek_windows({short: 60, long_: 600, missing: 600})
    assert set(found) == {long_}
    assert found[long_].window_seconds == 600
    assert rate_limits.peek_windows({}) == {}


def test_a_turn_is_claimed_once_per_gap():
    key = _key()
    rate_limits.hit(key, WINDOW)
    assert rate_limits.claim(key, WINDOW, 10) is False  # too soon after the hit
    _age_last(key, 11)
    assert rate_limits.claim(key, WINDOW, 10) is True
    assert rate_limits.claim(key, WINDOW, 10) is False  # that turn is taken
    _age_last(key, 11)
    assert rate_limits.claim(key, WINDOW, 10) is True
    assert rate_limits.peek(key, WINDOW).count == 1  # turns do not count
    assert rate_limits.claim(_key(), WINDOW, 0) is False  # nothing to pace


def test_reset_prefix_forgets_only_the_keys_it_starts():
    base = _key("prefix")
    kept = _key("prefix")
    wildcard = base.replace(":", "%")
    for key in (f"{base}:a", f"{base}:b", kept, f"{wildcard}:c"):
        rate_limits.hit(key, WINDOW)
    rate_limits.reset_prefix(f"{base}:")
    assert rate_limits.peek_many([f"{base}:a", f"{base}:b"], WINDOW) == {}
    assert rate_limits.peek(kept, WINDOW).count == 1
    # LIKE's wildcards in a prefix are plain characters: "pre_ix%" starts neither key.
    rate_limits.reset_prefix("pre_ix%")
    assert rate_limits.peek(kept, WINDOW).count == 1
    assert rate_limits.peek(f"{wildcard}:c", WINDOW).count == 1
    rate_limits.reset_prefix("prefix%")
    assert rate_limits.peek(f"{wildcard}:c", WINDOW) is None
    assert rate_limits.peek(kept, WINDOW).count == 1
    with pytest.raises(ValueError):
        rate_limits.reset_prefix("")


def _together(app, threads_n: int, work) -> None:
    """Run ``work()`` in ``threads_n`` threads at once, each in its own app context (so its own
    session and pooled connection, as the app role) acting as a system actor, and fail on any
    thread's error."""
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker():
        try:
            with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
                try:
                    barrier.wait(timeout=30)
                    work()
                finally:
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def _forget(app, key: str) -> None:
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        rate_limits.reset(key)
        db.session.commit()
        assert db.session.scalar(select(RateLimit.id).where(RateLimit.key == key)) is None
        db.session.remove()


@pytest.mark.no_db_rollback
def test_of_concurrent_claims_one_wins(app):
    """Threads with their own connections claim the same turn at once: exactly one gets it."""
    key = _key("claims")
    threads_n = 6
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        rate_limits.hit(key, WINDOW)
        _age_last(key, 60)
        db.session.commit()
        db.session.remove()
    won: list[bool] = []

    def claim():
        result = rate_limits.claim(key, WINDOW, 30)
        db.session.commit()
        won.append(result)

    try:
        _together(app, threads_n, claim)
        assert sorted(won) == [False] * (threads_n - 1) + [True]
    finally:
        _forget(app, key)


@pytest.mark.no_db_rollback
def test_concurrent_hits_on_one_key_are_all_counted(app, database_urls):
    """Threads, each in its own app context (so its own session and pooled connection, as the
    app role), hit one new key at once: no count is lost (the UPSERT serialises on the row)."""
    key = _key("concurrent")
    threads_n, hits_each = 8, 10
    with app.app_context():
        assert db.engine.url.username == make_url(database_urls[1]).username
        assert db.engine.pool.size() + db.engine.pool._max_overflow >= threads_n
    counts: list[int] = []
    lock = threading.Lock()

    def hit():
        for _ in range(hits_each):
            window = rate_limits.hit(key, WINDOW)
            db.session.commit()
            with lock:
                counts.append(window.count)

    try:
        _together(app, threads_n, hit)
        total = threads_n * hits_each
        # every hit saw a distinct count: 1..total, none lost, none doubled
        assert sorted(counts) == list(range(1, total + 1))
        with app.app_context():
            assert db.session.scalar(select(RateLimit.count).where(RateLimit.key == key)) == total
            db.session.remove()
    finally:
        _forget(app, key)
