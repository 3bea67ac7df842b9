"""Lending's writes: apply, decide, disburse, repay, restructure, write off.

Every function takes the acting user, validates, changes rows and flushes; the caller commits
once (or rolls back on a ``DomainError``, whose ``field`` names the form field). Every movement
of value goes through the ledger with the loan book system wallet and an idempotency key:

- disbursement: loan book -> student (``loan_disbursement``), the fee student -> fees (``fee``);
- repayment: student -> loan book (``loan_repayment``, one leg per part: penalty, fee, interest,
  principal), in ``LENDING_ALLOCATION_ORDER`` instalment by instalment, oldest first;
- collateral: a hold on the student's BTC or ETH wallet towards the loan book (``loan_collateral``),
  released on full repayment or refusal;
- write-off: what is still owed, loan losses -> loan book (``loan_write_off``).

Time is an input: ``today()`` is the one clock of lending (tests move it with ``time-machine``).

Early and extra payments (declining balance): what is due is paid first; the rest pays the
current period's interest accrued to the day and then principal; the remaining instalments are
re-amortized on the lower balance (the instalment shrinks, the term stays: Fineract's "reduce
EMI"). Paid off early, the interest of days not yet run is waived. Flat loans pay future
instalments in advance as scheduled (flat interest is not recomputed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.currency import currency, parse_amount
from portal.money.lending import schedules, states
from portal.money.lending.assessment import Assessment, assess, facts_for
from portal.money.lending.models import (
    Collateral,
    CollateralState,
    InstalmentState,
    Loan,
    LoanAssessment,
    LoanEvent,
    LoanInstalment,
    LoanProduct,
    LoanState,
    Repayment,
    RepaymentSource,
)
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType
from portal.platform.notifications.services import notify
from portal.security.permissions import Permission, has_permission

ZERO = Decimal(0)
PARTS = ("penalty", "fee", "interest", "principal")
COLLATERAL_CURRENCIES = ("BTC", "ETH")
LOANS_PATH = "/wallet/loans"


class LendingError(DomainError):
    status_code = 422


def today() -> date:
    """The one clock of lending: the current date (UTC)."""
    return utcnow().date()


# -- Settings -------------------------------------------------------------------------------------


def _decimal_setting(name: str) -> Decimal:
    try:
        return Decimal(str(current_app.config[name]))
    except (InvalidOperation, KeyError):
        raise DomainError(f"The setting {name} is not a number.") from None


def four_eyes_above() -> Decimal:
    return _decimal_setting("LENDING_FOUR_EYES_ABOVE")


def allocation_order() -> tuple[str, ...]:
    """``LENDING_ALLOCATION_ORDER`` as a tuple of the four parts (each once)."""
    raw = current_app.config.get("LENDING_ALLOCATION_ORDER", ",".join(PARTS))
    order = tuple(part.strip() for part in str(raw).split(",") if part.strip())
    if sorted(order) != sorted(PARTS):
        raise DomainError("LENDING_ALLOCATION_ORDER must list penalty, fee, interest and principal, each once.")
    return order


# -- Access ---------------------------------------------------------------------------------------


def _require_student(user: User) -> None:
    if not has_permission(user.role, Permission.USE_WALLET):
        raise Forbidden("Only students borrow.")


def _require_officer(user: User | None) -> None:
    """Loan officers are money administrators; ``None`` is a job or command."""
    if user is not None and not has_permission(user.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only loan officers decide on loans.")


def own_loan(user: User, loan_id: uuid.UUID, *, for_update: bool = False) -> Loan:
    """The student's own loan (a NotFound for anyone else's, as if it did not exist)."""
    loan = _loan(loan_id, for_update=for_update)
    if loan.user_id != user.id:
        raise NotFound("No such loan.")
    return loan


def _loan(loan_id: uuid.UUID, *, for_update: bool = False) -> Loan:
    stmt = select(Loan).where(Loan.id == loan_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    loan = db.session.scalars(stmt).one_or_none()
    if loan is None:
        raise NotFound("No such loan.")
    return loan


def _event(loan: Loan, kind: str, actor: User | None, *, before: LoanState | None = None, reason: str = "",
           data: dict | None = None) -> LoanEvent:
    event = LoanEvent(loan_id=loan.id, user_id=loan.user_id, actor_id=actor.id if actor else None, kind=kind,
                      from_state=before.value if before else None, to_state=LoanState(loan.state).value,
                      reason=reason[:500], data=data or {})
    db.session.add(event)
    return event


def _reason(raw: str | None, *, required: bool) -> str:
    text = " ".join((raw or "").split())
    if required and not text:
        raise LendingError("Give a reason: the student reads it.", field="reason")
    if len(text) > 500:
        raise LendingError("Keep the reason under 500 characters.", field="reason")
    return text


# -- Products -------------------------------------------------------------------------------------


def create_product(actor: User | None, *, name: str, currency_code: str, min_amount: Decimal, max_amount: Decimal,
                   min_term: int, max_term: int, annual_rate: Decimal, frequency: str = schedules.MONTHLY,
                   interest_method: str = schedules.DECLINING, amortization: str = schedules.EQUAL_INSTALMENTS,
                   fee_percent: Decimal = ZERO, fee_fixed: Decimal = ZERO, grace: int = 0,
                   penalty_daily_percent: Decimal = ZERO) -> LoanProduct:
    _require_officer(actor)
    code = currency(currency_code).code
    if frequency not in schedules.FREQUENCIES:
        raise LendingError("Instalments are monthly or weekly.", field="frequency")
    product = LoanProduct(name=name.strip(), currency=code, min_amount=min_amount, max_amount=max_amount,
                          min_term=min_term, max_term=max_term, annual_rate=annual_rate, frequency=frequency,
                          interest_method=interest_method, amortization=amortization, fee_percent=fee_percent,
                          fee_fixed=fee_fixed, grace=grace, penalty_daily_percent=penalty_daily_percent)
    db.session.add(product)
    db.session.flush()
    return product


def get_product(product_id) -> LoanProduct:
    try:
        product = db.session.get(LoanProduct, uuid.UUID(str(product_id)))
    except ValueError:
        product = None
    if product is None or not product.active:
        raise LendingError("Choose one of the loan products offered.", field="product")
    return product


# -- Offers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """What the student sees before accepting: rate, fee, schedule, total cost, APR."""

    product: LoanProduct
    assessment: Assessment
    schedule: schedules.Schedule

    @property
    def rate(self) -> Decimal:
        return self.schedule.terms.annual_rate

    @property
    def fee(self) -> Decimal:
        return self.schedule.terms.fee

    @property
    def apr(self) -> Decimal:
        return self.schedule.apr

    @property
    def total_cost(self) -> Decimal:
        return self.schedule.total_cost

    @property
    def total_repayable(self) -> Decimal:
        return self.schedule.total_repayable


def _term(raw, product: LoanProduct) -> int:
    try:
        term = int(str(raw).strip())
    except (TypeError, ValueError):
        raise LendingError("Give the number of instalments as a whole number.", field="term") from None
    if not product.min_term <= term <= product.max_term:
        raise LendingError(f"Choose between {product.min_term} and {product.max_term} instalments.", field="term")
    return term


def _amount(raw, product: LoanProduct, limit: Decimal | None) -> Decimal:
    amount = parse_amount(raw, product.currency)
    if not product.min_amount <= amount <= product.max_amount:
        raise LendingError(f"Borrow between {product.min_amount.normalize():f} and {product.max_amount.normalize():f} "
                           f"{product.currency}.", field="amount")
    if limit is not None and amount > limit:
        raise LendingError(f"You can borrow at most {limit.normalize():f} {product.currency} now (see your assessment).",
                           field="amount")
    return amount


def fee_for(product: LoanProduct, amount: Decimal) -> Decimal:
    unit = currency(product.currency)
    fee = (amount * product.fee_percent / 100 + product.fee_fixed).quantize(unit.quantum, rounding=ROUND_HALF_UP)
    return min(fee, amount - unit.quantum)


def _terms(loan_or_product, amount: Decimal, term: int, rate: Decimal, fee: Decimal, start: date) -> schedules.Terms:
    p = loan_or_product
    return schedules.Terms(principal=amount, annual_rate=rate, instalments=term, disbursed_on=start,
                           currency=p.currency, frequency=p.frequency, interest_method=p.interest_method,
                           amortization=p.amortization, grace=min(p.grace, term - 1), fee=fee)


def assessment_for(user: User, product: LoanProduct) -> Assessment:
    """What ``user`` could borrow with ``product`` and why."""
    return assess(facts_for(user.id, today()), product.max_amount, product.currency)


def offer(user: User, product_id, raw_amount, raw_term) -> Offer:
    """The offer for an amount and term, before applying: schedule from today."""
    _require_student(user)
    product = get_product(product_id)
    judged = assessment_for(user, product)
    if not judged.eligible:
        raise LendingError(" ".join(judged.reasons), field="amount")
    amount = _amount(raw_amount, product, judged.limit)
    term = _term(raw_term, product)
    rate = product.annual_rate + judged.rate_margin
    schedule = schedules.build(_terms(product, amount, term, rate, fee_for(product, amount), today()))
    return Offer(product, judged, schedule)


# -- Applying -------------------------------------------------------------------------------------


def apply(user: User, product_id, raw_amount, raw_term, purpose: str | None, idempotency_key: str | None, *,
          collateral_currency: str | None = None, raw_collateral: str | None = None) -> Loan:
    """Apply for a loan; optionally pledge crypto as collateral (a hold on that wallet)."""
    shown = offer(user, product_id, raw_amount, raw_term)
    text = " ".join((purpose or "").split())
    if not text:
        raise LendingError("Say what the loan is for.", field="purpose")
    if len(text) > 300:
        raise LendingError("Keep the purpose under 300 characters.", field="purpose")
    pledge = None
    if collateral_currency or raw_collateral:
        code = (collateral_currency or "").strip().upper()
        if code not in COLLATERAL_CURRENCIES:
            raise LendingError("Collateral comes from your BTC or ETH wallet.", field="collateral_currency")
        pledge = (code, parse_amount(raw_collateral, code))
    terms = shown.schedule.terms
    request = {"product": str(shown.product.id), "amount": str(terms.principal), "term": terms.instalments,
               "purpose": text, "collateral": [pledge[0], str(pledge[1])] if pledge else None}

    def perform() -> dict:
        if db.session.scalar(select(Loan.id).where(Loan.user_id == user.id, Loan.state.in_(states.OPEN))):
            raise Conflict("You already have an application in progress.", field="amount")
        loan = Loan(user_id=user.id, product_id=shown.product.id, state=LoanState.SUBMITTED, currency=terms.currency,
                    principal=terms.principal, term=terms.instalments, annual_rate=terms.annual_rate,
                    frequency=terms.frequency, interest_method=terms.interest_method, amortization=terms.amortization,
                    grace=terms.grace, fee=terms.fee, penalty_daily_percent=shown.product.penalty_daily_percent,
                    apr=shown.apr, total_cost=shown.total_cost, purpose=text, idempotency_key=idempotency_key)
        db.session.add(loan)
        try:
            with db.session.begin_nested():
                db.session.flush()
        except IntegrityError:
            raise Conflict("You already have an application in progress.", field="amount") from None
        judged = shown.assessment
        db.session.add(LoanAssessment(user_id=user.id, loan_id=loan.id, score=judged.score,
                                      limit_amount=judged.limit, currency=judged.currency, band=judged.band,
                                      rate_margin=judged.rate_margin, lines=judged.as_rows()))
        if pledge:
            _pledge(user, loan, *pledge)
        _event(loan, "submitted", user, data={"apr": str(loan.apr), "total_cost": str(loan.total_cost)})
        db.session.flush()
        return {"loan_id": str(loan.id)}

    result, _replayed = ledger.once(user.id, idempotency_key, "loan_application", request, perform)
    return _loan(uuid.UUID(result["loan_id"]))


def _pledge(user: User, loan: Loan, code: str, amount: Decimal) -> Collateral:
    wallet = ledger.user_wallet(user.id, code)
    if wallet is None:
        raise LendingError(f"You have no {code} wallet to pledge from.", field="collateral_amount")
    book = ledger.system_wallet(SystemWallet.LOAN_BOOK, code)
    try:
        held = ledger.hold([ledger.Leg(wallet, book, amount, TransactionType.LOAN_COLLATERAL,
                                       "Collateral for a loan", {"loan_id": str(loan.id)})],
                           initiated_by_id=user.id)
    except ledger.InsufficientFunds as refused:
        raise LendingError(refused.message, field="collateral_amount") from None
    collateral = Collateral(loan_id=loan.id, user_id=user.id, currency=code, amount=amount,
                            hold_transaction_id=held[0].id, haircut=_decimal_setting("LENDING_COLLATERAL_HAIRCUT"))
    db.session.add(collateral)
    return collateral


def collaterals_of(loan: Loan) -> list[Collateral]:
    return list(db.session.scalars(select(Collateral).where(Collateral.loan_id == loan.id,
                                                            Collateral.state == CollateralState.PLEDGED)))


def release_collateral(loan: Loan, actor: User | None) -> None:
    """End the holds of the loan's pledged collateral."""
    for collateral in collaterals_of(loan):
        pending = db.session.get(Transaction, collateral.hold_transaction_id)
        ledger.release([pending], initiated_by_id=actor.id if actor else None, description="Collateral released")
        collateral.state = CollateralState.RELEASED
        _event(loan, "collateral_released", actor, data={"currency": collateral.currency,
                                                          "amount": str(collateral.amount)})


