"""Card authorizations per second, beside ``pgbench`` in the money table of the same run.

``POST /wallet/cards/network/authorize`` through gunicorn, driven by wrk with a generated Lua
script, as a card network sends them: each request one of ``CARD_MESSAGES`` messages signed
before the load starts (HMAC-SHA256 over ``"<timestamp>." + body`` under the portal's
``CARD_NETWORK_SECRET``, the way ``portal.money.cards.network.verify`` checks it), each with a
network id of its own and a recent timestamp, for one of ``CARD_HOLDERS`` cards of funded,
verified scale students (0.01 to 2.00 USD at a real-looking merchant). Every wrk thread takes the
messages in its own order; one sent again (a run longer than the list) is answered as a
duplicate, and counted apart.

The measured run follows ``WARMUP_SECONDS`` of the same load with messages of its own, whose
figures are dropped (as for the pages). An answer 200 that approves is done; 200 that declines
(e.g. not enough money) is refused; anything else a failure. The cards, their holders' level-2 verification and USD funds are made
once through the services and kept for later runs (nicknamed ``bench``).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from tests.perf import load, settings
from tests.perf.settings import HOST
from tests.perf.transfers import Transfers, _lua

PATH = "/wallet/cards/network/authorize"
#: Cards bought with (authorizations on one card queue on its row lock, as they should).
CARD_HOLDERS = int(os.environ.get("BENCH_CARD_HOLDERS") or 200)
#: Messages signed before the load: enough for the run at a few thousand a second.
CARD_MESSAGES = int(os.environ.get("BENCH_CARD_MESSAGES") or 3000 * settings.TRANSFER_SECONDS)
#: What each holder's USD wallet is topped up to, so the bench approves rather than declines.
FUNDS = Decimal("100000")
NICKNAME = "bench"
MERCHANTS = (("Campus Cafe", "5812", "US"), ("University Bookstore", "5942", "US"), ("Metro Transit", "4111", "US"),
             ("Corner Grocery", "5411", "US"), ("Online Course Market", "8299", "GB"), ("Streaming Plus", "4899", "US"))


def bench_cards(app, count: int = CARD_HOLDERS) -> list[tuple[str, int, int, str]]:
    """``(number, exp_month, exp_year, security_code)`` of ``count`` live bench cards of scale
    students, each holder verified at level 2 with ``FUNDS`` USD available; made when missing."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.compliance.kyc import queries as kyc
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.cards import pan, services
    from portal.money.cards.models import CardState, VirtualCard
    from portal.money.wallets import ledger
    from portal.money.wallets.models import SystemWallet, TransactionType
    from tests.compliance.factories import verify

    with app.app_context(), unit_of_work(Actor.system("bench")):
        cards = list(db.session.scalars(select(VirtualCard).where(VirtualCard.nickname == NICKNAME,
                                                                  VirtualCard.state == CardState.ACTIVE)
                                        .order_by(VirtualCard.id).limit(count)))
        if len(cards) < count:
            have = {card.user_id for card in cards}
            students = db.session.scalars(select(User).where(User.email.like("scale%@azora.example"))
                                          .order_by(User.email).limit(count + len(have)))
            for user in students:
                if len(cards) >= count:
                    break
                if user.id in have:
                    continue
                if kyc.effective_level(user.id) < services.CARD_LEVEL:
                    verify(user, services.CARD_LEVEL)
                cards.append(services.issue_card(user, "USD", nickname=NICKNAME))
        with ledger.as_ledger():
            deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
            legs = []
            for card in cards:
                wallet = ledger.user_wallet(card.user_id, "USD")
                if wallet.available < FUNDS / 2:
                    legs.append(ledger.Leg(deposits, wallet, FUNDS - wallet.available, TransactionType.DEPOSIT,
                                           "Bench card funds", {}))
            for start in range(0, len(legs), 100):
                ledger.post(legs[start:start + 100])
        found = []
        for card in cards:
            number = pan.unseal(card.id, card.pan_encrypted)
            found.append((number, card.exp_month, card.exp_year,
                          pan.security_code(number, card.exp_month, card.exp_year)))
        return found


def signed_messages(secret: str, cards: list[tuple[str, int, int, str]], count: int = CARD_MESSAGES,
                    seed: int | None = None) -> list[tuple[str, str]]:
    """``count`` authorization messages, ``(body, signature header)`` each: distinct network ids,
    signed now (the portal's replay window is minutes: sign right before the load)."""
    from portal.money.cards.network import sign

    rng = random.Random(seed)
    run = secrets.token_hex(6)
    stamp = int(time.time())
    messages = []
    for n in range(count):
        number, month, year, cvv = rng.choice(cards)
        name, mcc, country = rng.choice(MERCHANTS)
        cents = rng.randint(1, 200)
        body = json.dumps({"id": f"bench_{run}_{n}", "amount": f"{cents // 100}.{cents % 100:02d}", "currency": "USD",
                           "card": {"number": number, "exp_month": month, "exp_year": year, "cvv": cvv},
                           "merchant": {"name": name, "mcc": mcc, "country": country}}, separators=(",", ":"))
        messages.append((body, sign(body.encode(), secret, stamp)))
    return messages


