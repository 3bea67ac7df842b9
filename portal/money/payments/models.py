"""Payments from outside, saved payment methods and refunds (spec service 7, Payment Gateway).

Tables:

- ``payments``: one row per attempt to take money from a payer through a provider (a top-up,
  a course bought with a card) or from the payer's wallet (a course bought with wallet money,
  ``provider = 'wallet'``, so refunds and the purchase history treat both alike). Its ``state``
  follows the provider's PaymentIntent model and only moves forward (``states``).
- ``payment_methods``: the payer's saved methods, as much as the portal may keep (brand, last
  four, expiry); the card itself stays at the provider.
- ``refunds``: money given back for a payment, whole or in part; a request that needs finance's
  decision waits as ``requested``.
- ``payment_events`` (not named by the spec): a payment's timeline, one row for every state
  change, provider answer and webhook that touched it, with its source and the provider's
  data. Finance reads a payment's story here; the audit trail holds row images, not the
  provider's words.
- ``webhook_events`` (not named by the spec): every verified webhook, stored once by its
  provider's event id (``UNIQUE (provider, eventId)``) before it is applied, so a duplicate
  delivery changes nothing and finance can replay one.
- ``payment_customers`` (not named by the spec): the payer's customer id at each provider,
  which groups their saved methods there; a user may be a customer of several providers, so it
  is a small table rather than a column on ``users``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.money.payments.providers.base import PaymentState
from portal.money.types import AMOUNT, CURRENCY_CODE, currency_check


class Purpose(enum.StrEnum):
    TOP_UP = "top_up"  #: money into the payer's wallet
    COURSE_PURCHASE = "course_purchase"  #: a paid course
    INVOICE = "invoice"  #: a billing invoice paid with a saved method

    @property
    def label(self) -> str:
        return {"top_up": "Top-up", "course_purchase": "Course purchase", "invoice": "Invoice"}[self.value]


class PayWith(enum.StrEnum):
    """How a payment is paid: the provider port's method kinds, and the payer's own wallet."""

    CARD = "card"
    MOBILE_MONEY = "mobile_money"
    WALLET = "wallet"

    @property
    def label(self) -> str:
        return {"card": "Card", "mobile_money": "Mobile money", "wallet": "Wallet"}[self.value]


class RefundState(enum.StrEnum):
    """A refund's states: the provider's (pending, succeeded, failed, canceled) after two of the
    portal's own: ``requested`` (waiting for finance) and ``rejected`` (finance said no)."""

    REQUESTED = "requested"
    PENDING = "pending"  #: approved; the student's funds are held; the provider is settling it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"


class EventSource(enum.StrEnum):
    """Where what a payment event records came from."""

    PORTAL = "portal"  #: the portal's own action (created, refund requested)
    PROVIDER = "provider"  #: the provider's answer to a call (create, fetch)
    WEBHOOK = "webhook"
    POLL = "poll"  #: the reconciliation job asked the provider
    RETURN = "return"  #: the payer came back from the hosted page and the portal asked
    REPLAY = "replay"  #: finance replayed a stored webhook
    ADMIN = "admin"


class WebhookOutcome(enum.StrEnum):
    RECEIVED = "received"  #: stored, not applied yet
    APPLIED = "applied"
    IGNORED = "ignored"  #: nothing to apply (an event type the portal does not use, an unknown payment)
    FAILED = "failed"  #: applying raised; replayable


#: Providers a payment may name: the adapters of ``providers.ADAPTERS`` and the wallet.
PROVIDER_NAMES = ("sandbox", "stripe", "wallet")
_PROVIDER_CHECK = "provider IN (" + ", ".join(f"'{p}'" for p in PROVIDER_NAMES) + ")"


