"""The monitoring job: deferred after each ledger commit, idempotent, opening and joining cases;
the rules' settings as admins edit them; row-level security on the case tables."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from portal.compliance.aml import listeners, monitoring, tasks
from portal.compliance.aml.models import MonitoringAlert, MonitoringRule
from portal.compliance.cases.models import CaseEvent, CaseEventKind, CaseStatus, SuspiciousActivity
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.platform import jobs
from tests.compliance.factories import old_student, structured_case
from tests.compliance.helpers import transfer
from tests.factories import create_user
from tests.money.factories import fund

TASK = "portal.compliance.aml.tasks.monitor_transactions"


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _queued(before: set[int]) -> list[dict]:
    return [job for job_id, job in jobs.job_app.connector.jobs.items()
            if job_id not in before and job["task_name"] == TASK]


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


# -- deferral ---------------------------------------------------------------------------------------


def test_a_ledger_commit_defers_the_job_with_its_transaction_ids():
    before = set(jobs.job_app.connector.jobs)
    alice, bob = old_student(), old_student()
    deposit = fund(alice, "100")
    sent = transfer(alice, bob, "10")
    assert _queued(before) == []  # nothing before the commit
    db.session.commit()
    [job] = _queued(before)
    assert job["args"] == {"transaction_ids": [str(deposit.id), str(sent.id)]}
    assert job["queue_name"] == "monitoring"


def test_rolled_back_movements_defer_nothing():
    before = set(jobs.job_app.connector.jobs)
    fund(old_student(), "100")
    db.session.rollback()
    db.session.commit()
    assert _queued(before) == []


def test_a_queue_that_fails_does_not_fail_the_commit(monkeypatch, caplog):
    def broken(**kwargs):
        raise ConnectionError("queue down")

    monkeypatch.setattr(tasks.monitor_transactions, "defer", broken)
    assert listeners.defer_monitoring(["a", "b"]) == 0
    assert "could not defer transaction monitoring" in caplog.text


def test_the_listener_defers_through_the_queues_public_call(monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "defer_now", lambda job, **kwargs: calls.append((job, kwargs)))
    assert listeners.defer_monitoring(["a"]) == 1
    assert calls == [(tasks.monitor_transactions, {"transaction_ids": ["a"]})]


def test_defer_now_puts_the_job_in_the_queue_at_once():
    before = set(jobs.job_app.connector.jobs)
    jobs.defer_now(tasks.monitor_transactions, transaction_ids=["x"])
    [job] = _queued(before)
    assert job["args"] == {"transaction_ids": ["x"]}


def test_large_commits_are_split_into_batches(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.monitor_transactions, "defer", lambda **kw: sent.append(kw["transaction_ids"]))
    ids = [f"id-{i}" for i in range(tasks.BATCH * 2 + 5)]
    assert listeners.defer_monitoring(ids) == 3
    assert [len(batch) for batch in sent] == [tasks.BATCH, tasks.BATCH, 5]
    assert sum(sent, []) == ids


# -- the job ----------------------------------------------------------------------------------------


def test_the_job_is_idempotent_and_acts_as_the_worker():
    alice, bob = old_student(), old_student()
    fund(alice, "20000")
    tx = transfer(alice, bob, "12000")  # large for both: sent by Alice, received by Bob
    db.session.flush()
    assert tasks.monitor_transactions(transaction_ids=[str(tx.id)]) == 2
    assert tasks.monitor_transactions(transaction_ids=[str(tx.id)]) == 0  # a second run adds nothing
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id == tx.id) == 2
    for user in (alice, bob):
        assert _count(SuspiciousActivity, SuspiciousActivity.user_id == user.id) == 1
        assert _count(CaseEvent, CaseEvent.case_id == db.session.scalar(
            select(MonitoringAlert.case_id).where(MonitoringAlert.transaction_id == tx.id,
                                                  MonitoringAlert.user_id == user.id))) == 1
    actor = db.session.execute(text(
        """SELECT actor FROM audit_log WHERE "tableName" = 'monitoring_alerts' ORDER BY "createdAt" DESC LIMIT 1""")
    ).scalar()
    assert actor == "system:worker"


def test_ordinary_movements_raise_no_alert_and_no_case():
    alice, bob = old_student(), old_student()
    fund(alice, "300")
    txs = [transfer(alice, bob, "20"), transfer(bob, alice, "5")]
    db.session.flush()
    assert tasks.monitor_transactions(transaction_ids=[str(t.id) for t in txs]) == 0
    assert _count(SuspiciousActivity, SuspiciousActivity.user_id.in_([alice.id, bob.id])) == 0


def test_malformed_or_unknown_ids_are_ignored():
    assert monitoring.monitor(["not-a-uuid", "00000000-0000-0000-0000-000000000000"]) == []


def test_a_structured_series_opens_a_case_and_a_later_alert_joins_it():
    subject, recipient = old_student(), old_student()
    case = structured_case(subject, recipient=recipient)
    assert case.status == CaseStatus.OPEN and case.user_id == subject.id
    alerts = db.session.scalars(select(MonitoringAlert).where(MonitoringAlert.user_id == subject.id)
                                .order_by(MonitoringAlert.created_at)).all()
    assert [a.case_id for a in alerts] == [case.id] * len(alerts)
    last_rules = {r["rule"] for r in alerts[-1].rules}
    assert "structuring" in last_rules
    assert alerts[-1].risk_score == min(100, sum(r["score"] for r in alerts[-1].rules))
    assert (case.due_at - case.detected_at).days == 30
    # The recipient of the whole series tripped the rules on their side too: a case of their own.
    [recipient_case] = db.session.scalars(select(SuspiciousActivity)
                                          .where(SuspiciousActivity.user_id == recipient.id)).all()
    assert recipient_case.id != case.id
    assert "structuring" in {r["rule"] for r in db.session.scalars(
        select(MonitoringAlert).where(MonitoringAlert.user_id == recipient.id)
        .order_by(MonitoringAlert.created_at.desc())).first().rules}
    # Later: a large movement joins each side's case.
    later = transfer(subject, recipient, "10000")
    db.session.flush()
    by_user = {alert.user_id: alert for alert in monitoring.monitor([later.id])}
    assert by_user[subject.id].case_id == case.id
    assert by_user[recipient.id].case_id == recipient_case.id
    assert _count(SuspiciousActivity, SuspiciousActivity.user_id == subject.id) == 1
    kinds = db.session.scalars(select(CaseEvent.kind).where(CaseEvent.case_id == case.id)).all()
    assert kinds.count(CaseEventKind.CREATED) == 1 and kinds.count(CaseEventKind.ALERT) == len(alerts)


def test_each_side_of_a_transfer_gets_its_own_alert_and_case():
    """A new account receiving a large amount: the sender's side trips the large-amount rule, the
    recipient's the large-amount and new-account rules; each side is alerted, each on its case."""
    sender, newcomer = old_student(), create_user("student")
    fund(sender, "20000")
    tx = transfer(sender, newcomer, "11000")
    db.session.flush()
    alerts = {alert.user_id: alert for alert in monitoring.monitor([tx.id])}
    assert set(alerts) == {sender.id, newcomer.id}
    assert {r["rule"] for r in alerts[sender.id].rules} == {"large_amount"}
    assert {r["rule"] for r in alerts[newcomer.id].rules} == {"large_amount", "new_account"}
    assert alerts[newcomer.id].risk_score > alerts[sender.id].risk_score
    sender_case = db.session.get(SuspiciousActivity, alerts[sender.id].case_id)
    newcomer_case = db.session.get(SuspiciousActivity, alerts[newcomer.id].case_id)
    assert (sender_case.user_id, newcomer_case.user_id) == (sender.id, newcomer.id)
    assert sender_case.title == "Large amount: 11,000.00 USD sent"
    assert newcomer_case.title == "Large amount and new account moving high value: 11,000.00 USD received"
    # Running the rules again, as a job retried or a sweep would, adds nothing on either side.
    assert monitoring.monitor([tx.id]) == []
    assert tasks.monitor_transactions(transaction_ids=[str(tx.id)]) == 0
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id == tx.id) == 2
    assert _count(SuspiciousActivity, SuspiciousActivity.user_id.in_([sender.id, newcomer.id])) == 2