def withdraw(user: User, loan_id) -> Loan:
    """The student takes an application back (or declines a counter-offer)."""
    loan = own_loan(user, loan_id, for_update=True)
    before = states.move_loan(loan, LoanState.WITHDRAWN)
    release_collateral(loan, user)
    _event(loan, "withdrawn", user, before=before)
    db.session.flush()
    return loan


# -- Decisions ------------------------------------------------------------------------------------


def approve(officer: User, loan_id, reason: str | None = "") -> Loan:
    """Approve an application. Above ``LENDING_FOUR_EYES_ABOVE`` the first approval is recorded
    and a second officer's confirms it."""
    _require_officer(officer)
    loan = _loan(loan_id, for_update=True)
    text = _reason(reason, required=False)
    if loan.state != LoanState.SUBMITTED:
        raise states.ForbiddenTransition(f"A loan that is {LoanState(loan.state).label.lower()} cannot be approved.")
    if loan.user_id == officer.id:
        raise Forbidden("Nobody decides on their own loan.")
    needs_two = loan.principal > four_eyes_above()
    if needs_two and loan.approved_by_id is None:
        loan.approved_by_id = officer.id
        _event(loan, "first_approval", officer, reason=text)
        db.session.flush()
        return loan
    if needs_two:
        if loan.approved_by_id == officer.id:
            raise Conflict("Another officer must confirm this approval (four eyes).")
        loan.confirmed_by_id = officer.id
    else:
        loan.approved_by_id = officer.id
    before = states.move_loan(loan, LoanState.APPROVED)
    loan.decided_at = utcnow()
    loan.decision_reason = text
    _event(loan, "approved", officer, before=before, reason=text)
    notify(loan.user_id, "loan_approved", "Your loan was approved", text or None, LOANS_PATH)
    db.session.flush()
    return loan