#: The wrk script: ``messages`` is filled in. Thread ``k`` of ``n`` sends messages k, k+n, k+2n ...
#: (so no two threads send one message), wrapping round at the end of the list.
LUA_SCRIPT = """-- Generated by tests/perf/cards.py: signed card authorizations.
local messages = {
%(messages)s
}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end

function init(args)
  nextone = number or 1
  statuses, approved, declined, duplicates = {}, 0, 0, 0
end

function request()
  local message = messages[((nextone - 1) %% #messages) + 1]
  nextone = nextone + %(stride)d
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json",
    ["%(header)s"] = message.sig}, message.body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    if string.find(body, '"duplicate":true', 1, true) then duplicates = duplicates + 1
    elseif string.find(body, '"approved":true', 1, true) then approved = approved + 1
    else declined = declined + 1 end
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local line = "statuses"
    for status, count in pairs(thread:get("statuses")) do line = line .. " " .. status .. "=" .. count end
    io.write(line .. "\\n")
    io.write("answers approved=" .. thread:get("approved") .. " declined=" .. thread:get("declined")
      .. " duplicate=" .. thread:get("duplicates") .. "\\n")
  end
end
"""


def lua_script(messages: list[tuple[str, str]], stride: int) -> str:
    from portal.money.cards.network import SIGNATURE_HEADER

    return LUA_SCRIPT % {
        "messages": ",\n".join(f"  {{body = {_lua(body)}, sig = {_lua(sig)}}}" for body, sig in messages),
        "stride": stride, "path": PATH, "header": SIGNATURE_HEADER}


def parse_answers(lines: list[str]) -> tuple[dict[int, int], dict[str, int]]:
    """The statuses and the answers (approved, declined, duplicate) the script printed, summed."""
    statuses: dict[int, int] = {}
    answers = {"approved": 0, "declined": 0, "duplicate": 0}
    for line in lines:
        if line.startswith("statuses"):
            for status, count in re.findall(r"(\d+)=(\d+)", line):
                statuses[int(status)] = statuses.get(int(status), 0) + int(count)
        elif line.startswith("answers"):
            for name, count in re.findall(r"(\w+)=(\d+)", line):
                answers[name] += int(count)
    return statuses, answers


def _load(port: int, messages: list[tuple[str, str]], seconds: int, connections: int) -> load.LoadResult:
    threads = max(1, min(settings.WRK_THREADS, connections))
    with tempfile.TemporaryDirectory(prefix="azora-bench-cards-") as tmp:
        script = Path(tmp) / "authorize.lua"
        script.write_text(lua_script(messages, threads))
        return load.run_wrk(f"http://{HOST}:{port}{PATH}", seconds, connections, script=script)


def http_authorizations(port: int, app) -> Transfers | None:
    """Signed authorizations for ``TRANSFER_SECONDS`` from ``TRANSFER_CLIENTS`` connections; None
    (with a line saying why) without wrk, which alone can send a prepared body per request."""
    if not load.WRK:
        print("wrk is not installed: card authorizations not measured.")
        return None
    cards = bench_cards(app)
    if not cards:
        print("No scale students to hold cards: card authorizations not measured.")
        return None
    seconds, connections = settings.TRANSFER_SECONDS, settings.TRANSFER_CLIENTS
    print(f"Card authorizations through HTTP: {connections} connections, {len(cards)} cards, {seconds} s "
          f"after {settings.WARMUP_SECONDS} s of warm-up ...", flush=True)
    secret = app.config["CARD_NETWORK_SECRET"]
    if settings.WARMUP_SECONDS > 0:
        # As the pages are measured: the workers' first authorizations (connections opened,
        # statements prepared, the card float's shards made) are dropped, with messages of their own.
        _load(port, signed_messages(secret, cards, 3000 * settings.WARMUP_SECONDS), settings.WARMUP_SECONDS,
              connections)
    messages = signed_messages(secret, cards, CARD_MESSAGES)
    result = _load(port, messages, seconds, connections)
    statuses, answers = parse_answers(result.script_lines)
    if result.socket_errors:
        statuses[0] = sum(result.socket_errors.values())  # 0: no answer at all
    statuses = {status: count for status, count in statuses.items() if count}
    done, refused = answers["approved"], answers["declined"] + answers["duplicate"]
    met = "met" if result.p99_ms < 100 else "MISSED"
    return Transfers("POST card authorize (HTTP)", done, refused, sum(statuses.values()) - statuses.get(200, 0),
                     done / result.seconds, result.p50_ms, result.p99_ms, settings.MIN_HTTP_TRANSFER_RATIO,
                     f"{len(cards)} cards, {len(messages)} pre-signed messages, {connections} connections; "
                     f"{answers['duplicate']} duplicates; p99 under 100 ms (the issue's budget): {met}", statuses)
