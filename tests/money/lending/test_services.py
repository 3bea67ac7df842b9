"""Lending's services against the real database and ledger, the clock moved by time-machine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.lending import services
from portal.money.lending.models import InstalmentState, Loan, LoanEvent, LoanState
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet
from tests.factories import create_user
from tests.money.factories import wallet_of
from tests.money.lending.helpers import START, as_user, borrower, fund, lines, on, product, running_loan


@pytest.fixture
def student():
    return borrower()


@pytest.fixture
def prod():
    return product()


def test_offer_shows_rate_fee_schedule_total_cost_and_apr(student, prod):
    with on(START), as_user(student):
        shown = services.offer(student, prod.id, "1000.00", "12")
    assert shown.assessment.band == "C" and shown.rate == D("12")
    assert shown.fee == D("20.00")
    assert shown.schedule.instalments[0].total == D("88.85")
    assert shown.total_cost == D("86.19")  # 66.19 interest + 20.00 fee
    assert shown.apr > D("16")  # the fee on top of 12.68% effective


@pytest.mark.parametrize("amount, term, field", [("50", "12", "amount"), ("2500", "12", "amount"),
                                                 ("1000", "36", "term"), ("1000", "x", "term"),
                                                 ("10.001", "12", "amount")])
def test_amounts_and_terms_outside_the_limits_are_refused_by_field(student, prod, amount, term, field):
    with on(START), as_user(student), pytest.raises(DomainError) as caught:
        services.offer(student, prod.id, amount, term)
    assert caught.value.field == field


def test_an_unverified_student_is_told_why_not():
    newcomer = create_user("student")
    prod = product()
    with on(START), as_user(newcomer), pytest.raises(DomainError) as caught:
        services.offer(newcomer, prod.id, "500", "6")
    assert "identity is not verified" in caught.value.message


def test_applying_twice_makes_one_application(student, prod):
    with on(START), as_user(student):
        first = services.apply(student, prod.id, "1000.00", 12, "Laptop", "application-key-0001")
        again = services.apply(student, prod.id, "1000.00", 12, "Laptop", "application-key-0001")
        assert again.id == first.id
        with pytest.raises(Conflict, match="already have an application"):
            services.apply(student, prod.id, "500.00", 6, "Books", "application-key-0002")
    assert db.session.scalar(select(func.count()).select_from(Loan).where(Loan.user_id == student.id)) == 1


def test_four_eyes_above_the_configured_amount(student, prod):
    first, second = create_user("admin"), create_user("admin")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, "1500.00", 12, "Laptop", "application-key-0001")
        with as_user(first):
            services.approve(first, loan.id)
            assert loan.state == LoanState.SUBMITTED and loan.approved_by_id == first.id
            with pytest.raises(Conflict, match="Another officer"):
                services.approve(first, loan.id)
        with as_user(second):
            services.approve(second, loan.id)
    assert loan.state == LoanState.APPROVED and loan.confirmed_by_id == second.id


def test_a_student_cannot_decide(student, prod):
    with on(START), as_user(student):
        loan = services.apply(student, prod.id, "500.00", 6, "Books", "application-key-0001")
        with pytest.raises(Forbidden):
            services.approve(student, loan.id)


def test_reject_needs_a_reason_and_releases_collateral(student, prod):
    fund(student, "1.00000000", "BTC")
    officer = create_user("admin")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, "500.00", 6, "Books", "application-key-0001",
                                  collateral_currency="BTC", raw_collateral="0.5")
        assert wallet_of(student, "BTC").locked_balance == D("0.5")
        with as_user(officer):
            with pytest.raises(DomainError) as caught:
                services.reject(officer, loan.id, "  ")
            assert caught.value.field == "reason"
            services.reject(officer, loan.id, "Income too irregular for now")
    assert loan.state == LoanState.REJECTED
    assert wallet_of(student, "BTC").locked_balance == 0


def test_counter_offer_must_be_accepted_before_payout(student, prod):
    officer = create_user("admin")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, "1000.00", 12, "Laptop", "application-key-0001")
        with as_user(officer):
            services.counter_offer(officer, loan.id, "600.00", "6", "12", "We can lend less for now")
            with pytest.raises(Conflict, match="not accepted"):
                services.disburse(officer, loan.id)
        with as_user(student):
            services.accept_offer(student, loan.id)
        with as_user(officer):
            services.disburse(officer, loan.id)
    assert loan.state == LoanState.ACTIVE and loan.principal == D("600.00")
    assert sum(x.principal for x in lines(loan)) == D("600.00")


def test_disbursement_moves_principal_and_fee_through_the_ledger(student, prod):
    loan = running_loan(student, prod)
    assert wallet_of(student).balance == D("980.00")
    assert ledger.system_balance(SystemWallet.LOAN_BOOK, "USD") == D("-1000.00")
    schedule = lines(loan)
    assert len(schedule) == 12 and schedule[0].due_on == date(2026, 2, 15)
    assert [x.principal + x.interest for x in schedule[:11]] == [D("88.85")] * 11
    assert sum(x.principal for x in schedule) == D("1000.00")
    assert ledger.verify().ok


def test_repay_on_time_pays_the_instalment(student, prod):
    loan = running_loan(student, prod)
    fund(student, "100.00")
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "88.85", "repayment-key-00001")
    first = lines(loan)[0]
    assert first.state == InstalmentState.PAID and first.paid_on == date(2026, 2, 15)
    assert (first.interest_paid, first.principal_paid) == (D("10.00"), D("78.85"))
    assert ledger.system_balance(SystemWallet.LOAN_BOOK, "USD") == D("-911.15")


def test_part_payment_pays_interest_before_principal(student, prod):
    loan = running_loan(student, prod)
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "30.00", "repayment-key-00001")
    first = lines(loan)[0]
    assert first.state == InstalmentState.PARTIALLY_PAID
    assert (first.interest_paid, first.principal_paid) == (D("10.00"), D("20.00"))


def test_allocation_order_is_configurable(student, prod, app, monkeypatch):
    monkeypatch.setitem(app.config, "LENDING_ALLOCATION_ORDER", "principal,interest,fee,penalty")
    loan = running_loan(student, prod)
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "30.00", "repayment-key-00001")
    first = lines(loan)[0]
    assert (first.interest_paid, first.principal_paid) == (D("0"), D("30.00"))


def test_repaying_twice_with_one_key_pays_once(student, prod):
    loan = running_loan(student, prod)
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "88.85", "repayment-key-00001")
        services.repay(student, loan.id, "88.85", "repayment-key-00001")
    assert wallet_of(student).balance == D("980.00") - D("88.85")


def test_repaying_without_the_money_is_refused(student, prod):
    loan = running_loan(student, prod)
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "900.00", "repayment-key-00001")
        with pytest.raises(ledger.InsufficientFunds):
            services.repay(student, loan.id, "90.00", "repayment-key-00002")


def test_early_payoff_charges_interest_to_the_day_and_closes(student, prod):
    fund(student, "100.00", "USD")
    fund(student, "1.00000000", "BTC")
    officer = create_user("admin")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, "1000.00", 12, "Laptop", "application-key-0001",
                                  collateral_currency="BTC", raw_collateral="0.25")
        with as_user(officer):
            services.approve(officer, loan.id)
            services.disburse(officer, loan.id)
    # 10 of the 31 days of the first period: 10.00 * 10 / 31 = 3.23 interest.
    with on(date(2026, 1, 25)), as_user(student):
        assert services.payoff_amount(loan) == D("1003.23")
        with pytest.raises(DomainError, match=r"more than is owed: 1003\.23 USD closes the loan today"):
            services.repay(student, loan.id, "1003.24", "repayment-key-00001")
        services.repay(student, loan.id, "1003.23", "repayment-key-00002")
    assert loan.state == LoanState.CLOSED
    assert all(x.state == InstalmentState.PAID for x in lines(loan))
    assert sum(x.interest_waived for x in lines(loan)) == D("66.19") - D("3.23")
    assert wallet_of(student, "BTC").locked_balance == 0
    assert ledger.system_balance(SystemWallet.LOAN_BOOK, "USD") == D("3.23")


def test_partial_prepayment_reamortizes_the_rest(student, prod):
    loan = running_loan(student, prod)
    # On the day of disbursement no interest has run: all 500 is principal; 500 left over 12
    # months at 1% is 44.42 a month (500 * 0.01 / (1 - 1.01^-12)).
    with on(START), as_user(student):
        services.repay(student, loan.id, "500.00", "repayment-key-00001")
    schedule = lines(loan)
    assert schedule[0].principal_paid == D("500.00")
    assert [x.principal + x.interest - x.principal_paid for x in schedule[:11]] == [D("44.42")] * 11
    assert sum(x.principal for x in schedule) == D("1000.00")
    assert loan.state == LoanState.ACTIVE


def test_flat_loan_overpayment_pays_the_next_instalments(student):
    flat = product(name="Flat loan", interest_method="flat", fee_percent=D("0"))
    loan = running_loan(student, flat, amount="600.00", term=6)
    # Flat 12% on 600 over 6 months: 36.00 interest, so 100.00 principal + 6.00 interest a month.
    assert {(x.principal, x.interest) for x in lines(loan)} == {(D("100.00"), D("6.00"))}
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "212.00", "repayment-key-00001")
    first, second = lines(loan)[:2]
    assert first.state == InstalmentState.PAID and second.state == InstalmentState.PAID


def test_restructure_keeps_the_history(student, prod):
    loan = running_loan(student, prod)
    officer = create_user("admin")
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "88.85", "repayment-key-00001")
    with on(date(2026, 3, 20)), as_user(officer):
        services.restructure(officer, loan.id, "24", "6", "Lost part-time job")
    schedule = lines(loan)
    assert loan.state == LoanState.RESTRUCTURED
    assert schedule[0].state == InstalmentState.PAID
    assert len(schedule) == 1 + 24 and schedule[1].number == 2 and schedule[1].due_on == date(2026, 4, 20)
    # The principal lent is still the sum of the principal column; instalment 2's interest
    # (due on 15 March, unpaid) was capitalized.
    assert sum(x.principal for x in schedule) == D("1000.00") + D("9.21")
    event = db.session.scalars(select(LoanEvent).where(LoanEvent.loan_id == loan.id,
                                                       LoanEvent.kind == "restructured")).one()
    assert len(event.data["old_schedule"]) == 11 and event.reason == "Lost part-time job"


def test_write_off_books_the_loss(student, prod):
    loan = running_loan(student, prod)
    officer = create_user("admin")
    with on(date(2026, 6, 1)), as_user(officer):
        services.write_off(officer, loan.id, "Student unreachable for 90 days")
    assert loan.state == LoanState.WRITTEN_OFF
    assert ledger.system_balance(SystemWallet.LOAN_LOSSES, "USD") == D("-1000.00")
    assert ledger.system_balance(SystemWallet.LOAN_BOOK, "USD") == D("0.00")
    with as_user(officer), pytest.raises(Conflict):
        services.write_off(officer, loan.id, "again")


def test_another_student_cannot_reach_the_loan(student, prod):
    loan = running_loan(student, prod)
    other = create_user("student")
    with as_user(other):
        with pytest.raises(NotFound):
            services.own_loan(other, loan.id)
        db.session.expire_all()
        assert db.session.scalar(select(func.count()).select_from(Loan)) == 0
    with as_user(student):
        assert db.session.scalar(select(func.count()).select_from(Loan)) == 1


def test_withdrawing_an_application_releases_the_pledge(student, prod):
    fund(student, "1.00000000", "ETH")
    with on(START), as_user(student):
        loan = services.apply(student, prod.id, "500.00", 6, "Books", "application-key-0001",
                              collateral_currency="ETH", raw_collateral="0.4")
        assert wallet_of(student, "ETH").locked_balance == D("0.4")
        services.withdraw(student, loan.id)
        assert loan.state == LoanState.WITHDRAWN
        assert wallet_of(student, "ETH").locked_balance == 0
        # The slot is free again: a new application goes through.
        services.apply(student, prod.id, "300.00", 6, "Books", "application-key-0002")


@pytest.mark.parametrize("currency_code, amount, field", [("DOGE", "1", "collateral_currency"),
                                                          ("BTC", "2", "collateral_amount")])
def test_bad_collateral_is_refused_by_field(student, prod, currency_code, amount, field):
    fund(student, "1.00000000", "BTC")
    with on(START), as_user(student), pytest.raises(DomainError) as caught:
        services.apply(student, prod.id, "500.00", 6, "Books", "application-key-0001",
                       collateral_currency=currency_code, raw_collateral=amount)
    assert caught.value.field == field


def test_weekly_equal_principal_product(student):
    weekly = product(name="Weekly loan", frequency="weekly", amortization="equal_principal",
                     fee_percent=D("0"), annual_rate=D("48"), min_term=4)
    # Band C adds 4 points: 52% a year is 1% a week; 400 over 4 weeks repays 100 a week.
    loan = running_loan(student, weekly, amount="400.00", term=4)
    assert [(x.due_on, x.principal, x.interest) for x in lines(loan)] == [
        (date(2026, 1, 22), D("100.00"), D("4.00")), (date(2026, 1, 29), D("100.00"), D("3.00")),
        (date(2026, 2, 5), D("100.00"), D("2.00")), (date(2026, 2, 12), D("100.00"), D("1.00"))]
