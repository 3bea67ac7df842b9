"""The ledger's basic movements: post, hold, capture, release, reverse, and verification."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.errors import Conflict
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType
from tests.factories import create_user


def test_post_hold_capture_release_and_verify():
    alice, bob = create_user("student"), create_user("student")
    a, b = ledger.open_user_wallet(alice.id, "USD"), ledger.open_user_wallet(bob.id, "USD")
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
    ledger.post([ledger.Leg(deposits, a, Decimal("100"), TransactionType.DEPOSIT)])
    assert a.balance == Decimal("100") and deposits.balance == Decimal("-100")
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post([ledger.Leg(a, b, Decimal("100.01"), TransactionType.TRANSFER)])
    ledger.post([ledger.Leg(a, b, Decimal("30"), TransactionType.TRANSFER)])
    out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    held = ledger.hold([ledger.Leg(a, out, Decimal("50"), TransactionType.WITHDRAWAL)])
    assert a.locked_balance == Decimal("50")
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post([ledger.Leg(a, b, Decimal("20.01"), TransactionType.TRANSFER)])
    ledger.capture(held)
    assert a.balance == Decimal("20") and a.locked_balance == 0 and out.balance == Decimal("50")
    with pytest.raises(Conflict):
        ledger.release(held)
    second = ledger.hold([ledger.Leg(a, out, Decimal("5"), TransactionType.WITHDRAWAL)])
    ledger.release(second)
    assert a.locked_balance == 0 and a.balance == Decimal("20")
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.currencies["USD"] == 0
