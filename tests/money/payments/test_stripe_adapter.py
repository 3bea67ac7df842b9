"""The Stripe adapter against a local fake of Stripe's API (``fake_stripe``): the real SDK, the
real HTTP requests, never the internet."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from portal.money.payments.providers import provider_named
from portal.money.payments.providers.base import (
    EventType,
    MethodKind,
    PaymentState,
    Provider,
    ProviderDeclined,
    ProviderError,
    ProviderUnavailable,
    RefundState,
    WebhookRejected,
)
from portal.money.payments.providers.stripe import StripeProvider, _fee, from_minor, to_minor
from tests.money.payments.fake_stripe import FakeStripe, running_fake_stripe

pytestmark = pytest.mark.no_db_rollback

RETURN_URL = "https://portal.test/wallet/payments/return"


@pytest.fixture
def fake():
    with running_fake_stripe() as server:
        yield server


def adapter_for(fake: FakeStripe, **overrides) -> StripeProvider:
    config = {"STRIPE_SECRET_KEY": fake.api_key, "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
              "STRIPE_API_BASE": fake.url, "PAYMENT_PROVIDER_TIMEOUT_SECONDS": 3,
              "PAYMENT_WEBHOOK_TOLERANCE_SECONDS": 300, **overrides}
    return StripeProvider.from_config(config)


@pytest.fixture
def stripe_provider(fake):
    return adapter_for(fake)


def hosted(provider, amount="12.50", currency="USD", key="pay-1", **kwargs):
    kwargs.setdefault("metadata", {"portal_payment_id": "p-123"})
    return provider.create_payment(amount=Decimal(amount), currency=currency, method_kind=MethodKind.CARD,
                                   idempotency_key=key, return_url=RETURN_URL, description="Wallet top-up",
                                   **kwargs)


def off_session(provider, customer, method, amount="20.00", key="pay-2"):
    return provider.create_payment(amount=Decimal(amount), currency="USD", method_kind=MethodKind.CARD,
                                   idempotency_key=key, return_url=RETURN_URL, description="Course",
                                   customer_ref=customer, saved_method_ref=method,
                                   metadata={"portal_payment_id": "p-9"})


def intent_of(fake):
    """The last PaymentIntent the fake made."""
    return [o["id"] for o in fake.objects.values() if o["object"] == "payment_intent"][-1]


def last_request(fake, path):
    return [params for method, p, params in fake.requests if p == path][-1]


def test_the_adapter_is_a_provider(stripe_provider):
    assert isinstance(stripe_provider, Provider)
    assert stripe_provider.name == "stripe"


# -- configuration ------------------------------------------------------------------------

def test_provider_named_builds_the_stripe_adapter_from_the_configuration(fake):
    provider = provider_named("stripe", {"STRIPE_SECRET_KEY": fake.api_key, "STRIPE_API_BASE": fake.url,
                                         "PAYMENT_PROVIDER_TIMEOUT_SECONDS": 4,
                                         "PAYMENT_WEBHOOK_TOLERANCE_SECONDS": 120})
    assert isinstance(provider, StripeProvider)
    assert provider.tolerance_seconds == 120
    assert hosted(provider).ref.startswith("cs_")  # it talks to the configured base address


@pytest.mark.parametrize("config", [{}, {"STRIPE_SECRET_KEY": ""}])
def test_provider_named_refuses_clearly_without_a_secret_key(config):
    with pytest.raises(ProviderUnavailable, match="STRIPE_SECRET_KEY"):
        provider_named("stripe", config)


# -- the hosted page ----------------------------------------------------------------------

def test_a_payment_without_a_saved_method_is_a_checkout_session(fake, stripe_provider):
    payment = hosted(stripe_provider, customer_ref=None)

    assert payment.state is PaymentState.REQUIRES_ACTION
    assert payment.ref.startswith("cs_")
    assert payment.next_action_url == fake.get(payment.ref)["url"]
    assert (payment.amount, payment.currency) == (Decimal("12.50"), "USD")
    assert payment.metadata["portal_payment_id"] == "p-123"
    sent = last_request(fake, "/v1/checkout/sessions")
    assert sent["mode"] == "payment"
    assert sent["line_items"] == [{"quantity": "1", "price_data": {
        "currency": "usd", "unit_amount": "1250", "product_data": {"name": "Wallet top-up"}}}]
    assert sent["success_url"] == sent["cancel_url"] == RETURN_URL + "?payment_ref={CHECKOUT_SESSION_ID}"
    assert sent["payment_method_types"] == ["card"]
    assert sent["payment_intent_data"]["metadata"] == {"portal_payment_id": "p-123"}
    assert "setup_future_usage" not in sent["payment_intent_data"]
    assert "customer" not in sent


def test_a_hosted_payment_that_saves_the_method_asks_stripe_to_keep_it_for_the_customer(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="ada@example.com", name="Ada")
    payment = hosted(stripe_provider, customer_ref=customer, save_method=True)

    sent = last_request(fake, "/v1/checkout/sessions")
    assert sent["customer"] == customer
    assert sent["payment_intent_data"]["setup_future_usage"] == "off_session"

    fake.pay_checkout(payment.ref, "pm_card_visa")
    paid = stripe_provider.fetch(payment.ref)
    assert paid.method_saved is True
    assert [m.ref for m in stripe_provider.list_methods(customer)] == [paid.method.ref]


def test_a_return_url_with_a_query_gets_the_ref_appended(fake, stripe_provider):
    stripe_provider.create_payment(amount=Decimal(5), currency="USD", method_kind=MethodKind.CARD,
                                   idempotency_key="q", return_url=RETURN_URL + "?next=wallet",
                                   description="x")
    assert last_request(fake, "/v1/checkout/sessions")["success_url"] == (
        RETURN_URL + "?next=wallet&payment_ref={CHECKOUT_SESSION_ID}")


def test_the_payer_pays_on_the_hosted_page(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_visa")

    paid = stripe_provider.fetch(payment.ref)
    session = fake.get(payment.ref)
    intent = fake.get(session["payment_intent"])
    charge = fake.get(intent["latest_charge"])
    txn = fake.get(charge["balance_transaction"])
    assert paid.ref == payment.ref
    assert paid.state is PaymentState.SUCCEEDED
    assert paid.next_action_url is None
    # Stripe's fee: 2.9% of 1250 cents (36.25 -> 36) plus 30 cents.
    assert txn["fee"] == 66
    assert paid.fee == Decimal("0.66")
    assert paid.amount_refunded == Decimal("0.00")
    assert paid.method.ref == intent["payment_method"]
    assert (paid.method.kind, paid.method.brand, paid.method.last4) == (MethodKind.CARD, "visa", "4242")
    assert (paid.method.exp_month, paid.method.exp_year) == (12, 2034)
    assert paid.method_saved is False  # the payer did not ask to keep it
    assert paid.metadata["portal_payment_id"] == "p-123"
    assert paid.failure_code is None


def test_a_declined_card_on_the_hosted_page_leaves_the_payment_waiting_for_another(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_chargeDeclinedInsufficientFunds")

    declined = stripe_provider.fetch(payment.ref)
    assert declined.state is PaymentState.REQUIRES_PAYMENT_METHOD
    assert declined.failure_code == "insufficient_funds"
    assert declined.failure_message == "Your card has insufficient funds."
    assert declined.next_action_url == payment.next_action_url  # the payer may try another card
    assert declined.fee is None

    fake.pay_checkout(payment.ref, "pm_card_mastercard")
    assert stripe_provider.fetch(payment.ref).state is PaymentState.SUCCEEDED


def test_a_declined_payment_whose_checkout_expires_has_failed(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_chargeDeclined")
    fake.expire_checkout(payment.ref)

    failed = stripe_provider.fetch(payment.ref)
    assert failed.state is PaymentState.FAILED
    assert failed.failure_code == "generic_decline"
    assert failed.next_action_url is None


def test_a_checkout_left_unpaid_until_it_expires_is_canceled(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.expire_checkout(payment.ref)
    assert stripe_provider.fetch(payment.ref).state is PaymentState.CANCELED


def test_a_3d_secure_card_waits_for_the_challenge_then_succeeds(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_authenticationRequired")

    waiting = stripe_provider.fetch(payment.ref)
    assert waiting.state is PaymentState.REQUIRES_ACTION
    assert waiting.next_action_url == payment.next_action_url  # the challenge is on the hosted page

    fake.finish_challenge(payment.ref, passed=True)
    paid = stripe_provider.fetch(payment.ref)
    assert paid.state is PaymentState.SUCCEEDED
    assert paid.method.last4 == "3184"


def test_a_failed_3d_secure_challenge_asks_for_another_method(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_authenticationRequired")
    fake.finish_challenge(payment.ref, passed=False)

    failed = stripe_provider.fetch(payment.ref)
    assert failed.state is PaymentState.REQUIRES_PAYMENT_METHOD
    assert failed.failure_code == "payment_intent_authentication_failure"


def test_only_cards_are_taken(stripe_provider):
    with pytest.raises(ProviderDeclined) as declined:
        stripe_provider.create_payment(amount=Decimal(5), currency="USD", method_kind=MethodKind.MOBILE_MONEY,
                                       idempotency_key="m", return_url=RETURN_URL, description="x")
    assert declined.value.code == "method_not_supported"


# -- saved methods, off-session -----------------------------------------------------------

def test_a_saved_card_is_charged_at_once_off_session(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="ada@example.com", name="Ada")
    method = fake.save_card(customer, "pm_card_visa")

    payment = off_session(stripe_provider, customer, method)

    assert payment.ref.startswith("pi_")
    assert payment.state is PaymentState.SUCCEEDED
    assert payment.amount == Decimal("20.00")
    assert payment.fee == Decimal("0.88")  # 2.9% of 2000 cents (58) plus 30
    assert payment.method.ref == method
    assert payment.metadata == {"portal_payment_id": "p-9"}
    sent = last_request(fake, "/v1/payment_intents")
    assert (sent["confirm"], sent["off_session"]) == ("true", "true")
    assert (sent["customer"], sent["payment_method"], sent["amount"]) == (customer, method, "2000")
    assert stripe_provider.fetch(payment.ref).state is PaymentState.SUCCEEDED


@pytest.mark.parametrize(("card", "code"), [("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
                                            ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
                                            ("pm_card_authenticationRequired", "authentication_required")])
def test_a_declined_saved_card_raises_with_the_decline_code(fake, stripe_provider, card, code):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="bo@example.com", name="Bo")
    method = fake.save_card(customer, card)

    with pytest.raises(ProviderDeclined) as declined:
        off_session(stripe_provider, customer, method)

    assert declined.value.code == code
    assert str(declined.value) == fake.objects[intent_of(fake)]["last_payment_error"]["message"]
    assert "sk_" not in str(declined.value)
    assert stripe_provider.fetch(intent_of(fake)).failure_code == code


# -- capture and cancel -------------------------------------------------------------------

def test_an_authorized_payment_is_processing_until_captured(fake, stripe_provider):
    ref = fake.authorize(1000)
    assert stripe_provider.fetch(ref).state is PaymentState.PROCESSING

    captured = stripe_provider.capture(ref, Decimal("6.00"))

    assert captured.state is PaymentState.SUCCEEDED
    assert last_request(fake, f"/v1/payment_intents/{ref}/capture")["amount_to_capture"] == "600"
    assert captured.amount_refunded == Decimal("4.00")  # the part not captured goes back
    assert captured.fee == Decimal("0.47")  # 2.9% of 600 (17.4 -> 17) plus 30


def test_capturing_all_of_an_authorization(fake, stripe_provider):
    ref = fake.authorize(1000)
    captured = stripe_provider.capture(ref)
    assert captured.state is PaymentState.SUCCEEDED
    assert "amount_to_capture" not in last_request(fake, f"/v1/payment_intents/{ref}/capture")
    assert captured.amount_refunded == Decimal("0.00")


def test_capturing_a_payment_that_is_not_authorized_is_refused(fake, stripe_provider):
    ref = fake.authorize(1000)
    stripe_provider.capture(ref)
    with pytest.raises(ProviderError, match="payment_intent_unexpected_state"):
        stripe_provider.capture(ref)


def test_canceling_an_authorization(fake, stripe_provider):
    ref = fake.authorize(1000)
    assert stripe_provider.cancel(ref).state is PaymentState.CANCELED
    assert fake.get(ref)["status"] == "canceled"


def test_canceling_an_open_checkout_expires_it(fake, stripe_provider):
    payment = hosted(stripe_provider)
    canceled = stripe_provider.cancel(payment.ref)
    assert canceled.state is PaymentState.CANCELED
    assert fake.get(payment.ref)["status"] == "expired"


def test_a_succeeded_payment_cannot_be_canceled(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="c@example.com", name="C")
    payment = off_session(stripe_provider, customer, fake.save_card(customer))
    with pytest.raises(ProviderError) as refused:
        stripe_provider.cancel(payment.ref)
    assert not isinstance(refused.value, (ProviderDeclined, ProviderUnavailable))
    assert fake.get(payment.ref)["status"] == "succeeded"


# -- refunds ------------------------------------------------------------------------------

@pytest.fixture
def paid(fake, stripe_provider):
    payment = hosted(stripe_provider, amount="50.00")
    fake.pay_checkout(payment.ref)
    return payment


def test_a_full_refund_is_pending_then_succeeds(fake, stripe_provider, paid):
    refund = stripe_provider.refund(paid.ref, Decimal("50.00"), idempotency_key="r-1",
                                    reason="requested_by_customer")

    assert refund.ref.startswith("re_")
    assert refund.payment_ref == paid.ref
    assert (refund.state, refund.amount, refund.currency) == (RefundState.PENDING, Decimal("50.00"), "USD")
    sent = last_request(fake, "/v1/refunds")
    assert sent["payment_intent"] == fake.get(paid.ref)["payment_intent"]
    assert (sent["amount"], sent["reason"]) == ("5000", "requested_by_customer")

    fake.settle_refund(refund.ref)
    assert stripe_provider.fetch_refund(refund.ref).state is RefundState.SUCCEEDED
    assert stripe_provider.fetch(paid.ref).amount_refunded == Decimal("50.00")


def test_partial_refunds_up_to_what_was_paid(fake, stripe_provider, paid):
    stripe_provider.refund(paid.ref, Decimal("20.00"), idempotency_key="r-1", reason="Course left early")
    sent = last_request(fake, "/v1/refunds")
    assert "reason" not in sent  # not one of Stripe's reasons: kept in the metadata
    assert sent["metadata"] == {"reason": "Course left early"}
    stripe_provider.refund(paid.ref, Decimal("25.00"), idempotency_key="r-2", reason="duplicate")
    assert stripe_provider.fetch(paid.ref).amount_refunded == Decimal("45.00")

    with pytest.raises(ProviderDeclined) as refused:
        stripe_provider.refund(paid.ref, Decimal("5.01"), idempotency_key="r-3", reason="duplicate")
    assert refused.value.code == "amount_too_large"


def test_a_failed_refund(fake, stripe_provider, paid):
    refund = stripe_provider.refund(paid.ref, Decimal("10.00"), idempotency_key="r-1", reason="duplicate")
    fake.settle_refund(refund.ref, succeed=False, failure_reason="expired_or_canceled_card")

    failed = stripe_provider.fetch_refund(refund.ref)
    assert failed.state is RefundState.FAILED
    assert failed.failure_reason == "expired_or_canceled_card"
    assert failed.payment_ref == fake.get(paid.ref)["payment_intent"]
    assert stripe_provider.fetch(paid.ref).amount_refunded == Decimal("0.00")


def test_refunding_a_checkout_that_was_never_paid_is_refused(stripe_provider):
    payment = hosted(stripe_provider)
    with pytest.raises(ProviderError, match="Nothing has been paid"):
        stripe_provider.refund(payment.ref, Decimal(1), idempotency_key="r", reason="duplicate")


# -- idempotency --------------------------------------------------------------------------

def test_a_retried_create_returns_the_same_checkout(fake, stripe_provider):
    first = hosted(stripe_provider, key="same")
    again = hosted(stripe_provider, key="same")
    assert again.ref == first.ref
    assert len([o for o in fake.objects.values() if o["object"] == "checkout.session"]) == 1


def test_a_retried_refund_returns_the_same_refund(fake, stripe_provider, paid):
    first = stripe_provider.refund(paid.ref, Decimal("5.00"), idempotency_key="r-same", reason="duplicate")
    again = stripe_provider.refund(paid.ref, Decimal("5.00"), idempotency_key="r-same", reason="duplicate")
    assert again.ref == first.ref
    assert stripe_provider.fetch(paid.ref).amount_refunded == Decimal("5.00")


def test_a_key_reused_for_another_payment_is_a_decline(stripe_provider):
    hosted(stripe_provider, key="k")
    with pytest.raises(ProviderDeclined, match="differs") as refused:
        hosted(stripe_provider, amount="13.00", key="k")
    assert refused.value.code == "idempotency_error"


def test_a_key_reused_for_another_refund_is_refused(stripe_provider, paid):
    stripe_provider.refund(paid.ref, Decimal("5.00"), idempotency_key="r-k", reason="duplicate")
    with pytest.raises(ProviderError, match="differs") as refused:
        stripe_provider.refund(paid.ref, Decimal("6.00"), idempotency_key="r-k", reason="duplicate")
    assert not isinstance(refused.value, ProviderDeclined)


def test_a_saved_method_stripe_no_longer_has_is_a_decline(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="j@example.com", name="J")
    with pytest.raises(ProviderDeclined) as refused:
        off_session(stripe_provider, customer, "pm_forgotten")
    assert refused.value.code == "resource_missing"


def test_a_retried_customer_creation_returns_the_same_customer(fake, stripe_provider):
    first = stripe_provider.ensure_customer(customer_ref=None, email="d@example.com", name="D")
    assert stripe_provider.ensure_customer(customer_ref=None, email="d@example.com", name="D") == first
    assert stripe_provider.ensure_customer(customer_ref=first, email="x@example.com", name="X") == first
    assert fake.get(first)["email"] == "d@example.com"
    assert len([o for o in fake.objects.values() if o["object"] == "customer"]) == 1


# -- saved methods ------------------------------------------------------------------------

def test_listing_and_detaching_saved_cards(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="e@example.com", name="E")
    visa = fake.save_card(customer, "pm_card_visa")
    master = fake.save_card(customer, "pm_card_mastercard")
    other = stripe_provider.ensure_customer(customer_ref=None, email="f@example.com", name="F")
    fake.save_card(other)

    methods = {m.ref: m for m in stripe_provider.list_methods(customer)}
    assert set(methods) == {visa, master}
    assert (methods[master].brand, methods[master].last4, methods[master].kind) == ("mastercard", "4444",
                                                                                   MethodKind.CARD)

    stripe_provider.detach_method(visa)
    assert [m.ref for m in stripe_provider.list_methods(customer)] == [master]
    stripe_provider.detach_method("pm_gone")  # unknown at Stripe: nothing left to forget


def test_listing_follows_stripe_pages(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="g@example.com", name="G")
    saved = {fake.save_card(customer) for _ in range(103)}
    assert {m.ref for m in stripe_provider.list_methods(customer)} == saved
    assert len([p for m, p, _ in fake.requests if p == "/v1/payment_methods"]) == 2


# -- Stripe unreachable or failing --------------------------------------------------------

def test_stripe_down_is_unavailable():
    with running_fake_stripe() as gone:
        provider = adapter_for(gone)
    with pytest.raises(ProviderUnavailable):
        hosted(provider)


def test_stripe_hanging_past_the_timeout_is_unavailable(fake):
    provider = adapter_for(fake, PAYMENT_PROVIDER_TIMEOUT_SECONDS=0.5)
    fake.hang_next(10)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        provider.fetch("pi_anything")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_stripe_server_error_is_unavailable(fake, stripe_provider, status):
    fake.fail_next(status)
    with pytest.raises(ProviderUnavailable):
        hosted(stripe_provider)
    assert hosted(stripe_provider).ref.startswith("cs_")  # the next answer is fine again


def test_a_rate_limit_is_unavailable(fake, stripe_provider):
    fake.fail_next(429)
    with pytest.raises(ProviderUnavailable, match="rate limiting"):
        hosted(stripe_provider)


def test_a_wrong_key_says_which_setting_to_check(fake):
    provider = adapter_for(fake, STRIPE_SECRET_KEY="sk_test_wrong")
    with pytest.raises(ProviderUnavailable, match="STRIPE_SECRET_KEY") as refused:
        hosted(provider)
    assert "sk_test_wrong" not in str(refused.value)


def test_an_unknown_payment_is_an_error_not_an_outage(stripe_provider):
    with pytest.raises(ProviderError) as missing:
        stripe_provider.fetch("pi_nope")
    assert not isinstance(missing.value, ProviderUnavailable)
    with pytest.raises(ProviderError, match="not a Stripe payment reference"):
        stripe_provider.fetch("sbx_123")


# -- webhooks -----------------------------------------------------------------------------

@pytest.mark.parametrize(("event_type", "session_changes", "state"), [
    ("checkout.session.completed", {}, PaymentState.SUCCEEDED),
    ("checkout.session.completed", {"payment_status": "unpaid"}, PaymentState.PROCESSING),
    ("checkout.session.async_payment_succeeded", {}, PaymentState.SUCCEEDED),
    ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}, PaymentState.FAILED),
])
def test_checkout_session_webhooks(fake, stripe_provider, event_type, session_changes, state):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref)
    fake.objects[payment.ref].update(session_changes)
    body, headers = fake.webhook(event_type, payment.ref)

    event = stripe_provider.parse_webhook(body, headers)

    assert event.id == json.loads(body)["id"]
    assert event.type is EventType.PAYMENT_UPDATED
    assert event.created.tzinfo is not None
    assert event.payment.ref == payment.ref
    assert event.payment.state is state
    assert event.payment.amount == Decimal("12.50")
    assert event.payment.metadata["portal_payment_id"] == "p-123"
    assert event.raw["type"] == event_type


def test_checkout_session_expired_webhook(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.expire_checkout(payment.ref)
    event = stripe_provider.parse_webhook(*fake.webhook("checkout.session.expired", payment.ref))
    assert (event.type, event.payment.state) == (EventType.PAYMENT_UPDATED, PaymentState.CANCELED)
    assert event.payment.metadata["portal_payment_id"] == "p-123"


def test_payment_intent_webhooks_carry_the_portal_payment_id(fake, stripe_provider):
    payment = hosted(stripe_provider)
    fake.pay_checkout(payment.ref, "pm_card_chargeDeclinedInsufficientFunds")
    intent_id = fake.get(payment.ref)["payment_intent"]

    failed = stripe_provider.parse_webhook(*fake.webhook("payment_intent.payment_failed", intent_id))
    assert failed.type is EventType.PAYMENT_UPDATED
    assert failed.payment.ref == intent_id
    assert failed.payment.state is PaymentState.REQUIRES_PAYMENT_METHOD
    assert failed.payment.failure_code == "insufficient_funds"
    assert failed.payment.metadata["portal_payment_id"] == "p-123"

    fake.pay_checkout(payment.ref, "pm_card_visa")
    succeeded = stripe_provider.parse_webhook(*fake.webhook("payment_intent.succeeded", intent_id))
    assert succeeded.payment.state is PaymentState.SUCCEEDED
    assert succeeded.payment.metadata["portal_payment_id"] == "p-123"


def test_payment_intent_canceled_webhook(fake, stripe_provider):
    ref = fake.authorize(700)
    stripe_provider.cancel(ref)
    event = stripe_provider.parse_webhook(*fake.webhook("payment_intent.canceled", ref))
    assert (event.type, event.payment.state, event.payment.amount) == (
        EventType.PAYMENT_UPDATED, PaymentState.CANCELED, Decimal("7.00"))


@pytest.mark.parametrize(("event_type", "succeed", "state"), [
    ("refund.created", None, RefundState.PENDING),
    ("refund.updated", True, RefundState.SUCCEEDED),
    ("charge.refund.updated", True, RefundState.SUCCEEDED),
    ("refund.failed", False, RefundState.FAILED),
])
def test_refund_webhooks(fake, stripe_provider, paid, event_type, succeed, state):
    refund = stripe_provider.refund(paid.ref, Decimal("10.00"), idempotency_key="r", reason="duplicate")
    if succeed is not None:
        fake.settle_refund(refund.ref, succeed=succeed)

    event = stripe_provider.parse_webhook(*fake.webhook(event_type, refund.ref))

    assert event.type is EventType.REFUND_UPDATED
    assert (event.refund.ref, event.refund.state, event.refund.amount) == (refund.ref, state, Decimal("10.00"))
    assert event.refund.payment_ref == fake.get(paid.ref)["payment_intent"]


def test_other_events_are_other(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="h@example.com", name="H")
    event = stripe_provider.parse_webhook(*fake.webhook("customer.created", customer))
    assert event.type is EventType.OTHER
    assert event.payment is None and event.refund is None
    assert event.raw["data"]["object"]["id"] == customer


@pytest.fixture
def delivery(fake, stripe_provider):
    payment = hosted(stripe_provider)
    return json.dumps(fake.event("checkout.session.completed", payment.ref)).encode()


def test_a_forged_signature_is_rejected(fake, stripe_provider, delivery):
    with pytest.raises(WebhookRejected):
        stripe_provider.parse_webhook(delivery, fake.sign(delivery, secret="whsec_someone_else"))


def test_a_body_changed_after_signing_is_rejected(fake, stripe_provider, delivery):
    headers = fake.sign(delivery)
    with pytest.raises(WebhookRejected):
        stripe_provider.parse_webhook(delivery.replace(b"12", b"99"), headers)


@pytest.mark.parametrize("age", [301, 3600])
def test_a_stale_webhook_is_rejected(fake, stripe_provider, delivery, age):
    with pytest.raises(WebhookRejected, match="tolerance"):
        stripe_provider.parse_webhook(delivery, fake.sign(delivery, timestamp=int(time.time()) - age))


def test_a_webhook_from_the_future_is_rejected(fake, stripe_provider, delivery):
    with pytest.raises(WebhookRejected, match="future"):
        stripe_provider.parse_webhook(delivery, fake.sign(delivery, timestamp=int(time.time()) + 3600))


def test_a_recent_webhook_within_the_tolerance_is_accepted(fake, stripe_provider, delivery):
    event = stripe_provider.parse_webhook(delivery, fake.sign(delivery, timestamp=int(time.time()) - 200))
    assert event.type is EventType.PAYMENT_UPDATED


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"object": "event"}', "caf\u00e9".encode("latin-1")])
def test_a_malformed_body_is_rejected_even_when_signed(fake, stripe_provider, body):
    with pytest.raises(WebhookRejected):
        stripe_provider.parse_webhook(body, fake.sign(body))


@pytest.mark.parametrize("headers", [{}, {"Stripe-Signature": ""}, {"Stripe-Signature": "t=soon,v1=abc"},
                                     {"Stripe-Signature": "v1=abc"}, {"Content-Type": "application/json"}])
def test_a_missing_or_garbled_signature_header_is_rejected(stripe_provider, delivery, headers):
    with pytest.raises(WebhookRejected):
        stripe_provider.parse_webhook(delivery, headers)


def test_the_signature_header_is_found_whatever_its_case(fake, stripe_provider, delivery):
    headers = {k.lower(): v for k, v in fake.sign(delivery).items()}
    assert stripe_provider.parse_webhook(delivery, headers).type is EventType.PAYMENT_UPDATED


def test_webhooks_are_rejected_without_a_webhook_secret(fake, delivery):
    provider = adapter_for(fake, STRIPE_WEBHOOK_SECRET="")
    with pytest.raises(WebhookRejected, match="STRIPE_WEBHOOK_SECRET"):
        provider.parse_webhook(delivery, fake.sign(delivery))


# -- minor units --------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("12.50", "USD", 1250), ("0.01", "usd", 1), ("1500", "JPY", 1500), ("12.340", "KWD", 12340),
    ("7.000", "BHD", 7000), ("500", "ISK", 50000),
])
def test_amounts_to_and_from_stripe_minor_units(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor
    assert from_minor(minor, currency) == Decimal(amount)


def test_minor_units_keep_the_currency_exponent():
    assert str(from_minor(1250, "usd")) == "12.50"
    assert str(from_minor(1500, "jpy")) == "1500"
    assert str(from_minor(12340, "kwd")) == "12.340"


@pytest.mark.parametrize(("amount", "currency"), [("0.001", "USD"), ("1.5", "JPY"), ("12.345", "KWD"),
                                                  ("1.0001", "KWD"), ("500.50", "ISK")])
def test_amounts_stripe_cannot_take_exactly_are_refused(amount, currency):
    with pytest.raises(ProviderDeclined, match=currency):
        to_minor(Decimal(amount), currency)


def test_a_yen_payment_end_to_end(fake, stripe_provider):
    payment = hosted(stripe_provider, amount="1500", currency="JPY")
    assert last_request(fake, "/v1/checkout/sessions")["line_items"][0]["price_data"]["unit_amount"] == "1500"
    fake.pay_checkout(payment.ref)
    paid = stripe_provider.fetch(payment.ref)
    assert (paid.amount, paid.currency) == (Decimal("1500"), "JPY")
    assert paid.fee == Decimal("74")  # 2.9% of 1500 yen (43.5 -> 44) plus 30 yen


def test_a_dinar_payment_end_to_end(fake, stripe_provider):
    payment = hosted(stripe_provider, amount="12.340", currency="KWD")
    assert last_request(fake, "/v1/checkout/sessions")["line_items"][0]["price_data"]["unit_amount"] == "12340"
    fake.pay_checkout(payment.ref)
    paid = stripe_provider.fetch(payment.ref)
    assert (paid.amount, paid.currency) == (Decimal("12.340"), "KWD")
    # 2.9% of 12340 fils (357.86 -> 358) plus 300, in tens: 650 fils.
    assert paid.fee == Decimal("0.650")


def test_a_fee_settled_in_another_currency_is_converted_back():
    # A yen charge settled in dollars: the fee of USD 1.50 at 0.0067 USD per yen is 224 yen.
    charge = {"balance_transaction": {"fee": 150, "currency": "usd", "exchange_rate": 0.0067}}
    assert _fee(charge, "jpy") == Decimal("224")
    assert _fee({"balance_transaction": {"fee": 150, "currency": "usd", "exchange_rate": None}}, "jpy") is None
    assert _fee({"balance_transaction": "txn_unexpanded"}, "usd") is None


def test_a_retried_declined_charge_declines_again_without_a_second_attempt(fake, stripe_provider):
    customer = stripe_provider.ensure_customer(customer_ref=None, email="i@example.com", name="I")
    method = fake.save_card(customer, "pm_card_chargeDeclined")
    for _ in range(2):
        with pytest.raises(ProviderDeclined):
            off_session(stripe_provider, customer, method, key="same-decline")
    assert len([o for o in fake.objects.values() if o["object"] == "payment_intent"]) == 1


def test_a_key_without_the_permission_says_which_setting_to_check(fake, stripe_provider):
    fake.fail_next(403)
    with pytest.raises(ProviderUnavailable, match="STRIPE_SECRET_KEY"):
        hosted(stripe_provider)


# -- the fake itself ----------------------------------------------------------------------

def test_the_fake_reads_forms_as_the_sdk_and_stripe_write_them():
    from tests.money.payments.fake_stripe import parse_form

    assert parse_form([("expand[]", "a"), ("expand[]", "b"), ("line_items[0][price_data][unit_amount]", "5"),
                       ("line_items[0][quantity]", "1"), ("metadata[portal_payment_id]", "p")]) == {
        "expand": ["a", "b"], "line_items": [{"price_data": {"unit_amount": "5"}, "quantity": "1"}],
        "metadata": {"portal_payment_id": "p"}}


def test_the_fake_refuses_requests_without_the_key(fake):
    import requests

    answer = requests.get(f"{fake.url}/v1/payment_intents/pi_x", timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"
    answer = requests.get(f"{fake.url}/v1/payment_intents/pi_x", timeout=5,
                          headers={"Authorization": f"Bearer {fake.api_key}"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "resource_missing")


def test_a_signed_event_whose_object_is_not_shaped_as_stripes_is_rejected_not_a_crash(fake, stripe_provider):
    body = json.dumps({"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": 1,
                       "data": {"object": {"object": "payment_intent", "id": "pi_1"}}}).encode()
    with pytest.raises(WebhookRejected, match="payment_intent.succeeded"):
        stripe_provider.parse_webhook(body, fake.sign(body))


DECLINE = {"type": "card_error", "code": "card_declined", "decline_code": "do_not_honor", "message": "Declined."}


@pytest.mark.parametrize(("status", "error", "session_status", "state"), [
    ("requires_payment_method", None, None, PaymentState.REQUIRES_PAYMENT_METHOD),
    ("requires_payment_method", None, "open", PaymentState.REQUIRES_ACTION),
    ("requires_payment_method", DECLINE, "open", PaymentState.REQUIRES_PAYMENT_METHOD),
    ("requires_payment_method", DECLINE, None, PaymentState.REQUIRES_PAYMENT_METHOD),
    ("requires_payment_method", DECLINE, "expired", PaymentState.FAILED),
    ("requires_payment_method", None, "expired", PaymentState.CANCELED),
    ("requires_confirmation", None, None, PaymentState.REQUIRES_ACTION),
    ("requires_action", None, None, PaymentState.REQUIRES_ACTION),
    ("processing", None, None, PaymentState.PROCESSING),
    ("requires_capture", None, None, PaymentState.PROCESSING),
    ("succeeded", None, None, PaymentState.SUCCEEDED),
    ("canceled", None, None, PaymentState.CANCELED),
    ("canceled", DECLINE, None, PaymentState.FAILED),
])
def test_payment_intent_statuses_map_to_payment_states(stripe_provider, status, error, session_status, state):
    intent = {"id": "pi_1", "object": "payment_intent", "amount": 500, "currency": "usd", "status": status,
              "last_payment_error": error, "metadata": {"portal_payment_id": "p"}}
    payment = stripe_provider._from_intent(intent, session_status=session_status)
    assert payment.state is state
    assert payment.failure_code == ("do_not_honor" if error else None)
