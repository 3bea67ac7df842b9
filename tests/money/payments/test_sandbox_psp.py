"""The sandbox payment provider (portal/sandbox/psp) through HTTP only: its JSON API, and its
hosted page driven with form posts as a browser sends them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.sandbox.psp import rules
from tests.money.payments.sandbox_server import (
    FUTURE_EXPIRY,
    WEBHOOK_SECRET,
    WebhookReceiver,
    running_sandbox,
)

RETURN_URL = "https://portal.test/wallet/payments/return"


@pytest.fixture
def psp(tmp_path):
    with running_sandbox(tmp_path) as sandbox:
        yield sandbox


def _returned_to(answer: requests.Response, payment: dict) -> None:
    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    assert parse_qs(location.query) == {"payment_ref": [payment["id"]]}


# ---------------------------------------------------------------- the hosted page and test cards

def test_a_new_payment_waits_for_the_payer_on_the_hosted_page(psp):
    payment = psp.new_payment(1250, "usd", metadata={"portal_payment_id": "p-1"})
    assert payment["state"] == "requires_action"
    assert payment["next_action_url"] == f"{psp.url}/pay/{payment['id']}"
    assert payment["currency"] == "USD" and payment["metadata"] == {"portal_payment_id": "p-1"}
    page = requests.get(payment["next_action_url"], timeout=10)
    assert page.status_code == 200
    assert "12.50 USD" in page.text
    for field, label in (("number", "Card number"), ("expiry", "Expiry date"), ("cvc", "Security code"),
                         ("name", "Name on the card")):
        assert f'<label for="{field}">{label}</label>' in page.text
        assert f'id="{field}" name="{field}"' in page.text
    # No external assets, and a policy that allows none.
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    # The form posts here, and its redirect goes on to the portal: both allowed, nothing else.
    assert "form-action 'self' https://portal.test;" in policy
    assert 'href="/assets/pay.css"' in page.text and "https://" not in page.text
    assert page.text.count("autofocus") == 1 and 'autocomplete="cc-number" required' in page.text
    assert requests.get(psp.url + "/assets/pay.css", timeout=10).headers["Content-Type"].startswith("text/css")


def test_the_success_card_pays_and_sends_the_payer_back(psp):
    payment = psp.new_payment(1250)
    _returned_to(psp.pay_by_card(payment, "4242 4242 4242 4242"), payment)
    paid = psp.payment(payment["id"])
    assert paid["state"] == "succeeded"
    assert paid["amount_captured"] == 1250
    assert paid["fee"] == 66 and paid["net"] == 1184  # 36.25 + 30 cents, half up
    assert paid["payment_method"] | {"id": None, "created": None} == {
        "id": None, "object": "payment_method", "kind": "card", "brand": "visa", "last4": "4242",
        "exp_month": 4, "exp_year": 2000 + int(FUTURE_EXPIRY[-2:]), "customer": None, "created": None}
    assert paid["next_action_url"] is None


@pytest.mark.parametrize(("number", "code", "shown"), [
    ("4000000000009995", "insufficient_funds", "insufficient funds"),
    ("4000000000009979", "stolen_card", "The card was declined"),
    ("4000000000000002", "card_declined", "The card was declined"),
])
def test_a_declined_card_stays_on_the_page_with_the_reason_and_may_try_again(psp, number, code, shown):
    payment = psp.new_payment()
    answer = psp.pay_by_card(payment, number)
    assert answer.status_code == 402
    assert shown in answer.text and 'role="alert"' in answer.text
    declined = psp.payment(payment["id"])
    assert declined["state"] == "requires_payment_method"
    assert declined["failure_code"] == code and declined["fee"] is None
    assert declined["next_action_url"] == f"{psp.url}/pay/{payment['id']}"
    _returned_to(psp.pay_by_card(payment, "4242424242424242"), payment)
    assert psp.payment(payment["id"])["state"] == "succeeded"


@pytest.mark.parametrize(("number", "cvc", "brand"), [
    ("5555555555554444", "123", "mastercard"),
    ("2223003122003222", "123", "mastercard"),
    ("378282246310005", "1234", "amex"),
    ("4012888888881881", "123", "visa"),
    ("6011111111111117", "123", "unknown"),
])
def test_any_other_valid_number_succeeds_as_a_card_of_its_brand(psp, number, cvc, brand):
    payment = psp.new_payment()
    _returned_to(psp.pay_by_card(payment, number, cvc=cvc), payment)
    paid = psp.payment(payment["id"])
    assert paid["state"] == "succeeded"
    assert (paid["payment_method"]["brand"], paid["payment_method"]["last4"]) == (brand, number[-4:])


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"number": "4242424242424241"}, "number", "This card number is not valid"),
    ({"number": "4242"}, "number", "A card number is 12 to 19 digits."),
    ({"number": ""}, "number", "Enter the card number."),
    ({"expiry": "01/20"}, "expiry", "This card has expired."),
    ({"expiry": "13/40"}, "expiry", "The expiry month is between 01 and 12."),
    ({"expiry": "2031-04"}, "expiry", "Enter the expiry date as MM/YY"),
    ({"cvc": "12a"}, "cvc", "The security code is the 3 digits on the card."),
    ({"number": "378282246310005", "cvc": "123"}, "cvc", "The security code is the 4 digits on the card."),
    ({"name": " "}, "name", "Enter the name on the card."),
])
def test_the_card_form_refuses_bad_input_with_a_clear_message(psp, form, field, message):
    payment = psp.new_payment()
    values = {"number": "4242424242424242", "expiry": FUTURE_EXPIRY, "cvc": "123", "name": "Ada"} | form
    answer = requests.post(f"{psp.url}/pay/{payment['id']}", data=values, allow_redirects=False, timeout=10)
    assert answer.status_code == 400
    assert message in answer.text
    assert f'id="{field}-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert psp.payment(payment["id"])["state"] == "requires_action"


def test_the_challenge_card_asks_for_the_step_and_passing_it_pays(psp):
    payment = psp.new_payment()
    answer = psp.pay_by_card(payment, "4000002760003184")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/challenge/{payment['id']}"
    waiting = psp.payment(payment["id"])
    assert waiting["state"] == "requires_action"
    assert waiting["next_action_url"] == f"{psp.url}/challenge/{payment['id']}"
    # The payment page now leads to the step, which asks the payer.
    assert requests.get(f"{psp.url}/pay/{payment['id']}", allow_redirects=False, timeout=10).status_code == 303
    page = requests.get(f"{psp.url}/challenge/{payment['id']}", timeout=10)
    assert page.status_code == 200 and "ending 3184" in page.text
    approved = requests.post(f"{psp.url}/challenge/{payment['id']}", data={"outcome": "approve"},
                             allow_redirects=False, timeout=10)
    _returned_to(approved, payment)
    assert psp.payment(payment["id"])["state"] == "succeeded"


def test_failing_the_challenge_returns_to_the_page_with_the_reason(psp):
    payment = psp.new_payment()
    psp.pay_by_card(payment, "4000002760003184")
    failed = requests.post(f"{psp.url}/challenge/{payment['id']}", data={"outcome": "fail"},
                           allow_redirects=False, timeout=10)
    assert failed.status_code == 303 and failed.headers["Location"] == f"/pay/{payment['id']}"
    after = psp.payment(payment["id"])
    assert after["state"] == "requires_payment_method" and after["failure_code"] == "authentication_failed"
    assert "verification step failed" in requests.get(f"{psp.url}/pay/{payment['id']}", timeout=10).text
    # Nothing waits at the step any more.
    again = requests.post(f"{psp.url}/challenge/{payment['id']}", data={"outcome": "approve"},
                          allow_redirects=False, timeout=10)
    assert again.status_code == 409
    assert psp.payment(payment["id"])["state"] == "requires_payment_method"


def test_a_paid_payment_takes_no_second_card(psp):
    payment = psp.new_payment()
    psp.pay_by_card(payment)
    again = psp.pay_by_card(payment, "4000000000000002")
    assert again.status_code == 409
    assert psp.payment(payment["id"])["state"] == "succeeded"
    page = requests.get(f"{psp.url}/pay/{payment['id']}", timeout=10)
    assert "Payment succeeded" in page.text and f"payment_ref={payment['id']}" in page.text


def test_the_provider_never_keeps_the_card_number(psp, tmp_path):
    customer = psp.ok("POST", "/v1/customers", {"email": "ada@example.test", "name": "Ada"})
    payment = psp.new_payment(customer=customer["id"], save_method=True)
    psp.pay_by_card(payment, "5555555555554444", save=True)
    stored = b"".join(path.read_bytes() for path in Path(tmp_path).glob("sandbox-psp.sqlite3*"))
    assert b"5555555555554444" not in stored and b"555555555555" not in stored
    assert b"4444" in stored  # the last four are kept


# ---------------------------------------------------------------- mobile money

def test_mobile_money_is_processing_then_confirms(psp):
    payment = psp.new_payment(10_000, "KES", "mobile_money")
    page = requests.get(payment["next_action_url"], timeout=10)
    assert '<label for="phone">Phone number</label>' in page.text and '<label for="network">' in page.text
    _returned_to(psp.pay_by_phone(payment, "+254712345678", "mpesa"), payment)
    processing = psp.payment(payment["id"])
    assert processing["state"] == "processing" and processing["fee"] is None
    assert psp.settle()["payments"] == [payment["id"]]
    paid = psp.payment(payment["id"])
    assert paid["state"] == "succeeded" and paid["fee"] == 150  # 1.5% of 100.00 KES
    assert (paid["payment_method"]["kind"], paid["payment_method"]["brand"],
            paid["payment_method"]["last4"]) == ("mobile_money", "mpesa", "5678")


def test_mobile_money_from_a_number_ending_0002_fails_later(psp):
    payment = psp.new_payment(10_000, "NGN", "mobile_money")
    _returned_to(psp.pay_by_phone(payment, "+2348030000002", "mtn"), payment)
    assert psp.payment(payment["id"])["state"] == "processing"
    psp.settle()
    failed = psp.payment(payment["id"])
    assert failed["state"] == "failed" and failed["failure_code"] == "insufficient_funds"


def test_mobile_money_confirms_by_itself_after_the_delay(tmp_path):
    with running_sandbox(tmp_path, mobile_money_delay=0.2) as psp:
        payment = psp.new_payment(500, "ZAR", "mobile_money")
        psp.pay_by_phone(payment, "+27821234567", "airtel")
        assert psp.payment(payment["id"])["state"] == "processing"
        deadline = time.monotonic() + 10
        while psp.payment(payment["id"])["state"] == "processing" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psp.payment(payment["id"])["state"] == "succeeded"


@pytest.mark.parametrize(("form", "message"), [
    ({"phone": "0712345678", "network": "mpesa"}, "international form"),
    ({"phone": "+254712345678", "network": "pigeon"}, "Choose the mobile money network."),
])
def test_the_mobile_money_form_refuses_bad_input(psp, form, message):
    payment = psp.new_payment(method_kind="mobile_money")
    answer = requests.post(f"{psp.url}/pay/{payment['id']}", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and message in answer.text
    assert psp.payment(payment["id"])["state"] == "requires_action"


# ---------------------------------------------------------------- fees

@pytest.mark.parametrize(("amount", "currency", "kind", "fee"), [
    (1250, "USD", "card", 66),  # 36.25 + 30 -> 66
    (500, "USD", "card", 45),  # 14.5 + 30 = 44.5 -> 45 (half up, not to even)
    (100_000, "KES", "card", 2930),
    (1000, "UGX", "card", 29),  # no minor unit: 29 + 0.3 -> 29
    (100, "EUR", "mobile_money", 2),  # 1.5 -> 2
    (1000, "USD", "mobile_money", 15),
])
def test_fees_are_exact_and_rounded_half_up(amount, currency, kind, fee):
    assert rules.fee(amount, currency, kind) == fee


def test_a_succeeded_payment_shows_its_fee_in_its_currency(psp):
    payment = psp.new_payment(500, "EUR")
    psp.pay_by_card(payment)
    paid = psp.payment(payment["id"])
    assert (paid["fee"], paid["net"], paid["currency"]) == (45, 455, "EUR")


# ---------------------------------------------------------------- customers and saved methods

def _saved_card(psp, number: str = "4242424242424242") -> tuple[dict, dict]:
    customer = psp.ok("POST", "/v1/customers", {"email": "ada@example.test", "name": "Ada"})
    payment = psp.new_payment(customer=customer["id"], save_method=True)
    page = requests.get(payment["next_action_url"], timeout=10).text
    assert '<label for="save">Save this card for later payments</label>' in page
    assert 'value="yes" checked>' in page  # the portal asked: the box starts ticked
    answer = psp.pay_by_card(payment, number, save=True)
    if answer.headers["Location"].startswith("/challenge/"):
        requests.post(psp.url + answer.headers["Location"], data={"outcome": "approve"}, allow_redirects=False,
                      timeout=10)
    assert psp.payment(payment["id"])["method_saved"] is True
    methods = psp.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"]
    assert len(methods) == 1
    return customer, methods[0]


def test_a_saved_card_keeps_brand_last4_and_expiry_only(psp):
    customer, method = _saved_card(psp)
    assert set(method) == {"id", "object", "kind", "brand", "last4", "exp_month", "exp_year", "customer", "created"}
    assert (method["brand"], method["last4"], method["customer"]) == ("visa", "4242", customer["id"])


def test_a_card_is_saved_only_when_the_payer_ticks_the_box(psp):
    customer = psp.ok("POST", "/v1/customers", {"email": "bo@example.test", "name": "Bo"})
    payment = psp.new_payment(customer=customer["id"])
    psp.pay_by_card(payment)
    assert psp.payment(payment["id"])["method_saved"] is False
    assert psp.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"] == []


def test_a_saved_card_is_charged_off_session_at_once(psp):
    customer, method = _saved_card(psp)
    charged = psp.new_payment(2000, customer=customer["id"], payment_method=method["id"])
    assert charged["state"] == "succeeded" and charged["fee"] == 88
    assert charged["payment_method"]["id"] == method["id"]


def test_a_saved_challenge_card_asks_for_the_step_off_session(psp):
    customer, method = _saved_card(psp, "4000002760003184")
    # The first payment passed its step before the card was saved; a later charge asks again.
    charged = psp.new_payment(customer=customer["id"], payment_method=method["id"])
    assert charged["state"] == "requires_action"
    assert charged["next_action_url"] == f"{psp.url}/challenge/{charged['id']}"


def test_a_saved_card_that_declines_off_session_answers_402_with_the_failed_payment(psp):
    customer, method = _saved_card(psp, "4000000000000341")
    answer = psp.api("POST", "/v1/payments", {"amount": 700, "currency": "USD", "method_kind": "card",
                                              "return_url": RETURN_URL, "customer": customer["id"],
                                              "payment_method": method["id"]})
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("card_error", "card_declined")
    assert psp.payment(error["payment"]["id"])["state"] == "failed"


def test_a_detached_method_is_gone_and_cannot_pay(psp):
    customer, method = _saved_card(psp)
    assert psp.ok("POST", f"/v1/payment_methods/{method['id']}/detach", {})["customer"] is None
    assert psp.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"] == []
    answer = psp.api("POST", "/v1/payments", {"amount": 700, "currency": "USD", "method_kind": "card",
                                              "return_url": RETURN_URL, "customer": customer["id"],
                                              "payment_method": method["id"]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "payment_method"
    assert psp.api("POST", f"/v1/payment_methods/{method['id']}/detach", {}).status_code == 404


def test_another_customers_method_cannot_pay(psp):
    _, method = _saved_card(psp)
    other = psp.ok("POST", "/v1/customers", {"email": "eve@example.test", "name": "Eve"})
    answer = psp.api("POST", "/v1/payments", {"amount": 700, "currency": "USD", "method_kind": "card",
                                              "return_url": RETURN_URL, "customer": other["id"],
                                              "payment_method": method["id"]})
    assert answer.status_code == 400


# ---------------------------------------------------------------- capture and cancel

def test_a_manual_payment_is_held_then_captured_in_part(psp):
    payment = psp.new_payment(1000, capture_method="manual")
    psp.pay_by_card(payment)
    held = psp.payment(payment["id"])
    assert held["state"] == "requires_capture" and held["fee"] is None
    assert psp.api("POST", f"/v1/payments/{payment['id']}/capture", {"amount": 1001}).status_code == 400
    captured = psp.ok("POST", f"/v1/payments/{payment['id']}/capture", {"amount": 800})
    assert (captured["state"], captured["amount_captured"], captured["fee"]) == ("succeeded", 800, 53)
    assert psp.api("POST", f"/v1/payments/{payment['id']}/capture", {}).status_code == 409


def test_cancel_before_payment_and_not_after(psp):
    open_payment = psp.new_payment()
    assert psp.ok("POST", f"/v1/payments/{open_payment['id']}/cancel", {})["state"] == "canceled"
    assert psp.pay_by_card(open_payment).status_code == 409
    paid = psp.new_payment()
    psp.pay_by_card(paid)
    answer = psp.api("POST", f"/v1/payments/{paid['id']}/cancel", {})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "payment_unexpected_state"


# ---------------------------------------------------------------- idempotency

def test_the_same_idempotency_key_and_body_answer_the_first_payment(psp):
    body = {"amount": 1250, "currency": "USD", "method_kind": "card", "return_url": RETURN_URL}
    first = psp.api("POST", "/v1/payments", body, idempotency_key="k-1")
    second = psp.api("POST", "/v1/payments", dict(reversed(body.items())), idempotency_key="k-1")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    third = psp.api("POST", "/v1/payments", body, idempotency_key="k-2")
    assert third.json()["id"] != first.json()["id"]


def test_the_same_idempotency_key_with_another_body_is_refused(psp):
    body = {"amount": 1250, "currency": "USD", "method_kind": "card", "return_url": RETURN_URL}
    psp.api("POST", "/v1/payments", body, idempotency_key="k-3")
    answer = psp.api("POST", "/v1/payments", body | {"amount": 1300}, idempotency_key="k-3")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "idempotency_key_reused"
    # Another endpoint with the same key is another request too.
    assert psp.api("POST", "/v1/customers", {"email": "a@b.test"}, idempotency_key="k-3").status_code == 409


def test_a_retried_refund_refunds_once(psp):
    payment = psp.new_payment(1000)
    psp.pay_by_card(payment)
    first = psp.api("POST", "/v1/refunds", {"payment": payment["id"], "amount": 600}, idempotency_key="r-1")
    again = psp.api("POST", "/v1/refunds", {"payment": payment["id"], "amount": 600}, idempotency_key="r-1")
    assert again.json()["id"] == first.json()["id"]
    psp.settle()
    assert psp.payment(payment["id"])["amount_refunded"] == 600


def test_a_refused_request_replays_its_refusal(psp):
    body = {"amount": 0, "currency": "USD", "method_kind": "card", "return_url": RETURN_URL}
    first = psp.api("POST", "/v1/payments", body, idempotency_key="bad-1")
    second = psp.api("POST", "/v1/payments", body, idempotency_key="bad-1")
    assert first.status_code == second.status_code == 400
    assert second.json() == first.json()


# ---------------------------------------------------------------- refunds

def _paid(psp, amount: int = 1000) -> dict:
    payment = psp.new_payment(amount)
    psp.pay_by_card(payment)
    return payment


def test_partial_refunds_settle_and_add_up(psp):
    payment = _paid(psp, 1000)
    first = psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 300, "reason": "requested"})
    assert (first["state"], first["amount"], first["currency"]) == ("pending", 300, "USD")
    second = psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 200})
    assert psp.payment(payment["id"])["amount_refunded"] == 0  # pending refunds are not refunded yet
    assert sorted(psp.settle()["refunds"]) == sorted([first["id"], second["id"]])
    assert psp.ok("GET", f"/v1/refunds/{first['id']}")["state"] == "succeeded"
    assert psp.payment(payment["id"])["amount_refunded"] == 500
    rest = psp.ok("POST", "/v1/refunds", {"payment": payment["id"]})  # what is left
    assert rest["amount"] == 500


def test_a_refund_above_what_is_left_is_refused(psp):
    payment = _paid(psp, 1000)
    psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 700})
    answer = psp.api("POST", "/v1/refunds", {"payment": payment["id"], "amount": 301})
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("amount_too_large", "amount")
    assert "3.00 USD" in error["message"]
    assert psp.api("POST", "/v1/refunds", {"payment": payment["id"], "amount": 300}).status_code == 200


def test_a_refund_ending_in_13_fails_and_frees_its_amount(psp):
    payment = _paid(psp, 1000)
    refund = psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 513})
    psp.settle()
    failed = psp.ok("GET", f"/v1/refunds/{refund['id']}")
    assert failed["state"] == "failed" and failed["failure_reason"] == "declined_by_bank"
    assert psp.payment(payment["id"])["amount_refunded"] == 0
    assert psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 1000})["state"] == "pending"


def test_refunds_settle_by_themselves_after_the_delay(tmp_path):
    with running_sandbox(tmp_path, refund_delay=0.2) as psp:
        payment = _paid(psp, 1000)
        refund = psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 100})
        deadline = time.monotonic() + 10
        while psp.ok("GET", f"/v1/refunds/{refund['id']}")["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psp.ok("GET", f"/v1/refunds/{refund['id']}")["state"] == "succeeded"


def test_only_a_succeeded_payment_can_be_refunded(psp):
    payment = psp.new_payment()
    answer = psp.api("POST", "/v1/refunds", {"payment": payment["id"], "amount": 100})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "payment_unexpected_state"
    missing = psp.api("POST", "/v1/refunds", {"payment": "pay_missing", "amount": 100})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "payment"


# ---------------------------------------------------------------- authentication and bad input

@pytest.mark.parametrize("key", [None, "sk_wrong"])
def test_the_api_wants_its_key(psp, key):
    for method, path in (("GET", "/v1/payments/pay_x"), ("POST", "/v1/payments"), ("POST", "/v1/test_helpers/settle")):
        answer = psp.api(method, path, {}, key=key)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("change", "param", "code"), [
    ({"amount": None}, "amount", "parameter_missing"),
    ({"amount": 12.5}, "amount", "parameter_invalid"),
    ({"amount": "1250"}, "amount", "parameter_invalid"),
    ({"amount": True}, "amount", "parameter_invalid"),
    ({"amount": 0}, "amount", "parameter_invalid"),
    ({"amount": 100_000_000}, "amount", "parameter_invalid"),
    ({"currency": "XYZ"}, "currency", "currency_unsupported"),
    ({"currency": None}, "currency", "parameter_missing"),
    ({"method_kind": "cheque"}, "method_kind", "parameter_invalid"),
    ({"return_url": "javascript:alert(1)"}, "return_url", "parameter_invalid"),
    ({"metadata": {"portal_payment_id": 7}}, "metadata", "parameter_invalid"),
    ({"metadata": ["a"]}, "metadata", "parameter_invalid"),
    ({"save_method": True}, "save_method", "parameter_invalid"),
    ({"capture_method": "later"}, "capture_method", "parameter_invalid"),
    ({"customer": "cus_missing"}, "customer", "resource_missing"),
    ({"colour": "blue"}, "colour", "parameter_unknown"),
])
def test_bad_payment_input_is_a_400_naming_the_parameter(psp, change, param, code):
    body = {"amount": 1250, "currency": "USD", "method_kind": "card", "return_url": RETURN_URL} | change
    body = {k: v for k, v in body.items() if v is not None}
    answer = psp.api("POST", "/v1/payments", body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_400(psp, raw):
    answer = requests.post(psp.url + "/v1/payments", data=raw, timeout=10,
                           headers={"Authorization": f"Bearer {psp.settings.api_key}",
                                    "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"


def test_unknown_ids_and_routes_are_404s(psp):
    assert psp.api("GET", "/v1/payments/pay_missing").status_code == 404
    assert psp.api("GET", "/v1/refunds/re_missing").status_code == 404
    assert psp.api("GET", "/v1/nothing").json()["error"]["code"] == "not_found"
    assert requests.get(psp.url + "/pay/pay_missing", timeout=10).status_code == 404


# ---------------------------------------------------------------- webhooks

def _verify(record: dict, secret: str = WEBHOOK_SECRET) -> dict:
    header = record["headers"]["Sandbox-Signature"]
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + record["body"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(time.time() - int(parts["t"])) < 60
    return json.loads(record["body"])


def test_every_state_change_is_a_signed_webhook(psp):
    payment = psp.new_payment()
    psp.pay_by_card(payment, "4000000000000002")
    psp.pay_by_card(payment)
    refund = psp.ok("POST", "/v1/refunds", {"payment": payment["id"], "amount": 100})
    psp.settle()
    events = psp.receiver.wait_for(lambda events: len(events) >= 5)
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("payment.requires_action", payment["id"]), ("payment.requires_payment_method", payment["id"]),
        ("payment.succeeded", payment["id"]), ("refund.pending", refund["id"]), ("refund.succeeded", refund["id"])]
    assert events[2]["data"]["object"]["fee"] == 66
    assert len({e["id"] for e in events}) == 5
    for record in psp.receiver.received:
        assert record["headers"]["Content-Type"] == "application/json"
        _verify(record)


def test_a_webhook_is_retried_until_the_receiver_answers_2xx(psp):
    psp.receiver.answers = [500, 503, 404]
    customer = psp.ok("POST", "/v1/customers", {"email": "ada@example.test", "name": "Ada"})
    events = psp.receiver.wait_for(lambda events: len(events) == 1)
    assert events[0]["type"] == "customer.created" and events[0]["data"]["object"]["id"] == customer["id"]
    attempts = [(json.loads(r["body"])["id"], r["status"]) for r in psp.receiver.received]
    assert attempts == [(events[0]["id"], status) for status in (500, 503, 404, 200)]
    # Each attempt is signed afresh.
    for record in psp.receiver.received:
        _verify(record)
    delivery = psp.ok("GET", "/v1/webhook_deliveries")["data"][0]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("delivered", 4, 200)


def test_retries_back_off_and_stop_after_the_last_attempt(tmp_path):
    with running_sandbox(tmp_path, max_attempts=3, retry_base=0.1, retry_cap=0.15) as psp:
        psp.receiver.answers = [500] * 10
        psp.ok("POST", "/v1/customers", {"email": "ada@example.test"})
        deadline = time.monotonic() + 10
        while psp.ok("GET", "/v1/webhook_deliveries")["data"][0]["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        delivery = psp.ok("GET", "/v1/webhook_deliveries")["data"][0]
        assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("failed", 3, 500)
        time.sleep(0.3)
        assert len(psp.receiver.received) == 3


def test_an_unreachable_receiver_is_retried_too(tmp_path):
    with running_sandbox(tmp_path, webhook_url="http://127.0.0.1:9/hooks", max_attempts=2) as psp:
        psp.ok("POST", "/v1/customers", {"email": "ada@example.test"})
        deadline = time.monotonic() + 10
        while psp.ok("GET", "/v1/webhook_deliveries")["data"][0]["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        delivery = psp.ok("GET", "/v1/webhook_deliveries")["data"][0]
        assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("failed", 2, None)
        assert delivery["last_error"]


def test_chaos_sends_some_events_twice_and_some_out_of_order(tmp_path):
    with running_sandbox(tmp_path, chaos=True, chaos_seed=7, chaos_duplicate_rate=0.3, chaos_delay_rate=0.3,
                         chaos_delay_seconds=1.0) as psp:
        created = [psp.ok("POST", "/v1/customers", {"email": f"c{i}@example.test"})["id"] for i in range(12)]
        psp.receiver.wait_for(lambda events: {e["data"]["object"]["id"] for e in events} == set(created))
        time.sleep(1.2)  # the late copies
        events = psp.receiver.events()
    arrived = [e["data"]["object"]["id"] for e in events]
    first_arrivals = list(dict.fromkeys(arrived))
    assert sorted(first_arrivals) == sorted(created)
    assert len(arrived) > len(created), "no event came twice"
    assert first_arrivals != created, "every event came in order"
    # A duplicate is the same event (same id), to be applied once.
    by_id: dict[str, set] = {}
    for event in events:
        by_id.setdefault(event["id"], set()).add(event["data"]["object"]["id"])
    assert all(len(objects) == 1 for objects in by_id.values())


def test_without_chaos_events_come_once_and_in_order(psp):
    created = [psp.ok("POST", "/v1/customers", {"email": f"c{i}@example.test"})["id"] for i in range(8)]
    psp.receiver.wait_for(lambda events: len(events) >= 8)
    time.sleep(0.1)
    assert [e["data"]["object"]["id"] for e in psp.receiver.events()] == created


# ---------------------------------------------------------------- the process

def test_the_service_runs_as_its_own_process(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SANDBOX_PSP_API_KEY": "sk_proc", "SANDBOX_PSP_WEBHOOK_SECRET": "whsec_proc"}
    proc = subprocess.Popen([sys.executable, "-m", "portal.sandbox.psp", "--port", str(port),
                             "--db", str(tmp_path / "psp.sqlite3"), "--no-chaos"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "the service did not start"
                time.sleep(0.1)
        answer = requests.post(url + "/v1/customers", json={"email": "a@b.test"}, timeout=5,
                               headers={"Authorization": "Bearer sk_proc"})
        assert answer.status_code == 200 and answer.json()["id"].startswith("cus_")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_make_run_starts_the_sandbox_with_the_portals_key_and_webhook_address(tmp_path, monkeypatch):
    import socket
    from types import SimpleNamespace

    from portal.cli import _start_sandbox_psp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("SANDBOX_PSP_URL", raising=False)
    monkeypatch.setenv("SANDBOX_PSP_PORT", str(port))
    app = SimpleNamespace(instance_path=str(tmp_path), config={
        "SANDBOX_PSP_API_KEY": "sk_dev", "SANDBOX_PSP_WEBHOOK_SECRET": "whsec_dev", "SANDBOX_PSP_URL": ""})
    portal = WebhookReceiver()  # stands for the portal: the sandbox sends its webhooks there
    portal_port = int(urlsplit(portal.url).port)
    proc, url = _start_sandbox_psp(app, "127.0.0.1", portal_port)
    try:
        assert url == app.config["SANDBOX_PSP_URL"] == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "the sandbox did not start"
                time.sleep(0.1)
        assert requests.post(url + "/v1/customers", json={"email": "a@b.test"}, timeout=5,
                             headers={"Authorization": "Bearer sk_dev"}).status_code == 200
        assert (tmp_path / "sandbox-psp.sqlite3").exists()
        [event] = portal.wait_for(lambda events: len(events) == 1)
        assert event["type"] == "customer.created"
        assert portal.paths == ["/wallet/payments/webhooks/sandbox"]
        _verify(portal.received[0], "whsec_dev")  # signed with the portal's secret
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        portal.stop()
    monkeypatch.setenv("SANDBOX_PSP_URL", "http://psp.example.test")
    assert _start_sandbox_psp(app, "127.0.0.1", 5000) == (None, "http://psp.example.test")
