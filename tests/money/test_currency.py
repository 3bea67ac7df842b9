"""Currencies and amounts: scales, strict parsing, formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money.currency import (
    CURRENCIES,
    InvalidAmount,
    UnknownCurrency,
    currency,
    format_amount,
    parse_amount,
    quantize,
)


def test_the_scales_are_the_designed_ones():
    assert {code: c.scale for code, c in CURRENCIES.items()} == {"AZR": 8, "USD": 2, "BTC": 8, "ETH": 18}
    assert currency("usd").quantum == Decimal("0.01")
    assert currency(" eth ").quantum == Decimal("1E-18")


@pytest.mark.parametrize("code", ["", None, "EUR", "US D", "usdt"])
def test_unknown_currencies_are_refused(code):
    with pytest.raises(UnknownCurrency, match="Unknown currency"):
        currency(code)


@pytest.mark.parametrize(("raw", "code", "expected"), [
    ("25", "USD", Decimal("25.00")),
    ("12.5", "USD", Decimal("12.50")),
    ("1,234.56", "USD", Decimal("1234.56")),
    ("12,345,678", "USD", Decimal("12345678.00")),
    (" 0.00000001 ", "BTC", Decimal("0.00000001")),
    ("0.000000000000000001", "ETH", Decimal("0.000000000000000001")),
    ("007.10", "USD", Decimal("7.10")),
    (Decimal("3.5"), "AZR", Decimal("3.50000000")),
])
def test_good_amounts(raw, code, expected):
    parsed = parse_amount(raw, code)
    assert parsed == expected
    assert parsed.as_tuple().exponent == -currency(code).scale


@pytest.mark.parametrize(("raw", "message"), [
    ("", "Enter an amount"),
    (None, "Enter an amount"),
    ("-5", "positive"),
    ("0", "more than zero"),
    ("0.00", "more than zero"),
    ("1.005", "at most 2 decimal places"),
    ("1e3", "as a number"),
    ("NaN", "as a number"),
    ("Infinity", "as a number"),
    ("+5", "as a number"),
    ("1.2.3", "as a number"),
    (".", "as a number"),
    ("12 USD", "as a number"),
    ("x1", "as a number"),
    ("\u0663", "as a number"),  # an Arabic-Indic three: only ASCII digits are amounts
    ("\u00b2", "as a number"),
    ("1" * 21, "too large"),
    ("1,5", "commas only between thousands"),
    ("12,34.5", "commas only between thousands"),
    ("1.234,5", "commas only between thousands"),
])
def test_bad_amounts_are_refused_with_a_clear_message(raw, message):
    with pytest.raises(InvalidAmount, match=message) as caught:
        parse_amount(raw, "USD")
    assert caught.value.field == "amount"


def test_zero_when_allowed():
    assert parse_amount("0", "USD", allow_zero=True) == Decimal("0.00")


def test_quantize_refuses_to_lose_digits():
    assert quantize(Decimal("2.5"), "USD") == Decimal("2.50")
    with pytest.raises(InvalidAmount):
        quantize(Decimal("2.555"), "USD")


def test_format_shows_each_currency_at_its_fixed_display_places():
    assert format_amount(Decimal("1234.5"), "USD") == "1,234.50 USD"
    assert format_amount(Decimal("5"), "AZR") == "5.00 AZR"
    # The card: a balance and a zero beside it have the same form.
    assert format_amount(Decimal("257.66915"), "AZR") == "257.67 AZR"
    assert format_amount(Decimal("0"), "AZR") == "0.00 AZR"
    assert format_amount(Decimal("0.01845"), "AZR") == "0.02 AZR"  # rounded half up
    assert format_amount(Decimal("0.0174"), "AZR") == "0.02 AZR"
    assert format_amount(Decimal("0.125"), "AZR") == "0.13 AZR"
    assert format_amount(Decimal("0.1"), "BTC") == "0.10000000 BTC"  # the satoshi
    assert format_amount(Decimal("0.00012345"), "BTC") == "0.00012345 BTC"
    assert format_amount(Decimal("1.123456789012345678"), "ETH") == "1.123457 ETH"
    assert format_amount(Decimal("-3.5"), "USD") == "\u22123.50 USD"
    assert format_amount(Decimal("2"), "USD", sign=True) == "+2.00 USD"
    assert format_amount(Decimal("12345678901234567890.123456789012345678"), "ETH") == (
        "12,345,678,901,234,567,890.123457 ETH")


def test_format_never_shows_a_small_amount_as_zero():
    assert format_amount(Decimal("0.004"), "AZR") == "<0.01 AZR"
    assert format_amount(Decimal("-0.004"), "AZR") == "\u2212<0.01 AZR"


def test_exact_format_keeps_every_place_the_amount_has():
    assert format_amount(Decimal("257.66915"), "AZR", exact=True) == "257.66915 AZR"
    assert format_amount(Decimal("0.004"), "AZR", exact=True) == "0.004 AZR"
    assert format_amount(Decimal("5"), "AZR", exact=True) == "5.00 AZR"  # never fewer than the display places
    assert format_amount(Decimal("0.1"), "BTC", exact=True) == "0.10000000 BTC"
    assert format_amount(Decimal("12345678901234567890.123456789012345678"), "ETH", exact=True) == (
        "12,345,678,901,234,567,890.123456789012345678 ETH")


@given(st.text(max_size=40), st.sampled_from(sorted(CURRENCIES)))
def test_any_text_parses_to_a_positive_amount_at_scale_or_is_refused(raw, code):
    try:
        amount = parse_amount(raw, code)
    except InvalidAmount:
        return
    assert amount > 0 and amount.is_finite()
    assert amount.as_tuple().exponent == -currency(code).scale
