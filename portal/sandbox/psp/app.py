"""The WSGI application: routing, the API key, idempotency keys, the hosted pages; and the
helpers that serve it (in a thread for the tests, or as the process of ``__main__``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import date
from importlib import resources
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from portal.sandbox.psp import api, rules
from portal.sandbox.psp.engine import ApiError, Psp
from portal.sandbox.psp.settings import Settings
from portal.sandbox.psp.store import Store, dumps
from portal.sandbox.psp.webhooks import Dispatcher

ROUTES = Map([
    Rule("/v1/customers", methods=["POST"], endpoint="create_customer"),
    Rule("/v1/customers/<id_>", methods=["GET"], endpoint="get_customer"),
    Rule("/v1/customers/<id_>/payment_methods", methods=["GET"], endpoint="list_methods"),
    Rule("/v1/payment_methods/<id_>/detach", methods=["POST"], endpoint="detach"),
    Rule("/v1/payments", methods=["POST"], endpoint="create_payment"),
    Rule("/v1/payments/<id_>", methods=["GET"], endpoint="get_payment"),
    Rule("/v1/payments/<id_>/capture", methods=["POST"], endpoint="capture"),
    Rule("/v1/payments/<id_>/cancel", methods=["POST"], endpoint="cancel"),
    Rule("/v1/refunds", methods=["POST"], endpoint="create_refund"),
    Rule("/v1/refunds/<id_>", methods=["GET"], endpoint="get_refund"),
    Rule("/v1/webhook_deliveries", methods=["GET"], endpoint="deliveries"),
    Rule("/v1/test_helpers/settle", methods=["POST"], endpoint="settle"),
    Rule("/v1/test_helpers/webhooks/flush", methods=["POST"], endpoint="flush_webhooks"),
    Rule("/pay/<id_>", methods=["GET", "POST"], endpoint="pay"),
    Rule("/challenge/<id_>", methods=["GET", "POST"], endpoint="challenge"),
    Rule("/assets/pay.css", methods=["GET"], endpoint="css"),
    Rule("/health", methods=["GET"], endpoint="health"),
])

PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _page_policy(payment: dict | None) -> str:
    """No outside assets; forms post here only, and may be redirected on to the merchant's
    ``return_url`` (browsers hold a form's redirects to ``form-action`` too)."""
    targets = "'self'"
    if payment is not None:
        parts = urlsplit(payment["return_url"])
        targets += f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'none'; style-src 'self'; form-action {targets}; frame-ancestors 'none'; "
            "base-uri 'none'")


def _json(status: int, body: dict, **headers) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json", headers=headers)


