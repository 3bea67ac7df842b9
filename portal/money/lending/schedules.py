"""Repayment schedules: pure arithmetic, no database.

A schedule is the table a borrower signs: for each instalment its due date, the principal, the
interest and the total, plus the fee taken at disbursement. The conventions are those of Apache
Fineract's loan schedule generator:

- **Interest methods.** ``declining`` balance charges each period's interest on the principal
  still outstanding; ``flat`` charges interest on the original principal for the whole term
  (principal x annual rate x term in years), spread evenly over the instalments.
- **Amortization.** ``equal_instalments`` (annuity, "French"): the instalment is the same every
  period, ``P*r / (1 - (1+r)^-n)``, rounded to the currency's scale, its principal part growing as
  interest falls. ``equal_principal``: the same principal every period, interest on top.
- **Frequency.** Monthly (the periodic rate is the nominal annual rate / 12; due dates on the
  disbursement day of each following month, clamped to the month's end) or weekly (/ 52, every
  seven days).
- **Grace on principal.** The first ``grace`` instalments carry interest only; principal is
  amortized over the instalments after them.
- **First period.** When a first due date is set apart from the usual one, the first period's
  interest is prorated by days (30 a month, 7 a week), as Fineract does for a "first repayment
  on" date; the instalment amount stays the same, so a short first instalment carries more
  principal. Every later period is one whole period (30/360), whatever its days.
- **Rounding.** Every figure is quantized to the currency's scale with banker's rounding (half to
  even, Fineract's default); the rounding difference of the instalments is carried to the last
  one, so the principal column always sums to the loan exactly.

The APR is the effective annual rate of the borrower's cash flows, fee included: the periodic
internal rate of return ``r`` of (principal - fee) received and the instalments paid, solved with
Decimal bisection, compounded over the periods of a year: ``(1+r)^k - 1`` (12 equal months or 52
weeks a year, as the EU consumer credit directive's Annex I allows).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from portal.errors import DomainError
from portal.money.currency import currency

MONTHLY = "monthly"
WEEKLY = "weekly"
FREQUENCIES = (MONTHLY, WEEKLY)
#: Periods in a year, per frequency.
PERIODS_PER_YEAR = {MONTHLY: 12, WEEKLY: 52}
#: Days in one standard period, for prorating a short or long first period.
PERIOD_DAYS = {MONTHLY: 30, WEEKLY: 7}

FLAT = "flat"
DECLINING = "declining"
INTEREST_METHODS = (FLAT, DECLINING)

EQUAL_INSTALMENTS = "equal_instalments"
EQUAL_PRINCIPAL = "equal_principal"
AMORTIZATIONS = (EQUAL_INSTALMENTS, EQUAL_PRINCIPAL)

#: Working precision of the arithmetic before each figure is rounded to the currency's scale.
_PRECISION = 60
ZERO = Decimal(0)


class ScheduleError(DomainError):
    status_code = 422


@dataclass(frozen=True)
class Terms:
    """What a schedule is computed from."""

    principal: Decimal
    #: Nominal annual interest rate in percent (12 means 12% a year).
    annual_rate: Decimal
    instalments: int
    disbursed_on: date
    currency: str = "USD"
    frequency: str = MONTHLY
    interest_method: str = DECLINING
    amortization: str = EQUAL_INSTALMENTS
    #: Instalments at the start that carry interest only.
    grace: int = 0
    #: Fee charged once at disbursement (deducted from what the borrower effectively receives).
    fee: Decimal = ZERO
    #: First due date when it is not one full period after disbursement.
    first_due_on: date | None = None

    def __post_init__(self) -> None:
        check_terms(self)


def check_terms(terms: Terms) -> None:
    """Refuse terms no schedule can be made of, each with the field it belongs to."""
    unit = currency(terms.currency)
    if terms.principal <= 0:
        raise ScheduleError("The loan amount must be more than zero.", field="amount")
    if terms.principal != terms.principal.quantize(unit.quantum):
        raise ScheduleError(f"{unit.code} amounts have at most {unit.scale} decimal places.", field="amount")
    if terms.annual_rate < 0:
        raise ScheduleError("The interest rate cannot be negative.", field="rate")
    if terms.instalments < 1:
        raise ScheduleError("A loan has at least one instalment.", field="term")
    if terms.frequency not in FREQUENCIES:
        raise ScheduleError(f"Instalments are {' or '.join(FREQUENCIES)}.", field="frequency")
    if terms.interest_method not in INTEREST_METHODS:
        raise ScheduleError(f"The interest method is {' or '.join(INTEREST_METHODS)}.", field="interest_method")
    if terms.amortization not in AMORTIZATIONS:
        raise ScheduleError(f"The amortization is {' or '.join(AMORTIZATIONS)}.", field="amortization")
    if not 0 <= terms.grace < terms.instalments:
        raise ScheduleError("The grace period must be shorter than the loan.", field="grace")
    if terms.fee < 0 or terms.fee >= terms.principal:
        raise ScheduleError("The fee must be at least zero and less than the loan.", field="fee")
    if terms.first_due_on is not None and terms.first_due_on <= terms.disbursed_on:
        raise ScheduleError("The first instalment falls due after the disbursement.", field="first_due_on")


@dataclass(frozen=True)
class Instalment:
    number: int
    due_on: date
    principal: Decimal
    interest: Decimal
    #: Principal outstanding after this instalment is paid.
    balance: Decimal

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest


@dataclass(frozen=True)
class Schedule:
    terms: Terms
    instalments: list[Instalment] = field(default_factory=list)

    @property
    def total_principal(self) -> Decimal:
        return sum((i.principal for i in self.instalments), ZERO)

    @property
    def total_interest(self) -> Decimal:
        return sum((i.interest for i in self.instalments), ZERO)

    @property
    def total_repayable(self) -> Decimal:
        return self.total_principal + self.total_interest

    @property
    def fee(self) -> Decimal:
        return self.terms.fee

    @property
    def total_cost(self) -> Decimal:
        """What the credit costs the borrower: all interest and the fee."""
        return self.total_interest + self.terms.fee

    @property
    def apr(self) -> Decimal:
        """Effective annual percentage rate, fee included, in percent to two places."""
        return apr(self)


# -- Dates ----------------------------------------------------------------------------------------


def add_months(day: date, months: int, anchor_day: int | None = None) -> date:
    """``day`` moved ``months`` months on, on ``anchor_day`` (default: ``day``'s own day), clamped
    to the last day of a shorter month (31 January + 1 month = 28 or 29 February)."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(anchor_day or day.day, last))


def due_dates(terms: Terms) -> list[date]:
    """The due date of each instalment."""
    first = terms.first_due_on
    if terms.frequency == WEEKLY:
        start = first or terms.disbursed_on + timedelta(days=7)
        return [start + timedelta(days=7 * k) for k in range(terms.instalments)]
    if first:
        return [add_months(first, k, first.day) for k in range(terms.instalments)]
    return [add_months(terms.disbursed_on, k + 1, terms.disbursed_on.day) for k in range(terms.instalments)]


def first_period_fraction(terms: Terms) -> Decimal:
    """The first period in standard periods: 1, or, when the first due date was set apart from
    the usual one, its days over 30 (or 7). Every later period counts as one whole period."""
    if terms.first_due_on is None:
        return Decimal(1)
    return Decimal((terms.first_due_on - terms.disbursed_on).days) / PERIOD_DAYS[terms.frequency]


# -- Arithmetic -----------------------------------------------------------------------------------


def periodic_rate(terms: Terms) -> Decimal:
    """The interest rate of one period, as a fraction."""
    with localcontext(prec=_PRECISION):
        return terms.annual_rate / 100 / PERIODS_PER_YEAR[terms.frequency]


def _round(amount: Decimal, code: str) -> Decimal:
    with localcontext(prec=_PRECISION):
        return amount.quantize(currency(code).quantum, rounding=ROUND_HALF_EVEN)


def annuity_payment(principal: Decimal, rate: Decimal, periods: int, code: str) -> Decimal:
    """The level instalment repaying ``principal`` over ``periods`` at periodic ``rate``."""
    with localcontext(prec=_PRECISION):
        if rate == 0:
            return _round(principal / periods, code)
        return _round(principal * rate / (1 - (1 + rate) ** -periods), code)


def build(terms: Terms) -> Schedule:
    """The full schedule of ``terms``."""
    dates = due_dates(terms)
    return Schedule(terms, _lines(terms, terms.principal, dates, first_number=1))


def _lines(terms: Terms, principal: Decimal, dates: list[date], *, first_number: int) -> list[Instalment]:
    code = terms.currency
    rate = periodic_rate(terms)
    n = len(dates)
    grace = min(terms.grace, n - 1)
    amortizing = n - grace
    lines: list[Instalment] = []
    balance = principal
    with localcontext(prec=_PRECISION):
        if terms.interest_method == FLAT:
            # Interest on the original principal for the whole term, in equal parts; the
            # remainders of both columns go to the last instalment.
            total_interest = _round(principal * rate * n, code)
            interest_each = _round(total_interest / n, code)
            principal_each = _round(principal / amortizing, code)
            interest_left = total_interest
            for k, due in enumerate(dates):
                last = k == n - 1
                part = ZERO if k < grace else (balance if last else principal_each)
                interest = interest_left if last else interest_each
                balance -= part
                interest_left -= interest
                lines.append(Instalment(first_number + k, due, part, interest, balance))
            return lines

        payment = annuity_payment(principal, rate, amortizing, code)
        principal_each = _round(principal / amortizing, code)
        for k, due in enumerate(dates):
            last = k == n - 1
            fraction = first_period_fraction(terms) if k == 0 else Decimal(1)
            interest = _round(balance * rate * fraction, code)
            if k < grace:
                part = ZERO
            elif last:
                part = balance
            elif terms.amortization == EQUAL_INSTALMENTS:
                part = min(max(payment - interest, ZERO), balance)
            else:
                part = min(principal_each, balance)
            balance -= part
            lines.append(Instalment(first_number + k, due, part, interest, balance))
    return lines


def reamortize(terms: Terms, outstanding: Decimal, remaining: list[date], start: date, *, first_number: int,
               grace: int = 0) -> list[Instalment]:
    """A new schedule for ``outstanding`` principal over the ``remaining`` due dates, interest from
    ``start``: what is left after a prepayment (the instalment shrinks, the term stays; Fineract's
    "reduce EMI amount") or a restructure (new dates, possibly a new grace)."""
    if outstanding <= 0 or not remaining:
        return []
    shaped = replace(terms, principal=outstanding, instalments=len(remaining), grace=min(grace, len(remaining) - 1),
                     fee=ZERO, first_due_on=None, disbursed_on=start)
    return _lines(shaped, outstanding, remaining, first_number=first_number)


def accrued_interest(terms: Terms, balance: Decimal, period_start: date, period_end: date, on: date) -> Decimal:
    """Interest a declining-balance loan owes on ``balance`` from ``period_start`` to ``on``
    within the period ending ``period_end``: the whole period's interest prorated by days. What an
    early repayment pays instead of the scheduled interest of the current period."""
    if on <= period_start:
        return ZERO
    if on >= period_end:
        on = period_end
    with localcontext(prec=_PRECISION):
        full = balance * periodic_rate(terms)
        days = Decimal((on - period_start).days) / Decimal((period_end - period_start).days)
        return _round(full * days, terms.currency)


# -- APR ------------------------------------------------------------------------------------------


def _npv(rate: Decimal, received: Decimal, payments: list[Decimal]) -> Decimal:
    value = received
    factor = Decimal(1)
    for paid in payments:
        factor /= 1 + rate
        value -= paid * factor
    return value


def periodic_irr(received: Decimal, payments: list[Decimal]) -> Decimal:
    """The periodic rate at which ``payments`` (one a period) are worth ``received`` today.

    Bisection: the present value of the payments falls as the rate rises, so the root is bracketed
    by 0 (when the payments sum to at least what was received) and a rate where they are worth
    less than ``received``."""
    with localcontext(prec=_PRECISION):
        if sum(payments, ZERO) <= received:
            return ZERO
        low, high = ZERO, Decimal(1)
        while _npv(high, received, payments) < 0:
            high *= 2
            if high > 10**6:
                raise ScheduleError("The schedule's rate of return is out of range.")
        for _ in range(200):
            middle = (low + high) / 2
            if _npv(middle, received, payments) < 0:
                low = middle
            else:
                high = middle
            if high - low < Decimal("1e-30"):
                break
        return (low + high) / 2


def apr(schedule: Schedule) -> Decimal:
    """Effective annual rate of the borrower's cash flows in percent, two places."""
    terms = schedule.terms
    received = terms.principal - terms.fee
    rate = periodic_irr(received, [line.total for line in schedule.instalments])
    with localcontext(prec=_PRECISION):
        effective = (1 + rate) ** PERIODS_PER_YEAR[terms.frequency] - 1
        return (effective * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
