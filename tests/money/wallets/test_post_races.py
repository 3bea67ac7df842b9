"""Races through ``ledger_post`` (the function finds and locks the wallets itself): two transfers of
one sender that together pass the 24-hour limit, and a function post against a Python hold of
the same money. Committed rows; the ``bank`` fixture cleans up and verifies the ledger."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from portal.accounts.models import User
from portal.db import db
from portal.money.wallets import ledger, services
from portal.money.wallets.models import Transaction, TransactionType, Wallet
from tests.money.test_ledger_races import CODE, FUNDING, bank, own_connections, race_engine, wallet_rows  # noqa: F401
from tests.races import TIMEOUT, race, read

pytestmark = pytest.mark.no_db_rollback


def test_two_transfers_that_together_pass_the_daily_limit_one_goes(app, bank, monkeypatch):  # noqa: F811
    # 2% of 2,500 USD: an unverified sender may send 50 USD a day.
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {**app.config["TRANSFER_DAILY_LIMITS"], CODE: "2500"})
    (payer_id, payer_wallet), (payee_id, payee_wallet) = bank(2)
    payee_email = read(app, lambda: db.session.get(User, payee_id).email)
    # Both meet after every read before the ledger's lock (the limit is known), so the lock
    # alone decides which sees the other.
    meeting = threading.Barrier(2)
    real_limit = services.daily_limit
    met = threading.local()

    def limit_then_meet(code, sender_id=None):
        limit = real_limit(code, sender_id)
        if not getattr(met, "done", False):  # the refusal's message asks for the limit again
            met.done = True
            meeting.wait(timeout=TIMEOUT)
        return limit

    monkeypatch.setattr(services, "daily_limit", limit_then_meet)

    def send(user):
        return services.send_money(user, payee_email, "30", CODE, "", ledger.new_key())

    outcomes = race(app, [(payer_id, "student", send)] * 2, expected=(services.TransferLimitExceeded,),
                    barrier=meeting)
    assert sorted(o.ok for o in outcomes) == [False, True]
    refusal = next(o.refused for o in outcomes if not o.ok)
    assert "20.00 USD is left right now" in refusal.message
    balances = wallet_rows(app, [payer_wallet, payee_wallet])
    assert balances[payer_wallet] == (FUNDING - Decimal("30"), 0)
    assert balances[payee_wallet] == (FUNDING + Decimal("30"), 0)


def test_a_post_and_a_hold_of_the_same_money_one_goes(app, bank):  # noqa: F811
    (payer_id, payer_wallet), (payee_id, payee_wallet) = bank(2)
    share = FUNDING * Decimal("0.7")

    def wallets():
        with ledger.as_ledger():
            return db.session.get(Wallet, payer_wallet), db.session.get(Wallet, payee_wallet)

    def post(_user):
        own, theirs = wallets()
        return [tx.id for tx in ledger.post([ledger.Leg(own, theirs, share, TransactionType.TRANSFER)])]

    def hold(_user):
        own, theirs = wallets()
        return [tx.id for tx in ledger.hold([ledger.Leg(own, theirs, share, TransactionType.TRANSFER)])]

    for _ in range(3):  # the two paths, racing a few times with either first
        outcomes = race(app, [(payer_id, "student", post), (payer_id, "student", hold)],
                        expected=(ledger.InsufficientFunds,))
        assert sorted(o.ok for o in outcomes) == [False, True]
        assert all("available" in o.refused.message for o in outcomes if not o.ok)
        balance, locked = wallet_rows(app, [payer_wallet])[payer_wallet]
        assert balance - locked == FUNDING - share
        # Back to the start: release a hold, or send the money back.
        def undo(_user, held=outcomes[1].value, moved=outcomes[0].value):
            own, theirs = wallets()
            if held:
                with ledger.as_ledger():
                    pendings = [db.session.get(Transaction, tx_id) for tx_id in held]
                ledger.release(pendings)
            if moved:
                ledger.post([ledger.Leg(theirs, own, share, TransactionType.TRANSFER)])

        race(app, [(payer_id, "student", undo)])
