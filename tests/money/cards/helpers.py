"""Helpers for the card tests: a verified, funded student with a card, and network messages
signed the way the network signs them."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from flask import current_app

from portal.db import db
from portal.money.cards import network, services
from portal.money.cards.models import VirtualCard
from portal.money.wallets import ledger
from tests.compliance.factories import verify
from tests.factories import PASSWORD, create_user
from tests.money.factories import fund


def card_holder(amount: str | None = "100.00", code: str = "USD", level: int = 2):
    user = create_user("student")
    verify(user, level)
    if amount is not None:
        fund(user, amount, code)
    return user


def issued(user, code: str = "USD") -> tuple[VirtualCard, services.RevealedCard]:
    card = services.issue_card(user, code)
    return card, services.reveal(user, card.id, PASSWORD)


#: The card or wallet state a decline test starts from, by name: what each does to the card.
DECLINE_SETUPS = {
    "frozen": lambda user, card: services.freeze(user, card.id),
    "canceled": lambda user, card: services.cancel(user, card.id),
    "replaced": lambda user, card: services.replace(user, card.id),
    "gambling": lambda user, card: services.set_controls(user, card.id, blocked_mcc_groups=["gambling"]),
    "country": lambda user, card: services.set_controls(user, card.id, blocked_countries="KP"),
    "per_purchase": lambda user, card: services.set_controls(user, card.id, per_purchase_limit="20"),
    "daily": lambda user, card: services.set_controls(user, card.id, daily_limit="20"),
    "monthly": lambda user, card: services.set_controls(user, card.id, monthly_limit="20"),
    "wallet_frozen": lambda user, card: _freeze_wallet(user, card.currency),
}


def _freeze_wallet(user, code: str) -> None:
    with ledger.as_ledger():
        ledger.user_wallet(user.id, code).status = "frozen"
        db.session.flush()


def arrange(setup: str | None, user, card) -> None:
    """Put the card (or its wallet) in the state ``setup`` names (``DECLINE_SETUPS``); None: as issued."""
    if setup is not None:
        DECLINE_SETUPS[setup](user, card)


def new_id(prefix: str = "msg") -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def auth_body(revealed, amount="10.00", currency="USD", *, network_id=None, mcc="5812", country="US",
              name="Campus Cafe", cvv=None, exp_month=None, exp_year=None) -> dict:
    return {"id": network_id or new_id("auth"), "amount": str(amount), "currency": currency,
            "card": {"number": revealed.number, "exp_month": exp_month or revealed.exp_month,
                     "exp_year": exp_year or revealed.exp_year, "cvv": cvv or revealed.security_code},
            "merchant": {"name": name, "mcc": mcc, "country": country}}


def message(kind: str, body: dict) -> network.Message:
    return network.parse(kind, json.dumps(body).encode())


def signed_headers(raw: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict:
    secret = secret if secret is not None else current_app.config["CARD_NETWORK_SECRET"]
    return {network.SIGNATURE_HEADER: network.sign(raw, secret, timestamp), "Content-Type": "application/json"}


def post(client, kind: str, body: dict, **signing):
    raw = json.dumps(body).encode()
    return client.post(f"/wallet/cards/network/{kind}", data=raw, headers=signed_headers(raw, **signing))


D = Decimal
