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
   in-process through ``app.test_client()`` on the same database).

It prints figures and asserts nothing about time. Settings, from the environment:

- ``BENCH_STUDENTS``: students in the demo data, default 2000 (from 500 on, the demo data
  also holds the large catalog and the large course);
- ``BENCH_REQUESTS``: requests per page, default 800;
- ``BENCH_EXPORT_REQUESTS``: requests of the gradebook CSV export, default 80;
- ``BENCH_CLIENTS``: concurrent clients, default 16;
- ``BENCH_WORKERS`` / ``BENCH_THREADS``: gunicorn workers (default: 2 per core, 2 to 4) and
  threads per worker (default 2).
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATABASE = "azora_bench"
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
    pages = PAGES + learning_pages(app)
    statements, export_lines = count_statements_per_page(app, password, pages)
    print(f"  ready in {time.monotonic() - started:.1f} s", flush=True)

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
    if problems:
        print(f"\ngunicorn logged {len(problems)} error line(s), e.g.: {problems[0]}")
    failed = sum(sum(r.errors.values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
