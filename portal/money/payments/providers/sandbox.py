"""The adapter for this repository's sandbox payment provider (``portal/sandbox/psp``), over
its HTTP API with ``requests``.

The service speaks integers in minor units; this adapter converts to and from ``Decimal`` major
units with the ISO 4217 scales of the currencies the sandbox takes (``SCALES``: the portal's own
currency table holds only the currencies of its wallets). Errors: no answer, a timeout, a 5xx or
a refused API key -> ``ProviderUnavailable``; a 402 or any other refusal (400, 404, 409) ->
``ProviderDeclined`` with the service's message and code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import requests

from portal.money.payments.providers.base import (
    EventType,
    MethodKind,
    PaymentState,
    ProviderDeclined,
    ProviderEvent,
    ProviderMethod,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
    RefundState,
    WebhookRejected,
)

#: ISO 4217 minor units of the currencies the sandbox takes.
SCALES = {"USD": 2, "EUR": 2, "GBP": 2, "KES": 2, "NGN": 2, "ZAR": 2, "GHS": 2, "UGX": 0, "JPY": 0}
SIGNATURE_HEADER = "Sandbox-Signature"

#: The sandbox's payment states as the port's; a payment held for capture is paid and not yet
#: settled, as ``PROCESSING`` says.
_STATES = {"requires_payment_method": PaymentState.REQUIRES_PAYMENT_METHOD,
           "requires_action": PaymentState.REQUIRES_ACTION, "processing": PaymentState.PROCESSING,
           "requires_capture": PaymentState.PROCESSING, "succeeded": PaymentState.SUCCEEDED,
           "canceled": PaymentState.CANCELED, "failed": PaymentState.FAILED}


def _scale(currency: str) -> int:
    try:
        return SCALES[currency.upper()]
    except KeyError:
        raise ProviderDeclined(f"The sandbox payment provider does not take {currency}.",
                               "currency_unsupported") from None


def to_minor(amount: Decimal, currency: str) -> int:
    minor = Decimal(amount).scaleb(_scale(currency))
    if minor != minor.to_integral_value():
        raise ProviderDeclined(f"{currency} amounts have at most {_scale(currency)} decimal places.", "amount_invalid")
    return int(minor)


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(int(minor)).scaleb(-_scale(currency))


class SandboxProvider:
    name = "sandbox"

    def __init__(self, base_url: str, api_key: str, webhook_secret: str, *, timeout: float = 10,
                 tolerance: int = 300):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.timeout = timeout
        self.tolerance = tolerance

    @classmethod
    def from_config(cls, config: Mapping) -> SandboxProvider:
        url = config.get("SANDBOX_PSP_URL") or ""
        if not url or not config.get("SANDBOX_PSP_API_KEY") or not config.get("SANDBOX_PSP_WEBHOOK_SECRET"):
            raise ProviderUnavailable("The sandbox payment provider is not configured (SANDBOX_PSP_URL, "
                                      "SANDBOX_PSP_API_KEY and SANDBOX_PSP_WEBHOOK_SECRET; `make run` starts it).")
        return cls(url, config["SANDBOX_PSP_API_KEY"], config["SANDBOX_PSP_WEBHOOK_SECRET"],
                   timeout=config.get("PAYMENT_PROVIDER_TIMEOUT_SECONDS", 10),
                   tolerance=config.get("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", 300))

    # ------------------------------------------------------------ HTTP

    def _call(self, method: str, path: str, body: dict | None = None, idempotency_key: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            answer = requests.request(method, self.base_url + path, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise ProviderUnavailable("The sandbox payment provider did not answer in time.") from None
        except requests.RequestException:
            raise ProviderUnavailable("The sandbox payment provider cannot be reached.") from None
        if answer.status_code >= 500:
            raise ProviderUnavailable(f"The sandbox payment provider failed (HTTP {answer.status_code}).")
        try:
            data = answer.json()
        except ValueError:
            raise ProviderUnavailable("The sandbox payment provider answered something that is not JSON.") from None
        if answer.status_code in (401, 403):
            raise ProviderUnavailable("The sandbox payment provider refused the portal's API key.")
        if answer.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else {}
            declined = ProviderDeclined(error.get("message") or "The payment provider refused the request.",
                                        error.get("code"))
            if isinstance(error.get("payment"), dict):
                #: A declined off-session charge: the failed payment, for the portal's records.
                declined.payment = payment_from(error["payment"])
            raise declined
        return data

    # ------------------------------------------------------------ the port

    def create_payment(self, *, amount: Decimal, currency: str, method_kind: MethodKind, idempotency_key: str,
                       return_url: str, description: str, customer_ref: str | None = None,
                       saved_method_ref: str | None = None, save_method: bool = False,
                       metadata: Mapping[str, str] | None = None) -> ProviderPayment:
        body = {"amount": to_minor(amount, currency), "currency": currency.upper(),
                "method_kind": MethodKind(method_kind).value, "return_url": return_url,
                "description": description, "metadata": {k: str(v) for k, v in (metadata or {}).items()}}
        if customer_ref:
            body["customer"] = customer_ref
        if saved_method_ref:
            body["payment_method"] = saved_method_ref
        if save_method:
            body["save_method"] = True
        return payment_from(self._call("POST", "/v1/payments", body, idempotency_key))

    def ensure_customer(self, *, customer_ref: str | None, email: str, name: str) -> str:
        if customer_ref:
            return customer_ref
        # No idempotency key: a retry after a timeout may leave a spare, empty customer behind,
        # which is harmless; a key derived from the e-mail would hand an old customer (and its
        # saved cards) to whoever holds that address after a reset of the portal's database.
        return self._call("POST", "/v1/customers", {"email": email, "name": name})["id"]

    def fetch(self, payment_ref: str) -> ProviderPayment:
        return payment_from(self._call("GET", f"/v1/payments/{_ref(payment_ref)}"))

    def capture(self, payment_ref: str, amount: Decimal | None = None) -> ProviderPayment:
        body = {}
        if amount is not None:
            body["amount"] = to_minor(amount, self.fetch(payment_ref).currency)
        return payment_from(self._call("POST", f"/v1/payments/{_ref(payment_ref)}/capture", body))

    def cancel(self, payment_ref: str) -> ProviderPayment:
        return payment_from(self._call("POST", f"/v1/payments/{_ref(payment_ref)}/cancel", {}))

    def refund(self, payment_ref: str, amount: Decimal, *, idempotency_key: str, reason: str) -> ProviderRefund:
        currency = self.fetch(payment_ref).currency
        body = {"payment": payment_ref, "amount": to_minor(amount, currency), "reason": reason}
        return refund_from(self._call("POST", "/v1/refunds", body, idempotency_key))

    def fetch_refund(self, refund_ref: str) -> ProviderRefund:
        return refund_from(self._call("GET", f"/v1/refunds/{_ref(refund_ref)}"))

    def list_methods(self, customer_ref: str) -> list[ProviderMethod]:
        data = self._call("GET", f"/v1/customers/{_ref(customer_ref)}/payment_methods")
        return [method_from(m) for m in data["data"]]

    def detach_method(self, method_ref: str) -> None:
        self._call("POST", f"/v1/payment_methods/{_ref(method_ref)}/detach", {})

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        verify_signature(body, headers, self.webhook_secret, self.tolerance)
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            kind = event["type"].split(".")[0]
            payment = payment_from(obj) if kind == "payment" and obj.get("object") == "payment" else None
            refund = refund_from(obj) if kind == "refund" and obj.get("object") == "refund" else None
            type_ = (EventType.PAYMENT_UPDATED if payment else EventType.REFUND_UPDATED if refund
                     else EventType.OTHER)
            return ProviderEvent(id=str(event["id"]), type=type_,
                                 created=datetime.fromtimestamp(int(event["created"]), UTC),
                                 payment=payment, refund=refund, raw=event)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, ProviderDeclined) as error:
            raise WebhookRejected("The webhook's body is not an event of the sandbox provider.") from error


def _ref(ref: str) -> str:
    """A provider id fit for a URL path (the service's ids are letters, digits and ``_``)."""
    if not ref or not all(c.isalnum() or c == "_" for c in ref):
        raise ProviderDeclined("That is not an id of the sandbox payment provider.", "resource_missing")
    return ref


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str, tolerance: int,
                     now: float | None = None) -> None:
    """Check ``Sandbox-Signature`` (``t=<unix>,v1=<hex>``) against the body, in constant time,
    and its age against ``tolerance`` seconds; raise ``WebhookRejected`` otherwise."""
    header = next((value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER.lower()), None)
    if not header:
        raise WebhookRejected("The webhook carries no signature.")
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("The webhook's signature header is malformed.")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookRejected("The webhook's signature is too old (or from the future).")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + bytes(body), hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in signatures):
        raise WebhookRejected("The webhook's signature does not match.")


