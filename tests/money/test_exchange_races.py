"""Accepting one quote twice at the same moment, on two connections with two keys (two tabs):
one conversion is made, the other request finds it completed and pays nothing.

Both requests are released together by a barrier; ``accept`` locks the quote row first, so the
second waits for the first to commit and then sees it completed. The fixtures are committed,
and removed afterwards as the database owner, ledger rows included (with the system wallets'
balances put back, so the ledger still verifies for the tests that follow).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.db.urls import libpq_url
from portal.money.exchange import services
from portal.money.exchange.models import Conversion, ConversionStatus, RateSource
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction
from tests.factories import create_user
from tests.money.factories.exchange import balance, fund, make_pair, make_rate
from tests.races import race


def _remove_as_owner(app, ids: dict) -> None:
    with psycopg.connect(libpq_url(app.config["MIGRATION_DATABASE_URL"])) as conn:
        conn.execute("SELECT set_config('app.user_id', '', true), set_config('app.role', 'system', true), "
                     "set_config('app.actor', 'system:tests', true)")
        users = [ids["student"]]
        txs = conn.execute('SELECT id, "debitWalletId", "creditWalletId", amount, phase FROM transactions '
                           'WHERE "debitUserId" = ANY(%s) OR "creditUserId" = ANY(%s)', (users, users)).fetchall()
        # Only the system wallets need their balances put back: the user's wallets go entirely.
        for _, debit, credit, amount, phase in txs:
            if phase in ("single", "post"):
                conn.execute("UPDATE wallets SET balance = balance + %s WHERE id = %s AND kind = 'system'",
                             (amount, debit))
                conn.execute("UPDATE wallets SET balance = balance - %s WHERE id = %s AND kind = 'system'",
                             (amount, credit))
        conn.execute('DELETE FROM conversions WHERE "userId" = ANY(%s)', (users,))
        conn.execute('DELETE FROM idempotency_keys WHERE "userId" = ANY(%s)', (users,))
        conn.execute("DELETE FROM transactions WHERE id = ANY(%s)", ([row[0] for row in txs],))
        conn.execute('DELETE FROM wallets WHERE "userId" = ANY(%s)', (users,))
        conn.execute("DELETE FROM currency_pairs WHERE id = %s", (ids["pair"],))  # its rates go with it
        conn.execute("DELETE FROM users WHERE id = ANY(%s)", (users,))
        conn.commit()


@pytest.fixture
def committed_quote(app):
    with app.app_context(), acting_as(Actor.system("tests")):
        pair = make_pair("ETH", "BTC")
        make_rate(pair, "0.05", source=RateSource.HTTP, age_seconds=5)
        student = create_user("student")
        fund(student, "ETH", "5")  # enough for two: only the lock stops a second payment
        with acting_as(Actor.for_user(student.id, "student"), db.session):
            quote = services.quote(student, "ETH", "BTC", "2")
        ids = {"student": student.id, "pair": pair.id, "quote": quote.id}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        _remove_as_owner(app, ids)


@pytest.mark.no_db_rollback
def test_two_accepts_of_one_quote_at_once_pay_once(app, committed_quote):
    outcomes = race(app, [(committed_quote["student"], "student",
                           lambda student: services.accept(student, committed_quote["quote"], uuid.uuid4().hex)[1])] * 2)
    assert sorted(o.value for o in outcomes) == [False, True]  # one did the work, the other found it done
    with app.app_context(), acting_as(Actor.system("tests")):
        conversion = db.session.get(Conversion, committed_quote["quote"])
        legs = db.session.scalar(select(func.count()).select_from(Transaction)
                                 .where(Transaction.group_id == conversion.transaction_group_id))
        student = db.session.get(User, committed_quote["student"])
        assert conversion.status == ConversionStatus.COMPLETED and legs == 2  # no fee rule for ETH here
        assert balance(student, "ETH") == Decimal("3") and balance(student, "BTC") == Decimal("0.1")
        assert ledger.verify().ok
        db.session.remove()
