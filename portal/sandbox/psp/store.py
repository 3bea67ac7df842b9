"""The sandbox provider's state: one SQLite file, one connection guarded by a lock.

Every read and write goes through ``Store.tx()``: the lock is held and one SQLite transaction is
open for the whole block, so the API's threads, the settling thread and the webhook thread never
see half of a change.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, created INTEGER NOT NULL);
-- What is kept of a card: brand, last four, expiry, and the test scenario it decides by.
CREATE TABLE IF NOT EXISTS methods (
    id TEXT PRIMARY KEY, customer TEXT REFERENCES customers(id), kind TEXT NOT NULL,
    brand TEXT NOT NULL, last4 TEXT NOT NULL, exp_month INTEGER, exp_year INTEGER,
    scenario TEXT NOT NULL, saved INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL, method_kind TEXT NOT NULL,
    state TEXT NOT NULL, capture_method TEXT NOT NULL, amount_captured INTEGER NOT NULL DEFAULT 0,
    fee INTEGER, return_url TEXT NOT NULL, description TEXT NOT NULL, metadata TEXT NOT NULL,
    customer TEXT, method TEXT REFERENCES methods(id), save_method INTEGER NOT NULL DEFAULT 0,
    next_action TEXT, failure_code TEXT, failure_message TEXT,
    due_at REAL, created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY, payment TEXT NOT NULL REFERENCES payments(id), amount INTEGER NOT NULL,
    currency TEXT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL, failure_reason TEXT,
    due_at REAL, created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, type TEXT NOT NULL, created INTEGER NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL REFERENCES events(id),
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, last_status INTEGER, last_error TEXT, delivered_at REAL);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS refunds_payment ON refunds (payment);
"""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class Store:
    def __init__(self, path: str):
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
        self._depth = 0

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """The connection, inside one transaction (nested blocks join the outer one)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def row(conn: sqlite3.Connection, table: str, id_: str) -> sqlite3.Row | None:
    return conn.execute(f"SELECT * FROM {table} WHERE id = ?", (id_,)).fetchone()  # table: a fixed name from this package


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
