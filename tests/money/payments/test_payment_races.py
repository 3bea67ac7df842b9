"""Payments under concurrency, on separate connections: twenty deliveries of one webhook credit
once; two refunds racing never exceed what is left; two tabs submitting one checkout make one
payment. Rows committed here stay (the ledger is append-only); each test uses its own users."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.money.payments import services, webhooks
from portal.money.payments.models import Payment, PaymentEvent, Refund, RefundState, WebhookEvent
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction, TransactionType
from tests.factories import create_user
from tests.money.payments.helpers import RETURN_URL
from tests.races import committed, race, read

pytestmark = pytest.mark.no_db_rollback


def _started_top_up(app, amount: str = "40") -> tuple[uuid.UUID, uuid.UUID]:
    def make():
        user = create_user("student")
        with acting_as(Actor.for_user(user.id, "student"), db.session):
            payment = services.start_top_up(user, amount, "USD", "card", idempotency_key=uuid.uuid4().hex,
                                            return_url=RETURN_URL)
        return user.id, payment.id

    return committed(app, make)


def _at_once(app, calls) -> list:
    """Run ``calls`` in threads that start together, each in its own app context, session and
    transaction as ``system:webhooks`` would (the webhook sets its actor itself); each commits.
    Unlike ``tests.races.race``, a thread takes its connection only after the start, so more
    threads than the pool's connections can run (the rest wait for a connection, as requests do)."""
    import threading

    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index, call):
        try:
            with app.app_context(), acting_as(Actor(label="anonymous:web", role="anonymous")):
                barrier.wait(timeout=30)
                try:
                    results[index] = call()
                    db.session.commit()
                finally:
                    db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a delivery hung"
    if errors:
        raise errors[0]
    return results


def _credited(user_id: uuid.UUID) -> Decimal:
    with ledger.as_ledger():
        wallet = ledger.user_wallet(user_id, "USD")
        return wallet.balance if wallet is not None else Decimal(0)


def test_twenty_deliveries_of_one_webhook_apply_once(app, fake):
    user_id, payment_id = _started_top_up(app, "40")
    ref = read(app, lambda: db.session.get(Payment, payment_id).provider_ref)
    event = fake.event(payment=fake.complete(ref, PaymentState.SUCCEEDED))
    body, headers = fake.sign(event)

    receipts = _at_once(app, [lambda: webhooks.receive("sandbox", body, headers)] * 20)

    assert sorted(r.duplicate for r in receipts) == [False] + [True] * 19

    def check():
        assert _credited(user_id) == Decimal("40")
        with ledger.as_ledger():
            top_ups = db.session.scalar(select(func.count()).select_from(Transaction).where(
                Transaction.credit_user_id == user_id, Transaction.type == TransactionType.TOP_UP))
        assert top_ups == 1
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.provider == "sandbox", WebhookEvent.event_id == event.id)) == 1
        assert db.session.scalar(select(func.count()).select_from(PaymentEvent).where(
            PaymentEvent.payment_id == payment_id, PaymentEvent.kind == "credited")) == 1
        assert db.session.get(Payment, payment_id).state == PaymentState.SUCCEEDED
        assert ledger.verify().ok

    read(app, check)


def test_out_of_order_deliveries_at_once_end_succeeded(app, fake):
    user_id, payment_id = _started_top_up(app, "15")
    ref = read(app, lambda: db.session.get(Payment, payment_id).provider_ref)
    processing = fake.event(payment=fake.complete(ref, PaymentState.PROCESSING))
    succeeded = fake.event(payment=fake.complete(ref, PaymentState.SUCCEEDED))
    deliveries = [fake.sign(processing), fake.sign(succeeded)] * 3

    _at_once(app, [lambda d=d: webhooks.receive("sandbox", *d) for d in deliveries])

    assert read(app, lambda: db.session.get(Payment, payment_id).state) == PaymentState.SUCCEEDED
    assert read(app, lambda: _credited(user_id)) == Decimal("15")


def test_two_refunds_racing_never_exceed_what_is_left(app, fake):
    user_id, payment_id = _started_top_up(app, "100")
    ref = read(app, lambda: db.session.get(Payment, payment_id).provider_ref)

    def succeed():
        services.apply_provider_payment(fake.complete(ref), provider="sandbox", source="webhook")

    committed(app, succeed)
    admins = committed(app, lambda: [create_user("admin").id for _ in range(2)])

    def refund(user: User):
        payment = db.session.get(Payment, payment_id)
        return services.refund_payment(user, payment, "60", "Race").id

    outcomes = race(app, [(admin, "admin", refund) for admin in admins], expected=(services.RefundRefused,))

    assert sorted(o.ok for o in outcomes) == [False, True]
    refused = next(o.refused for o in outcomes if not o.ok)
    assert "40.00" in refused.message

    def check():
        refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
        assert [(r.amount, r.state) for r in refunds] == [(Decimal("60.00"), RefundState.PENDING)]
        with ledger.as_ledger():
            wallet = ledger.user_wallet(user_id, "USD")
            assert (wallet.balance, wallet.locked_balance) == (Decimal("100.00"), Decimal("60.00"))

    read(app, check)


def test_two_tabs_submitting_one_checkout_make_one_payment(app, fake):
    user_id = committed(app, lambda: create_user("student").id)
    form_key = uuid.uuid4().hex

    def submit(user: User):
        return services.start_top_up(user, "25", "USD", "card", idempotency_key=form_key, return_url=RETURN_URL).id

    outcomes = race(app, [(user_id, "student", submit)] * 2)

    assert outcomes[0].value == outcomes[1].value
    assert read(app, lambda: db.session.scalar(select(func.count()).select_from(Payment).where(
        Payment.user_id == user_id))) == 1
    assert fake.calls.count("create_payment") == 1


def test_a_double_click_on_ask_for_a_refund_makes_one_refund(app, fake):
    from decimal import Decimal as D

    from portal.learning.education.models import CourseStatus
    from tests.learning.factories.catalog import make_course
    from tests.money.factories import fund

    def make():
        user = create_user("student")
        fund(user, "50")
        course = make_course(status=CourseStatus.PUBLISHED, price=D("19.00"), price_currency="USD", modules=1,
                             lessons_per_module=3)
        with acting_as(Actor.for_user(user.id, "student"), db.session):
            payment = services.pay_course(user, course, idempotency_key=uuid.uuid4().hex, from_wallet=True)
        return user.id, payment.id

    user_id, payment_id = committed(app, make)

    def ask(user: User):
        return services.request_course_refund(user, db.session.get(Payment, payment_id), "Twice").id

    outcomes = race(app, [(user_id, "student", ask)] * 2, expected=(services.RefundRefused,))

    assert sorted(o.ok for o in outcomes) == [False, True]
    assert read(app, lambda: [r.state for r in db.session.scalars(
        select(Refund).where(Refund.payment_id == payment_id))]) == [RefundState.SUCCEEDED]
    assert read(app, lambda: _credited(user_id)) == D("50")
