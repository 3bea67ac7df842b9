"""KYC verification, AML screening and transaction monitoring, and suspicious-activity cases
(spec service 5, KYC/AML).

Tables beside the spec's three (``kyc_verifications``, ``aml_checks``,
``suspicious_activities``), each because a row of its own is the honest shape of the data:

- ``kyc_documents``: the uploaded files of a verification (several per submission, each
  encrypted with its own metadata);
- ``watchlist_entries``: the imported sanctions and PEP list that screening matches against;
- ``monitoring_alerts``: what the transaction-monitoring rules found, attached to a case;
- ``case_events``: a case's timeline (assignments, comments, attachments, status changes).
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
    LargeBinary,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum

# ---------------------------------------------------------------------------------------- KYC


class KycStatus(enum.StrEnum):
    SUBMITTED = "submitted"  #: waiting for an officer
    AWAITING_SECOND = "awaiting_second"  #: level 3 approved once; a second officer must approve (four eyes)
    APPROVED = "approved"
    REJECTED = "rejected"
    REVISION_REQUESTED = "revision_requested"  #: the student must correct and submit again


KYC_TRANSITIONS: dict[KycStatus, frozenset[KycStatus]] = {
    KycStatus.SUBMITTED: frozenset({KycStatus.AWAITING_SECOND, KycStatus.APPROVED, KycStatus.REJECTED,
                                    KycStatus.REVISION_REQUESTED}),
    KycStatus.AWAITING_SECOND: frozenset({KycStatus.APPROVED, KycStatus.REJECTED, KycStatus.REVISION_REQUESTED}),
    KycStatus.APPROVED: frozenset(),
    KycStatus.REJECTED: frozenset(),
    KycStatus.REVISION_REQUESTED: frozenset(),
}
OPEN_KYC = (KycStatus.SUBMITTED, KycStatus.AWAITING_SECOND)


class KycVerification(TimestampedModel):
    """One submission of one level by one student. A revision is a new submission; the old row
    keeps its decision."""

    __tablename__ = "kyc_verifications"
    __audit_secret_columns__ = ("dataEncrypted",)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: 1: legal name, birth date, country, address; 2: an identity document; 3: proof of address and a selfie.
    level: Mapped[int] = mapped_column(Integer)
    status: Mapped[KycStatus] = mapped_column(string_enum(KycStatus, "status"), default=KycStatus.SUBMITTED,
                                              index=True)
    #: The submitted personal data (JSON: legal name, birth date, address, document number ...),
    #: AES-GCM encrypted (portal.security.crypto) and bound to this row's id.
    data_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    #: ISO 3166-1 alpha-2, kept in clear for the queue's filters.
    country: Mapped[str | None] = mapped_column(String(2))
    #: Level 2: the document's kind (passport, national_id, driving_licence) and expiry; an expired
    #: document needs renewal.
    document_type: Mapped[str | None] = mapped_column(String(30))
    document_expires_on: Mapped[date | None] = mapped_column(Date, index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: Level 3: the officer who approved first; the second approver must be someone else.
    first_approver_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                                index=True)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Why it was rejected or what to revise: shown to the student.
    decision_reason: Mapped[str] = mapped_column(String(1000), default="")

    __table_args__ = (
        CheckConstraint("level BETWEEN 1 AND 3", name="level_range"),
        CheckConstraint("""(status IN ('submitted', 'awaiting_second')) = ("decidedAt" IS NULL)""",
                        name="decided_unless_open"),
        CheckConstraint("""status <> 'awaiting_second' OR "firstApproverId" IS NOT NULL""",
                        name="second_needs_first"),
        CheckConstraint("""status <> 'approved' OR level < 3 OR ("firstApproverId" IS NOT NULL
                           AND "firstApproverId" <> "decidedById")""", name="four_eyes_for_level_3"),
        # One open submission per student and level.
        Index("uq_kyc_verifications_open", "user_id", "level", unique=True,
              postgresql_where=text("status IN ('submitted', 'awaiting_second')")),
        Index("ix_kyc_verifications_queue", "status", "submitted_at"),
    )


class KycDocumentKind(enum.StrEnum):
    ID_FRONT = "id_front"
    ID_BACK = "id_back"
    PROOF_OF_ADDRESS = "proof_of_address"
    SELFIE = "selfie"


class KycDocument(TimestampedModel):
    __tablename__ = "kyc_documents"
    __audit_secret_columns__ = ("contentEncrypted",)

    verification_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kyc_verifications.id", ondelete="CASCADE"),
                                                       index=True)
    #: The verification's student, kept here for row-level security.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[KycDocumentKind] = mapped_column(string_enum(KycDocumentKind, "kind"))
    #: A server-made name (never the uploaded one, which is kept only for display).
    stored_name: Mapped[str] = mapped_column(String(80), unique=True)
    original_name: Mapped[str] = mapped_column(String(200))
    #: The type found by looking at the content, not the one the browser claimed.
    content_type: Mapped[str] = mapped_column(String(60))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_encrypted: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (CheckConstraint('"sizeBytes" > 0', name="not_empty"),)


# --------------------------------------------------------------------------------- AML screening


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
    #: Every name and alias normalised (portal.compliance.kyc.matching), for candidate search.
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


# -------------------------------------------------------------------------- monitoring and cases


class CaseStatus(enum.StrEnum):
    OPEN = "open"  #: new, unassigned or not yet worked
    INVESTIGATING = "investigating"
    ESCALATED = "escalated"  #: for a senior officer
    CLOSED = "closed"


CASE_TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.INVESTIGATING, CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.INVESTIGATING: frozenset({CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.ESCALATED: frozenset({CaseStatus.INVESTIGATING, CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
}


class CaseSeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Disposition(enum.StrEnum):
    FALSE_POSITIVE = "false_positive"
    CONFIRMED_RISK = "confirmed_risk"
    REPORTED = "reported"  #: a suspicious activity report was filed


class SuspiciousActivity(TimestampedModel):
    """A case: one subject, the alerts that opened or joined it, and the officers' work on it.
    Students never see these rows (row-level security and no page mentions them)."""

    __tablename__ = "suspicious_activities"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[CaseStatus] = mapped_column(string_enum(CaseStatus, "status"), default=CaseStatus.OPEN,
                                               index=True)
    severity: Mapped[CaseSeverity] = mapped_column(string_enum(CaseSeverity, "severity"), index=True)
    #: The highest risk score of its alerts (0 to 100).
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: 30 days after detection; overdue cases are highlighted.
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    disposition: Mapped[Disposition | None] = mapped_column(string_enum(Disposition, "disposition"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The suspicious activity report built from the case's facts, once generated.
    report: Mapped[dict | None] = mapped_column(JSONB)
    report_generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("\"riskScore\" BETWEEN 0 AND 100", name="risk_range"),
        CheckConstraint("""(status = 'closed') = ("closedAt" IS NOT NULL AND disposition IS NOT NULL)""",
                        name="closed_has_disposition"),
        # One case open per subject: new alerts attach to it.
        Index("uq_suspicious_activities_open", "user_id", unique=True, postgresql_where=text("status <> 'closed'")),
    )


class MonitoringAlert(TimestampedModel):
    """The monitoring rules' findings on one side (the sender's or the recipient's) of one
    committed ledger transaction."""

    __tablename__ = "monitoring_alerts"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"))
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
        Index("ix_monitoring_alerts_created", text('"createdAt" DESC')),
    )


class CaseEventKind(enum.StrEnum):
    CREATED = "created"
    ALERT = "alert"
    ASSIGNED = "assigned"
    COMMENT = "comment"
    ATTACHMENT = "attachment"
    STATUS = "status"
    REPORT = "report"


class CaseEvent(TimestampedModel):
    """One line of a case's timeline."""

    __tablename__ = "case_events"
    __audit_secret_columns__ = ("attachmentEncrypted",)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("suspicious_activities.id", ondelete="CASCADE"))
    kind: Mapped[CaseEventKind] = mapped_column(string_enum(CaseEventKind, "kind"))
    #: NULL for the system (monitoring, jobs).
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    attachment_name: Mapped[str | None] = mapped_column(String(200))
    attachment_content_type: Mapped[str | None] = mapped_column(String(60))
    attachment_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_case_events_case_created", "case_id", text("\"createdAt\"")),)


class MonitoringRule(TimestampedModel):
    """A transaction-monitoring rule's settings as admins last saved them (thresholds, windows,
    score). Defaults come from configuration; a row here overrides them."""

    __tablename__ = "monitoring_rules"

    #: The rule's name in ``portal.compliance.kyc.monitoring`` (``large_amount``, ``structuring`` ...).
    name: Mapped[str] = mapped_column(String(40), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    params: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
