"""Schedules against worked examples written out by hand.

Sources of the figures:
- Annuity: the textbook example of a 1,000 loan at 12% a year (1% a month) over 12 months, whose
  level payment is 88.85 and total interest 66.19 (e.g. any standard amortization table; the
  payment is 1000 * 0.01 / (1 - 1.01^-12) = 88.8488). The line by line table below is that
  example worked with each period's interest rounded to the cent, the last line absorbing the
  rounding, as Apache Fineract's schedule generator does.
- Flat: Fineract's flat interest method (interest = principal x annual rate x term in years,
  spread evenly over the instalments): 1,000 at 12% over 12 months costs 120.00, 10.00 each
  month; principal 83.33 a month, the last 83.37.
- Equal principal: 1,200 at 12% over 12 months repays 100.00 principal a month and interest on
  the declining balance: 12.00, 11.00, ... 1.00 (total 78.00).
- Effective annual rate: 12% nominal compounded monthly is (1.01)^12 - 1 = 12.68% a year.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from portal.money.lending import schedules as s

START = date(2026, 1, 15)


def rows(schedule):
    return [(line.principal, line.interest, line.balance) for line in schedule.instalments]


def test_annuity_1000_at_12_percent_over_12_months():
    schedule = s.build(s.Terms(D("1000.00"), D("12"), 12, START))
    expected = [  # principal, interest, balance after
        ("78.85", "10.00", "921.15"),
        ("79.64", "9.21", "841.51"),
        ("80.43", "8.42", "761.08"),
        ("81.24", "7.61", "679.84"),
        ("82.05", "6.80", "597.79"),
        ("82.87", "5.98", "514.92"),
        ("83.70", "5.15", "431.22"),
        ("84.54", "4.31", "346.68"),
        ("85.38", "3.47", "261.30"),
        ("86.24", "2.61", "175.06"),
        ("87.10", "1.75", "87.96"),
        ("87.96", "0.88", "0.00"),
    ]
    assert rows(schedule) == [tuple(D(x) for x in row) for row in expected]
    assert {line.total for line in schedule.instalments[:-1]} == {D("88.85")}
    assert schedule.instalments[-1].total == D("88.84")  # the rounding difference, carried last
    assert schedule.total_principal == D("1000.00")
    assert schedule.total_interest == D("66.19")
    assert [line.due_on for line in schedule.instalments[:3]] == [date(2026, 2, 15), date(2026, 3, 15),
                                                                  date(2026, 4, 15)]
    assert schedule.apr == D("12.68")


def test_flat_1000_at_12_percent_over_12_months():
    schedule = s.build(s.Terms(D("1000.00"), D("12"), 12, START, interest_method=s.FLAT))
    assert [line.interest for line in schedule.instalments] == [D("10.00")] * 12
    assert [line.principal for line in schedule.instalments] == [D("83.33")] * 11 + [D("83.37")]
    assert schedule.total_interest == D("120.00")
    assert schedule.total_principal == D("1000.00")
    # Flat costs more than declining balance at the same nominal rate: its APR is far higher.
    assert schedule.apr > D("21")


def test_equal_principal_1200_at_12_percent():
    schedule = s.build(s.Terms(D("1200.00"), D("12"), 12, START, amortization=s.EQUAL_PRINCIPAL))
    assert [line.principal for line in schedule.instalments] == [D("100.00")] * 12
    assert [line.interest for line in schedule.instalments] == [D(n) for n in range(12, 0, -1)]
    assert schedule.total_interest == D("78.00")


def test_equal_principal_rounding_goes_to_the_last_instalment():
    schedule = s.build(s.Terms(D("100.00"), D("0"), 3, START, amortization=s.EQUAL_PRINCIPAL))
    assert [line.principal for line in schedule.instalments] == [D("33.33"), D("33.33"), D("33.34")]
    assert schedule.total_principal == D("100.00")


def test_weekly_equal_principal():
    # 52% a year is 1% a week: 1,000 over 4 weeks repays 250 a week, interest 10, 7.50, 5, 2.50.
    schedule = s.build(s.Terms(D("1000.00"), D("52"), 4, START, frequency=s.WEEKLY,
                               amortization=s.EQUAL_PRINCIPAL))
    assert rows(schedule) == [(D("250.00"), D("10.00"), D("750.00")), (D("250.00"), D("7.50"), D("500.00")),
                              (D("250.00"), D("5.00"), D("250.00")), (D("250.00"), D("2.50"), D("0.00"))]
    assert [line.due_on for line in schedule.instalments] == [date(2026, 1, 22), date(2026, 1, 29),
                                                              date(2026, 2, 5), date(2026, 2, 12)]


def test_grace_on_principal_then_annuity():
    # Two months interest only (10.00), then 1,000 as an annuity over 4 months at 1%:
    # 1000 * 0.01 / (1 - 1.01^-4) = 256.28.
    schedule = s.build(s.Terms(D("1000.00"), D("12"), 6, START, grace=2))
    assert rows(schedule) == [
        (D("0.00"), D("10.00"), D("1000.00")), (D("0.00"), D("10.00"), D("1000.00")),
        (D("246.28"), D("10.00"), D("753.72")), (D("248.74"), D("7.54"), D("504.98")),
        (D("251.23"), D("5.05"), D("253.75")), (D("253.75"), D("2.54"), D("0.00")),
    ]


def test_flat_with_grace_spreads_principal_over_the_rest():
    schedule = s.build(s.Terms(D("900.00"), D("12"), 6, START, interest_method=s.FLAT, grace=3))
    assert [line.principal for line in schedule.instalments] == [D("0")] * 3 + [D("300.00")] * 3
    assert [line.interest for line in schedule.instalments] == [D("9.00")] * 6


def test_short_first_period_prorates_interest():
    # First due 15 days after disbursement: half a month's interest (5.00), the same instalment,
    # so the first instalment repays more principal (83.85).
    schedule = s.build(s.Terms(D("1000.00"), D("12"), 12, START, first_due_on=date(2026, 1, 30)))
    first = schedule.instalments[0]
    assert (first.interest, first.principal) == (D("5.00"), D("83.85"))
    assert schedule.instalments[1].due_on == date(2026, 2, 28)  # clamped to February's end
    assert schedule.instalments[2].due_on == date(2026, 3, 30)
    assert schedule.total_principal == D("1000.00")


def test_month_end_disbursement_keeps_its_day():
    schedule = s.build(s.Terms(D("300.00"), D("12"), 3, date(2026, 1, 31)))
    assert [line.due_on for line in schedule.instalments] == [date(2026, 2, 28), date(2026, 3, 31),
                                                              date(2026, 4, 30)]


def test_fee_raises_the_apr_and_the_cost():
    plain = s.build(s.Terms(D("1000.00"), D("12"), 12, START))
    with_fee = s.build(s.Terms(D("1000.00"), D("12"), 12, START, fee=D("20.00")))
    assert rows(plain) == rows(with_fee)
    assert with_fee.total_cost == D("86.19")
    assert with_fee.apr > plain.apr + D("3")
    # The APR is the rate at which the instalments are worth what was received (980).
    monthly = (1 + with_fee.apr / 100) ** (D(1) / 12) - 1
    assert abs(s._npv(monthly, D("980.00"), [x.total for x in with_fee.instalments])) < D("0.05")


def test_zero_rate_loan():
    schedule = s.build(s.Terms(D("100.00"), D("0"), 3, START))
    assert [line.total for line in schedule.instalments] == [D("33.33"), D("33.33"), D("33.34")]
    assert schedule.apr == D("0.00")


def test_eight_decimal_currency():
    schedule = s.build(s.Terms(D("1.00000000"), D("12"), 12, START, currency="AZR"))
    assert schedule.instalments[0].total == D("0.08884879")
    assert schedule.total_principal == D("1.00000000")


@pytest.mark.parametrize("change, field", [
    ({"principal": D("0")}, "amount"),
    ({"principal": D("1.001")}, "amount"),
    ({"annual_rate": D("-1")}, "rate"),
    ({"instalments": 0}, "term"),
    ({"frequency": "daily"}, "frequency"),
    ({"grace": 12}, "grace"),
    ({"fee": D("1000.00")}, "fee"),
    ({"first_due_on": START}, "first_due_on"),
])
def test_bad_terms_are_refused_with_the_field(change, field):
    args = {"principal": D("1000.00"), "annual_rate": D("12"), "instalments": 12, "disbursed_on": START} | change
    with pytest.raises(s.ScheduleError) as caught:
        s.Terms(**args)
    assert caught.value.field == field


def test_reamortize_after_prepayment_keeps_the_term():
    terms = s.Terms(D("1000.00"), D("12"), 12, START)
    schedule = s.build(terms)
    remaining = [line.due_on for line in schedule.instalments[2:]]
    lines = s.reamortize(terms, D("500.00"), remaining, schedule.instalments[1].due_on, first_number=3)
    assert [line.number for line in lines] == list(range(3, 13))
    assert sum(line.principal for line in lines) == D("500.00")
    assert lines[0].interest == D("5.00")
    # 500 over 10 months at 1%: 52.79 a month.
    assert lines[0].total == D("52.79")


def test_accrued_interest_prorated_by_days():
    terms = s.Terms(D("1000.00"), D("12"), 12, START)
    # 1,000 at 1% a month, 10 of February's 28 days... of the period 15 Feb - 15 Mar (28 days).
    assert s.accrued_interest(terms, D("1000.00"), date(2026, 2, 15), date(2026, 3, 15), date(2026, 2, 22)) == D("2.50")
    assert s.accrued_interest(terms, D("1000.00"), date(2026, 2, 15), date(2026, 3, 15), date(2026, 2, 15)) == D("0")
    assert s.accrued_interest(terms, D("1000.00"), date(2026, 2, 15), date(2026, 3, 15), date(2026, 4, 1)) == D("10.00")
