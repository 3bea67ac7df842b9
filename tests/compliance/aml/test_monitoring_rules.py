"""Each monitoring rule fires on its pattern and stays quiet on ordinary activity."""

from __future__ import annotations

import pytest

from portal.compliance.aml import monitoring
from tests.compliance.factories import old_student
from tests.compliance.helpers import transfer, withdraw
from tests.factories import create_user
from tests.money.factories import fund


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _fired(tx, side: str = "out") -> dict[str, monitoring.RuleResult]:
    """The rules that fired on ``tx`` from one side (``out``: the sender, ``in``: the recipient)."""
    from portal.accounts.models import User
    from portal.db import db

    user_id = tx.debit_user_id if side == "out" else tx.credit_user_id
    user = db.session.get(User, user_id)
    movement = monitoring.Movement(tx.id, user.id, user.created_at, side, tx.amount, tx.currency, tx.created_at)
    evaluation = monitoring.evaluate(movement, monitoring.load_settings())
    return {r.rule: r for r in evaluation.fired}


def test_ordinary_activity_fires_nothing():
    alice, bob = old_student(), old_student()
    fund(alice, "800")
    txs = [transfer(alice, bob, "25"), transfer(alice, bob, "40.50"), transfer(bob, alice, "10")]
    txs.append(withdraw(alice, "100"))
    for tx in txs:
        assert _fired(tx, "out") == {}
        if tx.credit_user_id:
            assert _fired(tx, "in") == {}
    assert monitoring.monitor([tx.id for tx in txs]) == []


def test_large_amount_fires_on_one_big_movement():
    alice, bob = old_student(), old_student()
    fund(alice, "15000")
    fired = _fired(transfer(alice, bob, "10000"))
    assert set(fired) == {"large_amount"}
    assert fired["large_amount"].score == 40
    assert "10,000.00 USD sent in one movement" in fired["large_amount"].detail
    # Just under the threshold, alone: nothing.
    carol = old_student()
    fund(carol, "9999")
    assert "large_amount" not in _fired(transfer(carol, bob, "6000"))


def test_large_amount_fires_on_the_sum_over_the_window():
    alice, bob = old_student(), old_student()
    fund(alice, "20000")
    assert _fired(transfer(alice, bob, "4000")) == {}
    assert _fired(transfer(alice, bob, "4000")) == {}
    fired = _fired(transfer(alice, bob, "2500"))
    assert "large_amount" in fired
    assert "10,500.00 USD sent within 1 day" in fired["large_amount"].detail
    # The recipient received the same sum: it fires on their side as well.
    assert "large_amount" in _fired(transfer(alice, bob, "10"), "in")


def test_structuring_fires_on_several_amounts_just_under_the_threshold():
    alice, bob = old_student(), old_student()
    fund(alice, "40000")
    first = transfer(alice, bob, "9500")
    assert "structuring" not in _fired(first)
    second = transfer(alice, bob, "9800")
    assert "structuring" not in _fired(second)
    third = transfer(alice, bob, "8100")
    fired = _fired(third)
    assert "structuring" in fired
    assert fired["structuring"].detail.startswith(
        "3 outgoing movements between 8,000.00 USD and just under 10,000.00 USD within 3 days")
    # A small movement after them is not itself structuring.
    assert "structuring" not in _fired(transfer(alice, bob, "50"))


def test_structuring_ignores_amounts_below_the_band():
    alice, bob = old_student(), old_student()
    fund(alice, "40000")
    for amount in ("7000", "7500", "7900", "7999.99"):
        assert "structuring" not in _fired(transfer(alice, bob, amount))


def test_velocity_fires_on_many_outgoing_movements():
    alice, bob = old_student(), old_student()
    fund(alice, "1000")
    results = [_fired(transfer(alice, bob, "5")) for _ in range(10)]
    assert all("velocity" not in r for r in results[:9])
    assert "velocity" in results[9]
    assert "10 outgoing movements within 1 day" in results[9]["velocity"].detail
    # Incoming movements do not count as the recipient's velocity.
    assert "velocity" not in _fired(transfer(alice, bob, "5"), "in")