def reject(officer: User, loan_id, reason: str | None) -> Loan:
    _require_officer(officer)
    text = _reason(reason, required=True)
    loan = _loan(loan_id, for_update=True)
    before = states.move_loan(loan, LoanState.REJECTED)
    loan.decided_at = utcnow()
    loan.decision_reason = text
    release_collateral(loan, officer)
    _event(loan, "rejected", officer, before=before, reason=text)
    notify(loan.user_id, "loan_rejected", "Your loan application was declined", text, LOANS_PATH)
    db.session.flush()
    return loan


def counter_offer(officer: User, loan_id, raw_amount, raw_term, raw_rate, reason: str | None) -> Loan:
    """Offer other terms; the student accepts (``accept_offer``) or withdraws."""
    _require_officer(officer)
    text = _reason(reason, required=True)
    loan = _loan(loan_id, for_update=True)
    if loan.state != LoanState.SUBMITTED:
        raise states.ForbiddenTransition("Only a submitted application can get a counter-offer.")
    product = db.session.get(LoanProduct, loan.product_id)
    amount = _amount(raw_amount, product, None)
    term = _term(raw_term, product)
    try:
        rate = Decimal(str(raw_rate).strip())
    except (InvalidOperation, ValueError):
        raise LendingError("Give the yearly rate as a number of percent.", field="rate") from None
    if not ZERO <= rate <= 100:
        raise LendingError("The rate is between 0 and 100 percent.", field="rate")
    fee = fee_for(product, amount)
    schedule = schedules.build(_terms(loan, amount, term, rate, fee, today()))
    old = {"amount": str(loan.principal), "term": loan.term, "rate": str(loan.annual_rate)}
    loan.principal, loan.term, loan.annual_rate, loan.fee = amount, term, rate, fee
    loan.grace = min(loan.grace, term - 1)
    loan.apr, loan.total_cost = schedule.apr, schedule.total_cost
    loan.counter_offered, loan.accepted_at = True, None
    loan.approved_by_id = officer.id if amount <= four_eyes_above() else None
    before = states.move_loan(loan, LoanState.APPROVED) if amount <= four_eyes_above() else None
    if before is not None:
        loan.decided_at = utcnow()
    loan.decision_reason = text
    _event(loan, "counter_offer", officer, before=before, reason=text,
           data={"was": old, "now": {"amount": str(amount), "term": term, "rate": str(rate)}})
    notify(loan.user_id, "loan_counter_offer", "An officer offered you other loan terms", text, LOANS_PATH)
    db.session.flush()
    return loan


