"""Lending's tables (spec service 2: loans, collaterals, repayments) and the ones the shape of a
loan honestly needs beside them.

- ``loan_products``: what may be borrowed and how (currency, limits, interest method,
  amortization, frequency, base rate, fee, grace, daily penalty). A loan copies its terms from
  its product when it is made, so changing a product never rewrites a signed schedule.
- ``loans``: one application and, once disbursed, the loan; its ``state`` moves only along
  ``states.LOAN_TRANSITIONS``.
- ``loan_instalments`` (not named by the spec): the schedule, one row per instalment, with what
  is due and what was paid of each part (penalty, fee, interest, principal). Arrears, PAR and the
  student's schedule page read these rows; a JSON column could not be indexed by due date.
- ``repayments``: every payment towards a loan (by the student, automatic, from liquidated
  collateral), with how it was allocated and the ledger group that moved it.
- ``collaterals``: crypto pledged from the student's BTC or ETH wallet, held by the ledger
  (``holdTransactionId``), valued by a job with a haircut.
- ``loan_events`` (not named by the spec): a loan's history: every state change, decision with
  its reason, counter-offer, restructure (the schedule replaced is kept in ``data``), margin call.
  The audit trail keeps row images; this keeps what an officer and the student read.
- ``loan_assessments`` (not named by the spec): the risk assessment as it was when an
  application was made (score, limit, rate band and the explaining lines), so the officer's
  queue shows what the decision was based on even after the student's record changes.
- ``loan_accruals`` (not named by the spec): one row per loan per day the penalty job ran for it,
  ``UNIQUE (loanId, day)``: the "exactly once" of the daily job, safe with two workers and retries.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
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
from portal.money.types import AMOUNT, CURRENCY_CODE, RATE, currency_check


class LoanState(enum.StrEnum):
    SUBMITTED = "submitted"  #: applied for, waiting for an officer
    APPROVED = "approved"  #: approved (or counter-offered), not paid out yet
    ACTIVE = "active"  #: disbursed, being repaid
    CLOSED = "closed"  #: repaid in full
    WRITTEN_OFF = "written_off"
    RESTRUCTURED = "restructured"  #: active under a new schedule
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  #: the student took the application back, or declined a counter-offer

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class InstalmentState(enum.StrEnum):
    DUE = "due"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    OVERDUE = "overdue"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class CollateralState(enum.StrEnum):
    PLEDGED = "pledged"  #: held in the student's wallet
    RELEASED = "released"  #: the hold ended (loan repaid, application refused)
    LIQUIDATED = "liquidated"  #: all of it sold to cover the loan


class RepaymentSource(enum.StrEnum):
    STUDENT = "student"
    AUTOMATIC = "automatic"  #: taken from the wallet on a due date (auto-repay)
    LIQUIDATION = "liquidation"  #: collateral sold


_AMOUNTS = ("principal", "interest", "fee", "penalty")


class LoanProduct(TimestampedModel):
    __tablename__ = "loan_products"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    min_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    max_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    #: Instalments, fewest and most.
    min_term: Mapped[int] = mapped_column(SmallInteger)
    max_term: Mapped[int] = mapped_column(SmallInteger)
    frequency: Mapped[str] = mapped_column(String(10), default="monthly")
    interest_method: Mapped[str] = mapped_column(String(12), default="declining")
    amortization: Mapped[str] = mapped_column(String(20), default="equal_instalments")
    #: Nominal annual rate in percent before the assessment's rate band is added.
    annual_rate: Mapped[Decimal] = mapped_column(RATE)
    #: Fee at disbursement: percent of the principal plus a fixed part.
    fee_percent: Mapped[Decimal] = mapped_column(RATE, default=Decimal(0), server_default="0")
    fee_fixed: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: Instalments of interest only at the start.
    grace: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    #: Penalty per day on an overdue instalment's unpaid principal and interest, in percent.
    penalty_daily_percent: Mapped[Decimal] = mapped_column(RATE, default=Decimal(0), server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")

    __table_args__ = (
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint('"minAmount" > 0 AND "maxAmount" >= "minAmount"', name="amount_range"),
        CheckConstraint('"minTerm" >= 1 AND "maxTerm" >= "minTerm" AND "maxTerm" <= 520', name="term_range"),
        CheckConstraint("frequency IN ('monthly', 'weekly')", name="frequency_known"),
        CheckConstraint("\"interestMethod\" IN ('flat', 'declining')", name="interest_method_known"),
        CheckConstraint("amortization IN ('equal_instalments', 'equal_principal')", name="amortization_known"),
        CheckConstraint('"annualRate" >= 0 AND "annualRate" <= 100', name="rate_range"),
        CheckConstraint('"feePercent" >= 0 AND "feePercent" <= 20 AND "feeFixed" >= 0', name="fee_range"),
        CheckConstraint('grace >= 0 AND grace < "maxTerm"', name="grace_range"),
        CheckConstraint('"penaltyDailyPercent" >= 0 AND "penaltyDailyPercent" <= 1', name="penalty_range"),
    )


class Loan(TimestampedModel):
    __tablename__ = "loans"

    #: The borrower.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loan_products.id", ondelete="RESTRICT"), index=True)
    state: Mapped[LoanState] = mapped_column(string_enum(LoanState, "state"), index=True)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    #: Instalments.
    term: Mapped[int] = mapped_column(SmallInteger)
    annual_rate: Mapped[Decimal] = mapped_column(RATE)
    frequency: Mapped[str] = mapped_column(String(10))
    interest_method: Mapped[str] = mapped_column(String(12))
    amortization: Mapped[str] = mapped_column(String(20))
    grace: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    #: Taken at disbursement.
    fee: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    penalty_daily_percent: Mapped[Decimal] = mapped_column(RATE, default=Decimal(0), server_default="0")
    #: The offer's figures as shown to the student (APR in percent, total cost in the currency).
    apr: Mapped[Decimal] = mapped_column(RATE, default=Decimal(0), server_default="0")
    total_cost: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    purpose: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: The application form's key: one application per key per user (double clicks).
    idempotency_key: Mapped[str] = mapped_column(String(100))
    #: An officer changed the terms: the student must accept before the money is paid out.
    counter_offered: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The officer whose approval came first; above the four-eyes amount a second one confirms.
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    confirmed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                              index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    disbursed_on: Mapped[date | None] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    #: Repay from the wallet on each due date.
    auto_repay: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: Ledger group of the disbursement.
    disbursement_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)

    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("principal > 0", name="principal_positive"),
        CheckConstraint("term >= 1", name="term_positive"),
        CheckConstraint('"annualRate" >= 0 AND "annualRate" <= 100', name="rate_range"),
        CheckConstraint("fee >= 0 AND fee < principal", name="fee_range"),
        CheckConstraint("grace >= 0 AND grace < term", name="grace_range"),
        CheckConstraint("frequency IN ('monthly', 'weekly')", name="frequency_known"),
        CheckConstraint("\"interestMethod\" IN ('flat', 'declining')", name="interest_method_known"),
        CheckConstraint("amortization IN ('equal_instalments', 'equal_principal')", name="amortization_known"),
        CheckConstraint("""state NOT IN ('active', 'closed', 'written_off', 'restructured')
                           OR "disbursedOn" IS NOT NULL""", name="disbursed_when_running"),
        CheckConstraint('"confirmedById" IS NULL OR "confirmedById" <> "approvedById"', name="four_eyes"),
        # One application in flight per student: applying twice (two tabs) makes one.
        Index("uq_loans_one_open_application", "user_id", unique=True,
              postgresql_where=text("state IN ('submitted', 'approved')")),
        Index("ix_loans_user_created", "user_id", text('"createdAt" DESC'), text("id DESC")),
        Index("ix_loans_state_created", "state", text('"createdAt"'), text("id")),
    )


class LoanInstalment(TimestampedModel):
    __tablename__ = "loan_instalments"

    loan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loans.id", ondelete="CASCADE"), index=True)
    #: The borrower, copied for row-level security and the student's pages.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    number: Mapped[int] = mapped_column(SmallInteger)
    due_on: Mapped[date] = mapped_column(Date)
    state: Mapped[InstalmentState] = mapped_column(string_enum(InstalmentState, "state"), index=True,
                                                   default=InstalmentState.DUE)
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    interest: Mapped[Decimal] = mapped_column(AMOUNT)
    fee: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: Penalties accrued while overdue (the daily job adds to it).
    penalty: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    principal_paid: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    interest_paid: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    fee_paid: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    penalty_paid: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    #: Interest given up by an early repayment (declining balance: interest is owed only to the day paid).
    interest_waived: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    paid_on: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        UniqueConstraint("loan_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("principal >= 0 AND interest >= 0 AND fee >= 0 AND penalty >= 0", name="amounts_not_negative"),
        CheckConstraint('"principalPaid" >= 0 AND "principalPaid" <= principal', name="principal_paid_range"),
        CheckConstraint('"interestPaid" >= 0 AND "interestWaived" >= 0 AND "interestPaid" + "interestWaived" <= interest',
                        name="interest_paid_range"),
        CheckConstraint('"feePaid" >= 0 AND "feePaid" <= fee', name="fee_paid_range"),
        CheckConstraint('"penaltyPaid" >= 0 AND "penaltyPaid" <= penalty', name="penalty_paid_range"),
        CheckConstraint("""(state = 'paid') = ("paidOn" IS NOT NULL)""", name="paid_has_date"),
        # Arrears, PAR and the due-date jobs: unpaid instalments by due date.
        Index("ix_loan_instalments_unpaid_due", "due_on", "loan_id", postgresql_where=text("state <> 'paid'")),
    )

    @property
    def outstanding(self) -> Decimal:
        return (self.principal - self.principal_paid) + self.interest_outstanding + (self.fee - self.fee_paid) \
            + (self.penalty - self.penalty_paid)

    @property
    def interest_outstanding(self) -> Decimal:
        return self.interest - self.interest_paid - self.interest_waived

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest - self.interest_waived + self.fee + self.penalty


class Repayment(TimestampedModel):
    __tablename__ = "repayments"

    loan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loans.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    source: Mapped[RepaymentSource] = mapped_column(string_enum(RepaymentSource, "source"), index=True)
    #: How the amount was allocated.
    principal: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    interest: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    fee: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    penalty: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")
    paid_on: Mapped[date] = mapped_column(Date)
    #: The request's key (the form's, or ``auto:<loan>:<date>`` for the job): one payment per key.
    idempotency_key: Mapped[str] = mapped_column(String(100))
    ledger_group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    #: Per instalment: {number: {principal, interest, fee, penalty}}.
    allocation: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        UniqueConstraint("loan_id", "idempotency_key"),
        CheckConstraint(currency_check(), name="currency_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("principal + interest + fee + penalty = amount", name="allocation_adds_up"),
        CheckConstraint("principal >= 0 AND interest >= 0 AND fee >= 0 AND penalty >= 0", name="parts_not_negative"),
        Index("ix_repayments_loan_paid", "loan_id", text('"paidOn" DESC'), text('"createdAt" DESC')),
    )


class Collateral(TimestampedModel):
    __tablename__ = "collaterals"

    loan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loans.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: The pledged wallet's currency (BTC or ETH).
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    #: Still pledged (falls as parts are liquidated).
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    state: Mapped[CollateralState] = mapped_column(string_enum(CollateralState, "state"), index=True,
                                                   default=CollateralState.PLEDGED)
    #: The ledger hold on the student's wallet (a pending transaction).
    hold_transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"),
                                                                  index=True)
    #: Fraction taken off the market value (0.3 = valued at 70%).
    haircut: Mapped[Decimal] = mapped_column(RATE)
    #: The last valuation: rate used (loan currency per unit), value after haircut, when, LTV.
    rate: Mapped[Decimal | None] = mapped_column(RATE)
    value: Mapped[Decimal | None] = mapped_column(AMOUNT)
    valued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ltv: Mapped[Decimal | None] = mapped_column(RATE)
    margin_called_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    liquidated_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0), server_default="0")

    __table_args__ = (
        CheckConstraint("currency IN ('BTC', 'ETH')", name="crypto_only"),
        CheckConstraint("amount >= 0 AND \"liquidatedAmount\" >= 0", name="amounts_not_negative"),
        CheckConstraint("haircut >= 0 AND haircut < 1", name="haircut_range"),
        CheckConstraint("state <> 'pledged' OR amount > 0", name="pledged_is_positive"),
    )


class LoanEvent(TimestampedModel):
    __tablename__ = "loan_events"

    loan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loans.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: Who did it (NULL for jobs).
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    data: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_loan_events_loan_created", "loan_id", text('"createdAt"'), text("id")),)


class LoanAssessment(TimestampedModel):
    __tablename__ = "loan_assessments"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    loan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("loans.id", ondelete="CASCADE"), index=True)
    #: 0 to 100.
    score: Mapped[int] = mapped_column(SmallInteger)
    #: Most the student may borrow (in ``currency``).
    limit_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(CURRENCY_CODE)
    #: Letter band; ``rateMargin`` percentage points on top of the product's rate.
    band: Mapped[str] = mapped_column(String(2))
    rate_margin: Mapped[Decimal] = mapped_column(RATE)
    #: The explanation: [{"factor", "value", "points", "note"}].
    lines: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))

    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 100", name="score_range"),
        CheckConstraint('"limitAmount" >= 0', name="limit_not_negative"),
        CheckConstraint("band IN ('A', 'B', 'C', 'D', 'E')", name="band_known"),
        CheckConstraint(currency_check(), name="currency_known"),
    )


class LoanAccrual(TimestampedModel):
    __tablename__ = "loan_accruals"

    loan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("loans.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: The day the penalty is for.
    day: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    overdue_instalments: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("loan_id", "day"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )
