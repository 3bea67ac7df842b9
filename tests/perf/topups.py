"""Top-up confirmations per second: the path from a provider's webhook to a credited wallet,
beside pgbench in the same run.

The sandbox payment provider runs as its own process (``python -m portal.sandbox.psp``, chaos
off), as under ``make run``. Before the load, ``TOPUP_PAYMENTS`` top-ups of scale students are
started through the payments service (the provider makes each payment and its hosted page)
and paid on that page with the test card that succeeds, by plain form posts as a browser
would. The provider's webhooks go to a local receiver that keeps them; the ``payment.succeeded``
events, one per payment, are then signed afresh (the signature's timestamp must be recent) and
sent by wrk to the portal's webhook route under gunicorn, each event once, from
``TRANSFER_CLIENTS`` connections for ``TRANSFER_SECONDS``. Each delivery is verified, stored
once, the payment asked of the provider (one HTTP call to the sandbox) and applied: the wallet
credited on the ledger from the provider's clearing wallet with the provider's fee as its own
leg, the receipt queued, all in one transaction.

The rate counted is payments credited during the load (read from the database afterwards)
over the load's duration; a run that sends every prepared event before its end says so, and
the rate is then a floor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.perf import load, settings
from tests.perf.settings import HOST
from tests.perf.transfers import Transfers, _lua

#: The test card the sandbox provider always accepts.
CARD = {"number": "4242424242424242", "expiry": "12/39", "cvc": "123", "name": "Bench Payer"}
WEBHOOK_PATH = "/wallet/payments/webhooks/sandbox"


@contextlib.contextmanager
def sandbox_provider():
    """The sandbox provider in a process of its own, its webhooks kept by a local receiver;
    yields ``(settings for the portal, receiver)``."""
    from tests.money.payments.sandbox_server import WebhookReceiver
    from tests.perf.servers import _free_port

    receiver = WebhookReceiver()
    port = _free_port()
    config = {"SANDBOX_PSP_URL": f"http://{HOST}:{port}", "SANDBOX_PSP_API_KEY": "sk_sandbox_" + secrets.token_hex(12),
              "SANDBOX_PSP_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(12)}
    with tempfile.TemporaryDirectory(prefix="azora-bench-psp-") as tmp:
        env = {**os.environ, "SANDBOX_PSP_API_KEY": config["SANDBOX_PSP_API_KEY"],
               "SANDBOX_PSP_WEBHOOK_SECRET": config["SANDBOX_PSP_WEBHOOK_SECRET"]}
        # Its log goes to a file: a pipe nobody reads fills up and blocks the provider mid-request.
        log_path = Path(tmp) / "psp.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "portal.sandbox.psp", "--host", HOST, "--port",
                                        str(port), "--db", str(Path(tmp) / "psp.sqlite3"), "--webhook-url",
                                        receiver.url, "--no-chaos"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=log_file)
        try:
            deadline = time.monotonic() + 30
            while not _listening(port) and time.monotonic() < deadline:
                if process.poll() is not None:
                    raise SystemExit(f"the sandbox provider stopped: {log_path.read_text()[-500:]}")
                time.sleep(0.2)
            yield config, receiver
        finally:
            process.terminate()
            process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def _payers(app, count: int) -> list[uuid.UUID]:
    """Scale students who may top up (active, unblocked, no frozen USD wallet)."""
    from sqlalchemy import select

    from portal.accounts.models import Role, User, UserStatus
    from portal.db import db, unit_of_work
    from portal.db.context import Actor

    with app.app_context(), unit_of_work(Actor.system("bench")):
        return list(db.session.scalars(
            select(User.id).where(User.email.like("scale%@azora.example"), User.role == Role.STUDENT,
                                  User.status == UserStatus.ACTIVE).order_by(User.email).limit(count)))


def _start(app, user_id: uuid.UUID) -> str | None:
    """One top-up of 5.00 USD by card for ``user_id`` through the payments service; the
    provider's payment id, or None when the service refused it."""
    from portal.accounts.models import User
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.errors import DomainError
    from portal.money.payments import services

    with app.app_context():
        try:
            with unit_of_work(Actor.system("bench")):
                role = db.session.get(User, user_id).role.value  # read before the commit expires it
            with unit_of_work(Actor.for_user(user_id, role)):
                user = db.session.get(User, user_id)
                payment = services.start_top_up(user, "5.00", "USD", "card", idempotency_key=uuid.uuid4().hex,
                                                return_url="http://127.0.0.1/return")
                return payment.provider_ref
        except DomainError:
            return None
        finally:
            db.session.remove()