def accept_offer(user: User, loan_id) -> Loan:
    loan = own_loan(user, loan_id, for_update=True)
    if not loan.counter_offered or loan.accepted_at is not None:
        raise Conflict("There is no offer waiting for you on this loan.")
    loan.accepted_at = utcnow()
    _event(loan, "offer_accepted", user)
    db.session.flush()
    return loan


# -- Disbursement ---------------------------------------------------------------------------------


def disburse(officer: User | None, loan_id) -> Loan:
    """Pay an approved loan out: the schedule starts today."""
    _require_officer(officer)
    loan = _loan(loan_id, for_update=True)
    if loan.state != LoanState.APPROVED:
        raise states.ForbiddenTransition(f"A loan that is {LoanState(loan.state).label.lower()} cannot be paid out.")
    if loan.counter_offered and loan.accepted_at is None:
        raise Conflict("The student has not accepted the counter-offer yet.")
    start = today()
    schedule = schedules.build(_terms(loan, loan.principal, loan.term, loan.annual_rate, loan.fee, start))
    with ledger.as_ledger():
        student = ledger.open_user_wallet(loan.user_id, loan.currency)
        book = ledger.system_wallet(SystemWallet.LOAN_BOOK, loan.currency)
        fees = ledger.system_wallet(SystemWallet.FEES, loan.currency, spread_by=loan.user_id) if loan.fee > 0 else None
    legs = [ledger.Leg(book, student, loan.principal, TransactionType.LOAN_DISBURSEMENT, "Loan paid out",
                       {"loan_id": str(loan.id)})]
    if loan.fee > 0:
        legs.append(ledger.Leg(student, fees, loan.fee, TransactionType.FEE, "Loan fee", {"loan_id": str(loan.id)}))
    posted = ledger.post(legs, initiated_by_id=officer.id if officer else None)
    loan.disbursement_group_id = posted[0].group_id
    loan.disbursed_on = start
    loan.apr, loan.total_cost = schedule.apr, schedule.total_cost
    before = states.move_loan(loan, LoanState.ACTIVE)
    for line in schedule.instalments:
        db.session.add(LoanInstalment(loan_id=loan.id, user_id=loan.user_id, number=line.number, due_on=line.due_on,
                                      principal=line.principal, interest=line.interest))
    _event(loan, "disbursed", officer, before=before, data={"group_id": str(posted[0].group_id)})
    notify(loan.user_id, "loan_disbursed", "Your loan was paid into your wallet", None, LOANS_PATH)
    db.session.flush()
    return loan