class Payment(TimestampedModel):
    __tablename__ = "payments"

    #: The payer.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    purpose: Mapped[Purpose] = mapped_column(string_enum(Purpose, "purpose"), index=True)
    #: The course bought (course purchases only).
    course_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    #: The invoice paid (invoice payments only). At most one payment per invoice that has not
    #: failed or been canceled (``uq_payments_one_live_per_invoice``): an invoice is never paid twice.
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    #: The wallet the money lands in (the payer's wallet in this currency). Equal to
    #: ``currency`` today: a top-up is never converted on the way in.
    wallet_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    state: Mapped[PaymentState] = mapped_column(string_enum(PaymentState, "state", length=30), index=True)
    #: The adapter's name (``sandbox``, ``stripe``), or ``wallet`` for a purchase paid from the wallet.
    provider: Mapped[str] = mapped_column(String(20), index=True)
    #: The provider's id for the payment; NULL until the provider answered (or for ``wallet``).
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    method_kind: Mapped[PayWith] = mapped_column(string_enum(PayWith, "method_kind"), index=True)
    #: The saved method paid with, when one was.
    method_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_methods.id", ondelete="SET NULL"),
                                                        index=True)
    #: What the method used looks like on a receipt ("visa", "4242"), once the provider says.
    method_brand: Mapped[str] = mapped_column(String(30), default="", server_default="")
    method_last4: Mapped[str] = mapped_column(String(4), default="", server_default="")
    #: The payer asked to keep the method for later payments.
    save_method: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: The checkout form's key: one payment per key per user (double clicks, two tabs).
    idempotency_key: Mapped[str] = mapped_column(String(100))
    #: The provider's fee once known (it is borne by the portal: see ``services``).
    fee: Mapped[Decimal | None] = mapped_column(AMOUNT)
    #: What succeeded refunds gave back so far.
    amount_refunded: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    #: Where the payer must go while ``requires_action`` (the hosted page, a challenge).
    next_action_url: Mapped[str | None] = mapped_column(String(1000))
    return_url: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    description: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: When the wallet was credited (once: the first time the payment is seen succeeded).
    credited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The ledger rows of the credit (and of the purchase for a course) share this group id.
    ledger_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    #: The last time the portal heard from the provider about it (webhook, poll, return).
    provider_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The provider could not be reached when it was created: the reconciliation job retries.
    needs_reconcile: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        Index("uq_payments_provider_ref", "provider", "provider_ref", unique=True,
              postgresql_where=text('"providerRef" IS NOT NULL')),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"walletCurrency" = currency', name="wallet_currency_matches"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint('fee IS NULL OR (fee >= 0 AND fee <= amount)', name="fee_range"),
        CheckConstraint('"amountRefunded" >= 0 AND "amountRefunded" <= amount', name="refunded_range"),
        CheckConstraint(_PROVIDER_CHECK, name="provider_known"),
        CheckConstraint("""(purpose = 'course_purchase') = ("courseId" IS NOT NULL)""", name="course_for_purchases"),
        CheckConstraint("""(purpose = 'invoice') = ("invoiceId" IS NOT NULL)""", name="invoice_for_invoice_payments"),
        Index("uq_payments_one_live_per_invoice", "invoice_id", unique=True,
              postgresql_where=text("\"invoiceId\" IS NOT NULL AND state NOT IN ('failed', 'canceled')")),
        CheckConstraint("""(provider = 'wallet') = ("methodKind" = 'wallet')""", name="wallet_paid_from_wallet"),
        CheckConstraint("""purpose = 'course_purchase' OR "methodKind" <> 'wallet'""", name="top_up_from_outside"),
        CheckConstraint("""state <> 'succeeded' OR "creditedAt" IS NOT NULL""", name="succeeded_is_credited"),
        # A student's payments, newest first; finance's list by state and by time (keyset).
        Index("ix_payments_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_payments_created", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_payments_state_updated", "state", text('"updatedAt"')),
    )