def test_a_side_already_alerted_is_skipped_and_the_other_still_judged():
    """An alert that exists for one side (a job that stopped half way) leaves that side alone;
    the other side is judged and alerted."""
    alice, bob = old_student(), old_student()
    fund(alice, "20000")
    tx = transfer(alice, bob, "12000")
    db.session.flush()
    settings = monitoring.load_settings()
    sent = monitoring.evaluate(monitoring.Movement(tx.id, alice.id, alice.created_at, "out", tx.amount, tx.currency,
                                                   tx.created_at), settings)
    first = monitoring._record(sent)
    assert first is not None and monitoring._record(sent) is None
    [alert] = monitoring.monitor([tx.id])
    assert alert.user_id == bob.id
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id == tx.id) == 2


def test_fee_legs_and_holds_are_not_judged():
    from portal.money.wallets import ledger
    from portal.money.wallets.models import SystemWallet, TransactionType

    alice = old_student()
    fund(alice, "50000")
    wallet = ledger.open_user_wallet(alice.id, "USD")
    [fee] = ledger.post([ledger.Leg(wallet, ledger.system_wallet(SystemWallet.FEES, "USD"), Decimal("20000"),
                                    TransactionType.FEE, "Fee")])
    [held] = ledger.hold([ledger.Leg(wallet, ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD"),
                                     Decimal("15000"), TransactionType.WITHDRAWAL, "Withdrawal")])
    assert monitoring.monitor([fee.id, held.id]) == []
    [captured] = ledger.capture([held])
    [alert] = monitoring.monitor([captured.id])
    assert alert.transaction_id == captured.id


