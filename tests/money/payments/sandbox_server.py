"""The sandbox payment provider for tests: served from a thread on a free port with a SQLite
file under the test's tmp path, its webhooks sent to a local receiver that records them.

``running_sandbox(tmp_path, **settings)`` yields a ``Sandbox``: ``url``, ``api(...)`` for the
JSON API, ``receiver`` (the webhooks it got) and ``pay_by_card`` / ``pay_by_phone``, which drive
the hosted page with plain form posts as a browser would.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from datetime import date

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from portal.sandbox.psp import Server, Settings

API_KEY = "sk_sandbox_test_key"
WEBHOOK_SECRET = "whsec_test_secret"
#: An expiry date three years ahead, as the page wants it (MM/YY).
FUTURE_EXPIRY = f"04/{(date.today().year + 3) % 100:02d}"


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        """No access log."""


class WebhookReceiver:
    """A local endpoint recording each POST; ``answers`` are the statuses it gives first
    (then 200), to make the sender retry."""

    def __init__(self):
        self.received: list[dict] = []  # {"body": bytes, "headers": dict, "status": int}
        self.answers: list[int] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._http = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/hooks"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        with self._lock:
            status = self.answers.pop(0) if self.answers else 200
            self.paths.append(request.path)
            self.received.append({"body": request.get_data(), "headers": dict(request.headers), "status": status})
        return Response("{}", status=status, mimetype="application/json")

    def events(self, *, delivered_only: bool = True) -> list[dict]:
        with self._lock:
            return [json.loads(r["body"]) for r in self.received if not delivered_only or r["status"] == 200]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """The delivered events once ``predicate(events)`` holds (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.02)
        raise AssertionError(f"The webhooks never matched; got {[e['type'] for e in self.events()]}")

    def stop(self) -> None:
        self._http.shutdown()
        self._thread.join(timeout=5)
        self._http.server_close()


class Sandbox:
    def __init__(self, server: Server, receiver: WebhookReceiver):
        self.server = server
        self.url = server.url
        self.receiver = receiver
        self.settings = server.app.settings

    def api(self, method: str, path: str, body: dict | None = None, *, key: str | None = API_KEY,
            idempotency_key: str | None = None) -> requests.Response:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return requests.request(method, self.url + path, json=body, headers=headers, timeout=10)

    def ok(self, method: str, path: str, body: dict | None = None, **kwargs) -> dict:
        answer = self.api(method, path, body, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def new_payment(self, amount: int = 1250, currency: str = "USD", method_kind: str = "card", **extra) -> dict:
        body = {"amount": amount, "currency": currency, "method_kind": method_kind,
                "return_url": "https://portal.test/wallet/payments/return", "description": "Top-up"} | extra
        return self.ok("POST", "/v1/payments", body)

    def pay_by_card(self, payment: dict, number: str = "4242424242424242", *, expiry: str = FUTURE_EXPIRY,
                    cvc: str = "123", name: str = "Ada Lovelace", save: bool = False) -> requests.Response:
        form = {"number": number, "expiry": expiry, "cvc": cvc, "name": name}
        if save:
            form["save"] = "yes"
        return requests.post(f"{self.url}/pay/{payment['id']}", data=form, allow_redirects=False, timeout=10)

    def pay_by_phone(self, payment: dict, phone: str = "+254712345678", network: str = "mpesa") -> requests.Response:
        return requests.post(f"{self.url}/pay/{payment['id']}", data={"phone": phone, "network": network},
                             allow_redirects=False, timeout=10)

    def payment(self, payment_id: str) -> dict:
        return self.ok("GET", f"/v1/payments/{payment_id}")

    def settle(self) -> dict:
        return self.ok("POST", "/v1/test_helpers/settle", {})


@contextmanager
def running_sandbox(tmp_path, **settings):
    """A sandbox provider and its webhook receiver, stopped after the block. Delays default
    long (the tests settle with the test helper), retries short, chaos off."""
    receiver = WebhookReceiver()
    values = {"webhook_url": receiver.url, "mobile_money_delay": 300.0, "refund_delay": 300.0,
              "retry_base": 0.05, "retry_cap": 0.2, "poll_interval": 0.02} | settings
    server = Server(Settings(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET,
                             db_path=str(tmp_path / "sandbox-psp.sqlite3"), **values), quiet=True).start()
    try:
        yield Sandbox(server, receiver)
    finally:
        server.stop()
        receiver.stop()
