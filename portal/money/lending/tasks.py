"""Lending's daily jobs: penalties on late instalments, automatic repayments on due dates, and
collateral valued from the latest exchange rate (margin calls, liquidation).

Each is idempotent and catches up after downtime:

- ``accrue_penalties``: for every running loan with an instalment unpaid past its due date, one
  ``loan_accruals`` row per loan per day (``UNIQUE (loanId, day)``, inserted with ON CONFLICT DO
  NOTHING) decides that the day's penalty is added: a second worker, a retry or a rerun of the
  same day adds nothing; days missed while nothing ran are accrued on the next run, each once.
  The loan row is locked first, so a repayment and the accrual of one loan run one after the
  other. A missed day is accrued on what is owed when the job runs (the nearest the portal knows).
- ``auto_repayments``: loans set to repay automatically pay what is due from the wallet (as much
  as it holds) once a day, keyed ``auto-<loan>-<day>``.
- ``value_collaterals``: each pledge valued at the latest fresh rate less the haircut; LTV (what
  is owed / that value) at ``LENDING_MARGIN_CALL_LTV`` or more sends a margin call (notification
  and e-mail, once until the LTV falls back below); at ``LENDING_LIQUIDATION_LTV`` or more enough
  collateral is sold through the exchange service (a quote, then its acceptance) to bring the
  LTV back to the margin-call level, and the proceeds repay the loan. A stale rate values
  nothing and never liquidates.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_UP, Decimal

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)

#: Days one run accrues for a loan at most (the rest on the next run).
MAX_CATCH_UP_DAYS = 400


@periodic(cron="10 0 * * *", queue="money")
def lending_daily(timestamp: int) -> dict:  # noqa: ARG001 - procrastinate passes the schedule time
    """The day's lending work, in order: penalties, automatic repayments, collateral."""
    return run_daily()


def run_daily(day: date | None = None) -> dict:
    from flask import current_app

    from portal.money.lending.services import today

    day = day or today()
    counts = accrue_penalties(day)
    if current_app.config.get("LENDING_AUTO_REPAY", True):
        counts |= auto_repayments(day)
    counts |= value_collaterals()
    return counts


def _running_with_arrears(day: date) -> list[uuid.UUID]:
    from sqlalchemy import select

    from portal.db import db
    from portal.money.lending.models import InstalmentState, Loan, LoanAccrual, LoanInstalment
    from portal.money.lending.states import RUNNING

    # A loan whose row for ``day`` exists is done for the day (days are accrued in order).
    return list(db.session.scalars(
        select(Loan.id).where(Loan.state.in_(RUNNING)).where(
            select(LoanInstalment.id).where(LoanInstalment.loan_id == Loan.id,
                                            LoanInstalment.state != InstalmentState.PAID,
                                            LoanInstalment.due_on < day).exists())
        .where(~select(LoanAccrual.id).where(LoanAccrual.loan_id == Loan.id, LoanAccrual.day == day).exists())
        .order_by(Loan.id)))


def accrue_penalties(day: date, *, batch_size: int | None = None) -> dict:
    """Penalties and overdue marks up to ``day``; returns the counts.

    Loans are taken ``batch_size`` at a time (``BATCH_SIZE``) and each batch is accrued with a
    handful of statements whatever its size (``_accrue_batch``). A batch that fails for any
    reason is rolled back to its savepoint and its loans accrued one at a time (``accrue_loan``,
    the same arithmetic), so one odd loan never holds up the others."""
    from sqlalchemy.exc import SQLAlchemyError

    from portal.db import db
    from portal.errors import DomainError

    size = batch_size or BATCH_SIZE
    counts = {"loans_accrued": 0, "days_accrued": 0, "accrual_errors": 0}
    ids = _running_with_arrears(day)
    for start in range(0, len(ids), size):
        batch = ids[start:start + size]
        try:
            with db.session.begin_nested():
                accrued = _accrue_batch(batch, day)
        except (DomainError, SQLAlchemyError) as exc:
            log.warning("penalties of %d loans not accrued together (%s): one loan at a time", len(batch), exc)
            accrued = {}
            for loan_id in batch:
                try:
                    with db.session.begin_nested():
                        accrued[loan_id] = accrue_loan(loan_id, day)
                except DomainError as one:
                    counts["accrual_errors"] += 1
                    log.warning("loan %s: penalties not accrued: %s", loan_id, one)
        for days in accrued.values():
            counts["loans_accrued"] += bool(days)
            counts["days_accrued"] += days
    return counts


