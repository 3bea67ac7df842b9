"""CSV import: all or nothing, every bad line reported with its number, limits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange import services
from portal.money.exchange.models import ExchangeRate, RateSource
from portal.money.exchange.services import CsvRejected
from tests.money.factories.exchange import make_pair


@pytest.fixture
def admin(make_user):
    return make_user("admin")


def rate_count() -> int:
    return db.session.scalar(select(func.count()).select_from(ExchangeRate))


def stamp(minutes_ago: int = 5) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).replace(microsecond=0).isoformat()


def test_a_good_file_is_imported_with_its_source_and_actor(admin):
    make_pair("USD", "AZR")
    make_pair("BTC", "USD")
    body = (f"base,quote,rate,observed_at\nUSD,AZR,12.5,{stamp(10)}\n\n"
            f"usd,azr,12.75,{stamp(5)}\nBTC,USD,60000.5,2026-11-30T09:00:00Z\n").encode()
    result = services.import_csv(admin, "rates-1201.csv", body)
    assert result.imported == 3 and result.pairs == {"USD/AZR": 2, "BTC/USD": 1}
    rows = db.session.scalars(select(ExchangeRate).order_by(ExchangeRate.observed_at)).all()
    assert [r.rate for r in rows] == [Decimal("60000.5"), Decimal("12.5"), Decimal("12.75")]
    assert {r.source for r in rows} == {RateSource.CSV}
    assert {r.source_detail for r in rows} == {"CSV rates-1201.csv"}
    assert {r.recorded_by_id for r in rows} == {admin.id}
    assert services.usable_rate("USD", "AZR").rate == Decimal("12.75")


def test_columns_may_come_in_any_order_with_a_bom_and_crlf(admin):
    make_pair("USD", "AZR")
    body = f"\ufeffObserved_At,RATE,quote,base\r\n{stamp()},12.5,AZR,USD\r\n".encode()
    assert services.import_csv(admin, "x.csv", body).imported == 1


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_imported(admin):
    make_pair("USD", "AZR")
    make_pair("ETH", "USD", active=False)
    good = stamp()
    body = "\n".join([
        "base,quote,rate,observed_at",            # 1
        f"USD,AZR,12.5,{good}",                   # 2 good
        f"USD,AZR,-1,{good}",                     # 3 negative
        f"USD,AZR,abc,{stamp(6)}",                # 4 not a number
        f"AZR,USD,0.08,{stamp(7)}",               # 5 reversed pair
        f"ETH,USD,3000,{stamp(8)}",               # 6 inactive
        f"BTC,ETH,20,{stamp(9)}",                 # 7 no such pair
        f"DOGE,USD,1,{stamp(9)}",                 # 8 unknown currency
        "USD,AZR,12.5,yesterday",                 # 9 bad time
        "USD,AZR,12.5,2026-11-30T09:00:00",       # 10 no time zone
        f"USD,AZR,12.5,{good}",                   # 11 duplicate of line 2
        "USD,AZR,12.5",                           # 12 too few values
        (utcnow() + timedelta(days=1)).strftime("USD,AZR,12.5,%Y-%m-%dT%H:%M:%SZ"),  # 13 future
        f"USD,AZR,0.0000000000000000001,{stamp(11)}",  # 14 too many places
    ]).encode()
    before = rate_count()
    with pytest.raises(CsvRejected) as caught:
        services.import_csv(admin, "bad.csv", body)
    errors = dict(caught.value.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert "more than zero" in errors[3] or "positive" in errors[3]
    assert "positive number" in errors[4]
    assert "the pair is USD/AZR" in errors[5]
    assert "inactive" in errors[6]
    assert "BTC/ETH is not a currency pair" in errors[7]
    assert "DOGE" in errors[8]
    assert "not a time" in errors[9]
    assert "time zone" in errors[10]
    assert "already on line 2" in errors[11]
    assert "expected 4 values, found 3" in errors[12]
    assert "future" in errors[13]
    assert "at most 18" in errors[14]
    assert "Nothing was imported: 12 lines have problems" in caught.value.message
    assert rate_count() == before


def test_a_file_imported_twice_is_refused_the_second_time(admin):
    make_pair("USD", "AZR")
    body = f"base,quote,rate,observed_at\nUSD,AZR,12.5,{stamp()}\n".encode()
    services.import_csv(admin, "a.csv", body)
    with pytest.raises(CsvRejected) as caught:
        services.import_csv(admin, "a.csv", body)
    assert caught.value.errors[0][0] == 2 and "already imported" in caught.value.errors[0][1]
    assert rate_count() == 1


@pytest.mark.parametrize(("body", "message"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"base,quote,rate,observed_at\n", "no rates"),
    (b"base,quote,price,observed_at\nUSD,AZR,1,2026-11-30T09:00:00Z\n", "missing rate"),
    (b"base,quote,rate,observed_at,extra\n", "unknown 'extra'"),
    (b"base,quote,rate,observed_at,rate\n", "appears twice"),
    ("base,quote,rate,observed_at\nUSD,AZR,12\u00e9".encode("latin-1"), "not UTF-8"),
])
def test_malformed_files_are_refused_clearly(admin, body, message):
    make_pair("USD", "AZR")
    with pytest.raises(CsvRejected) as caught:
        services.import_csv(admin, "x.csv", body)
    assert message in caught.value.message


def test_size_and_row_limits(admin, monkeypatch):
    make_pair("USD", "AZR")
    too_big = b"base,quote,rate,observed_at\n" + b"x" * services.MAX_CSV_BYTES
    with pytest.raises(CsvRejected, match="larger than"):
        services.import_csv(admin, "big.csv", too_big)
    monkeypatch.setattr(services, "MAX_CSV_ROWS", 3)
    lines = [f"USD,AZR,12.{i},{stamp(i + 1)}" for i in range(4)]
    with pytest.raises(CsvRejected, match="more than 3 rates"):
        services.import_csv(admin, "many.csv", ("base,quote,rate,observed_at\n" + "\n".join(lines)).encode())
    assert rate_count() == 0


def test_error_list_is_capped_with_a_count_of_the_rest(admin):
    make_pair("USD", "AZR")
    lines = [f"USD,AZR,-{i + 1},{stamp(i + 1)}" for i in range(services.MAX_REPORTED_ERRORS + 7)]
    with pytest.raises(CsvRejected) as caught:
        services.import_csv(admin, "x.csv", ("base,quote,rate,observed_at\n" + "\n".join(lines)).encode())
    assert len(caught.value.errors) == services.MAX_REPORTED_ERRORS and caught.value.more == 7
    assert caught.value.errors[0][0] == 2
