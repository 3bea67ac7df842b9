"""Billing under real concurrency, each call on its own connection and transaction: subscribing
twice at once, paying one invoice from two tabs, changing plan while the renewal job runs, and
invoice numbers taken at once. One outcome each, never a double charge. Rows committed here stay
(the ledger is append-only); each test uses its own users and plans (no free plan, so other
tests' students are not limited by it)."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.db import db
from portal.money.billing import services
from portal.money.billing.models import Invoice, InvoiceReason, InvoiceStatus, Plan, Subscription
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction, TransactionType
from tests.factories import create_user
from tests.money.billing.helpers import fund, plans, student, utc
from tests.races import committed, race, read

pytestmark = pytest.mark.no_db_rollback


def _catalogue(app) -> dict[str, uuid.UUID]:
    suffix = "-" + uuid.uuid4().hex[:8]
    return committed(app, lambda: {k: p.id for k, p in plans(suffix, with_free=False).items()})


def _new_student(app, funds: str | None) -> uuid.UUID:
    return committed(app, lambda: student(funds).id)


def _charged(user_id: uuid.UUID) -> list[Transaction]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Transaction).where(Transaction.debit_user_id == user_id,
                                                                 Transaction.type == TransactionType.SUBSCRIPTION)))


def _balance(user_id: uuid.UUID) -> Decimal:
    with ledger.as_ledger():
        wallet = ledger.user_wallet(user_id, "USD")
        return wallet.balance if wallet is not None else Decimal(0)


def test_subscribing_twice_at_once_makes_one_subscription_and_one_charge(app):
    catalogue = _catalogue(app)
    user_id = _new_student(app, "100")
    outcomes = race(app, [(user_id, "student", lambda user: services.subscribe(user, catalogue["pro"]).id)] * 2,
                    expected=(services.AlreadySubscribed,))
    assert sorted(o.ok for o in outcomes) == [False, True]

    def check():
        assert db.session.scalar(select(func.count()).select_from(Subscription)
                                 .where(Subscription.user_id == user_id)) == 1
        assert [tx.amount for tx in _charged(user_id)] == [Decimal("25.00")]
        assert _balance(user_id) == Decimal("75.00")
        assert ledger.verify().ok

    read(app, check)


def test_paying_one_invoice_from_two_tabs_charges_once(app):
    catalogue = _catalogue(app)
    user_id = _new_student(app, "25.00")
    with time_machine.travel(utc(2026, 2, 10, 9), tick=False):
        committed(app, lambda: services.subscribe(db.session.get(User, user_id), catalogue["pro"]))
    with time_machine.travel(utc(2026, 3, 10, 9, 1), tick=False):
        committed(app, services.run_due)  # the renewal fails: past due, an open invoice
        invoice_id = read(app, lambda: db.session.scalar(select(Invoice.id).where(
            Invoice.user_id == user_id, Invoice.status == InvoiceStatus.OPEN)))
        assert invoice_id is not None
        committed(app, lambda: fund(db.session.get(User, user_id), "100"))
        outcomes = race(app, [(user_id, "student", lambda user: services.pay_invoice(user, invoice_id).status)] * 2)
    assert [o.value for o in outcomes] == [InvoiceStatus.PAID, InvoiceStatus.PAID]

    def check():
        paying = [tx for tx in _charged(user_id) if tx.details.get("invoice_id") == str(invoice_id)]
        assert len(paying) == 1
        assert _balance(user_id) == Decimal("75.00")
        assert db.session.get(Subscription, db.session.get(Invoice, invoice_id).subscription_id).status.value == "active"
        assert ledger.verify().ok

    read(app, check)


def test_changing_plan_while_the_renewal_job_runs_bills_the_period_once(app):
    catalogue = _catalogue(app)
    user_id = _new_student(app, "200")
    plus_now = committed(app, lambda: services.new_plan_version(
        create_user("admin"), db.session.get(Plan, catalogue["plus"]).code,
        services.PlanInput(name="Plus", price="10.00", trial_days=0)).id)  # Plus without its trial
    with time_machine.travel(utc(2026, 4, 5, 9), tick=False):
        committed(app, lambda: services.subscribe(db.session.get(User, user_id), plus_now))
    # The period ended on 5 May; the job and an upgrade to Pro start together on 15 May.
    with time_machine.travel(utc(2026, 5, 15, 9), tick=False):
        barrier = threading.Barrier(2)

        def job(_user):
            barrier.wait(timeout=30)
            return services.run_due()

        def upgrade(user):
            barrier.wait(timeout=30)
            return services.change_plan(user, catalogue["pro"]).total

        outcomes = race(app, [(user_id, "student", upgrade), (user_id, "system", job)], barrier=barrier)
    assert all(o.ok for o in outcomes)

    def check():
        invoices = db.session.scalars(select(Invoice).where(Invoice.user_id == user_id)
                                      .order_by(Invoice.created_at)).all()
        cycles = [i for i in invoices if i.reason == InvoiceReason.CYCLE]
        changes = [i for i in invoices if i.reason == InvoiceReason.CHANGE]
        # 5 April (Plus, paid at once), 5 May (Plus, the renewal): once, whoever made it.
        assert [i.period_start for i in cycles] == [utc(2026, 4, 5, 9), utc(2026, 5, 5, 9)]
        assert len(changes) == 1
        # The upgrade on 15 May: 21 of 31 days left. Credit 10.00 x 21 / 31 -> 6.77; net 15 x 21/31 -> 10.16.
        assert changes[0].total == Decimal("10.16")
        assert all(i.status == InvoiceStatus.PAID for i in invoices)
        charged = sum(tx.amount for tx in _charged(user_id))
        assert charged == Decimal("10.00") + Decimal("10.00") + Decimal("10.16")
        assert _balance(user_id) == Decimal("200") - charged
        assert ledger.verify().ok

    read(app, check)


def test_invoice_numbers_taken_at_once_have_no_gaps_and_no_repeats(app):
    user_id = _new_student(app, None)
    with time_machine.travel(utc(2091, 6, 1), tick=False):
        outcomes = race(app, [(user_id, "student", lambda _user: services.next_invoice_number())] * 8)
    numbers = sorted(int(o.value.rsplit("-", 1)[1]) for o in outcomes)
    assert all(o.value.startswith("INV-2091-") for o in outcomes)
    assert numbers == list(range(numbers[0], numbers[0] + 8))


def test_paying_one_invoice_by_card_from_two_tabs_and_the_wallet_from_a_third_pays_it_once(app, monkeypatch):
    """Two tabs pay the open invoice with the saved card (each its own form key) while a third
    pays it from the wallet: the invoice is paid once, by one of them; the others find it paid
    or the card payment under way. Never two charges."""
    from portal.money.payments import services as payments
    from portal.money.payments.models import Payment
    from portal.money.payments.providers.base import PaymentState
    from tests.money.billing.test_invoice_card_payments import saved_card
    from tests.money.payments.fakes import FakeProvider

    fake = FakeProvider("sandbox")
    fake.mode = "succeed"
    monkeypatch.setattr(payments, "get_provider", lambda name: fake)
    catalogue = _catalogue(app)
    user_id = _new_student(app, "25.00")
    card_id = committed(app, lambda: saved_card(fake, db.session.get(User, user_id)).id)
    with time_machine.travel(utc(2026, 2, 10, 9), tick=False):
        committed(app, lambda: services.subscribe(db.session.get(User, user_id), catalogue["pro"]))
    with time_machine.travel(utc(2026, 3, 10, 9, 1), tick=False):
        committed(app, services.run_due)  # the renewal fails: past due, an open invoice
        invoice_id = read(app, lambda: db.session.scalar(select(Invoice.id).where(
            Invoice.user_id == user_id, Invoice.status == InvoiceStatus.OPEN)))
        committed(app, lambda: fund(db.session.get(User, user_id), "100"))

        def by_card(user):
            return services.pay_invoice_with_method(user, invoice_id, card_id, idempotency_key=ledger.new_key()).id

        outcomes = race(app, [(user_id, "student", by_card), (user_id, "student", by_card),
                              (user_id, "student", lambda user: services.pay_invoice(user, invoice_id).id)],
                        expected=(services.ChargeFailed, services.PaymentPending))
    assert any(o.ok for o in outcomes)

    def check():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.status == InvoiceStatus.PAID
        card_payments = list(db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)))
        succeeded = [p for p in card_payments if p.state == PaymentState.SUCCEEDED]
        assert len(succeeded) <= 1 and len(card_payments) == len(succeeded)
        # The first month and this invoice: two charges, never three.
        assert [tx.amount for tx in _charged(user_id)] == [Decimal("25.00"), Decimal("25.00")]
        # Card money passed through the wallet; a wallet payment took it from the 100 added.
        assert _balance(user_id) == (Decimal("100.00") if succeeded else Decimal("75.00"))
        assert ledger.verify().ok

    read(app, check)