class PaymentMethod(TimestampedModel):
    __tablename__ = "payment_methods"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    #: The provider's id for the method (to pay with it again, or detach it).
    provider_ref: Mapped[str] = mapped_column(String(200))
    #: The payer's customer id at the provider the method belongs to.
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[PayWith] = mapped_column(string_enum(PayWith, "kind"))
    brand: Mapped[str] = mapped_column(String(30), default="", server_default="")
    last4: Mapped[str] = mapped_column(String(4), default="", server_default="")
    exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: Removed by the payer (and detached at the provider); kept for the payments that used it.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("provider", "provider_ref"),
        # One default method per payer among those not removed.
        Index("uq_payment_methods_one_default", "user_id", unique=True,
              postgresql_where=text('"isDefault" AND "removedAt" IS NULL')),
        CheckConstraint("provider IN ('sandbox', 'stripe')", name="provider_known"),
        CheckConstraint("kind <> 'wallet'", name="kind_from_provider"),
        CheckConstraint('"expMonth" IS NULL OR "expMonth" BETWEEN 1 AND 12', name="exp_month_range"),
        CheckConstraint('"expYear" IS NULL OR "expYear" BETWEEN 2000 AND 2200', name="exp_year_range"),
        CheckConstraint("last4 ~ '^[0-9]{0,4}$'", name="last4_digits"),
        CheckConstraint('NOT ("isDefault" AND "removedAt" IS NOT NULL)', name="removed_not_default"),
    )

    @property
    def label(self) -> str:
        brand = (self.brand or self.kind.label).capitalize()
        return f"{brand} ending {self.last4}" if self.last4 else brand


class Refund(TimestampedModel):
    __tablename__ = "refunds"

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    #: The payer (copied from the payment so row-level security needs no join).
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    state: Mapped[RefundState] = mapped_column(string_enum(RefundState, "state"), index=True)
    #: The provider's id for the refund; NULL before it was sent (and for wallet purchases).
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: Who approved or rejected it (NULL when approved automatically).
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str] = mapped_column(String(500), default="", server_default="")
    #: Approved by the course refund rule, without a person.
    automatic: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: The pending ledger transactions holding the student's funds while the provider settles.
    hold_transaction_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(PG_UUID(as_uuid=True)), default=list,
                                                                   server_default=text("'{}'::uuid[]"))
    #: The ledger rows of the refund share this group id.
    ledger_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    #: The key the refund was sent to the provider with (a retry never refunds twice).
    idempotency_key: Mapped[str] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("uq_refunds_provider_ref", "provider_ref", unique=True, postgresql_where=text('"providerRef" IS NOT NULL')),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("""state IN ('requested', 'rejected') OR "decidedAt" IS NOT NULL""", name="decided_unless_requested"),
        CheckConstraint("""state IN ('succeeded', 'failed', 'canceled') = ("settledAt" IS NOT NULL)""",
                        name="settled_when_final"),
        Index("ix_refunds_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        # Finance's queue (requested, oldest first) and the job's pending ones.
        Index("ix_refunds_state_created", "state", text('"createdAt"'), "id"),
    )


class PaymentEvent(TimestampedModel):
    """One entry of a payment's timeline (append-only in practice)."""

    __tablename__ = "payment_events"

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"))
    #: The payer (for row-level security without a join).
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id", ondelete="CASCADE"), index=True)
    source: Mapped[EventSource] = mapped_column(string_enum(EventSource, "source"))
    #: What happened, short ("created", "state", "credited", "refund.pending", "ignored" ...).
    kind: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(30))
    to_state: Mapped[str | None] = mapped_column(String(30))
    #: The provider's event id, for webhooks.
    provider_event_id: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: The provider's object or the facts of the change.
    data: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_payment_events_payment_created", "payment_id", text('"createdAt"'), "id"),)


class WebhookEvent(TimestampedModel):
    __tablename__ = "webhook_events"

    provider: Mapped[str] = mapped_column(String(20))
    #: The provider's event id: stored once.
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(60))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The signature was checked (only verified events are stored; kept explicit for the log).
    verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    #: The body as received (parsed JSON), for replay.
    payload: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    #: The headers the signature was checked with (signature and timestamp), for replay.
    headers: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[WebhookOutcome] = mapped_column(string_enum(WebhookOutcome, "outcome"), index=True)
    #: Why it failed or was ignored.
    detail: Mapped[str] = mapped_column(String(500), default="", server_default="")
    #: The payment it concerned, once known.
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"), index=True)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        CheckConstraint("provider IN ('sandbox', 'stripe')", name="provider_known"),
        Index("ix_webhook_events_received", text('"receivedAt" DESC'), text("id DESC")),
    )


class PaymentCustomer(TimestampedModel):
    __tablename__ = "payment_customers"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    #: The provider's customer id.
    customer_ref: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("user_id", "provider"),
        UniqueConstraint("provider", "customer_ref"),
        CheckConstraint("provider IN ('sandbox', 'stripe')", name="provider_known"),
    )
