"""The HTTP JSON rate source, against a real HTTP server on 127.0.0.1 started in the test: good
data, garbage, a server that sleeps or trickles, HTTP 500, and the periodic refresh job."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange import services, sources, tasks
from portal.money.exchange.models import ExchangeRate, RateSource
from portal.money.exchange.services import ExchangeError
from portal.money.exchange.sources import SourceError, fetch_rates
from tests.money.factories.exchange import make_pair, rate_server


def feed(*entries: dict) -> bytes:
    return json.dumps({"rates": list(entries)}).encode()


def entry(base="USD", quote="AZR", rate="12.5", minutes_ago=1) -> dict:
    observed = (utcnow() - timedelta(minutes=minutes_ago)).replace(microsecond=0)
    return {"base": base, "quote": quote, "rate": rate, "observed_at": observed.isoformat().replace("+00:00", "Z")}


@pytest.fixture
def source(app, monkeypatch):
    """The running test server, configured as the app's rate source with a 1 s timeout."""
    with rate_server() as (url, responder):
        monkeypatch.setitem(app.config, "EXCHANGE_RATE_URL", url)
        monkeypatch.setitem(app.config, "EXCHANGE_RATE_TIMEOUT_SECONDS", 1)
        yield url, responder


def http_rates() -> list[ExchangeRate]:
    return list(db.session.scalars(select(ExchangeRate).where(ExchangeRate.source == RateSource.HTTP)
                                   .order_by(ExchangeRate.observed_at)))


# ------------------------------------------------------------------ the adapter


def test_good_data_is_read_exactly(source):
    url, responder = source
    responder.body = feed(entry(rate="12.5"), entry("BTC", "USD", "60000.123456789", 2),
                          {"base": "ETH", "quote": "USD", "rate": 3000.25, "observed_at": "2026-11-30T10:00:00+01:00"})
    quotes = fetch_rates(url, 1, now=utcnow())
    assert [(q.base, q.quote, q.rate) for q in quotes] == [
        ("USD", "AZR", Decimal("12.5")), ("BTC", "USD", Decimal("60000.123456789")),
        ("ETH", "USD", Decimal("3000.25"))]  # a JSON number is read as Decimal, never through float
    assert all(q.observed_at.tzinfo is not None for q in quotes)
    assert responder.requests == ["/rates.json"]


def test_more_than_18_places_are_rounded_to_the_stored_scale(source):
    url, responder = source
    responder.body = feed(entry(rate="0.0000000000000000015"))
    assert fetch_rates(url, 1, now=utcnow())[0].rate == Decimal("0.000000000000000002")


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>Service unavailable</html>", "valid JSON"),
    (b"", "valid JSON"),
    (b"\xff\xfe{}", "valid JSON"),
    (b"[]", '"rates" list'),
    (b'{"rates": {"USD": 1}}', '"rates" list'),
    (b'{"rates": [42]}', "not an object"),
    (b'{"rates": [{"base": "USD", "quote": "AZR", "rate": NaN, "observed_at": "2026-11-30T10:00:00Z"}]}',
     "valid JSON"),
])
def test_garbage_is_refused(source, body, message):
    url, responder = source
    responder.body = body
    with pytest.raises(SourceError) as caught:
        fetch_rates(url, 1, now=utcnow())
    assert message in caught.value.message


@pytest.mark.parametrize(("bad", "message"), [
    ({"rate": "-12.5"}, "not a positive decimal"),
    ({"rate": "0"}, "not more than zero"),
    ({"rate": "twelve"}, "not a positive decimal"),
    ({"rate": "1e5"}, "not a positive decimal"),
    ({"rate": True}, "not a number"),
    ({"rate": None}, "not a number"),
    ({"rate": "123456789012345678901"}, "too large"),
    ({"base": "XYZ"}, "unknown currency"),
    ({"quote": "USD", "base": "USD"}, "same currency"),
    ({"observed_at": "yesterday"}, "not a time"),
    ({"observed_at": "2026-11-30T10:00:00"}, "time zone"),
    ({"observed_at": 1764496800}, "observed_at is missing"),
    ({"observed_at": "2999-01-01T00:00:00Z"}, "future"),
])
def test_one_bad_entry_rejects_the_whole_response(source, bad, message):
    url, responder = source
    responder.body = feed(entry(), {**entry(minutes_ago=2), **bad})
    with pytest.raises(SourceError) as caught:
        fetch_rates(url, 1, now=utcnow())
    assert "entry 1" in caught.value.message and message in caught.value.message


def test_a_number_that_is_a_float_in_json_stays_exact(source):
    url, responder = source
    responder.body = b'{"rates": [{"base": "USD", "quote": "AZR", "rate": 0.1, "observed_at": "2026-11-30T10:00:00Z"}]}'
    assert fetch_rates(url, 1, now=utcnow())[0].rate == Decimal("0.1")


