"""Deciding a withdrawal twice at the same moment, on two real connections: money moves once.

Each thread has its own app context, session and connection; the fixture commits (the threads
must see the rows) and afterwards puts the money back where it was: the student's wallet is
emptied to the deposits wallet, the withdrawals and fee wallets return to their balances, the
test's withdrawal rows are deleted, and the ledger is verified. The users stay (ledger rows
point at them)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select

from portal.accounts.models import User
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict
from portal.money.earnings import withdrawals as service
from portal.money.earnings.models import Withdrawal, WithdrawalStatus
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet
from tests.compliance.factories import verified_user_factory
from tests.races import race

#: Active students here are verified at level 2, the level withdrawals need.
create_user = verified_user_factory(2)

IBAN = "GB82 WEST 1234 5698 7654 32"
SYSTEM = (SystemWallet.WITHDRAWALS, SystemWallet.FEES)

pytestmark = pytest.mark.no_db_rollback


def _system_balances() -> dict:
    return {name: ledger.system_balance(name, "USD") for name in SYSTEM}


@pytest.fixture
def committed(app):
    """A student with 100 USD, a 0.50 USD withdrawal fee rule and two admins, all committed."""
    with app.app_context(), acting_as(Actor.system("tests")):
        before = _system_balances()
        previous_rule = fees.rule_for(TransactionType.WITHDRAWAL, "USD")
        saved = None if previous_rule is None else dict(
            fixed=previous_rule.fixed_amount, percent=previous_rule.percent, minimum=previous_rule.minimum,
            maximum=previous_rule.maximum, active=previous_rule.active)
        fees.save_rule(None, "withdrawal", "USD", fixed="0.50", percent="0", minimum="", maximum="")
        student = create_user("student")
        wallet = ledger.open_user_wallet(student.id, "USD")
        ledger.post([ledger.Leg(ledger.system_wallet(SystemWallet.DEPOSITS, "USD"), wallet, Decimal("100"),
                                TransactionType.DEPOSIT, "Test deposit")])
        ids = {"student": student.id, "wallet": wallet.id,
               "admins": [create_user("admin").id, create_user("admin").id]}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        with app.app_context(), acting_as(Actor.system("tests")):
            try:
                deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
                rows = db.session.scalars(select(Withdrawal).where(Withdrawal.user_id == ids["student"])).all()
                for withdrawal in rows:
                    if withdrawal.status == WithdrawalStatus.PENDING:
                        ledger.release(service.held_legs(withdrawal), description="Test clean-up")
                db.session.execute(delete(Withdrawal).where(Withdrawal.user_id == ids["student"]))
                with ledger.as_ledger():
                    wallet = db.session.get(Wallet, ids["wallet"])
                    db.session.refresh(wallet)
                if wallet.balance > 0:
                    ledger.post([ledger.Leg(wallet, deposits, wallet.balance, TransactionType.WITHDRAWAL,
                                            "Test clean-up")])
                for name, balance in _system_balances().items():
                    delta = balance - before[name]
                    if delta:
                        other = ledger.system_wallet(name, "USD")
                        ledger.post([ledger.Leg(other, deposits, delta, TransactionType.WITHDRAWAL, "Test clean-up")
                                     if delta > 0 else
                                     ledger.Leg(deposits, other, -delta, TransactionType.DEPOSIT, "Test clean-up")])
                if saved is None:
                    rule = fees.rule_for(TransactionType.WITHDRAWAL, "USD")
                    if rule is not None:
                        fees.delete_rule(rule.id)
                else:
                    fees.save_rule(None, "withdrawal", "USD", **saved)
                db.session.commit()
                assert _system_balances() == before
                report = ledger.verify()
                assert report.ok, report.problems
            finally:
                db.session.rollback()
                db.session.remove()


def _pending(app, ids, amount: str = "40") -> uuid.UUID:
    with app.app_context(), acting_as(Actor.for_user(ids["student"], "student")):
        student = db.session.get(User, ids["student"])
        withdrawal, _ = service.request_withdrawal(student, ledger.new_key(), "USD", "bank_account", IBAN, amount)
        db.session.commit()
        withdrawal_id = withdrawal.id
        db.session.remove()
    return withdrawal_id


def _race(app, calls) -> list[str]:
    """Run each ``(user_id, role, action)`` at once; returns each call's outcome: "ok", or
    "Conflict" when it was refused."""
    outcomes = race(app, calls, expected=(Conflict,))
    for outcome in outcomes:
        if not outcome.ok:
            # The withdrawal's own refusal (its row lock), not only the ledger's last line of
            # defence ("This hold was already settled").
            assert outcome.refused.message.startswith("This withdrawal was already"), outcome.refused.message
    return ["ok" if outcome.ok else type(outcome.refused).__name__ for outcome in outcomes]


def _state(app, ids, withdrawal_id):
    with app.app_context(), acting_as(Actor.system("tests")):
        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        with ledger.as_ledger():
            wallet = db.session.get(Wallet, ids["wallet"])
            moved = db.session.scalar(select(func.count()).select_from(Transaction).where(
                Transaction.debit_wallet_id == ids["wallet"], Transaction.pending_id.is_not(None)))
        state = (withdrawal.status, wallet.balance, wallet.locked_balance, moved, _system_balances())
        report = ledger.verify()
        db.session.remove()
    assert report.ok, report.problems
    return state


def test_two_admins_approving_at_once_pay_out_once(app, committed):
    withdrawal_id = _pending(app, committed)
    with app.app_context(), acting_as(Actor.system("tests")):
        before = _system_balances()
        db.session.remove()
    first, second = committed["admins"]
    outcomes = _race(app, [(admin, "admin", lambda user: service.approve(user, withdrawal_id, "REF-1"))
                           for admin in (first, second)])
    assert sorted(outcomes) == ["Conflict", "ok"]
    status, balance, locked, resolved, after = _state(app, committed, withdrawal_id)
    assert status == WithdrawalStatus.APPROVED
    assert (balance, locked) == (Decimal("59.50"), Decimal("0"))
    assert resolved == 2  # the amount leg and the fee leg, each captured once
    assert after[SystemWallet.WITHDRAWALS] - before[SystemWallet.WITHDRAWALS] == Decimal("40")
    assert after[SystemWallet.FEES] - before[SystemWallet.FEES] == Decimal("0.50")


def test_approve_and_reject_at_once_decide_once(app, committed):
    withdrawal_id = _pending(app, committed)
    with app.app_context(), acting_as(Actor.system("tests")):
        before = _system_balances()
        db.session.remove()
    first, second = committed["admins"]
    outcomes = _race(app, [
        (first, "admin", lambda user: service.approve(user, withdrawal_id)),
        (second, "admin", lambda user: service.reject(user, withdrawal_id, "Account holder name differs.")),
    ])
    assert sorted(outcomes) == ["Conflict", "ok"]
    status, balance, locked, resolved, after = _state(app, committed, withdrawal_id)
    assert resolved == 2 and locked == 0
    if status == WithdrawalStatus.APPROVED:
        assert balance == Decimal("59.50")
        assert after[SystemWallet.WITHDRAWALS] - before[SystemWallet.WITHDRAWALS] == Decimal("40")
    else:
        assert status == WithdrawalStatus.REJECTED and balance == Decimal("100")
        assert after == before


def test_the_student_cancelling_while_an_admin_approves_decides_once(app, committed):
    withdrawal_id = _pending(app, committed)
    outcomes = _race(app, [
        (committed["admins"][0], "admin", lambda user: service.approve(user, withdrawal_id)),
        (committed["student"], "student", lambda user: service.cancel(user, withdrawal_id)),
    ])
    assert sorted(outcomes) == ["Conflict", "ok"]
    status, balance, locked, resolved, _ = _state(app, committed, withdrawal_id)
    assert resolved == 2 and locked == 0
    assert (status, balance) in ((WithdrawalStatus.APPROVED, Decimal("59.50")),
                                 (WithdrawalStatus.CANCELLED, Decimal("100")))


def test_the_same_request_sent_twice_at_once_holds_once(app, committed):
    key = ledger.new_key()
    student_id = committed["student"]
    made: list[uuid.UUID] = []

    def submit(user):
        withdrawal, _ = service.request_withdrawal(user, key, "USD", "bank_account", IBAN, "25")
        made.append(withdrawal.id)

    outcomes = _race(app, [(student_id, "student", submit), (student_id, "student", submit)])
    assert outcomes == ["ok", "ok"]
    assert len(set(made)) == 1
    with app.app_context(), acting_as(Actor.system("tests")):
        count = db.session.scalar(select(func.count()).select_from(Withdrawal).where(Withdrawal.user_id == student_id))
        with ledger.as_ledger():
            wallet = db.session.get(Wallet, committed["wallet"])
        assert count == 1 and wallet.locked_balance == Decimal("25.50")
        db.session.remove()
