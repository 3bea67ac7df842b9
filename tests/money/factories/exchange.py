"""Factories for the exchange tests: pairs, rates of a given age and source, funded wallets, and a
real HTTP server on 127.0.0.1 for the rate source adapter."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange.models import CurrencyPair, ExchangeRate, RateSource
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType, Wallet, WalletStatus


def make_pair(base: str = "USD", quote: str = "AZR", *, active: bool = True) -> CurrencyPair:
    pair = db.session.scalar(select(CurrencyPair).where(CurrencyPair.base_currency == base,
                                                        CurrencyPair.quote_currency == quote))
    if pair is None:
        pair = CurrencyPair(id=uuid.uuid4(), base_currency=base, quote_currency=quote, active=active)
        db.session.add(pair)
    pair.active = active
    db.session.flush()
    return pair


def make_rate(pair: CurrencyPair, rate: str | Decimal, *, source: RateSource = RateSource.MANUAL,
              age_seconds: float = 60, detail: str = "") -> ExchangeRate:
    row = ExchangeRate(id=uuid.uuid4(), pair_id=pair.id, rate=Decimal(rate), source=source, source_detail=detail,
                       observed_at=utcnow() - timedelta(seconds=age_seconds))
    db.session.add(row)
    db.session.flush()
    return row


def fund(user, code: str, amount: str | Decimal) -> Wallet:
    """Give ``user`` ``amount`` of ``code`` from the deposits wallet, through the ledger."""
    wallet = ledger.open_user_wallet(user.id, code)
    ledger.post([ledger.Leg(ledger.system_wallet(SystemWallet.DEPOSITS, code), wallet, Decimal(amount),
                            TransactionType.DEPOSIT, "Test deposit")])
    return wallet


def freeze(user, code: str) -> None:
    with ledger.as_ledger():
        wallet = ledger.open_user_wallet(user.id, code)
        wallet.status = WalletStatus.FROZEN
        db.session.flush()


def balance(user, code: str) -> Decimal:
    with ledger.as_ledger():
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user.id, Wallet.currency == code)
                                   .execution_options(populate_existing=True))
    return wallet.balance if wallet else Decimal(0)


def system_balance(name: SystemWallet, code: str) -> Decimal:
    """All of the system wallet's shards together."""
    return ledger.system_balance(name, code)


# -- A real HTTP server for the source adapter ---------------------------------------------------


class Responder:
    """What the test server answers: ``status``, ``body`` (bytes), optional ``delay`` seconds
    before answering, optional ``trickle`` (seconds between single bytes of the body) and
    ``content_length`` (None: the true length; -1: no header)."""

    def __init__(self):
        self.status = 200
        self.body = b'{"rates": []}'
        self.delay = 0.0
        self.trickle = 0.0
        self.content_length: int | None = None
        self.requests: list[str] = []


@contextlib.contextmanager
def rate_server() -> Iterator[tuple[str, Responder]]:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the duration of the block; yields
    its URL and the Responder to set what it answers."""
    responder = Responder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            responder.requests.append(self.path)
            if responder.delay:
                time.sleep(responder.delay)
            try:
                self.send_response(responder.status)
                self.send_header("Content-Type", "application/json")
                length = responder.content_length if responder.content_length is not None else len(responder.body)
                if length >= 0:  # -1: no Content-Length, the body ends when the connection closes
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if responder.trickle:
                    for i in range(len(responder.body)):
                        self.wfile.write(responder.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(responder.trickle)
                else:
                    self.wfile.write(responder.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first, as it should

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rates.json", responder
    finally:
        server.shutdown()
        server.server_close()

