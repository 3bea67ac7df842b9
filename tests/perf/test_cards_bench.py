"""The card part of the bench without a database: the pre-signed messages verify as the portal
verifies them, each has a network id of its own, the wrk script carries them and the answers
the script prints are summed."""

from __future__ import annotations

import json
import re
import time

import pytest

from portal.money.cards.network import SIGNATURE_HEADER, Unauthenticated, verify
from tests.perf import cards

SECRET = "bench-secret"
CARDS = [("9991000000000001", 12, 2029, "123"), ("9991000000000019", 1, 2030, "456")]


def test_messages_are_signed_as_the_network_signs_them_with_distinct_ids():
    messages = cards.signed_messages(SECRET, CARDS, 50, seed=7)
    ids = set()
    for body, signature in messages:
        verify(body.encode(), signature, SECRET, tolerance=300)  # raises when it does not match
        message = json.loads(body)
        ids.add(message["id"])
        assert message["card"]["number"] in {c[0] for c in CARDS} and message["currency"] == "USD"
        assert 0 < float(message["amount"]) <= 2
        stamp = int(re.search(r"t=(\d+)", signature).group(1))
        assert abs(stamp - time.time()) < 60
    assert len(ids) == 50
    with pytest.raises(Unauthenticated):
        verify(messages[0][0].encode(), messages[0][1], "another secret", tolerance=300)


def test_the_script_carries_every_message_and_the_stride():
    messages = cards.signed_messages(SECRET, CARDS, 3, seed=1)
    script = cards.lua_script(messages, stride=2)
    assert script.count("body = ") == 3 and "nextone = nextone + 2" in script
    assert f'["{SIGNATURE_HEADER}"] = message.sig' in script and cards.PATH in script
    for body, signature in messages:
        assert body.replace('"', '\\"') in script and signature in script


def test_the_answers_the_script_prints_are_summed():
    statuses, answers = cards.parse_answers([
        "statuses 200=10 400=1", "answers approved=8 declined=1 duplicate=1",
        "statuses 200=5", "answers approved=5 declined=0 duplicate=0", "something else"])
    assert statuses == {200: 15, 400: 1}
    assert answers == {"approved": 13, "declined": 1, "duplicate": 1}


def test_the_measured_run_follows_a_warm_up_whose_figures_are_dropped(monkeypatch):
    from tests.perf import load, settings

    runs = []

    def fake_wrk(url, seconds, connections, script=None):
        text = script.read_text()
        runs.append((seconds, set(re.findall(r'\\"id\\":\\"(bench_[0-9a-f]+)_', text))))
        figures = (999.0, 999.0) if len(runs) == 1 else (5.0, 9.0)
        return load.LoadResult(requests=10, seconds=1.0, rps=10.0, p50_ms=figures[0], p99_ms=figures[1],
                               script_lines=["statuses 200=10", "answers approved=10 declined=0 duplicate=0"])

    class App:
        config = {"CARD_NETWORK_SECRET": SECRET}

    monkeypatch.setattr(load, "WRK", "wrk")
    monkeypatch.setattr(load, "run_wrk", fake_wrk)
    monkeypatch.setattr(cards, "bench_cards", lambda app: CARDS)
    monkeypatch.setattr(cards, "CARD_MESSAGES", 20)
    monkeypatch.setattr(settings, "WARMUP_SECONDS", 1)
    result = cards.http_authorizations(8000, App())
    assert [seconds for seconds, _ in runs] == [1, settings.TRANSFER_SECONDS]
    (warm_run,), (measured_run,) = runs[0][1], runs[1][1]
    assert warm_run != measured_run  # messages of its own: none of the measured ones is spent
    assert (result.p50_ms, result.p99_ms, result.done) == (5.0, 9.0, 10)
