"""Identity verification (spec service 5, KYC): the spec's ``kyc_verifications`` and, beside it,
``kyc_documents``: the uploaded files of a verification (several per submission, each encrypted
with its own metadata), a row of its own because that is the honest shape of the data.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum


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
