"""``ledger.post`` through the database function ``ledger_post`` (migration 0015): one statement,
refusals mapped to the ledger's errors and messages, the audit trail, the session kept in step,
wallets found by owner or system name, and the commit announcement."""

from __future__ import annotations

import uuid
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text

from portal import events
from portal.db import db
from portal.db.audit import AuditLog
from portal.db.base import utcnow
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet, WalletStatus
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of

T = TransactionType


@pytest.fixture
def ada():
    return create_user("student", full_name="Ada Lovelace")


@pytest.fixture
def grace():
    return create_user("student", full_name="Grace Hopper")


def wallets(*users, code="USD"):
    return [ledger.open_user_wallet(user.id, code) for user in users]


def moved() -> int:
    with ledger.as_ledger():
        return db.session.scalar(select(func.count()).select_from(Transaction))


def refused(error: type, message: str, legs, **kwargs):
    """``post`` raises ``error`` with exactly ``message``, nothing moved, and the transaction is
    still usable (a refusal is an answer of the function, not an aborted statement)."""
    before = moved()
    with pytest.raises(error) as caught:
        ledger.post(legs, **kwargs)
    assert caught.value.message == message
    assert moved() == before
    return caught.value


def test_a_post_is_one_statement_and_keeps_the_session_in_step(ada, grace, statements):
    fund(ada, "100")
    own, theirs = wallets(ada, grace)
    fees = ledger.system_wallet(SystemWallet.FEES, "USD", spread_by=ada.id)
    before_fees = fees.balance
    with as_user(ada), statements() as counted:
        txs = ledger.post([ledger.Leg(own, theirs, Decimal("10"), T.TRANSFER, "to Grace", {"note": "hi"}),
                           ledger.Leg(own, fees, Decimal("0.35"), T.FEE, "Transfer fee")], initiated_by_id=ada.id)
        # What callers read of the result and of their wallets costs no statement either.
        seen = [(tx.id, tx.amount, tx.debit_user_id, tx.credit_user_id, tx.details, tx.created_at) for tx in txs]
        balances = own.balance, theirs.balance, fees.balance
    assert counted.count == 1 and "ledger_post" in counted.statements[0], counted.statements
    assert "set_config" not in counted.statements[0]
    assert balances == (Decimal("89.65"), Decimal("10"), before_fees + Decimal("0.35"))
    assert seen[0][1:5] == (Decimal("10"), ada.id, grace.id, {"note": "hi"})
    assert seen[1][3] is None and txs[0].group_id == txs[1].group_id
    # The rows are the database's: read back they are what the objects say.
    db.session.expire_all()
    with ledger.as_ledger():
        rows = {tx.id: tx for tx in db.session.scalars(select(Transaction).where(Transaction.id.in_([s[0] for s in seen])))}
        assert rows[seen[0][0]].amount == Decimal("10") and rows[seen[0][0]].initiated_by_id == ada.id
        assert rows[seen[0][0]].created_at == seen[0][5] and rows[seen[1][0]].type == T.FEE
        assert wallet_of(ada).balance == Decimal("89.65")
    assert ledger.verify().ok


def test_the_audit_trail_records_the_acting_user_in_the_ledger_role(ada, grace):
    fund(ada, "20")
    own, theirs = wallets(ada, grace)
    with as_user(ada):
        (tx,) = ledger.post([ledger.Leg(own, theirs, Decimal("5"), T.TRANSFER)], initiated_by_id=ada.id)
        # The function hands the caller's role back when it is done.
        assert db.session.scalar(text("SELECT current_setting('app.role')")) == "student"
    # Read as the test's system actor, who may read the trail.
    inserted = db.session.scalars(select(AuditLog).where(AuditLog.table_name == "transactions",
                                                         AuditLog.row_id == str(tx.id))).all()
    updated = db.session.scalars(select(AuditLog).where(
        AuditLog.table_name == "wallets", AuditLog.action == "UPDATE",
        AuditLog.row_id.in_([str(own.id), str(theirs.id)])).order_by(AuditLog.seq)).all()
    assert [(a.action, a.actor, a.actor_role) for a in inserted] == [("INSERT", f"user:{ada.id}", "ledger")]
    assert Decimal(str(inserted[0].new_values["amount"])) == 5
    last_two = updated[-2:]
    assert {a.row_id for a in last_two} == {str(own.id), str(theirs.id)}
    assert all((a.actor, a.actor_role) == (f"user:{ada.id}", "ledger") for a in last_two)


