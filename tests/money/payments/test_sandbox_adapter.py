"""The sandbox adapter (portal/money/payments/providers/sandbox.py) against the real sandbox
service on a free port: the port's calls, Decimal amounts, errors, and webhook verification."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.money.payments.providers import provider_named
from portal.money.payments.providers.base import (
    EventType,
    MethodKind,
    PaymentState,
    Provider,
    ProviderDeclined,
    ProviderUnavailable,
    RefundState,
    WebhookRejected,
)
from portal.money.payments.providers.sandbox import SandboxProvider
from portal.sandbox.psp import sign
from tests.money.payments.sandbox_server import API_KEY, WEBHOOK_SECRET, QuietHandler, running_sandbox

RETURN_URL = "https://portal.test/wallet/payments/return"


def _config(url: str, **extra) -> dict:
    return {"SANDBOX_PSP_URL": url, "SANDBOX_PSP_API_KEY": API_KEY, "SANDBOX_PSP_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PAYMENT_PROVIDER_TIMEOUT_SECONDS": 5, "PAYMENT_WEBHOOK_TOLERANCE_SECONDS": 300} | extra


@pytest.fixture
def psp(tmp_path):
    with running_sandbox(tmp_path) as sandbox:
        yield sandbox


@pytest.fixture
def provider(psp) -> SandboxProvider:
    return provider_named("sandbox", _config(psp.url))


def _create(provider: SandboxProvider, amount: str = "12.50", currency: str = "USD", key: str = "key-1",
            **extra):
    return provider.create_payment(amount=Decimal(amount), currency=currency, method_kind=MethodKind.CARD,
                                   idempotency_key=key, return_url=RETURN_URL, description="Top-up", **extra)


# ---------------------------------------------------------------- configuration

def test_the_adapter_is_a_provider_built_from_the_config(provider, psp):
    assert isinstance(provider, Provider) and provider.name == "sandbox"
    assert (provider.base_url, provider.timeout, provider.tolerance) == (psp.url, 5, 300)


@pytest.mark.parametrize("missing", ["SANDBOX_PSP_URL", "SANDBOX_PSP_API_KEY", "SANDBOX_PSP_WEBHOOK_SECRET"])
def test_without_its_settings_the_provider_is_unavailable(missing):
    with pytest.raises(ProviderUnavailable, match="The sandbox payment provider is not configured"):
        SandboxProvider.from_config(_config("http://127.0.0.1:1") | {missing: ""})


# ---------------------------------------------------------------- payments

def test_a_payment_starts_at_the_hosted_page_in_decimal_major_units(provider, psp):
    payment = _create(provider, metadata={"portal_payment_id": "3f1c"})
    assert payment.state is PaymentState.REQUIRES_ACTION
    assert payment.next_action_url == f"{psp.url}/pay/{payment.ref}"
    assert (payment.amount, payment.currency, payment.fee) == (Decimal("12.50"), "USD", None)
    assert payment.metadata == {"portal_payment_id": "3f1c"}
    assert psp.payment(payment.ref)["amount"] == 1250


def test_a_paid_payment_is_fetched_with_its_fee_and_method(provider, psp):
    payment = _create(provider, amount="100", currency="KES")
    psp.pay_by_card({"id": payment.ref}, "5555555555554444")
    paid = provider.fetch(payment.ref)
    assert paid.state is PaymentState.SUCCEEDED
    assert (paid.amount, paid.fee, paid.amount_refunded) == (Decimal("100.00"), Decimal("3.20"), Decimal("0.00"))
    assert (paid.method.kind, paid.method.brand, paid.method.last4) == (MethodKind.CARD, "mastercard", "4444")
    assert paid.raw["state"] == "succeeded"


def test_a_currency_without_minor_units_converts_exactly(provider, psp):
    payment = _create(provider, amount="1500", currency="UGX")
    assert psp.payment(payment.ref)["amount"] == 1500 and payment.amount == Decimal(1500)


def test_a_declined_attempt_reads_back_as_requires_payment_method(provider, psp):
    payment = _create(provider)
    psp.pay_by_card({"id": payment.ref}, "4000000000009995")
    declined = provider.fetch(payment.ref)
    assert declined.state is PaymentState.REQUIRES_PAYMENT_METHOD
    assert declined.failure_code == "insufficient_funds" and "insufficient funds" in declined.failure_message


def test_mobile_money_is_processing_then_succeeded(provider, psp):
    payment = provider.create_payment(amount=Decimal("50"), currency="KES", method_kind=MethodKind.MOBILE_MONEY,
                                      idempotency_key="mm-1", return_url=RETURN_URL, description="Top-up")
    psp.pay_by_phone({"id": payment.ref})
    assert provider.fetch(payment.ref).state is PaymentState.PROCESSING
    psp.settle()
    paid = provider.fetch(payment.ref)
    assert (paid.state, paid.fee, paid.method.kind) == (PaymentState.SUCCEEDED, Decimal("0.75"), MethodKind.MOBILE_MONEY)


def test_the_same_idempotency_key_is_the_same_payment(provider):
    assert _create(provider, key="same").ref == _create(provider, key="same").ref
    with pytest.raises(ProviderDeclined) as refused:
        _create(provider, amount="13.00", key="same")
    assert refused.value.code == "idempotency_key_reused"


@pytest.mark.parametrize(("amount", "currency", "code"), [("12.505", "USD", "amount_invalid"),
                                                          ("10.5", "JPY", "amount_invalid"),
                                                          ("10", "AZR", "currency_unsupported")])
def test_amounts_the_sandbox_cannot_take_are_declined(provider, amount, currency, code):
    with pytest.raises(ProviderDeclined) as refused:
        _create(provider, amount=amount, currency=currency)
    assert refused.value.code == code


def test_a_refusal_of_bad_input_is_declined_with_the_services_message(provider):
    with pytest.raises(ProviderDeclined, match="return_url must be an http or https address") as refused:
        provider.create_payment(amount=Decimal(1), currency="USD", method_kind=MethodKind.CARD,
                                idempotency_key="bad", return_url="ftp://x", description="")
    assert refused.value.code == "parameter_invalid"


def test_capture_and_cancel(provider, psp):
    held = psp.new_payment(1000, capture_method="manual")
    psp.pay_by_card(held)
    assert provider.fetch(held["id"]).state is PaymentState.PROCESSING  # held, not yet settled
    captured = provider.capture(held["id"], Decimal("8.00"))
    assert (captured.state, captured.fee) == (PaymentState.SUCCEEDED, Decimal("0.53"))
    assert psp.payment(held["id"])["amount_captured"] == 800
    open_payment = _create(provider)
    assert provider.cancel(open_payment.ref).state is PaymentState.CANCELED
    with pytest.raises(ProviderDeclined) as refused:
        provider.cancel(held["id"])
    assert refused.value.code == "payment_unexpected_state"


def test_an_unknown_or_odd_reference_is_declined(provider):
    with pytest.raises(ProviderDeclined):
        provider.fetch("pay_missing")
    with pytest.raises(ProviderDeclined):
        provider.fetch("../v1/refunds")


# ---------------------------------------------------------------- customers and saved methods

def test_customers_saved_methods_and_off_session_charges(provider, psp):
    customer = provider.ensure_customer(customer_ref=None, email="ada@example.test", name="Ada")
    assert customer.startswith("cus_")
    assert provider.ensure_customer(customer_ref=customer, email="x@example.test", name="X") == customer
    first = _create(provider, key="save-1", customer_ref=customer, save_method=True)
    psp.pay_by_card({"id": first.ref}, "4000000000000341", save=True)
    assert provider.fetch(first.ref).method_saved is True
    [method] = provider.list_methods(customer)
    assert (method.kind, method.brand, method.last4, method.exp_month) == (MethodKind.CARD, "visa", "0341", 4)
    # This card declines every later charge off-session.
    with pytest.raises(ProviderDeclined, match="declined") as declined:
        _create(provider, key="off-1", customer_ref=customer, saved_method_ref=method.ref)
    assert declined.value.code == "card_declined"
    assert (declined.value.payment.state, declined.value.payment.failure_code) == (PaymentState.FAILED,
                                                                                 "card_declined")
    provider.detach_method(method.ref)
    assert provider.list_methods(customer) == []


def test_an_off_session_charge_of_a_good_saved_card_succeeds_at_once(provider, psp):
    customer = provider.ensure_customer(customer_ref=None, email="bo@example.test", name="Bo")
    first = _create(provider, key="save-2", customer_ref=customer, save_method=True)
    psp.pay_by_card({"id": first.ref}, save=True)
    [method] = provider.list_methods(customer)
    charged = _create(provider, key="off-2", customer_ref=customer, saved_method_ref=method.ref,
                      metadata={"portal_payment_id": "p-2"})
    assert (charged.state, charged.method.ref, charged.metadata) == (
        PaymentState.SUCCEEDED, method.ref, {"portal_payment_id": "p-2"})


# ---------------------------------------------------------------- refunds

def test_refunds_pending_then_settled_and_refused_above_what_is_left(provider, psp):
    payment = _create(provider, amount="10.00")
    psp.pay_by_card({"id": payment.ref})
    refund = provider.refund(payment.ref, Decimal("4.00"), idempotency_key="rf-1", reason="requested_by_customer")
    assert (refund.state, refund.amount, refund.payment_ref) == (RefundState.PENDING, Decimal("4.00"), payment.ref)
    assert provider.refund(payment.ref, Decimal("4.00"), idempotency_key="rf-1", reason="requested_by_customer"
                           ).ref == refund.ref
    with pytest.raises(ProviderDeclined) as refused:
        provider.refund(payment.ref, Decimal("6.01"), idempotency_key="rf-2", reason="requested_by_customer")
    assert refused.value.code == "amount_too_large"
    failing = provider.refund(payment.ref, Decimal("0.13"), idempotency_key="rf-3", reason="requested_by_customer")
    psp.settle()
    assert provider.fetch_refund(refund.ref).state is RefundState.SUCCEEDED
    failed = provider.fetch_refund(failing.ref)
    assert (failed.state, failed.failure_reason) == (RefundState.FAILED, "declined_by_bank")
    assert provider.fetch(payment.ref).amount_refunded == Decimal("4.00")


# ---------------------------------------------------------------- webhooks

def _events_by_type(psp, count: int) -> dict[str, list[dict]]:
    psp.receiver.wait_for(lambda events: len(events) >= count)
    found: dict[str, list[dict]] = {}
    for record in psp.receiver.received:
        found.setdefault(json.loads(record["body"])["type"], []).append(record)
    return found


def test_real_webhooks_verify_and_map_to_events(provider, psp):
    customer = provider.ensure_customer(customer_ref=None, email="ada@example.test", name="Ada")
    payment = _create(provider, customer_ref=customer, metadata={"portal_payment_id": "p-9"})
    psp.pay_by_card({"id": payment.ref})
    refund = provider.refund(payment.ref, Decimal("1.00"), idempotency_key="wh-r", reason="duplicate")
    found = _events_by_type(psp, 4)
    succeeded = found["payment.succeeded"][0]
    event = provider.parse_webhook(succeeded["body"], succeeded["headers"])
    assert event.type is EventType.PAYMENT_UPDATED and event.id.startswith("evt_")
    assert (event.payment.ref, event.payment.state, event.payment.fee) == (payment.ref, PaymentState.SUCCEEDED,
                                                                           Decimal("0.66"))
    assert event.payment.metadata == {"portal_payment_id": "p-9"} and event.refund is None
    assert abs(event.created.timestamp() - time.time()) < 60 and event.created.tzinfo is not None
    pending = found["refund.pending"][0]
    refund_event = provider.parse_webhook(pending["body"], {k.lower(): v for k, v in pending["headers"].items()})
    assert refund_event.type is EventType.REFUND_UPDATED
    assert (refund_event.refund.ref, refund_event.refund.state) == (refund.ref, RefundState.PENDING)
    other = provider.parse_webhook(found["customer.created"][0]["body"], found["customer.created"][0]["headers"])
    assert other.type is EventType.OTHER and other.payment is None and other.refund is None


def _signed(body: bytes, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict:
    return {"Sandbox-Signature": sign(secret, body, int(time.time() if at is None else at))}


EVENT = json.dumps({"id": "evt_1", "type": "refund.succeeded", "created": 1_800_000_000, "data": {"object": {
    "id": "re_1", "object": "refund", "payment": "pay_1", "amount": 513, "currency": "USD", "state": "succeeded",
    "failure_reason": None}}}).encode()


def test_a_webhook_signed_by_hand_parses(provider):
    event = provider.parse_webhook(EVENT, _signed(EVENT))
    assert (event.id, event.refund.amount) == ("evt_1", Decimal("5.13"))


@pytest.mark.parametrize(("body", "headers", "message"), [
    (EVENT, lambda: {}, "no signature"),
    (EVENT, lambda: {"Sandbox-Signature": "v1=abc"}, "malformed"),
    (EVENT, lambda: {"Sandbox-Signature": "t=abc,v1=abc"}, "malformed"),
    (EVENT, lambda: _signed(EVENT, secret="whsec_forged"), "does not match"),
    (EVENT.replace(b"513", b"999"), lambda: _signed(EVENT), "does not match"),
    (EVENT, lambda: _signed(EVENT, at=time.time() - 301), "too old"),
    (EVENT, lambda: _signed(EVENT, at=time.time() + 301), "too old"),
    # Not JSON, and not signed: refused for the signature, before anything reads the body.
    (b"{not json", lambda: {"Sandbox-Signature": f"t={int(time.time())},v1=00"}, "does not match"),
])
def test_forged_stale_and_unsigned_webhooks_are_rejected(provider, body, headers, message):
    with pytest.raises(WebhookRejected, match=message):
        provider.parse_webhook(body, headers())


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"id": "evt_1"}', b"\xff",
                                  b'{"id": "e", "type": "payment.succeeded", "created": 1, "data": {"object": '
                                  b'{"object": "payment", "id": "p", "state": "exploded", "amount": 1, '
                                  b'"currency": "USD"}}}'])
def test_a_signed_but_malformed_body_is_rejected(provider, body):
    with pytest.raises(WebhookRejected, match="not an event"):
        provider.parse_webhook(body, _signed(body))


def test_the_tolerance_comes_from_the_config(psp):
    strict = SandboxProvider.from_config(_config(psp.url, PAYMENT_WEBHOOK_TOLERANCE_SECONDS=5))
    with pytest.raises(WebhookRejected, match="too old"):
        strict.parse_webhook(EVENT, _signed(EVENT, at=time.time() - 10))


# ---------------------------------------------------------------- when the service is not there

class _Stub:
    """A local HTTP server that sleeps ``delay`` seconds, then answers ``status``."""

    def __init__(self, status: int = 200, delay: float = 0.0, body: bytes = b"{}"):
        @Request.application
        def app(_request):
            time.sleep(delay)
            return Response(body, status=status, mimetype="application/json")

        self._http = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self._http.shutdown()
        self._http.server_close()


def test_a_service_that_is_down_is_unavailable():
    provider = SandboxProvider.from_config(_config("http://127.0.0.1:9"))
    with pytest.raises(ProviderUnavailable, match="cannot be reached"):
        provider.fetch("pay_1")


def test_a_slow_service_times_out_as_unavailable():
    stub = _Stub(delay=2)
    try:
        provider = SandboxProvider.from_config(_config(stub.url, PAYMENT_PROVIDER_TIMEOUT_SECONDS=0.3))
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="did not answer in time"):
            _create(provider)
        assert time.monotonic() - started < 1.5
    finally:
        stub.stop()


@pytest.mark.parametrize(("status", "body", "message"), [
    (500, b'{"error": {}}', "failed"), (503, b"busy", "failed"), (200, b"<html>", "not JSON"),
])
def test_5xx_and_garbage_answers_are_unavailable(status, body, message):
    stub = _Stub(status=status, body=body)
    try:
        with pytest.raises(ProviderUnavailable, match=message):
            SandboxProvider.from_config(_config(stub.url)).fetch("pay_1")
    finally:
        stub.stop()


def test_a_wrong_api_key_is_unavailable_not_declined(psp):
    provider = SandboxProvider.from_config(_config(psp.url, SANDBOX_PSP_API_KEY="sk_wrong"))
    with pytest.raises(ProviderUnavailable, match="refused the portal's API key"):
        _create(provider)
