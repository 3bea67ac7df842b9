"""The risk assessment: deterministic points, bands, limits and reasons."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from portal.money.lending.assessment import Facts, assess, facts_for
from tests.compliance.factories import verify
from tests.factories import create_user

BASE = Facts(kyc_level=2, account_days=400, certificates=0, earnings=0, loans_repaid=0, loans_written_off=0,
             overdue_instalments=0, aml_status=None)


def with_(**changes):
    return Facts(**(BASE.__dict__ | changes))


def test_points_add_up_line_by_line():
    judged = assess(with_(certificates=2, earnings=5, loans_repaid=1, aml_status="clear"), D("4000"), "USD")
    assert [(x.factor, x.points) for x in judged.lines] == [
        ("Identity", 25), ("Account age", 20), ("Learning record", 10), ("Earnings", 10),
        ("Repayment history", 5), ("AML screening", 10)]
    assert (judged.score, judged.band, judged.limit, judged.rate_margin) == (80, "A", D("4000.00"), D("0"))
    assert judged.eligible and judged.reasons == []


@pytest.mark.parametrize("changes, band, limit, margin", [
    ({}, "C", "2000.00", "4"),  # 45
    ({"account_days": 100}, "D", "1000.00", "7"),  # 35
    ({"certificates": 2}, "B", "3000.00", "2"),  # 55
    ({"kyc_level": 1, "account_days": 10}, "E", "0", "0"),  # 10
])
def test_bands(changes, band, limit, margin):
    judged = assess(with_(**changes), D("4000"), "USD")
    assert (judged.band, judged.limit, judged.rate_margin) == (band, D(limit), D(margin))


@pytest.mark.parametrize("changes, reason", [
    ({"kyc_level": 0, "certificates": 4, "earnings": 5}, "identity is not verified"),
    ({"aml_status": "pending_review", "certificates": 4}, "compliance officer"),
    ({"loans_written_off": 1, "certificates": 4, "loans_repaid": 3}, "written off"),
])
def test_not_eligible_whatever_the_score(changes, reason):
    judged = assess(with_(**changes), D("4000"), "USD")
    assert not judged.eligible and judged.limit == 0
    assert any(reason in r for r in judged.reasons)


def test_arrears_cost_points():
    assert assess(with_(overdue_instalments=3), D("4000"), "USD").score == 35


def test_same_facts_same_answer():
    assert assess(BASE, D("999.99"), "USD") == assess(BASE, D("999.99"), "USD")
    assert assess(BASE, D("999.99"), "USD").limit == D("499.99")  # rounded down, never up


def test_facts_are_read_from_the_portal():
    student = create_user("student")
    verify(student, 2)
    facts = facts_for(student.id, date.today())
    assert facts.kyc_level == 2 and facts.certificates == 0 and facts.loans_repaid == 0
    assert facts.aml_status is None
