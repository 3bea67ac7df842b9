"""``limit``: several counters (token, user, address) counted in one statement, refused past any
of them, with the headers of the counter nearest its limit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from portal.db import db
from portal.platform.gateway import services as rate_limits
from portal.platform.gateway.models import RateLimit


def _keys(n: int) -> list[str]:
    run = uuid.uuid4().hex
    return [f"test:{run}:{i}" for i in range(n)]


def test_hit_many_counts_each_key_in_one_statement(statements):
    a, b = _keys(2)
    db.session.execute(select(1))  # the transaction's identity is set by its first statement
    with statements() as counter:
        windows = rate_limits.hit_many([a, b, a], 60)
    assert counter.count == 1
    assert (windows[a].count, windows[b].count) == (1, 1)  # a key named twice counts once
    assert rate_limits.hit_many([a], 60)[a].count == 2


def test_limit_reports_the_counter_nearest_its_limit():
    token, user, address = _keys(3)
    decision = rate_limits.limit({token: 5, user: 3, address: 100}, 60)
    assert decision.allowed and (decision.limit, decision.remaining) == (3, 2)
    assert 1 <= decision.reset <= 61
    assert decision.headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "2",
                                  "RateLimit-Reset": str(decision.reset)}


def test_limit_refuses_past_any_counter_and_says_when_to_retry():
    token, user = _keys(2)
    for _ in range(2):
        assert rate_limits.limit({token: 2, user: 10}, 60).allowed
    refused = rate_limits.limit({token: 2, user: 10}, 60)
    assert not refused.allowed and refused.remaining == 0 and refused.limit == 2
    assert refused.headers()["Retry-After"] == str(refused.reset)


def test_a_passed_window_starts_counting_again():
    (key,) = _keys(1)
    for _ in range(3):
        rate_limits.limit({key: 2}, 60)
    db.session.execute(update(RateLimit).where(RateLimit.key == key)
                       .values(window_start=RateLimit.window_start - timedelta(seconds=61)))
    again = rate_limits.limit({key: 2}, 60)
    assert again.allowed and again.remaining == 1
