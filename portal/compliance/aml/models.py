"""AML screening and transaction monitoring (spec service 5, AML): the spec's ``aml_checks`` and,
beside it, each because a row of its own is the honest shape of the data:

- ``watchlist_entries``: the imported sanctions and PEP list that screening matches against;
- ``monitoring_alerts``: what the transaction-monitoring rules found, attached to a case;
- ``monitoring_rules``: the monitoring rules' thresholds as admins edited them.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum


class WatchlistKind(enum.StrEnum):
    SANCTION = "sanction"
    PEP = "pep"  #: politically exposed person


class WatchlistEntry(TimestampedModel):
    """One person of the imported sanctions and PEP list. An import replaces every row in one
    transaction, so screening never sees half a list."""

    __tablename__ = "watchlist_entries"

    kind: Mapped[WatchlistKind] = mapped_column(string_enum(WatchlistKind, "kind"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    aliases: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    birth_date: Mapped[date | None] = mapped_column(Date)
    country: Mapped[str | None] = mapped_column(String(2))
    #: The list it came from (e.g. "UN consolidated", "EU", "national PEP list").
    list_source: Mapped[str] = mapped_column(String(120))
    #: Every name and alias normalised (portal.compliance.aml.matching), for candidate search.
    normalized_names: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: The import this row came with.
    import_id: Mapped[uuid.UUID] = mapped_column(index=True)


class AmlTrigger(enum.StrEnum):
    KYC_SUBMISSION = "kyc_submission"
    ON_DEMAND = "on_demand"


class AmlStatus(enum.StrEnum):
    CLEAR = "clear"  #: no hit at or above the threshold
    PENDING_REVIEW = "pending_review"  #: hits for an officer to judge
    CONFIRMED = "confirmed"  #: an officer confirmed a hit
    FALSE_POSITIVE = "false_positive"  #: an officer judged the hits wrong


class AmlCheck(TimestampedModel):
    __tablename__ = "aml_checks"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    verification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("kyc_verifications.id", ondelete="SET NULL"), index=True)
    trigger: Mapped[AmlTrigger] = mapped_column(string_enum(AmlTrigger, "trigger"))
    screened_name: Mapped[str] = mapped_column(String(300))
    screened_birth_date: Mapped[date | None] = mapped_column(Date)
    screened_country: Mapped[str | None] = mapped_column(String(2))
    #: The score from which a candidate counts as a hit (0 to 100), as configured at the time.
    threshold: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    top_score: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal(0))
    #: Each hit explained: ``[{"entryId", "name", "matchedName", "score", "agreeing": [...], ...}]``.
    hits: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    status: Mapped[AmlStatus] = mapped_column(string_enum(AmlStatus, "status"), index=True)
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_reason: Mapped[str] = mapped_column(String(1000), default="")

    __table_args__ = (
        CheckConstraint("threshold BETWEEN 0 AND 100 AND \"topScore\" BETWEEN 0 AND 100", name="scores_range"),
        Index("ix_aml_checks_user_created", "user_id", text('"createdAt" DESC')),
        # The officers' list: each status in time order (the pending queue oldest first, a
        # filtered list newest first), and every check newest first.
        Index("ix_aml_checks_status_created", "status", text('"createdAt"'), "id"),
        Index("ix_aml_checks_created", text('"createdAt"'), "id"),
    )


class MonitoringAlert(TimestampedModel):
    """The monitoring rules' findings on one side (the sender's or the recipient's) of one
    committed ledger transaction, or on one card transaction of a user (a declined authorization
    moves no money and has no ledger row): exactly one of the two."""

    __tablename__ = "monitoring_alerts"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"))
    card_transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("card_transactions.id", ondelete="RESTRICT"))
    #: ``[{"rule": "structuring", "score": 30, "detail": "4 transfers of 9,500-9,999 USD in 3 days"}]``.
    rules: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    risk_score: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("suspicious_activities.id", ondelete="SET NULL"),
                                                      index=True)

    __table_args__ = (
        CheckConstraint("\"riskScore\" BETWEEN 0 AND 100", name="risk_range"),
        # The rules run once per side of a transaction (its sender and its recipient each get an
        # alert of their own), even when its job runs twice. It serves the transaction's foreign
        # key as well.
        Index("uq_monitoring_alerts_transaction_user", "transaction_id", "user_id", unique=True),
        Index("uq_monitoring_alerts_card_transaction_user", "card_transaction_id", "user_id", unique=True,
              postgresql_where=text('"cardTransactionId" IS NOT NULL')),
        CheckConstraint('("transactionId" IS NULL) <> ("cardTransactionId" IS NULL)', name="one_subject"),
        Index("ix_monitoring_alerts_created", text('"createdAt" DESC')),
    )


class MonitoringRule(TimestampedModel):
    """A transaction-monitoring rule's settings as admins last saved them (thresholds, windows,
    score). Defaults come from configuration; a row here overrides them."""

    __tablename__ = "monitoring_rules"

    #: The rule's name in ``portal.compliance.aml.monitoring`` (``large_amount``, ``structuring`` ...).
    name: Mapped[str] = mapped_column(String(40), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    params: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)


class MonitoringCursor(TimestampedModel):
    """How far one monitoring sweep has judged: one row per sweep (``card_authorizations``,
    ``ledger_movements``), its watermark moved forward in the same transaction as the alerts the
    sweep raises, so a run that rolls back moves nothing and the next run judges the same rows.

    A table of its own rather than a column of ``monitoring_rules``: those rows are per rule and
    edited by admins (each save is audited as an admin's change), while a cursor is per sweep,
    written only by the worker, and locked by it for the length of a run (``FOR UPDATE SKIP
    LOCKED``), which must not block an admin saving a rule. Nor can the job queue's own tables
    hold it: procrastinate keeps only the last deferred schedule time, not what was judged, and
    commits it in its own transaction. See ``portal.compliance.aml.cursors``."""

    __tablename__ = "monitoring_cursors"

    #: The sweep this row belongs to.
    name: Mapped[str] = mapped_column(String(40), unique=True)
    #: Everything created before this instant has been judged (the end of the last batch).
    checked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