# -- Repayment ------------------------------------------------------------------------------------


def instalments(loan: Loan, *, for_update: bool = False) -> list[LoanInstalment]:
    stmt = select(LoanInstalment).where(LoanInstalment.loan_id == loan.id).order_by(LoanInstalment.number)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return list(db.session.scalars(stmt))


def _owed(line: LoanInstalment, part: str) -> Decimal:
    if part == "interest":
        return line.interest_outstanding
    return getattr(line, part) - getattr(line, f"{part}_paid")


def loan_terms(loan: Loan) -> schedules.Terms:
    return _terms(loan, loan.principal, loan.term, loan.annual_rate, loan.fee, loan.disbursed_on)


def _period_start(loan: Loan, lines: list[LoanInstalment], line: LoanInstalment) -> date:
    earlier = [x.due_on for x in lines if x.number < line.number]
    return max(earlier) if earlier else loan.disbursed_on


def payoff_amount(loan: Loan, on: date | None = None) -> Decimal:
    """What closes the loan on ``on``: everything due, the current period's interest to the day
    (declining balance) or in full (flat), and the principal still outstanding."""
    on = on or today()
    lines = [x for x in instalments(loan) if x.state != InstalmentState.PAID]
    total = ZERO
    current_seen = False
    for line in lines:
        if line.due_on <= on:
            total += line.outstanding
            continue
        total += line.principal - line.principal_paid + line.fee - line.fee_paid + line.penalty - line.penalty_paid
        if not current_seen:
            current_seen = True
            total += _current_interest(loan, lines, line, on)
    return total.quantize(currency(loan.currency).quantum)


