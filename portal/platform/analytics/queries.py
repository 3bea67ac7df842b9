"""Reads for the admin analytics dashboard: the daily rollups of a date range beside those of
the period just before it, as charts, tables and CSV rows.

One statement reads both periods (every daily rollup from the previous period's first day to
the range's last), whatever the number of figures, days or currencies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select

from portal.db import db
from portal.errors import DomainError, NotFound
from portal.platform.analytics import rollups
from portal.platform.analytics.charts import Chart, bar_chart
from portal.platform.analytics.models import Metric

#: The longest range a page shows at once.
MAX_DAYS = 366
DEFAULT_DAYS = 30


class BadRange(DomainError):
    status_code = 400


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  #: inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def previous(self) -> DateRange:
        return DateRange(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range(self.days)]

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def end_at(self) -> datetime:
        """The moment after the last day."""
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadRange(f"The {what} date must be written YYYY-MM-DD (for example 2026-12-01); "
                       f"\"{text[:20]}\" is not a date.", field=what) from None


def parse_range(start: str | None, end: str | None, today: date) -> DateRange:
    """The range a page asks for (``from`` and ``to``, both optional): by default the last
    ``DEFAULT_DAYS`` days to today. Raises BadRange with a message a person can act on."""
    last = _date(end, "end") if end else today
    first = _date(start, "start") if start else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise BadRange("The start date must be on or before the end date.", field="start")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRange(f"A range covers at most {MAX_DAYS} days; choose a later start or an earlier end.",
                       field="start")
    return DateRange(first, last)


@dataclass(frozen=True)
class Panel:
    """One figure (and currency, or decision) over the range: its chart and its summary."""

    key: str  #: the figure's name, with its label value after a colon
    figure: rollups.Figure
    label_value: str | None
    chart: Chart
    total: Decimal | None
    previous_total: Decimal | None

    @property
    def change(self) -> Decimal | None:
        """Percent change on the previous period, when both have a figure and the previous is not 0."""
        if self.total is None or not self.previous_total:
            return None
        return ((self.total - self.previous_total) * 100 / self.previous_total).quantize(Decimal("0.1"))


def _aggregate(kind: str, values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    if kind == "sum":
        return sum(values, Decimal(0))
    if kind == "mean":
        return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.01"))
    return values[-1]


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form: 12.500000 -> 12.5, 100 -> 100."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def _daily(period: DateRange) -> dict[tuple[str, str | None], dict[date, Decimal]]:
    found: dict[tuple[str, str | None], dict[date, Decimal]] = {}
    rows = db.session.execute(
        select(Metric.name, Metric.labels, Metric.recorded_at, Metric.value)
        .where(Metric.period == "day", Metric.recorded_at >= period.previous.start_at,
               Metric.recorded_at < period.end_at, Metric.name.in_(list(rollups.BY_NAME))))
    for name, labels, at, value in rows:
        label_value = next(iter(labels.values()), None) if labels else None
        found.setdefault((name, label_value), {})[at.astimezone(UTC).date()] = plain(value)
    return found


def _panel(key: str, figure: rollups.Figure, label_value: str | None, days: dict[date, Decimal],
           period: DateRange) -> Panel:
    current, earlier = period.dates(), period.previous.dates()
    zero_fill = figure.aggregate == "sum"
    values = [days.get(d, Decimal(0) if zero_fill else None) for d in current]
    previous = [days.get(d, Decimal(0) if zero_fill else None) for d in earlier]
    title = f"{figure.label} ({label_value})" if label_value else figure.label
    chart = bar_chart(key.replace(".", "-").replace(":", "-"), title, figure.unit, [d.isoformat() for d in current],
                      [v if v is not None else Decimal(0) for v in values], [d.isoformat() for d in earlier],
                      [v if v is not None else Decimal(0) for v in previous])
    return Panel(key, figure, label_value, chart,
                 _aggregate(figure.aggregate, [v for v in values if v is not None]),
                 _aggregate(figure.aggregate, [v for v in previous if v is not None]))


def dashboard(period: DateRange) -> list[Panel]:
    """A panel per figure (and per currency or decision it has), in the order of ``FIGURES``.
    Figures split by a label get a panel per value seen in either period."""
    found = _daily(period)
    panels = []
    for figure in rollups.FIGURES:
        keys = sorted((key for key in found if key[0] == figure.name), key=lambda k: k[1] or "")
        if not keys:
            keys = [(figure.name, None)]
        for name, label_value in keys:
            key = f"{name}:{label_value}" if label_value else name
            panels.append(_panel(key, figure, label_value, found.get((name, label_value), {}), period))
    return panels


def panel(key: str, period: DateRange) -> Panel:
    """One panel by its key (for the CSV download); NotFound for an unknown figure."""
    name, _, label_value = key.partition(":")
    figure = rollups.BY_NAME.get(name)
    if figure is None:
        raise NotFound(f"There is no figure called {name[:60]!r}.")
    found = _daily(period)
    return _panel(key, figure, label_value or None, found.get((name, label_value or None), {}), period)
