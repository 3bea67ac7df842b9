"""The ledger service (portal.money.wallets.ledger): movements all or nothing, the rules each one
checks, holds, reversals, the database's own guards, verification, idempotency and the event
sent after a commit."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from psycopg import errors as pg
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from portal import events
from portal.db import db
from portal.errors import Conflict, DomainError
from portal.money.currency import InvalidAmount
from portal.money.wallets import ledger
from portal.money.wallets.ledger import Leg
from portal.money.wallets.models import (
    IdempotencyKey,
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletStatus,
)
from tests.factories import create_user

T = TransactionType


def funded(amount: str | None = "100", code: str = "USD", user=None) -> Wallet:
    """A new student's wallet in ``code``, with ``amount`` deposited from the outside world."""
    user = user or create_user("student")
    wallet = ledger.open_user_wallet(user.id, code)
    if amount:
        ledger.post([Leg(ledger.system_wallet(SystemWallet.DEPOSITS, code), wallet, Decimal(amount), T.DEPOSIT)])
    return wallet


def stored(wallet: Wallet) -> tuple[Decimal, Decimal]:
    """(balance, lockedBalance) as the database has them now."""
    with ledger.as_ledger():
        return tuple(db.session.execute(select(Wallet.balance, Wallet.locked_balance)
                                        .where(Wallet.id == wallet.id)).one())


def count_moves(*wallets: Wallet) -> int:
    ids = [w.id for w in wallets]
    with ledger.as_ledger():
        return db.session.scalar(select(func.count()).select_from(Transaction).where(
            or_(Transaction.debit_wallet_id.in_(ids), Transaction.credit_wallet_id.in_(ids))))


def set_status(wallet: Wallet, status: WalletStatus) -> None:
    db.session.execute(update(Wallet).where(Wallet.id == wallet.id).values(status=status))


def fees_wallet(code: str = "USD") -> Wallet:
    return ledger.system_wallet(SystemWallet.FEES, code)


# -- Posting --------------------------------------------------------------------------------------


def test_a_deposit_and_a_transfer_move_value_and_record_one_row_per_leg():
    alice, bob = funded("100"), funded(None)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
    before = stored(deposits)[0]
    [tx] = ledger.post([Leg(alice, bob, Decimal("30.25"), T.TRANSFER, "Lunch", {"note": "thanks"})],
                       initiated_by_id=alice.user_id)
    assert stored(alice) == (Decimal("69.75"), 0) and stored(bob) == (Decimal("30.25"), 0)
    assert stored(deposits)[0] == before  # untouched by the transfer
    row = db.session.get(Transaction, tx.id)
    assert (row.phase, row.type, row.amount, row.currency) == (Phase.SINGLE, T.TRANSFER, Decimal("30.25"), "USD")
    assert (row.debit_user_id, row.credit_user_id, row.initiated_by_id) == (alice.user_id, bob.user_id,
                                                                           alice.user_id)
    assert (row.description, row.details) == ("Lunch", {"note": "thanks"})


def test_system_wallets_may_go_negative_user_wallets_never():
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "AZR")
    alice = funded(None, "AZR")
    start = stored(deposits)[0]
    ledger.post([Leg(deposits, alice, Decimal("5.12345678"), T.DEPOSIT)])
    assert stored(deposits)[0] == start - Decimal("5.12345678")
    bob = funded(None, "AZR")
    with pytest.raises(ledger.InsufficientFunds) as refused:
        ledger.post([Leg(alice, bob, Decimal("5.12345679"), T.TRANSFER)])
    assert refused.value.message == ("Not enough money: 5.12345678 AZR available, "
                                     "5.12345679 AZR needed.")
    assert refused.value.field == "amount"
    ledger.post([Leg(alice, bob, Decimal("5.12345678"), T.TRANSFER)])  # to the last unit is fine
    assert stored(alice) == (0, 0)


