"""The authorization as one database call (``card_authorize``, migration 0021): every decline
keeps the reason the network and the holder read, a decline after the conversion keeps the
amount and rate it was judged on, and the session's copies of the card and wallet follow."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.db import db
from portal.money.cards import codes, network, services
from portal.money.cards.models import CardTransaction
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction
from tests.money.cards.helpers import arrange, auth_body, card_holder, issued, message
from tests.money.factories.exchange import make_pair, make_rate

D = Decimal


def _authorize(revealed, **kwargs):
    return network.authorize(message("authorize", auth_body(revealed, **kwargs)))


@pytest.fixture
def holder(app):
    user = card_holder("100.00")
    card, revealed = issued(user)
    return user, card, revealed


@pytest.mark.parametrize(("setup", "kwargs", "code", "reason"), [
    ("frozen", {}, "62", "The card is frozen"),
    ("canceled", {}, "46", "The card is canceled"),
    ("replaced", {}, "46", "The card is replaced"),
    (None, {"exp_month": 1, "exp_year": 2099}, "54", "The expiry date does not match the card"),
    (None, {"cvv": "wrong"}, "N7", "Wrong security code"),
    (None, {"currency": "EUR"}, "CU", "EUR is not a currency the portal settles"),
    (None, {"amount": "1.001"}, "13", "Invalid amount"),
    ("gambling", {"mcc": "7995"}, "57", "Merchant category blocked on this card (Gambling and betting)"),
    ("country", {"country": "KP"}, "57", "Purchases in KP are blocked on this card"),
    (None, {"currency": "AZR"}, "91", "No current exchange rate for the merchant's currency"),
    ("per_purchase", {"amount": "20.01"}, "61", "Above the card's per-purchase limit"),
    ("daily", {"amount": "20.01"}, "61", "Above the card's daily limit"),
    ("monthly", {"amount": "20.01"}, "61", "Above the card's monthly limit"),
    ("wallet_frozen", {}, "05", "The wallet cannot pay now (frozen or closed)"),
    (None, {"amount": "100.01"}, "51", "Not enough money in the wallet"),
])
def test_every_decline_keeps_its_code_and_reason(holder, setup, kwargs, code, reason):
    user, card, revealed = holder
    arrange(setup, user, card)
    if kwargs.get("cvv") == "wrong":
        kwargs = {"cvv": "000" if revealed.security_code != "000" else "111"}
    answer = _authorize(revealed, **kwargs)
    assert (answer.code, answer.reason) == (code, reason)
    row = db.session.get(CardTransaction, answer.reference)
    assert (row.response_code, row.decline_reason, row.hold_transaction_id) == (code, reason, None)


def test_a_decline_after_the_conversion_keeps_the_amount_and_rate(app):
    user = card_holder("1000", "AZR")
    card, revealed = issued(user, "AZR")
    services.set_controls(user, card.id, per_purchase_limit="30")
    make_rate(make_pair("USD", "AZR"), "3.333333333")
    answer = _authorize(revealed, amount="10.00", currency="USD")
    assert answer.code == codes.EXCEEDS_LIMIT
    row = db.session.get(CardTransaction, answer.reference)
    assert (row.amount, row.rate, row.currency) == (D("33.33333333"), D("3.333333333"), "AZR")
    assert (row.merchant_amount, row.merchant_currency) == (D("10.00"), "USD")


def test_a_missing_rate_declines_with_nothing_converted(app):
    user = card_holder("1000", "AZR")
    _card, revealed = issued(user, "AZR")
    answer = _authorize(revealed, amount="10.00", currency="USD")
    assert answer.code == codes.NO_RATE
    row = db.session.get(CardTransaction, answer.reference)
    assert (row.amount, row.rate) == (D(0), None)


def test_an_expiry_of_any_size_is_a_decline_not_an_error(holder):
    _user, _card, revealed = holder
    answer = _authorize(revealed, exp_month=10 ** 30, exp_year=-(10 ** 30))
    assert (answer.code, answer.reason) == (codes.EXPIRED_CARD, "The expiry date does not match the card")


def test_the_session_copies_follow_the_call(holder):
    """The call changes rows the session may hold: the wallet's locked balance, the card's count
    of wrong codes. They read as after a reload, with no statement."""
    user, card, revealed = holder
    with ledger.as_ledger():
        wallet = ledger.user_wallet(user.id, "USD")
    wrong = "000" if revealed.security_code != "000" else "111"
    assert _authorize(revealed, cvv=wrong).code == codes.BAD_CVV
    assert card.wrong_cvv_count == 1
    answer = _authorize(revealed, amount="12.50")
    assert answer.approved and answer.extra == {"amount": "12.50", "currency": "USD"}
    assert card.wrong_cvv_count == 0 and wallet.locked_balance == D("12.50")


def test_the_hold_is_placed_with_the_ledgers_role_and_the_rest_with_the_callers(holder):
    """As ``ledger.hold`` did: the wallet and the pending transaction are written with the
    ``ledger`` role; the card transaction with the caller's identity, given back after the hold."""
    from sqlalchemy import select

    from portal.db.audit import AuditLog

    _user, _card, revealed = holder
    answer = _authorize(revealed, amount="3")  # the test acts as system:tests (role system)
    row = db.session.get(CardTransaction, answer.reference)
    # The last audit row of each (the wallet's earlier ones are its funding's).
    roles = dict(db.session.execute(
        select(AuditLog.table_name, AuditLog.actor_role)
        .where(AuditLog.row_id.in_([str(row.id), str(row.hold_transaction_id), str(row.wallet_id)]))
        .order_by(AuditLog.seq)).all())
    assert roles == {"wallets": "ledger", "transactions": "ledger", "card_transactions": "system"}
    actors = set(db.session.scalars(select(AuditLog.actor).where(AuditLog.row_id == str(row.id))))
    assert actors == {"system:tests"}


def test_a_clock_moved_by_the_tests_dates_the_rows(holder):
    """The rows are dated by the database's clock once the card is locked; a portal whose clock
    is moved (as tests move it) keeps its offset, so its rows sit where its clock says."""
    from datetime import timedelta

    import time_machine

    from portal.db.base import utcnow

    _user, _card, revealed = holder
    here = _authorize(revealed, amount="1")
    assert abs(db.session.get(CardTransaction, here.reference).created_at - utcnow()) < timedelta(seconds=5)
    later = utcnow() + timedelta(days=2)
    with time_machine.travel(later, tick=True):
        moved = _authorize(revealed, amount="1")
    row = db.session.get(CardTransaction, moved.reference)
    assert abs(row.created_at - later) < timedelta(seconds=5)
    with ledger.as_ledger():
        hold = db.session.get(Transaction, row.hold_transaction_id)
        assert abs(hold.created_at - later) < timedelta(seconds=5)
