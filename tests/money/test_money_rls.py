"""Row-level security on the money tables, through the app role: a query with no WHERE clause
at all returns a student only their own rows; admins and compliance officers see every row;
faculty see none; nobody writes rows of someone else."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from psycopg import errors as pg
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from portal.money.earnings.models import Earning, Milestone, MilestoneKind, Withdrawal, WithdrawalMethod
from portal.money.exchange.models import Conversion
from portal.money.wallets import ledger
from portal.money.wallets.ledger import Leg
from portal.money.wallets.models import (
    IdempotencyKey,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletKind,
    WalletStatus,
)
from tests.factories import create_user
from tests.helpers import as_user
from tests.rls import visible

T = TransactionType
TABLES = {"wallets": Wallet, "transactions": Transaction, "conversions": Conversion, "earnings": Earning,
          "withdrawals": Withdrawal, "idempotency_keys": IdempotencyKey}


def wallet(user, code="USD") -> Wallet:
    row = Wallet(user_id=user.id, currency=code, kind=WalletKind.USER)
    db.session.add(row)
    db.session.flush()
    return row


def owned_rows(user, milestone) -> dict[str, set]:
    """One row or more in each money table for ``user``; returns their ids by table."""
    now = utcnow()
    usd, azr = wallet(user), wallet(user, "AZR")
    conversion = Conversion(user_id=user.id, from_currency="USD", to_currency="AZR", from_amount=Decimal("10"),
                            to_amount=Decimal("250"), rate=Decimal("25"), rate_source="manual: tests",
                            quoted_at=now, expires_at=now + timedelta(seconds=30))
    earning = Earning(user_id=user.id, milestone_id=milestone.id, amount=Decimal("5"), currency="AZR",
                      source="course_completed", source_ref="Testing 101")
    withdrawal = Withdrawal(user_id=user.id, wallet_id=usd.id, amount=Decimal("3"), currency="USD",
                            method=WithdrawalMethod.BANK_ACCOUNT, destination_encrypted=b"\x00sealed",
                            destination_masked="•••• 1234")
    key = IdempotencyKey(user_id=user.id, key=ledger.new_key(), scope="transfer", request_hash="0" * 64)
    db.session.add_all([conversion, earning, withdrawal, key])
    db.session.flush()
    return {"wallets": {usd.id, azr.id}, "transactions": set(), "conversions": {conversion.id},
            "earnings": {earning.id}, "withdrawals": {withdrawal.id}, "idempotency_keys": {key.id}}


@pytest.fixture
def world():
    """Three students with rows in every money table and money moving between them (inserted as
    ``system:tests``), plus staff."""
    milestone = Milestone(title="Finish a course", kind=MilestoneKind.COURSE_COMPLETED,
                          reward_amount=Decimal("5"), reward_currency="AZR")
    db.session.add(milestone)
    db.session.flush()
    people = {name: create_user("student") for name in ("alice", "bob", "carol")}
    rows = {name: owned_rows(user, milestone) for name, user in people.items()}
    wallets = {name: db.session.scalars(select(Wallet).where(Wallet.user_id == user.id,
                                                             Wallet.currency == "USD")).one()
               for name, user in people.items()}
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
    moves = {
        "to alice": ledger.post([Leg(deposits, wallets["alice"], Decimal("50"), T.DEPOSIT)]),
        "alice to bob": ledger.post([Leg(wallets["alice"], wallets["bob"], Decimal("20"), T.TRANSFER),
                                     Leg(wallets["alice"], ledger.system_wallet(SystemWallet.FEES, "USD"),
                                         Decimal("1"), T.FEE)]),
        "bob to carol": ledger.post([Leg(wallets["bob"], wallets["carol"], Decimal("5"), T.TRANSFER)]),
        "to carol": ledger.post([Leg(deposits, wallets["carol"], Decimal("7"), T.DEPOSIT)]),
    }
    ids = {name: {tx.id for tx in txs} for name, txs in moves.items()}
    fee_leg = {tx.id for tx in moves["alice to bob"] if tx.type == T.FEE}
    rows["alice"]["transactions"] = ids["to alice"] | ids["alice to bob"]
    rows["bob"]["transactions"] = (ids["alice to bob"] - fee_leg) | ids["bob to carol"]  # not alice's fee
    rows["carol"]["transactions"] = ids["bob to carol"] | ids["to carol"]
    staff = {role: create_user(role) for role in ("admin", "compliance", "faculty")}
    return {"people": people, "rows": rows, "wallets": wallets, "staff": staff}


def test_a_student_sees_only_their_own_rows_in_every_money_table(world):
    everything = {table: visible(model) for table, model in TABLES.items()}  # as system:tests
    for name, user in world["people"].items():
        with as_user(user, "student"):
            for table, model in TABLES.items():
                seen = visible(model)
                assert seen == world["rows"][name][table], (name, table)
                assert seen < everything[table]  # there are other rows to hide


def test_a_student_sees_transactions_where_they_are_either_side(world):
    alice, bob = world["people"]["alice"], world["people"]["bob"]
    with as_user(bob, "student"):
        rows = db.session.execute(select(Transaction.debit_user_id, Transaction.credit_user_id,
                                         Transaction.type)).all()
    assert {(debit == bob.id, credit == bob.id, kind) for debit, credit, kind in rows} == {
        (False, True, T.TRANSFER), (True, False, T.TRANSFER)}
    assert any(debit == alice.id for debit, _, _ in rows)  # the sender's side is shown with it
    with as_user(alice, "student"):
        # No other user's wallet, not even the counterparty's, and no system wallet.
        assert ledger.user_wallet(bob.id, "USD") is None
        assert db.session.scalars(select(Wallet).where(Wallet.kind == WalletKind.SYSTEM)).all() == []
        assert {w.user_id for w in db.session.scalars(select(Wallet))} == {alice.id}


@pytest.mark.parametrize("role", ["admin", "compliance"])
def test_admins_and_compliance_officers_see_every_row(world, role):
    everything = {table: visible(model) for table, model in TABLES.items()}
    ours = {table: set().union(*(rows[table] for rows in world["rows"].values())) for table in TABLES}
    with as_user(world["staff"][role], role):
        for table, model in TABLES.items():
            seen = visible(model)
            assert seen == everything[table], table
            assert ours[table] <= seen
        assert db.session.scalars(select(Wallet.id).where(Wallet.kind == WalletKind.SYSTEM)).all()


def test_faculty_see_no_money_rows(world):
    with as_user(world["staff"]["faculty"], "faculty"):
        for table, model in TABLES.items():
            assert visible(model) == set(), table


def test_nobody_without_an_identity_sees_money_rows(world):
    assert world["rows"]["alice"]["wallets"]
    with acting_as(Actor(label="anonymous:web", role="anonymous"), db.session):
        for table, model in TABLES.items():
            assert visible(model) == set(), table


def refused(write) -> DBAPIError:
    with pytest.raises(DBAPIError) as error, db.session.begin_nested():
        write()
        db.session.flush()
    assert isinstance(error.value.orig, pg.InsufficientPrivilege), error.value.orig
    assert "row-level security" in str(error.value.orig)
    return error.value


def test_a_student_cannot_write_rows_of_someone_else(world):
    alice, bob, carol = (world["people"][name] for name in ("alice", "bob", "carol"))
    bob_wallet = world["wallets"]["bob"]
    with as_user(alice, "student"):
        refused(lambda: db.session.add(Wallet(user_id=bob.id, currency="BTC", kind=WalletKind.USER)))
        refused(lambda: db.session.add(IdempotencyKey(user_id=bob.id, key=ledger.new_key(), scope="transfer",
                                                      request_hash="1" * 64)))
        refused(lambda: db.session.add(Withdrawal(user_id=bob.id, wallet_id=bob_wallet.id, amount=Decimal("1"),
                                                  currency="USD", method=WithdrawalMethod.MOBILE_MONEY,
                                                  destination_encrypted=b"x", destination_masked="••12")))
        refused(lambda: db.session.add(Transaction(
            group_id=bob_wallet.id, type=T.TRANSFER, debit_wallet_id=bob_wallet.id,
            credit_wallet_id=world["wallets"]["carol"].id, debit_user_id=bob.id, credit_user_id=carol.id,
            amount=Decimal("1"), currency="USD")))
        changed = db.session.execute(update(Wallet).where(Wallet.id == bob_wallet.id)
                                     .values(status=WalletStatus.FROZEN, balance=Decimal("1000")))
        assert changed.rowcount == 0
        changed = db.session.execute(update(Withdrawal).where(Withdrawal.user_id == bob.id)
                                     .values(review_note="approved by alice"))
        assert changed.rowcount == 0
        assert db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == bob.id)).rowcount == 0
    row = db.session.execute(select(Wallet.status, Wallet.balance).where(Wallet.id == bob_wallet.id)).one()
    assert row == (WalletStatus.ACTIVE, Decimal("15"))
    assert db.session.scalar(select(Withdrawal.review_note).where(Withdrawal.user_id == bob.id)) == ""
    assert len(visible(IdempotencyKey) & world["rows"]["bob"]["idempotency_keys"]) == 1


def test_a_student_cannot_write_their_own_balance_or_ledger_rows_either(world):
    """Balances change only through the ledger, which writes as the ``ledger`` role: a student's
    identity should read its own wallet and transactions, never write them."""
    alice = world["people"]["alice"]
    own = world["wallets"]["alice"]
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
    with as_user(alice, "student"):
        changed = db.session.execute(update(Wallet).where(Wallet.id == own.id).values(balance=Decimal("1000")))
        assert changed.rowcount == 0
        refused(lambda: db.session.add(Transaction(
            group_id=own.id, type=T.DEPOSIT, debit_wallet_id=deposits.id, credit_wallet_id=own.id,
            credit_user_id=alice.id, amount=Decimal("1000"), currency="USD")))


def test_the_ledger_role_reads_across_users_only_inside_the_ledger(world):
    alice, bob = world["people"]["alice"], world["people"]["bob"]
    with as_user(alice, "student"):
        with ledger.as_ledger():
            assert ledger.user_wallet(bob.id, "USD") is not None
        assert ledger.user_wallet(bob.id, "USD") is None  # the student's own role again
