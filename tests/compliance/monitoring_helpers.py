"""Ledger activity for the monitoring and case tests: real movements through the real ledger."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from portal.accounts.models import User
from portal.db.base import utcnow
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType
from tests.factories import create_user
from tests.money.factories import fund


def old_student(**fields) -> User:
    """A student whose account is a year old (the new-account rule leaves it alone)."""
    return create_user("student", created_at=utcnow() - timedelta(days=365), **fields)


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


__all__ = ["fund", "old_student", "transfer", "withdraw"]
