"""Money for people: the wallet and its history, sending money, converting currencies,
earnings and milestones, withdrawals, payments; and for admins the ledger's state, fee rules,
currency pairs and rates, and withdrawal approval.

One blueprint, a module per part: ``overview`` (balances, history, CSV), ``transfers``,
``exchange`` (conversions; pairs and rates for admins), ``earnings`` (earnings, milestones),
``withdrawals``, ``payments`` (top-ups, payments, saved methods, course checkout, refunds and
receipts), ``payment_webhooks`` (providers' signed reports), ``card_network`` (the card
network's signed messages), ``cards`` (a holder's virtual cards), ``cards_admin`` (staff's card
pages and the card terminal), ``billing`` (plans, subscriptions, invoices), ``loans`` (a student's loans), ``admin`` (system
wallets, ledger verification, fee rules, a user's wallets), ``billing_admin`` (plans, invoices,
MRR), ``loans_admin`` (the loan officers' queue, book and collections) and ``payments_admin`` (finance: payments, refunds, reconciliation, the webhook log).
"""

from flask import Blueprint

bp = Blueprint("wallet", __name__, url_prefix="/wallet")

from blueprints.wallet import (  # noqa: E402,F401
    admin,
    billing,
    billing_admin,
    card_network,
    cards,
    cards_admin,
    earnings,
    exchange,
    loans,
    loans_admin,
    overview,
    payment_webhooks,
    payments,
    payments_admin,
    transfers,
    verification,
    withdrawals,
)