#: Loans one statement of the penalty accrual covers.
BATCH_SIZE = 500


def _accrue_batch(loan_ids: list[uuid.UUID], day: date) -> dict[uuid.UUID, int]:
    """``accrue_loan`` for many loans at once, in five statements: lock the running loans (in
    id order, as a repayment locks its loan first), read their unpaid late instalments (locked)
    and their last accrued day, insert every day's ``loan_accruals`` row of every loan in one
    statement (``ON CONFLICT DO NOTHING`` on the row per loan per day: a day accrued by anyone
    else adds nothing), then add the penalties of the days actually inserted and mark the
    instalments overdue in one ``UPDATE``. The amounts are ``accrue_loan``'s: computed here in
    ``Decimal`` at the currency's scale, half to even. Returns the days accrued per loan."""
    from collections import defaultdict

    from sqlalchemy import bindparam, func, select, text
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.types import Date, Integer, Numeric, Uuid

    from portal.db import db
    from portal.db.base import utcnow
    from portal.money.currency import currency
    from portal.money.lending.models import InstalmentState, Loan, LoanAccrual, LoanInstalment
    from portal.money.lending.states import RUNNING

    loans = db.session.execute(select(Loan.id, Loan.user_id, Loan.currency, Loan.penalty_daily_percent)
                               .where(Loan.id.in_(loan_ids), Loan.state.in_(RUNNING))
                               .order_by(Loan.id).with_for_update()).all()
    if not loans:
        return {}
    running = [loan.id for loan in loans]
    late_lines = defaultdict(list)
    for line in db.session.execute(
            select(LoanInstalment.id, LoanInstalment.loan_id, LoanInstalment.due_on, LoanInstalment.principal,
                   LoanInstalment.principal_paid, LoanInstalment.interest, LoanInstalment.interest_paid,
                   LoanInstalment.interest_waived)
            .where(LoanInstalment.loan_id.in_(running), LoanInstalment.state != InstalmentState.PAID,
                   LoanInstalment.due_on < day)
            .order_by(LoanInstalment.loan_id, LoanInstalment.number).with_for_update()):
        late_lines[line.loan_id].append(line)
    last_day = dict(db.session.execute(select(LoanAccrual.loan_id, func.max(LoanAccrual.day))
                                       .where(LoanAccrual.loan_id.in_(running)).group_by(LoanAccrual.loan_id)).all())

    now = utcnow()
    rows: dict[str, list] = {"id": [], "loan": [], "user": [], "day": [], "amount": [], "count": []}
    overdue_on: dict[tuple[uuid.UUID, date], list] = {}
    amounts: dict[uuid.UUID, Decimal] = {}
    for loan in loans:
        late = late_lines.get(loan.id)
        if not late:
            continue
        quantum = currency(loan.currency).quantum
        rate = loan.penalty_daily_percent / 100
        for x in late:
            outstanding = x.principal - x.principal_paid + (x.interest - x.interest_paid - x.interest_waived)
            amounts[x.id] = (outstanding * rate).quantize(quantum, rounding=ROUND_HALF_EVEN)
        first = min(x.due_on for x in late) + timedelta(days=1)
        if last_day.get(loan.id) is not None:
            first = max(first, last_day[loan.id] + timedelta(days=1))
        current, taken = first, 0
        while current <= day and taken < MAX_CATCH_UP_DAYS:
            overdue = [x.id for x in late if x.due_on < current]
            overdue_on[(loan.id, current)] = overdue
            for name, value in (("id", uuid.uuid4()), ("loan", loan.id), ("user", loan.user_id), ("day", current),
                                ("amount", sum((amounts[i] for i in overdue), Decimal(0))),
                                ("count", len(overdue))):
                rows[name].append(value)
            current += timedelta(days=1)
            taken += 1
    accrued: dict[uuid.UUID, int] = dict.fromkeys(running, 0)
    if not rows["id"]:
        return accrued

    inserted = db.session.execute(text(
        'INSERT INTO loan_accruals (id, "loanId", "userId", day, amount, "overdueInstalments", "createdAt", '
        '"updatedAt") SELECT v.id, v.loan, v.usr, v.day, v.amount, v.n, :now, :now '
        "FROM unnest(:ids, :loans, :users, :days, :amounts, :counts) AS v(id, loan, usr, day, amount, n) "
        'ON CONFLICT ("loanId", day) DO NOTHING RETURNING "loanId", day').bindparams(
        bindparam("ids", rows["id"], type_=ARRAY(Uuid())), bindparam("loans", rows["loan"], type_=ARRAY(Uuid())),
        bindparam("users", rows["user"], type_=ARRAY(Uuid())), bindparam("days", rows["day"], type_=ARRAY(Date())),
        bindparam("amounts", rows["amount"], type_=ARRAY(Numeric())),
        bindparam("counts", rows["count"], type_=ARRAY(Integer())), bindparam("now", now))).all()

    added: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for loan_id, accrued_day in inserted:
        accrued[loan_id] += 1
        for line_id in overdue_on[(loan_id, accrued_day)]:
            added[line_id] += amounts[line_id]
    if added:
        db.session.execute(text(
            "UPDATE loan_instalments AS i SET penalty = i.penalty + v.amount, state = :overdue, "
            '"updatedAt" = :now FROM unnest(:ids, :amounts) AS v(id, amount) WHERE i.id = v.id').bindparams(
            bindparam("ids", list(added), type_=ARRAY(Uuid())),
            bindparam("amounts", list(added.values()), type_=ARRAY(Numeric())),
            bindparam("overdue", InstalmentState.OVERDUE.value), bindparam("now", now)))
    # The session may hold these instalments from before: they are read afresh from now on.
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, LoanInstalment) and obj.id in added:
            db.session.expire(obj)
    return accrued


