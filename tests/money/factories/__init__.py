"""Rows for the money tests: real movements through the real ledger, and earnings milestones."""

from __future__ import annotations

import uuid
from decimal import Decimal

from portal.accounts.models import User
from portal.db import db
from portal.money.earnings.models import Milestone, MilestoneKind
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet


def fund(user: User, amount: str | Decimal, code: str = "USD", *, description: str = "Test deposit",
         details: dict | None = None) -> Transaction:
    """Deposit ``amount`` ``code`` into ``user``'s wallet from the DEPOSITS system wallet."""
    wallet = ledger.open_user_wallet(user.id, code)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
    (tx,) = ledger.post([ledger.Leg(deposits, wallet, Decimal(str(amount)), TransactionType.DEPOSIT, description,
                                    details or {})])
    return tx


def wallet_of(user: User, code: str = "USD") -> Wallet | None:
    """``user``'s wallet in ``code`` as the database has it now (None if they have none)."""
    with ledger.as_ledger():
        wallet = ledger.user_wallet(user.id, code)
        if wallet is not None:
            db.session.refresh(wallet)
        return wallet


def make_milestone(kind: MilestoneKind = MilestoneKind.COURSE_COMPLETED, *, reward="5", currency="AZR",
                   **fields) -> Milestone:
    milestone = Milestone(title=fields.pop("title", f"Milestone {uuid.uuid4().hex[:6]}"), kind=kind,
                          reward_amount=Decimal(reward), reward_currency=currency, **fields)
    db.session.add(milestone)
    db.session.flush()
    return milestone
