"""Milestones that pay rewards, the earnings students receive for them, and withdrawals of money
out of the portal (spec service 9, Student Earnings)."""

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
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.money.types import AMOUNT, CURRENCY_CODE, currency_check


class MilestoneKind(enum.StrEnum):
    COURSE_COMPLETED = "course_completed"  #: complete a course (one, or any when courseId is NULL)
    QUIZ_PASSED = "quiz_passed"  #: pass a quiz (one, or any of a course, or any) with minScore
    STREAK = "streak"  #: learn on ``streakDays`` days in a row

    @property
    def label(self) -> str:
        return {"course_completed": "Complete a course", "quiz_passed": "Pass a quiz",
                "streak": "Learning streak"}[self.value]


class Milestone(TimestampedModel):
    __tablename__ = "milestones"

    title: Mapped[str] = mapped_column(String(160))
    description: Mapped[str] = mapped_column(String(500), default="")
    kind: Mapped[MilestoneKind] = mapped_column(string_enum(MilestoneKind, "kind"), index=True)
    #: Limits the milestone to one course (NULL: any course).
    course_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    #: Limits a quiz milestone to one quiz (NULL: any quiz of the course, or any quiz).
    quiz_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), index=True)
    #: For quiz milestones: the lowest score, in percent, that earns it.
    min_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    #: For streaks: how many days in a row.
    streak_days: Mapped[int | None] = mapped_column(Integer)
    reward_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    reward_currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    active: Mapped[bool] = mapped_column(default=True, server_default="true", index=True)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    __table_args__ = (
        CheckConstraint('"rewardAmount" > 0', name="reward_positive"),
        CheckConstraint(currency_check("rewardCurrency"), name="currency_known"),
        CheckConstraint('"minScore" IS NULL OR "minScore" BETWEEN 0 AND 100', name="score_range"),
        CheckConstraint("""(kind = 'streak') = ("streakDays" IS NOT NULL)""", name="streak_has_days"),
        CheckConstraint('"streakDays" IS NULL OR "streakDays" BETWEEN 2 AND 365', name="streak_range"),
        CheckConstraint("""kind = 'quiz_passed' OR ("quizId" IS NULL AND "minScore" IS NULL)""",
                        name="quiz_fields_for_quizzes"),
    )


class EarningStatus(enum.StrEnum):
    PENDING = "pending"  #: earned, not yet paid
    CREDITED = "credited"  #: paid into the wallet
    REVERSED = "reversed"  #: taken back by a reversing transaction


EARNING_TRANSITIONS: dict[EarningStatus, frozenset[EarningStatus]] = {
    EarningStatus.PENDING: frozenset({EarningStatus.CREDITED, EarningStatus.REVERSED}),
    EarningStatus.CREDITED: frozenset({EarningStatus.REVERSED}),
    EarningStatus.REVERSED: frozenset(),
}


class Earning(TimestampedModel):
    __tablename__ = "earnings"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    milestone_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("milestones.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    #: The event that earned it (``quiz_passed``, ``course_completed``, ``lesson_completed``).
    source: Mapped[str] = mapped_column(String(40))
    #: What the event was about, for the student to read: the course or quiz and its title.
    source_ref: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[EarningStatus] = mapped_column(string_enum(EarningStatus, "status"),
                                                  default=EarningStatus.PENDING, index=True)
    #: The reward's ledger transaction, once credited.
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"),
                                                             index=True)
    credited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Each student earns each milestone once, however often or concurrently the event comes.
        UniqueConstraint("user_id", "milestone_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("""status = 'pending' OR "transactionId" IS NOT NULL""", name="paid_has_transaction"),
        # A student's earnings and the admins' review, newest first, keyset on (createdAt, id).
        Index("ix_earnings_user_created", "user_id", "createdAt", "id"),
        Index("ix_earnings_created", "createdAt", "id"),
        Index("ix_earnings_status_created", "status", "createdAt", "id"),
    )


class WithdrawalMethod(enum.StrEnum):
    BANK_ACCOUNT = "bank_account"
    MOBILE_MONEY = "mobile_money"
    CRYPTO_ADDRESS = "crypto_address"

    @property
    def label(self) -> str:
        return {"bank_account": "Bank account (IBAN)", "mobile_money": "Mobile money",
                "crypto_address": "Crypto address"}[self.value]


class WithdrawalStatus(enum.StrEnum):
    PENDING = "pending"  #: held, waiting for an admin
    APPROVED = "approved"  #: paid out through the withdrawals system wallet
    REJECTED = "rejected"  #: the hold was released
    CANCELLED = "cancelled"  #: withdrawn by the student before review; the hold was released


WITHDRAWAL_TRANSITIONS: dict[WithdrawalStatus, frozenset[WithdrawalStatus]] = {
    WithdrawalStatus.PENDING: frozenset({WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED,
                                         WithdrawalStatus.CANCELLED}),
    WithdrawalStatus.APPROVED: frozenset(),
    WithdrawalStatus.REJECTED: frozenset(),
    WithdrawalStatus.CANCELLED: frozenset(),
}


class Withdrawal(TimestampedModel):
    __tablename__ = "withdrawals"
    __audit_secret_columns__ = ("destinationEncrypted",)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    #: Taken on top of ``amount`` at approval, to the fee wallet (held with it).
    fee_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    method: Mapped[WithdrawalMethod] = mapped_column(string_enum(WithdrawalMethod, "method"))
    #: The full destination (IBAN, phone number, address), AES-GCM encrypted (portal.security.crypto).
    destination_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    #: What pages show: the last characters only.
    destination_masked: Mapped[str] = mapped_column(String(80))
    status: Mapped[WithdrawalStatus] = mapped_column(string_enum(WithdrawalStatus, "status"),
                                                     default=WithdrawalStatus.PENDING, index=True)
    #: The pending transaction holding ``amount + feeAmount``.
    hold_transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transactions.id", ondelete="RESTRICT"), index=True)
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Why it was rejected (shown to the student), or the payout reference at approval.
    review_note: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (
        CheckConstraint("amount > 0 AND \"feeAmount\" >= 0", name="amounts_valid"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("""(status = 'pending') = ("reviewedAt" IS NULL)""", name="reviewed_unless_pending"),
        Index("ix_withdrawals_user_created", "user_id", text('"createdAt" DESC')),
        # The admins' queue: one status, oldest first, keyset on (createdAt, id).
        Index("ix_withdrawals_status_created", "status", "createdAt", "id"),
    )