def accrue_loan(loan_id: uuid.UUID, day: date) -> int:
    """Accrue one loan's penalties for every day not yet accrued up to ``day``; returns how many."""
    from sqlalchemy import func, select
    from sqlalchemy.dialects.postgresql import insert

    from portal.db import db
    from portal.db.base import utcnow
    from portal.money.currency import currency
    from portal.money.lending import states
    from portal.money.lending.models import InstalmentState, LoanAccrual
    from portal.money.lending.services import _loan, instalments

    loan = _loan(loan_id, for_update=True)
    if loan.state not in states.RUNNING:
        return 0
    unpaid = [x for x in instalments(loan, for_update=True) if x.state != InstalmentState.PAID]
    late = [x for x in unpaid if x.due_on < day]
    if not late:
        return 0
    last = db.session.scalar(select(func.max(LoanAccrual.day)).where(LoanAccrual.loan_id == loan.id))
    first = min(x.due_on for x in late) + timedelta(days=1)
    if last is not None:
        first = max(first, last + timedelta(days=1))
    quantum = currency(loan.currency).quantum
    rate = loan.penalty_daily_percent / 100
    done = 0
    current = first
    while current <= day and done < MAX_CATCH_UP_DAYS:
        overdue = [x for x in late if x.due_on < current]
        amounts = {x.id: ((x.principal - x.principal_paid + x.interest_outstanding) * rate)
                   .quantize(quantum, rounding=ROUND_HALF_EVEN) for x in overdue}
        inserted = db.session.execute(
            insert(LoanAccrual).values(id=uuid.uuid4(), loan_id=loan.id, user_id=loan.user_id, day=current,
                                       amount=sum(amounts.values(), Decimal(0)), overdue_instalments=len(overdue),
                                       created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[LoanAccrual.loan_id, LoanAccrual.day])
            .returning(LoanAccrual.id)).scalar()
        if inserted is not None:
            for line in overdue:
                line.penalty += amounts[line.id]
                states.move_instalment(line, InstalmentState.OVERDUE)
            done += 1
        current += timedelta(days=1)
    db.session.flush()
    return done


