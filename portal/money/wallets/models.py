"""Wallets, the append-only ledger of transactions between them, fee rules, and the idempotency
keys that make every money request safe to retry (spec service 8, Payment Service).

The ledger follows TigerBeetle's model:

- A transaction moves ``amount`` from its debit wallet to its credit wallet, both of its
  currency. Rows are never updated or deleted (a trigger refuses updates and the app role has no
  UPDATE or DELETE on the table); a correction is a new reversing transaction.
- Two-phase movements (holds): a ``pending`` transaction raises the debit wallet's
  ``lockedBalance`` without moving value; a later ``post`` transaction (capture) moves it and a
  ``void`` transaction (release) gives it back, each pointing at the pending one through
  ``pendingId``, which a unique index lets be resolved only once.
- Every wallet's ``balance`` is the replay of its ``single`` and ``post`` transactions, and its
  ``lockedBalance`` the sum of its unresolved pending ones; per currency all balances sum to zero,
  because system wallets stand for the outside world and may go negative
  (``portal.money.wallets.ledger.verify``).
"""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.money.types import AMOUNT, CURRENCY_CODE, currency_check


class WalletKind(enum.StrEnum):
    USER = "user"
    SYSTEM = "system"


class SystemWallet(enum.StrEnum):
    """The outside world, one wallet per currency each. These may go negative."""

    DEPOSITS = "deposits"  #: money that came in from outside (and the demo's opening balances)
    WITHDRAWALS = "withdrawals"  #: money that left through approved withdrawals
    REWARDS = "rewards"  #: the rewards treasury that pays earnings
    FEES = "fees"  #: fees collected
    EXCHANGE = "exchange"  #: the exchange's liquidity: conversions go through it
    CARD_FLOAT = "card_float"
    LOAN_BOOK = "loan_book"
    #: Money a payment provider took from payers and owes the portal, one per provider: a
    #: succeeded top-up moves value from it to the payer's wallet, so its balance is minus what
    #: the provider still has to pay out (after its fees), and reconciliation compares the two.
    #: Named per provider (not one wallet sharded by provider) so each provider's position reads
    #: on its own, in lists and in ``flask ledger verify``, and a new provider is a new name.
    CLEARING_SANDBOX = "clearing_sandbox"
    CLEARING_STRIPE = "clearing_stripe"
    #: Revenue of paid courses: purchases move value into it, refunds out of it.
    SALES = "sales"
    #: What payment providers kept as their fees: the portal's expense (a top-up is credited in
    #: full), kept apart from ``fees`` (what the portal collected) so neither hides the other.
    PROVIDER_FEES = "provider_fees"
    #: Revenue of subscriptions (``portal.money.billing``): invoices paid from wallets move
    #: value into it; credit for a subscription canceled early comes back out of it.
    BILLING = "billing"
    #: Loans written off: the loss moves from here to the loan book, so the book shows what is
    #: still owed and this shows what was lost.
    LOAN_LOSSES = "loan_losses"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


#: System wallets that nearly every movement of a kind touches are split into shards, so that
#: concurrent movements do not queue on one row lock: each movement takes the shard its user's
#: wallet falls on. Their balance is the sum over the shards. The others are one wallet each.
SYSTEM_SHARDS: dict[SystemWallet, int] = {SystemWallet.FEES: 8, SystemWallet.REWARDS: 8, SystemWallet.EXCHANGE: 8,
                                          SystemWallet.CLEARING_SANDBOX: 8, SystemWallet.CLEARING_STRIPE: 8,
                                          SystemWallet.SALES: 8, SystemWallet.PROVIDER_FEES: 8,
                                          SystemWallet.CARD_FLOAT: 8, SystemWallet.BILLING: 8}
MAX_SHARDS = 64


class WalletStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  #: neither sends nor receives until unfrozen
    CLOSED = "closed"


class Wallet(TimestampedModel):
    __tablename__ = "wallets"

    #: The owner; NULL for system wallets.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    kind: Mapped[WalletKind] = mapped_column(string_enum(WalletKind, "kind"), default=WalletKind.USER)
    #: Which system wallet this is; NULL for user wallets.
    system_name: Mapped[SystemWallet | None] = mapped_column(string_enum(SystemWallet, "system_name"))
    #: Changed only by the ledger, under a row lock, in the same transaction as the movement.
    balance: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: Held for pending movements (withdrawals awaiting approval): not available to spend.
    locked_balance: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    status: Mapped[WalletStatus] = mapped_column(string_enum(WalletStatus, "status"), default=WalletStatus.ACTIVE,
                                                 index=True)
    status_reason: Mapped[str | None] = mapped_column(String(300))
    #: Which shard of a system wallet this is (``SYSTEM_SHARDS``); always 0 for user wallets.
    shard: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("user_id", "currency"),
        UniqueConstraint("system_name", "currency", "shard"),
        CheckConstraint(f"shard >= 0 AND shard < {MAX_SHARDS} AND (kind = 'system' OR shard = 0)",
                        name="shard_range"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("""(kind = 'user' AND "userId" IS NOT NULL AND "systemName" IS NULL)
                           OR (kind = 'system' AND "userId" IS NULL AND "systemName" IS NOT NULL)""",
                        name="owner_matches_kind"),
        CheckConstraint('"lockedBalance" >= 0', name="locked_not_negative"),
        # User wallets never go below zero, holds included; system wallets may.
        CheckConstraint("""kind = 'system' OR (balance >= 0 AND balance - "lockedBalance" >= 0)""",
                        name="user_funds_cover_holds"),
    )

    @property
    def available(self) -> Decimal:
        return self.balance - self.locked_balance


