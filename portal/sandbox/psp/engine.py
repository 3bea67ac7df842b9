"""Payments, refunds, customers and saved methods: the sandbox provider's state machine.

A payment starts ``requires_action`` (the payer must use the hosted page). A card attempt on the
page ends ``succeeded`` (or ``requires_capture`` when created with ``capture_method=manual``),
goes back to ``requires_payment_method`` with the decline's reason (the payer may try again), or
asks for the challenge step (``requires_action`` at ``/challenge/<id>``). Mobile money goes
``processing`` and settles later to ``succeeded`` or ``failed``. Every change of state records
an event (``payment.<state>``, ``refund.<state>``) that the webhook thread delivers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from portal.sandbox.psp import rules
from portal.sandbox.psp.settings import Settings
from portal.sandbox.psp.store import Store, dumps, new_id, row

OPEN_STATES = {"requires_payment_method", "requires_action"}
CANCELABLE_STATES = OPEN_STATES | {"requires_capture"}


class ApiError(Exception):
    """An answer other than success: HTTP status and the JSON error's fields."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 type_: str = "invalid_request_error", payment: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.type = status, code, message, param, type_
        self.payment = payment

    def body(self) -> dict:
        error = {"type": self.type, "code": self.code, "message": self.message, "param": self.param}
        if self.payment is not None:
            error["payment"] = self.payment
        return {"error": error}


def _now() -> int:
    return int(time.time())