def prepare(app, provider: dict, receiver, count: int) -> tuple[list[bytes], int]:
    """Start and pay ``count`` top-ups; returns the ``payment.succeeded`` events' bodies (one per
    payment) and how many top-ups the service refused."""
    app.config.update(provider)
    payers = _payers(app, count)
    with ThreadPoolExecutor(max_workers=4) as pool:
        refs = list(pool.map(lambda user_id: _start(app, user_id), payers))
    paid = [ref for ref in refs if ref]

    def pay(ref: str) -> None:
        answer = requests.post(f"{provider['SANDBOX_PSP_URL']}/pay/{ref}", data=CARD, allow_redirects=False,
                               timeout=30)
        if answer.status_code not in (302, 303):
            raise SystemExit(f"paying {ref} on the sandbox's page answered {answer.status_code}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(pay, paid))
    wanted = set(paid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        bodies = {}
        for event in receiver.events():
            obj = event.get("data", {}).get("object", {})
            if event.get("type") == "payment.succeeded" and obj.get("id") in wanted:
                bodies[obj["id"]] = json.dumps(event, separators=(",", ":")).encode()
        if len(bodies) == len(wanted):
            break
        time.sleep(0.5)
    return list(bodies.values()), len(refs) - len(paid)


LUA_SCRIPT = """-- Generated by tests/perf/topups.py: each payment's webhook once, split among the threads.
local events = {
%(events)s
}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end

function init(args)
  sent, statuses = 0, {}
  step = %(threads)d
end

function request()
  local index = number + sent * step
  sent = sent + 1
  if index > #events then
    return wrk.format("GET", "/healthz")  -- every event sent: idle on the health check
  end
  local event = events[index]
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json",
    ["Sandbox-Signature"] = event.signature}, event.body)
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


def _credited(app, since) -> int:
    from sqlalchemy import func, select

    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.payments.models import Payment

    with app.app_context(), unit_of_work(Actor.system("bench")):
        return db.session.scalar(select(func.count()).select_from(Payment)
                                 .where(Payment.credited_at >= since))


def confirmations(app, port: int, provider: dict, bodies: list[bytes]) -> Transfers:
    """Send each prepared webhook once to the portal under load; count the payments credited."""
    from portal.db.base import utcnow
    from portal.sandbox.psp.webhooks import sign

    threads = max(1, min(settings.WRK_THREADS, settings.TRANSFER_CLIENTS))  # as load.run_wrk runs it
    stamp = int(time.time())
    events = ",\n".join(f"  {{body = {_lua(body.decode())}, "
                        f"signature = {_lua(sign(provider['SANDBOX_PSP_WEBHOOK_SECRET'], body, stamp))}}}"
                        for body in bodies)
    since = utcnow()
    seconds, connections = settings.TRANSFER_SECONDS, settings.TRANSFER_CLIENTS
    if not load.WRK:
        return Transfers("top-up webhook -> credited (HTTP)", 0, 0, 0, 0.0, float("nan"), float("nan"), 0.0,
                         "not measured: needs wrk")
    with tempfile.TemporaryDirectory(prefix="azora-bench-wrk-") as tmp:
        script = Path(tmp) / "webhooks.lua"
        script.write_text(LUA_SCRIPT % {"events": events, "threads": threads, "path": WEBHOOK_PATH})
        result = load.run_wrk(f"http://{HOST}:{port}{WEBHOOK_PATH}", seconds, connections, script=script)
    statuses: dict[int, int] = {}
    for line in result.script_lines:
        for status, count in re.findall(r"(\d+)=(\d+)", line) if line.startswith("statuses") else []:
            statuses[int(status)] = statuses.get(int(status), 0) + int(count)
    credited = _credited(app, since)
    sent = min(len(bodies), sum(count for status, count in statuses.items()))
    exhausted = sent >= len(bodies)
    note = f"{len(bodies)} events prepared, {connections} connections"
    if exhausted:
        note += "; every event was sent before the end: the rate is a floor"
    failed = sum(count for status, count in statuses.items() if status != 200)
    return Transfers("top-up webhook -> credited (HTTP)", credited, 0, failed, credited / result.seconds,
                     result.p50_ms, result.p99_ms, 0.0, note, statuses)
