"""Billing (spec service 1): plans, subscriptions, invoices.

Tables:

- ``plans``: what a student can subscribe to. A plan is identified by its ``code`` (``free``,
  ``plus``, ``pro``) and ``version``: a price change is a new version (existing subscribers keep
  the version they subscribed to, which ``subscriptions.planId`` names), so a row's price never
  changes under an invoice. At most one version of a code is ``active`` (a partial unique
  index); older ones are ``archived``. Entitlements are a JSONB column on the plan, not a table:
  they are a handful of known keys (``entitlements.FEATURES``, checked in Python), always read
  with the plan in the one query every page makes, and versioned with it.
- ``subscriptions``: one student's subscription to one plan version; at most one that is not
  ``canceled`` per student (a partial unique index), so subscribing twice at once makes one.
  Its periods are computed from ``anchorAt`` and ``periodIndex`` (``periods``), so a period
  that started on the 31st of a month goes back to the 31st whenever the month has one.
- ``invoices``: one per subscription period (``UNIQUE (subscriptionId, periodStart)``: two
  workers or a retried job cannot make two), plus one per plan change made now (its period
  starts at the change). Numbered ``INV-YYYY-NNNNNN`` without gaps per year.
- ``invoice_lines`` (not named by the spec): what an invoice is made of (the plan for a
  period, the credit for unused time on the old plan, the charge for the rest of the period on
  the new one), each with the text a page shows. Lines carry ``userId`` so row-level security
  needs no join.
- ``invoice_numbers`` (not named by the spec): a counter row per year, locked ``FOR UPDATE``
  by the transaction that numbers an invoice, so numbers have no gaps and are never reused (a
  sequence would skip numbers on a rollback).
- ``dunning_attempts`` (not named by the spec): every attempt to charge an invoice and its
  outcome, one row per (invoice, attempt), so a retried job cannot count an attempt twice and
  a page can tell the story of a failed payment.
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
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.money.types import AMOUNT, CURRENCY_CODE, currency_check


class Interval(enum.StrEnum):
    MONTHLY = "monthly"
    YEARLY = "yearly"

    @property
    def months(self) -> int:
        return 1 if self is Interval.MONTHLY else 12

    @property
    def label(self) -> str:
        return "month" if self is Interval.MONTHLY else "year"


class PlanStatus(enum.StrEnum):
    ACTIVE = "active"  #: offered to new subscribers
    ARCHIVED = "archived"  #: kept for the subscribers who have it; no one new may take it


class SubscriptionStatus(enum.StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  #: an invoice is unpaid; retried on the dunning schedule
    CANCELED = "canceled"  #: ended; never reopened (subscribing again makes a new one)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"  #: numbered and owed; charged automatically
    PAID = "paid"
    VOID = "void"  #: withdrawn; its number stays used
    UNCOLLECTIBLE = "uncollectible"  #: every retry failed

    @property
    def label(self) -> str:
        return self.value.capitalize()


class InvoiceReason(enum.StrEnum):
    CYCLE = "cycle"  #: a period of the subscription
    CHANGE = "change"  #: a plan changed now: credit for the old plan, charge for the new


class LineKind(enum.StrEnum):
    PLAN = "plan"  #: a period of a plan
    PRORATION_CREDIT = "proration_credit"  #: unused time of the old plan (negative)
    PRORATION_DEBIT = "proration_debit"  #: the rest of the period on the new plan


class Plan(TimestampedModel):
    __tablename__ = "plans"

    #: Stable across versions (``free``, ``plus``, ``pro``).
    code: Mapped[str] = mapped_column(String(40))
    #: 1, 2, ...: a price change is a new version.
    version: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    #: Per interval, at the currency's scale; 0 is free (no invoices).
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    interval: Mapped[Interval] = mapped_column(string_enum(Interval, "interval"), default=Interval.MONTHLY)
    trial_days: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    #: Feature -> value (``entitlements.FEATURES``); a missing key takes the free default.
    entitlements: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    status: Mapped[PlanStatus] = mapped_column(string_enum(PlanStatus, "status"), default=PlanStatus.ACTIVE,
                                               index=True)
    #: Order on the comparison page (cheapest first by convention).
    position: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("code", "version"),
        Index("uq_plans_one_active_version", "code", unique=True, postgresql_where=text("status = 'active'")),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint('"trialDays" BETWEEN 0 AND 365', name="trial_days_range"),
        CheckConstraint("code ~ '^[a-z0-9_-]{1,40}$'", name="code_format"),
        CheckConstraint("""(status = 'archived') = ("archivedAt" IS NOT NULL)""", name="archived_when"),
    )

    @property
    def is_free(self) -> bool:
        return self.price == 0


class Subscription(TimestampedModel):
    __tablename__ = "subscriptions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: The plan version subscribed to (kept when the plan gets a new price).
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    status: Mapped[SubscriptionStatus] = mapped_column(string_enum(SubscriptionStatus, "status"), index=True)
    #: The moment billing periods count from; period n runs from anchor + n intervals to
    #: anchor + (n + 1) intervals, the day of the month clamped to the month's length.
    anchor_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The day of the month of ``anchorAt`` (1-31), kept for pages and checks.
    anchor_day: Mapped[int] = mapped_column(SmallInteger)
    period_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    current_period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: End of the trial (trials only).
    trial_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False, server_default="false")
    #: A plan to move to at the end of the period (a downgrade).
    scheduled_plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"),
                                                                 index=True)
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Why it ended (``requested``, ``period_end``, ``unpaid``).
    end_reason: Mapped[str | None] = mapped_column(String(40))
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The saved payment method (payment gateway) that pays its invoices automatically; NULL:
    #: they are paid from the wallet.
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payment_methods.id", ondelete="SET NULL"), index=True)

    __table_args__ = (
        # One live subscription per student: subscribing twice at once makes one.
        Index("uq_subscriptions_one_live", "user_id", unique=True, postgresql_where=text("status <> 'canceled'")),
        Index("ix_subscriptions_due", "status", "current_period_end"),
        Index("ix_subscriptions_user_created", "user_id", text('"createdAt" DESC')),
        CheckConstraint('"anchorDay" BETWEEN 1 AND 31', name="anchor_day_range"),
        CheckConstraint('"periodIndex" >= 0', name="period_index_not_negative"),
        CheckConstraint('"currentPeriodEnd" > "currentPeriodStart"', name="period_forward"),
        CheckConstraint("""(status = 'canceled') = ("endedAt" IS NOT NULL)""", name="ended_when_canceled"),
        CheckConstraint("""status <> 'trialing' OR "trialEnd" IS NOT NULL""", name="trial_has_end"),
        CheckConstraint("""(status = 'past_due') = ("pastDueSince" IS NOT NULL)""", name="past_due_since"),
    )


class Invoice(TimestampedModel):
    __tablename__ = "invoices"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id", ondelete="RESTRICT"))
    #: ``INV-YYYY-NNNNNN``; given when the invoice is made, never reused (voided ones keep it).
    number: Mapped[str] = mapped_column(String(20), unique=True)
    reason: Mapped[InvoiceReason] = mapped_column(string_enum(InvoiceReason, "reason"))
    status: Mapped[InvoiceStatus] = mapped_column(string_enum(InvoiceStatus, "status"), index=True)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    #: The sum of the lines, at the currency's scale.
    total: Mapped[Decimal] = mapped_column(AMOUNT)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Failed charges so far; the dunning schedule counts them.
    attempt_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    #: When the next automatic charge is due (NULL: none: paid, void, uncollectible).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The ledger movements that paid it.
    ledger_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)

    __table_args__ = (
        # Exactly one invoice per subscription period, whoever makes it.
        UniqueConstraint("subscription_id", "period_start"),
        Index("ix_invoices_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_invoices_created", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_invoices_charge_due", "next_attempt_at", postgresql_where=text("status = 'open'")),
        CheckConstraint("total >= 0", name="total_not_negative"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint(r"""number ~ '^INV-[0-9]{4}-[0-9]{6,}$'""", name="number_format"),
        CheckConstraint('"periodEnd" > "periodStart"', name="period_forward"),
        CheckConstraint("""(status = 'paid') = ("paidAt" IS NOT NULL)""", name="paid_when"),
        CheckConstraint("""(status = 'void') = ("voidedAt" IS NOT NULL)""", name="voided_when"),
        CheckConstraint("""status = 'open' OR "nextAttemptAt" IS NULL""", name="attempts_only_when_open"),
        CheckConstraint('"attemptCount" >= 0', name="attempt_count_not_negative"),
    )


class InvoiceLine(TimestampedModel):
    __tablename__ = "invoice_lines"

    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    #: The invoice's owner, copied so row-level security needs no join.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[LineKind] = mapped_column(string_enum(LineKind, "kind", length=30))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    description: Mapped[str] = mapped_column(String(300))
    #: Signed: credits are negative.
    amount: Mapped[Decimal] = mapped_column(AMOUNT)

    __table_args__ = (
        UniqueConstraint("invoice_id", "position"),
        CheckConstraint("""(kind = 'proration_credit') = (amount < 0) OR amount = 0""", name="credit_negative"),
    )


class InvoiceNumber(TimestampedModel):
    __tablename__ = "invoice_numbers"

    year: Mapped[int] = mapped_column(Integer, unique=True)
    #: The last number given in ``year`` (0: none yet).
    last_number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        CheckConstraint("year BETWEEN 2000 AND 9999", name="year_range"),
        CheckConstraint('"lastNumber" >= 0', name="last_number_not_negative"),
    )


class DunningAttempt(TimestampedModel):
    __tablename__ = "dunning_attempts"

    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: 1 for the first charge, then one more for each retry.
    attempt: Mapped[int] = mapped_column(SmallInteger)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    succeeded: Mapped[bool] = mapped_column(default=False)
    #: Why it failed, as the payer may read it.
    message: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: After a failure: when the next one is due (NULL: that was the last).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("invoice_id", "attempt"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
    )
