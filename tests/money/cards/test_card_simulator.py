"""The merchant simulator and ``flask cards ...``: messages built, signed and sent over HTTP; the
CLI against the real endpoint; the card-data key rotation."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from portal.db import db
from portal.money.cards import network, pan, services
from portal.money.cards.models import CardTransaction, CardTransactionState, VirtualCard
from portal.money.cards.simulator import Merchant, Simulator
from portal.security.crypto import CryptoError, generate_key_entry
from tests.money.cards.helpers import card_holder, issued
from tests.money.factories import wallet_of


class _Response:
    def __init__(self, response):
        self.status_code = response.status_code
        self._json = response.get_json(silent=True)
        self.text = response.get_data(as_text=True)

    def json(self):
        if self._json is None:
            raise ValueError("not JSON")
        return self._json


class ClientTransport:
    """``requests``-like ``post`` that hands the request to the Flask test client."""

    def __init__(self, client, base="http://portal.test"):
        self.client, self.base = client, base

    def post(self, url, data=None, headers=None, timeout=None):
        return _Response(self.client.post(url.removeprefix(self.base), data=data, headers=headers))


@pytest.fixture
def simulator(app, client):
    return Simulator("http://portal.test", app.config["CARD_NETWORK_SECRET"], http=ClientTransport(client))


def test_a_purchase_from_authorization_to_refund(simulator):
    user = card_holder("60")
    _card, revealed = issued(user)
    auth = simulator.authorize(revealed.number, revealed.exp_month, revealed.exp_year, revealed.security_code,
                               "20.00", merchant=Merchant("Campus Cafe", "5812", "US"))
    assert auth.approved, auth.body
    assert "card" not in auth.sent and revealed.number not in json.dumps(auth.sent)
    assert simulator.capture(auth.network_id, "22.00").approved  # a tip
    assert simulator.refund("2.00", authorization_id=auth.network_id).approved
    again = simulator.authorize(revealed.number, revealed.exp_month, revealed.exp_year, revealed.security_code,
                                "5", network_id=auth.network_id)
    assert again.body["duplicate"] is True
    other = simulator.authorize(revealed.number, revealed.exp_month, revealed.exp_year, revealed.security_code, "3")
    assert simulator.reverse(other.network_id).approved
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("40.00"), Decimal("0"))


def test_a_random_merchant_is_a_real_looking_one(simulator):
    merchant = simulator.merchant()
    assert merchant.name and len(merchant.mcc) == 4 and len(merchant.country) == 2


def test_messages_go_over_http_signed(app):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body, self.headers[network.SIGNATURE_HEADER]))
            answer = json.dumps({"approved": True, "code": "00"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        simulator = Simulator(f"http://127.0.0.1:{server.server_address[1]}", "shared-secret-for-the-test")
        result = simulator.capture("auth_1", "9.50")
    finally:
        server.shutdown()
        server.server_close()
    assert result.approved
    (path, body, signature), = received
    assert path == "/wallet/cards/network/capture"
    network.verify(body, signature, "shared-secret-for-the-test", 60)
    with pytest.raises(network.Unauthenticated):
        network.verify(body, signature, "another-secret", 60)
    assert json.loads(body) == {"id": result.network_id, "authorization_id": "auth_1", "amount": "9.50",
                                "currency": "USD"}


def test_the_cli_simulates_a_purchase_with_a_portal_card(app, client, monkeypatch):
    user = card_holder("30")
    card = services.issue_card(user, "USD")
    monkeypatch.setattr("portal.money.cards.simulator.requests.Session", lambda: ClientTransport(client))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["cards", "simulate", "authorize", "--card-id", str(card.id), "--amount", "12.5",
                                 "--merchant", "Bookshop", "--mcc", "5942", "--country", "US", "--id", "auth_cli_1",
                                 "--url", "http://portal.test"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["answer"]["approved"] is True
    number = pan.unseal(card.id, card.pan_encrypted)
    assert number not in result.output
    capture = runner.invoke(args=["cards", "simulate", "capture", "--authorization-id", "auth_cli_1",
                                  "--amount", "12.5", "--url", "http://portal.test"])
    assert capture.exit_code == 0, capture.output
    row = db.session.scalar(select(CardTransaction).where(CardTransaction.network_id == "auth_cli_1"))
    assert row.state == CardTransactionState.CAPTURED
    bad = runner.invoke(args=["cards", "simulate", "authorize", "--amount", "1", "--url", "http://portal.test"])
    assert bad.exit_code != 0 and "--card-id" in bad.output


def test_rotate_key_re_encrypts_under_the_first_key(app):
    user = card_holder()
    card, revealed = issued(user)
    old_spec = app.config["CARD_DATA_KEYS"]
    old_id = card.pan_key_id
    new_entry = generate_key_entry("card2")
    app.config["CARD_DATA_KEYS"] = f"{new_entry},{old_spec}"
    try:
        result = app.test_cli_runner().invoke(args=["cards", "rotate-key"])
        assert result.exit_code == 0, result.output
        assert "under key card2" in result.output
        db.session.expire_all()
        card = db.session.get(VirtualCard, card.id)
        assert card.pan_key_id == "card2" != old_id
        assert pan.unseal(card.id, card.pan_encrypted) == revealed.number
        app.config["CARD_DATA_KEYS"] = new_entry  # the old key gone: the card still opens
        assert pan.unseal(card.id, card.pan_encrypted) == revealed.number
        app.config["CARD_DATA_KEYS"] = old_spec  # and only the old key: it no longer does
        with pytest.raises(CryptoError):
            pan.unseal(card.id, card.pan_encrypted)
    finally:
        app.config["CARD_DATA_KEYS"] = old_spec
