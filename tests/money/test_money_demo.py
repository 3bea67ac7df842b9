"""The money demo data: pairs and a month of rates, fee rules, milestones, opening balances and
transfers between the demo students; idempotent, and the ledger verifies after it, at scale too."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal import demo
from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.money import demo as money_demo
from portal.money.earnings.models import Milestone, MilestoneKind
from portal.money.exchange.models import CurrencyPair, ExchangeRate
from portal.money.lending.models import LoanProduct
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction, TransactionFee, TransactionType, Wallet


@pytest.fixture(autouse=True)
def demo_logins_file(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CREDENTIALS_FILE", tmp_path / "demo-logins.txt")


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def _count(model, *where) -> int:
    with ledger.as_ledger():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _totals() -> tuple[int, ...]:
    return tuple(_count(m) for m in (CurrencyPair, ExchangeRate, TransactionFee, Milestone, LoanProduct, Wallet,
                                     Transaction))


def _user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def test_the_demo_has_money_and_seeding_twice_adds_nothing(cli):
    result = cli("seed-demo")
    assert result.exit_code == 0, result.output
    first = _totals()
    assert cli("seed-demo").exit_code == 0
    assert _totals() == first

    product = db.session.scalars(select(LoanProduct).where(LoanProduct.name == "Student micro-loan")).one()
    assert product.currency == "USD" and product.max_amount == Decimal("3000")

    pairs = {p.symbol: p for p in db.session.scalars(select(CurrencyPair))}
    assert {"AZR/USD", "BTC/USD", "ETH/USD", "AZR/BTC"} <= set(pairs)
    for symbol in ("AZR/USD", "BTC/USD", "ETH/USD", "AZR/BTC"):
        rates = db.session.scalars(select(ExchangeRate).where(ExchangeRate.pair_id == pairs[symbol].id)
                                   .order_by(ExchangeRate.observed_at.desc())).all()
        assert len(rates) == money_demo.HISTORY_DAYS + 1
        assert (utcnow() - rates[0].observed_at).total_seconds() < 600  # a fresh rate now
        assert len({r.observed_at.date() for r in rates}) >= money_demo.HISTORY_DAYS  # one a day
        assert all(r.rate > 0 for r in rates)
    latest = {s: db.session.scalar(select(ExchangeRate.rate).where(ExchangeRate.pair_id == pairs[s].id)
                                   .order_by(ExchangeRate.observed_at.desc()).limit(1)) for s in pairs}
    assert latest["BTC/USD"] == Decimal("97250.00")
    assert abs(latest["AZR/BTC"] - Decimal("0.2475") / Decimal("97250")) < Decimal("1e-11")

    admin = _user("admin@azora.example")
    transfer_usd = db.session.scalar(select(TransactionFee).where(TransactionFee.transaction_type == TransactionType.TRANSFER,
                                                                  TransactionFee.currency == "USD"))
    assert transfer_usd.percent == Decimal("0.5") and transfer_usd.minimum == Decimal("0.01")
    assert transfer_usd.updated_by_id == admin.id
    # The demo's own milestones (other tests may have committed milestones of their own).
    demo_titles = [spec["title"] for spec in money_demo.MILESTONES]
    milestones = {m.kind: m for m in db.session.scalars(select(Milestone).where(Milestone.title.in_(demo_titles)))}
    assert milestones[MilestoneKind.COURSE_COMPLETED].reward_amount == Decimal(50)
    assert milestones[MilestoneKind.QUIZ_PASSED].min_score == Decimal(80)
    assert milestones[MilestoneKind.STREAK].streak_days == 3
    assert all(m.created_by_id == admin.id for m in milestones.values())

    student = _user("student@azora.example")
    with ledger.as_ledger():
        azr = ledger.user_wallet(student.id, "AZR")
    # 250 opening, 25 sent with its 0.5 % fee, 40 received, as the demo transfers say
    assert azr.balance == Decimal("250") - Decimal("25") - Decimal("0.125") + Decimal("40")
    transfers = _count(Transaction, Transaction.type == TransactionType.TRANSFER)
    fee_legs = _count(Transaction, Transaction.type == TransactionType.FEE)
    assert transfers >= len(money_demo.TRANSFERS) and fee_legs >= len(money_demo.TRANSFERS)
    report = ledger.verify()
    assert report.ok, report.problems


def test_a_later_run_enters_a_fresh_rate_for_pairs_whose_rates_went_stale(cli, app):
    from datetime import timedelta

    assert cli("seed-demo").exit_code == 0
    pair = db.session.scalar(select(CurrencyPair).where(CurrencyPair.base_currency == "AZR",
                                                        CurrencyPair.quote_currency == "USD"))
    max_age = app.config["EXCHANGE_RATE_MAX_AGE_SECONDS"]
    for rate in db.session.scalars(select(ExchangeRate).where(ExchangeRate.pair_id == pair.id)):
        rate.observed_at -= timedelta(seconds=max_age + 60)  # as if seeded long ago
    db.session.flush()
    before = _count(ExchangeRate)
    assert cli("seed-demo").exit_code == 0
    assert _count(ExchangeRate) == before + 1  # only the stale pair got a rate
    newest = db.session.scalar(select(ExchangeRate).where(ExchangeRate.pair_id == pair.id)
                               .order_by(ExchangeRate.observed_at.desc()).limit(1))
    assert (utcnow() - newest.observed_at).total_seconds() < 600
    assert abs(newest.rate / money_demo.RATES_NOW[("AZR", "USD")] - 1) < Decimal("0.1")


def test_the_scale_seeding_funds_each_student_with_a_hundred_rows_and_verifies(cli):
    before_rows = _count(Transaction)
    result = cli("seed-demo", "--scale", "30")
    assert result.exit_code == 0, result.output
    scale_ids = list(db.session.scalars(select(User.id).where(User.email.like("scale%@azora.example"))))
    assert len(scale_ids) == 30
    assert _count(Wallet, Wallet.user_id.in_(scale_ids)) == 60
    added = _count(Transaction) - before_rows
    small_demo = _count(Transaction, Transaction.details["from_name"].astext == "Deposit",
                        Transaction.debit_user_id.is_(None), Transaction.credit_user_id.not_in(scale_ids))
    scale_rows = _count(Transaction, (Transaction.debit_user_id.in_(scale_ids)) |
                        (Transaction.credit_user_id.in_(scale_ids)))
    assert scale_rows == 30 * money_demo.ROWS_PER_STUDENT
    assert added >= scale_rows + small_demo
    report = ledger.verify()
    assert report.ok, report.problems
    with ledger.as_ledger():
        balances = db.session.execute(select(Wallet.currency, Wallet.balance).where(Wallet.user_id.in_(scale_ids))).all()
        newest = db.session.scalar(select(func.max(Transaction.created_at))
                                   .where(Transaction.debit_user_id.in_(scale_ids)))
    assert all(balance >= 0 for _, balance in balances)
    assert sum(b for c, b in balances if c == "AZR") > 0 and newest <= utcnow()
    # each transfer has its fee leg, at the demo rule (0.5 %, at least 0.01)
    with ledger.as_ledger():
        pairs = db.session.execute(
            select(Transaction.group_id, Transaction.type, Transaction.amount)
            .where(Transaction.debit_user_id.in_(scale_ids[:3]))).all()
    groups: dict = {}
    for group, kind, amount in pairs:
        groups.setdefault(group, {})[kind] = amount
    assert groups and all(set(g) == {TransactionType.TRANSFER, TransactionType.FEE} for g in groups.values())
    for g in groups.values():
        expected = max((g[TransactionType.TRANSFER] * Decimal("0.005")).quantize(Decimal("0.01"), rounding="ROUND_CEILING"),
                       Decimal("0.01"))
        assert g[TransactionType.FEE] == expected

    # again: nothing more; a larger scale funds only the new students
    totals = _totals()
    assert cli("seed-demo", "--scale", "30").exit_code == 0
    assert _totals() == totals
    assert cli("seed-demo", "--scale", "33").exit_code == 0
    assert _count(Transaction) - totals[-1] == 3 * money_demo.ROWS_PER_STUDENT
    assert ledger.verify().ok
