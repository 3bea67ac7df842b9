"""A local fake of the part of Stripe's HTTP API the Stripe adapter uses, for its tests.

A werkzeug WSGI app served in a thread on a free port of 127.0.0.1 (``running_fake_stripe``,
a context manager); it never touches the internet. It reads form-encoded bodies and query
strings exactly as the ``stripe`` SDK sends them (bracketed keys such as
``line_items[0][price_data][unit_amount]``, ``expand[0]`` or ``expand[]``), keeps objects in
memory with Stripe-like ids and JSON shapes (``object``, ``livemode``, ``created``, amounts in
minor units), checks the bearer key (401 otherwise), replays a request sent again with the same
``Idempotency-Key`` (and refuses the key with other parameters), and answers errors in Stripe's
``{"error": {...}}`` shape (402 card errors, 400 invalid requests, 404 missing objects).

Endpoints covered:

    POST /v1/checkout/sessions                 GET /v1/checkout/sessions/{id}
    POST /v1/checkout/sessions/{id}/expire
    POST /v1/payment_intents                   GET /v1/payment_intents/{id}
    POST /v1/payment_intents/{id}/capture      POST /v1/payment_intents/{id}/cancel
    POST /v1/refunds                           GET /v1/refunds/{id}
    POST /v1/customers
    GET  /v1/payment_methods?customer=&type=card
    POST /v1/payment_methods/{id}/detach

``expand`` is honoured on every answer, to any depth.

Test cards (Stripe's test PaymentMethod names): ``pm_card_visa`` and ``pm_card_mastercard``
succeed, ``pm_card_chargeDeclined`` (generic decline), ``pm_card_chargeDeclinedInsufficientFunds``
and ``pm_card_chargeDeclinedExpiredCard`` decline, ``pm_card_authenticationRequired`` needs
3-D Secure (on the hosted page a challenge; off-session a decline ``authentication_required``).

Helpers for what happens outside the API: ``pay_checkout`` (the payer on the hosted page),
``finish_challenge`` (the 3-D Secure step), ``expire_checkout``, ``save_card`` (a card a
customer saved earlier), ``authorize`` (a PaymentIntent held for capture), ``settle_refund``,
``webhook`` (an event body and headers signed as Stripe signs them), and ``fail_next`` /
``hang_next`` (a 5xx answer, an answer slower than the client waits).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API_VERSION = "2026-10-28.endive"

#: Test card -> (brand, last4, what happens: "ok", "3ds" or (decline code, message)).
CARDS = {
    "pm_card_visa": ("visa", "4242", "ok"),
    "pm_card_mastercard": ("mastercard", "4444", "ok"),
    "pm_card_chargeDeclined": ("visa", "0002", ("generic_decline", "Your card was declined.")),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", ("insufficient_funds",
                                                                  "Your card has insufficient funds.")),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", ("expired_card", "Your card has expired.")),
    "pm_card_authenticationRequired": ("visa", "3184", "3ds"),
}

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class StripeFailure(Exception):
    """Answered as Stripe's error object with ``status``."""

    def __init__(self, status: int, type_: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **{k: v for k, v in extra.items() if v is not None}}}


def _missing(kind: str, oid: str) -> StripeFailure:
    return StripeFailure(404, "invalid_request_error", f"No such {kind}: '{oid}'", code="resource_missing", param="id")


def _invalid(message: str, code: str | None = None, param: str | None = None) -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code=code, param=param)