def test_a_huge_response_is_refused_without_reading_it(source):
    url, responder = source
    responder.body = feed(*[entry(minutes_ago=i) for i in range(50)])
    with pytest.raises(SourceError, match="larger than 200 bytes"):
        fetch_rates(url, 1, now=utcnow(), max_bytes=200)
    # A server that does not say (or lies about) its length is cut off while reading.
    responder.content_length = 150
    with pytest.raises(SourceError):
        fetch_rates(url, 1, now=utcnow(), max_bytes=200)


def test_a_body_longer_than_the_limit_without_a_length_header_is_cut_off(source):
    url, responder = source
    responder.body = b'{"rates": [' + b" " * 5000 + b"]}"
    responder.content_length = -1
    with pytest.raises(SourceError, match="larger than 1000 bytes"):
        fetch_rates(url, 1, now=utcnow(), max_bytes=1000)


def test_too_many_entries_are_refused(source, monkeypatch):
    url, responder = source
    monkeypatch.setattr(sources, "MAX_ENTRIES", 3)
    responder.body = feed(*[entry(minutes_ago=i) for i in range(4)])
    with pytest.raises(SourceError, match="at most 3"):
        fetch_rates(url, 1, now=utcnow())


def test_a_server_that_sleeps_times_out(source):
    url, responder = source
    responder.delay = 3
    started = time.monotonic()
    with pytest.raises(SourceError, match="did not answer within 0.5 seconds"):
        fetch_rates(url, 0.5, now=utcnow())
    assert time.monotonic() - started < 2.5


def test_a_server_that_trickles_is_cut_off_at_the_deadline(source):
    url, responder = source
    responder.body = feed(entry())
    responder.trickle = 0.05  # ~100 bytes at 20 bytes a second: 5 s, each byte well within 1 s
    started = time.monotonic()
    with pytest.raises(SourceError, match="did not answer within 1 seconds"):
        fetch_rates(url, 1, now=utcnow())
    assert time.monotonic() - started < 2.5


def test_http_500_is_refused(source):
    url, responder = source
    responder.status = 500
    responder.body = b'{"error": "boom"}'
    with pytest.raises(SourceError, match="answered HTTP 500"):
        fetch_rates(url, 1, now=utcnow())


def test_an_unreachable_source_and_a_bad_scheme():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    with pytest.raises(SourceError, match="cannot be reached"):
        fetch_rates(f"http://127.0.0.1:{port}/rates.json", 1, now=utcnow())
    with pytest.raises(SourceError, match="http:// or https://"):
        fetch_rates("file:///etc/passwd", 1, now=utcnow())


# ------------------------------------------------------------------ storing what the source says


def test_refresh_stores_rates_for_active_pairs_and_skips_the_rest(source, make_user):
    _, responder = source
    admin = make_user("admin")
    make_pair("USD", "AZR")
    make_pair("ETH", "USD", active=False)
    responder.body = feed(entry(rate="12.5", minutes_ago=2), entry(rate="12.6", minutes_ago=1),
                          entry("ETH", "USD", "3000"), entry("AZR", "USD", "0.08"), entry("BTC", "ETH", "20"))
    result = services.refresh_from_http(admin)
    assert result.imported == 2 and result.pairs == {"USD/AZR": 2}
    assert result.not_offered == ["ETH/USD", "AZR/USD", "BTC/ETH"] and result.skipped == 3
    rows = http_rates()
    assert [r.rate for r in rows] == [Decimal("12.5"), Decimal("12.6")]
    assert rows[0].source_detail.startswith("HTTP 127.0.0.1:") and rows[0].recorded_by_id == admin.id
    assert services.usable_rate("USD", "AZR").rate == Decimal("12.6")
    # The feed has not moved: fetching again adds nothing.
    again = services.refresh_from_http(admin)
    assert again.imported == 0 and len(http_rates()) == 2


def test_refresh_with_a_failing_source_stores_nothing(source, make_user):
    _, responder = source
    make_pair("USD", "AZR")
    responder.status = 500
    with pytest.raises(SourceError):
        services.refresh_from_http(make_user("admin"))
    assert http_rates() == []


def test_refresh_without_a_configured_source_says_so(app, monkeypatch, make_user):
    monkeypatch.setitem(app.config, "EXCHANGE_RATE_URL", "")
    with pytest.raises(ExchangeError, match="EXCHANGE_RATE_URL"):
        services.refresh_from_http(make_user("admin"))


def test_the_periodic_job_refreshes_and_survives_a_failing_source(source, app, monkeypatch, caplog):
    from portal.platform import jobs

    _, responder = source
    assert "portal.money.exchange.tasks.refresh_rates" in jobs.job_app.tasks
    make_pair("USD", "AZR")
    responder.body = feed(entry(rate="12.5"))
    assert tasks.refresh_rates(0) == 1  # as the worker runs it: app context, unit of work
    assert [r.recorded_by_id for r in http_rates()] == [None]
    responder.status = 500
    assert tasks.refresh_rates(0) == 0
    assert "answered HTTP 500" in caplog.text
    monkeypatch.setitem(app.config, "EXCHANGE_RATE_URL", "")
    responder.status = 200
    assert tasks.refresh_rates(0) == 0 and len(responder.requests) == 2  # not configured: not asked
