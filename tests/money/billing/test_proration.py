"""Proration worked by hand: the figures below were computed on paper, not by the code."""

from __future__ import annotations

from decimal import Decimal

from portal.money.billing.proration import prorate
from tests.money.billing.helpers import utc


def test_upgrade_plus_to_pro_on_11_march_of_a_31_day_period():
    # Period 1 March to 1 April: 31 days. Changing on 11 March leaves 21 days (11..31 March).
    # Credit: 10.00 x 21 / 31 = 6.774193... -> 6.77
    # Net:    (25.00 - 10.00) x 21 / 31 = 10.161290... -> 10.16 (the total, rounded once)
    # Charge: net + credit = 16.93 (exactly 16.935483..., which alone would round to 16.94:
    #         the remainder is carried to this last line so the lines add up to the total).
    result = prorate(old_name="Plus", old_price=Decimal("10.00"), new_name="Pro", new_price=Decimal("25.00"),
                     code="USD", period_start=utc(2026, 3, 1, 8), period_end=utc(2026, 4, 1, 8),
                     at=utc(2026, 3, 11, 15))
    assert (result.days_left, result.period_days) == (21, 31)
    assert [(line.kind, line.amount) for line in result.lines] == [
        ("proration_credit", Decimal("-6.77")), ("proration_debit", Decimal("16.93"))]
    assert result.total == Decimal("10.16")
    assert sum(line.amount for line in result.lines) == result.total
    assert "21 of 31 days" in result.lines[0].text and "Plus" in result.lines[0].text
    assert "Pro" in result.lines[1].text and "25.00 USD" in result.lines[1].text


def test_upgrade_in_february_of_a_leap_year():
    # Period 29 Jan to 29 Feb 2028: 31 days. On 15 Feb, 14 days are left (15..28 Feb).
    # Credit: 9.99 x 14 / 31 = 4.511612... -> 4.51
    # Net:    (29.99 - 9.99) x 14 / 31 = 9.032258... -> 9.03
    # Charge: 9.03 + 4.51 = 13.54 (29.99 x 14 / 31 = 13.543870...)
    result = prorate(old_name="Plus", old_price=Decimal("9.99"), new_name="Pro", new_price=Decimal("29.99"),
                     code="USD", period_start=utc(2028, 1, 29), period_end=utc(2028, 2, 29),
                     at=utc(2028, 2, 15, 12))
    assert (result.days_left, result.period_days) == (14, 31)
    assert [line.amount for line in result.lines] == [Decimal("-4.51"), Decimal("13.54")]
    assert result.total == Decimal("9.03")


def test_change_on_the_first_day_credits_the_whole_period():
    # On the first day all 28 days of February 2026 are left: credit 10.00, charge 25.00, net 15.00.
    result = prorate(old_name="Plus", old_price=Decimal("10.00"), new_name="Pro", new_price=Decimal("25.00"),
                     code="USD", period_start=utc(2026, 2, 1), period_end=utc(2026, 3, 1),
                     at=utc(2026, 2, 1, 18))
    assert [line.amount for line in result.lines] == [Decimal("-10.00"), Decimal("25.00")]
    assert result.total == Decimal("15.00")


def test_eight_decimal_currency_keeps_its_scale():
    # AZR has 8 places. 100 x 10 / 30 = 33.333333333... -> 33.33333333; net 200 x 10 / 30 =
    # 66.666666666... -> 66.66666667; charge 66.66666667 + 33.33333333 = 100.00000000.
    result = prorate(old_name="A", old_price=Decimal("100"), new_name="B", new_price=Decimal("300"),
                     code="AZR", period_start=utc(2026, 4, 1), period_end=utc(2026, 5, 1),
                     at=utc(2026, 4, 21))
    assert result.days_left == 10
    assert [line.amount for line in result.lines] == [Decimal("-33.33333333"), Decimal("100.00000000")]
    assert result.total == Decimal("66.66666667")


def test_monthly_to_yearly_credits_the_unused_month_and_charges_the_year():
    # 20 of 30 April days left on Plus at 10.00: credit 6.666... -> 6.67; the year costs 250.00
    # in full from today: total 243.33.
    result = prorate(old_name="Plus", old_price=Decimal("10.00"), new_name="Pro Yearly",
                     new_price=Decimal("250.00"), code="USD", period_start=utc(2026, 4, 1),
                     period_end=utc(2026, 5, 1), at=utc(2026, 4, 11), same_interval=False)
    assert [(line.kind, line.amount) for line in result.lines] == [
        ("proration_credit", Decimal("-6.67")), ("plan", Decimal("250.00"))]
    assert result.total == Decimal("243.33") and result.restarts_period