def with_payment_ref(url: str, payment_id: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("payment_ref", payment_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class SandboxApp:
    """The sandbox provider as a WSGI application; ``start()`` runs its background threads
    (settling due work, delivering webhooks) and ``close()`` stops them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.db_path)
        self.dispatcher = Dispatcher(settings, self.store)
        self.psp = Psp(settings, self.store, self.dispatcher.enqueue)
        self.pages = Environment(loader=PackageLoader("portal.sandbox.psp", "templates"),
                                 autoescape=select_autoescape(default=True))
        self.pages.filters["money"] = rules.format_minor
        self._idempotency = threading.Lock()
        self._stop = threading.Event()
        self._settler: threading.Thread | None = None

    # ------------------------------------------------------------ WSGI

    def __call__(self, environ, start_response):
        request = Request(environ)
        if not self.psp.base_url:
            self.psp.base_url = request.host_url.rstrip("/")
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        api_call = request.path.startswith("/v1/")
        try:
            endpoint, args = ROUTES.bind_to_environ(request.environ).match()
            if api_call:
                return self.api(request, endpoint, args)
            return getattr(self, f"page_{endpoint}")(request, **args)
        except ApiError as error:
            if api_call:
                return _json(error.status, error.body())
            return self.render("message.html", error.status, title="This payment cannot continue",
                               message=error.message)
        except HTTPException as error:
            if api_call:
                return _json(error.code, ApiError(error.code, "not_found" if error.code == 404 else "bad_request",
                                                  error.description or error.name).body())
            return self.render("message.html", error.code, title=error.name, message=error.description)

    def api(self, request: Request, endpoint: str, args: dict) -> Response:
        supplied = request.headers.get("Authorization", "")
        expected = f"Bearer {self.settings.api_key}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ApiError(401, "invalid_api_key", "Send the API key as 'Authorization: Bearer <key>'.",
                           type_="authentication_error")
        if request.method == "GET":
            return _json(200, self.api_get(endpoint, **args))
        raw = request.get_data()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "The body must be a JSON object.")
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self.api_post(endpoint, body, args)
        if len(key) > 255:
            raise ApiError(400, "parameter_invalid", "Idempotency-Key is at most 255 characters.", "Idempotency-Key")
        fingerprint = hashlib.sha256(f"{request.path}\n{dumps(body)}".encode()).hexdigest()
        with self._idempotency:  # one request per key at a time: the second waits and replays
            with self.store.tx() as conn:
                seen = conn.execute("SELECT * FROM idempotency WHERE key = ?", (key,)).fetchone()
            if seen is not None:
                if seen["fingerprint"] != fingerprint:
                    raise ApiError(409, "idempotency_key_reused", "This Idempotency-Key was used with another "
                                   "request; use a new key for a new request.", type_="idempotency_error")
                return Response(seen["body"], status=seen["status"], mimetype="application/json",
                                headers={"Idempotent-Replayed": "true"})
            response = self.api_post(endpoint, body, args)
            if response.status_code < 500:
                with self.store.tx() as conn:
                    conn.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                                 (key, fingerprint, response.status_code, response.get_data(as_text=True),
                                  int(time.time())))
            return response

    def api_get(self, endpoint: str, id_: str | None = None) -> dict:
        if endpoint == "deliveries":
            return {"object": "list", "data": self.dispatcher.deliveries()}
        return {"get_customer": self.psp.get_customer, "list_methods": self.psp.list_methods,
                "get_payment": self.psp.get_payment, "get_refund": self.psp.get_refund}[endpoint](id_)

    def api_post(self, endpoint: str, body: dict, args: dict) -> Response:
        try:
            if endpoint == "flush_webhooks":
                status, answer = api.flush_webhooks(self.dispatcher, body)
            else:
                status, answer = getattr(api, endpoint)(self.psp, body, *args.values())
        except ApiError as error:
            return _json(error.status, error.body())
        return _json(status, answer)

    # ------------------------------------------------------------ the hosted pages

    def render(self, template: str, status: int = 200, **context) -> Response:
        html = self.pages.get_template(template).render(**context)
        headers = PAGE_HEADERS | {"Content-Security-Policy": _page_policy(context.get("payment"))}
        return Response(html, status=status, mimetype="text/html", headers=headers)

    def page_css(self, _request: Request) -> Response:
        css = resources.files("portal.sandbox.psp").joinpath("templates/pay.css").read_text()
        return Response(css, mimetype="text/css", headers={"Cache-Control": "max-age=3600"})

    def page_health(self, _request: Request) -> Response:
        return Response("ok", mimetype="text/plain")

    def _payment_page(self, payment: dict, status: int = 200, errors=None, form=None, declined=None) -> Response:
        if payment["state"] not in {"requires_action", "requires_payment_method"}:
            return self.render("message.html", title="Payment " + payment["state"].replace("_", " "),
                               message="There is nothing more to do on this page.", payment=payment,
                               back=with_payment_ref(payment["return_url"], payment["id"]))
        return self.render("pay.html", status, payment=payment, errors=errors or {}, form=form or {},
                           declined=declined or payment["failure_message"],
                           networks=rules.MOBILE_NETWORKS)

    def page_pay(self, request: Request, id_: str) -> Response:
        payment = self.psp.get_payment(id_)
        if payment["state"] == "requires_action" and payment["next_action_url"].endswith(f"/challenge/{id_}"):
            return Response(status=303, headers={"Location": f"/challenge/{id_}"})
        if request.method == "GET":
            return self._payment_page(payment)
        form = request.form
        if payment["method_kind"] == "card":
            card, errors = rules.check_card(form.get("number", ""), form.get("expiry", ""), form.get("cvc", ""),
                                            form.get("name", ""), date.today())
            if errors:
                return self._payment_page(payment, 400, errors, {"expiry": form.get("expiry", ""),
                                                                "name": form.get("name", ""),
                                                                "save": form.get("save") == "yes"})
            payment = self.psp.pay_with_card(id_, card, form.get("save") == "yes")
        else:
            errors = rules.check_phone(form.get("phone", ""), form.get("network", ""))
            if errors:
                return self._payment_page(payment, 400, errors, {"phone": form.get("phone", ""),
                                                                "network": form.get("network", "")})
            payment = self.psp.pay_with_mobile_money(id_, form["phone"], form["network"])
        if payment["state"] == "requires_payment_method":
            return self._payment_page(payment, 402, declined=payment["failure_message"])
        if payment["state"] == "requires_action":
            return Response(status=303, headers={"Location": f"/challenge/{id_}"})
        return Response(status=303, headers={"Location": with_payment_ref(payment["return_url"], id_)})

    def page_challenge(self, request: Request, id_: str) -> Response:
        payment = self.psp.get_payment(id_)
        waiting = payment["state"] == "requires_action" and payment["next_action_url"].endswith(f"/challenge/{id_}")
        if request.method == "GET":
            if not waiting:
                return Response(status=303, headers={"Location": f"/pay/{id_}"})
            return self.render("challenge.html", payment=payment)
        payment = self.psp.challenge(id_, request.form.get("outcome") == "approve")
        if payment["state"] == "requires_payment_method":
            return Response(status=303, headers={"Location": f"/pay/{id_}"})
        return Response(status=303, headers={"Location": with_payment_ref(payment["return_url"], id_)})

    # ------------------------------------------------------------ background work

    def start(self) -> SandboxApp:
        self.dispatcher.start()
        self._settler = threading.Thread(target=self._settle_loop, name="sandbox-psp-settler", daemon=True)
        self._settler.start()
        return self

    def _settle_loop(self) -> None:
        while not self._stop.wait(self.settings.poll_interval):
            self.psp.settle_due(time.time())

    def close(self) -> None:
        self._stop.set()
        self.dispatcher.stop()
        if self._settler is not None:
            self._settler.join(timeout=10)
        self.store.close()


def make_app(settings: Settings) -> SandboxApp:
    """The sandbox provider's WSGI application (call ``start()`` for its background threads)."""
    return SandboxApp(settings)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        """No access log (the tests' servers)."""


class Server:
    """The sandbox provider served from a thread: ``Server(settings).start()``, ``.url``, ``.stop()``."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = False):
        self.app = make_app(settings)
        self._http = make_server(host, port, self.app, threaded=True,
                                 request_handler=_QuietHandler if quiet else None)
        self.url = f"http://{host}:{self._http.server_port}"
        if not settings.public_url:
            self.app.psp.base_url = self.url
        # A short poll so that stop() returns at once.
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox-psp-http", daemon=True)

    def start(self) -> Server:
        self.app.start()
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.app.start()
        try:
            self._http.serve_forever()
        finally:
            self.app.close()

    def stop(self) -> None:
        self._http.shutdown()
        self._thread.join(timeout=10)
        self._http.server_close()
        self.app.close()
