"""The bench's settings, from the environment (the README's benchmark section lists them)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


#: Students in the demo data (from 500 on it also holds the large catalog and course).
STUDENTS = _int("BENCH_STUDENTS", 10_000)
DATABASE = os.environ.get("BENCH_DATABASE") or "azora_bench"
#: Seconds of load per page, after WARMUP_SECONDS of load whose figures are dropped.
SECONDS = _int("BENCH_SECONDS", 10)
WARMUP_SECONDS = _int("BENCH_WARMUP_SECONDS", 2)
#: Open connections of the load generator (wrk -c), and its threads (wrk -t).
CONNECTIONS = _int("BENCH_CONNECTIONS", 16)
WRK_THREADS = _int("BENCH_WRK_THREADS", 2)
#: gunicorn's settings, the same for the portal, hello world and Fortunes.
WORKERS = _int("BENCH_WORKERS", min(4, max(2, 2 * (os.cpu_count() or 1))))
THREADS = _int("BENCH_THREADS", 2)
WORKER_CLASS = "gthread"
#: Transfers: seconds per measurement (pgbench's -T), concurrent clients (pgbench's -c),
#: processes running ledger.post (default: as many as gunicorn workers), logged-in senders of
#: the HTTP transfers.
TRANSFER_SECONDS = _int("BENCH_TRANSFER_SECONDS", 10)
TRANSFER_CLIENTS = _int("BENCH_TRANSFER_CLIENTS", 16)
TRANSFER_PROCESSES = _int("BENCH_TRANSFER_PROCESSES", WORKERS)
TRANSFER_SENDERS = _int("BENCH_TRANSFER_SENDERS", 2 * TRANSFER_CLIENTS)
#: Top-ups started and paid before the webhook load (more than it can confirm in its seconds).
TOPUP_PAYMENTS = _int("BENCH_TOPUP_PAYMENTS", 1500)

#: The budgets the table checks (the speed issue; the design notes, "Budgets").
MIN_FORTUNES_RATIO = 0.5
MAX_P99_MS = 150.0
MAX_STATEMENTS = 12
MIN_LEDGER_RATIO = 0.5
MIN_HTTP_TRANSFER_RATIO = 0.25