# -- settings ---------------------------------------------------------------------------------------


def test_admin_settings_override_the_defaults():
    admin = create_user("admin")
    alice, bob = old_student(), old_student()
    fund(alice, "20000")
    tx = transfer(alice, bob, "12000")
    db.session.flush()
    monitoring.save_rule(admin, "large_amount", enabled=False, raw={"score": "40", "window_hours": "24"})
    assert monitoring.monitor([tx.id]) == []
    monitoring.save_rule(admin, "large_amount", enabled=True,
                         raw={"score": "55", "window_hours": "24", "amount_USD": "15000"})
    settings = monitoring.load_settings()
    assert settings.large_amounts["USD"] == Decimal("15000.00") and "USD" in settings.overridden
    assert monitoring.monitor([tx.id]) == []  # 12,000 is under the new large amount
    other = transfer(alice, bob, "4000")
    db.session.flush()
    [alert] = [a for a in monitoring.monitor([other.id]) if a.user_id == alice.id]  # 16,000 within the window
    assert alert.rules[0]["rule"] == "large_amount" and alert.rules[0]["score"] == 55
    monitoring.reset_rule(admin, "large_amount")
    assert db.session.scalar(select(MonitoringRule).where(MonitoringRule.name == "large_amount")) is None
    assert monitoring.load_settings().large_amounts["USD"] == Decimal("10000.00")


@pytest.mark.parametrize(("name", "raw", "field", "message"), [
    ("structuring", {"score": "35", "lower_percent": "120", "days": "3", "min_count": "3"}, "lower_percent",
     "between 50 and 99"),
    ("structuring", {"score": "35", "lower_percent": "80", "days": "", "min_count": "3"}, "days", "whole number"),
    ("velocity", {"score": "-1", "window_hours": "24", "max_count": "10", "max_sum_percent": "150"}, "score",
     "whole number"),
    ("velocity", {"score": "2.5", "window_hours": "24", "max_count": "10", "max_sum_percent": "150"}, "score",
     "whole number"),
    ("large_amount", {"score": "40", "window_hours": "24", "amount_USD": "ten"}, "amount_USD", "Large amount in USD"),
    ("large_amount", {"score": "40", "window_hours": "24", "amount_BTC": "0.123456789"}, "amount_BTC",
     "decimal places"),
])
def test_invalid_settings_are_refused_with_the_field(name, raw, field, message):
    admin = create_user("admin")
    with pytest.raises(monitoring.InvalidRuleSettings, match=message) as refused:
        monitoring.save_rule(admin, name, enabled=True, raw=raw)
    assert refused.value.field == field
    assert db.session.scalar(select(MonitoringRule).where(MonitoringRule.name == name)) is None