def test_rapid_in_and_out_fires_when_money_is_passed_on():
    mule, source, onward = old_student(), old_student(), old_student()
    fund(source, "5000")
    transfer(source, mule, "2000")
    fired = _fired(transfer(mule, onward, "1700"))
    assert set(fired) == {"rapid_in_out"}
    assert "2,000.00 USD received and 1,700.00 USD (85 %) sent on within 60 minutes" in fired["rapid_in_out"].detail


def test_rapid_in_and_out_stays_quiet_when_most_money_stays():
    keeper, source, other = old_student(), old_student(), old_student()
    fund(source, "5000")
    transfer(source, keeper, "2000")
    assert "rapid_in_out" not in _fired(transfer(keeper, other, "500"))
    # Small amounts passed on are below the rule's floor (10 % of the large amount).
    small, payer = old_student(), old_student()
    fund(payer, "100")
    transfer(payer, small, "50")
    assert "rapid_in_out" not in _fired(transfer(small, other, "50"))


def test_new_account_moving_high_value():
    newcomer, old, sender = create_user("student"), old_student(), old_student()
    fund(sender, "20000")
    fired = _fired(transfer(sender, newcomer, "6000"), "in")
    assert set(fired) == {"new_account"}
    assert "Account opened 0 days ago has moved 6,000.00 USD (more than 5,000.00 USD)" in fired["new_account"].detail
    # The same amount into an account a year old: nothing.
    assert _fired(transfer(sender, old, "6000"), "in") == {}
    # A new account moving little: nothing.
    small = create_user("student")
    assert _fired(transfer(sender, small, "200"), "in") == {}


def test_risk_score_is_the_capped_sum_of_the_fired_rules(app):
    newcomer, sender = create_user("student"), old_student()
    fund(sender, "50000")
    fund(newcomer, "100")
    transfer(sender, newcomer, "30000")
    tx = transfer(newcomer, sender, "29000")  # large, new account, rapid in and out
    user_settings = monitoring.load_settings()
    from portal.db import db

    movement = monitoring.Movement(tx.id, newcomer.id, newcomer.created_at, "out", tx.amount, tx.currency,
                                   tx.created_at)
    db.session.flush()
    evaluation = monitoring.evaluate(movement, user_settings)
    assert {r.rule for r in evaluation.fired} == {"large_amount", "rapid_in_out", "new_account", "velocity"}
    assert sum(r.score for r in evaluation.fired) == 40 + 30 + 25 + 20
    assert evaluation.risk_score == 100  # capped


def test_the_demo_structured_series_opens_a_case_for_each_side():
    """The demo's case for the officers is made by the rules themselves: a new account deposits,
    then sends three amounts just under the large amount; running the seed again adds nothing."""
    from sqlalchemy import select

    from portal.compliance.aml.models import MonitoringAlert
    from portal.compliance.cases.models import SuspiciousActivity
    from portal.compliance.kyc import demo
    from portal.db import db

    sender, recipient = create_user("student"), create_user("student")
    made = demo.seed_monitoring_case(sender, recipient)
    assert made >= 4  # the deposit and each transfer, from the sender's side at least
    alerts = db.session.scalars(select(MonitoringAlert).where(
        MonitoringAlert.user_id.in_([sender.id, recipient.id]))).all()
    assert len(alerts) == made
    rules = {r["rule"] for a in alerts if a.user_id == sender.id for r in a.rules}
    assert {"structuring", "large_amount", "velocity", "new_account"} <= rules
    cases = db.session.scalars(select(SuspiciousActivity).where(
        SuspiciousActivity.user_id.in_([sender.id, recipient.id]))).all()
    assert {c.user_id for c in cases} == {sender.id, recipient.id}
    assert demo.seed_monitoring_case(sender, recipient) == 0
