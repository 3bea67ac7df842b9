"""The Stripe adapter: the provider port over Stripe's API, through the official ``stripe`` SDK.

Which Stripe objects stand for what:

- A payment with no saved method is a **Checkout Session** (``cs_...``, mode ``payment``): the
  payer pays on Stripe's hosted page (``next_action_url`` is the session's ``url``) and comes back
  to ``return_url?payment_ref=cs_...``. Stripe makes the session's **PaymentIntent** when the
  payer confirms; ``fetch`` reads the session with its PaymentIntent, charge and balance
  transaction expanded. The payment's ref stays the session's id.
- A payment with a saved method is a **PaymentIntent** (``pi_...``) confirmed at once,
  off-session, with the customer's saved **PaymentMethod** (``pm_...``).
- Refunds are **Refunds** (``re_...``) of the payment's PaymentIntent; payers are **Customers**
  (``cus_...``).

Webhooks: ``checkout.session.*`` events carry a snapshot whose ref is the session's id,
``payment_intent.*`` events one whose ref is the PaymentIntent's id (a hosted payment has both).
Both carry the portal's metadata (``portal_payment_id``: it is set on the session and on its
PaymentIntent), which is how the portal finds its payment; an event's object has its charge
unexpanded, so an event snapshot has no fee nor card details: ``fetch`` has them.

Amounts: Stripe counts in minor units with its own exponents (JPY and the other zero-decimal
currencies 0, KWD and the other three-decimal currencies 3 with the last digit 0, the rest 2);
``to_minor`` and ``from_minor`` convert, refusing an amount Stripe cannot take rather than
rounding it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlsplit

import stripe

from portal.money.payments.providers.base import (
    EventType,
    MethodKind,
    PaymentState,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderMethod,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
    RefundState,
    WebhookRejected,
)

#: Stripe's zero-decimal currencies: amounts are sent in whole units.
ZERO_DECIMAL = frozenset(["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                          "VUV", "XAF", "XOF", "XPF"])
#: Stripe's three-decimal currencies: amounts in thousandths, the last digit always 0.
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
#: Counted in whole units but sent in hundredths (Stripe keeps the old two-decimal form), so
#: the amount must be a multiple of 100.
WHOLE_IN_HUNDREDTHS = frozenset(["ISK"])

#: What a PaymentIntent carries to the charge's fee and card details in one request.
_PI_EXPAND = ["latest_charge.balance_transaction", "payment_method"]
_SESSION_EXPAND = ["payment_intent.latest_charge.balance_transaction", "payment_intent.payment_method"]

#: Stripe's refund reasons; any other reason the portal gives travels in the refund's metadata.
_REFUND_REASONS = {
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
    "fraud": "fraudulent",
    "requested_by_customer": "requested_by_customer",
    "customer_request": "requested_by_customer",
    "requested": "requested_by_customer",
}

_REFUND_STATES = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.CANCELED,
}

#: Invalid-request codes that are Stripe refusing an amount or a state the payer can understand;
#: their message is Stripe's own. Other invalid requests are the portal's mistakes.
_REFUSALS = frozenset({"amount_too_large", "amount_too_small", "charge_already_refunded",
                       "charge_disputed", "charge_exceeds_source_limit", "currency_not_supported"})

_SESSION_EVENTS = {
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed", "checkout.session.expired",
}
_REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}


def exponent(currency: str) -> int:
    """Decimal places of ``currency`` in Stripe's amounts."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` (major units) as Stripe's integer amount; ``ProviderDeclined`` when Stripe
    cannot take it exactly (more places than the currency has, a three-decimal amount not in
    tens, ISK not in whole krónur)."""
    places = exponent(currency)
    minor = Decimal(amount).scaleb(places)
    if minor != minor.to_integral_value():
        raise ProviderDeclined(f"{currency.upper()} amounts have at most {places} decimal places at Stripe.",
                               code="amount_precision")
    value = int(minor)
    if places == 3 and value % 10:
        raise ProviderDeclined(f"{currency.upper()} amounts at Stripe must be a multiple of 0.010.",
                               code="amount_precision")
    if currency.upper() in WHOLE_IN_HUNDREDTHS and value % 100:
        raise ProviderDeclined(f"{currency.upper()} amounts at Stripe are whole units.", code="amount_precision")
    return value


def from_minor(value: int, currency: str) -> Decimal:
    """Stripe's integer amount as a ``Decimal`` of major units at the currency's exponent."""
    places = exponent(currency)
    return Decimal(int(value)).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def _with_query(url: str, param: str) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{param}"


def _expanded(value) -> dict | None:
    """An expanded object, or None when Stripe left only its id (or nothing)."""
    return value if isinstance(value, dict) else None


def _id(value) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


class StripeProvider:
    """The ``stripe`` adapter (see the module's docstring)."""

    name = "stripe"

    def __init__(self, *, secret_key: str, webhook_secret: str = "", api_base: str = "",
                 timeout_seconds: float = 10, tolerance_seconds: int = 300, max_network_retries: int = 0):
        if not secret_key:
            raise ProviderUnavailable("Stripe is not configured: set STRIPE_SECRET_KEY to the account's secret key.")
        self.webhook_secret = webhook_secret
        self.tolerance_seconds = int(tolerance_seconds)
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    @classmethod
    def from_config(cls, config: Mapping) -> StripeProvider:
        return cls(secret_key=config.get("STRIPE_SECRET_KEY", ""),
                   webhook_secret=config.get("STRIPE_WEBHOOK_SECRET", ""),
                   api_base=config.get("STRIPE_API_BASE", ""),
                   timeout_seconds=config.get("PAYMENT_PROVIDER_TIMEOUT_SECONDS", 10),
                   tolerance_seconds=config.get("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", 300))

    # -- payments --------------------------------------------------------------------------

    def create_payment(self, *, amount: Decimal, currency: str, method_kind: MethodKind, idempotency_key: str,
                       return_url: str, description: str, customer_ref: str | None = None,
                       saved_method_ref: str | None = None, save_method: bool = False,
                       metadata: Mapping[str, str] | None = None) -> ProviderPayment:
        if MethodKind(method_kind) is not MethodKind.CARD:
            raise ProviderDeclined("Stripe takes card payments only here.", code="method_not_supported")
        minor = to_minor(amount, currency)
        code = currency.lower()
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        description = description or "Payment"
        options = {"idempotency_key": idempotency_key}
        if saved_method_ref:
            params = {"amount": minor, "currency": code, "payment_method": saved_method_ref,
                      "payment_method_types": ["card"], "confirm": True, "off_session": True,
                      "description": description, "metadata": meta, "expand": _PI_EXPAND}
            if customer_ref:
                params["customer"] = customer_ref
            with _translated(creating_payment=True):
                intent = self.client.v1.payment_intents.create(params, options)
            return self._from_intent(intent.to_dict())

        intent_data: dict = {"metadata": meta, "description": description}
        if save_method:
            intent_data["setup_future_usage"] = "off_session"
        back = _with_query(return_url, "payment_ref={CHECKOUT_SESSION_ID}")
        params = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": code, "unit_amount": minor, "product_data": {"name": description[:250]}}}],
            "payment_method_types": ["card"],
            "success_url": back,
            "cancel_url": back,
            "metadata": meta,
            "payment_intent_data": intent_data,
        }
        if meta.get("portal_payment_id"):
            params["client_reference_id"] = meta["portal_payment_id"]
        if customer_ref:
            params["customer"] = customer_ref
        elif save_method:
            params["customer_creation"] = "always"  # a saved method needs a customer to belong to
        with _translated(creating_payment=True):
            session = self.client.v1.checkout.sessions.create(params, options)
        return self._from_session(session.to_dict())

    def fetch(self, payment_ref: str) -> ProviderPayment:
        if payment_ref.startswith("cs_"):
            return self._from_session(self._session(payment_ref))
        with _translated():
            intent = self.client.v1.payment_intents.retrieve(self._intent_id(payment_ref),
                                                             {"expand": _PI_EXPAND})
        return self._from_intent(intent.to_dict())

    def capture(self, payment_ref: str, amount: Decimal | None = None) -> ProviderPayment:
        intent = self._intent(payment_ref)
        params: dict = {"expand": _PI_EXPAND}
        if amount is not None:
            params["amount_to_capture"] = to_minor(amount, intent["currency"])
        with _translated():
            self.client.v1.payment_intents.capture(intent["id"], params)
        return self.fetch(payment_ref)

    def cancel(self, payment_ref: str) -> ProviderPayment:
        if payment_ref.startswith("cs_"):
            session = self._session(payment_ref)
            with _translated():
                if session["status"] == "open":
                    self.client.v1.checkout.sessions.expire(payment_ref)
                elif _id(session.get("payment_intent")):
                    self.client.v1.payment_intents.cancel(_id(session["payment_intent"]))
                else:
                    raise ProviderError(f"This Stripe checkout is {session['status']} and cannot be canceled.")
            return self.fetch(payment_ref)
        with _translated():
            intent = self.client.v1.payment_intents.cancel(self._intent_id(payment_ref), {"expand": _PI_EXPAND})
        return self._from_intent(intent.to_dict())

    # -- refunds ---------------------------------------------------------------------------

    def refund(self, payment_ref: str, amount: Decimal, *, idempotency_key: str, reason: str) -> ProviderRefund:
        intent = self._intent(payment_ref)
        params: dict = {"payment_intent": intent["id"], "amount": to_minor(amount, intent["currency"]),
                        "metadata": {"reason": (reason or "")[:500]}}
        stripe_reason = _REFUND_REASONS.get((reason or "").strip().lower().replace(" ", "_"))
        if stripe_reason:
            params["reason"] = stripe_reason
        with _translated():
            refund = self.client.v1.refunds.create(params, {"idempotency_key": idempotency_key})
        return _refund(refund.to_dict(), payment_ref=payment_ref)

    def fetch_refund(self, refund_ref: str) -> ProviderRefund:
        with _translated():
            refund = self.client.v1.refunds.retrieve(refund_ref)
        return _refund(refund.to_dict())

    # -- customers and saved methods -------------------------------------------------------

    def ensure_customer(self, *, customer_ref: str | None, email: str, name: str) -> str:
        if customer_ref:
            return customer_ref
        # A retry after a timeout within Stripe's idempotency window gets the same customer.
        key = "customer-" + hashlib.sha256(f"{email}\0{name}".encode()).hexdigest()[:40]
        with _translated():
            customer = self.client.v1.customers.create({"email": email, "name": name}, {"idempotency_key": key})
        return customer.id

    def list_methods(self, customer_ref: str) -> list[ProviderMethod]:
        methods: list[ProviderMethod] = []
        params: dict = {"customer": customer_ref, "type": "card", "limit": 100}
        while True:
            with _translated():
                page = self.client.v1.payment_methods.list(params).to_dict()
            for item in page.get("data", []):
                methods.append(_method(item["id"], item.get("card") or {}))
            if not page.get("has_more") or not page.get("data"):
                return methods
            params = {**params, "starting_after": page["data"][-1]["id"]}

    def detach_method(self, method_ref: str) -> None:
        try:
            with _translated():
                self.client.v1.payment_methods.detach(method_ref)
        except _Missing:
            return  # already gone at Stripe: forgetting it is done

    # -- webhooks --------------------------------------------------------------------------

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        if not self.webhook_secret:
            raise WebhookRejected("Stripe webhooks cannot be checked: STRIPE_WEBHOOK_SECRET is not set.")
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        if not signature:
            raise WebhookRejected("The webhook has no Stripe-Signature header.")
        try:
            event = self.client.construct_event(body, signature, self.webhook_secret, self.tolerance_seconds)
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"The webhook's signature does not check: {exc.user_message}") from None
        except (ValueError, TypeError, AttributeError, KeyError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("The webhook's body is not a Stripe event.") from None
        # Stripe's helper refuses old timestamps only; one from the future is as suspect.
        stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
        if self.tolerance_seconds and int(stamps[0]) > time.time() + self.tolerance_seconds:
            raise WebhookRejected("The webhook's timestamp is in the future.")
        data = event.to_dict()
        obj = (data.get("data") or {}).get("object")
        if not data.get("id") or not data.get("type") or not isinstance(obj, dict):
            raise WebhookRejected("The webhook's body is not a Stripe event.")
        try:
            return self._event(data, obj)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise WebhookRejected(f"The {data['type']} event's object is not shaped as Stripe's.") from None

    def _event(self, data: dict, obj: dict) -> ProviderEvent:
        kind = data["type"]
        created = datetime.fromtimestamp(int(data.get("created") or 0), UTC)
        common = {"id": data["id"], "created": created, "raw": data}
        if kind in _SESSION_EVENTS and obj.get("object") == "checkout.session":
            failed = kind == "checkout.session.async_payment_failed"
            return ProviderEvent(type=EventType.PAYMENT_UPDATED, payment=self._from_session(obj, failed=failed),
                                 **common)
        if kind.startswith("payment_intent.") and obj.get("object") == "payment_intent":
            return ProviderEvent(type=EventType.PAYMENT_UPDATED, payment=self._from_intent(obj), **common)
        if kind in _REFUND_EVENTS and obj.get("object") == "refund":
            return ProviderEvent(type=EventType.REFUND_UPDATED, refund=_refund(obj), **common)
        return ProviderEvent(type=EventType.OTHER, **common)

    # -- reading Stripe's objects ----------------------------------------------------------

    def _session(self, ref: str) -> dict:
        with _translated():
            return self.client.v1.checkout.sessions.retrieve(ref, {"expand": _SESSION_EXPAND}).to_dict()

    @staticmethod
    def _intent_id(ref: str) -> str:
        if not ref.startswith("pi_"):
            raise ProviderError(f"{ref!r} is not a Stripe payment reference.")
        return ref

    def _intent(self, ref: str) -> dict:
        """The PaymentIntent behind a payment ref (a session's, or the ref itself)."""
        if ref.startswith("cs_"):
            intent = self._session(ref).get("payment_intent")
            if not intent:
                raise ProviderError("Nothing has been paid on this Stripe checkout yet.")
            return intent
        with _translated():
            return self.client.v1.payment_intents.retrieve(self._intent_id(ref)).to_dict()

    def _from_session(self, session: dict, *, failed: bool = False) -> ProviderPayment:
        intent = _expanded(session.get("payment_intent"))
        status = session.get("status")
        metadata = {**(session.get("metadata") or {}), **((intent or {}).get("metadata") or {})}
        url = session.get("url") if status == "open" else None
        if intent:
            payment = self._from_intent(intent, session_status=status)
            state = PaymentState.FAILED if failed else payment.state
            return ProviderPayment(
                ref=session["id"], state=state, amount=payment.amount, currency=payment.currency,
                fee=payment.fee, amount_refunded=payment.amount_refunded,
                next_action_url=url if state in (PaymentState.REQUIRES_ACTION,
                                                 PaymentState.REQUIRES_PAYMENT_METHOD) else None,
                failure_code=payment.failure_code, failure_message=payment.failure_message,
                method=payment.method, method_saved=payment.method_saved, metadata=metadata, raw=session)
        payment_status = session.get("payment_status")
        if failed:
            state = PaymentState.FAILED
        elif status == "open":
            state = PaymentState.REQUIRES_ACTION
        elif status == "expired":
            state = PaymentState.CANCELED
        elif payment_status in ("paid", "no_payment_required"):
            state = PaymentState.SUCCEEDED
        else:
            state = PaymentState.PROCESSING  # complete, paid by a method that settles later
        currency = session.get("currency") or ""
        return ProviderPayment(ref=session["id"], state=state, amount=from_minor(session.get("amount_total") or 0,
                                                                                 currency),
                               currency=currency.upper(), next_action_url=url, metadata=metadata, raw=session)

    def _from_intent(self, intent: dict, *, session_status: str | None = None) -> ProviderPayment:
        currency = intent["currency"]
        status = intent["status"]
        error = intent.get("last_payment_error") or None
        state = {
            "succeeded": PaymentState.SUCCEEDED,
            "processing": PaymentState.PROCESSING,
            "requires_capture": PaymentState.PROCESSING,  # authorized; the portal captures
            "requires_action": PaymentState.REQUIRES_ACTION,
            "requires_confirmation": PaymentState.REQUIRES_ACTION,
            "canceled": PaymentState.CANCELED,
            "requires_payment_method": PaymentState.REQUIRES_PAYMENT_METHOD,
        }.get(status, PaymentState.REQUIRES_PAYMENT_METHOD)
        if state is PaymentState.REQUIRES_PAYMENT_METHOD and session_status == "expired":
            state = PaymentState.CANCELED  # the payer left; a decline before that is a failure
        if state is PaymentState.CANCELED and error:
            state = PaymentState.FAILED
        if state is PaymentState.REQUIRES_PAYMENT_METHOD and session_status == "open" and not error:
            state = PaymentState.REQUIRES_ACTION  # the payer has not tried yet
        next_url = None
        if status == "requires_action":
            next_url = (((intent.get("next_action") or {}).get("redirect_to_url") or {}).get("url"))
        charge = _expanded(intent.get("latest_charge")) or {}
        fee = _fee(charge, currency) if state is PaymentState.SUCCEEDED else None
        method = None
        card = (charge.get("payment_method_details") or {}).get("card")
        method_id = _id(intent.get("payment_method")) or charge.get("payment_method")
        if card and method_id:
            method = _method(method_id, card)
        elif _expanded(intent.get("payment_method")) and intent["payment_method"].get("card"):
            method = _method(method_id, intent["payment_method"]["card"])
        saved = bool(intent.get("setup_future_usage") and method_id and intent.get("customer")
                     and state in (PaymentState.SUCCEEDED, PaymentState.PROCESSING))
        return ProviderPayment(
            ref=intent["id"], state=state, amount=from_minor(intent["amount"], currency), currency=currency.upper(),
            fee=fee, amount_refunded=from_minor(charge.get("amount_refunded") or 0, currency),
            next_action_url=next_url,
            failure_code=(error or {}).get("decline_code") or (error or {}).get("code"),
            failure_message=(error or {}).get("message"),
            method=method, method_saved=saved, metadata=dict(intent.get("metadata") or {}), raw=intent)


def _fee(charge: dict, currency: str) -> Decimal | None:
    """The charge's fee in the payment's currency, from its balance transaction. A balance
    transaction in another (settlement) currency is converted back at its ``exchange_rate``."""
    txn = _expanded(charge.get("balance_transaction"))
    if not txn or txn.get("fee") is None:
        return None
    fee = from_minor(txn["fee"], txn["currency"])
    if txn["currency"].lower() == currency.lower():
        return fee
    rate = txn.get("exchange_rate")
    if not rate:
        return None
    places = Decimal(1).scaleb(-exponent(currency))
    return (fee / Decimal(str(rate))).quantize(places, rounding=ROUND_HALF_UP)


def _method(ref: str, card: Mapping) -> ProviderMethod:
    return ProviderMethod(ref=ref, kind=MethodKind.CARD, brand=card.get("brand") or "", last4=card.get("last4") or "",
                          exp_month=card.get("exp_month"), exp_year=card.get("exp_year"))


def _refund(refund: dict, *, payment_ref: str | None = None) -> ProviderRefund:
    currency = refund["currency"]
    return ProviderRefund(
        ref=refund["id"], payment_ref=payment_ref or _id(refund.get("payment_intent")) or _id(refund.get("charge")),
        state=_REFUND_STATES.get(refund.get("status"), RefundState.PENDING),
        amount=from_minor(refund["amount"], currency), currency=currency.upper(),
        failure_reason=refund.get("failure_reason"), raw=refund)


class _Missing(ProviderError):
    """Stripe has no such object."""


@contextmanager
def _translated(*, creating_payment: bool = False) -> Iterator[None]:
    """Stripe's errors as the port's (see ``base``); messages never carry the key.

    While ``creating_payment``, an invalid request (a saved method Stripe no longer has, an
    amount under its minimum, a key reused with other parameters) is a decline: Stripe answered,
    nothing was made, and the payment cannot go ahead as asked."""
    try:
        yield
    except stripe.CardError as exc:
        error = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
        raise ProviderDeclined(exc.user_message or "The card was declined.",
                               code=error.get("decline_code") or exc.code) from None
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        what = "is rate limiting" if isinstance(exc, stripe.RateLimitError) else "could not be reached"
        raise ProviderUnavailable(f"Stripe {what}; the outcome is unknown, try again later.") from None
    except stripe.AuthenticationError:
        raise ProviderUnavailable("Stripe refused the API key: check STRIPE_SECRET_KEY.") from None
    except stripe.PermissionError:
        raise ProviderUnavailable("The Stripe key may not do this: check STRIPE_SECRET_KEY's permissions.") from None
    except stripe.IdempotencyError:
        message = "Stripe refused a retry that differs from the first request with its key."
        if creating_payment:
            raise ProviderDeclined(message, code="idempotency_error") from None
        raise ProviderError(message) from None
    except stripe.InvalidRequestError as exc:
        if exc.code in _REFUSALS:
            raise ProviderDeclined(exc.user_message or "Stripe refused the request.", code=exc.code) from None
        if creating_payment:
            raise ProviderDeclined(f"Stripe refused this payment ({exc.code or 'invalid request'}).",
                                   code=exc.code or "invalid_request") from None
        if exc.http_status == 404 or exc.code == "resource_missing":
            raise _Missing("Stripe has no such payment object.") from None
        raise ProviderError(f"Stripe refused the request ({exc.code or 'invalid request'}).") from None
    except stripe.StripeError as exc:
        if exc.http_status is None or exc.http_status >= 500:
            raise ProviderUnavailable("Stripe failed to answer; the outcome is unknown, try again later.") from None
        raise ProviderError(f"Stripe answered with an error (HTTP {exc.http_status}).") from None
