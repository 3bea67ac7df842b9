"""Reads for the exchange pages: pairs with their current rate, a pair's rate history and its
chart, a user's conversions and balances. Each function is one or two statements, whatever
the size of the history."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import select, tuple_

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange import services
from portal.money.exchange.models import Conversion, CurrencyPair, ExchangeRate, RateSource
from portal.money.wallets.models import Wallet
from portal.pagination import Page, decode_cursor, encode_cursor, keyset_page

RATES_PER_PAGE = 25
CONVERSIONS_PER_PAGE = 10
#: The newest observations a chart draws.
CHART_POINTS = 200


@dataclass
class PairStatus:
    """A pair as the pages show it: the rate a conversion would use now (None when every
    source is stale or empty) and the newest rate of any source."""

    pair: CurrencyPair
    current: ExchangeRate | None
    newest: ExchangeRate | None
    by_source: dict[RateSource, ExchangeRate] = field(default_factory=dict)
    now: datetime | None = None

    @property
    def stale(self) -> bool:
        return self.current is None

    @property
    def inverse(self) -> Decimal | None:
        return services.inverse(self.current.rate) if self.current is not None else None

    def age(self, row: ExchangeRate | None = None) -> str:
        row = row or self.current or self.newest
        return services.describe_age(((self.now or utcnow()) - row.observed_at).total_seconds()) if row else ""


def pair_statuses(*, active_only: bool = False, now: datetime | None = None) -> list[PairStatus]:
    """Every pair (or the active ones) with its rates: two statements."""
    now = now or utcnow()
    query = select(CurrencyPair).order_by(CurrencyPair.base_currency, CurrencyPair.quote_currency)
    if active_only:
        query = query.where(CurrencyPair.active.is_(True))
    pairs = list(db.session.scalars(query))
    latest = services.latest_by_source([p.id for p in pairs])
    max_age = services.max_rate_age()
    return [PairStatus(pair=p, current=services.choose(latest.get(p.id, {}), now, max_age),
                       newest=services.newest(latest.get(p.id, {})), by_source=latest.get(p.id, {}), now=now)
            for p in pairs]


def pair_status(pair: CurrencyPair, *, now: datetime | None = None) -> PairStatus:
    now = now or utcnow()
    latest = services.latest_by_source([pair.id])[pair.id]
    return PairStatus(pair=pair, current=services.choose(latest, now, services.max_rate_age()),
                      newest=services.newest(latest), by_source=latest, now=now)


def rate_page(pair_id: uuid.UUID, cursor: str | None, size: int = RATES_PER_PAGE) -> Page:
    """A pair's rates, newest observation first, keyset-paginated on ``(observedAt, id)``."""
    query = select(ExchangeRate).where(ExchangeRate.pair_id == pair_id)
    position = decode_cursor(cursor)
    if position is not None:
        query = query.where(tuple_(ExchangeRate.observed_at, ExchangeRate.id) < tuple_(*position))
    rows = list(db.session.scalars(query.order_by(ExchangeRate.observed_at.desc(), ExchangeRate.id.desc())
                                   .limit(size + 1)))
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1].observed_at, rows[-1].id)
    return Page(rows, next_cursor)


def conversion_page(user_id: uuid.UUID, cursor: str | None, size: int = CONVERSIONS_PER_PAGE) -> Page:
    return keyset_page(select(Conversion).where(Conversion.user_id == user_id), Conversion.created_at,
                       Conversion.id, cursor, size)


def balances(user_id: uuid.UUID) -> dict[str, Wallet]:
    """The user's wallets by currency (one statement; wallets never opened are absent)."""
    return {w.currency: w for w in db.session.scalars(select(Wallet).where(Wallet.user_id == user_id))}


# -- The chart -------------------------------------------------------------------------------------


def short_rate(value: Decimal, digits: int = 8) -> str:
    """A rate for a label: ``digits`` significant digits, no exponent."""
    with localcontext() as ctx:
        ctx.prec = digits
        rounded = +value
    text = f"{rounded:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


#: How each source is drawn: colour and dash pattern (never colour alone), and its legend name.
SERIES_STYLE = {
    RateSource.HTTP: ("#0f766e", "", "HTTP feed"),
    RateSource.CSV: ("#1d4ed8", "6 4", "CSV import"),
    RateSource.MANUAL: ("#b45309", "2 3", "Manual entry"),
}


@dataclass
class ChartPoint:
    x: float
    y: float
    rate: Decimal
    observed_at: datetime
    source: RateSource


@dataclass
class Series:
    source: RateSource
    color: str
    dash: str
    label: str
    points: list[ChartPoint]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass
class RateChart:
    """Geometry of a server-drawn SVG line chart (one line per source) in a fixed viewBox."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    low: Decimal | None = None
    high: Decimal | None = None
    low_y: float = 0
    high_y: float = 0
    first: datetime | None = None
    last: datetime | None = None
    latest: ChartPoint | None = None
    count: int = 0

    @property
    def empty(self) -> bool:
        return self.count == 0

    def label(self, value: Decimal) -> str:
        return short_rate(value)


def chart_rows(pair_id: uuid.UUID, limit: int = CHART_POINTS) -> list[ExchangeRate]:
    rows = list(db.session.scalars(select(ExchangeRate).where(ExchangeRate.pair_id == pair_id)
                                   .order_by(ExchangeRate.observed_at.desc(), ExchangeRate.id.desc()).limit(limit)))
    rows.reverse()
    return rows


def build_chart(rows: list[ExchangeRate], *, width: int = 960, height: int = 340) -> RateChart:
    """Scale ``rows`` (oldest first) into the plot area: time along x, rate along y, with
    headroom above the highest and below the lowest rate for their labels. Floats here are
    pixel positions only; the rates shown stay Decimal."""
    chart = RateChart(width=width, height=height, left=44, right=width - 16, top=32, bottom=height - 52, series=[])
    if not rows:
        return chart
    chart.count = len(rows)
    chart.first, chart.last = rows[0].observed_at, rows[-1].observed_at
    chart.low, chart.high = min(r.rate for r in rows), max(r.rate for r in rows)
    span_seconds = (chart.last - chart.first).total_seconds()
    low, high = float(chart.low), float(chart.high)
    pad = (high - low) * 0.15 or (abs(high) * 0.01 or 1.0)
    y_min, y_max = low - pad, high + pad

    def x_of(moment: datetime) -> float:
        if span_seconds <= 0:
            return (chart.left + chart.right) / 2
        return chart.left + (moment - chart.first).total_seconds() / span_seconds * (chart.right - chart.left)

    def y_of(rate: float) -> float:
        return chart.bottom - (rate - y_min) / (y_max - y_min) * (chart.bottom - chart.top)

    chart.low_y, chart.high_y = y_of(low), y_of(high)
    by_source: dict[RateSource, list[ChartPoint]] = {}
    for row in rows:
        point = ChartPoint(x_of(row.observed_at), y_of(float(row.rate)), row.rate, row.observed_at, row.source)
        by_source.setdefault(row.source, []).append(point)
        chart.latest = point
    for source in services.SOURCE_PREFERENCE:
        if source in by_source:
            color, dash, label = SERIES_STYLE[source]
            chart.series.append(Series(source, color, dash, label, by_source[source]))
    return chart


def chart_span(chart: RateChart) -> timedelta | None:
    return (chart.last - chart.first) if chart.first and chart.last else None