# -- row-level security -----------------------------------------------------------------------------


def test_a_student_sees_no_case_rows_even_their_own():
    subject = old_student()
    structured_case(subject)
    db.session.flush()
    with acting_as(Actor.for_user(subject.id, "student"), db.session):
        for table in ("suspicious_activities", "monitoring_alerts", "case_events"):
            assert db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0, table
    with acting_as(Actor.for_user(create_user("faculty").id, "faculty"), db.session):
        assert db.session.execute(text("SELECT count(*) FROM suspicious_activities")).scalar() == 0
    officer = create_user("compliance")
    with acting_as(Actor.for_user(officer.id, "compliance"), db.session):
        assert db.session.execute(text("SELECT count(*) FROM suspicious_activities")).scalar() >= 1
        assert db.session.execute(text("SELECT count(*) FROM case_events")).scalar() >= 1


def _sweep_cursor_at(at) -> None:
    from portal.compliance.aml.models import MonitoringCursor

    cursor = db.session.scalar(select(MonitoringCursor).where(MonitoringCursor.name == tasks.CURSOR))
    if cursor is None:
        db.session.add(MonitoringCursor(name=tasks.CURSOR, checked_until=at))
    else:
        cursor.checked_until = at
    db.session.flush()


def test_the_sweep_judges_movements_whose_job_never_ran():
    from datetime import timedelta

    alice, bob = old_student(), old_student()
    fund(alice, "30000")
    tx = transfer(alice, bob, "12000")
    db.session.flush()
    _sweep_cursor_at(tx.created_at - timedelta(minutes=30))
    delay = timedelta(minutes=tasks.SWEEP_DELAY_MINUTES)
    tasks.sweep_backlog(now=tx.created_at + delay)  # judges the funding before it, not the transfer
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id == tx.id) == 0  # not settled yet
    assert _sweep_watermark() == tx.created_at
    assert tasks.sweep_backlog(now=tx.created_at + delay + timedelta(minutes=1)) >= 2
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id == tx.id) == 2  # the sender's and Bob's
    assert tasks.sweep_backlog(now=tx.created_at + delay + timedelta(minutes=2)) == 0  # nothing twice
    assert "portal.compliance.aml.tasks.sweep_unjudged" in jobs.job_app.tasks


def test_the_sweep_catches_up_a_long_outage_each_movement_once(monkeypatch):
    from datetime import timedelta

    import time_machine

    from portal.db.base import utcnow

    alice, bob = old_student(), old_student()
    fund(alice, "40000")
    now = utcnow()
    down_since = now - timedelta(hours=2)
    moves = []
    for i, minutes in enumerate(range(10, 120, 20)):  # the worker and the jobs were down meanwhile
        with time_machine.travel(down_since + timedelta(minutes=minutes), tick=False):
            moves.append(transfer(alice, bob, "12000" if i % 2 else "5"))
    db.session.flush()
    _sweep_cursor_at(down_since)
    judged = []
    real = monitoring.monitor
    monkeypatch.setattr(monitoring, "monitor", lambda ids: judged.extend(ids) or real(ids))
    monkeypatch.setattr(tasks, "SWEEP_BATCH", 2)
    monkeypatch.setattr(tasks, "SWEEP_BATCHES", 1)
    runs = 0
    while runs < 200 and tasks.sweep_backlog(now=now) is not None and _sweep_watermark() < now - timedelta(
            minutes=tasks.SWEEP_DELAY_MINUTES):
        runs += 1
    mine = [tx.id for tx in moves]
    assert runs >= 2
    assert [i for i in judged if i in set(mine)] == mine  # each once, oldest first
    assert _count(MonitoringAlert, MonitoringAlert.transaction_id.in_(mine[1::2])) == 6  # both sides of 3 large
    assert _sweep_watermark() == now - timedelta(minutes=tasks.SWEEP_DELAY_MINUTES)


def _sweep_watermark():
    from portal.compliance.aml.models import MonitoringCursor

    return db.session.scalar(select(MonitoringCursor.checked_until).where(MonitoringCursor.name == tasks.CURSOR))
