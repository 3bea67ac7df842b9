"""Invoices paid with a saved payment method of the payment gateway (an in-memory provider in
place of the sandbox adapter, as the payment tests use): subscribing with a card, renewals
charged to it automatically, a decline making the subscription past due and the retry paying
it, a pending payment never charged twice (the job, the wallet, a second tab), the webhook and
the poll that settle it, double submits, and the database's one-live-payment-per-invoice rule."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from portal.db import db
from portal.db.base import utcnow
from portal.money.billing import services
from portal.money.billing.models import (
    DunningAttempt,
    Invoice,
    InvoiceReason,
    InvoiceStatus,
    SubscriptionStatus,
)
from portal.money.payments import services as payments
from portal.money.payments.models import Payment, PaymentMethod, PayWith, Purpose
from portal.money.payments.providers.base import MethodKind, PaymentState, ProviderMethod
from portal.money.wallets import ledger
from portal.platform.email.models import Email
from tests.money.billing.helpers import as_user, balance, plans, student, utc
from tests.money.payments.fakes import FakeProvider

S = SubscriptionStatus
START = utc(2026, 3, 10, 9)
RENEWAL = utc(2026, 4, 10, 9)


@pytest.fixture
def fake(monkeypatch) -> FakeProvider:
    provider = FakeProvider("sandbox")
    monkeypatch.setattr(payments, "get_provider", lambda name: provider)
    return provider


@pytest.fixture
def catalogue():
    return plans()


def _at(moment):
    return time_machine.travel(moment, tick=False)


def saved_card(fake: FakeProvider, user, last4: str = "4242") -> PaymentMethod:
    """A card the student saved at the provider earlier."""
    ref = f"pm_{uuid.uuid4().hex[:16]}"
    fake.methods[ref] = ProviderMethod(ref, MethodKind.CARD, "visa", last4, 12, 2030)
    method = PaymentMethod(user_id=user.id, provider="sandbox", provider_ref=ref, customer_ref="cus_test",
                           kind=PayWith.CARD, brand="visa", last4=last4, exp_month=12, exp_year=2030)
    db.session.add(method)
    db.session.flush()
    return method


def invoice_payments(invoice) -> list[Payment]:
    return list(db.session.scalars(select(Payment).where(Payment.invoice_id == invoice.id)
                                   .order_by(Payment.created_at, Payment.id)
                                   .execution_options(populate_existing=True)))


def cycle_invoices(user) -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).where(Invoice.user_id == user.id,
                                                         Invoice.reason == InvoiceReason.CYCLE)
                                   .order_by(Invoice.period_start).execution_options(populate_existing=True)))


def subscribed_with_card(fake, catalogue):
    """Pro (25.00 USD a month) paid with a saved card from an empty wallet."""
    user = student()
    card = saved_card(fake, user)
    fake.mode = "succeed"
    with _at(START), as_user(user):
        sub = services.subscribe(user, catalogue["pro"].id, method_id=card.id, idempotency_key=ledger.new_key())
    return user, card, sub


def test_subscribing_with_a_saved_card_charges_it_and_pays_the_first_invoice(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    assert sub.status == S.ACTIVE and sub.payment_method_id == card.id
    [invoice] = cycle_invoices(user)
    assert invoice.status == InvoiceStatus.PAID and invoice.paid_at is not None
    [payment] = invoice_payments(invoice)
    assert (payment.purpose, payment.state, payment.amount, payment.method_id) == \
        (Purpose.INVOICE, PaymentState.SUCCEEDED, Decimal("25.00"), card.id)
    # The card's money passed through the wallet into billing's revenue: the wallet is empty again.
    assert balance(user) == Decimal(0)
    assert fake.calls.count("create_payment") == 1


def test_a_renewal_is_charged_to_the_subscriptions_card(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    with _at(RENEWAL):
        counts = services.run_due()
    assert counts["charges"]["paid"] == 1
    first, second = cycle_invoices(user)
    assert second.status == InvoiceStatus.PAID and second.period_start == RENEWAL
    [payment] = invoice_payments(second)
    assert payment.state == PaymentState.SUCCEEDED and payment.method_id == card.id
    assert balance(user) == Decimal(0)


def test_a_declined_card_makes_it_past_due_and_the_retry_pays_and_restores_it(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    fake.mode = "decline"
    with _at(RENEWAL):
        counts = services.run_due()
    assert counts["charges"]["failed"] == 1
    invoice = cycle_invoices(user)[-1]
    db.session.refresh(sub)
    assert sub.status == S.PAST_DUE and sub.past_due_since == RENEWAL
    assert (invoice.status, invoice.attempt_count, invoice.next_attempt_at) == \
        (InvoiceStatus.OPEN, 1, RENEWAL + timedelta(days=1))
    [failed] = invoice_payments(invoice)
    assert failed.state == PaymentState.FAILED
    assert db.session.scalar(select(func.count()).select_from(Email).where(
        Email.user_id == user.id, Email.template == "billing_payment_failed")) == 1
    # Before the retry is due nothing is charged again.
    with _at(RENEWAL + timedelta(hours=20)):
        services.run_due()
    assert len(invoice_payments(invoice)) == 1
    fake.mode = "succeed"
    with _at(RENEWAL + timedelta(days=1, minutes=1)):
        counts = services.run_due()
    assert counts["charges"]["paid"] == 1
    db.session.refresh(invoice)
    db.session.refresh(sub)
    assert invoice.status == InvoiceStatus.PAID and sub.status == S.ACTIVE and sub.past_due_since is None
    assert [p.state for p in invoice_payments(invoice)] == [PaymentState.FAILED, PaymentState.SUCCEEDED]
    attempts = db.session.scalars(select(DunningAttempt).where(DunningAttempt.invoice_id == invoice.id)
                                  .order_by(DunningAttempt.attempt)).all()
    assert [(a.attempt, a.succeeded) for a in attempts] == [(1, False), (2, True)]


def test_a_pending_payment_is_never_charged_again_and_its_webhook_pays_the_invoice(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    fake.mode = "processing"
    with _at(RENEWAL):
        counts = services.run_due()
    assert counts["charges"]["pending"] == 1
    invoice = cycle_invoices(user)[-1]
    [pending] = invoice_payments(invoice)
    assert pending.state == PaymentState.PROCESSING and invoice.status == InvoiceStatus.OPEN
    # Days pass: the job, a direct charge, the wallet and a second tab all leave it alone.
    fake.mode = "succeed"
    with _at(RENEWAL + timedelta(days=3)):
        services.run_due()
        assert services.charge(invoice.id) == "pending"
        with as_user(user), pytest.raises(services.PaymentPending):
            services.pay_invoice(user, invoice.id)
        with as_user(user):
            again = services.pay_invoice_with_method(user, invoice.id, card.id, idempotency_key=ledger.new_key())
    assert again.id == pending.id
    assert len(invoice_payments(invoice)) == 1 and fake.calls.count("create_payment") == 2
    db.session.refresh(invoice)
    assert (invoice.status, invoice.attempt_count) == (InvoiceStatus.OPEN, 0)
    # The provider settles it; its webhook pays the invoice.
    with _at(RENEWAL + timedelta(days=3, hours=1)):
        snapshot = fake.complete(pending.provider_ref, PaymentState.SUCCEEDED)
        payments.apply_provider_payment(snapshot, provider="sandbox", source="webhook", event_id="evt_1")
        # The same webhook again changes nothing.
        payments.apply_provider_payment(snapshot, provider="sandbox", source="webhook", event_id="evt_1")
    db.session.refresh(invoice)
    assert invoice.status == InvoiceStatus.PAID and balance(user) == Decimal(0)
    assert db.session.scalar(select(func.count()).select_from(DunningAttempt).where(
        DunningAttempt.invoice_id == invoice.id, DunningAttempt.succeeded.is_(True))) == 1


def test_a_pending_payment_that_fails_counts_as_a_failed_charge_and_is_retried(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    fake.mode = "processing"
    with _at(RENEWAL):
        services.run_due()
    invoice = cycle_invoices(user)[-1]
    [pending] = invoice_payments(invoice)
    with _at(RENEWAL + timedelta(hours=2)):
        fake.complete(pending.provider_ref, PaymentState.FAILED, failure_code="card_declined",
                      failure_message="Your card was declined.")
        payments.resume_payment(None, pending)  # the reconciliation poll asks the provider
    db.session.refresh(invoice)
    db.session.refresh(sub)
    assert sub.status == S.PAST_DUE
    assert (invoice.status, invoice.attempt_count) == (InvoiceStatus.OPEN, 1)
    assert invoice.next_attempt_at == RENEWAL + timedelta(days=1)
    fake.mode = "succeed"
    with _at(RENEWAL + timedelta(days=1, minutes=1)):
        services.run_due()
    db.session.refresh(invoice)
    db.session.refresh(sub)
    assert invoice.status == InvoiceStatus.PAID and sub.status == S.ACTIVE
    assert [p.state for p in invoice_payments(invoice)] == [PaymentState.FAILED, PaymentState.SUCCEEDED]


def test_paying_by_hand_with_a_card_restores_a_past_due_subscription_and_a_double_submit_pays_once(
        fake, catalogue):
    user = student("25.00")
    with _at(START), as_user(user):
        sub = services.subscribe(user, catalogue["pro"].id)  # from the wallet, which is then empty
    card = saved_card(fake, user)
    with _at(RENEWAL):
        services.run_due()
    db.session.refresh(sub)
    assert sub.status == S.PAST_DUE
    invoice = cycle_invoices(user)[-1]
    fake.mode = "succeed"
    key = ledger.new_key()
    with _at(RENEWAL + timedelta(hours=3)), as_user(user):
        first = services.pay_invoice_with_method(user, invoice.id, card.id, idempotency_key=key)
        second = services.pay_invoice_with_method(user, invoice.id, card.id, idempotency_key=key)
        third = services.pay_invoice_with_method(user, invoice.id, card.id, idempotency_key=ledger.new_key())
        assert services.pay_invoice(user, invoice.id).status == InvoiceStatus.PAID  # a wallet tab: nothing
    assert first.id == second.id == third.id and first.state == PaymentState.SUCCEEDED
    assert fake.calls.count("create_payment") == 1
    db.session.refresh(invoice)
    db.session.refresh(sub)
    assert invoice.status == InvoiceStatus.PAID and sub.status == S.ACTIVE
    assert balance(user) == Decimal(0)


def test_the_database_allows_one_live_payment_per_invoice(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    [invoice] = cycle_invoices(user)
    [paid] = invoice_payments(invoice)
    now = utcnow()
    with pytest.raises(IntegrityError), db.session.begin_nested():
        db.session.execute(insert(Payment).values(
            id=uuid.uuid4(), user_id=user.id, purpose=Purpose.INVOICE, invoice_id=invoice.id, wallet_currency="USD",
            amount=Decimal("25.00"), currency="USD", state=PaymentState.PROCESSING, provider="sandbox",
            method_kind=PayWith.CARD, idempotency_key=ledger.new_key(), created_at=now, updated_at=now))
    # A failed attempt beside it is allowed (it is history, not a payment).
    with db.session.begin_nested():
        db.session.execute(insert(Payment).values(
            id=uuid.uuid4(), user_id=user.id, purpose=Purpose.INVOICE, invoice_id=invoice.id, wallet_currency="USD",
            amount=Decimal("25.00"), currency="USD", state=PaymentState.FAILED, provider="sandbox",
            method_kind=PayWith.CARD, idempotency_key=ledger.new_key(), created_at=now, updated_at=now))
    assert len(invoice_payments(invoice)) == 2 and paid.state == PaymentState.SUCCEEDED


def test_a_declined_card_when_subscribing_subscribes_nothing(fake, catalogue):
    user = student()
    card = saved_card(fake, user)
    fake.mode = "decline"
    with _at(START), as_user(user), pytest.raises(payments.PaymentDeclined):
        services.subscribe(user, catalogue["pro"].id, method_id=card.id, idempotency_key=ledger.new_key())
    assert services.live_subscription(user.id) is None


def test_a_removed_card_falls_back_to_the_wallet_and_the_method_can_be_changed(fake, catalogue):
    user, card, sub = subscribed_with_card(fake, catalogue)
    with as_user(user):
        assert services.set_payment_method(user, "") is None
    db.session.refresh(sub)
    assert sub.payment_method_id is None
    others = saved_card(fake, student())
    with as_user(user):
        assert services.set_payment_method(user, card.id).id == card.id
        with pytest.raises(payments.MethodInvalid):
            services.set_payment_method(user, others.id)
    card.removed_at = utcnow()
    db.session.flush()
    from tests.money.billing.helpers import fund

    fund(user, "25.00")
    with _at(RENEWAL):
        services.run_due()
    invoice = cycle_invoices(user)[-1]
    assert invoice.status == InvoiceStatus.PAID and invoice_payments(invoice) == []
    assert balance(user) == Decimal(0)


# ------------------------------------------------------------------ the pages


def _body(response) -> str:
    return response.get_data(as_text=True)


def _key_in(html: str) -> str:
    import re

    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def test_a_student_subscribes_with_a_saved_card_from_the_page(client, login_as, fake):
    catalogue = plans("_cp")
    ada = login_as("student")
    card = saved_card(fake, ada)
    fake.mode = "succeed"
    html = _body(client.get("/wallet/billing"))
    assert f'<option value="{card.id}">Visa ending 4242</option>' in html
    done = client.post("/wallet/billing/subscribe", data={"plan": str(catalogue["pro"].id), "method": str(card.id),
                                                          "idempotency_key": _key_in(html)})
    assert done.status_code == 302, _body(done)[:1500]
    sub = services.live_subscription(ada.id)
    assert sub.payment_method_id == card.id
    [invoice] = cycle_invoices(ada)
    assert invoice.status == InvoiceStatus.PAID and invoice_payments(invoice)[0].state == PaymentState.SUCCEEDED
    page = _body(client.get("/wallet/billing"))
    assert f'<option value="{card.id}" selected>Visa ending 4242</option>' in page
    # Back to the wallet, then a method that is not the student's: a clear message, not a 500.
    assert client.post("/wallet/billing/payment-method", data={"method": ""}).status_code == 302
    db.session.refresh(sub)
    assert sub.payment_method_id is None
    refused = client.post("/wallet/billing/payment-method", data={"method": str(uuid.uuid4())})
    assert refused.status_code == 422 and "not saved on your account" in _body(refused)
    assert client.post("/wallet/billing/payment-method", data={"method": "nonsense"}).status_code == 422


def test_an_unpaid_invoice_is_paid_with_a_card_from_its_page_once(client, login_as, fake):
    catalogue = plans("_cp")
    ada = login_as("student")
    from tests.money.billing.helpers import fund

    fund(ada, "25.00")
    with _at(utcnow() - timedelta(days=40)):  # a month and more ago: the renewal has failed since
        services.subscribe(ada, catalogue["pro"].id)
    card = saved_card(fake, ada)
    services.run_due()
    invoice = cycle_invoices(ada)[-1]
    assert invoice.status == InvoiceStatus.OPEN and invoice.attempt_count == 1
    db.session.commit()
    fake.mode = "processing"
    html = _body(client.get(f"/wallet/billing/invoices/{invoice.id}"))
    assert "Pay with" in html and "Visa ending 4242" in html
    data = {"method": str(card.id), "idempotency_key": _key_in(html)}
    first = client.post(f"/wallet/billing/invoices/{invoice.id}/pay", data=data)
    second = client.post(f"/wallet/billing/invoices/{invoice.id}/pay", data=data)
    assert first.status_code == second.status_code == 302
    page = _body(client.get(f"/wallet/billing/invoices/{invoice.id}"))
    assert "A card payment of this invoice" in page and "Pay with" not in page
    [pending] = invoice_payments(invoice)
    assert pending.state == PaymentState.PROCESSING and fake.calls.count("create_payment") == 1
    # The wallet form of another tab is refused while the card payment is pending.
    refused = client.post(f"/wallet/billing/invoices/{invoice.id}/pay", data={"idempotency_key": ledger.new_key()})
    assert refused.status_code == 409 and "under way" in _body(refused)
    snapshot = fake.complete(pending.provider_ref, PaymentState.SUCCEEDED)
    payments.apply_provider_payment(snapshot, provider="sandbox", source="webhook")
    db.session.refresh(invoice)
    assert invoice.status == InvoiceStatus.PAID
    assert "Paid by card (Visa 4242)" in _body(client.get(f"/wallet/billing/invoices/{invoice.id}"))


def test_the_payments_pages_show_invoice_payments_and_lead_back_to_the_invoice(client, login_as, fake):
    catalogue = plans("_cp")
    ada = login_as("student")
    card = saved_card(fake, ada)
    fake.mode = "succeed"
    with as_user(ada):
        services.subscribe(ada, catalogue["pro"].id, method_id=card.id, idempotency_key=ledger.new_key())
    [invoice] = cycle_invoices(ada)
    [paid] = invoice_payments(invoice)
    failed = Payment(user_id=ada.id, purpose=Purpose.INVOICE, invoice_id=invoice.id, wallet_currency="USD",
                     amount=invoice.total, currency="USD", state=PaymentState.FAILED, provider="sandbox",
                     method_kind=PayWith.CARD, idempotency_key=ledger.new_key(), description=f"Invoice {invoice.number}")
    db.session.add(failed)
    db.session.commit()
    listing = _body(client.get("/wallet/payments"))
    assert listing.count(f"Invoice {invoice.number}</a> <small class=\"muted\">Invoice</small>") == 2
    for payment in (paid, failed):
        page = client.get(f"/wallet/payments/{payment.id}")
        assert page.status_code == 200
        assert f'href="/wallet/billing/invoices/{invoice.id}"' in _body(page)
    assert client.get(f"/wallet/payments/{paid.id}/receipt").status_code == 200
    assert client.get(f"/wallet/payments/{paid.id}/receipt.pdf").status_code == 200


def test_the_signed_webhook_through_the_route_pays_a_pending_invoice(client, fake, catalogue):
    """The gateway's webhook, delivered to ``/wallet/payments/webhooks/sandbox`` as the provider
    sends it (signed), settles the pending payment and pays the invoice, once."""
    user = student()
    card = saved_card(fake, user)
    fake.mode = "succeed"
    with _at(utcnow() - timedelta(days=40)), as_user(user):
        sub = services.subscribe(user, catalogue["pro"].id, method_id=card.id, idempotency_key=ledger.new_key())
    fake.mode = "processing"
    services.run_due()
    invoice = cycle_invoices(user)[-1]
    [pending] = invoice_payments(invoice)
    assert pending.state == PaymentState.PROCESSING
    db.session.commit()
    event = fake.event(payment=fake.complete(pending.provider_ref, PaymentState.SUCCEEDED))
    body, headers = fake.sign(event)
    for _ in range(2):
        response = client.post("/wallet/payments/webhooks/sandbox", data=body,
                               headers={**headers, "Content-Type": "application/json"}, csrf=False)
        assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["duplicate"] is True
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice.id)
    assert invoice.status == InvoiceStatus.PAID
    assert db.session.get(type(sub), sub.id).status == S.ACTIVE
    assert balance(user) == Decimal(0)
    assert db.session.scalar(select(func.count()).select_from(DunningAttempt).where(
        DunningAttempt.invoice_id == invoice.id, DunningAttempt.succeeded.is_(True))) == 1


def test_a_payment_the_bank_must_confirm_links_its_page_and_only_a_safe_one(client, login_as, fake):
    catalogue = plans("_cp")
    ada = login_as("student")
    from tests.money.billing.helpers import fund

    fund(ada, "25.00")
    with _at(utcnow() - timedelta(days=40)):
        services.subscribe(ada, catalogue["pro"].id)
    card = saved_card(fake, ada)
    services.run_due()
    invoice = cycle_invoices(ada)[-1]
    fake.mode = "action"  # the bank asks the payer to confirm (a challenge)
    with as_user(ada):
        payment = services.pay_invoice_with_method(ada, invoice.id, card.id, idempotency_key=ledger.new_key())
    assert payment.state == PaymentState.REQUIRES_ACTION
    db.session.commit()
    page = _body(client.get(f"/wallet/billing/invoices/{invoice.id}"))
    assert f'<a href="{payment.next_action_url}" hx-boost="false">Confirm the payment with your bank</a>' in page
    payment.next_action_url = "javascript:alert(1)"
    db.session.commit()
    page = _body(client.get(f"/wallet/billing/invoices/{invoice.id}"))
    assert "A card payment of this invoice" in page and "javascript:" not in page
