"""What a student could borrow and why: a risk assessment explained as lines.

``facts_for`` reads what the portal knows (identity level from KYC, account age, the learning
record's certificates, earnings, the student's own repayment history, the latest AML screening);
``assess`` turns those facts into points, a score (0-100), a band, a limit and a rate margin. It is
pure and deterministic: the same facts always give the same answer, and every point is a line the
student and the officer can read.

Bands (score -> share of the product's maximum, percentage points over its rate):
A >= 70: 100%, +0; B >= 55: 75%, +2; C >= 40: 50%, +4; D >= 25: 25%, +7; E below: no loan.
Not eligible at all whatever the score: no verified identity (KYC level 0), an AML screening
confirmed or waiting for review, or a loan written off.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import func, select

from portal.db import db
from portal.money.currency import currency

#: (least score, band, share of the product's maximum, rate margin in percentage points)
BANDS = (
    (70, "A", Decimal("1.00"), Decimal("0")),
    (55, "B", Decimal("0.75"), Decimal("2")),
    (40, "C", Decimal("0.50"), Decimal("4")),
    (25, "D", Decimal("0.25"), Decimal("7")),
    (0, "E", Decimal("0"), Decimal("0")),
)


@dataclass(frozen=True)
class Facts:
    kyc_level: int
    account_days: int
    certificates: int
    earnings: int
    loans_repaid: int
    loans_written_off: int
    overdue_instalments: int
    #: The latest AML screening's status ("clear", "pending_review", "confirmed",
    #: "false_positive"), or None when never screened.
    aml_status: str | None


@dataclass(frozen=True)
class Line:
    factor: str
    value: str
    points: int
    note: str


@dataclass(frozen=True)
class Assessment:
    score: int
    band: str
    limit: Decimal
    currency: str
    rate_margin: Decimal
    eligible: bool
    lines: list[Line] = field(default_factory=list)
    #: Why not, when not eligible.
    reasons: list[str] = field(default_factory=list)

    def as_rows(self) -> list[dict]:
        return [{"factor": x.factor, "value": x.value, "points": x.points, "note": x.note} for x in self.lines]


def _kyc(level: int) -> Line:
    points = {0: 0, 1: 10, 2: 25, 3: 35}.get(level, 35)
    note = "Verify your identity to borrow." if level == 0 else (
        "Full verification." if level >= 3 else "A higher verification level raises the score.")
    return Line("Identity", f"Level {level}", points, note)


def _age(days: int) -> Line:
    points = 0 if days < 30 else 10 if days < 180 else 15 if days < 365 else 20
    return Line("Account age", f"{days} days", points, "Older accounts score more (up to a year).")


def _learning(certificates: int) -> Line:
    return Line("Learning record", f"{certificates} certificates", min(certificates * 5, 20),
                "5 points per course certificate, up to 20.")


def _earnings(count: int) -> Line:
    points = 10 if count >= 5 else 5 if count >= 1 else 0
    return Line("Earnings", f"{count} rewards earned", points, "Rewards earned show steady progress.")


def _history(facts: Facts) -> Line:
    points = min(facts.loans_repaid * 5, 15) - 30 * facts.loans_written_off - 10 * min(facts.overdue_instalments, 1)
    value = f"{facts.loans_repaid} repaid, {facts.loans_written_off} written off, {facts.overdue_instalments} overdue"
    return Line("Repayment history", value, points, "Each loan repaid adds 5 (up to 15); arrears and write-offs cost.")


def _aml(status: str | None) -> Line:
    label = {None: "Not screened", "clear": "Clear", "false_positive": "Clear (reviewed)",
             "pending_review": "Under review", "confirmed": "Match confirmed"}.get(status, status or "")
    points = 10 if status in ("clear", "false_positive") else 0
    return Line("AML screening", label, points, "A clear screening adds 10.")


def assess(facts: Facts, product_max: Decimal, code: str) -> Assessment:
    """The assessment of ``facts`` for a product lending up to ``product_max`` ``code``."""
    lines = [_kyc(facts.kyc_level), _age(facts.account_days), _learning(facts.certificates),
             _earnings(facts.earnings), _history(facts), _aml(facts.aml_status)]
    score = max(0, min(100, sum(line.points for line in lines)))
    least, band, share, margin = next(b for b in BANDS if score >= b[0])
    del least
    reasons = []
    if facts.kyc_level < 1:
        reasons.append("Your identity is not verified yet (KYC level 1 at least).")
    if facts.aml_status in ("pending_review", "confirmed"):
        reasons.append("Your screening needs a compliance officer's review first.")
    if facts.loans_written_off:
        reasons.append("A previous loan was written off.")
    if band == "E":
        reasons.append(f"The score {score} is below the lowest band (25).")
    eligible = not reasons
    limit = (product_max * share).quantize(currency(code).quantum, rounding=ROUND_DOWN) if eligible else Decimal(0)
    return Assessment(score, band, limit, code, margin if eligible else Decimal(0), eligible, lines, reasons)


def facts_for(user_id: uuid.UUID, today: date) -> Facts:
    """What the portal knows about the student, read now."""
    from portal.accounts.models import User
    from portal.compliance.aml.models import AmlCheck
    from portal.compliance.kyc.queries import effective_level
    from portal.learning.lms.models import Certificate
    from portal.money.earnings.models import Earning
    from portal.money.lending.models import InstalmentState, Loan, LoanInstalment, LoanState

    created = db.session.scalar(select(User.created_at).where(User.id == user_id))
    states = dict(db.session.execute(select(Loan.state, func.count()).where(Loan.user_id == user_id)
                                     .group_by(Loan.state)).all())
    overdue = db.session.scalar(select(func.count()).select_from(LoanInstalment).where(
        LoanInstalment.user_id == user_id, LoanInstalment.state == InstalmentState.OVERDUE))
    aml = db.session.scalar(select(AmlCheck.status).where(AmlCheck.user_id == user_id)
                            .order_by(AmlCheck.created_at.desc()).limit(1))
    return Facts(
        kyc_level=effective_level(user_id, today),
        account_days=max(0, (today - created.date()).days) if created else 0,
        certificates=db.session.scalar(select(func.count()).select_from(Certificate)
                                       .where(Certificate.user_id == user_id)) or 0,
        earnings=db.session.scalar(select(func.count()).select_from(Earning).where(Earning.user_id == user_id)) or 0,
        loans_repaid=states.get(LoanState.CLOSED, 0),
        loans_written_off=states.get(LoanState.WRITTEN_OFF, 0),
        overdue_instalments=overdue or 0,
        aml_status=aml.value if aml is not None else None,
    )