def test_a_sharded_system_wallet_spreads_by_user_and_its_balance_is_the_sum_of_its_shards():
    """Fees of different senders land on different shards of the fees wallet (no shared row
    lock between them); the same sender always on the same one; the balance adds them up."""
    from portal.money.wallets.models import SYSTEM_SHARDS

    shards = SYSTEM_SHARDS[SystemWallet.FEES]
    senders, seen = [], set()
    while len(senders) < 2:  # two students whose ids fall on different shards
        user = create_user("student")
        if user.id.int % shards not in seen:
            seen.add(user.id.int % shards)
            senders.append(user)
    before = ledger.system_balance(SystemWallet.FEES, "USD")
    used = []
    for user, fee in zip(senders, ("0.35", "1.20"), strict=True):
        wallet = funded("10", user=user)
        shard = ledger.system_wallet(SystemWallet.FEES, "USD", spread_by=user.id)
        assert shard.shard == user.id.int % shards and shard.kind == "system"
        assert ledger.system_wallet(SystemWallet.FEES, "USD", spread_by=user.id).id == shard.id  # made once
        ledger.post([Leg(wallet, shard, Decimal(fee), T.FEE)])
        used.append(shard)
    assert used[0].id != used[1].id
    assert ledger.system_balance(SystemWallet.FEES, "USD") == before + Decimal("1.55")
    # A user wallet cannot pose as a shard; a shard number beyond the limit is refused.
    with pytest.raises(IntegrityError), db.session.begin_nested(), ledger.as_ledger():
        db.session.execute(update(Wallet).where(Wallet.id == used[0].id).values(shard=64))
    with pytest.raises(IntegrityError), db.session.begin_nested(), ledger.as_ledger():
        db.session.execute(update(Wallet).where(Wallet.user_id == senders[0].id).values(shard=1))
    assert ledger.verify().ok


def test_several_legs_are_all_or_nothing():
    alice, bob, carol = funded("100"), funded(None), funded(None)
    set_status(carol, WalletStatus.FROZEN)
    moves = count_moves(alice, bob, carol)
    legs = [Leg(alice, bob, Decimal("10"), T.TRANSFER), Leg(alice, fees_wallet(), Decimal("1"), T.FEE),
            Leg(alice, carol, Decimal("5"), T.TRANSFER)]
    with pytest.raises(ledger.WalletUnavailable):
        ledger.post(legs)
    assert stored(alice) == (Decimal("100"), 0) and stored(bob) == (0, 0) and stored(carol) == (0, 0)
    assert count_moves(alice, bob, carol) == moves
    set_status(carol, WalletStatus.ACTIVE)
    recorded = ledger.post(legs)
    assert len({tx.group_id for tx in recorded}) == 1 and len(recorded) == 3
    assert stored(alice)[0] == Decimal("84") and stored(carol)[0] == Decimal("5")


def test_the_net_outflow_over_all_legs_is_checked():
    alice, bob = funded("10"), funded(None)
    fees = fees_wallet()
    fee_balance = stored(fees)[0]
    # Each leg alone fits, together they do not: both are refused.
    with pytest.raises(ledger.InsufficientFunds) as refused:
        ledger.post([Leg(alice, bob, Decimal("9.95"), T.TRANSFER), Leg(alice, fees, Decimal("0.10"), T.FEE)])
    assert refused.value.message == "Not enough money: 10.00 USD available, 10.05 USD needed."
    assert stored(alice) == (Decimal("10"), 0) and stored(bob) == (0, 0) and stored(fees)[0] == fee_balance
    # Money coming in within the same movement counts: net outflow, not gross.
    carol = funded(None)
    ledger.post([Leg(alice, carol, Decimal("10"), T.TRANSFER), Leg(carol, bob, Decimal("10"), T.TRANSFER)])
    assert stored(alice)[0] == 0 and stored(carol)[0] == 0 and stored(bob)[0] == Decimal("10")
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post([Leg(bob, carol, Decimal("6"), T.TRANSFER), Leg(bob, alice, Decimal("5"), T.TRANSFER)])


