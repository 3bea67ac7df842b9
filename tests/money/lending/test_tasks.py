"""The daily jobs with the clock under the test's control: penalties, automatic repayments,
collateral valuation, margin calls and liquidation."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.money.lending import services, tasks
from portal.money.lending.models import (
    Collateral,
    CollateralState,
    InstalmentState,
    LoanAccrual,
    LoanEvent,
    LoanState,
    Repayment,
    RepaymentSource,
)
from portal.money.wallets import ledger
from portal.platform.email.models import Email
from portal.platform.notifications.models import Notification
from tests.factories import create_user
from tests.money.factories import wallet_of
from tests.money.factories.exchange import make_pair, make_rate
from tests.money.lending.helpers import START, as_user, borrower, fund, lines, on, product, running_loan


@pytest.fixture
def student():
    return borrower()


@pytest.fixture
def prod():
    return product()


def accruals(loan):
    return db.session.scalar(select(func.count()).select_from(LoanAccrual).where(LoanAccrual.loan_id == loan.id))


def test_penalties_accrue_once_a_day_and_catch_up(student, prod):
    loan = running_loan(student, prod)
    # Instalment 1 (88.85, due 15 Feb) unpaid: 0.1% a day is 0.09 a day. The job did not run
    # for five days; the run of 20 Feb accrues 16-20 Feb, each once.
    with on(date(2026, 2, 20)):
        assert tasks.accrue_penalties(date(2026, 2, 20))["days_accrued"] == 5
        assert tasks.accrue_penalties(date(2026, 2, 20))["days_accrued"] == 0
    first, second = lines(loan)[:2]
    assert first.state == InstalmentState.OVERDUE and first.penalty == D("0.45")
    assert second.state == InstalmentState.DUE and second.penalty == 0
    assert accruals(loan) == 5
    with on(date(2026, 2, 21)):
        tasks.accrue_penalties(date(2026, 2, 21))
    assert lines(loan)[0].penalty == D("0.54") and accruals(loan) == 6


def test_a_repayment_pays_the_penalty_first(student, prod):
    loan = running_loan(student, prod)
    with on(date(2026, 2, 20)):
        tasks.accrue_penalties(date(2026, 2, 20))
        with as_user(student):
            services.repay(student, loan.id, "10.00", "repayment-key-00001")
    first = lines(loan)[0]
    assert (first.penalty_paid, first.interest_paid, first.principal_paid) == (D("0.45"), D("9.55"), D("0"))
    assert first.state == InstalmentState.OVERDUE
    with on(date(2026, 2, 20)), as_user(student):
        services.repay(student, loan.id, "79.30", "repayment-key-00002")
    assert lines(loan)[0].state == InstalmentState.PAID


def test_a_year_of_a_loan_repaid_automatically(student, prod):
    loan = running_loan(student, prod)
    fund(student, "200.00")
    with as_user(student):
        services.set_auto_repay(student, loan.id, True)
    day = START.date()
    while day <= date(2027, 1, 20):
        with on(day):
            tasks.run_daily(day)
        day += timedelta(days=1)
    assert loan.state == LoanState.CLOSED and loan.closed_on == date(2027, 1, 15)
    assert all(x.penalty == 0 and x.state == InstalmentState.PAID for x in lines(loan))
    repaid = db.session.scalars(select(Repayment).where(Repayment.loan_id == loan.id)).all()
    assert len(repaid) == 12 and {r.source for r in repaid} == {RepaymentSource.AUTOMATIC}
    assert sum(r.interest for r in repaid) == D("66.19")
    assert wallet_of(student).balance == D("980.00") + D("200.00") - D("1066.19")
    assert ledger.verify().ok


def test_auto_repayment_takes_what_the_wallet_has(student, prod):
    loan = running_loan(student, prod)
    with as_user(student):
        services.set_auto_repay(student, loan.id, True)
        # Spend all but 50.00 of the 980.00 paid out.
        ledger.post([ledger.Leg(wallet_of(student), ledger.system_wallet(services.SystemWallet.WITHDRAWALS, "USD"),
                                D("930.00"), services.TransactionType.WITHDRAWAL, "Spent")])
    with on(date(2026, 2, 15)):
        assert tasks.run_daily(date(2026, 2, 15))["auto_repaid"] == 1
        assert tasks.run_daily(date(2026, 2, 15))["auto_repaid"] == 0  # once a day
    first = lines(loan)[0]
    assert first.state == InstalmentState.PARTIALLY_PAID and first.principal_paid + first.interest_paid == D("50.00")
    with on(date(2026, 2, 16)):
        tasks.run_daily(date(2026, 2, 16))
    assert lines(loan)[0].state == InstalmentState.OVERDUE


@pytest.fixture
def pledged(student, prod):
    """A 1,000 USD loan with 0.05 BTC pledged; BTC at 40,000 USD: valued 2,000 less 30% = 1,400."""
    fund(student, "0.05", "BTC")
    pair = make_pair("BTC", "USD")
    officer = create_user("admin")
    with on(START):
        make_rate(pair, "40000")
        with as_user(student):
            loan = services.apply(student, prod.id, "1000.00", 12, "Laptop", "application-key-0001",
                                  collateral_currency="BTC", raw_collateral="0.05")
        with as_user(officer):
            services.approve(officer, loan.id)
            services.disburse(officer, loan.id)
    return loan, pair


def collateral_of(loan):
    db.session.expire_all()
    return db.session.scalars(select(Collateral).where(Collateral.loan_id == loan.id)).one()


def test_collateral_is_valued_with_the_haircut(pledged):
    loan, _pair = pledged
    with on(START):
        assert tasks.value_collaterals()["valued"] == 1
    collateral = collateral_of(loan)
    assert collateral.value == D("1400.00") and collateral.ltv == D("0.7143")
    assert collateral.state == CollateralState.PLEDGED


def test_a_falling_rate_brings_a_margin_call_once(pledged, student):
    loan, pair = pledged
    with on(START + timedelta(hours=1)):
        make_rate(pair, "36000")  # 1,260 after the haircut: LTV 0.7937
        assert tasks.value_collaterals()["margin_calls"] == 1
        assert tasks.value_collaterals()["margin_calls"] == 0
    assert collateral_of(loan).ltv == D("0.7937")
    assert db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == student.id, Notification.kind == "loan_margin_call")) == 1
    assert db.session.scalar(select(func.count()).select_from(Email).where(
        Email.user_id == student.id, Email.template == "loan_margin_call")) == 1


def test_liquidation_sells_enough_to_bring_the_ltv_back(pledged, student):
    loan, pair = pledged
    with on(START + timedelta(hours=1)):
        make_rate(pair, "30000")  # 1,050 after the haircut: LTV 0.9524
        assert tasks.value_collaterals()["liquidations"] == 1
    # Sell S with (1000 - 30000 S) = 0.75 * (0.05 - S) * 30000 * 0.7: S = 212.5 / 14250
    # = 0.01491229 BTC (rounded up), sold for 447.36 USD, all of it repaying principal.
    collateral = collateral_of(loan)
    assert collateral.liquidated_amount == D("0.01491229") and collateral.amount == D("0.03508771")
    assert wallet_of(student, "BTC").locked_balance == D("0.03508771")
    repaid = db.session.scalars(select(Repayment).where(Repayment.loan_id == loan.id)).one()
    assert repaid.source == RepaymentSource.LIQUIDATION and repaid.amount == D("447.36")
    assert repaid.principal == D("447.36")
    assert ledger.verify().ok


def test_a_stale_rate_never_liquidates(pledged):
    loan, pair = pledged
    with on(START + timedelta(days=2)):
        make_rate(pair, "10000", age_seconds=7200)  # older than the hour a rate is fresh for
        assert tasks.value_collaterals()["stale"] == 1
    collateral = collateral_of(loan)
    assert collateral.liquidated_amount == 0 and collateral.state == CollateralState.PLEDGED
    assert not db.session.scalar(select(func.count()).select_from(LoanEvent).where(
        LoanEvent.loan_id == loan.id, LoanEvent.kind == "liquidation"))


def test_collateral_is_released_on_full_repayment(pledged, student):
    loan, _pair = pledged
    fund(student, "100.00")
    with on(START), as_user(student):
        services.repay(student, loan.id, "1000.00", "repayment-key-00001")
    assert loan.state == LoanState.CLOSED
    assert collateral_of(loan).state == CollateralState.RELEASED
    assert wallet_of(student, "BTC").locked_balance == 0


def test_auto_repayment_can_be_switched_off(student, prod, app, monkeypatch):
    monkeypatch.setitem(app.config, "LENDING_AUTO_REPAY", False)
    loan = running_loan(student, prod)
    with as_user(student):
        services.set_auto_repay(student, loan.id, True)
    with on(date(2026, 2, 15)):
        assert "auto_repaid" not in tasks.run_daily(date(2026, 2, 15))
    assert lines(loan)[0].state == InstalmentState.DUE


def test_the_daily_job_is_registered():
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    assert "portal.money.lending.tasks.lending_daily" in job_app.tasks


def test_a_crash_sells_all_the_collateral_and_the_loan_runs_on(pledged, student):
    loan, pair = pledged
    with on(START + timedelta(hours=1)):
        make_rate(pair, "10000")  # 0.05 BTC is worth 500: all of it is sold, 500.00 repaid
        assert tasks.value_collaterals()["liquidations"] == 1
        assert tasks.value_collaterals().get("liquidations", 0) == 0  # nothing left pledged
    collateral = collateral_of(loan)
    assert collateral.state == CollateralState.LIQUIDATED and collateral.amount == 0
    assert wallet_of(student, "BTC").balance == 0 and wallet_of(student, "BTC").locked_balance == 0
    db.session.refresh(loan)
    assert loan.state == LoanState.ACTIVE
    assert sum(x.principal_paid for x in lines(loan)) == D("500.00")


def test_penalties_accrued_in_batches_match_one_loan_at_a_time(prod):
    """Many loans in different arrears (never accrued, accrued up to an earlier day, partly
    repaid, repaid, odd amounts that round half to even at the cent): the batched accrual, in
    batches smaller than the set, writes exactly the rows and penalties that accruing each loan
    on its own writes; a second run adds nothing."""
    from portal.money.lending.models import LoanInstalment

    odd = product(name="Odd loan", penalty_daily_percent=D("0.15"))
    loans = []
    for n in range(11):
        student = borrower(email=f"batch.{n}@tests.example")
        loan = running_loan(student, odd if n % 2 else prod, amount=str(D("150.00") + D("79.37") * n),
                            term=3 + n % 5, key=f"batch-application-{n:04d}")
        loans.append((student, loan))
    # Some history before the day: partial repayments, a loan accrued up to mid-March, one repaid.
    for n, (student, loan) in enumerate(loans):
        if n % 3 == 0:
            fund(student, "60.00")
            with on(date(2026, 2, 25)), as_user(student):
                services.repay(student, loan.id, "37.11", f"batch-repayment-{n:04d}")
        if n == 4:
            with on(date(2026, 3, 16)):
                tasks.accrue_loan(loan.id, date(2026, 3, 16))
    student, paid_up = loans[10]
    fund(student, "2000.00")
    with on(date(2026, 2, 10)), as_user(student):
        services.repay(student, paid_up.id, str(services.payoff_amount(paid_up)), "batch-repayment-payoff")
    ids = [loan.id for _, loan in loans]
    day = date(2026, 4, 20)

    def outcome():
        db.session.expire_all()
        rows = db.session.execute(select(LoanAccrual.loan_id, LoanAccrual.day, LoanAccrual.amount,
                                         LoanAccrual.overdue_instalments)
                                  .where(LoanAccrual.loan_id.in_(ids)).order_by(LoanAccrual.loan_id,
                                                                               LoanAccrual.day)).all()
        penalties = db.session.execute(select(LoanInstalment.id, LoanInstalment.penalty, LoanInstalment.state)
                                       .where(LoanInstalment.loan_id.in_(ids)).order_by(LoanInstalment.id)).all()
        return [tuple(r) for r in rows], [tuple(p) for p in penalties]

    with on(day):
        savepoint = db.session.begin_nested()
        counts = tasks.accrue_penalties(day, batch_size=4)
        batched = outcome()
        assert tasks.accrue_penalties(day, batch_size=4)["days_accrued"] == 0
        savepoint.rollback()
        one_by_one = {"loans_accrued": 0, "days_accrued": 0}
        for loan_id in tasks._running_with_arrears(day):
            days = tasks.accrue_loan(loan_id, day)
            one_by_one["loans_accrued"] += bool(days)
            one_by_one["days_accrued"] += days
        single = outcome()
    assert batched == single
    assert (counts["loans_accrued"], counts["days_accrued"]) == (one_by_one["loans_accrued"],
                                                                 one_by_one["days_accrued"])
    assert counts["loans_accrued"] == 10 and counts["accrual_errors"] == 0
    rows, penalties = batched
    assert any(amount > 0 for *_, amount, _n in rows)
    assert {state for _, _, state in penalties} >= {InstalmentState.OVERDUE, InstalmentState.PAID}
    assert not [r for r in rows if r[0] == paid_up.id]


def test_a_batch_that_fails_is_accrued_one_loan_at_a_time(student, prod, monkeypatch):
    """Whatever stops a batch (here a refusal from inside it), its loans still get their days,
    each once, by the one-loan path."""
    from portal.errors import DomainError

    loan = running_loan(student, prod)

    def broken(loan_ids, day):
        raise DomainError("the batch could not run")

    monkeypatch.setattr(tasks, "_accrue_batch", broken)
    with on(date(2026, 2, 20)):
        counts = tasks.accrue_penalties(date(2026, 2, 20))
    assert (counts["loans_accrued"], counts["days_accrued"], counts["accrual_errors"]) == (1, 5, 0)
    assert lines(loan)[0].penalty == D("0.45") and accruals(loan) == 5
