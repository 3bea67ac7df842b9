"""Billing periods anchored on the start day, with month ends and leap years, in UTC."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from portal.money.billing import periods
from tests.money.billing.helpers import utc


def test_started_31_january_renews_on_the_last_day_of_february_then_31_march():
    anchor = utc(2026, 1, 31, 9, 30)
    ends = [periods.period_bounds(anchor, 1, n)[1] for n in range(4)]
    assert ends == [utc(2026, 2, 28, 9, 30), utc(2026, 3, 31, 9, 30), utc(2026, 4, 30, 9, 30),
                    utc(2026, 5, 31, 9, 30)]


def test_in_a_leap_year_february_ends_on_the_29th():
    anchor = utc(2028, 1, 31)
    assert periods.period_bounds(anchor, 1, 0) == (utc(2028, 1, 31), utc(2028, 2, 29))
    assert periods.period_bounds(anchor, 1, 1) == (utc(2028, 2, 29), utc(2028, 3, 31))


def test_yearly_from_29_february_keeps_the_29th_for_the_next_leap_year():
    anchor = utc(2024, 2, 29)
    assert [periods.period_bounds(anchor, 12, n)[0] for n in range(5)] == [
        utc(2024, 2, 29), utc(2025, 2, 28), utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)]


def test_two_years_of_monthly_renewals_from_the_30th_keep_the_anchor_day():
    anchor = utc(2027, 1, 30, 23, 59)
    starts = [periods.period_bounds(anchor, 1, n)[0] for n in range(25)]
    expected_days = [30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,   # 2027: February has 28
                     30, 29, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,   # 2028: a leap year
                     30]
    assert [s.day for s in starts] == expected_days
    assert [(s.year, s.month) for s in starts][:3] == [(2027, 1), (2027, 2), (2027, 3)]
    assert starts[-1] == utc(2029, 1, 30, 23, 59)
    # Consecutive periods meet: each period ends where the next starts.
    for n in range(24):
        assert periods.period_bounds(anchor, 1, n)[1] == periods.period_bounds(anchor, 1, n + 1)[0]


def test_index_at_finds_the_period_containing_a_moment():
    anchor = utc(2026, 1, 31)
    assert periods.index_at(anchor, 1, utc(2026, 2, 27, 23)) == 0
    assert periods.index_at(anchor, 1, utc(2026, 2, 28)) == 1
    assert periods.index_at(anchor, 1, utc(2026, 3, 30)) == 1
    assert periods.index_at(anchor, 1, utc(2026, 3, 31)) == 2
    assert periods.index_at(anchor, 12, utc(2030, 1, 30)) == 3
    assert periods.index_at(anchor, 1, utc(2025, 1, 1)) == 0


def test_times_in_other_zones_are_taken_in_utc_and_naive_times_refused():
    from datetime import datetime

    plus_five = timezone(timedelta(hours=5))
    # 1 March 02:00 at +05:00 is 28 February 21:00 UTC: the anchor day is the 28th.
    start = datetime(2026, 3, 1, 2, 0, tzinfo=plus_five)
    assert periods.add_months(start, 1) == utc(2026, 3, 28, 21, 0)
    with pytest.raises(ValueError, match="time zone"):
        periods.add_months(datetime(2026, 1, 1), 1)