def _current_interest(loan: Loan, lines: list[LoanInstalment], line: LoanInstalment, on: date) -> Decimal:
    """Interest the not-yet-due instalment ``line`` still wants if the loan is paid off ``on``."""
    if loan.interest_method == schedules.FLAT:
        return line.interest_outstanding
    outstanding = sum((x.principal - x.principal_paid for x in lines if x.state != InstalmentState.PAID), ZERO)
    accrued = schedules.accrued_interest(loan_terms(loan), outstanding, _period_start(loan, lines, line),
                                         line.due_on, on)
    return max(ZERO, min(line.interest, accrued) - line.interest_paid)


def repay(user: User, loan_id, raw_amount, idempotency_key: str | None) -> Repayment:
    """The student repays ``raw_amount`` from their wallet (on time, early, in part or more)."""
    _require_student(user)
    loan = own_loan(user, loan_id)
    amount = parse_amount(raw_amount, loan.currency)
    request = {"loan": str(loan.id), "amount": str(amount)}

    def perform() -> dict:
        return {"repayment_id": str(_repay(loan.id, amount, RepaymentSource.STUDENT, idempotency_key, user).id)}

    result, _ = ledger.once(user.id, idempotency_key, "loan_repayment", request, perform)
    return db.session.get(Repayment, uuid.UUID(result["repayment_id"]))


def _repay(loan_id: uuid.UUID, amount: Decimal, source: RepaymentSource, key: str, actor: User | None, *,
           on: date | None = None) -> Repayment:
    """Allocate and move ``amount``: the loan row is locked first, so two payments queue."""
    on = on or today()
    loan = _loan(loan_id, for_update=True)
    if loan.state not in states.RUNNING:
        raise Conflict(f"This loan is {LoanState(loan.state).label.lower()}: nothing to repay.", field="amount")
    payoff = payoff_amount(loan, on)
    if amount > payoff:
        raise LendingError(f"That is more than is owed: {payoff} {loan.currency} closes the loan today.",
                           field="amount")
    lines = [x for x in instalments(loan, for_update=True) if x.state != InstalmentState.PAID]
    order = allocation_order()
    split = dict.fromkeys(PARTS, ZERO)
    per_line: dict[str, dict[str, str]] = {}
    left = amount

    def take(line: LoanInstalment, part: str, most: Decimal) -> None:
        nonlocal left
        paid = min(left, most)
        if paid <= 0:
            return
        setattr(line, f"{part}_paid", getattr(line, f"{part}_paid") + paid)
        split[part] += paid
        left -= paid
        cell = per_line.setdefault(str(line.number), {})
        cell[part] = str(Decimal(cell.get(part, "0")) + paid)

    due = [x for x in lines if x.due_on <= on]
    for line in due:
        for part in order:
            take(line, part, _owed(line, part))
    ahead = [x for x in lines if x.due_on > on]
    if left > 0 and ahead:
        if loan.interest_method == schedules.FLAT:
            for line in ahead:
                for part in order:
                    take(line, part, _owed(line, part))
        else:
            _prepay(loan, lines, ahead, on, take, lambda: left)
    if left != 0:
        raise LendingError("This payment could not be allocated in full.", field="amount")
    for line in lines:
        _settle_state(line, on)
    with ledger.as_ledger():
        student = ledger.open_user_wallet(loan.user_id, loan.currency)
        book = ledger.system_wallet(SystemWallet.LOAN_BOOK, loan.currency)
    legs = [ledger.Leg(student, book, split[part], TransactionType.LOAN_REPAYMENT, f"Loan repayment: {part}",
                       {"loan_id": str(loan.id), "part": part}) for part in order if split[part] > 0]
    posted = ledger.post(legs, initiated_by_id=actor.id if actor else None)
    repayment = Repayment(loan_id=loan.id, user_id=loan.user_id, amount=amount, currency=loan.currency, source=source,
                          paid_on=on, idempotency_key=key, ledger_group_id=posted[0].group_id, allocation=per_line,
                          **split)
    db.session.add(repayment)
    _event(loan, "repayment", actor, data={"amount": str(amount), "source": source.value,
                                          **{k: str(v) for k, v in split.items()}})
    if all(x.state == InstalmentState.PAID for x in lines):
        before = states.move_loan(loan, LoanState.CLOSED)
        loan.closed_on = on
        release_collateral(loan, actor)
        _event(loan, "closed", actor, before=before)
        notify(loan.user_id, "loan_closed", "Your loan is repaid in full", None, LOANS_PATH)
    db.session.flush()
    return repayment