@pytest.mark.parametrize("status, word", [(WalletStatus.FROZEN, "frozen"), (WalletStatus.CLOSED, "closed")])
def test_frozen_or_closed_wallets_neither_send_nor_receive(status, word):
    alice, bob = funded("50"), funded("50")
    set_status(alice, status)
    with pytest.raises(ledger.WalletUnavailable) as sending:
        ledger.post([Leg(alice, bob, Decimal("1"), T.TRANSFER)])
    assert sending.value.message == f"Your USD wallet is {word}; no money can move out of it."
    with pytest.raises(ledger.WalletUnavailable) as receiving:
        ledger.post([Leg(bob, alice, Decimal("1"), T.TRANSFER)])
    assert receiving.value.message == f"The recipient's USD wallet is {word}; no money can move into it."
    with pytest.raises(ledger.WalletUnavailable):
        ledger.hold([Leg(alice, ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD"), Decimal("1"), T.WITHDRAWAL)])
    assert stored(alice) == (Decimal("50"), 0) and stored(bob) == (Decimal("50"), 0)


def test_malformed_legs_are_refused_before_anything_moves():
    usd, azr, other = funded("10"), funded("10", "AZR"), funded(None)
    moves = count_moves(usd, azr, other)
    cases = [
        (Leg(usd, azr, Decimal("1"), T.TRANSFER), ledger.LedgerError,
         "Both wallets of a movement must hold the same currency."),
        (Leg(usd, usd, Decimal("1"), T.TRANSFER), ledger.LedgerError, "A movement needs two different wallets."),
        (Leg(usd, other, Decimal("0.001"), T.TRANSFER), InvalidAmount, "USD amounts have at most 2 decimal places."),
        (Leg(usd, other, Decimal("0"), T.TRANSFER), ledger.LedgerError, "A movement's amount must be positive."),
        (Leg(usd, other, Decimal("-1"), T.TRANSFER), ledger.LedgerError, "A movement's amount must be positive."),
        (Leg(usd, other, 0.5, T.TRANSFER), ledger.LedgerError, "A movement's amount must be a Decimal, never a float."),
    ]
    for leg, error, message in cases:
        for movement in (ledger.post, ledger.hold):
            with pytest.raises(error) as refused:
                movement([Leg(usd, other, Decimal("1"), T.TRANSFER), leg])
            assert refused.value.message == message
    with pytest.raises(ledger.LedgerError, match="Nothing to move"):
        ledger.post([])
    assert count_moves(usd, azr, other) == moves
    assert stored(usd) == (Decimal("10"), 0) and stored(other) == (0, 0)


def test_amounts_are_exact_at_every_scale_even_for_large_ether_balances():
    """NUMERIC(38, 18) holds 20 digits before the point: arithmetic must not round to the
    default 28 significant digits."""
    wallet = funded("1", "ETH")
    ledger.post([Leg(ledger.system_wallet(SystemWallet.DEPOSITS, "ETH"), wallet,
                     Decimal("9999999999.999999999999999999"), T.DEPOSIT)])
    assert stored(wallet)[0] == Decimal("10000000000.999999999999999999")
    other = funded(None, "ETH")
    ledger.post([Leg(wallet, other, Decimal("0.000000000000000001"), T.TRANSFER)])
    assert stored(wallet)[0] == Decimal("10000000000.999999999999999998")
    assert wallet.balance == Decimal("10000000000.999999999999999998")
    report = ledger.verify()
    assert report.ok, report.problems


# -- The database's own guards --------------------------------------------------------------------


def test_the_check_constraint_keeps_user_balances_non_negative_even_without_the_ledger():
    alice = funded("10")
    for values in ({"balance": Decimal("-0.01")}, {"locked_balance": Decimal("10.01")}):
        with pytest.raises(IntegrityError) as refused, db.session.begin_nested():
            db.session.execute(update(Wallet).where(Wallet.id == alice.id).values(**values))
        assert isinstance(refused.value.orig, pg.CheckViolation)
        assert refused.value.orig.diag.constraint_name == "ck_wallets_user_funds_cover_holds"
    with pytest.raises(IntegrityError) as refused, db.session.begin_nested():
        db.session.execute(update(Wallet).where(Wallet.id == alice.id).values(locked_balance=Decimal("-1")))
    assert refused.value.orig.diag.constraint_name == "ck_wallets_locked_not_negative"
    assert stored(alice) == (Decimal("10"), 0)


def test_transactions_cannot_be_updated_or_deleted_by_the_app_role():
    alice, bob = funded("10"), funded(None)
    [tx] = ledger.post([Leg(alice, bob, Decimal("1"), T.TRANSFER)])
    for statement in (update(Transaction).where(Transaction.id == tx.id).values(amount=Decimal("1000")),
                      delete(Transaction).where(Transaction.id == tx.id)):
        for as_ledger in (False, True):
            with pytest.raises(DBAPIError) as refused, db.session.begin_nested():
                if as_ledger:
                    with ledger.as_ledger():
                        db.session.execute(statement)
                else:
                    db.session.execute(statement)
            assert isinstance(refused.value.orig, pg.InsufficientPrivilege)
    assert db.session.scalar(select(Transaction.amount).where(Transaction.id == tx.id)) == Decimal("1")


# -- Holds ----------------------------------------------------------------------------------------


def test_a_hold_locks_value_and_capture_moves_it():
    alice = funded("100")
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    out_before = stored(out)[0]
    [pending] = ledger.hold([Leg(alice, out, Decimal("30"), T.WITHDRAWAL, "Payout")])
    assert pending.phase == Phase.PENDING
    assert stored(alice) == (Decimal("100"), Decimal("30")) and alice.available == Decimal("70")
    assert stored(out)[0] == out_before
    bob = funded(None)
    with pytest.raises(ledger.InsufficientFunds) as refused:
        ledger.post([Leg(alice, bob, Decimal("70.01"), T.TRANSFER)])
    assert refused.value.message == "Not enough money: 70.00 USD available, 70.01 USD needed."
    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold([Leg(alice, out, Decimal("70.01"), T.WITHDRAWAL)])
    [posted] = ledger.capture([pending], description="Paid out")
    assert (posted.phase, posted.pending_id, posted.amount, posted.description) == (Phase.POST, pending.id,
                                                                                   Decimal("30"), "Paid out")
    assert posted.group_id == pending.group_id
    assert stored(alice) == (Decimal("70"), 0) and stored(out)[0] == out_before + 30
    ledger.post([Leg(alice, bob, Decimal("70"), T.TRANSFER)])  # all of it is available again
    assert stored(alice) == (0, 0)


def test_release_gives_the_hold_back_and_moves_nothing():
    alice = funded("100")
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    out_before = stored(out)[0]
    holds = ledger.hold([Leg(alice, out, Decimal("20"), T.WITHDRAWAL), Leg(alice, fees_wallet(), Decimal("1"),
                                                                          T.FEE)])
    assert stored(alice) == (Decimal("100"), Decimal("21"))
    voids = ledger.release(holds)
    assert [v.phase for v in voids] == [Phase.VOID, Phase.VOID]
    assert {v.pending_id for v in voids} == {h.id for h in holds}
    assert stored(alice) == (Decimal("100"), 0) and stored(out)[0] == out_before


def test_a_hold_on_several_legs_checks_their_sum():
    alice = funded("10")
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold([Leg(alice, out, Decimal("9.95"), T.WITHDRAWAL), Leg(alice, fees_wallet(), Decimal("0.10"),
                                                                         T.FEE)])
    assert stored(alice) == (Decimal("10"), 0)


@pytest.mark.parametrize("first, second", [("capture", "capture"), ("capture", "release"),
                                           ("release", "capture"), ("release", "release")])
def test_a_hold_resolves_only_once(first, second):
    alice = funded("100")
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    pending = ledger.hold([Leg(alice, out, Decimal("40"), T.WITHDRAWAL)])
    getattr(ledger, first)(pending)
    after_first = stored(alice)
    with pytest.raises(Conflict) as refused:
        getattr(ledger, second)(pending)
    assert refused.value.message == "This hold was already settled."
    assert stored(alice) == after_first == ((Decimal("60"), 0) if first == "capture" else (Decimal("100"), 0))
    report = ledger.verify()
    assert report.ok, report.problems


def test_only_pending_transactions_can_be_resolved_and_capture_respects_the_recipient():
    alice, bob = funded("100"), funded(None)
    [single] = ledger.post([Leg(alice, bob, Decimal("1"), T.TRANSFER)])
    with pytest.raises(ledger.LedgerError, match="Only a pending transaction"):
        ledger.capture([single])
    with pytest.raises(ledger.LedgerError, match="No hold"):
        ledger.release([])
    pending = ledger.hold([Leg(alice, bob, Decimal("10"), T.TRANSFER)])
    set_status(bob, WalletStatus.FROZEN)
    with pytest.raises(ledger.WalletUnavailable):
        ledger.capture(pending)
    # A frozen wallet's hold can still be given back: nothing moves.
    set_status(alice, WalletStatus.FROZEN)
    ledger.release(pending)
    assert stored(alice) == (Decimal("99"), 0)


def test_a_refused_hold_or_capture_leaves_nothing_behind_in_the_session():
    """The caller may catch the refusal and carry on: what it flushes or commits afterwards must
    not include half of the refused movement."""
    alice, bob = funded("100"), funded("5")
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    moves = count_moves(alice, bob)
    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold([Leg(alice, out, Decimal("10"), T.WITHDRAWAL), Leg(bob, out, Decimal("10"), T.WITHDRAWAL)])
    db.session.flush()
    assert stored(alice) == (Decimal("100"), 0) and stored(bob) == (Decimal("5"), 0)
    carol = funded(None)
    holds = ledger.hold([Leg(alice, out, Decimal("10"), T.WITHDRAWAL), Leg(alice, carol, Decimal("20"), T.TRANSFER)])
    set_status(carol, WalletStatus.FROZEN)
    with pytest.raises(ledger.WalletUnavailable):
        ledger.capture(holds)
    with pytest.raises(ledger.LedgerError, match="listed twice"):
        ledger.release([holds[0], holds[0]])
    db.session.flush()
    assert stored(alice) == (Decimal("100"), Decimal("30")) and stored(carol) == (0, 0)
    assert count_moves(alice, bob, carol) == moves + 2
    ledger.release(holds)
    assert stored(alice) == (Decimal("100"), 0)


# -- Reversals ------------------------------------------------------------------------------------


def test_reverse_moves_the_value_back_once():
    alice, bob = funded("100"), funded(None)
    [tx] = ledger.post([Leg(alice, bob, Decimal("25"), T.TRANSFER)])
    reversal = ledger.reverse(tx, description="Sent by mistake")
    assert (reversal.type, reversal.reverses_id, reversal.debit_wallet_id, reversal.credit_wallet_id) == (
        T.REVERSAL, tx.id, bob.id, alice.id)
    assert reversal.details == {"reverses": str(tx.id)} and reversal.description == "Sent by mistake"
    assert stored(alice)[0] == Decimal("100") and stored(bob)[0] == 0
    with pytest.raises(Conflict) as refused:
        ledger.reverse(tx)
    assert refused.value.message == "This transaction was already reversed."
    assert stored(alice)[0] == Decimal("100")


def test_a_reversal_needs_the_money_back_and_a_moved_transaction():
    alice, bob, carol = funded("100"), funded(None), funded(None)
    [tx] = ledger.post([Leg(alice, bob, Decimal("25"), T.TRANSFER)])
    ledger.post([Leg(bob, carol, Decimal("20"), T.TRANSFER)])
    with pytest.raises(ledger.InsufficientFunds):
        ledger.reverse(tx)
    pending = ledger.hold([Leg(alice, bob, Decimal("5"), T.TRANSFER)])
    with pytest.raises(ledger.LedgerError, match="Only a transaction that moved value"):
        ledger.reverse(pending[0])
    [voided] = ledger.release(pending)
    with pytest.raises(ledger.LedgerError):
        ledger.reverse(voided)


# -- Verification ---------------------------------------------------------------------------------


def test_verify_passes_on_a_consistent_ledger_and_reports_per_currency_sums():
    alice, bob = funded("100"), funded("5", "ETH")
    ledger.hold([Leg(alice, ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD"), Decimal("7"), T.WITHDRAWAL)])
    assert bob.balance == 5
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.currencies == {"AZR": 0, "USD": 0, "BTC": 0, "ETH": 0}
    assert report.wallets >= 4 and report.transactions >= 3 and report.checked_at is not None


def test_verify_reports_a_tampered_balance_and_a_tampered_locked_balance():
    alice = funded("100")
    bob = funded("50")
    db.session.execute(update(Wallet).where(Wallet.id == alice.id).values(balance=Wallet.balance + 5))
    db.session.execute(update(Wallet).where(Wallet.id == bob.id).values(locked_balance=Decimal("3")))
    report = ledger.verify()
    assert not report.ok
    assert report.currencies["USD"] == Decimal("5")
    assert "USD: balances sum to 5.000000000000000000, not zero." in report.problems
    assert (f"user wallet {alice.id} (USD): balance 105.000000000000000000, its transactions add up to "
            f"100.000000000000000000.") in report.problems
    assert (f"user wallet {bob.id} (USD): locked 3.000000000000000000, its open holds add up to 0."
            in report.problems)
    assert len(report.problems) == 3, report.problems


# -- Idempotency ----------------------------------------------------------------------------------


class Transfer:
    """A ``perform`` for ``once`` that sends ``amount`` and counts its calls."""

    def __init__(self, sender: Wallet, recipient: Wallet, amount: str):
        self.sender, self.recipient, self.amount, self.calls = sender, recipient, Decimal(amount), 0

    @property
    def request(self) -> dict:
        return {"to": str(self.recipient.user_id), "amount": str(self.amount), "currency": "USD"}

    def __call__(self) -> dict:
        self.calls += 1
        txs = ledger.post([Leg(self.sender, self.recipient, self.amount, T.TRANSFER)])
        return {"transactions": [str(tx.id) for tx in txs]}


def test_once_returns_the_first_result_for_the_same_request_and_does_nothing_more():
    alice, bob = funded("100"), funded(None)
    key, send = ledger.new_key(), Transfer(alice, bob, "10")
    first, replayed = ledger.once(alice.user_id, key, "transfer", send.request, send)
    assert not replayed and send.calls == 1
    again, replayed = ledger.once(alice.user_id, key, "transfer", dict(reversed(send.request.items())), send)
    assert replayed and again == first and send.calls == 1
    assert stored(alice)[0] == Decimal("90") and stored(bob)[0] == Decimal("10")
    stored_key = db.session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == key)).one()
    assert stored_key.result == first and stored_key.scope == "transfer" and stored_key.user_id == alice.user_id


def test_once_refuses_the_same_key_with_another_request_or_scope():
    alice, bob = funded("100"), funded(None)
    key, send = ledger.new_key(), Transfer(alice, bob, "10")
    ledger.once(alice.user_id, key, "transfer", send.request, send)
    altered = Transfer(alice, bob, "11")
    with pytest.raises(ledger.IdempotencyMismatch) as refused:
        ledger.once(alice.user_id, key, "transfer", altered.request, altered)
    assert refused.value.message == ("This form was already sent with other details. Nothing was changed: "
                                     "start again from a fresh form.")
    assert refused.value.status_code == 409
    with pytest.raises(ledger.IdempotencyMismatch):
        ledger.once(alice.user_id, key, "withdrawal", send.request, send)
    assert altered.calls == 0 and send.calls == 1 and stored(alice)[0] == Decimal("90")
    # Keys belong to a user: another user's identical key is a request of its own.
    carol = funded("20")
    other = Transfer(carol, bob, "10")
    _, replayed = ledger.once(carol.user_id, key, "transfer", other.request, other)
    assert not replayed and other.calls == 1


@pytest.mark.parametrize("key", [None, "", "short", "x" * 101, "has spaces in it ....", "semi;colon-0123456789",
                                 "ключ-0123456789abcdef"])
def test_once_refuses_a_malformed_key(key):
    alice, bob = funded("10"), funded(None)
    send = Transfer(alice, bob, "1")
    with pytest.raises(DomainError) as refused:
        ledger.once(alice.user_id, key, "transfer", send.request, send)
    assert refused.value.message == "This form is out of date: reload the page and try again."
    assert send.calls == 0 and stored(alice)[0] == Decimal("10")


def test_a_failed_first_attempt_lets_a_corrected_retry_with_the_same_key_through():
    alice, bob = funded("20"), funded(None)
    db.session.commit()  # the fixtures; what follows is one request's transaction, as in a view
    key = ledger.new_key()
    too_much = Transfer(alice, bob, "50")
    with pytest.raises(ledger.InsufficientFunds):
        ledger.once(alice.user_id, key, "transfer", too_much.request, too_much)
    db.session.rollback()  # what the view's error handler does
    assert db.session.scalar(select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)) == 0
    corrected = Transfer(alice, bob, "15")
    result, replayed = ledger.once(alice.user_id, key, "transfer", corrected.request, corrected)
    db.session.commit()
    assert not replayed and corrected.calls == 1
    assert ledger.once(alice.user_id, key, "transfer", corrected.request, corrected) == (result, True)
    with pytest.raises(ledger.IdempotencyMismatch):
        ledger.once(alice.user_id, key, "transfer", too_much.request, too_much)
    assert stored(alice)[0] == Decimal("5") and stored(bob)[0] == Decimal("15")


def test_a_failed_attempt_takes_its_key_and_its_work_back_even_if_the_caller_carries_on():
    alice, bob, carol = funded("20"), funded(None), funded(None)
    key = ledger.new_key()

    def half_then_fail() -> dict:
        ledger.post([Leg(alice, carol, Decimal("5"), T.TRANSFER)])
        ledger.post([Leg(alice, bob, Decimal("50"), T.TRANSFER)])  # refused
        return {}

    with pytest.raises(ledger.InsufficientFunds):
        ledger.once(alice.user_id, key, "transfer", {"amount": "50"}, half_then_fail)
    # No rollback by the caller: the first leg and the key went back all the same.
    assert stored(alice)[0] == Decimal("20") and stored(carol)[0] == 0
    retry = Transfer(alice, bob, "15")
    _, replayed = ledger.once(alice.user_id, key, "transfer", retry.request, retry)
    assert not replayed and retry.calls == 1 and stored(bob)[0] == Decimal("15")


# -- After the commit -----------------------------------------------------------------------------


@pytest.fixture
def announced():
    received: list[list[uuid.UUID]] = []

    def receiver(sender, **kwargs):
        received.append(list(kwargs["transaction_ids"]))

    events.transaction_committed.connect(receiver)
    try:
        yield received
    finally:
        events.transaction_committed.disconnect(receiver)


def test_transaction_committed_is_sent_after_the_commit_with_the_ids(announced):
    alice, bob = funded("100"), funded(None)
    deposits = [[tx.id for tx in count_rows(alice)]]
    db.session.commit()
    assert announced == deposits  # the fixture's deposit
    announced.clear()
    legs = ledger.post([Leg(alice, bob, Decimal("10"), T.TRANSFER), Leg(alice, fees_wallet(), Decimal("1"), T.FEE)])
    held = ledger.hold([Leg(alice, bob, Decimal("2"), T.TRANSFER)])
    assert announced == []  # not before the commit
    db.session.commit()
    assert announced == [[tx.id for tx in legs + held]]
    db.session.commit()
    assert len(announced) == 1  # once


def test_transaction_committed_is_not_sent_for_rolled_back_rows(announced):
    alice, bob = funded("100"), funded(None)
    db.session.commit()
    announced.clear()
    ledger.post([Leg(alice, bob, Decimal("10"), T.TRANSFER)])
    db.session.rollback()
    db.session.commit()
    assert announced == []
    # A savepoint rolled back takes only its own rows out of the announcement.
    [kept] = ledger.post([Leg(alice, bob, Decimal("1"), T.TRANSFER)])
    savepoint = db.session.begin_nested()
    ledger.post([Leg(alice, bob, Decimal("2"), T.TRANSFER)])
    savepoint.rollback()
    with pytest.raises(ledger.InsufficientFunds):
        ledger.once(alice.user_id, ledger.new_key(), "transfer", {},
                    lambda: [ledger.post([Leg(alice, bob, Decimal("3"), T.TRANSFER)]),
                             ledger.post([Leg(alice, bob, Decimal("1000"), T.TRANSFER)])])
    db.session.commit()
    assert announced == [[kept.id]]
    assert stored(bob)[0] == Decimal("1")


def count_rows(wallet: Wallet) -> list[Transaction]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Transaction).where(or_(Transaction.debit_wallet_id == wallet.id,
                                                                     Transaction.credit_wallet_id == wallet.id))
                                       .order_by(Transaction.created_at)))
