"""Exchange pages: convert, quote, accept, rate history and the admin page, each as a full page
and as an htmx fragment, for the roles that may use them; statement budgets."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange.models import Conversion, ConversionStatus, CurrencyPair, ExchangeRate, RateSource
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import Transaction
from tests.factories import PASSWORD
from tests.money.factories.exchange import balance, freeze, fund, make_pair, make_rate, rate_server

HTMX = {"HX-Request": "true"}
BUDGET = 12


def commit_setup() -> None:
    """A refused request rolls its transaction back; in a test that would also undo setup rows
    not yet committed (committing here only releases a savepoint)."""
    db.session.commit()


def idempotency_key(body: str) -> str:
    found = re.search(r'<input[^>]*name="idempotency_key"[^>]*>', body)
    assert found, "no idempotency key on the page"
    return re.search(r'value="([^"]+)"', found.group(0)).group(1)


STARTED = None


@pytest.fixture(autouse=True)
def _started():
    """When the test began: conversions other tests committed (the browser journeys) are older."""
    global STARTED
    STARTED = utcnow()


def conversions() -> list[Conversion]:
    """The conversions made during this test."""
    db.session.expire_all()
    return list(db.session.scalars(select(Conversion).where(Conversion.created_at >= STARTED)
                                   .order_by(Conversion.created_at)))


@pytest.fixture
def market(make_user):
    admin = make_user("admin")
    pair = make_pair("USD", "AZR")
    make_rate(pair, "12.5", source=RateSource.HTTP, age_seconds=30, detail="HTTP rates.example")
    fees.save_rule(admin.id, "conversion", "USD", fixed="0.50", percent="1", minimum="0", maximum="")
    return pair


@pytest.fixture
def student(login_as, market):
    user = login_as("student")
    fund(user, "USD", "200.00")
    commit_setup()
    return user


def quote_via_page(client, amount="100.00", source="USD", target="AZR") -> Conversion:
    response = client.post("/wallet/convert", data={"from_currency": source, "to_currency": target,
                                                    "amount": amount})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return conversions()[-1]


# ------------------------------------------------------------------ the convert page


def test_convert_page_full_and_fragment(client, student, market):
    body = client.get("/wallet/convert").get_data(as_text=True)
    assert "<html" in body and "Convert currencies" in body
    for label in ('for="from_currency"', 'for="to_currency"', 'for="amount"'):
        assert label in body
    assert "1 USD = 12.5 AZR" in body and "1 AZR = 0.08 USD" in body and "HTTP feed" in body
    assert "200.00 USD" in body  # the available balance
    assert f"/wallet/rates/{market.id}" in body
    assert 'hx-boost="false"' in body  # the quote page loads its countdown script
    fragment = client.get("/wallet/convert", headers=HTMX)
    assert fragment.status_code == 200 and "Vary" in fragment.headers
    # A pair's "convert" link preselects the currencies; unknown codes are ignored.
    chosen = client.get("/wallet/convert?from_currency=btc&to_currency=XYZ").get_data(as_text=True)
    assert '<option selected value="BTC">' in chosen or '<option value="BTC" selected>' in chosen


def test_recent_conversions_are_keyset_paginated(client, student):
    for i in range(12):
        quote_via_page(client, amount=f"{i + 1}.00")
    body = client.get("/wallet/convert").get_data(as_text=True)
    assert body.count("/wallet/convert/") - body.count("/wallet/convert/<") >= 10
    more = re.search(r'href="(/wallet/convert\?after=[^"]+)"', body)
    assert more, "no Show more link"
    rows = client.get(more.group(1).replace("&amp;", "&"), headers=HTMX).get_data(as_text=True)
    assert "<html" not in rows and rows.count("<tr>") == 2 and "Show more" not in rows


def test_get_quote_creates_a_quote_and_goes_to_it(client, student):
    response = client.post("/wallet/convert", data={"from_currency": "USD", "to_currency": "AZR",
                                                    "amount": "100.00"})
    (quote,) = conversions()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/convert/{quote.id}")
    assert (quote.from_amount, quote.fee_amount, quote.to_amount) == (Decimal("100.00"), Decimal("1.50"),
                                                                      Decimal("1250"))
    htmx = client.post("/wallet/convert", data={"from_currency": "USD", "to_currency": "AZR", "amount": "5"},
                       headers=HTMX)
    assert htmx.status_code == 204 and htmx.headers["HX-Location"].startswith("/wallet/convert/")


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"amount": "-5"}, 422, "must be positive"),
    ({"amount": "1.001"}, 422, "at most 2 decimal places"),
    ({"amount": ""}, 422, "Enter an amount"),
    ({"amount": "5", "to_currency": "USD"}, 422, "two different currencies"),
    ({"amount": "5", "to_currency": "DOGE"}, 422, "choose one of"),
    ({"amount": "500"}, 422, "Not enough USD"),
])
def test_bad_quote_requests_are_refused_next_to_the_field(client, student, data, status, message):
    form = {"from_currency": "USD", "to_currency": "AZR", **data}
    response = client.post("/wallet/convert", data=form)
    body = response.get_data(as_text=True)
    assert response.status_code == status and message in body and "<html" in body
    fragment = client.post("/wallet/convert", data=form, headers=HTMX)
    assert fragment.status_code == status and message in fragment.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    assert conversions() == []


def test_a_stale_rate_refuses_the_quote_saying_since_when(client, login_as, make_user):
    pair = make_pair("USD", "AZR")
    make_rate(pair, "12.5", source=RateSource.CSV, age_seconds=10_000)
    user = login_as("student")
    fund(user, "USD", "50")
    commit_setup()
    response = client.post("/wallet/convert", data={"from_currency": "USD", "to_currency": "AZR", "amount": "5"})
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "stale since" in body and "paused" in body


# ------------------------------------------------------------------ the quote and accepting it


def test_quote_page_shows_everything_with_a_countdown(client, student, market):
    quote = quote_via_page(client)
    body = client.get(f"/wallet/convert/{quote.id}").get_data(as_text=True)
    for text in ("100.00 USD", "1.50 USD", "101.50 USD", "1,250.00 AZR", "1 USD = 12.5 AZR", "HTTP feed",
                 str(quote.rate_id), "Accept and convert", "js/countdown.js"):
        assert text in body, text
    assert re.search(r'data-countdown data-seconds-left="(2[0-9]|30)"', body)
    assert quote.expires_at.strftime("%H:%M:%S UTC") in body  # the plain time, for pages without JS
    assert idempotency_key(body)
    fragment = client.get(f"/wallet/convert/{quote.id}", headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment and 'id="quote"' in fragment


def test_accept_converts_once_and_triggers_a_balance_refresh(client, student):
    quote = quote_via_page(client)
    key = idempotency_key(client.get(f"/wallet/convert/{quote.id}").get_data(as_text=True))
    response = client.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": key}, headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Trigger"] == "balance-changed"
    assert response.headers["HX-Location"] == f"/wallet/convert/{quote.id}"
    assert balance(student, "USD") == Decimal("98.50") and balance(student, "AZR") == Decimal("1250")
    page = client.get(f"/wallet/convert/{quote.id}").get_data(as_text=True)
    assert "Conversion done" in page and "Converted 100.00 USD into 1,250.00 AZR" in page
    # The double submit: same key, and a second tab's key. Both show the result; nothing moves.
    for again_key in (key, ledger.new_key()):
        again = client.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": again_key})
        assert again.status_code == 302
        assert "already completed" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert balance(student, "USD") == Decimal("98.50") and balance(student, "AZR") == Decimal("1250")
    assert db.session.scalar(select(func.count()).select_from(Transaction).where(
        Transaction.group_id == conversions()[0].transaction_group_id)) == 3
    assert ledger.verify().ok


def test_tampered_fields_are_ignored(client, student):
    quote = quote_via_page(client)
    response = client.post(f"/wallet/convert/{quote.id}/accept", data={
        "idempotency_key": ledger.new_key(), "rate": "1000", "to_amount": "999999", "from_amount": "0.01",
        "fee_amount": "0", "to_currency": "BTC", "user_id": str(uuid.uuid4())})
    assert response.status_code == 302
    (done,) = conversions()
    assert (done.status, done.to_amount, done.rate, done.fee_amount) == (ConversionStatus.COMPLETED, Decimal("1250"),
                                                                         Decimal("12.5"), Decimal("1.50"))
    assert balance(student, "USD") == Decimal("98.50") and balance(student, "AZR") == Decimal("1250")


def test_an_expired_quote_is_refused_marked_and_a_new_quote_offered(client, student):
    quote = quote_via_page(client)
    quote.quoted_at = utcnow() - timedelta(minutes=10)
    quote.expires_at = quote.quoted_at + timedelta(seconds=30)
    commit_setup()
    page = client.get(f"/wallet/convert/{quote.id}").get_data(as_text=True)
    assert "Quote expired" in page and "Accept and convert" not in page  # GET shows it, changes nothing
    assert conversions()[0].status == ConversionStatus.QUOTED
    for headers in ({}, HTMX):
        response = client.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": ledger.new_key()},
                               headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code == 409 and "This quote expired at" in body and "Get a new quote" in body
        assert ("<html" in body) == (not headers)
    assert conversions()[0].status == ConversionStatus.EXPIRED
    assert balance(student, "USD") == Decimal("200.00")
    # The offered form makes a fresh quote for the same amount.
    again = client.post("/wallet/convert", data={"from_currency": "USD", "to_currency": "AZR", "amount": "100.00"})
    assert again.status_code == 302 and len(conversions()) == 2


def test_insufficient_funds_and_frozen_wallets_are_refused_at_accept(client, student):
    big = quote_via_page(client, amount="150.00")
    small = quote_via_page(client, amount="100.00")
    assert client.post(f"/wallet/convert/{small.id}/accept",
                       data={"idempotency_key": ledger.new_key()}).status_code == 302
    response = client.post(f"/wallet/convert/{big.id}/accept", data={"idempotency_key": ledger.new_key()})
    assert response.status_code == 422 and "Not enough money" in response.get_data(as_text=True)
    fund(student, "USD", "100")
    third = quote_via_page(client, amount="10.00")
    freeze(student, "AZR")
    commit_setup()
    response = client.post(f"/wallet/convert/{third.id}/accept", data={"idempotency_key": ledger.new_key()},
                           headers=HTMX)
    assert response.status_code == 422 and "Your AZR wallet is frozen" in response.get_data(as_text=True)
    assert {c.id: c.status for c in conversions()}[third.id] == ConversionStatus.QUOTED


def test_someone_elses_quote_is_404(app, client, student, make_user):
    quote = quote_via_page(client)
    other = make_user("student")
    fund(other, "USD", "500")
    commit_setup()
    intruder = app.test_client()
    assert intruder.post("/auth/login", data={"email": other.email, "password": PASSWORD}).status_code == 302
    for headers in ({}, HTMX):
        assert intruder.get(f"/wallet/convert/{quote.id}", headers=headers).status_code == 404
        response = intruder.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": ledger.new_key()},
                                 headers=headers)
        assert response.status_code == 404
    assert intruder.post(f"/wallet/convert/{uuid.uuid4()}/accept", headers=HTMX,
                         data={"idempotency_key": ledger.new_key()}).status_code == 404
    assert balance(other, "USD") == Decimal("500")
    assert conversions()[0].status == ConversionStatus.QUOTED


def test_a_missing_or_malformed_key_is_refused(client, student):
    quote = quote_via_page(client)
    response = client.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": "x"})
    assert response.status_code == 400 and "out of date" in response.get_data(as_text=True)
    assert conversions()[0].status == ConversionStatus.QUOTED


# ------------------------------------------------------------------ rate history


def test_rate_history_chart_and_table_for_students(client, student, market):
    for i in range(30):
        make_rate(market, f"12.{i:02d}", source=RateSource.CSV if i % 2 else RateSource.MANUAL,
                  age_seconds=4000 + i * 60)
    body = client.get(f"/wallet/rates/{market.id}").get_data(as_text=True)
    assert "<svg" in body and 'role="img"' in body and '<title id="chart-title">USD/AZR rate history</title>' in body
    assert '<desc id="chart-desc">31 rates' in body and "Lowest 12, highest 12.5" in body
    assert "max 12.5" in body and "min 12" in body and "Observed (UTC)" in body and "AZR per USD" in body
    assert body.count("<polyline") == 2 and "HTTP feed (1)" in body
    assert "<table" in body and body.count('<tr>') >= 25
    more = re.search(r'href="(/wallet/rates/[^"]+\?after=[^"]+)"', body)
    rows = client.get(more.group(1).replace("&amp;", "&"), headers=HTMX).get_data(as_text=True)
    assert "<html" not in rows and "<svg" not in rows and rows.count("<tr>") == 6
    fragment = client.get(f"/wallet/rates/{market.id}", headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment and "<svg" in fragment
    assert client.get(f"/wallet/rates/{uuid.uuid4()}").status_code == 404


def test_admin_history_page_shows_source_details(client, login_as, market):
    login_as("admin")
    body = client.get(f"/wallet/admin/exchange/pairs/{market.id}").get_data(as_text=True)
    assert "HTTP rates.example" in body and "<svg" in body and "Exchange rates" in body
    assert client.get(f"/wallet/admin/exchange/pairs/{uuid.uuid4()}", headers=HTMX).status_code == 404


# ------------------------------------------------------------------ admin


@pytest.fixture
def admin(login_as):
    user = login_as("admin")
    commit_setup()
    return user


def test_admin_page_lists_pairs_with_rate_age_and_source(client, admin, market):
    stale = make_pair("BTC", "USD", active=False)
    make_rate(stale, "60000", age_seconds=10_000)
    body = client.get("/wallet/admin/exchange").get_data(as_text=True)
    assert "<html" in body and "USD/AZR" in body and "12.5" in body and "HTTP feed" in body and "ago" in body
    assert "BTC/USD" in body and "Stale" in body and "Inactive" in body
    for text in ("Add a pair", "Enter a rate", "Import a CSV file", "Fetch now", f"/wallet/admin/exchange/pairs/{market.id}"):
        assert text in body
    fragment = client.get("/wallet/admin/exchange", headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment and 'id="exchange-workspace"' in fragment


def test_add_pair_with_and_without_htmx(client, admin):
    response = client.post("/wallet/admin/exchange/pairs", data={"base_currency": "BTC", "quote_currency": "USD"})
    assert response.status_code == 302
    assert "BTC/USD added" in client.get("/wallet/admin/exchange").get_data(as_text=True)
    fragment = client.post("/wallet/admin/exchange/pairs", data={"base_currency": "ETH", "quote_currency": "USD"},
                           headers=HTMX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and "ETH/USD added" in body
    refused = client.post("/wallet/admin/exchange/pairs", data={"base_currency": "USD", "quote_currency": "BTC"},
                          headers=HTMX)
    assert refused.status_code == 422 and "serves both directions" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(CurrencyPair)) == 2


def test_toggle_a_pair_inline_and_without_js(client, admin, market):
    row = client.post(f"/wallet/admin/exchange/pairs/{market.id}/active", data={"active": "0"}, headers=HTMX)
    body = row.get_data(as_text=True)
    assert row.status_code == 200 and body.lstrip().startswith(f'<tr id="pair-{market.id}"') and "Inactive" in body
    db.session.expire_all()
    assert db.session.get(CurrencyPair, market.id).active is False
    plain = client.post(f"/wallet/admin/exchange/pairs/{market.id}/active", data={"active": "1"})
    assert plain.status_code == 302
    assert "USD/AZR is active" in client.get("/wallet/admin/exchange").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(CurrencyPair, market.id).active is True
    assert client.post(f"/wallet/admin/exchange/pairs/{uuid.uuid4()}/active", data={"active": "1"},
                       headers=HTMX).status_code == 404


def test_manual_rate_form(client, admin, market):
    response = client.post("/wallet/admin/exchange/rates", data={"pair": str(market.id), "rate": "12.75",
                                                                 "note": "Phone call with the desk"})
    assert response.status_code == 302
    row = db.session.scalar(select(ExchangeRate).where(ExchangeRate.source == RateSource.MANUAL))
    assert row.rate == Decimal("12.75") and row.source_detail == "Phone call with the desk"
    refused = client.post("/wallet/admin/exchange/rates", data={"pair": str(market.id), "rate": "-1"}, headers=HTMX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "positive number" in body and "<html" not in body
    no_pair = client.post("/wallet/admin/exchange/rates", data={"pair": "", "rate": "1"})
    assert no_pair.status_code == 422 and "Choose a pair" in no_pair.get_data(as_text=True)
    past = client.post("/wallet/admin/exchange/rates", data={"pair": str(market.id), "rate": "12",
                                                             "observed_at": "2026-11-01T09:00"}, headers=HTMX)
    assert past.status_code == 200 and "Rate 12 recorded" in past.get_data(as_text=True)


def upload(client, content: bytes, headers=None, name="rates.csv"):
    return client.post("/wallet/admin/exchange/import", data={"file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data", headers=headers or {})


def test_csv_upload_good_and_bad(client, admin, market):
    good = f"base,quote,rate,observed_at\nUSD,AZR,12.6,{(utcnow() - timedelta(minutes=2)).isoformat()}\n".encode()
    response = upload(client, good)
    assert response.status_code == 302
    assert "Imported 1 rate (USD/AZR: 1)" in client.get("/wallet/admin/exchange").get_data(as_text=True)
    bad = b"base,quote,rate,observed_at\nUSD,AZR,-1,2026-11-30T09:00:00Z\nUSD,AZR,12,2026-11-30T10:00:00Z\nXX,AZR,1,x\n"
    for headers in ({}, HTMX):
        refused = upload(client, bad, headers)
        body = refused.get_data(as_text=True)
        assert refused.status_code == 422 and "Nothing was imported: 2 lines have problems" in body
        assert "Line 2:" in body and "Line 4:" in body and "Line 3:" not in body
        assert ("<html" in body) == (not headers)
    assert db.session.scalar(select(func.count()).select_from(ExchangeRate).where(
        ExchangeRate.source == RateSource.CSV)) == 1
    missing = client.post("/wallet/admin/exchange/import", data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "Choose a CSV file" in missing.get_data(as_text=True)


def test_fetch_now(client, admin, market, app, monkeypatch):
    commit_setup()
    refused = client.post("/wallet/admin/exchange/fetch", headers=HTMX)
    assert refused.status_code == 422 and "EXCHANGE_RATE_URL" in refused.get_data(as_text=True)
    with rate_server() as (url, responder):
        monkeypatch.setitem(app.config, "EXCHANGE_RATE_URL", url)
        observed = (utcnow() - timedelta(seconds=5)).replace(microsecond=0).isoformat()
        responder.body = json.dumps({"rates": [{"base": "USD", "quote": "AZR", "rate": "12.9",
                                                "observed_at": observed}]}).encode()
        done = client.post("/wallet/admin/exchange/fetch", headers=HTMX)
        assert done.status_code == 200 and "Fetched 1 new rate" in done.get_data(as_text=True)
        assert "12.9" in done.get_data(as_text=True)  # the pair's current rate now comes from the feed
        responder.status = 500
        failed = client.post("/wallet/admin/exchange/fetch")
        assert failed.status_code == 502 and "answered HTTP 500" in failed.get_data(as_text=True)


# ------------------------------------------------------------------ roles


@pytest.mark.parametrize(("role", "path", "allowed"), [
    ("student", "/wallet/convert", True),
    ("admin", "/wallet/convert", False),
    ("faculty", "/wallet/convert", False),
    ("student", "/wallet/admin/exchange", False),
    ("compliance", "/wallet/admin/exchange", False),
    ("admin", "/wallet/admin/exchange", True),
])
def test_who_may_open_which_page(client, login_as, role, path, allowed):
    login_as(role)
    for headers in ({}, HTMX):
        response = client.get(path, headers=headers)
        assert (response.status_code == 200) == allowed and (response.status_code == 403) == (not allowed)
    if not allowed:
        # /wallet/convert takes a POST (refused for this role); the admin page takes none
        assert client.post(path, data={}).status_code == (403 if path == "/wallet/convert" else 405)


def test_student_cannot_post_admin_forms(client, student, market):
    for path in ("/wallet/admin/exchange/pairs", "/wallet/admin/exchange/rates", "/wallet/admin/exchange/import",
                 "/wallet/admin/exchange/fetch", f"/wallet/admin/exchange/pairs/{market.id}/active"):
        assert client.post(path, data={"active": "0", "base_currency": "BTC", "quote_currency": "ETH"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(CurrencyPair, market.id).active is True


# ------------------------------------------------------------------ statement budgets


def _count(client, statements, path, headers=None) -> int:
    with statements() as counted:
        response = client.get(path, headers=headers or {})
    assert response.status_code == 200
    return counted.count


def test_admin_exchange_page_budget_does_not_grow(client, admin, statements):
    pairs = [make_pair(b, q) for b, q in (("USD", "AZR"), ("BTC", "USD"))]
    for pair in pairs:
        for i in range(3):
            make_rate(pair, f"{i + 1}", source=list(RateSource)[i], age_seconds=60 * (i + 1))
    commit_setup()  # each measurement starts the same way (the harness's savepoint included)
    client.get("/wallet/admin/exchange")
    commit_setup()
    small = _count(client, statements, "/wallet/admin/exchange")
    for b, q in (("ETH", "USD"), ("BTC", "ETH"), ("AZR", "BTC"), ("ETH", "AZR")):
        pair = make_pair(b, q)
        for i in range(40):
            make_rate(pair, f"{i + 1}", source=list(RateSource)[i % 3], age_seconds=30 * (i + 1))
    commit_setup()
    large = _count(client, statements, "/wallet/admin/exchange")
    assert large == small and large <= BUDGET
    assert _count(client, statements, "/wallet/admin/exchange", HTMX) <= BUDGET
    assert _count(client, statements, f"/wallet/admin/exchange/pairs/{pairs[0].id}") <= BUDGET


#: The convert page: the request's session lookup, the active pairs with the newest rate of
#: each source, and the student's wallets with a page of their conversions.
CONVERT_PAGE_STATEMENTS = 3


def test_convert_page_budget_does_not_grow(client, student, statements, market):
    for i in range(3):
        quote_via_page(client, amount=f"{i + 1}")
    commit_setup()  # each measurement starts the same way (the harness's savepoint included)
    client.get("/wallet/convert")
    commit_setup()
    small = _count(client, statements, "/wallet/convert")
    for i in range(15):
        quote_via_page(client, amount=f"{i + 1}.50")
    fund(student, "AZR", "5")
    other = make_pair("BTC", "USD")
    make_rate(other, "60000", source=RateSource.CSV)
    commit_setup()
    large = _count(client, statements, "/wallet/convert")
    assert large == small <= CONVERT_PAGE_STATEMENTS
    older = re.search(r'/wallet/convert\?after=[^"]+', client.get("/wallet/convert").get_data(as_text=True)).group(0)
    assert _count(client, statements, older, HTMX) <= CONVERT_PAGE_STATEMENTS
    conversion = conversions()[-1]
    assert _count(client, statements, f"/wallet/convert/{conversion.id}") <= BUDGET
    assert _count(client, statements, f"/wallet/rates/{market.id}") <= BUDGET


# ------------------------------------------------------------------ CSRF, as in production


def test_forms_carry_a_working_csrf_token(client, student):
    """The tokens the pages carry are the ones that work (the client sends none of its own here)."""
    page = client.get("/wallet/convert").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"from_currency": "USD", "to_currency": "AZR", "amount": "10.00"}
    assert client.post("/wallet/convert", data=form, csrf=False).status_code == 400  # refused, nothing made
    assert conversions() == []
    response = client.post("/wallet/convert", data={**form, "csrf_token": token}, csrf=False)
    assert response.status_code == 302
    quote_page = client.get(response.headers["Location"]).get_data(as_text=True)
    accept = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', quote_page).group(1),
              "idempotency_key": idempotency_key(quote_page)}
    (quote,) = conversions()
    assert client.post(f"/wallet/convert/{quote.id}/accept", data={"idempotency_key": accept["idempotency_key"]},
                       csrf=False).status_code == 400
    assert client.post(f"/wallet/convert/{quote.id}/accept", data=accept, csrf=False).status_code == 302
    assert balance(student, "AZR") == Decimal("125")
