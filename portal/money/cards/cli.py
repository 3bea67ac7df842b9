"""``flask cards ...``: the merchant simulator and the card-data key rotation.

``flask cards simulate authorize|capture|reverse|refund`` sends one signed network message to a
portal (``--url``, default ``BASE_URL`` or http://127.0.0.1:5000) and prints the answer. A card
is named by ``--card-id`` (the portal decrypts its number and derives its code, as the system
actor, without printing them) or given as ``--number/--exp/--cvv``.

``flask cards rotate-key`` re-encrypts every card number under the first key of
``CARD_DATA_KEYS``; keep the old keys listed until it reports nothing left under them.
"""

from __future__ import annotations

import json
import sys
import uuid

import click
from flask import current_app
from flask.cli import with_appcontext


@click.group("cards", help="Virtual cards: the merchant simulator and the card-data key rotation.")
def cards_group():
    pass


@cards_group.group("simulate", help="Send a signed card network message to a portal, as a merchant's network would.")
def simulate_group():
    pass


def _simulator(url: str | None):
    from portal.money.cards.simulator import Simulator

    base = url or current_app.config.get("BASE_URL") or "http://127.0.0.1:5000"
    return Simulator(base, current_app.config["CARD_NETWORK_SECRET"])


def _card_data(card_id: str | None, number: str | None, exp: str | None, cvv: str | None):
    """``(number, month, year, cvv)`` of a portal card by id, or as given."""
    if card_id:
        from portal.db import as_cli_actor, db
        from portal.money.cards import pan
        from portal.money.cards.models import VirtualCard

        def read():
            try:
                card = db.session.get(VirtualCard, uuid.UUID(card_id))
            except ValueError:
                card = None
            if card is None:
                raise click.BadParameter("There is no card with this id.", param_hint="--card-id")
            number_ = pan.unseal(card.id, card.pan_encrypted)
            return number_, card.exp_month, card.exp_year, pan.security_code(number_, card.exp_month, card.exp_year)

        return as_cli_actor(read)()
    if not (number and exp and cvv):
        raise click.UsageError("Name a card with --card-id, or give --number, --exp (MM/YY) and --cvv.")
    month, _sep, year = exp.partition("/")
    if not (month.isdigit() and year.isdigit()):
        raise click.BadParameter("Write the expiry as MM/YY.", param_hint="--exp")
    return number, int(month), int(year), cvv


def _show(result) -> None:
    click.echo(json.dumps({"status": result.status, "sent": result.sent, "answer": result.body}, indent=2))
    if result.status != 200:
        sys.exit(1)


_url = click.option("--url", default=None, help="The portal's base URL.")


@simulate_group.command("authorize")
@click.option("--card-id", default=None, help="A portal card's id.")
@click.option("--number", default=None)
@click.option("--exp", default=None, help="MM/YY")
@click.option("--cvv", default=None)
@click.option("--amount", required=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--merchant", default=None, help="Merchant name (default: a simulated merchant).")
@click.option("--mcc", default=None, help="Merchant category code.")
@click.option("--country", default=None, help="Merchant country (ISO alpha-2).")
@click.option("--id", "network_id", default=None, help="The message id (default: a new one).")
@_url
@with_appcontext
def simulate_authorize(card_id, number, exp, cvv, amount, currency, merchant, mcc, country, network_id, url):
    card = _card_data(card_id, number, exp, cvv)
    simulator = _simulator(url)
    _show(simulator.authorize(*card, amount, currency, merchant=simulator.merchant(merchant, mcc, country),
                              network_id=network_id))


@simulate_group.command("capture")
@click.option("--authorization-id", required=True, help="The authorization's network id.")
@click.option("--amount", required=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--id", "network_id", default=None)
@_url
@with_appcontext
def simulate_capture(authorization_id, amount, currency, network_id, url):
    _show(_simulator(url).capture(authorization_id, amount, currency, network_id=network_id))


@simulate_group.command("reverse")
@click.option("--authorization-id", required=True, help="The authorization's network id.")
@click.option("--id", "network_id", default=None)
@_url
@with_appcontext
def simulate_reverse(authorization_id, network_id, url):
    _show(_simulator(url).reverse(authorization_id, network_id=network_id))


@simulate_group.command("refund")
@click.option("--authorization-id", default=None, help="The purchase's authorization network id.")
@click.option("--card-id", default=None, help="A portal card's id (for a refund without an authorization).")
@click.option("--number", default=None)
@click.option("--amount", required=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--id", "network_id", default=None)
@_url
@with_appcontext
def simulate_refund(authorization_id, card_id, number, amount, currency, network_id, url):
    if not authorization_id:
        number = _card_data(card_id, number, "01/01", "000")[0] if card_id else number
        if not number:
            raise click.UsageError("Name the purchase with --authorization-id, or the card with --card-id/--number.")
    _show(_simulator(url).refund(amount, currency, authorization_id=authorization_id, number=number,
                                 network_id=network_id))


@cards_group.command("rotate-key", help="Re-encrypt every card number under the first key of CARD_DATA_KEYS.")
@with_appcontext
def rotate_key_command():
    from portal.db import as_cli_actor
    from portal.money.cards.services import rotate_keys

    done, total = as_cli_actor(rotate_keys)()
    click.echo(f"Re-encrypted {done} of {total} card numbers under key {_current_key_id()}; "
               f"{total - done} were under it already.")


def _current_key_id() -> str:
    from portal.money.cards import pan

    return pan.cipher().current_key_id