def auto_repayments(day: date) -> dict:
    """Pay what is due on loans set to repay automatically, from the wallet, once a day."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.db import db
    from portal.errors import DomainError
    from portal.money.lending import services
    from portal.money.lending.models import InstalmentState, Loan, LoanInstalment, RepaymentSource
    from portal.money.lending.states import RUNNING
    from portal.money.wallets import ledger

    counts = {"auto_repaid": 0, "auto_skipped": 0}
    loans = db.session.scalars(select(Loan).where(Loan.auto_repay.is_(True), Loan.state.in_(RUNNING)).where(
        select(LoanInstalment.id).where(LoanInstalment.loan_id == Loan.id, LoanInstalment.due_on <= day,
                                        LoanInstalment.state != InstalmentState.PAID).exists())
        .order_by(Loan.id)).all()
    for loan in loans:
        key = f"auto-{loan.id.hex}-{day:%Y%m%d}"
        due = sum((x.outstanding for x in services.instalments(loan)
                   if x.due_on <= day and x.state != InstalmentState.PAID), Decimal(0))
        wallet = ledger.user_wallet(loan.user_id, loan.currency)
        amount = min(due, wallet.available if wallet is not None else Decimal(0))
        if amount <= 0:
            counts["auto_skipped"] += 1
            continue
        borrower = db.session.get(User, loan.user_id)
        try:
            with db.session.begin_nested():
                _, replayed = ledger.once(
                    borrower.id, key, "loan_auto_repayment", {"loan": str(loan.id), "day": day.isoformat()},
                    lambda loan=loan, amount=amount, key=key: {
                        "repayment_id": str(services._repay(loan.id, amount, RepaymentSource.AUTOMATIC, key, None,
                                                            on=day).id)})
        except DomainError as exc:
            counts["auto_skipped"] += 1
            log.warning("loan %s: automatic repayment failed: %s", loan.id, exc)
            continue
        counts["auto_repaid"] += not replayed
    return counts


def value_collaterals() -> dict:
    """Value every pledge; margin calls and liquidations as the thresholds say."""
    from sqlalchemy import select

    from portal.db import db
    from portal.errors import DomainError
    from portal.money.lending.models import Collateral, CollateralState

    counts = {"valued": 0, "stale": 0, "margin_calls": 0, "liquidations": 0, "collateral_errors": 0}
    ids = db.session.scalars(select(Collateral.id).where(Collateral.state == CollateralState.PLEDGED)
                             .order_by(Collateral.id)).all()
    for collateral_id in ids:
        try:
            with db.session.begin_nested():
                outcome = value_collateral(collateral_id)
        except DomainError as exc:
            counts["collateral_errors"] += 1
            log.warning("collateral %s: not valued: %s", collateral_id, exc)
            continue
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ("margin_calls", "liquidations"):
            counts["valued"] += 1
    return counts


def _setting(name: str) -> Decimal:
    from flask import current_app

    return Decimal(str(current_app.config[name]))


def value_collateral(collateral_id: uuid.UUID) -> str:
    """Value one pledge now; returns what happened: ``valued``, ``stale``, ``margin_calls`` or
    ``liquidations``."""
    from sqlalchemy import select

    from portal.db import db
    from portal.db.base import utcnow
    from portal.money.currency import currency
    from portal.money.exchange.services import StaleRate, usable_rate
    from portal.money.lending import services
    from portal.money.lending.models import Collateral, CollateralState

    collateral = db.session.scalars(select(Collateral).where(Collateral.id == collateral_id).with_for_update()
                                    .execution_options(populate_existing=True)).one()
    loan = services._loan(collateral.loan_id, for_update=True)
    if collateral.state != CollateralState.PLEDGED:
        return "valued"
    now = utcnow()
    try:
        rate = usable_rate(collateral.currency, loan.currency, now=now).rate
    except StaleRate:
        return "stale"
    owed = services.payoff_amount(loan) if loan.state in services.states.RUNNING else loan.principal
    value = (collateral.amount * rate * (1 - collateral.haircut)).quantize(currency(loan.currency).quantum)
    ltv = (owed / value).quantize(Decimal("0.0001")) if value > 0 else Decimal(99)
    collateral.rate, collateral.value, collateral.valued_at, collateral.ltv = rate, value, now, ltv
    margin, liquidation = _setting("LENDING_MARGIN_CALL_LTV"), _setting("LENDING_LIQUIDATION_LTV")
    if ltv >= liquidation and loan.state in services.states.RUNNING:
        _liquidate(loan, collateral, rate, owed, margin)
        db.session.flush()
        return "liquidations"
    if ltv >= margin:
        if collateral.margin_called_at is None:
            collateral.margin_called_at = now
            _margin_call(loan, collateral, ltv)
            db.session.flush()
            return "margin_calls"
    else:
        collateral.margin_called_at = None
    db.session.flush()
    return "valued"


def _margin_call(loan, collateral, ltv: Decimal) -> None:
    from portal.accounts.models import User
    from portal.db import db
    from portal.money.lending.services import LOANS_PATH, _event
    from portal.platform.email.services import queue_email
    from portal.platform.notifications.services import notify

    percent = f"{(ltv * 100).quantize(Decimal('0.1'))}%"
    body = (f"Your {collateral.currency} collateral now covers less of your loan: the loan-to-value is {percent}. "
            "Repay part of the loan or pledge more to avoid a sale of your collateral.")
    notify(loan.user_id, "loan_margin_call", "Margin call on your loan", body, LOANS_PATH)
    student = db.session.get(User, loan.user_id)
    queue_email(student.email, "loan_margin_call", user_id=student.id, name=student.full_name, body=body,
                ltv=percent, path=LOANS_PATH)
    _event(loan, "margin_call", None, data={"ltv": str(ltv), "value": str(collateral.value)})


def _liquidate(loan, collateral, rate: Decimal, owed: Decimal, target: Decimal) -> None:
    """Sell enough of the pledge to bring the LTV back to ``target`` (all of it if need be) at a
    quoted rate through the exchange service, and repay the loan with the proceeds."""
    from portal.accounts.models import User
    from portal.db import db
    from portal.money.currency import currency
    from portal.money.exchange import services as exchange
    from portal.money.lending import services
    from portal.money.lending.models import CollateralState, RepaymentSource
    from portal.money.wallets import fees, ledger
    from portal.money.wallets.models import Transaction, TransactionType

    unit = currency(collateral.currency)
    keep = 1 - collateral.haircut
    # Sell S so that (owed - S*rate) <= target * (amount - S) * rate * keep.
    needed = (owed - target * collateral.amount * rate * keep) / (rate * (1 - target * keep))
    sell = min(collateral.amount, needed.quantize(unit.quantum, rounding=ROUND_UP))
    fee = fees.fee_for(TransactionType.CONVERSION, sell, unit.code)
    if sell + fee > collateral.amount:
        sell = collateral.amount - fee
    student = db.session.get(User, loan.user_id)
    pending = db.session.get(Transaction, collateral.hold_transaction_id)
    ledger.release([pending], description="Collateral released for a sale")
    quote = exchange.quote(student, unit.code, loan.currency, str(sell))
    exchange.accept(student, quote.id, f"liquidation-{quote.id.hex}")
    proceeds = min(quote.to_amount, services.payoff_amount(loan))
    # Out of the pledged set while the proceeds repay: a repayment that closes the loan releases
    # the pledges it finds, and this one's hold is already released.
    collateral.state = CollateralState.LIQUIDATED
    db.session.flush()
    services._repay(loan.id, proceeds, RepaymentSource.LIQUIDATION, f"liquidation-{quote.id.hex}", None)
    left = collateral.amount - sell - fee
    collateral.liquidated_amount += sell + fee
    collateral.amount = left
    db.session.refresh(loan)
    if left > 0 and loan.state in services.states.RUNNING:
        wallet = ledger.user_wallet(loan.user_id, unit.code)
        book = ledger.system_wallet(services.SystemWallet.LOAN_BOOK, unit.code)
        held = ledger.hold([ledger.Leg(wallet, book, left, TransactionType.LOAN_COLLATERAL, "Collateral for a loan",
                                       {"loan_id": str(loan.id)})])
        collateral.hold_transaction_id = held[0].id
    elif left > 0:
        collateral.state = CollateralState.RELEASED
    else:
        collateral.state = CollateralState.LIQUIDATED
    services._event(loan, "liquidation", None, data={"sold": str(sell), "currency": unit.code, "rate": str(quote.rate),
                                                     "proceeds": str(quote.to_amount), "repaid": str(proceeds)})
    from portal.platform.notifications.services import notify

    notify(loan.user_id, "loan_liquidation", "Part of your collateral was sold",
           f"{sell} {unit.code} were sold at {quote.rate.normalize():f} to repay your loan.", services.LOANS_PATH)
