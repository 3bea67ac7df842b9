"""Reads for the admin analytics dashboard: the daily rollups of a date range beside those of
the period just before it, as charts, tables and CSV rows.

One statement reads both periods (every daily rollup from the previous period's first day to
the range's last), whatever the number of figures, days or currencies, and the shared cache
keeps what it read until a rollup run writes rows (``rollups.forget_figures``). A label filter
(currency = USD) picks panels from what was read: no statement of its own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import func, literal_column, select

from portal.db import db
from portal.errors import DomainError, NotFound
from portal.platform.analytics import rollups
from portal.platform.analytics.charts import Chart, bar_chart
from portal.platform.analytics.models import Metric
from portal.platform.cache import services as cache

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


#: How long a range's rollups stay in the shared cache when no rollup run drops them first.
DAILY_SECONDS = 300


def daily_key(period: DateRange):
    """The shared cache entry of the daily rollups a page of ``period`` reads (both periods):
    the figures count every row, whoever asks, and only admins see them."""
    return cache.shared_key(rollups.DAILY_CACHE, period.previous.start, period.end)


def _read_daily(period: DateRange) -> list[list]:
    """(name, label value, day, value) of every daily rollup of both periods. The database gives
    the label's value as text and the UTC day as a date: a range is thousands of rows, and
    decoding each one's JSON and time zone here was a good part of drawing a page."""
    rows = db.session.execute(
        select(Metric.name, func.jsonb_path_query_first(Metric.labels, literal_column("'$.*'::jsonpath")).op("#>>")(literal_column("'{}'")),
               func.date(func.timezone("UTC", Metric.recorded_at)), Metric.value)
        .where(Metric.period == "day", Metric.recorded_at >= period.previous.start_at,
               Metric.recorded_at < period.end_at, Metric.name.in_(list(rollups.BY_NAME))))
    return [[name, label_value, day, plain(value)] for name, label_value, day, value in rows]


def _daily(period: DateRange, *, cached: bool = True) -> dict[tuple[str, str | None], dict[date, Decimal]]:
    """The daily rollups of both periods, by (figure, label value): from the shared cache (a
    rollup run drops it, ``rollups.forget_figures``) or one statement (always, without
    ``cached``: for a caller that keeps what it makes of them in the cache itself)."""
    found: dict[tuple[str, str | None], dict[date, Decimal]] = {}
    rows = (cache.get_or_compute(daily_key(period), lambda: _read_daily(period), DAILY_SECONDS) if cached
            else _read_daily(period))
    for name, label_value, day, value in rows:
        if not cached:  # as read: a date and a plain Decimal; from the cache: their JSON text
            found.setdefault((name, label_value), {})[day] = value
            continue
        found.setdefault((name, label_value), {})[date.fromisoformat(day)] = plain(Decimal(value))
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


class BadLabel(DomainError):
    status_code = 400


#: What a label value may hold (currency codes, decisions): letters, digits, ``._-``.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,40}\Z")


@dataclass(frozen=True, order=True)
class LabelFilter:
    """Only the figures split by ``name``, at ``value`` (currency = USD)."""

    name: str
    value: str

    @property
    def param(self) -> str:
        """How a page's address writes it: ``currency:USD``."""
        return f"{self.name}:{self.value}"

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"


def parse_label(text: str | None) -> LabelFilter | None:
    """The label filter a page asks for (``label=currency:USD``), None for none. Raises
    BadLabel for a label no figure is split by or a value no label can hold."""
    text = (text or "").strip()
    if not text:
        return None
    name, colon, value = text.partition(":")
    if not colon or name not in rollups.SPLITS:
        raise BadLabel(f"Filter by {' or '.join(rollups.SPLITS)}, written as name:value (for example "
                       f"currency:USD); \"{text[:40]}\" is not one of them.", field="label")
    if not _LABEL_VALUE.match(value):
        raise BadLabel(f"A {name} is 1 to 40 letters, digits, '.', '_' or '-' (for example currency:USD); "
                       f"\"{value[:40]}\" is not one.", field="label")
    return LabelFilter(name, value)


@dataclass(frozen=True)
class Dashboard:
    panels: list[Panel]
    #: The label values the rollups of both periods hold, to filter by.
    choices: list[LabelFilter]


def dashboard(period: DateRange, label: LabelFilter | None = None, *, cached: bool = True) -> Dashboard:
    """A panel per figure (and per currency or decision it has), in the order of ``FIGURES``.
    Figures split by a label get a panel per value seen in either period. With ``label``, only
    the figures split by it, at its value (a value seen in neither period shows as no data).
    ``cached=False`` reads the rollups afresh, for a caller computing an entry of the cache (one
    entry computed inside another would hold two of the cache's connections at once)."""
    found = _daily(period, cached=cached)
    panels = []
    for figure in rollups.FIGURES:
        if label is not None:
            if figure.split_by != label.name:
                continue
            keys = [(figure.name, label.value)]
        else:
            keys = sorted((key for key in found if key[0] == figure.name), key=lambda k: k[1] or "")
        if not keys:
            keys = [(figure.name, None)]
        for name, label_value in keys:
            key = f"{name}:{label_value}" if label_value else name
            panels.append(_panel(key, figure, label_value, found.get((name, label_value), {}), period))
    choices = sorted({LabelFilter(rollups.BY_NAME[name].split_by, label_value) for name, label_value in found
                      if label_value is not None and rollups.BY_NAME[name].split_by})
    return Dashboard(panels, choices)


def panel(key: str, period: DateRange) -> Panel:
    """One panel by its key (for the CSV download); NotFound for an unknown figure."""
    name, _, label_value = key.partition(":")
    figure = rollups.BY_NAME.get(name)
    if figure is None:
        raise NotFound(f"There is no figure called {name[:60]!r}.")
    found = _daily(period)
    return _panel(key, figure, label_value or None, found.get((name, label_value or None), {}), period)
