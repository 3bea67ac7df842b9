"""Pairs, rates and the choice of the rate: strict parsing, inverse rates, freshness, the source
preference with fallback, and the refusal when nothing is fresh."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal, localcontext

import pytest

from portal.db.base import utcnow
from portal.errors import Forbidden, NotFound
from portal.money.exchange import queries, services
from portal.money.exchange.models import RateSource
from portal.money.exchange.services import SOURCE_PREFERENCE, ExchangeError, StaleRate
from portal.money.exchange.sources import InvalidRate, parse_rate
from tests.money.factories.exchange import make_pair, make_rate

MAX_AGE = 3600  # the configured EXCHANGE_RATE_MAX_AGE_SECONDS default


@pytest.fixture
def admin(make_user):
    return make_user("admin")


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(("raw", "expected"), [
    ("12.5", Decimal("12.5")),
    (" 0.000000000000000001 ", Decimal("0.000000000000000001")),
    ("60000", Decimal("60000")),
    ("1.100000000000000000000", Decimal("1.1")),  # trailing zeros beyond 18 places are not digits
    ("99999999999999999999.5", Decimal("99999999999999999999.5")),
])
def test_parse_rate_accepts_plain_positive_decimals(raw, expected):
    assert parse_rate(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("", "Enter the rate"),
    ("0", "more than zero"),
    ("0.000", "more than zero"),
    ("-1", "positive number"),
    ("+1", "positive number"),
    ("1e3", "positive number"),
    ("NaN", "positive number"),
    ("Infinity", "positive number"),
    ("1,5", "positive number"),
    ("12.5.1", "positive number"),
    ("abc", "positive number"),
    ("0.0000000000000000001", "at most 18"),
    ("123456789012345678901", "too large"),
])
def test_parse_rate_refuses_garbage(raw, message):
    with pytest.raises(InvalidRate) as caught:
        parse_rate(raw)
    assert message in caught.value.message


# ------------------------------------------------------------------ inverse


@pytest.mark.parametrize(("rate", "expected"), [
    ("12.5", "0.08"),
    ("3", "0.333333333333333333"),  # 18 places, rounded down
    ("60000", "0.000016666666666666"),
    ("0.08", "12.5"),
    ("1", "1"),
])
def test_inverse_is_one_over_rate_at_18_places_rounded_down(rate, expected):
    assert services.inverse(Decimal(rate)) == Decimal(expected)


def test_inverse_is_computed_with_full_precision():
    rate = Decimal("98765432109876543210.123456789012345678")
    with localcontext() as ctx:
        ctx.prec = 100
        exact = Decimal(1) / rate
    inverse = services.inverse(rate)
    assert inverse == exact.quantize(Decimal("1e-18"), rounding="ROUND_DOWN")
    assert Decimal(0) <= exact - inverse < Decimal("1e-18")


def test_convert_amount_rounds_down_to_the_target_scale_without_intermediate_rounding():
    # 28 significant digits would be the default Decimal context: this product needs more.
    amount = Decimal("12345678901234567.123456789012345678")
    rate = Decimal("1.000000000000000001")
    assert services.convert_amount(amount, rate, "ETH") == Decimal("12345678901234567.135802467913580245")
    assert services.convert_amount(Decimal("10.00"), Decimal("0.333333333333333333"), "USD") == Decimal("3.33")


# ------------------------------------------------------------------ pairs


def test_add_pair_and_its_rules(admin):
    pair = services.add_pair(admin, "usd", "AZR")
    assert (pair.base_currency, pair.quote_currency, pair.active) == ("USD", "AZR", True)
    with pytest.raises(ExchangeError, match="already exists"):
        services.add_pair(admin, "USD", "AZR")
    with pytest.raises(ExchangeError, match="serves both directions"):
        services.add_pair(admin, "AZR", "USD")
    with pytest.raises(ExchangeError, match="two different"):
        services.add_pair(admin, "BTC", "BTC")
    with pytest.raises(ExchangeError, match="choose one of") as caught:
        services.add_pair(admin, "DOGE", "USD")
    assert caught.value.field == "base_currency"


def test_only_money_admins_manage_pairs_and_rates(make_user):
    student = make_user("student")
    with pytest.raises(Forbidden):
        services.add_pair(student, "USD", "AZR")
    pair = make_pair()
    with pytest.raises(Forbidden):
        services.set_pair_active(student, pair.id, False)
    with pytest.raises(Forbidden):
        services.record_manual_rate(student, pair.id, "12.5")


def test_activate_and_deactivate(admin):
    pair = make_pair()
    assert services.set_pair_active(admin, pair.id, False).active is False
    assert services.set_pair_active(admin, pair.id, True).active is True
    with pytest.raises(NotFound):
        services.set_pair_active(admin, uuid.uuid4(), True)


# ------------------------------------------------------------------ manual rates


def test_manual_rate_is_stored_with_its_note_and_actor(admin):
    pair = make_pair()
    row = services.record_manual_rate(admin, pair.id, "12.50", note="Treasury desk, phone call")
    assert row.rate == Decimal("12.5") and row.source == RateSource.MANUAL
    assert row.source_detail == "Treasury desk, phone call" and row.recorded_by_id == admin.id
    assert abs((utcnow() - row.observed_at).total_seconds()) < 5


def test_manual_rate_refusals(admin):
    pair = make_pair()
    with pytest.raises(InvalidRate):
        services.record_manual_rate(admin, pair.id, "-3")
    with pytest.raises(ExchangeError, match="Choose a pair"):
        services.record_manual_rate(admin, None, "3")
    with pytest.raises(ExchangeError, match="in the future"):
        services.record_manual_rate(admin, pair.id, "3", observed_at=utcnow() + timedelta(hours=1))
    with pytest.raises(ExchangeError, match="at most 300"):
        services.record_manual_rate(admin, pair.id, "3", note="x" * 301)


# ------------------------------------------------------------------ choosing the rate


def test_source_preference_is_http_then_csv_then_manual():
    assert SOURCE_PREFERENCE == (RateSource.HTTP, RateSource.CSV, RateSource.MANUAL)


def test_the_preferred_fresh_source_wins_even_when_another_is_newer():
    pair = make_pair()
    http = make_rate(pair, "12.4", source=RateSource.HTTP, age_seconds=600)
    make_rate(pair, "12.6", source=RateSource.MANUAL, age_seconds=5)
    make_rate(pair, "12.5", source=RateSource.CSV, age_seconds=10)
    chosen = services.usable_rate("USD", "AZR")
    assert chosen.row.id == http.id and chosen.rate == Decimal("12.4") and not chosen.inverted


def test_a_stale_source_falls_back_to_the_next_fresh_one():
    pair = make_pair()
    make_rate(pair, "11", source=RateSource.HTTP, age_seconds=MAX_AGE + 1)
    make_rate(pair, "12", source=RateSource.CSV, age_seconds=MAX_AGE + 500)
    manual = make_rate(pair, "13", source=RateSource.MANUAL, age_seconds=MAX_AGE - 60)
    chosen = services.usable_rate("USD", "AZR")
    assert chosen.row.id == manual.id and chosen.source == RateSource.MANUAL


def test_only_the_newest_rate_of_a_source_counts():
    pair = make_pair()
    make_rate(pair, "10", source=RateSource.HTTP, age_seconds=30)
    newer = make_rate(pair, "10.5", source=RateSource.HTTP, age_seconds=10)
    make_rate(pair, "9", source=RateSource.HTTP, age_seconds=MAX_AGE * 5)
    assert services.usable_rate("USD", "AZR").row.id == newer.id


def test_no_fresh_rate_refuses_with_since_when():
    pair = make_pair()
    make_rate(pair, "11", source=RateSource.HTTP, age_seconds=MAX_AGE + 120)
    newest = make_rate(pair, "12", source=RateSource.MANUAL, age_seconds=MAX_AGE + 60)
    with pytest.raises(StaleRate) as caught:
        services.usable_rate("USD", "AZR")
    message = caught.value.message
    assert "stale" in message and "USD/AZR" in message
    assert services.format_time(newest.observed_at + timedelta(seconds=MAX_AGE)) in message
    assert services.format_time(newest.observed_at) in message and "manual" in message
    assert caught.value.status_code == 409


def test_a_rate_exactly_at_the_age_limit_is_still_used_one_second_more_is_not():
    pair = make_pair()
    row = make_rate(pair, "12", source=RateSource.CSV, age_seconds=0)
    limit = timedelta(seconds=MAX_AGE)
    assert services.usable_rate("USD", "AZR", now=row.observed_at + limit).row.id == row.id
    with pytest.raises(StaleRate):
        services.usable_rate("USD", "AZR", now=row.observed_at + limit + timedelta(seconds=1))


def test_no_rate_at_all_and_no_pair_and_inactive_pair_are_refused():
    make_pair("USD", "AZR")
    with pytest.raises(StaleRate, match="no rate for USD/AZR"):
        services.usable_rate("USD", "AZR")
    with pytest.raises(ExchangeError, match="no such pair"):
        services.usable_rate("BTC", "ETH")
    pair = make_pair("BTC", "USD", active=False)
    make_rate(pair, "60000", source=RateSource.HTTP)
    with pytest.raises(ExchangeError, match="switched off"):
        services.usable_rate("BTC", "USD")


def test_the_other_direction_uses_the_inverse():
    pair = make_pair("BTC", "USD")
    make_rate(pair, "60000", source=RateSource.HTTP)
    forward = services.usable_rate("BTC", "USD")
    backward = services.usable_rate("USD", "BTC")
    assert forward.rate == Decimal("60000") and not forward.inverted
    assert backward.rate == Decimal("0.000016666666666666") and backward.inverted
    assert backward.row.id == forward.row.id


def test_pair_statuses_show_current_and_stale_pairs_in_one_statement(statements):
    fresh = make_pair("USD", "AZR")
    stale = make_pair("BTC", "USD")
    empty = make_pair("ETH", "USD", active=False)
    make_rate(fresh, "12.0", source=RateSource.CSV, age_seconds=60)
    make_rate(fresh, "12.5", source=RateSource.CSV, age_seconds=30)
    make_rate(fresh, "12.4", source=RateSource.MANUAL, age_seconds=10)
    make_rate(stale, "60000", source=RateSource.HTTP, age_seconds=MAX_AGE * 2)
    with statements() as counted:
        rows = {row.pair.symbol: row for row in queries.pair_statuses()}
    assert counted.count == 1, counted.statements
    # The newest rate of each source; the preferred fresh source is used, not the newest rate.
    assert {source: row.rate for source, row in rows["USD/AZR"].by_source.items()} == {
        RateSource.CSV: Decimal("12.5"), RateSource.MANUAL: Decimal("12.4")}
    assert rows["USD/AZR"].newest.rate == Decimal("12.4")
    assert rows["USD/AZR"].current.rate == Decimal("12.5") and rows["USD/AZR"].inverse == Decimal("0.08")
    assert rows["BTC/USD"].stale and rows["BTC/USD"].newest.rate == Decimal("60000")
    assert rows["ETH/USD"].newest is None and empty.id == rows["ETH/USD"].pair.id
    assert [r.pair.symbol for r in queries.pair_statuses(active_only=True)] == ["BTC/USD", "USD/AZR"]


def test_chart_geometry_spans_the_plot_and_marks_min_and_max():
    pair = make_pair()
    rows = [make_rate(pair, value, source=source, age_seconds=age) for value, source, age in [
        ("10", RateSource.MANUAL, 400), ("14", RateSource.HTTP, 300), ("12", RateSource.HTTP, 200),
        ("11", RateSource.CSV, 100)]]
    chart = queries.build_chart(queries.chart_rows(pair.id))
    assert chart.count == 4 and chart.low == Decimal("10") and chart.high == Decimal("14")
    assert chart.first == rows[0].observed_at and chart.last == rows[-1].observed_at
    xs = sorted(p.x for s in chart.series for p in s.points)
    assert xs[0] == chart.left and xs[-1] == pytest.approx(chart.right)
    assert chart.top < chart.high_y < chart.low_y < chart.bottom  # higher rates are drawn higher up
    assert [s.source for s in chart.series] == [RateSource.HTTP, RateSource.CSV, RateSource.MANUAL]
    assert queries.build_chart([]).empty
