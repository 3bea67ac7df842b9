"""Money for people: the wallet and its history, sending money, converting currencies,
earnings and milestones, withdrawals; and for admins the ledger's state, fee rules, currency
pairs and rates, and withdrawal approval.

One blueprint, a module per part: ``overview`` (balances, history, CSV), ``transfers``,
``exchange`` (conversions; pairs and rates for admins), ``earnings`` (earnings, milestones),
``withdrawals``, ``billing`` (plans, subscriptions, invoices) and ``billing_admin``, ``payment_webhooks`` (providers' signed reports) and ``admin`` (system wallets, ledger verification, fee rules, a user's wallets).
"""

from flask import Blueprint

bp = Blueprint("wallet", __name__, url_prefix="/wallet")

from blueprints.wallet import (  # noqa: E402,F401
    admin,
    billing,
    billing_admin,
    earnings,
    exchange,
    overview,
    payment_webhooks,
    transfers,
    verification,
    withdrawals,
)