class Psp:
    def __init__(self, settings: Settings, store: Store, enqueue: Callable[[sqlite3.Connection, str], None]):
        self.settings = settings
        self.store = store
        self.base_url = settings.public_url.rstrip("/")
        self._enqueue = enqueue

    # ------------------------------------------------------------ snapshots and events

    def method_json(self, method: sqlite3.Row | None) -> dict | None:
        if method is None:
            return None
        return {"id": method["id"], "object": "payment_method", "kind": method["kind"], "brand": method["brand"],
                "last4": method["last4"], "exp_month": method["exp_month"], "exp_year": method["exp_year"],
                "customer": method["customer"] if method["saved"] else None, "created": method["created"]}

    def payment_json(self, conn: sqlite3.Connection, p: sqlite3.Row) -> dict:
        refunded = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment = ? AND state = ?",
                                (p["id"], "succeeded")).fetchone()[0]
        method = row(conn, "methods", p["method"]) if p["method"] else None
        next_action_url = None
        if p["state"] in OPEN_STATES:
            next_action_url = f"{self.base_url}/{p['next_action'] or 'pay'}/{p['id']}"
        return {
            "id": p["id"], "object": "payment", "amount": p["amount"], "currency": p["currency"],
            "method_kind": p["method_kind"], "state": p["state"], "capture_method": p["capture_method"],
            "amount_captured": p["amount_captured"], "amount_refunded": refunded, "fee": p["fee"],
            "net": p["amount_captured"] - p["fee"] if p["fee"] is not None else None,
            "description": p["description"], "metadata": json.loads(p["metadata"]), "customer": p["customer"],
            "return_url": p["return_url"], "next_action_url": next_action_url,
            "failure_code": p["failure_code"], "failure_message": p["failure_message"],
            "payment_method": self.method_json(method),
            "save_method": bool(p["save_method"]),
            "method_saved": bool(method is not None and method["saved"] and p["save_method"]),
            "created": p["created"], "updated": p["updated"],
        }

    @staticmethod
    def refund_json(r: sqlite3.Row) -> dict:
        return {"id": r["id"], "object": "refund", "payment": r["payment"], "amount": r["amount"],
                "currency": r["currency"], "reason": r["reason"], "state": r["state"],
                "failure_reason": r["failure_reason"], "created": r["created"], "updated": r["updated"]}

    def emit(self, conn: sqlite3.Connection, type_: str, obj: dict) -> None:
        event_id, created = new_id("evt"), _now()
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()[0]
        body = {"id": event_id, "object": "event", "type": type_, "created": created, "data": {"object": obj}}
        conn.execute("INSERT INTO events (id, seq, type, created, body) VALUES (?, ?, ?, ?, ?)",
                     (event_id, seq, type_, created, dumps(body)))
        self._enqueue(conn, event_id)

    def _set_payment(self, conn: sqlite3.Connection, payment_id: str, **fields) -> dict:
        fields["updated"] = _now()
        columns = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(f"UPDATE payments SET {columns} WHERE id = ?", (*fields.values(), payment_id))
        snapshot = self.payment_json(conn, row(conn, "payments", payment_id))
        if "state" in fields:
            self.emit(conn, f"payment.{fields['state']}", snapshot)
        return snapshot

    def _payment(self, conn: sqlite3.Connection, payment_id: str) -> sqlite3.Row:
        p = row(conn, "payments", payment_id)
        if p is None:
            raise ApiError(404, "resource_missing", f"No payment {payment_id!r}.", type_="invalid_request_error")
        return p

    # ------------------------------------------------------------ customers and methods

    def create_customer(self, email: str, name: str) -> dict:
        with self.store.tx() as conn:
            customer_id = new_id("cus")
            conn.execute("INSERT INTO customers VALUES (?, ?, ?, ?)", (customer_id, email, name, _now()))
            customer = {"id": customer_id, "object": "customer", "email": email, "name": name}
            self.emit(conn, "customer.created", customer)
            return customer

    def get_customer(self, customer_id: str) -> dict:
        with self.store.tx() as conn:
            c = row(conn, "customers", customer_id)
            if c is None:
                raise ApiError(404, "resource_missing", f"No customer {customer_id!r}.")
            return {"id": c["id"], "object": "customer", "email": c["email"], "name": c["name"]}

    def list_methods(self, customer_id: str) -> dict:
        with self.store.tx() as conn:
            self.get_customer(customer_id)
            rows = conn.execute("SELECT * FROM methods WHERE customer = ? AND saved = 1 ORDER BY created, id",
                                (customer_id,)).fetchall()
            return {"object": "list", "data": [self.method_json(m) for m in rows]}

    def detach_method(self, method_id: str) -> dict:
        with self.store.tx() as conn:
            m = row(conn, "methods", method_id)
            if m is None or not m["saved"]:
                raise ApiError(404, "resource_missing", f"No saved payment method {method_id!r}.")
            conn.execute("UPDATE methods SET saved = 0 WHERE id = ?", (method_id,))
            detached = self.method_json(row(conn, "methods", method_id)) | {"customer": None}
            self.emit(conn, "payment_method.detached", detached)
            return detached

    def _new_method(self, conn, kind, brand, last4, scenario, customer=None, exp=(None, None)) -> str:
        method_id = new_id("pm")
        conn.execute("INSERT INTO methods (id, customer, kind, brand, last4, exp_month, exp_year, scenario, created)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (method_id, customer, kind, brand, last4, exp[0], exp[1], scenario, _now()))
        return method_id

    # ------------------------------------------------------------ payments

    def create_payment(self, params: dict) -> dict:
        """``params`` is checked by the API layer; a saved ``payment_method`` is charged now (a
        decline is a 402 whose error carries the failed payment, recorded all the same)."""
        declined = None
        with self.store.tx() as conn:
            customer = params.get("customer")
            if customer is not None and row(conn, "customers", customer) is None:
                raise ApiError(400, "resource_missing", f"No customer {customer!r}.", "customer")
            method = None
            if params.get("payment_method"):
                method = row(conn, "methods", params["payment_method"])
                if method is None or not method["saved"] or method["customer"] != customer:
                    raise ApiError(400, "resource_missing", "No such saved payment method for this customer.",
                                   "payment_method")
                if method["kind"] != params["method_kind"]:
                    raise ApiError(400, "parameter_invalid", "The saved method is of another kind.", "method_kind")
            payment_id, now = new_id("pay"), _now()
            conn.execute(
                "INSERT INTO payments (id, amount, currency, method_kind, state, capture_method, return_url,"
                " description, metadata, customer, save_method, created, updated)"
                " VALUES (?, ?, ?, ?, 'requires_action', ?, ?, ?, ?, ?, ?, ?, ?)",
                (payment_id, params["amount"], params["currency"], params["method_kind"], params["capture_method"],
                 params["return_url"], params["description"], dumps(params["metadata"]), customer,
                 int(params["save_method"]), now, now))
            if method is None:
                return self._set_payment(conn, payment_id, state="requires_action", next_action="pay")
            conn.execute("UPDATE payments SET method = ?, save_method = 1 WHERE id = ?", (method["id"], payment_id))
            scenario = rules.SCENARIOS[method["scenario"]]
            if scenario.challenge:
                return self._set_payment(conn, payment_id, state="requires_action", next_action="challenge")
            code = scenario.decline or scenario.off_session_decline
            if not code:
                return self._authorized(conn, payment_id)
            declined = self._set_payment(conn, payment_id, state="failed", failure_code=code,
                                         failure_message=rules.DECLINE_MESSAGES[code])
        raise ApiError(402, code, rules.DECLINE_MESSAGES[code], type_="card_error", payment=declined)

    def get_payment(self, payment_id: str) -> dict:
        with self.store.tx() as conn:
            return self.payment_json(conn, self._payment(conn, payment_id))

    def _authorized(self, conn, payment_id: str) -> dict:
        """The payer's money is secured: captured now, or held for ``capture`` when manual."""
        p = self._payment(conn, payment_id)
        if p["method"] and p["save_method"] and p["customer"]:
            conn.execute("UPDATE methods SET saved = 1, customer = ? WHERE id = ?", (p["customer"], p["method"]))
        if p["capture_method"] == "manual":
            return self._set_payment(conn, payment_id, state="requires_capture", next_action=None,
                                     failure_code=None, failure_message=None)
        return self._captured(conn, p, p["amount"])

    def _captured(self, conn, p: sqlite3.Row, amount: int) -> dict:
        return self._set_payment(conn, p["id"], state="succeeded", amount_captured=amount, next_action=None,
                                 fee=rules.fee(amount, p["currency"], p["method_kind"]),
                                 failure_code=None, failure_message=None)

    def capture(self, payment_id: str, amount: int | None) -> dict:
        with self.store.tx() as conn:
            p = self._payment(conn, payment_id)
            if p["state"] != "requires_capture":
                raise ApiError(409, "payment_unexpected_state",
                               f"Only a payment that requires capture can be captured (this one is {p['state']}).")
            if amount is not None and amount > p["amount"]:
                raise ApiError(400, "amount_too_large", "The capture exceeds the authorized amount.", "amount")
            return self._captured(conn, p, amount if amount is not None else p["amount"])

    def cancel(self, payment_id: str) -> dict:
        with self.store.tx() as conn:
            p = self._payment(conn, payment_id)
            if p["state"] not in CANCELABLE_STATES:
                raise ApiError(409, "payment_unexpected_state", f"A {p['state']} payment cannot be canceled.")
            return self._set_payment(conn, payment_id, state="canceled", next_action=None)

    # ------------------------------------------------------------ the hosted page's attempts

    def payable(self, conn, payment_id: str) -> sqlite3.Row:
        p = self._payment(conn, payment_id)
        if p["state"] not in OPEN_STATES or p["next_action"] == "challenge":
            raise ApiError(409, "payment_unexpected_state", "This payment cannot take a payment method now.")
        return p

    def pay_with_card(self, payment_id: str, card: rules.Card, save: bool) -> dict:
        with self.store.tx() as conn:
            p = self.payable(conn, payment_id)
            method = self._new_method(conn, "card", card.brand, card.last4, card.scenario.name,
                                      exp=(card.exp_month, card.exp_year))
            conn.execute("UPDATE payments SET method = ?, save_method = ? WHERE id = ?",
                         (method, int(save and p["customer"] is not None), payment_id))
            if card.scenario.decline:
                return self._set_payment(conn, payment_id, state="requires_payment_method",
                                         failure_code=card.scenario.decline,
                                         failure_message=rules.DECLINE_MESSAGES[card.scenario.decline])
            if card.scenario.challenge:
                return self._set_payment(conn, payment_id, state="requires_action", next_action="challenge",
                                         failure_code=None, failure_message=None)
            return self._authorized(conn, payment_id)

    def pay_with_mobile_money(self, payment_id: str, phone: str, network: str) -> dict:
        with self.store.tx() as conn:
            self.payable(conn, payment_id)
            scenario = "insufficient_funds" if rules.mobile_money_fails(phone) else "success"
            method = self._new_method(conn, "mobile_money", network, phone.replace(" ", "")[-4:], scenario)
            return self._set_payment(conn, payment_id, state="processing", method=method, next_action=None,
                                     failure_code=None, failure_message=None,
                                     due_at=time.time() + self.settings.mobile_money_delay)

    def challenge(self, payment_id: str, approve: bool) -> dict:
        with self.store.tx() as conn:
            p = self._payment(conn, payment_id)
            if p["state"] != "requires_action" or p["next_action"] != "challenge":
                raise ApiError(409, "payment_unexpected_state", "This payment has no verification step waiting.")
            if approve:
                return self._authorized(conn, payment_id)
            return self._set_payment(conn, payment_id, state="requires_payment_method", next_action="pay",
                                     failure_code="authentication_failed",
                                     failure_message=rules.DECLINE_MESSAGES["authentication_failed"])

    # ------------------------------------------------------------ refunds

    def create_refund(self, payment_id: str, amount: int | None, reason: str) -> dict:
        with self.store.tx() as conn:
            p = row(conn, "payments", payment_id)
            if p is None:
                raise ApiError(400, "resource_missing", f"No payment {payment_id!r}.", "payment")
            if p["state"] != "succeeded":
                raise ApiError(409, "payment_unexpected_state", f"A {p['state']} payment cannot be refunded.")
            taken = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment = ?"
                                 " AND state IN ('pending', 'succeeded')", (payment_id,)).fetchone()[0]
            left = p["amount_captured"] - taken
            amount = left if amount is None else amount
            if amount > left or amount <= 0:
                raise ApiError(409, "amount_too_large", f"At most {rules.format_minor(left, p['currency'])} of this "
                               "payment can still be refunded.", "amount")
            refund_id, now = new_id("re"), _now()
            conn.execute("INSERT INTO refunds (id, payment, amount, currency, reason, state, due_at, created, updated)"
                         " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                         (refund_id, payment_id, amount, p["currency"], reason,
                          time.time() + self.settings.refund_delay, now, now))
            snapshot = self.refund_json(row(conn, "refunds", refund_id))
            self.emit(conn, "refund.pending", snapshot)
            return snapshot

    def get_refund(self, refund_id: str) -> dict:
        with self.store.tx() as conn:
            r = row(conn, "refunds", refund_id)
            if r is None:
                raise ApiError(404, "resource_missing", f"No refund {refund_id!r}.")
            return self.refund_json(r)

    # ------------------------------------------------------------ work that settles later

    def settle_due(self, now: float | None = None) -> dict:
        """Settle the mobile money payments and refunds due by ``now`` (None: all of them)."""
        due = float("inf") if now is None else now
        settled = {"payments": [], "refunds": []}
        with self.store.tx() as conn:
            for p in conn.execute("SELECT * FROM payments WHERE state = 'processing' AND due_at <= ? ORDER BY due_at",
                                  (due,)).fetchall():
                method = row(conn, "methods", p["method"])
                conn.execute("UPDATE payments SET due_at = NULL WHERE id = ?", (p["id"],))
                if method["scenario"] == "insufficient_funds":
                    self._set_payment(conn, p["id"], state="failed", failure_code="insufficient_funds",
                                      failure_message="The mobile money account has insufficient funds.")
                else:
                    self._authorized(conn, p["id"])
                settled["payments"].append(p["id"])
            for r in conn.execute("SELECT * FROM refunds WHERE state = 'pending' AND due_at <= ? ORDER BY due_at",
                                  (due,)).fetchall():
                fails = rules.refund_fails(r["amount"])
                conn.execute("UPDATE refunds SET state = ?, failure_reason = ?, due_at = NULL, updated = ? WHERE id = ?",
                             ("failed" if fails else "succeeded", "declined_by_bank" if fails else None, _now(), r["id"]))
                snapshot = self.refund_json(row(conn, "refunds", r["id"]))
                self.emit(conn, f"refund.{snapshot['state']}", snapshot)
                settled["refunds"].append(r["id"])
        return settled
