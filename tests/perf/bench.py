"""Benchmark: every main page beside hello world and TechEmpower's "Fortunes", served by gunicorn
with the same settings and loaded with ``wrk``, and money transfers beside ``pgbench``, in one run.

``make bench`` (``python -m tests.perf.bench``):

1. reuses the database ``azora_bench`` on the embedded server, or builds it (migrations, then
   ``seed-demo --scale BENCH_STUDENTS``, default 10,000 students and a million ledger rows);
2. finds the ids the pages need (``pages.py``, the one list of pages) and counts the SQL
   statements one request to each page sends, in this process through ``app.test_client()``;
3. serves hello world (``baselines/hello.py``), Fortunes (``baselines/fortunes.py``, on a scratch
   database of the same server) and the portal (``wsgi:app``), one after the other, each with
   ``servers.serve``: the same gunicorn workers, threads and worker class;
4. checks that each page answers a plain GET with 200 (not a redirect to the login page), then
   loads it with ``wrk -t2 -c16 -d<BENCH_SECONDS>s --latency`` (after a short warm-up) and checks
   it once more;
5. measures transfers (``transfers.py``): confirmed ``POST /wallet/send`` through gunicorn with
   wrk, ``ledger.post`` from several processes, and pgbench's TPC-B-like run; then the ledger
   must verify; and top-up confirmations (``topups.py``): webhooks of top-ups paid on the sandbox
   provider, sent by wrk to the portal's webhook route, counted as wallets credited;
6. times the billing renewal job over 10,000 subscriptions (``billing.py``): invoices/s; and the
   lending daily penalty accrual over 10,000 late loans in a scratch database (``lending.py``):
   loans/s, beside pgbench's rate; the cost of event capture on a page and on a commit that
   records events (``analytics.py``); and the API's transactions list (``api.py``) right after
   the HTML wallet history, with a token made for the run;
7. prints the table: req/s, p50 and p99, req/s as a multiple of Fortunes', whether p99 is under
   150 ms, and statements per page; then the budgets missed.

It exits non-zero when a page answers errors (or not 200), a server logs errors, a transfer fails
or the ledger does not verify; figures outside the budgets are printed, not failed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.perf import analytics as analytics_bench
from tests.perf import api as api_bench
from tests.perf import billing as billing_bench
from tests.perf import cards, load, pages, servers, settings, topups, transfers
from tests.perf import lending as lending_bench
from tests.perf.database import scratch_database
from tests.perf.load import LoadResult


@dataclass
class Row:
    label: str
    result: LoadResult
    statements: int | None = None
    baseline: bool = False


def measure(server: servers.Server, path: str, cookies: dict[str, str]) -> LoadResult:
    load.load_page(server.port, path, cookies, settings.WARMUP_SECONDS)  # warm-up: figures dropped
    return load.load_page(server.port, path, cookies, settings.SECONDS)


def describe_generator() -> str:
    if load.WRK:
        version = subprocess.run([load.WRK, "--version"], capture_output=True, text=True).stdout.split(" [")[0]
        return (f"{version}: -t{settings.WRK_THREADS} -c{settings.CONNECTIONS} -d{settings.SECONDS}s --latency "
                f"(after {settings.WARMUP_SECONDS} s of warm-up)")
    return ("NO wrk ON PATH: Python threads instead (http.client). They take CPU from the server they "
            "measure on the same cores, so every figure is depressed; install wrk (apt install wrk).")


def run_baselines(owner_url: str, failures: list[str]) -> list[Row]:
    """Hello world, then Fortunes on a scratch database owned by the bench database's owner
    (an ordinary role), both under gunicorn with the portal's settings."""
    from sqlalchemy.engine import make_url

    from portal.db.urls import libpq_url, with_user
    from tests.perf.baselines.fortunes import load_fortunes

    rows = []
    with servers.serve("hello", "tests.perf.baselines.hello:app", "/") as hello:
        rows.append(report(Row("hello world", measure(hello, "/", {}), baseline=True)))
    failures += [f"hello world's server logged: {line}" for line in hello.problems]
    owner = make_url(owner_url)
    with scratch_database("fortunes", owner.username) as admin_url:
        url = libpq_url(with_user(admin_url, owner.username, owner.password))
        load_fortunes(url)
        env = {"FORTUNES_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
        with servers.serve("fortunes", "tests.perf.baselines.fortunes:app", "/fortunes", env) as fortunes:
            status, _, body = load.Client(fortunes.port).request("GET", "/fortunes")
            if status != 200 or b"&lt;script&gt;" not in body or b"Additional fortune added" not in body:
                raise SystemExit(f"Fortunes does not answer as the test says: {status} {body[:300]!r}")
            rows.append(report(Row("Fortunes", measure(fortunes, "/fortunes", {}), baseline=True)))
    failures += [f"Fortunes' server logged: {line}" for line in fortunes.problems]
    return rows


def report(row: Row) -> Row:
    """Print one page's figures as soon as they are measured (the table comes at the end)."""
    r = row.result
    print(f"  {row.label:<32} {r.rps:>8.1f} req/s  p50 {r.p50_ms:>7.1f} ms  p99 {r.p99_ms:>7.1f} ms"
          + (f"  ERRORS {r.errors}" if r.errors else ""), flush=True)
    return row


def print_table(rows: list[Row]) -> list[str]:
    """The table; returns the budgets missed."""
    fortunes = next((r.result.rps for r in rows if r.label == "Fortunes"), None)
    width = max(len(r.label) for r in rows)
    header = (f"{'page':<{width}}  {'req/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  {'x Fortunes':>10}  "
              f"{'p99<150ms':>9}  {'statements':>10}")
    print(header)
    print("-" * len(header))
    missed = []
    for row in rows:
        r = row.result
        ratio = r.rps / fortunes if fortunes else float("nan")
        fast = r.p99_ms < settings.MAX_P99_MS
        statements = "-" if row.statements is None else str(row.statements)
        print(f"{row.label:<{width}}  {r.rps:>8.1f}  {r.p50_ms:>7.1f}  {r.p99_ms:>7.1f}  {ratio:>10.2f}  "
              f"{'yes' if fast else 'NO':>9}  {statements:>10}" + (f"  {r.errors} ERRORS" if r.errors else ""))
        over = [] if row.baseline else [
            *([f"{ratio:.2f} x Fortunes"] if ratio < settings.MIN_FORTUNES_RATIO else []),
            *([f"p99 {r.p99_ms:.0f} ms"] if not fast else []),
            *([f"{row.statements} statements"] if (row.statements or 0) > settings.MAX_STATEMENTS else [])]
        if over:
            missed.append(f"{row.label}: {', '.join(over)}")
    return missed


def print_transfers(results: list[transfers.Transfers], pgbench_tps: float | None, pgbench_label: str) -> list[str]:
    """The transfers beside pgbench; returns the budgets missed."""
    print(f"\nMoney transfers, {settings.TRANSFER_SECONDS} s each, beside pgbench on the same server")
    header = (f"{'measure':<29}  {'done':>6}  {'per s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'refused':>7}  "
              f"{'failed':>6}  {'x pgbench':>9}  {'budget':>6}")
    print(header)
    print("-" * len(header))
    if pgbench_tps:
        print(f"{'pgbench tpcb-like':<29}  {'':>6}  {pgbench_tps:>7.1f}  {'':>7}  {'':>7}  {'':>7}  {'':>6}  {1.0:>9.2f}")
    missed = []
    for t in results:
        ratio = t.rate / pgbench_tps if pgbench_tps else float("nan")
        print(f"{t.label:<29}  {t.done:>6}  {t.rate:>7.1f}  {t.p50_ms:>7.1f}  {t.p99_ms:>7.1f}  {t.refused:>7}  "
              f"{t.failed:>6}  {ratio:>9.2f}  {t.budget:>6}")
        if pgbench_tps and ratio < t.budget:
            missed.append(f"{t.label}: {ratio:.2f} x pgbench")
    print(f"  pgbench: {pgbench_label}")
    for t in results:
        print(f"  {t.label}: {t.note}" + (f"; answers by status {dict(sorted(t.statuses.items()))}" if t.statuses else ""))
    return missed


def main() -> int:
    os.chdir(settings.PROJECT_ROOT)
    started = time.monotonic()
    print(f"Bench: {settings.STUDENTS} students, database {settings.DATABASE}; {servers.gunicorn_settings()} "
          f"for every server\nLoad: {describe_generator()}", flush=True)
    ready = pages.prepare()
    owner_url, app_url, app, password = ready.owner_url, ready.app_url, ready.app, ready.password
    learner, accounts, clients, page_list = ready.learner, ready.accounts, ready.clients, ready.pages
    statements = pages.count_statements(app, clients, page_list)
    print(f"  {len(page_list)} pages, statements counted; learner {learner}; ready in "
          f"{time.monotonic() - started:.0f} s", flush=True)

    failures: list[str] = []
    rows = run_baselines(owner_url, failures)
    results: list[transfers.Transfers] = []
    portal_env = {"AZORA_ENV": "development", "DATABASE_URL": app_url, "MIGRATION_DATABASE_URL": owner_url,
                  "SECRET_KEY": os.urandom(24).hex(), "DB_POOL_SIZE": str(max(settings.THREADS, 2)),
                  "DB_MAX_OVERFLOW": str(max(settings.THREADS, 2)), "PYTHONUNBUFFERED": "1", **api_bench.LIMITS}
    provider = contextlib.ExitStack()
    psp, receiver = provider.enter_context(topups.sandbox_provider())
    portal_env.update(psp)
    print(f"Top-ups: {settings.TOPUP_PAYMENTS} started and paid on the sandbox provider's page ...", flush=True)
    webhooks, refused_topups = topups.prepare(app, psp, receiver, settings.TOPUP_PAYMENTS)
    print(f"  {len(webhooks)} paid, their webhooks kept; {refused_topups} refused by the payments service",
          flush=True)
    with provider, servers.serve("portal", "wsgi:app", "/healthz", portal_env) as portal:
        sessions = {None: {}, **{who: load.log_in(portal.port, email, password) for who, email in accounts.items()}}
        for page, path in page_list:
            cookies = sessions[page.who]
            problem = pages.check_answers(portal.port, path, cookies)
            if problem:
                failures.append(f"{page.label}: GET {path} as {page.who or 'anonymous'} answered {problem}: not measured")
                print(f"  !! {failures[-1]}", flush=True)
                continue
            row = report(Row(page.label, measure(portal, path, cookies), statements[page.label]))
            rows.append(row)
            if row.result.errors:
                failures.append(f"{page.label}: {row.result.bad_answers} answers not 2xx/3xx, socket errors "
                                f"{row.result.socket_errors or 0}")
            problem = pages.check_answers(portal.port, path, cookies)
            if problem:
                failures.append(f"{page.label}: after the load GET {path} answered {problem}")
            if path == "/wallet/history" and page.who == "learner" and learner:
                # The same list through the JSON API, beside it (tests/perf/api.py).
                served = api_bench.make_token(app, learner, portal_env["SECRET_KEY"])
                counted = api_bench.make_token(app, learner, app.config["SECRET_KEY"])
                result = api_bench.measure(portal.port, served)
                if result is None:
                    print(f"  {api_bench.LABEL}: not measured without wrk", flush=True)
                else:
                    rows.append(report(Row(api_bench.LABEL, result, api_bench.count_statements(app, counted))))
                    if result.errors:
                        failures.append(f"{api_bench.LABEL}: {result.bad_answers} answers not 2xx/3xx")
        if "/wallet/send" in {rule.rule for rule in app.url_map.iter_rules() if "POST" in rule.methods}:
            print(f"Transfers through HTTP: {settings.TRANSFER_CLIENTS} connections, {settings.TRANSFER_SENDERS} "
                  f"logged-in senders, {settings.TRANSFER_SECONDS} s ...", flush=True)
            students = transfers.richest_scale_students(app, settings.TRANSFER_SENDERS + 200)
            results.append(transfers.http_transfers(portal.port, password, students[:settings.TRANSFER_SENDERS],
                                                    students))
        else:
            print("POST /wallet/send is not served by this build: HTTP transfers not measured.")
        print(f"Top-up confirmations: {len(webhooks)} webhooks to {topups.WEBHOOK_PATH}, "
              f"{settings.TRANSFER_CLIENTS} connections, {settings.TRANSFER_SECONDS} s ...", flush=True)
        results.append(topups.confirmations(app, portal.port, psp, webhooks))
        authorizations = cards.http_authorizations(portal.port, app)  # signed card authorizations (cards.py)
        if authorizations is not None:
            results.append(authorizations)
    failures += [f"the portal's server logged: {line}" for line in portal.problems]

    wallets = transfers.funded_wallets(app)
    if len(wallets) >= 2:
        print(f"Transfers through ledger.post: {settings.TRANSFER_CLIENTS} threads in "
              f"{min(settings.TRANSFER_PROCESSES, settings.TRANSFER_CLIENTS)} processes, "
              f"{settings.TRANSFER_SECONDS} s, among {len(wallets)} funded wallets ...", flush=True)
        results.insert(0, transfers.service_transfers((owner_url, app_url), wallets))
    else:
        print("No funded scale wallets (no money at scale in the demo data): ledger.post not measured.")
    print(f"Billing renewal job over {billing_bench.SUBSCRIPTIONS:,} subscriptions ...", flush=True)
    renewals = billing_bench.renewals(app)
    print(f"Lending daily penalty accrual over {lending_bench.BENCH_LOANS:,} late loans ...", flush=True)
    accrual = lending_bench.accruals(lending_bench.BENCH_LOANS)
    print(f"Event capture: {analytics_bench.REQUESTS} requests with capture on and off ...", flush=True)
    capture = analytics_bench.capture_costs(app, clients["learner"], "/wallet/")
    capture.append(analytics_bench.logging_cost(app, clients["learner"], "/wallet/"))
    print("pgbench (TPC-B-like) on the same server ...", flush=True)
    pgbench_tps, pgbench_label = transfers.run_pgbench()

    print(f"\nPages at {settings.STUDENTS} students: {servers.gunicorn_settings()}, "
          f"{'wrk' if load.WRK else 'Python threads (figures depressed)'}\n")
    missed = print_table(rows)
    missed += print_transfers(results, pgbench_tps, pgbench_label)
    billing_bench.print_renewals(renewals)
    print(f"\nLending daily job over {lending_bench.BENCH_LOANS:,} late loans, beside pgbench on the same server")
    lending_bench.print_accruals(accrual, pgbench_tps)
    analytics_bench.print_costs(capture)
    failures += [f"{t.label}: {t.failed} failed" if t.failed else f"{t.label}: no transfer answered"
                 for t in results if t.failed or not t.done + t.refused]
    if not transfers.ledger_verifies(app):
        failures.append("the ledger does not verify")
    print(f"\nBudgets missed (pages: at least {settings.MIN_FORTUNES_RATIO} x Fortunes, p99 under "
          f"{settings.MAX_P99_MS:.0f} ms, at most {settings.MAX_STATEMENTS} statements; transfers: the ratio "
          "in the budget column): " + ("none" if not missed else "\n  " + "\n  ".join(missed)))
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
    print(f"\n(the whole run: {time.monotonic() - started:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
