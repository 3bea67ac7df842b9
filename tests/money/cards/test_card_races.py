"""Fifty authorizations on one card at the same moment, each on its own connection: the wallet is
never overdrawn, exactly as many are approved as the balance covers, and the rest are declined
for insufficient funds with no hold left behind. And a freeze racing the authorizations: every
authorization decided after the freeze is declined.

The fixture commits (the threads must see the card); afterwards the holds are released and the
money returned to the outside world, so the ledger verifies and the system wallets are as before.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from sqlalchemy import create_engine, select

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.money.cards import codes, network, services
from portal.money.cards.models import CardTransaction
from portal.money.wallets import ledger
from portal.money.wallets.ledger import Leg
from portal.money.wallets.models import Phase, SystemWallet, Transaction, TransactionType, Wallet
from tests.money.cards.helpers import auth_body, card_holder, issued

pytestmark = pytest.mark.no_db_rollback

WORKERS = 50
TIMEOUT = 30


class _BoundSession(FlaskSQLAlchemySession):
    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind if bind is not None else self.bind


@pytest.fixture(scope="module")
def race_engine(app):
    with app.app_context():
        url = db.engine.url
    engine = create_engine(url, pool_size=WORKERS + 2, max_overflow=0, pool_timeout=TIMEOUT,
                           connect_args={"options": "-c lock_timeout=20000 -c statement_timeout=25000"})
    yield engine
    engine.dispose()


@pytest.fixture
def own_connections(race_engine):
    original = db.session
    db.session = db._make_scoped_session({"bind": race_engine, "binds": {}, "class_": _BoundSession})
    try:
        yield
    finally:
        db.session = original


@pytest.fixture
def funded_card(app, own_connections):
    """A committed student with 100.00 USD and a card; cleaned up afterwards."""
    made = {}
    with app.app_context(), acting_as(Actor.system("tests")):
        # Every float shard made now: a first use by two open transactions would queue them.
        for shard_user in range(8):
            import uuid

            ledger.system_wallet(SystemWallet.CARD_FLOAT, "USD", spread_by=uuid.UUID(int=shard_user))
        user = card_holder("100.00")
        card, revealed = issued(user)
        made.update(user_id=user.id, card_id=card.id, wallet_id=card.wallet_id, revealed=revealed)
        db.session.commit()
        db.session.remove()
    yield made
    with app.app_context(), acting_as(Actor.system("tests")):
        try:
            with ledger.as_ledger():
                holds = list(db.session.scalars(select(Transaction).where(
                    Transaction.phase == Phase.PENDING, Transaction.debit_wallet_id == made["wallet_id"])))
                resolved = set(db.session.scalars(select(Transaction.pending_id).where(
                    Transaction.pending_id.in_([h.id for h in holds]))))
            open_holds = [h for h in holds if h.id not in resolved]
            if open_holds:
                ledger.release(open_holds, description="Test clean-up")
            with ledger.as_ledger():
                wallet = db.session.get(Wallet, made["wallet_id"])
                db.session.refresh(wallet)
            if wallet.balance > 0:
                ledger.post([Leg(wallet, ledger.system_wallet(SystemWallet.DEPOSITS, "USD"), wallet.balance,
                                 TransactionType.WITHDRAWAL, "Test clean-up")])
            db.session.commit()
            assert ledger.verify().ok
        finally:
            db.session.rollback()
            db.session.remove()


def _race(app, bodies, before=None):
    barrier = threading.Barrier(len(bodies) + (1 if before else 0))
    answers: list = [None] * len(bodies)
    errors: list[BaseException] = []

    def run(index: int, body: dict) -> None:
        try:
            with app.app_context(), acting_as(network.NETWORK_ACTOR):
                try:
                    message = network.parse("authorize", json.dumps(body).encode())
                    barrier.wait(timeout=TIMEOUT)
                    answers[index] = network.authorize(message)
                    db.session.commit()
                finally:
                    db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i, body), daemon=True) for i, body in enumerate(bodies)]
    if before:
        threads.append(threading.Thread(target=before, args=(barrier,), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads), "an authorization hung"
    if errors:
        raise errors[0]
    return answers


def _wallet(app, wallet_id):
    with app.app_context(), acting_as(Actor.system("tests")), ledger.as_ledger():
        wallet = db.session.get(Wallet, wallet_id)
        figures = (wallet.balance, wallet.locked_balance)
        db.session.remove()
    return figures


def test_fifty_authorizations_at_once_never_overdraw(app, funded_card):
    bodies = [auth_body(funded_card["revealed"], amount="7.00") for _ in range(WORKERS)]
    answers = _race(app, bodies)
    approved = [a for a in answers if a.approved]
    assert len(approved) == 14  # 14 x 7.00 = 98.00; a fifteenth would need 105.00
    assert {a.code for a in answers if not a.approved} == {codes.INSUFFICIENT_FUNDS}
    balance, locked = _wallet(app, funded_card["wallet_id"])
    assert (balance, locked) == (Decimal("100.00"), Decimal("98.00"))
    with app.app_context(), acting_as(Actor.system("tests")):
        rows = db.session.scalars(select(CardTransaction).where(CardTransaction.card_id == funded_card["card_id"])).all()
        assert len(rows) == WORKERS and sum(1 for r in rows if r.hold_transaction_id) == 14
        assert ledger.verify().ok
        db.session.remove()


def test_a_freeze_in_flight_leaves_a_consistent_card(app, funded_card):
    """Ten authorizations and a freeze start together: each authorization is decided wholly
    before or wholly after the freeze (the card's row lock orders them), so every one approved
    has its hold and every one after the freeze is declined as restricted."""
    frozen_at: dict = {}

    def freeze(barrier):
        with app.app_context(), acting_as(Actor.system("tests")):
            try:
                from portal.accounts.models import User

                user = db.session.get(User, funded_card["user_id"])
                barrier.wait(timeout=TIMEOUT)
                services.freeze(user, funded_card["card_id"])
                frozen_at["at"] = db.session.scalar(select(db.func.clock_timestamp()))
                db.session.commit()
            finally:
                db.session.rollback()
                db.session.remove()

    bodies = [auth_body(funded_card["revealed"], amount="1.00") for _ in range(10)]
    answers = _race(app, bodies, before=freeze)
    assert {a.code for a in answers} <= {codes.APPROVED, codes.RESTRICTED_CARD}
    balance, locked = _wallet(app, funded_card["wallet_id"])
    assert locked == Decimal(sum(1 for a in answers if a.approved))
    with app.app_context(), acting_as(Actor.system("tests")):
        rows = db.session.scalars(select(CardTransaction).where(CardTransaction.card_id == funded_card["card_id"])
                                  .order_by(CardTransaction.created_at)).all()
        decided = [r.response_code for r in rows]
        # Once one is declined as restricted, none after it is approved.
        if codes.RESTRICTED_CARD in decided:
            assert codes.APPROVED not in decided[decided.index(codes.RESTRICTED_CARD):]
        db.session.remove()


def test_a_daily_limit_holds_when_authorizations_arrive_together(app, funded_card):
    """The spending sums are read after the card's lock: of ten 7.00 purchases at once under a
    20.00 daily limit, two are approved and the rest declined for the limit."""
    with app.app_context(), acting_as(Actor.system("tests")):
        from portal.accounts.models import User

        services.set_controls(db.session.get(User, funded_card["user_id"]), funded_card["card_id"], daily_limit="20")
        db.session.commit()
        db.session.remove()
    answers = _race(app, [auth_body(funded_card["revealed"], amount="7.00") for _ in range(10)])
    assert sorted(a.code for a in answers) == [codes.APPROVED] * 2 + [codes.EXCEEDS_LIMIT] * 8
    assert _wallet(app, funded_card["wallet_id"]) == (Decimal("100.00"), Decimal("14.00"))


def test_one_message_delivered_twice_at_once_holds_once(app, funded_card, monkeypatch):
    """Both deliveries look for the message before either is committed; the second's row is
    refused by the unique network id, and received again (as the route does) it gets the first
    answer: one hold, one reference, one answer marked as a duplicate."""
    from portal.money.cards import pan
    from tests.money.cards.helpers import signed_headers

    raw = json.dumps(auth_body(funded_card["revealed"], amount="3.00")).encode()
    with app.app_context():
        headers = signed_headers(raw)
    barrier = threading.Barrier(2)
    lookup = pan.lookup_hash
    meet = threading.local()

    def lookup_after_meeting(number):
        if not getattr(meet, "done", False):  # the first attempt only: both start together
            meet.done = True
            barrier.wait(timeout=TIMEOUT)
        return lookup(number)

    monkeypatch.setattr(pan, "lookup_hash", lookup_after_meeting)
    answers, retried, errors = [None, None], [0, 0], []

    def deliver(index):
        try:
            with app.app_context():
                for _attempt in range(2):
                    try:
                        with network.acting_for_network():
                            answers[index] = network.receive("authorize", raw, headers)
                            db.session.commit()
                        break
                    except network.DeliveredAtOnce:
                        db.session.rollback()
                        retried[index] += 1
                    finally:
                        db.session.rollback()
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=deliver, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT * 2)
    if errors:
        raise errors[0]
    assert sum(retried) <= 1  # the one that lost the race (when they met inside the database)
    assert all(a.approved for a in answers) and answers[0].reference == answers[1].reference
    assert sorted(a.duplicate for a in answers) == [False, True]
    assert _wallet(app, funded_card["wallet_id"]) == (Decimal("100.00"), Decimal("3.00"))


def test_an_authorization_that_waited_for_the_card_is_dated_when_it_was_decided(app, funded_card):
    """The card transaction's time is taken after the card's lock, not when the message came:
    one that waits behind another transaction on the card is dated after that one ended, so a
    card's authorizations read in time order are the order they were decided in."""
    held = threading.Event()
    released_at: dict = {}

    def hold_the_card(barrier):
        with app.app_context(), acting_as(Actor.system("tests")):
            try:
                db.session.execute(select(db.text("1")).select_from(db.text("virtual_cards"))
                                   .where(db.text("id = :id")).with_for_update(),
                                   {"id": funded_card["card_id"]})
                held.set()
                barrier.wait(timeout=TIMEOUT)
                threading.Event().wait(0.5)  # the authorization now waits on the card's lock
                released_at["at"] = db.session.scalar(select(db.func.clock_timestamp()))
                db.session.commit()
            finally:
                db.session.rollback()
                db.session.remove()

    (answer,) = _race(app, [auth_body(funded_card["revealed"], amount="1.00")], before=hold_the_card)
    assert held.is_set() and answer.approved
    with app.app_context(), acting_as(Actor.system("tests")):
        row = db.session.get(CardTransaction, answer.reference)
        assert row.created_at >= released_at["at"]
        db.session.remove()