def _prepay(loan: Loan, lines, ahead: list[LoanInstalment], on: date, take, left) -> None:
    """Declining balance: the current period's interest to the day, then principal; the rest of the
    schedule re-amortized on what is left (or, paid off, the interest not yet run waived)."""
    current = ahead[0]
    accrued = _current_interest(loan, lines, current, on)
    take(current, "interest", accrued)
    for part in ("penalty", "fee"):
        for line in ahead:
            take(line, part, _owed(line, part))
    outstanding = sum((x.principal - x.principal_paid for x in ahead), ZERO)
    extra = min(left(), outstanding)
    if extra <= 0:
        return
    if extra == outstanding:
        for line in ahead:
            take(line, "principal", _owed(line, "principal"))
            line.interest_waived = line.interest - line.interest_paid
        return
    # Part prepaid: the prepaid principal is booked on the current instalment; the remaining
    # principal is spread again over the same dates.
    start = _period_start(loan, lines, current)
    remaining = outstanding - extra
    fresh = schedules.reamortize(loan_terms(loan), remaining, [x.due_on for x in ahead], start,
                                 first_number=current.number)
    for line, new in zip(ahead, fresh, strict=True):
        paid = line.principal_paid + (extra if line is current else ZERO)
        line.principal = paid + new.principal
        if line is current:
            # Interest to the day on the old balance (paid above), then on the new one.
            period = (line.due_on - start).days or 1
            rest = Decimal((line.due_on - on).days) / period
            line.interest = line.interest_paid + (new.interest * rest).quantize(currency(loan.currency).quantum)
        else:
            line.interest = new.interest
    take(current, "principal", extra)


def _settle_state(line: LoanInstalment, on: date) -> None:
    if line.outstanding == 0:
        states.move_instalment(line, InstalmentState.PAID)
        line.paid_on = on
    elif line.state == InstalmentState.DUE and (line.principal_paid or line.interest_paid or line.fee_paid
                                                or line.penalty_paid):
        states.move_instalment(line, InstalmentState.PARTIALLY_PAID)


def set_auto_repay(user: User, loan_id, enabled: bool) -> Loan:
    loan = own_loan(user, loan_id, for_update=True)
    if loan.state not in states.RUNNING and loan.state not in states.OPEN:
        raise Conflict("This loan is not running.")
    loan.auto_repay = bool(enabled)
    _event(loan, "auto_repay_on" if enabled else "auto_repay_off", user)
    db.session.flush()
    return loan


# -- Restructure and write-off ---------------------------------------------------------------------


