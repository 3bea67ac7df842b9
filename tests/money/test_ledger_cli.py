"""``flask ledger verify``, the nightly verification job, and the metric both record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, text

from portal.db import db
from portal.db.audit import AuditLog
from portal.money.wallets import admin_services, ledger, tasks
from portal.money.wallets.models import SystemWallet, TransactionType, Wallet
from portal.platform.analytics.models import Metric
from tests.factories import create_user


def _fund(user, amount: str, code: str = "USD") -> Wallet:
    wallet = ledger.open_user_wallet(user.id, code)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
    ledger.post([ledger.Leg(deposits, wallet, Decimal(amount), TransactionType.DEPOSIT, "Test deposit")])
    return wallet


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def _metrics() -> list[Metric]:
    return list(db.session.scalars(select(Metric).where(Metric.name == admin_services.VERIFICATION_METRIC)
                                   .order_by(Metric.recorded_at.desc())))


def _tamper(wallet: Wallet, by: str = "1.00") -> None:
    """Change a balance behind the ledger's back, as a bug or an intruder with the app role's
    rights could: the app role may UPDATE ``wallets`` (not ``transactions``)."""
    with ledger.as_ledger():
        db.session.execute(text("UPDATE wallets SET balance = balance + CAST(:by AS numeric) WHERE id = :id"),
                           {"by": by, "id": wallet.id})
    db.session.expire_all()


def test_verify_prints_what_it_checked_records_a_metric_and_exits_zero(cli):
    alice, bob = create_user("student"), create_user("student")
    a = _fund(alice, "100")
    _fund(bob, "2.5", "AZR")
    ledger.post([ledger.Leg(a, ledger.open_user_wallet(bob.id, "USD"), Decimal("30"), TransactionType.TRANSFER)])
    before = len(_metrics())

    result = cli("ledger", "verify")

    assert result.exit_code == 0, result.output
    assert "Checked " in result.output and " wallets and " in result.output
    for code in ("AZR", "USD", "BTC", "ETH"):
        assert f"{code}: balances sum to 0" in result.output
    assert "The ledger verifies" in result.output
    metrics = _metrics()
    assert len(metrics) == before + 1
    latest = metrics[0]
    assert latest.value == 0
    labels = latest.labels
    assert labels["ok"] is True and labels["problems"] == [] and labels["problem_count"] == 0
    assert labels["wallets"] >= 5 and labels["transactions"] >= 3
    assert Decimal(labels["currencies"]["USD"]) == 0
    assert all(isinstance(v, str) for v in labels["currencies"].values())  # exact text, never floats
    assert labels["ran_by"] == "flask ledger verify"
    # written by the CLI's named actor (the audit trail says so)
    actor = db.session.scalar(select(AuditLog.actor).where(AuditLog.table_name == "metrics",
                                                           AuditLog.row_id == str(latest.id)))
    assert actor == "system:cli"


def test_a_tampered_balance_is_reported_recorded_and_exits_non_zero(cli):
    alice = create_user("student")
    wallet = _fund(alice, "100")
    _tamper(wallet, "1.00")

    result = cli("ledger", "verify")

    assert result.exit_code == 1, result.output
    assert "USD: balances sum to 1.00 USD (DIFFERS)" in result.output
    assert "2 difference(s)" in result.output
    assert f"user wallet {wallet.id} (USD): balance 101" in result.output
    assert "its transactions add up to 100" in result.output
    latest = _metrics()[0]  # kept although the command failed
    assert latest.value == 2
    assert latest.labels["ok"] is False and latest.labels["problem_count"] == 2
    assert any(str(wallet.id) in p for p in latest.labels["problems"])
    assert Decimal(latest.labels["currencies"]["USD"]) == Decimal("1")

    # repaired (the same way back): verifies again
    _tamper(wallet, "-1.00")
    assert cli("ledger", "verify").exit_code == 0


def test_a_tampered_locked_balance_is_reported_too(cli):
    wallet = _fund(create_user("student"), "10")
    with ledger.as_ledger():
        db.session.execute(text('UPDATE wallets SET "lockedBalance" = 3 WHERE id = :id'), {"id": wallet.id})
    result = cli("ledger", "verify")
    assert result.exit_code == 1
    assert "locked 3" in result.output and "its open holds add up to 0" in result.output


def test_the_labels_keep_the_first_problems_and_the_exact_count():
    report = ledger.Verification(wallets=3, transactions=9, currencies={"USD": Decimal("0.10")},
                                 problems=[f"problem {n} " + "x" * 400 for n in range(120)])
    labels = admin_services.verification_labels(report, "someone")
    assert labels["problem_count"] == 120 and labels["truncated"] is True
    assert len(labels["problems"]) == admin_services.MAX_RECORDED_PROBLEMS
    assert all(len(p) <= admin_services.MAX_PROBLEM_LENGTH for p in labels["problems"])
    assert labels["problems"][0].startswith("problem 0 ") and labels["problems"][0].endswith("\u2026")
    assert labels["currencies"] == {"USD": "0.10"}


def test_the_nightly_job_is_scheduled_and_records_the_result(app):
    from portal.platform import jobs

    name = "portal.money.wallets.tasks.verify_ledger_nightly"
    assert name in jobs.job_app.tasks
    assert any(p.task.name == name and p.cron == "15 3 * * *" for p in jobs.job_app.periodic_registry.periodic_tasks.values())
    wallet = _fund(create_user("student"), "5")
    assert tasks.verify_ledger_nightly(0) == 0
    assert _metrics()[0].labels["ran_by"] == "the nightly job"
    _tamper(wallet)
    assert tasks.verify_ledger_nightly(0) == 2
    latest = _metrics()[0]
    assert latest.value == 2 and latest.labels["ran_by"] == "the nightly job"
