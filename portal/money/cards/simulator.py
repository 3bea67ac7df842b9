"""A merchant simulator: builds the messages a card network sends an issuer (authorization,
capture, reversal, refund), signs them as the network does and sends them over HTTP to a
portal's ``/wallet/cards/network/...`` endpoint. ``flask cards simulate ...`` drives it; a demo
and the browser journeys buy things with it.

Each message carries a fresh network id (``auth_...``, ``cap_...``) unless one is given, so a
duplicate can be sent on purpose by passing the same id again. When no merchant is given, one
of ``MERCHANTS`` is picked: real-looking names with their category code and country.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import requests

from portal.money.cards.network import SIGNATURE_HEADER, sign

PATHS = {"authorize": "/wallet/cards/network/authorize", "capture": "/wallet/cards/network/capture",
         "reverse": "/wallet/cards/network/reverse", "refund": "/wallet/cards/network/refund"}


@dataclass(frozen=True)
class Merchant:
    name: str
    mcc: str
    country: str


#: Merchants a student meets, with ISO 18245 categories (and one of each high-risk kind).
MERCHANTS = (
    Merchant("Campus Cafe", "5812", "US"),
    Merchant("University Bookstore", "5942", "US"),
    Merchant("Metro Transit", "4111", "US"),
    Merchant("Corner Grocery", "5411", "US"),
    Merchant("Online Course Market", "8299", "GB"),
    Merchant("Streaming Plus", "4899", "US"),
    Merchant("Lucky Spin Casino", "7995", "MT"),
    Merchant("Quick Coin Exchange", "6051", "EE"),
)


@dataclass
class Result:
    """What the portal answered: the HTTP status and the JSON body (or the text, if not JSON)."""

    status: int
    body: dict
    network_id: str
    sent: dict = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.status == 200 and bool(self.body.get("approved"))


class Simulator:
    def __init__(self, base_url: str, secret: str, *, http=None, timeout: float = 5.0, rng: random.Random | None = None):
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.http = http or requests.Session()
        self.timeout = timeout
        self.rng = rng or random.Random()

    def _send(self, kind: str, message: dict) -> Result:
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = {SIGNATURE_HEADER: sign(body, self.secret), "Content-Type": "application/json",
                   "User-Agent": "azora-card-network-simulator"}
        response = self.http.post(self.base_url + PATHS[kind], data=body, headers=headers, timeout=self.timeout)
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text[:500]}
        # What was sent, without the card's number and code, for printing.
        shown = {k: v for k, v in message.items() if k != "card"}
        return Result(response.status_code, answer if isinstance(answer, dict) else {"body": answer},
                      message["id"], shown)

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex}"

    def merchant(self, name: str | None = None, mcc: str | None = None, country: str | None = None) -> Merchant:
        base = self.rng.choice(MERCHANTS)
        return Merchant(name or base.name, mcc or base.mcc, country or base.country)

    def authorize(self, number: str, exp_month: int, exp_year: int, cvv: str, amount: Decimal | str,
                  currency: str = "USD", *, merchant: Merchant | None = None, network_id: str | None = None) -> Result:
        merchant = merchant or self.merchant()
        return self._send("authorize", {
            "id": network_id or self.new_id("auth"), "amount": str(amount), "currency": currency,
            "card": {"number": number, "exp_month": int(exp_month), "exp_year": int(exp_year), "cvv": cvv},
            "merchant": {"name": merchant.name, "mcc": merchant.mcc, "country": merchant.country}})

    def capture(self, authorization_id: str, amount: Decimal | str, currency: str = "USD", *,
                network_id: str | None = None) -> Result:
        return self._send("capture", {"id": network_id or self.new_id("cap"), "authorization_id": authorization_id,
                                      "amount": str(amount), "currency": currency})

    def reverse(self, authorization_id: str, *, network_id: str | None = None) -> Result:
        return self._send("reverse", {"id": network_id or self.new_id("rev"), "authorization_id": authorization_id})

    def refund(self, amount: Decimal | str, currency: str = "USD", *, authorization_id: str | None = None,
               number: str | None = None, merchant: Merchant | None = None, network_id: str | None = None) -> Result:
        message: dict = {"id": network_id or self.new_id("ref"), "amount": str(amount), "currency": currency}
        if authorization_id:
            message["authorization_id"] = authorization_id
        else:
            message["card"] = {"number": number}
        if merchant:
            message["merchant"] = {"name": merchant.name, "mcc": merchant.mcc, "country": merchant.country}
        return self._send("refund", message)