class TransactionType(enum.StrEnum):
    DEPOSIT = "deposit"
    TRANSFER = "transfer"
    FEE = "fee"
    CONVERSION = "conversion"
    REWARD = "reward"
    WITHDRAWAL = "withdrawal"
    REVERSAL = "reversal"
    TOP_UP = "top_up"  #: money paid in through a payment provider
    PURCHASE = "purchase"  #: a paid course, from the student's wallet to sales
    REFUND = "refund"  #: money given back for a payment (to the wallet, or out to the provider)
    CARD_PURCHASE = "card_purchase"  #: a card payment: held at authorization, moved to the card float at capture
    CARD_REFUND = "card_refund"  #: a merchant's refund to a card, from the card float to the wallet
    SUBSCRIPTION = "subscription"  #: an invoice of a subscription paid from the wallet (to ``billing``)
    LOAN_DISBURSEMENT = "loan_disbursement"  #: the loan book pays a loan out to the student
    LOAN_REPAYMENT = "loan_repayment"  #: the student repays (principal, interest, fees, penalties)
    LOAN_COLLATERAL = "loan_collateral"  #: a hold on pledged crypto
    LOAN_LIQUIDATION = "loan_liquidation"  #: pledged crypto sold to cover a loan
    LOAN_WRITE_OFF = "loan_write_off"  #: what a written-off loan still owed, booked as a loss

    @property
    def label(self) -> str:
        return self.value.replace("_", "-").capitalize()


class Phase(enum.StrEnum):
    SINGLE = "single"  #: moves value at once
    PENDING = "pending"  #: a hold: locks the amount in the debit wallet
    POST = "post"  #: captures a hold: moves the held value
    VOID = "void"  #: releases a hold: unlocks it, nothing moves


class Transaction(TimestampedModel):
    __tablename__ = "transactions"

    #: The legs of one operation (a transfer and its fee, both legs of a conversion) share it.
    group_id: Mapped[uuid.UUID] = mapped_column(index=True)
    type: Mapped[TransactionType] = mapped_column(string_enum(TransactionType, "type"), index=True)
    phase: Mapped[Phase] = mapped_column(string_enum(Phase, "phase"), default=Phase.SINGLE)
    #: The wallet value leaves.
    debit_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"), index=True)
    #: The wallet value enters.
    credit_wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"), index=True)
    #: The wallets' owners, copied here so row-level security and a user's history need no join
    #: (NULL for system wallets).
    debit_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    credit_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    #: For ``post`` and ``void``: the pending transaction they resolve (once: unique index).
    pending_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"))
    #: For reversals: the transaction reversed (once: unique index).
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"))
    #: Who asked for it (NULL for jobs and commands). A user with money history is deactivated,
    #: never deleted, so this stays (and an append-only row could not be set to NULL anyway).
    initiated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"),
                                                              index=True)
    description: Mapped[str] = mapped_column(String(300), default="")
    #: Facts a page shows beside the movement: the counterparty's name, a conversion's rate, a
    #: withdrawal's method.
    details: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"debitWalletId" <> "creditWalletId"', name="two_wallets"),
        CheckConstraint("""(phase IN ('post', 'void')) = ("pendingId" IS NOT NULL)""", name="resolves_a_hold"),
        CheckConstraint("""(type = 'reversal') = ("reversesId" IS NOT NULL)""", name="reversal_names_original"),
        Index(None, "pending_id", unique=True, postgresql_where=text('"pendingId" IS NOT NULL')),
        Index(None, "reverses_id", unique=True, postgresql_where=text('"reversesId" IS NOT NULL')),
        # A user's history, newest first, from either side (keyset pagination).
        Index("ix_transactions_debit_history", "debit_user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_transactions_credit_history", "credit_user_id", text('"createdAt" DESC'), text("id DESC")),
    )


class TransactionFee(TimestampedModel):
    """A fee rule: for one transaction type and currency, ``fixed + amount * percent / 100``,
    no less than ``minimum`` and no more than ``maximum``, rounded up to the currency's scale."""

    __tablename__ = "transaction_fees"

    transaction_type: Mapped[TransactionType] = mapped_column(string_enum(TransactionType, "transaction_type"))
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    fixed_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    percent: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    minimum: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: NULL: no cap.
    maximum: Mapped[Decimal | None] = mapped_column(AMOUNT)
    active: Mapped[bool] = mapped_column(default=True, server_default="true")
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    __table_args__ = (
        UniqueConstraint("transaction_type", "currency"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"fixedAmount" >= 0 AND minimum >= 0', name="not_negative"),
        CheckConstraint("percent >= 0 AND percent <= 50", name="percent_range"),
        CheckConstraint("maximum IS NULL OR maximum >= minimum", name="maximum_over_minimum"),
    )


class IdempotencyKey(TimestampedModel):
    """One money request by one user, by the key its form carried: the same key with the same
    request returns the first result; with a different request it is refused. The unique index
    makes a concurrent second request wait for the first to commit, then read its result."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    #: What kind of request (``transfer``, ``conversion``, ``withdrawal`` ...).
    scope: Mapped[str] = mapped_column(String(40))
    #: SHA-256 of the request's canonical form.
    request_hash: Mapped[str] = mapped_column(String(64))
    #: What the first request produced, enough to show it again (ids of the rows it made).
    result: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (UniqueConstraint("user_id", "key"),)
