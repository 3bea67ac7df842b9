"""Currency pairs, rates with their source and time, and conversions with the quote they were
made at (spec service 3, Exchange Rate)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.money.types import AMOUNT, CURRENCY_CODE, RATE, currency_check


class CurrencyPair(TimestampedModel):
    """``base``/``quote``: one unit of ``base`` buys ``rate`` units of ``quote``. Conversions in
    the other direction use the same pair's inverse."""

    __tablename__ = "currency_pairs"

    base_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    quote_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    active: Mapped[bool] = mapped_column(default=True, server_default="true", index=True)

    __table_args__ = (
        UniqueConstraint("base_currency", "quote_currency"),
        CheckConstraint(currency_check("baseCurrency"), name="base_known"),
        CheckConstraint(currency_check("quoteCurrency"), name="quote_known"),
        CheckConstraint('"baseCurrency" <> "quoteCurrency"', name="two_currencies"),
    )

    @property
    def symbol(self) -> str:
        return f"{self.base_currency}/{self.quote_currency}"


class RateSource(enum.StrEnum):
    MANUAL = "manual"  #: typed by an admin
    CSV = "csv"  #: imported from a CSV file
    HTTP = "http"  #: fetched from the configured HTTP JSON source


class ExchangeRate(TimestampedModel):
    __tablename__ = "exchange_rates"

    pair_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("currency_pairs.id", ondelete="CASCADE"))
    rate: Mapped[Decimal] = mapped_column(RATE)
    source: Mapped[RateSource] = mapped_column(string_enum(RateSource, "source"), index=True)
    #: Where exactly it came from: the file's name, the URL, the admin's note.
    source_detail: Mapped[str] = mapped_column(String(300), default="")
    #: When the source says the rate held (not when we stored it).
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                             index=True)

    __table_args__ = (
        CheckConstraint("rate > 0", name="rate_positive"),
        # The freshest rate of a pair, and its history chart.
        Index("ix_exchange_rates_pair_observed", "pair_id", text('"observedAt" DESC')),
        # The freshest rate of a pair from each source (the fallback order walks the sources).
        Index("ix_exchange_rates_pair_source_observed", "pair_id", "source", text('"observedAt" DESC')),
    )


class ConversionStatus(enum.StrEnum):
    QUOTED = "quoted"  #: offered; can be accepted until ``expiresAt``
    COMPLETED = "completed"
    EXPIRED = "expired"  #: not accepted in time (set when someone tries too late)


class Conversion(TimestampedModel):
    __tablename__ = "conversions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    from_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    to_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    from_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    #: What the user receives, rounded down to the target currency's scale.
    to_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    #: Units of ``toCurrency`` per unit of ``fromCurrency`` at the quote.
    rate: Mapped[Decimal] = mapped_column(RATE)
    rate_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("exchange_rates.id", ondelete="SET NULL"),
                                                      index=True)
    rate_source: Mapped[str] = mapped_column(String(300))
    #: The fee, in ``fromCurrency``, taken on top of ``fromAmount``.
    fee_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    quoted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[ConversionStatus] = mapped_column(string_enum(ConversionStatus, "status"),
                                                     default=ConversionStatus.QUOTED, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The ledger legs (``transactions.groupId``) once completed.
    transaction_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)

    __table_args__ = (
        CheckConstraint(currency_check("fromCurrency"), name="from_known"),
        CheckConstraint(currency_check("toCurrency"), name="to_known"),
        CheckConstraint('"fromCurrency" <> "toCurrency"', name="two_currencies"),
        CheckConstraint('"fromAmount" > 0 AND "toAmount" > 0 AND rate > 0 AND "feeAmount" >= 0',
                        name="amounts_positive"),
        CheckConstraint('"expiresAt" > "quotedAt"', name="expires_after_quote"),
        CheckConstraint("""(status = 'completed') = ("completedAt" IS NOT NULL)""", name="completed_has_time"),
        Index("ix_conversions_user_created", "user_id", text('"createdAt" DESC')),
    )
