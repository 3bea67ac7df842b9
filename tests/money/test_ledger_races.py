"""The ledger under real concurrency: threads, each with its own app context, session and
database connection, racing over the same wallets.

The fixtures commit (the threads must see the rows), so each test leaves the database as it
found it as far as money goes: its users' wallets are emptied back to the outside world and the
system wallets return to their balances before the test. The users themselves stay (rows that
money history points at are never deleted), with empty wallets and a ledger that verifies.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pytest
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from psycopg import errors as pg
from sqlalchemy import create_engine, func, or_, select

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict
from portal.money.wallets import ledger
from portal.money.wallets.ledger import Leg
from portal.money.wallets.models import (
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletKind,
)
from tests.factories import create_user

T = TransactionType
CODE = "USD"
TIMEOUT = 30
WORKERS = 50
WALLETS = 10
TRANSFERS_PER_WORKER = 8
FUNDING = Decimal("100.00")
FEE = Decimal("0.25")
SEED = 20261201

pytestmark = pytest.mark.no_db_rollback


class _BoundSession(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's session ignores its own ``bind`` for mapped classes; this one uses it."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind if bind is not None else self.bind


@pytest.fixture(scope="module")
def race_engine(app):
    """A pool with a connection for every worker (the app's own pool is smaller), with lock and
    statement timeouts so that a hang fails the test instead of blocking the suite."""
    with app.app_context():
        url = db.engine.url
    engine = create_engine(url, pool_size=WORKERS + 2, max_overflow=0, pool_timeout=TIMEOUT,
                           connect_args={"options": "-c lock_timeout=20000 -c statement_timeout=25000"})
    yield engine
    engine.dispose()


@pytest.fixture
def own_connections(race_engine):
    """``db.session`` in every app context of this test is a session of its own on the race
    engine: one per thread, each on its own connection."""
    original = db.session
    db.session = db._make_scoped_session({"bind": race_engine, "binds": {}, "class_": _BoundSession})
    try:
        yield
    finally:
        db.session = original


def system_balances() -> dict[SystemWallet, Decimal]:
    with ledger.as_ledger():
        rows = db.session.execute(select(Wallet.system_name, func.sum(Wallet.balance))
                                  .where(Wallet.kind == WalletKind.SYSTEM, Wallet.currency == CODE)
                                  .group_by(Wallet.system_name)).all()  # shards together
    return {name: balance for name, balance in rows}


@pytest.fixture
def bank(app, own_connections):
    """``bank(n, amount)``: n committed students with ``amount`` USD each; returns
    ``[(user_id, wallet_id), ...]``. Afterwards: open holds released, wallets emptied into the
    deposits wallet, system wallets set back, and the ledger verified."""
    opened: list[tuple] = []
    with app.app_context(), acting_as(Actor.system("tests")):
        before = system_balances()
        db.session.remove()

    def open_bank(n: int, amount: Decimal = FUNDING) -> list[tuple]:
        with app.app_context(), acting_as(Actor.system("tests")):
            deposits = ledger.system_wallet(SystemWallet.DEPOSITS, CODE)
            # The system wallets the tests use, made now: the first use of one by two open
            # transactions at once makes the second wait for the first to commit.
            for name in (SystemWallet.FEES, SystemWallet.WITHDRAWALS):
                ledger.system_wallet(name, CODE)
            made = []
            for _ in range(n):
                user = create_user("student")
                wallet = ledger.open_user_wallet(user.id, CODE)
                ledger.post([Leg(deposits, wallet, amount, T.DEPOSIT)])
                made.append((user.id, wallet.id))
            db.session.commit()
            db.session.remove()
        opened.extend(made)
        return made

    yield open_bank

    with app.app_context(), acting_as(Actor.system("tests")):
        try:
            ids = [wallet_id for _, wallet_id in opened]
            with ledger.as_ledger():
                open_holds = list(db.session.scalars(select(Transaction).where(
                    Transaction.phase == Phase.PENDING, Transaction.debit_wallet_id.in_(ids))))
                resolved = set(db.session.scalars(select(Transaction.pending_id).where(
                    Transaction.pending_id.in_([p.id for p in open_holds]))))
            open_holds = [p for p in open_holds if p.id not in resolved]
            if open_holds:
                ledger.release(open_holds, description="Test clean-up")
            deposits = ledger.system_wallet(SystemWallet.DEPOSITS, CODE)
            with ledger.as_ledger():
                wallets = db.session.scalars(select(Wallet).where(Wallet.id.in_(ids)).order_by(Wallet.id)
                                             .with_for_update()).all()
            for wallet in wallets:
                if wallet.balance > 0:
                    ledger.post([Leg(wallet, deposits, wallet.balance, T.WITHDRAWAL, "Test clean-up")])
            for name, balance in system_balances().items():
                delta = balance - before.get(name, Decimal(0))
                if name != SystemWallet.DEPOSITS and delta:
                    other = ledger.system_wallet(name, CODE)
                    legs = [Leg(other, deposits, delta, T.WITHDRAWAL, "Test clean-up")] if delta > 0 else \
                        [Leg(deposits, other, -delta, T.DEPOSIT, "Test clean-up")]
                    ledger.post(legs)
            db.session.commit()
            after = system_balances()
            assert all(after[name] == before.get(name, 0) for name in after), (before, after)
            report = ledger.verify()
            assert report.ok, report.problems
        finally:
            db.session.rollback()
            db.session.remove()


def run_threads(target, args_list) -> None:
    threads = [threading.Thread(target=target, args=args, daemon=True) for args in args_list]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT * 2
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a worker hung"


def is_deadlock(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "orig", exc), pg.DeadlockDetected)


def wallet_rows(app, ids) -> dict:
    with app.app_context(), acting_as(Actor.system("tests")):
        rows = db.session.execute(select(Wallet.id, Wallet.balance, Wallet.locked_balance)
                                  .where(Wallet.id.in_(ids))).all()
        db.session.remove()
    return {row.id: (row.balance, row.locked_balance) for row in rows}


# -- (a) Transfers among ten wallets --------------------------------------------------------------


def test_fifty_workers_racing_transfers_neither_lose_nor_make_money(app, bank):
    accounts = bank(WALLETS)
    user_ids = [user_id for user_id, _ in accounts]
    wallet_ids = [wallet_id for _, wallet_id in accounts]
    with app.app_context(), acting_as(Actor.system("tests")):
        fees_before = system_balances().get(SystemWallet.FEES, Decimal(0))
        db.session.remove()
    barrier = threading.Barrier(WORKERS)
    outcomes: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        rng = random.Random(SEED + number)
        try:
            barrier.wait(timeout=TIMEOUT)
        except threading.BrokenBarrierError as exc:
            errors.append(exc)
            return
        for _ in range(TRANSFERS_PER_WORKER):
            i, j = rng.sample(range(WALLETS), 2)
            # One in six asks for more than any wallet starts with: refusals must happen.
            cents = rng.randint(15_000, 40_000) if rng.random() < 1 / 6 else rng.randint(1, 4_000)
            amount, with_fee = Decimal(cents) / 100, rng.random() < 0.5
            with app.app_context(), acting_as(Actor.for_user(user_ids[i], "student")):
                try:
                    with ledger.as_ledger():
                        sender = db.session.get(Wallet, wallet_ids[i])
                        recipient = db.session.get(Wallet, wallet_ids[j])
                    legs = [Leg(sender, recipient, amount, T.TRANSFER, "Race")]
                    if with_fee:
                        legs.append(Leg(sender, ledger.system_wallet(SystemWallet.FEES, CODE), FEE, T.FEE, "Fee"))
                    ledger.post(legs, initiated_by_id=user_ids[i])
                    db.session.commit()
                    outcomes.append(("moved", with_fee))
                except ledger.InsufficientFunds:
                    db.session.rollback()
                    outcomes.append(("refused", with_fee))
                except Exception as exc:  # noqa: BLE001 - every other error fails the test below
                    db.session.rollback()
                    errors.append(exc)
                finally:
                    db.session.remove()

    started = time.monotonic()
    run_threads(worker, [(n,) for n in range(WORKERS)])
    elapsed = time.monotonic() - started

    deadlocks = [exc for exc in errors if is_deadlock(exc)]
    assert not deadlocks, deadlocks
    assert not errors, errors[:5]
    counts = Counter(kind for kind, _ in outcomes)
    moved_with_fee = sum(1 for kind, with_fee in outcomes if kind == "moved" and with_fee)
    print(f"\n{WORKERS} workers, {WORKERS * TRANSFERS_PER_WORKER} transfers among {WALLETS} wallets in "
          f"{elapsed:.2f}s: {counts['moved']} succeeded ({moved_with_fee} with a fee leg), "
          f"{counts['refused']} refused for insufficient funds, 0 deadlocks, 0 other errors")
    assert counts["moved"] + counts["refused"] == WORKERS * TRANSFERS_PER_WORKER
    assert counts["moved"] > 0 and counts["refused"] > 0

    balances = wallet_rows(app, wallet_ids)
    assert all(balance >= 0 and locked == 0 for balance, locked in balances.values()), balances
    with app.app_context(), acting_as(Actor.system("tests")):
        fees_collected = system_balances()[SystemWallet.FEES] - fees_before
        recorded = Counter(db.session.scalars(select(Transaction.type).where(
            Transaction.debit_wallet_id.in_(wallet_ids), Transaction.type.in_([T.TRANSFER, T.FEE]))))
        replayed = dict(db.session.execute(
            select(Wallet.id, func.sum(Transaction.amount)).join(Transaction, or_(
                Transaction.credit_wallet_id == Wallet.id, Transaction.debit_wallet_id == Wallet.id))
            .where(Wallet.id.in_(wallet_ids), Transaction.credit_wallet_id == Wallet.id)
            .group_by(Wallet.id)).all())
        spent = dict(db.session.execute(
            select(Transaction.debit_wallet_id, func.sum(Transaction.amount))
            .where(Transaction.debit_wallet_id.in_(wallet_ids)).group_by(Transaction.debit_wallet_id)).all())
        report = ledger.verify()
        db.session.remove()
    # Nothing made or lost: what left the ten wallets is in the fee wallet.
    assert sum(balance for balance, _ in balances.values()) + fees_collected == FUNDING * WALLETS
    assert fees_collected == FEE * moved_with_fee
    assert recorded == Counter({T.TRANSFER: counts["moved"], T.FEE: moved_with_fee})
    for wallet_id, (balance, _) in balances.items():
        assert balance == replayed.get(wallet_id, 0) - spent.get(wallet_id, 0)
    assert report.ok, report.problems


# -- (b) One idempotency key, twenty requests at once ---------------------------------------------


def test_the_same_key_sent_twenty_times_at_once_pays_once(app, bank):
    (payer_id, payer_wallet), (payee_id, payee_wallet) = bank(2)
    key, threads = ledger.new_key(), 20
    request = {"to": str(payee_id), "amount": "10.00", "currency": CODE}
    barrier = threading.Barrier(threads)
    answers: list[tuple[dict, bool]] = []
    performed: list[int] = []
    errors: list[BaseException] = []

    def perform() -> dict:
        performed.append(1)
        time.sleep(0.2)  # the others arrive while the first is still at work
        with ledger.as_ledger():
            sender, recipient = db.session.get(Wallet, payer_wallet), db.session.get(Wallet, payee_wallet)
        txs = ledger.post([Leg(sender, recipient, Decimal("10.00"), T.TRANSFER),
                           Leg(sender, ledger.system_wallet(SystemWallet.FEES, CODE), FEE, T.FEE)],
                          initiated_by_id=payer_id)
        return {"group": str(txs[0].group_id), "transactions": [str(tx.id) for tx in txs]}

    def send() -> None:
        with app.app_context(), acting_as(Actor.for_user(payer_id, "student")):
            try:
                barrier.wait(timeout=TIMEOUT)
                answers.append(ledger.once(payer_id, key, "transfer", request, perform))
                db.session.commit()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                db.session.rollback()
                errors.append(exc)
                barrier.abort()
            finally:
                db.session.remove()

    run_threads(send, [() for _ in range(threads)])
    assert not errors, errors[:5]
    assert len(answers) == threads and len(performed) == 1
    assert sorted(replayed for _, replayed in answers) == [False] + [True] * (threads - 1)
    first = answers[0][0]
    assert all(result == first for result, _ in answers) and len(first["transactions"]) == 2
    balances = wallet_rows(app, [payer_wallet, payee_wallet])
    assert balances[payer_wallet] == (FUNDING - Decimal("10.00") - FEE, 0)
    assert balances[payee_wallet] == (FUNDING + Decimal("10.00"), 0)
    with app.app_context(), acting_as(Actor.system("tests")):
        assert db.session.scalar(select(func.count()).select_from(Transaction)
                                 .where(Transaction.debit_wallet_id == payer_wallet,
                                        Transaction.type == T.TRANSFER)) == 1
        db.session.remove()


# -- (c) Two holds that do not both fit -----------------------------------------------------------


@contextlib.contextmanager
def lock_together(parties: int) -> Iterator[threading.Barrier]:
    """Inside the block, every party reaches the ledger's row locks at the same moment (after
    all it does before them), so the lock alone decides who goes first."""
    barrier = threading.Barrier(parties)
    real_lock = ledger._lock

    def locking_together(ids):
        barrier.wait(timeout=TIMEOUT)
        return real_lock(ids)

    ledger._lock = locking_together
    try:
        yield barrier
    finally:
        ledger._lock = real_lock


def test_two_holds_that_together_exceed_the_balance_one_succeeds(app, bank):
    [(user_id, wallet_id)] = bank(1)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def hold() -> None:
        with app.app_context(), acting_as(Actor.for_user(user_id, "student")):
            try:
                with ledger.as_ledger():
                    wallet = db.session.get(Wallet, wallet_id)
                out = ledger.system_wallet(SystemWallet.WITHDRAWALS, CODE)
                ledger.hold([Leg(wallet, out, Decimal("60.00"), T.WITHDRAWAL)], initiated_by_id=user_id)
                db.session.commit()
                outcomes.append("held")
            except ledger.InsufficientFunds:
                db.session.rollback()
                outcomes.append("refused")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                db.session.rollback()
                errors.append(exc)
                barrier.abort()
            finally:
                db.session.remove()

    with lock_together(2) as barrier:
        run_threads(hold, [(), ()])
    assert not errors, errors
    assert sorted(outcomes) == ["held", "refused"]
    assert wallet_rows(app, [wallet_id])[wallet_id] == (FUNDING, Decimal("60.00"))
    with app.app_context(), acting_as(Actor.system("tests")):
        assert db.session.scalar(select(func.count()).select_from(Transaction).where(
            Transaction.debit_wallet_id == wallet_id, Transaction.phase == Phase.PENDING)) == 1
        db.session.remove()


# -- (d) Capture and release of one hold at the same moment ---------------------------------------


def settle_at_once(app, pending_id) -> tuple[dict[str, str], list[BaseException]]:
    """Capture and release the hold ``pending_id`` from two threads at the same moment."""
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def settle(how: str) -> None:
        with app.app_context(), acting_as(Actor.system("withdrawals")):
            try:
                pending = db.session.get(Transaction, pending_id)
                getattr(ledger, how)([pending])
                db.session.commit()
                outcomes[how] = "won"
            except Conflict as exc:
                db.session.rollback()
                outcomes[how] = exc.message
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                db.session.rollback()
                errors.append(exc)
                barrier.abort()
            finally:
                db.session.remove()

    with lock_together(2) as barrier:
        run_threads(settle, [("capture",), ("release",)])
    return outcomes, errors


def test_capture_and_release_of_one_hold_at_once_one_wins(app, bank):
    [(user_id, wallet_id)] = bank(1)
    rounds, amount = 4, Decimal("10.00")
    expected_balance = FUNDING
    winners: Counter[str] = Counter()
    for _ in range(rounds):
        with app.app_context(), acting_as(Actor.system("tests")):
            wallet = db.session.get(Wallet, wallet_id)
            [pending] = ledger.hold([Leg(wallet, ledger.system_wallet(SystemWallet.WITHDRAWALS, CODE), amount,
                                         T.WITHDRAWAL)], initiated_by_id=user_id)
            pending_id = pending.id
            db.session.commit()
            db.session.remove()
        outcomes, errors = settle_at_once(app, pending_id)
        assert not errors, errors
        assert sorted(outcomes.values()) == ["This hold was already settled.", "won"], outcomes
        winner = next(how for how, outcome in outcomes.items() if outcome == "won")
        winners[winner] += 1
        if winner == "capture":
            expected_balance -= amount
        assert wallet_rows(app, [wallet_id])[wallet_id] == (expected_balance, 0)
        with app.app_context(), acting_as(Actor.system("tests")):
            settled = db.session.scalars(select(Transaction.phase).where(Transaction.pending_id == pending_id)).all()
            db.session.remove()
        assert settled == [Phase.POST if winner == "capture" else Phase.VOID]
    print(f"\ncapture against release of one hold, {rounds} rounds: capture won {winners['capture']}, "
          f"release won {winners['release']}; the loser was refused every time")
    with app.app_context(), acting_as(Actor.system("tests")):
        report = ledger.verify()
        db.session.remove()
    assert report.ok, report.problems