def test_not_enough_money_counts_every_leg_and_names_the_shortfall(ada, grace):
    fund(ada, "10")
    own, theirs = wallets(ada, grace)
    fees = ledger.system_wallet(SystemWallet.FEES, "USD")
    error = refused(ledger.InsufficientFunds, "Not enough money: 10.00 USD available, 10.50 USD needed.",
                    [ledger.Leg(own, theirs, Decimal("10"), T.TRANSFER), ledger.Leg(own, fees, Decimal("0.5"), T.FEE)])
    assert (error.available, error.needed, error.user_id, error.wallet_id) == (10, Decimal("10.5"), ada.id, own.id)
    assert error.field == "amount" and error.status_code == 422
    assert own.balance == Decimal("10")


def test_held_money_is_not_available(ada, grace):
    fund(ada, "10")
    own, theirs = wallets(ada, grace)
    ledger.hold([ledger.Leg(own, theirs, Decimal("7"), T.TRANSFER)])
    refused(ledger.InsufficientFunds, "Not enough money: 3.00 USD available, 4.00 USD needed.",
            [ledger.Leg(own, theirs, Decimal("4"), T.TRANSFER)])


@pytest.mark.parametrize(("side", "status", "message"), [
    ("debit", WalletStatus.FROZEN, "Your USD wallet is frozen; no money can move out of it."),
    ("debit", WalletStatus.CLOSED, "Your USD wallet is closed; no money can move out of it."),
    ("credit", WalletStatus.FROZEN, "The recipient's USD wallet is frozen; no money can move into it."),
])
def test_a_frozen_or_closed_wallet_neither_sends_nor_receives(ada, grace, side, status, message):
    fund(ada, "10")
    own, theirs = wallets(ada, grace)
    stopped = own if side == "debit" else theirs
    with ledger.as_ledger():
        stopped.status = status
        db.session.flush()
    error = refused(ledger.WalletUnavailable, message, [ledger.Leg(own, theirs, Decimal("1"), T.TRANSFER)])
    assert (error.wallet_id, error.sending, error.status) == (stopped.id, side == "debit", status)


def test_a_wallet_of_another_currency_is_refused_by_the_database_too(ada, grace):
    fund(ada, "10")
    own = wallets(ada)[0]
    azr = wallets(grace, code="AZR")[0]
    # The caller claims the AZR wallet is a USD one: the function reads the row's currency.
    lying = SimpleNamespace(id=azr.id, currency="USD", user_id=grace.id)
    refused(ledger.LedgerError, "Both wallets of a movement must hold the same currency.",
            [ledger.Leg(own, lying, Decimal("1"), T.TRANSFER)])
    # The same claim made honestly is refused before the database is asked.
    refused(ledger.LedgerError, "Both wallets of a movement must hold the same currency.",
            [ledger.Leg(own, azr, Decimal("1"), T.TRANSFER)])


def test_an_unknown_wallet_is_refused(ada):
    fund(ada, "10")
    own = wallets(ada)[0]
    ghost = SimpleNamespace(id=uuid.uuid4(), currency="USD", user_id=None)
    refused(ledger.LedgerError, "A wallet of this movement does not exist.",
            [ledger.Leg(own, ghost, Decimal("1"), T.TRANSFER)])


def test_one_wallet_on_both_sides_is_refused(ada):
    fund(ada, "10")
    own = wallets(ada)[0]
    refused(ledger.LedgerError, "A movement needs two different wallets.", [ledger.Leg(own, own, Decimal("1"), T.TRANSFER)])
    ref = ledger.UserWalletRef(ada.id, "USD")
    refused(ledger.LedgerError, "A movement needs two different wallets.", [ledger.Leg(ref, ref, Decimal("1"), T.TRANSFER)])
    # Named two ways, the database finds it is one wallet.
    refused(ledger.LedgerError, "A movement needs two different wallets.", [ledger.Leg(own, ref, Decimal("1"), T.TRANSFER)])


