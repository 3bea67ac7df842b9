"""Proration of a plan change made now, to the day, in exact Decimal arithmetic.

For a change on day ``d`` of a period of ``D`` days (UTC calendar days), the ``U = D - d``
days left (the day of the change included) are:

- credited at the old price: ``credit = old * U / D``, rounded half-even to the currency's scale;
- charged at the new price: the exact net ``(new - old) * U / D`` is rounded once, half-even,
  and the charge line is ``net + credit``. The rounding remainder is so carried to the last
  line, and the lines always add up to the total, which is the exact net rounded once
  (rounding the two lines apart could be a unit off).

When the new plan bills over another interval (monthly to yearly), its period starts afresh at
the change: the unused time is credited the same way and the new plan is charged in full.

Each line has the text a page shows before the student confirms (``preview``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from portal.money.billing.periods import days_between
from portal.money.currency import currency, format_amount


@dataclass(frozen=True)
class Line:
    """One line of an invoice or a preview: what it is, and its signed amount."""

    kind: str  #: ``plan``, ``proration_credit`` or ``proration_debit`` (models.LineKind)
    text: str
    amount: Decimal


@dataclass(frozen=True)
class Proration:
    lines: list[Line]
    total: Decimal
    days_left: int
    period_days: int
    #: Whether the new plan starts a new period now (another interval).
    restarts_period: bool


def _round(value: Decimal, code: str) -> Decimal:
    return value.quantize(currency(code).quantum, rounding=ROUND_HALF_EVEN)


def _date(moment: datetime) -> str:
    return f"{moment:%d %b %Y}"


def prorate(*, old_name: str, old_price: Decimal, new_name: str, new_price: Decimal, code: str,
            period_start: datetime, period_end: datetime, at: datetime, same_interval: bool = True) -> Proration:
    """The lines of changing from the old plan to the new one at ``at``, within the period
    ``[period_start, period_end)`` (see the module docstring)."""
    period_days = days_between(period_start, period_end)
    days_left = max(0, min(period_days, days_between(at, period_end)))
    with localcontext(prec=100):
        credit = _round(old_price * days_left / period_days, code) if period_days else Decimal(0)
        credit_text = (f"Unused time on {old_name}: {days_left} of {period_days} days "
                       f"({_date(at)} to {_date(period_end)}) at {format_amount(old_price, code)}")
        lines = []
        if credit:
            lines.append(Line("proration_credit", credit_text, -credit))
        if same_interval:
            net = _round((new_price - old_price) * days_left / period_days, code) if period_days else Decimal(0)
            debit = net + credit
            lines.append(Line("proration_debit",
                              f"Remaining time on {new_name}: {days_left} of {period_days} days "
                              f"({_date(at)} to {_date(period_end)}) at {format_amount(new_price, code)}",
                              debit))
            total = net
        else:
            lines.append(Line("plan", f"{new_name} from {_date(at)}", new_price))
            total = new_price - credit
    return Proration(lines=lines, total=total, days_left=days_left, period_days=period_days,
                     restarts_period=not same_interval)