def method_from(data: Mapping | None) -> ProviderMethod | None:
    if not data:
        return None
    return ProviderMethod(ref=data["id"], kind=MethodKind(data["kind"]), brand=data.get("brand") or "",
                          last4=data.get("last4") or "", exp_month=data.get("exp_month"),
                          exp_year=data.get("exp_year"))


def payment_from(data: Mapping) -> ProviderPayment:
    currency = data["currency"]
    fee = data.get("fee")
    return ProviderPayment(
        ref=data["id"], state=_STATES[data["state"]], amount=to_major(data["amount"], currency), currency=currency,
        fee=to_major(fee, currency) if fee is not None else None,
        amount_refunded=to_major(data.get("amount_refunded") or 0, currency),
        next_action_url=data.get("next_action_url"), failure_code=data.get("failure_code"),
        failure_message=data.get("failure_message"), method=method_from(data.get("payment_method")),
        method_saved=bool(data.get("method_saved")), metadata=dict(data.get("metadata") or {}), raw=data)


def refund_from(data: Mapping) -> ProviderRefund:
    currency = data["currency"]
    return ProviderRefund(ref=data["id"], payment_ref=data["payment"], state=RefundState(data["state"]),
                          amount=to_major(data["amount"], currency), currency=currency,
                          failure_reason=data.get("failure_reason"), raw=data)
