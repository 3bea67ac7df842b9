"""Webhooks: each event POSTed as JSON to the webhook URL, signed, retried until a 2xx.

The signature header is ``Sandbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``f"{t}.{body}"`` with the webhook secret; ``t`` is the time of that attempt. A failed attempt
(no answer, or not a 2xx) is tried again after ``retry_base`` seconds, doubling each time up to
``retry_cap``, at most ``max_attempts`` times in all.

Chaos (``Settings.chaos``, a seeded random): an event may be delivered twice, or held back
``chaos_delay_seconds`` so events after it arrive first, as real providers' webhooks do.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request

from portal.sandbox.psp.settings import Settings
from portal.sandbox.psp.store import Store

SIGNATURE_HEADER = "Sandbox-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Dispatcher:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._random = random.Random(settings.chaos_seed)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enqueue(self, conn: sqlite3.Connection, event_id: str) -> None:
        """Plan the delivery of a new event (inside the transaction that recorded it)."""
        if not self.settings.webhook_url:
            return
        now = time.time()
        first = now
        copies = 1
        if self.settings.chaos:
            if self._random.random() < self.settings.chaos_delay_rate:
                first = now + self.settings.chaos_delay_seconds
            if self._random.random() < self.settings.chaos_duplicate_rate:
                copies = 2
        for copy in range(copies):
            conn.execute("INSERT INTO deliveries (event, next_attempt_at) VALUES (?, ?)",
                         (event_id, first + copy * self.settings.poll_interval))
        self._wake.set()

    def deliveries(self) -> list[dict]:
        with self.store.tx() as conn:
            rows = conn.execute("SELECT d.*, e.type FROM deliveries d JOIN events e ON e.id = d.event"
                                " ORDER BY d.id DESC LIMIT 200").fetchall()
        return [{"id": d["id"], "event": d["event"], "type": d["type"], "state": d["state"],
                 "attempts": d["attempts"], "next_attempt_at": d["next_attempt_at"], "last_status": d["last_status"],
                 "last_error": d["last_error"], "delivered_at": d["delivered_at"]} for d in rows]

    def flush(self) -> None:
        """Make every pending delivery due now (a test helper)."""
        with self.store.tx() as conn:
            conn.execute("UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending'", (time.time(),))
        self._wake.set()

    def deliver_due(self) -> int:
        with self.store.tx() as conn:
            due = conn.execute("SELECT d.id, d.attempts, e.body FROM deliveries d JOIN events e ON e.id = d.event"
                               " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
                               " ORDER BY d.next_attempt_at, d.id LIMIT 20", (time.time(),)).fetchall()
        for delivery in due:
            status, error = self._post(delivery["body"].encode())
            attempts = delivery["attempts"] + 1
            with self.store.tx() as conn:
                if status is not None and 200 <= status < 300:
                    conn.execute("UPDATE deliveries SET state = 'delivered', attempts = ?, last_status = ?,"
                                 " last_error = NULL, delivered_at = ? WHERE id = ?",
                                 (attempts, status, time.time(), delivery["id"]))
                    continue
                wait = min(self.settings.retry_cap, self.settings.retry_base * 2 ** (attempts - 1))
                state = "failed" if attempts >= self.settings.max_attempts else "pending"
                conn.execute("UPDATE deliveries SET state = ?, attempts = ?, last_status = ?, last_error = ?,"
                             " next_attempt_at = ? WHERE id = ?",
                             (state, attempts, status, error, time.time() + wait, delivery["id"]))
        return len(due)

    def _post(self, body: bytes) -> tuple[int | None, str | None]:
        request = urllib.request.Request(  # noqa: S310 (the configured http(s) webhook URL)
            self.settings.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "sandbox-psp-webhooks",
                     SIGNATURE_HEADER: sign(self.settings.webhook_secret, body, int(time.time()))})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.webhook_timeout) as answer:  # noqa: S310
                return answer.status, None
        except urllib.error.HTTPError as error:
            return error.code, f"HTTP {error.code}"
        except (OSError, ValueError) as error:
            return None, str(error)[:200]

    # ------------------------------------------------------------ the background thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-psp-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_due()
            except sqlite3.Error:
                busy = 0  # the store is closing; the loop ends with the stop flag
            if not busy:
                self._wake.wait(self.settings.poll_interval)
                self._wake.clear()
