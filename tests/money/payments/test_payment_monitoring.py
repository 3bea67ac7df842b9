"""Top-ups are ledger rows, so transaction monitoring judges them as money coming in: a large
top-up raises an alert on the payer's side (the clearing wallet is no one's side), and the
provider's fee leg, between two system wallets, is not judged."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.compliance.aml import monitoring
from portal.db import db
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction, TransactionType
from tests.compliance.factories import old_student
from tests.money.payments.helpers import succeeded_top_up


@pytest.fixture(autouse=True)
def _limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000"})
    monkeypatch.setitem(app.config, "TOP_UP_MAXIMUMS", {"USD": "1000000"})


def legs(payment) -> dict[TransactionType, Transaction]:
    with ledger.as_ledger():
        return {t.type: t for t in db.session.scalars(select(Transaction).where(
            Transaction.group_id == payment.ledger_group_id))}


def test_a_large_top_up_is_judged_as_money_received(fake):
    payer = old_student()
    payment = succeeded_top_up(fake, payer, "12000")
    rows = legs(payment)
    alerts = monitoring.monitor([rows[TransactionType.TOP_UP].id, rows[TransactionType.FEE].id])
    assert [(a.user_id, a.transaction_id) for a in alerts] == [(payer.id, rows[TransactionType.TOP_UP].id)]
    assert {r["rule"] for r in alerts[0].rules} == {"large_amount"}


def test_an_ordinary_top_up_raises_nothing(fake):
    payer = old_student()
    payment = succeeded_top_up(fake, payer, "40")
    assert monitoring.monitor([t.id for t in legs(payment).values()]) == []


def test_the_provider_fee_leg_is_not_judged(fake):
    payer = old_student()
    payment = succeeded_top_up(fake, payer, "12000")
    fee = legs(payment)[TransactionType.FEE]
    assert fee.amount == Decimal("348.30")
    assert monitoring.monitor([fee.id]) == []
