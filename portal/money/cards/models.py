"""Virtual cards (spec service 4): the cards on students' wallets, what the card network asked
and what the portal answered.

How card data is kept (PCI DSS 3.4/3.5, the way issuers do it):

- The card number (PAN) is stored only encrypted (AES-256-GCM, ``CARD_DATA_KEYS``, keys of its
  own), bound to its row as associated data, with the key id beside it for rotation.
- ``panLookup`` is an HMAC-SHA256 of the number under ``CARD_LOOKUP_KEY``: the network finds a
  card by it without the number ever being decrypted or searchable; it is unique, so a number is
  never issued twice.
- Pages show the BIN and the last four digits at most.
- The security code (CVV) is stored nowhere, in no form: it is derived from the number and the
  expiry under ``CARD_VERIFICATION_KEY`` when it is shown (reveal) or checked (authorization).

``card_transactions`` holds one row per network message that reached a card: authorizations
(approved or declined), captures, reversals, merchant refunds and the expiry of holds. The
authorization row carries the hold's life (``pending`` -> ``captured`` / ``reversed`` /
``expired``, or ``declined`` at once); the other rows point at it and say what they did.
Each row is unique by the network's message id, which makes every message idempotent.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.errors import Conflict
from portal.money.types import AMOUNT, CURRENCY_CODE, RATE, currency_check


class CardState(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  #: declines everything until unfrozen
    CANCELED = "canceled"  #: for good
    REPLACED = "replaced"  #: for good; a new number took its place

    @property
    def label(self) -> str:
        return self.value.capitalize()


#: Every allowed change of a card's state, in one place.
CARD_TRANSITIONS: dict[CardState, frozenset[CardState]] = {
    CardState.ACTIVE: frozenset({CardState.FROZEN, CardState.CANCELED, CardState.REPLACED}),
    CardState.FROZEN: frozenset({CardState.ACTIVE, CardState.CANCELED, CardState.REPLACED}),
    CardState.CANCELED: frozenset(),
    CardState.REPLACED: frozenset(),
}
LIVE_STATES = (CardState.ACTIVE, CardState.FROZEN)


class CardStateError(Conflict):
    pass


def check_transition(current: CardState, target: CardState) -> None:
    if target not in CARD_TRANSITIONS[current]:
        raise CardStateError(f"A {current.value} card cannot become {target.value}.")


class VirtualCard(TimestampedModel):
    __tablename__ = "virtual_cards"
    #: Neither the ciphertext nor the lookup hash is copied into the audit trail.
    __audit_secret_columns__ = ("panEncrypted", "panLookup")

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: The wallet the card spends from; the card's currency is the wallet's.
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    state: Mapped[CardState] = mapped_column(string_enum(CardState, "state"), default=CardState.ACTIVE, index=True)
    frozen_reason: Mapped[str | None] = mapped_column(String(300))
    #: Who froze it; a card frozen by staff (or by the security-code lockout) is unfrozen only by staff.
    frozen_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    frozen_by_staff: Mapped[bool] = mapped_column(default=False, server_default="false")
    brand: Mapped[str] = mapped_column(String(20))
    #: The first six digits (the issuer's BIN) and the last four: all a page may show.
    bin: Mapped[str] = mapped_column(String(8))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(SmallInteger)
    exp_year: Mapped[int] = mapped_column(SmallInteger)
    #: ``keyid:`` + nonce + AES-GCM ciphertext of the 16 digits (``portal.money.cards.pan``).
    pan_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    pan_key_id: Mapped[str] = mapped_column(String(32))
    #: Hex HMAC-SHA256 of the number under ``CARD_LOOKUP_KEY``.
    pan_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    #: Spending controls, in the wallet's currency (NULL: no limit).
    per_purchase_limit: Mapped[Decimal | None] = mapped_column(AMOUNT)
    daily_limit: Mapped[Decimal | None] = mapped_column(AMOUNT)
    monthly_limit: Mapped[Decimal | None] = mapped_column(AMOUNT)
    #: Names of merchant-category groups (``portal.money.cards.mcc.GROUPS``) the card refuses.
    blocked_mcc_groups: Mapped[list[str]] = mapped_column(ARRAY(String(30)), default=list,
                                                          server_default=text("'{}'::varchar[]"))
    #: ISO 3166 alpha-2 codes of merchant countries the card refuses.
    blocked_countries: Mapped[list[str]] = mapped_column(ARRAY(String(2)), default=list,
                                                         server_default=text("'{}'::varchar[]"))
    #: Wrong security codes in a row; reset by a right one; at ``CARD_MAX_WRONG_CVV`` the card freezes.
    wrong_cvv_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    nickname: Mapped[str] = mapped_column(String(60), default="", server_default="")
    #: The card that replaced this one.
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("virtual_cards.id", ondelete="SET NULL"))
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"expMonth" BETWEEN 1 AND 12', name="exp_month_range"),
        CheckConstraint('"expYear" BETWEEN 2000 AND 2200', name="exp_year_range"),
        CheckConstraint("bin ~ '^[0-9]{6,8}$' AND last4 ~ '^[0-9]{4}$'", name="bin_last4_digits"),
        CheckConstraint('"panLookup" ~ \'^[0-9a-f]{64}$\'', name="lookup_is_hmac"),
        CheckConstraint('"wrongCvvCount" >= 0', name="wrong_cvv_not_negative"),
        CheckConstraint('("perPurchaseLimit" IS NULL OR "perPurchaseLimit" > 0) AND '
                        '("dailyLimit" IS NULL OR "dailyLimit" > 0) AND ("monthlyLimit" IS NULL OR "monthlyLimit" > 0)',
                        name="limits_positive"),
        CheckConstraint("(state = 'frozen') = (\"frozenReason\" IS NOT NULL)", name="frozen_has_reason"),
        CheckConstraint("state NOT IN ('canceled', 'replaced') OR \"canceledAt\" IS NOT NULL", name="ended_has_time"),
        Index("ix_virtual_cards_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_virtual_cards_created", text('"createdAt" DESC'), text("id DESC")),
    )

    @property
    def masked(self) -> str:
        """``999100 •••••• 4242``: the most a page shows."""
        return f"{self.bin} •••••• {self.last4}"

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year % 100:02d}"

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


class CardTransactionKind(enum.StrEnum):
    AUTHORIZATION = "authorization"
    CAPTURE = "capture"
    REVERSAL = "reversal"
    REFUND = "refund"
    EXPIRY = "expiry"


class CardTransactionState(enum.StrEnum):
    PENDING = "pending"  #: an approved authorization whose hold is open
    CAPTURED = "captured"  #: an authorization captured (in whole or part), or a capture applied
    REVERSED = "reversed"  #: an authorization whose hold the merchant released, or that reversal
    EXPIRED = "expired"  #: an authorization not captured in time (its hold released), or that expiry
    DECLINED = "declined"  #: refused, with a reason code; nothing moved
    REFUNDED = "refunded"  #: a merchant refund credited to the wallet

    @property
    def label(self) -> str:
        return self.value.capitalize()


class CardTransaction(TimestampedModel):
    __tablename__ = "card_transactions"

    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("virtual_cards.id", ondelete="RESTRICT"), index=True)
    #: The card's owner and wallet, copied so row-level security and a user's list need no join.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[CardTransactionKind] = mapped_column(string_enum(CardTransactionKind, "kind"))
    state: Mapped[CardTransactionState] = mapped_column(string_enum(CardTransactionState, "state"), index=True)
    #: The network's id of the message: a second delivery finds this row and gets the same answer.
    network_id: Mapped[str] = mapped_column(String(100), unique=True)
    #: For captures, reversals, refunds and expiries: the authorization they act on.
    authorization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("card_transactions.id", ondelete="RESTRICT"), index=True)
    merchant_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    #: ISO 18245 merchant category code (four digits).
    mcc: Mapped[str] = mapped_column(String(4), default="", server_default="")
    merchant_country: Mapped[str] = mapped_column(String(2), default="", server_default="")
    #: What the merchant asked, in its currency.
    merchant_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    merchant_currency: Mapped[str] = mapped_column(String(3))
    #: The same in the wallet's currency (what is held or moved), with the rate used (merchant
    #: currency -> wallet currency; NULL when both are the same).
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    rate: Mapped[Decimal | None] = mapped_column(RATE)
    #: For authorizations: how much was captured and refunded so far (wallet currency).
    captured_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    refunded_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: ISO 8583 field 39: ``00`` approved, otherwise the decline's reason (``portal.money.cards.codes``).
    response_code: Mapped[str] = mapped_column(String(2))
    decline_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    #: The ledger's pending transaction of an approved authorization (the hold).
    hold_transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transactions.id", ondelete="RESTRICT"), index=True)
    #: The ledger rows this message made (capture, release, refund).
    ledger_transaction_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), default=list, server_default=text("'{}'::uuid[]"))
    #: When an open hold is released if not captured.
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"merchantCurrency" ~ \'^[A-Z]{3}$\'', name="merchant_currency_code"),
        CheckConstraint('amount >= 0 AND "merchantAmount" >= 0', name="amounts_not_negative"),
        CheckConstraint('"capturedAmount" >= 0 AND "refundedAmount" >= 0 AND "refundedAmount" <= "capturedAmount"',
                        name="captured_refunded_range"),
        CheckConstraint('"responseCode" ~ \'^[0-9A-Z]{2}$\'', name="response_code_format"),
        CheckConstraint("(state = 'declined') = (\"responseCode\" <> '00')", name="declined_has_code"),
        CheckConstraint("""(kind = 'authorization' AND "authorizationId" IS NULL)
                           OR (kind IN ('capture', 'reversal', 'expiry') AND "authorizationId" IS NOT NULL)
                           OR kind = 'refund'""", name="follows_an_authorization"),
        CheckConstraint("kind <> 'authorization' OR state <> 'pending' OR "
                        "(\"holdTransactionId\" IS NOT NULL AND \"holdExpiresAt\" IS NOT NULL)",
                        name="pending_has_hold"),
        CheckConstraint("mcc = '' OR mcc ~ '^[0-9]{4}$'", name="mcc_digits"),
        # A user's list, newest first (keyset pagination); a card's list; the admins' log.
        Index("ix_card_transactions_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_card_transactions_card_created", "card_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_card_transactions_created", text('"createdAt" DESC'), text("id DESC")),
        # The expiry job's scan: open holds by their expiry.
        Index("ix_card_transactions_open_holds", "hold_expires_at",
              postgresql_where=text("kind = 'authorization' AND state = 'pending'")),
    )

    @property
    def approved(self) -> bool:
        return self.response_code == "00"


class NetworkMessageOutcome(enum.StrEnum):
    REJECTED = "rejected"  #: no card or original to apply it to: answered with a decline code
    PARKED = "parked"  #: a capture or reversal whose authorization has not arrived (yet)


class CardNetworkMessage(TimestampedModel):
    """Signed network messages that became no ``card_transactions`` row: an authorization for a
    number the portal never issued, a capture or reversal whose authorization is unknown (it may
    arrive later: out of order), a message for a card in another state. They belong to no card
    and no user, so they cannot live in ``card_transactions``; kept for the operators'
    reconciliation with the network. Never the number or the security code: only what the
    network said about the message and the answer given."""

    __tablename__ = "card_network_messages"

    network_id: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[CardTransactionKind] = mapped_column(string_enum(CardTransactionKind, "kind"))
    #: The authorization's network id a capture, reversal or refund named.
    original_network_id: Mapped[str | None] = mapped_column(String(100), index=True)
    outcome: Mapped[NetworkMessageOutcome] = mapped_column(string_enum(NetworkMessageOutcome, "outcome"))
    response_code: Mapped[str] = mapped_column(String(2))
    detail: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: Amount, currency and merchant as sent (no card data).
    summary: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        Index("ix_card_network_messages_created", text('"createdAt" DESC'), text("id DESC")),
    )