def test_wallets_named_by_owner_are_found_opened_and_sharded(ada, grace):
    fund(ada, "10")
    assert wallet_of(grace) is None
    fees = ledger.system_wallet_ref(SystemWallet.FEES, "USD", spread_by=ada.id)
    assert fees.shard == ada.id.int % 8
    txs = ledger.post([ledger.Leg(ledger.UserWalletRef(ada.id, "USD"), ledger.UserWalletRef(grace.id, "USD", open=True),
                                  Decimal("4"), T.TRANSFER),
                       ledger.Leg(ledger.UserWalletRef(ada.id, "USD"), fees, Decimal("1"), T.FEE)])
    opened = wallet_of(grace)
    assert opened is not None and opened.balance == Decimal("4") and txs[0].credit_wallet_id == opened.id
    with ledger.as_ledger():
        shard = db.session.get(Wallet, txs[1].credit_wallet_id)
    assert (shard.system_name, shard.shard) == (SystemWallet.FEES, fees.shard)
    assert wallet_of(ada).balance == Decimal("5")


def test_a_missing_wallet_that_is_not_to_be_opened_has_nothing_and_opens_nothing(ada, grace):
    fund(ada, "10")
    with ledger.as_ledger():
        wallets_before = db.session.scalar(select(func.count()).select_from(Wallet))
    error = refused(ledger.InsufficientFunds, "Not enough money: 0.00 USD available, 3.00 USD needed.",
                    [ledger.Leg(ledger.UserWalletRef(grace.id, "USD"), ledger.UserWalletRef(ada.id, "USD", open=True),
                                Decimal("3"), T.TRANSFER)])
    assert error.available == 0 and error.user_id == grace.id
    with ledger.as_ledger():
        assert db.session.scalar(select(func.count()).select_from(Wallet)) == wallets_before


def test_a_spend_limit_is_checked_under_the_lock(ada, grace):
    fund(ada, "100")
    own, theirs = wallets(ada, grace)
    since = utcnow()
    ledger.post([ledger.Leg(own, theirs, Decimal("30"), T.TRANSFER)])
    limit = ledger.SpendLimit(ada.id, "USD", T.TRANSFER, since.replace(year=since.year - 1), Decimal("50"),
                              Decimal("20.01"))
    error = refused(ledger.SpendLimitExceeded, "This movement would pass the sender's limit.",
                    [ledger.Leg(own, theirs, Decimal("20.01"), T.TRANSFER)], spend_limit=limit)
    assert error.left == Decimal("20") and error.field == "amount"
    ledger.post([ledger.Leg(own, theirs, Decimal("20"), T.TRANSFER)],
                spend_limit=ledger.SpendLimit(ada.id, "USD", T.TRANSFER, limit.since, Decimal("50"), Decimal("20")))
    assert own.balance == Decimal("50")


def test_rows_are_announced_at_the_commit_not_at_a_savepoint(ada, grace):
    fund(ada, "10")
    own, theirs = wallets(ada, grace)
    db.session.commit()
    heard: list[list] = []

    def listen(_sender=None, *, transaction_ids, **_):
        heard.append(list(transaction_ids))

    events.transaction_committed.connect(listen)
    try:
        with db.session.begin_nested():
            (kept,) = ledger.post([ledger.Leg(own, theirs, Decimal("1"), T.TRANSFER)])
        assert heard == []  # released, not committed
        with pytest.raises(ledger.InsufficientFunds), db.session.begin_nested():
            ledger.post([ledger.Leg(theirs, own, Decimal("0.5"), T.TRANSFER)])  # moved, then rolled back below
            ledger.post([ledger.Leg(own, theirs, Decimal("50"), T.TRANSFER)])
        db.session.commit()
    finally:
        events.transaction_committed.disconnect(listen)
    assert heard == [[kept.id]]
