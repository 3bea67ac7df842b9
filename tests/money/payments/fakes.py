"""An in-memory payment provider implementing the port (``providers.base.Provider``), for the
payment services' tests: never the network.

Tell it what to do next:

- ``fake.mode = "action"`` (default): a new payment answers ``requires_action`` with a hosted
  page; ``"succeed"``: it succeeds at once; ``"processing"``: it waits as ``processing`` (mobile
  money, settled later by ``settle``); ``"decline"``: ``ProviderDeclined``; ``"down"``:
  ``ProviderUnavailable`` (the provider "hangs").
- ``fake.down = True``: every call raises ``ProviderUnavailable``.
- ``fake.complete(ref, state, ...)``: the payer finished on the hosted page (or the provider
  settled): the payment's state changes at the provider, nothing is told to the portal.
- ``fake.refund_mode``: ``"pending"`` (default), ``"succeed"``, ``"decline"``, ``"down"``;
  ``fake.settle_refund(ref, state)`` settles one later.
- ``fake.event(...)`` builds a ``ProviderEvent`` as a verified webhook would give it;
  ``fake.sign(event)`` / ``parse_webhook`` make and check a body with an HMAC signature.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

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

SECRET = b"whsec_fake_test_secret"


@dataclass
class _Stored:
    payment: ProviderPayment
    idempotency_key: str
    customer_ref: str | None = None
    refunds: list[str] = field(default_factory=list)


class FakeProvider:
    """The provider port, in memory. Thread-safe (race tests share one instance)."""

    def __init__(self, name: str = "sandbox", *, fee_percent: Decimal = Decimal("2.9"), fee_fixed: Decimal = Decimal("0.30")):
        self.name = name
        self.mode = "action"
        self.refund_mode = "pending"
        self.down = False
        self.fee_percent, self.fee_fixed = fee_percent, fee_fixed
        self.payments: dict[str, _Stored] = {}
        self.by_key: dict[str, str] = {}
        self.refunds: dict[str, ProviderRefund] = {}
        self.refunds_by_key: dict[str, str] = {}
        self.methods: dict[str, ProviderMethod] = {}
        self.customers: dict[str, list[str]] = {}
        self.detached: list[str] = []
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- helpers for tests ------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        # Unique across runs: race tests commit payments that stay in the database.
        return f"{prefix}_{next(self._ids):04d}{uuid.uuid4().hex[:12]}"

    def _check_up(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise ProviderUnavailable("The payment provider did not answer (timeout).")

    def fee_for(self, amount: Decimal) -> Decimal:
        return (amount * self.fee_percent / 100 + self.fee_fixed).quantize(Decimal("0.01"))

    def complete(self, ref: str, state: PaymentState = PaymentState.SUCCEEDED, *, failure_code: str | None = None,
                 failure_message: str | None = None, method: ProviderMethod | None = None,
                 method_saved: bool | None = None) -> ProviderPayment:
        """The payment changes state at the provider (the payer paid, or it settled)."""
        with self._lock:
            stored = self.payments[ref]
            current = stored.payment
            method = method or current.method or ProviderMethod(self._id("pm"), MethodKind(current.raw.get("kind", "card")),
                                                                "visa", "4242", 12, 2030)
            saved = current.raw.get("save_method", False) if method_saved is None else method_saved
            if saved and stored.customer_ref:
                self.methods[method.ref] = method
                self.customers.setdefault(stored.customer_ref, []).append(method.ref)
            updated = replace(current, state=state, failure_code=failure_code, failure_message=failure_message,
                              next_action_url=None if state != PaymentState.REQUIRES_ACTION else current.next_action_url,
                              fee=self.fee_for(current.amount) if state == PaymentState.SUCCEEDED else None,
                              method=method, method_saved=bool(saved) and state == PaymentState.SUCCEEDED)
            stored.payment = updated
            return updated

    def settle_refund(self, ref: str, state: RefundState = RefundState.SUCCEEDED, reason: str | None = None) -> ProviderRefund:
        with self._lock:
            refund = replace(self.refunds[ref], state=state, failure_reason=reason)
            self.refunds[ref] = refund
            if state == RefundState.SUCCEEDED:
                stored = self.payments[refund.payment_ref]
                stored.payment = replace(stored.payment, amount_refunded=stored.payment.amount_refunded + refund.amount)
            return refund

    def event(self, *, payment: ProviderPayment | None = None, refund: ProviderRefund | None = None,
              event_id: str | None = None) -> ProviderEvent:
        kind = EventType.PAYMENT_UPDATED if payment is not None else EventType.REFUND_UPDATED
        return ProviderEvent(id=event_id or self._id("evt"), type=kind, created=datetime.now(UTC), payment=payment,
                             refund=refund)

    # -- webhooks: a small signed format of its own ------------------------------------------------

    def sign(self, event: ProviderEvent, *, timestamp: int | None = None, secret: bytes = SECRET) -> tuple[bytes, dict]:
        body = json.dumps(self._event_json(event)).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return body, {"Fake-Signature": f"t={ts},v1={signature}"}

    @staticmethod
    def _event_json(event: ProviderEvent) -> dict:
        out = {"id": event.id, "type": event.type.value, "created": event.created.isoformat()}
        if event.payment is not None:
            p = event.payment
            out["payment"] = {"ref": p.ref, "state": p.state.value, "amount": str(p.amount), "currency": p.currency,
                              "fee": str(p.fee) if p.fee is not None else None, "metadata": dict(p.metadata),
                              "failure_code": p.failure_code, "failure_message": p.failure_message}
        if event.refund is not None:
            r = event.refund
            out["refund"] = {"ref": r.ref, "payment_ref": r.payment_ref, "state": r.state.value,
                             "amount": str(r.amount), "currency": r.currency, "failure_reason": r.failure_reason}
        return out

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        header = {k.lower(): v for k, v in headers.items()}.get("fake-signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        if "t" not in parts or "v1" not in parts:
            raise WebhookRejected("Missing signature.")
        expected = hmac.new(SECRET, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["v1"]):
            raise WebhookRejected("Bad signature.")
        try:
            if abs(time.time() - int(parts["t"])) > 300:
                raise WebhookRejected("Stale webhook.")
            data = json.loads(body)
            created = datetime.fromisoformat(data["created"])
            payment = refund = None
            if "payment" in data:
                p = data["payment"]
                payment = ProviderPayment(ref=p["ref"], state=PaymentState(p["state"]), amount=Decimal(p["amount"]),
                                          currency=p["currency"], fee=Decimal(p["fee"]) if p.get("fee") else None,
                                          metadata=p.get("metadata") or {}, failure_code=p.get("failure_code"),
                                          failure_message=p.get("failure_message"))
            if "refund" in data:
                r = data["refund"]
                refund = ProviderRefund(ref=r["ref"], payment_ref=r["payment_ref"], state=RefundState(r["state"]),
                                        amount=Decimal(r["amount"]), currency=r["currency"],
                                        failure_reason=r.get("failure_reason"))
            return ProviderEvent(id=data["id"], type=EventType(data["type"]), created=created, payment=payment,
                                 refund=refund, raw=data)
        except WebhookRejected:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("Malformed webhook.") from exc

    # -- the port ---------------------------------------------------------------------------------

    def create_payment(self, *, amount: Decimal, currency: str, method_kind: MethodKind, idempotency_key: str,
                       return_url: str, description: str, customer_ref: str | None = None,
                       saved_method_ref: str | None = None, save_method: bool = False,
                       metadata: Mapping[str, str] | None = None) -> ProviderPayment:
        with self._lock:
            self._check_up("create_payment")
            if idempotency_key in self.by_key:
                return self.payments[self.by_key[idempotency_key]].payment
            if self.mode == "down":
                raise ProviderUnavailable("The payment provider did not answer (timeout).")
            if self.mode == "decline":
                raise ProviderDeclined("Your card was declined: insufficient funds.", code="insufficient_funds")
            ref = self._id("pay")
            method = self.methods.get(saved_method_ref) if saved_method_ref else None
            state = {"action": PaymentState.REQUIRES_ACTION, "succeed": PaymentState.SUCCEEDED,
                     "processing": PaymentState.PROCESSING}[self.mode]
            payment = ProviderPayment(
                ref=ref, state=state, amount=amount, currency=currency,
                fee=self.fee_for(amount) if state == PaymentState.SUCCEEDED else None,
                next_action_url=f"https://psp.invalid/pay/{ref}" if state == PaymentState.REQUIRES_ACTION else None,
                method=method, metadata=dict(metadata or {}),
                raw={"kind": MethodKind(method_kind).value, "save_method": save_method, "return_url": return_url})
            self.payments[ref] = _Stored(payment, idempotency_key, customer_ref)
            self.by_key[idempotency_key] = ref
            return payment

    def ensure_customer(self, *, customer_ref: str | None, email: str, name: str) -> str:
        with self._lock:
            self._check_up("ensure_customer")
            if customer_ref:
                return customer_ref
            ref = self._id("cus")
            self.customers[ref] = []
            return ref

    def fetch(self, payment_ref: str) -> ProviderPayment:
        with self._lock:
            self._check_up("fetch")
            if payment_ref not in self.payments:
                raise ProviderDeclined("No such payment.", code="resource_missing")
            return self.payments[payment_ref].payment

    def capture(self, payment_ref: str, amount: Decimal | None = None) -> ProviderPayment:
        return self.complete(payment_ref, PaymentState.SUCCEEDED)

    def cancel(self, payment_ref: str) -> ProviderPayment:
        return self.complete(payment_ref, PaymentState.CANCELED)

    def refund(self, payment_ref: str, amount: Decimal, *, idempotency_key: str, reason: str) -> ProviderRefund:
        with self._lock:
            self._check_up("refund")
            if idempotency_key in self.refunds_by_key:
                return self.refunds[self.refunds_by_key[idempotency_key]]
            if self.refund_mode == "down":
                raise ProviderUnavailable("The payment provider did not answer (timeout).")
            if self.refund_mode == "decline":
                raise ProviderDeclined("This payment cannot be refunded.", code="charge_disputed")
            stored = self.payments[payment_ref]
            ref = self._id("re")
            refund = ProviderRefund(ref=ref, payment_ref=payment_ref, state=RefundState.PENDING, amount=amount,
                                    currency=stored.payment.currency)
            self.refunds[ref] = refund
            self.refunds_by_key[idempotency_key] = ref
            stored.refunds.append(ref)
            if self.refund_mode == "succeed":
                return self.settle_refund(ref, RefundState.SUCCEEDED)
            return refund

    def fetch_refund(self, refund_ref: str) -> ProviderRefund:
        with self._lock:
            self._check_up("fetch_refund")
            if refund_ref not in self.refunds:
                raise ProviderDeclined("No such refund.", code="resource_missing")
            return self.refunds[refund_ref]

    def list_methods(self, customer_ref: str) -> list[ProviderMethod]:
        with self._lock:
            self._check_up("list_methods")
            return [self.methods[ref] for ref in self.customers.get(customer_ref, []) if ref not in self.detached]

    def detach_method(self, method_ref: str) -> None:
        with self._lock:
            self._check_up("detach_method")
            self.detached.append(method_ref)
