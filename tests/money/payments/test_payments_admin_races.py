"""Finance's refund form under concurrency, on separate connections: two submits of one form
at once (a double click) make one refund, the second finding the first. Rows committed here
stay (the ledger is append-only); the test uses its own users."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.money.payments import services
from portal.money.payments.models import Payment, Refund, RefundState
from portal.money.wallets import ledger
from tests.factories import create_user
from tests.money.payments.test_payment_races import _started_top_up
from tests.races import committed, race, read

pytestmark = pytest.mark.no_db_rollback


def test_one_refund_form_submitted_twice_at_once_refunds_once(app, fake):
    user_id, payment_id = _started_top_up(app, "100")
    ref = read(app, lambda: db.session.get(Payment, payment_id).provider_ref)
    committed(app, lambda: services.apply_provider_payment(fake.complete(ref), provider="sandbox", source="webhook"))
    admin = committed(app, lambda: create_user("admin").id)
    form_key = uuid.uuid4().hex

    def submit(user: User):
        payment = db.session.get(Payment, payment_id)
        refund, replayed = services.refund_payment_once(user, payment, "30", "Double click", idempotency_key=form_key)
        return refund.id, replayed

    outcomes = race(app, [(admin, "admin", submit), (admin, "admin", submit)])

    assert all(o.ok for o in outcomes)
    (first_id, first_replayed), (second_id, second_replayed) = (o.value for o in outcomes)
    assert first_id == second_id and sorted([first_replayed, second_replayed]) == [False, True]
    assert len(fake.refunds) == 1

    def check():
        refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
        assert [(r.amount, r.state) for r in refunds] == [(Decimal("30.00"), RefundState.PENDING)]
        with ledger.as_ledger():
            wallet = ledger.user_wallet(user_id, "USD")
            assert (wallet.balance, wallet.locked_balance) == (Decimal("100.00"), Decimal("30.00"))

    read(app, check)
