"""Actions for the compliance tests: ledger activity through the real ledger, as monitoring sees it."""

from __future__ import annotations

from decimal import Decimal

from portal.accounts.models import User
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType


def transfer(sender: User, recipient: User, amount: str, code: str = "USD") -> Transaction:
    (tx,) = ledger.post([ledger.Leg(ledger.open_user_wallet(sender.id, code),
                                    ledger.open_user_wallet(recipient.id, code), Decimal(amount),
                                    TransactionType.TRANSFER, f"Transfer to {recipient.full_name}",
                                    {"from_name": sender.full_name, "to_name": recipient.full_name})],
                        initiated_by_id=sender.id)
    return tx


def withdraw(user: User, amount: str, code: str = "USD") -> Transaction:
    (tx,) = ledger.post([ledger.Leg(ledger.open_user_wallet(user.id, code),
                                    ledger.system_wallet(SystemWallet.WITHDRAWALS, code), Decimal(amount),
                                    TransactionType.WITHDRAWAL, "Withdrawal")])
    return tx