def parse_form(pairs) -> dict:
    """Bracketed form keys (``a[b][0][c]=v``, ``expand[]=x``) as nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + ([p for p in rest[:-1].split("][")] if rest else [])
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "x[]": append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})

    def lists(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [lists(node[k]) for k in sorted(node, key=int)]
        return {k: lists(v) for k, v in node.items()}

    return lists(root)


def _exponent(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


class FakeStripe:
    def __init__(self, api_key: str = "sk_test_fake_key", webhook_secret: str = "whsec_fake_secret"):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []  #: (method, path, params) as received
        self._behaviour: dict[str, str] = {}  # payment method id -> test card name
        self._intent_data: dict[str, dict] = {}  # session id -> its payment_intent_data
        self._idempotent: dict[str, tuple[str, int, bytes]] = {}
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.url = ""
        self.urls = Map([
            Rule("/v1/checkout/sessions", methods=["POST"], endpoint="create_session"),
            Rule("/v1/checkout/sessions/<oid>", methods=["GET"], endpoint="get"),
            Rule("/v1/checkout/sessions/<oid>/expire", methods=["POST"], endpoint="expire_session"),
            Rule("/v1/payment_intents", methods=["POST"], endpoint="create_intent"),
            Rule("/v1/payment_intents/<oid>", methods=["GET"], endpoint="get"),
            Rule("/v1/payment_intents/<oid>/capture", methods=["POST"], endpoint="capture_intent"),
            Rule("/v1/payment_intents/<oid>/cancel", methods=["POST"], endpoint="cancel_intent"),
            Rule("/v1/refunds", methods=["POST"], endpoint="create_refund"),
            Rule("/v1/refunds/<oid>", methods=["GET"], endpoint="get"),
            Rule("/v1/customers", methods=["POST"], endpoint="create_customer"),
            Rule("/v1/payment_methods", methods=["GET"], endpoint="list_methods"),
            Rule("/v1/payment_methods/<oid>/detach", methods=["POST"], endpoint="detach_method"),
        ])

    # -- serving ---------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def fail_next(self, status: int = 500, count: int = 1) -> None:
        """The next ``count`` requests answer ``status`` with Stripe's api_error."""
        self._faults.extend([("status", status)] * count)

    def hang_next(self, seconds: float) -> None:
        """The next request waits ``seconds`` before answering (or until the fake stops)."""
        self._faults.append(("hang", seconds))

    def wsgi(self, environ, start_response):
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        if self._faults:
            kind, value = self._faults.pop(0)
            if kind == "hang":
                self._stopping.wait(value)
            else:
                return self._json({"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}},
                                  int(value))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._json({"error": {"type": "invalid_request_error",
                                         "message": "Invalid API Key provided."}}, 401)
        params = parse_form(request.form.items(multi=True) if request.method == "POST"
                            else request.args.items(multi=True))
        with self._lock:
            self.requests.append((request.method, request.path, params))
            key = request.headers.get("Idempotency-Key")
            fingerprint = hashlib.sha256(json.dumps([request.method, request.path, params],
                                                    sort_keys=True).encode()).hexdigest()
            if key and request.method == "POST" and key in self._idempotent:
                seen, status, body = self._idempotent[key]
                if seen != fingerprint:
                    return self._json({"error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                                   "they were first used with."}}, 400)
                return Response(body, status, {"Content-Type": "application/json", "Idempotent-Replayed": "true"})
            try:
                endpoint, args = self.urls.bind_to_environ(request.environ).match()
                status, body = 200, getattr(self, "_" + endpoint)(params, **args)
                body = self._expand(body, params.get("expand") or [])
            except StripeFailure as failure:
                status, body = failure.status, failure.body
            except HTTPException as exc:  # no such route
                status, body = exc.code or 404, {"error": {"type": "invalid_request_error",
                                                "message": f"Unrecognized request URL ({request.method}: "
                                                           f"{request.path})."}}
            data = json.dumps(body).encode()
            if key and request.method == "POST" and status < 500:
                self._idempotent[key] = (fingerprint, status, data)
        return Response(data, status, {"Content-Type": "application/json", "Request-Id": "req_" + secrets.token_hex(7)})

    @staticmethod
    def _json(body: dict, status: int) -> Response:
        return Response(json.dumps(body), status, {"Content-Type": "application/json"})

    # -- objects ---------------------------------------------------------------------------

    def _new(self, prefix: str, kind: str, **fields) -> dict:
        obj = {"id": f"{prefix}_{secrets.token_hex(12)}", "object": kind, "livemode": False,
               "created": int(time.time()), **fields}
        self.objects[obj["id"]] = obj
        return obj

    def get(self, oid: str) -> dict:
        """A stored object as it is now (a copy)."""
        with self._lock:
            return copy.deepcopy(self.objects[oid])

    def _obj(self, oid: str, kind: str) -> dict:
        obj = self.objects.get(oid)
        if obj is None or obj["object"] != kind:
            raise _missing(kind.replace("checkout.", ""), oid)
        return obj

    def _expand(self, body: dict, paths: list[str]) -> dict:
        body = copy.deepcopy(body)
        for path in paths:
            self._expand_path(body, path.split("."))
        return body

    def _expand_path(self, node: dict, parts: list[str]) -> None:
        if not isinstance(node, dict) or not parts:
            return
        value = node.get(parts[0])
        if isinstance(value, str) and value in self.objects:
            node[parts[0]] = value = copy.deepcopy(self.objects[value])
        self._expand_path(value, parts[1:])

    def _get(self, params: dict, oid: str) -> dict:
        kind = {"cs": "checkout.session", "pi": "payment_intent", "re": "refund"}.get(oid.split("_")[0], "?")
        return self._obj(oid, kind)

    # -- checkout sessions -----------------------------------------------------------------

    def _create_session(self, params: dict) -> dict:
        if params.get("mode") != "payment":
            raise _invalid("Only mode=payment is supported here.", param="mode")
        items = params.get("line_items") or []
        if len(items) != 1 or "price_data" not in items[0]:
            raise _invalid("Exactly one line item with price_data is supported here.", param="line_items")
        price = items[0]["price_data"]
        currency = price.get("currency", "")
        amount = int(price["unit_amount"]) * int(items[0].get("quantity", 1))
        for url in ("success_url", "cancel_url"):
            if not params.get(url, "").startswith(("http://", "https://")):
                raise _invalid(f"Not a valid URL: {url}", code="url_invalid", param=url)
        customer = params.get("customer")
        if customer:
            self._obj(customer, "customer")
        session = self._new("cs_test", "checkout.session", mode="payment", status="open", payment_status="unpaid",
                            amount_subtotal=amount, amount_total=amount, currency=currency,
                            customer=customer, customer_creation=params.get("customer_creation"),
                            client_reference_id=params.get("client_reference_id"),
                            metadata=params.get("metadata") or {}, payment_intent=None,
                            payment_method_types=params.get("payment_method_types") or ["card"],
                            success_url=params["success_url"], cancel_url=params["cancel_url"],
                            expires_at=int(time.time()) + 24 * 3600)
        session["url"] = f"{self.url}/c/pay/{session['id']}"
        self._intent_data[session["id"]] = params.get("payment_intent_data") or {}
        return session

    def _expire_session(self, params: dict, oid: str) -> dict:
        session = self._obj(oid, "checkout.session")
        if session["status"] != "open":
            raise _invalid('Only Checkout Sessions with a status in ["open"] can be expired.',
                           code="checkout_session_unexpected_state")
        self._expire(session)
        return copy.deepcopy(session)

    def _expire(self, session: dict) -> None:
        session["status"] = "expired"
        session["url"] = None
        if session["payment_intent"]:
            intent = self.objects[session["payment_intent"]]
            if intent["status"] not in ("succeeded", "canceled"):
                intent.update(status="canceled", canceled_at=int(time.time()), cancellation_reason="abandoned")

    # -- payment intents -------------------------------------------------------------------

    def _intent(self, *, amount: int, currency: str, customer=None, metadata=None, description=None,
                setup_future_usage=None, capture_method="automatic") -> dict:
        return self._new("pi", "payment_intent", amount=amount, amount_capturable=0, amount_received=0,
                         currency=currency, customer=customer, description=description,
                         metadata=metadata or {}, setup_future_usage=setup_future_usage,
                         capture_method=capture_method, confirmation_method="automatic",
                         client_secret=None, last_payment_error=None, latest_charge=None, next_action=None,
                         payment_method=None, payment_method_types=["card"], status="requires_payment_method",
                         canceled_at=None, cancellation_reason=None)

    def _create_intent(self, params: dict) -> dict:
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError):
            raise _invalid("Missing required param: amount.", code="parameter_missing", param="amount") from None
        currency = params.get("currency", "")
        if amount < 1:
            raise _invalid("Amount must be at least 1.", code="amount_too_small", param="amount")
        customer = params.get("customer")
        if customer:
            self._obj(customer, "customer")
        intent = self._intent(amount=amount, currency=currency, customer=customer, metadata=params.get("metadata"),
                              description=params.get("description"),
                              setup_future_usage=params.get("setup_future_usage"),
                              capture_method=params.get("capture_method", "automatic"))
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        if params.get("confirm") == "true":
            method = self._method_for(params.get("payment_method"), customer)
            self._attempt(intent, method, off_session=params.get("off_session") == "true")
        return intent

    def _method_for(self, ref: str | None, customer: str | None) -> dict:
        if not ref:
            raise _invalid("You must provide a payment_method to confirm.", code="parameter_missing",
                           param="payment_method")
        if ref in CARDS:
            return self._card(ref)
        method = self._obj(ref, "payment_method")
        if method["customer"] and customer and method["customer"] != customer:
            raise _invalid("The provided PaymentMethod belongs to another Customer.", param="payment_method")
        return method

    def _card(self, name: str, customer: str | None = None) -> dict:
        brand, last4, _ = CARDS[name]
        method = self._new("pm", "payment_method", type="card", customer=customer, metadata={},
                           billing_details={"email": None, "name": None},
                           card={"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034,
                                 "country": "US", "funding": "credit"})
        self._behaviour[method["id"]] = name
        return method

    def _attempt(self, intent: dict, method: dict, *, off_session: bool) -> None:
        """Charge ``method`` for ``intent``; a decline raises the 402 Stripe answers (the
        intent is kept, as Stripe keeps it)."""
        intent["payment_method"] = method["id"]
        outcome = CARDS[self._behaviour[method["id"]]][2]
        if outcome == "3ds":
            if off_session:
                self._decline(intent, method, "authentication_required",
                              "Your card was declined. This transaction requires authentication.",
                              code="authentication_required")
            intent.update(status="requires_action", next_action={
                "type": "redirect_to_url",
                "redirect_to_url": {"url": f"{self.url}/3ds/{intent['id']}", "return_url": None}})
            return
        if outcome != "ok":
            self._decline(intent, method, *outcome)
        self._succeed(intent, method)

    def _decline(self, intent: dict, method: dict, decline_code: str, message: str, code: str = "card_declined"):
        charge = self._charge(intent, method, status="failed", failure_code=code, failure_message=message)
        error = {"type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                 "charge": charge["id"], "payment_method": copy.deepcopy(method)}
        intent.update(status="requires_payment_method", last_payment_error=error, latest_charge=charge["id"],
                      next_action=None)
        raise StripeFailure(402, "card_error", message, code=code, decline_code=decline_code, charge=charge["id"],
                            payment_intent=copy.deepcopy(intent), payment_method=copy.deepcopy(method))

    def _succeed(self, intent: dict, method: dict) -> None:
        manual = intent["capture_method"] == "manual"
        charge = self._charge(intent, method, status="succeeded", captured=not manual)
        intent.update(latest_charge=charge["id"], last_payment_error=None, next_action=None)
        if manual:
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])
            self._settle_charge(charge, intent["amount"])
        if intent["setup_future_usage"] and intent["customer"]:
            method["customer"] = intent["customer"]

    def _charge(self, intent: dict, method: dict, *, status: str, captured: bool = False, **failure) -> dict:
        return self._new("ch", "charge", amount=intent["amount"], amount_captured=0, amount_refunded=0,
                         balance_transaction=None, captured=captured, currency=intent["currency"],
                         customer=intent["customer"], paid=status == "succeeded", payment_intent=intent["id"],
                         payment_method=method["id"], refunded=False, status=status,
                         failure_code=failure.get("failure_code"), failure_message=failure.get("failure_message"),
                         payment_method_details={"type": "card", "card": copy.deepcopy(method["card"])})

    def _settle_charge(self, charge: dict, captured: int) -> None:
        """The balance transaction of a captured charge: 2.9% plus 30 (of the currency's
        hundredths; 30 whole units for zero-decimal currencies)."""
        currency = charge["currency"]
        fixed = {0: 30, 2: 30, 3: 300}[_exponent(currency)]
        fee = int((Decimal(captured) * Decimal("0.029")).quantize(Decimal(1), rounding=ROUND_HALF_UP)) + fixed
        if _exponent(currency) == 3:
            fee = fee // 10 * 10
        txn = self._new("txn", "balance_transaction", amount=captured, currency=currency, fee=fee, net=captured - fee,
                        fee_details=[{"amount": fee, "currency": currency, "type": "stripe_fee",
                                      "description": "Stripe processing fees"}],
                        exchange_rate=None, reporting_category="charge", source=charge["id"], status="pending",
                        type="charge", available_on=int(time.time()) + 2 * 86400)
        charge.update(balance_transaction=txn["id"], amount_captured=captured, captured=True)

    def _capture_intent(self, params: dict, oid: str) -> dict:
        intent = self._obj(oid, "payment_intent")
        if intent["status"] != "requires_capture":
            raise _invalid(f"This PaymentIntent could not be captured because it has a status of {intent['status']}. "
                           "Only a PaymentIntent with one of the following statuses may be captured: "
                           "requires_capture.", code="payment_intent_unexpected_state")
        amount = int(params.get("amount_to_capture", intent["amount"]))
        if amount > intent["amount_capturable"] or amount < 1:
            raise _invalid("The amount to capture must be positive and at most the amount capturable.",
                           code="amount_too_large" if amount > 1 else "amount_too_small", param="amount_to_capture")
        charge = self.objects[intent["latest_charge"]]
        self._settle_charge(charge, amount)
        charge["amount_refunded"] = intent["amount"] - amount  # the rest goes back to the payer
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return intent

    def _cancel_intent(self, params: dict, oid: str) -> dict:
        intent = self._obj(oid, "payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            raise _invalid(f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}. "
                           "Only a PaymentIntent with one of the following statuses may be canceled: "
                           "requires_payment_method, requires_capture, requires_confirmation, requires_action, "
                           "processing.", code="payment_intent_unexpected_state")
        intent.update(status="canceled", canceled_at=int(time.time()),
                      cancellation_reason=params.get("cancellation_reason", "requested_by_customer"))
        return intent

    # -- refunds ---------------------------------------------------------------------------

    def _create_refund(self, params: dict) -> dict:
        intent = self._obj(params.get("payment_intent", ""), "payment_intent")
        if intent["status"] != "succeeded":
            raise _invalid("This PaymentIntent does not have a successful charge to refund.",
                           code="payment_intent_unexpected_state")
        charge = self.objects[intent["latest_charge"]]
        left = charge["amount_captured"] - charge["amount_refunded"]
        if left <= 0:
            raise _invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        amount = int(params.get("amount", left))
        if amount > left:
            raise _invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                           code="amount_too_large", param="amount")
        if amount < 1:
            raise _invalid("Refund amount must be positive.", code="amount_too_small", param="amount")
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise _invalid(f"Invalid reason: {reason}", param="reason")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        return self._new("re", "refund", amount=amount, balance_transaction=None, charge=charge["id"],
                         currency=intent["currency"], metadata=params.get("metadata") or {},
                         payment_intent=intent["id"], reason=reason, status="pending", failure_reason=None)

    # -- customers and methods -------------------------------------------------------------

    def _create_customer(self, params: dict) -> dict:
        return self._new("cus", "customer", email=params.get("email"), name=params.get("name"),
                         metadata=params.get("metadata") or {}, invoice_settings={"default_payment_method": None})

    def _list_methods(self, params: dict) -> dict:
        customer = params.get("customer")
        if customer:
            self._obj(customer, "customer")
        found = sorted((o for o in self.objects.values() if o["object"] == "payment_method"
                        and o["customer"] == customer and o["type"] == params.get("type", "card")),
                       key=lambda o: (-o["created"], o["id"]))
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in found]
            found = found[ids.index(after) + 1:] if after in ids else []
        limit = int(params.get("limit", 10))
        return {"object": "list", "url": "/v1/payment_methods", "has_more": len(found) > limit,
                "data": found[:limit]}

    def _detach_method(self, params: dict, oid: str) -> dict:
        method = self._obj(oid, "payment_method")
        if not method["customer"]:
            raise _invalid("The payment method you provided is not attached to a customer so detachment is "
                           "impossible.", code="payment_method_unexpected_state")
        method["customer"] = None
        return method

    # -- what happens outside the API (test helpers) ---------------------------------------

    def pay_checkout(self, session_id: str, card: str = "pm_card_visa") -> dict:
        """The payer pays on the hosted page with a test ``card``. Success completes the
        session; a decline leaves it open with the declined attempt on its PaymentIntent; a
        3-D Secure card leaves it waiting for ``finish_challenge``. Returns the session."""
        with self._lock:
            session = self._obj(session_id, "checkout.session")
            assert session["status"] == "open", f"the checkout is {session['status']}"
            customer = session["customer"]
            data = self._intent_data[session_id]
            if not customer and (session["customer_creation"] == "always" or data.get("setup_future_usage")):
                customer = session["customer"] = self._create_customer({"email": "payer@example.com"})["id"]
            if not session["payment_intent"]:
                intent = self._intent(amount=session["amount_total"], currency=session["currency"], customer=customer,
                                      metadata=data.get("metadata"), description=data.get("description"),
                                      setup_future_usage=data.get("setup_future_usage"),
                                      capture_method=data.get("capture_method", "automatic"))
                session["payment_intent"] = intent["id"]
            intent = self.objects[session["payment_intent"]]
            try:
                self._attempt(intent, self._card(card), off_session=False)
            except StripeFailure:
                return copy.deepcopy(session)
            if intent["status"] in ("succeeded", "requires_capture"):
                session.update(status="complete", payment_status="paid", url=None)
            return copy.deepcopy(session)

    def finish_challenge(self, session_id: str, *, passed: bool = True) -> dict:
        """The payer passes (or fails) the 3-D Secure step on the hosted page."""
        with self._lock:
            session = self._obj(session_id, "checkout.session")
            intent = self.objects[session["payment_intent"]]
            assert intent["status"] == "requires_action"
            method = self.objects[intent["payment_method"]]
            if passed:
                self._succeed(intent, method)
                session.update(status="complete", payment_status="paid", url=None)
            else:
                intent.update(status="requires_payment_method", next_action=None, last_payment_error={
                    "type": "invalid_request_error", "code": "payment_intent_authentication_failure",
                    "message": "The provided PaymentMethod has failed authentication.",
                    "payment_method": copy.deepcopy(method)})
            return copy.deepcopy(session)

    def expire_checkout(self, session_id: str) -> dict:
        with self._lock:
            session = self._obj(session_id, "checkout.session")
            self._expire(session)
            return copy.deepcopy(session)

    def save_card(self, customer: str, card: str = "pm_card_visa") -> str:
        """A test ``card`` the customer saved earlier; returns its PaymentMethod id."""
        with self._lock:
            self._obj(customer, "customer")
            return self._card(card, customer)["id"]

    def authorize(self, amount: int, currency: str = "usd", card: str = "pm_card_visa") -> str:
        """A PaymentIntent authorized and waiting for capture; returns its id."""
        with self._lock:
            intent = self._intent(amount=amount, currency=currency, capture_method="manual")
            self._attempt(intent, self._card(card), off_session=False)
            return intent["id"]

    def settle_refund(self, refund_id: str, *, succeed: bool = True,
                      failure_reason: str = "expired_or_canceled_card") -> dict:
        """The bank answers a pending refund; a failed refund gives the amount back to the charge."""
        with self._lock:
            refund = self._obj(refund_id, "refund")
            assert refund["status"] == "pending"
            if succeed:
                refund["status"] = "succeeded"
            else:
                refund.update(status="failed", failure_reason=failure_reason)
                charge = self.objects[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
            return copy.deepcopy(refund)

    def event(self, type_: str, oid: str) -> dict:
        """An event of ``type_`` about the stored object ``oid`` as it is now."""
        with self._lock:
            obj = copy.deepcopy(self.objects[oid])
            return {"id": "evt_" + secrets.token_hex(12), "object": "event", "api_version": API_VERSION,
                    "created": int(time.time()), "data": {"object": obj}, "livemode": False,
                    "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": type_}

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        """The headers Stripe sends with ``body``: ``Stripe-Signature: t=...,v1=...``, an
        HMAC-SHA256 with the endpoint's secret over ``"{t}.{body}"``."""
        stamp = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        return {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={mac.hexdigest()}"}

    def webhook(self, type_: str, oid: str, **sign) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery ``(body, headers)`` of ``type_`` about ``oid``, signed."""
        body = json.dumps(self.event(type_, oid), indent=2).encode()
        return body, self.sign(body, **sign)


@contextmanager
def running_fake_stripe(**kwargs):
    """A ``FakeStripe`` served on a free local port for the block's length."""
    fake = FakeStripe(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
