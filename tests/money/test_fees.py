"""Fee rules (portal.money.wallets.fees): the arithmetic, rounding up at every currency's scale,
inactive rules, and the validation of what an admin types."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.errors import NotFound
from portal.money.currency import UnknownCurrency
from portal.money.wallets import fees
from portal.money.wallets.models import TransactionFee, TransactionType
from tests.factories import create_user

T = TransactionType


@pytest.fixture
def admin():
    return create_user("admin")


def rule(admin, kind="transfer", code="USD", *, fixed="0", percent="0", minimum="0", maximum="", active=True):
    return fees.save_rule(admin.id, kind, code, fixed=fixed, percent=percent, minimum=minimum, maximum=maximum,
                          active=active)


def test_no_rule_means_no_fee_at_the_currency_scale():
    assert fees.fee_for(T.TRANSFER, Decimal("100"), "USD") == Decimal("0.00")
    assert fees.compute(None, Decimal("1"), "ETH").as_tuple().exponent == -18
    assert fees.compute(None, Decimal("1"), "AZR").as_tuple().exponent == -8


def test_fixed_plus_percent(admin):
    rule(admin, fixed="0.30", percent="2.9")
    assert fees.fee_for(T.TRANSFER, Decimal("100"), "USD") == Decimal("3.20")
    assert fees.fee_for(T.TRANSFER, Decimal("0.01"), "USD") == Decimal("0.31")  # 0.300290 rounds up
    # The rule is for USD transfers only.
    assert fees.fee_for(T.TRANSFER, Decimal("100"), "AZR") == 0
    assert fees.fee_for(T.CONVERSION, Decimal("100"), "USD") == 0


def test_only_fixed_and_only_percent(admin):
    rule(admin, fixed="1.50")
    rule(admin, "withdrawal", percent="1.25")
    assert fees.fee_for(T.TRANSFER, Decimal("1"), "USD") == Decimal("1.50")
    assert fees.fee_for(T.TRANSFER, Decimal("1000000"), "USD") == Decimal("1.50")
    assert fees.fee_for(T.WITHDRAWAL, Decimal("80"), "USD") == Decimal("1.00")


def test_minimum_and_maximum(admin):
    rule(admin, percent="1", minimum="0.50", maximum="25")
    assert fees.fee_for(T.TRANSFER, Decimal("10"), "USD") == Decimal("0.50")  # 0.10, raised to the minimum
    assert fees.fee_for(T.TRANSFER, Decimal("60"), "USD") == Decimal("0.60")  # between: the percent
    assert fees.fee_for(T.TRANSFER, Decimal("10000"), "USD") == Decimal("25.00")  # 100, capped
    # The minimum applies to fixed plus percent together.
    rule(admin, fixed="0.20", percent="1", minimum="0.50")
    assert fees.fee_for(T.TRANSFER, Decimal("20"), "USD") == Decimal("0.50")
    assert fees.fee_for(T.TRANSFER, Decimal("40"), "USD") == Decimal("0.60")


@pytest.mark.parametrize("code, percent, amount, expected", [
    ("USD", "2.9", "10.01", "0.30"),  # 0.29029
    ("USD", "0.0001", "1", "0.01"),  # 0.000001: never below one cent once there is a fee
    ("USD", "1", "250", "2.50"),  # exact: no rounding
    ("AZR", "0.3333", "1", "0.00333300"),
    ("AZR", "1", "0.00000001", "0.00000001"),  # 1e-10
    ("AZR", "1.5", "0.12345679", "0.00185186"),  # 0.001851851850
    ("ETH", "0.5", "0.000000000000000001", "0.000000000000000001"),  # half a wei
    ("ETH", "2.5", "1.000000000000000001", "0.025000000000000001"),  # 0.025000000000000000025
    ("ETH", "1", "3", "0.030000000000000000"),
])
def test_the_fee_rounds_up_to_the_currency_scale(admin, code, percent, amount, expected):
    rule(admin, code=code, percent=percent)
    fee = fees.fee_for(T.TRANSFER, Decimal(amount), code)
    assert fee == Decimal(expected)
    assert fee.as_tuple().exponent == -len(expected.split(".")[1])  # the currency's scale, not 18 places


def test_large_ether_amounts_are_computed_exactly(admin):
    """Amounts have up to 38 digits: the arithmetic must not round to the default 28 (which
    would round the fee down before rounding it up) nor fail."""
    rule(admin, code="ETH", percent="0.0001")
    assert fees.fee_for(T.TRANSFER, Decimal("10000000000.000000000000000001"), "ETH") == Decimal(
        "10000.000000000000000001")
    rule(admin, code="ETH", percent="50")
    assert fees.fee_for(T.TRANSFER, Decimal("99999999999999999999.999999999999999999"), "ETH") == Decimal(
        "50000000000000000000.000000000000000000")


def test_an_inactive_rule_charges_nothing(admin):
    saved = rule(admin, fixed="1", active=False)
    assert saved.active is False
    assert fees.rule_for(T.TRANSFER, "USD") is None
    assert fees.fee_for(T.TRANSFER, Decimal("100"), "USD") == 0
    rule(admin, fixed="1", active=True)
    assert fees.fee_for(T.TRANSFER, Decimal("100"), "USD") == Decimal("1.00")


def test_save_rule_replaces_the_rule_for_its_type_and_currency(admin):
    first = rule(admin, fixed="1", maximum="")
    second = rule(admin, fixed="2", percent="1.5", minimum="1", maximum="10")
    assert second.id == first.id
    assert (second.fixed_amount, second.percent, second.minimum, second.maximum) == (2, Decimal("1.5"), 1, 10)
    assert second.updated_by_id == admin.id and second.transaction_type == T.TRANSFER
    rule(admin, "transfer", "usd", fixed="3")  # the code's case does not matter
    ours = [r for r in fees.rules() if r.id == first.id]
    assert len(ours) == 1 and ours[0].fixed_amount == 3 and ours[0].maximum is None


@pytest.mark.parametrize("fields, field, message", [
    ({"fixed": "-1"}, "fixed_amount", "Fixed amount: must not be negative."),
    ({"fixed": "0.001"}, "fixed_amount", "Fixed amount: USD amounts have at most 2 decimal places."),
    ({"fixed": "abc"}, "fixed_amount", "Fixed amount: Enter the amount as a number, like 25 or 12.50."),
    ({"minimum": "-0.5"}, "minimum", "Minimum: must not be negative."),
    ({"maximum": "-3"}, "maximum", "Maximum: must not be negative."),
    ({"minimum": "1.005"}, "minimum", "Minimum: USD amounts have at most 2 decimal places."),
    ({"maximum": "2.555"}, "maximum", "Maximum: USD amounts have at most 2 decimal places."),
    ({"percent": "-1"}, "percent", "Percent: must not be negative."),
    ({"percent": "1e1"}, "percent", "Percent: enter a number, like 1.5."),
    ({"percent": "1,5"}, "percent", "Percent: enter a number, like 1.5."),
    ({"percent": "NaN"}, "percent", "Percent: enter a number, like 1.5."),
    ({"percent": "1" * 60}, "percent", "Percent: at most 50."),
    ({"percent": "50.0001"}, "percent", "Percent: at most 50."),
    ({"percent": "75"}, "percent", "Percent: at most 50."),
    ({"percent": "1.00001"}, "percent", "Percent: at most four decimal places."),
    ({"percent": "1.123456789"}, "percent", "Percent: at most four decimal places."),
    ({"minimum": "5", "maximum": "4.99"}, "maximum", "Maximum: must not be below the minimum."),
])
def test_save_rule_refuses_bad_values_with_a_message_by_the_field(admin, fields, field, message):
    values = {"fixed": "0", "percent": "1", "minimum": "0", "maximum": ""} | fields
    with pytest.raises(fees.InvalidFeeRule) as refused:
        rule(admin, **values)
    assert (refused.value.message, refused.value.field, refused.value.status_code) == (message, field, 422)
    assert fees.rule_for(T.TRANSFER, "USD") is None


def test_the_boundaries_are_accepted(admin):
    saved = rule(admin, fixed="0", percent="50", minimum="2.50", maximum="2.50")
    assert fees.compute(saved, Decimal("1000"), "USD") == Decimal("2.50")
    saved = rule(admin, fixed="", percent="", minimum="", maximum="")  # empty: zero, and no cap
    assert (saved.fixed_amount, saved.percent, saved.minimum, saved.maximum) == (0, 0, 0, None)
    saved = rule(admin, percent="0.0001")
    assert saved.percent == Decimal("0.0001")
    saved = rule(admin, percent=" 12.5000 ")
    assert saved.percent == Decimal("12.5")


@pytest.mark.parametrize("kind, message", [
    ("fee", "Fees apply to transfers, conversions and withdrawals only."),
    ("reward", "Fees apply to transfers, conversions and withdrawals only."),
    ("deposit", "Fees apply to transfers, conversions and withdrawals only."),
    ("reversal", "Fees apply to transfers, conversions and withdrawals only."),
    ("bribe", "Choose a transaction type."),
    ("", "Choose a transaction type."),
])
def test_save_rule_refuses_types_that_carry_no_fee(admin, kind, message):
    with pytest.raises(fees.InvalidFeeRule) as refused:
        rule(admin, kind, fixed="1")
    assert (refused.value.message, refused.value.field) == (message, "transaction_type")


def test_save_rule_refuses_an_unknown_currency(admin):
    with pytest.raises(UnknownCurrency):
        rule(admin, code="XYZ", fixed="1")


def test_each_chargeable_type_has_its_own_rule(admin):
    for kind, fixed in (("transfer", "1"), ("conversion", "2"), ("withdrawal", "3")):
        rule(admin, kind, fixed=fixed)
    assert [fees.fee_for(kind, Decimal("10"), "USD") for kind in fees.CHARGEABLE] == [1, 2, 3]


def test_delete_rule(admin):
    saved = rule(admin, fixed="1")
    fees.delete_rule(saved.id)
    assert fees.rule_for(T.TRANSFER, "USD") is None
    with pytest.raises(NotFound):
        fees.delete_rule(saved.id)
    assert not any(isinstance(r, TransactionFee) and r.id == saved.id for r in fees.rules())