def restructure(officer: User, loan_id, raw_term, raw_rate, reason: str | None, *, grace: int = 0) -> Loan:
    """Replace the unpaid schedule: what is owed (principal, and interest, fees and penalties now
    due, capitalized) over ``raw_term`` new instalments from today. The old schedule is kept in
    the event's data."""
    _require_officer(officer)
    text = _reason(reason, required=True)
    loan = _loan(loan_id, for_update=True)
    if loan.state not in states.RUNNING:
        raise states.ForbiddenTransition("Only a running loan can be restructured.")
    try:
        term = int(str(raw_term).strip())
        rate = Decimal(str(raw_rate).strip())
    except (ValueError, InvalidOperation):
        raise LendingError("Give a whole number of instalments and a yearly rate in percent.", field="term") from None
    if not 1 <= term <= 520:
        raise LendingError("Choose between 1 and 520 instalments.", field="term")
    if not ZERO <= rate <= 100:
        raise LendingError("The rate is between 0 and 100 percent.", field="rate")
    if not 0 <= grace < term:
        raise LendingError("The grace period must be shorter than the new term.", field="grace")
    on = today()
    lines = instalments(loan, for_update=True)
    unpaid = [x for x in lines if x.state != InstalmentState.PAID]
    owed = sum((x.principal - x.principal_paid for x in unpaid), ZERO) + sum(
        (x.outstanding - (x.principal - x.principal_paid) for x in unpaid if x.due_on <= on), ZERO)
    old = [{"number": x.number, "due_on": x.due_on.isoformat(), "principal": str(x.principal),
            "interest": str(x.interest), "penalty": str(x.penalty), "state": InstalmentState(x.state).value,
            "principal_paid": str(x.principal_paid), "interest_paid": str(x.interest_paid)} for x in unpaid]
    # The unpaid rows close as they stand (what was paid of them stays paid); the rest moves to
    # the new instalments.
    kept = [x.number for x in lines if x.state == InstalmentState.PAID]
    for line in unpaid:
        line.principal = line.principal_paid
        line.interest = line.interest_paid + line.interest_waived
        line.fee, line.penalty = line.fee_paid, line.penalty_paid
        if line.outstanding == 0 and (line.principal_paid or line.interest_paid or line.fee_paid or line.penalty_paid):
            states.move_instalment(line, InstalmentState.PAID)
            line.paid_on = on
            kept.append(line.number)
        else:
            db.session.delete(line)
    db.session.flush()
    first = max(kept, default=0) + 1
    new_terms = schedules.Terms(principal=owed, annual_rate=rate, instalments=term, disbursed_on=on,
                                currency=loan.currency, frequency=loan.frequency,
                                interest_method=loan.interest_method, amortization=loan.amortization, grace=grace)
    schedule = schedules.build(new_terms)
    for line in schedule.instalments:
        db.session.add(LoanInstalment(loan_id=loan.id, user_id=loan.user_id, number=first + line.number - 1,
                                      due_on=line.due_on, principal=line.principal, interest=line.interest))
    loan.annual_rate, loan.grace = rate, grace
    before = states.move_loan(loan, LoanState.RESTRUCTURED)
    _event(loan, "restructured", officer, before=before, reason=text,
           data={"old_schedule": old, "capitalized": str(owed), "term": term, "rate": str(rate)})
    notify(loan.user_id, "loan_restructured", "Your loan has a new schedule", text, LOANS_PATH)
    db.session.flush()
    return loan


def write_off(officer: User | None, loan_id, reason: str | None) -> Loan:
    """Stop collecting: what is owed is booked as a loss (loan losses -> loan book)."""
    _require_officer(officer)
    text = _reason(reason, required=True)
    loan = _loan(loan_id, for_update=True)
    before = states.move_loan(loan, LoanState.WRITTEN_OFF)
    lines = instalments(loan, for_update=True)
    owed = sum((x.principal - x.principal_paid for x in lines), ZERO)
    if owed > 0:
        book = ledger.system_wallet(SystemWallet.LOAN_BOOK, loan.currency)
        losses = ledger.system_wallet(SystemWallet.LOAN_LOSSES, loan.currency)
        ledger.post([ledger.Leg(losses, book, owed, TransactionType.LOAN_WRITE_OFF, "Loan written off",
                                {"loan_id": str(loan.id)})], initiated_by_id=officer.id if officer else None)
    loan.closed_on = today()
    release_collateral(loan, officer)
    _event(loan, "written_off", officer, before=before, reason=text, data={"principal": str(owed)})
    db.session.flush()
    return loan
