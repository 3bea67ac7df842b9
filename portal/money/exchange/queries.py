"""Reads for the exchange pages: pairs with their current rate, a pair's rate history and its
chart, a user's conversions and balances. Each function is one or two statements, whatever
the size of the history; the convert page reads its pairs in one statement and the student's
balances with their conversions in another, both built once."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import Select, bindparam, func, select, true, tuple_
from sqlalchemy.dialects import postgresql

from portal.db import db
from portal.db.base import utcnow
from portal.money.currency import CURRENCIES
from portal.money.exchange import services
from portal.money.exchange.models import Conversion, CurrencyPair, ExchangeRate, RateSource
from portal.money.wallets.models import Wallet, WalletStatus
from portal.money.wallets.queries import Balance, beside_first_row
from portal.pagination import Page, decode_cursor, encode_cursor
from portal.platform.cache import services as cache

RATES_PER_PAGE = 25
CONVERSIONS_PER_PAGE = 10
#: The newest observations a chart draws.
CHART_POINTS = 200

_PAIRS, _RATES, _CONVERSIONS, _WALLETS = (CurrencyPair.__table__, ExchangeRate.__table__, Conversion.__table__,
                                          Wallet.__table__)


@dataclass(frozen=True)
class PairView:
    """A currency pair's columns, as the pages show it."""

    id: uuid.UUID
    base_currency: str
    quote_currency: str
    active: bool

    @property
    def symbol(self) -> str:
        return f"{self.base_currency}/{self.quote_currency}"


@dataclass(frozen=True)
class RateView:
    """A rate's columns, as the pages show it."""

    id: uuid.UUID
    rate: Decimal
    source: RateSource
    observed_at: datetime


@dataclass
class PairStatus:
    """A pair as the pages show it: the rate a conversion would use now (None when every
    source is stale or empty) and the newest rate of any source. ``pair`` and the rates are
    the entities (``pair_status``) or their columns (``pair_statuses``)."""

    pair: CurrencyPair | PairView
    current: ExchangeRate | RateView | None
    newest: ExchangeRate | RateView | None
    by_source: dict[RateSource, ExchangeRate | RateView] = field(default_factory=dict)
    now: datetime | None = None

    @property
    def stale(self) -> bool:
        return self.current is None

    @property
    def inverse(self) -> Decimal | None:
        return services.inverse(self.current.rate) if self.current is not None else None

    def age(self, row: ExchangeRate | RateView | None = None) -> str:
        row = row or self.current or self.newest
        return services.describe_age(((self.now or utcnow()) - row.observed_at).total_seconds()) if row else ""


@functools.cache
def _pairs_statement(active_only: bool) -> Select:
    """Every pair (or the active ones) with the newest rate of each source: a row per pair and
    source, the rate found by a LATERAL lookup on the ``(pairId, source, observedAt DESC)``
    index however long the history (no rate: NULLs). Built once."""
    p, r = _PAIRS, _RATES
    sources = (func.unnest(postgresql.array([source.value for source in RateSource]))
               .table_valued("source").render_derived(name="sources"))
    newest = (select(r.c.id, r.c.rate, r.c.source, r.c.observed_at.label("observed_at"))
              .where(r.c.pair_id == p.c.id, r.c.source == sources.c.source)
              .order_by(r.c.observed_at.desc()).limit(1).lateral("newest"))
    stmt = (select(p.c.id, p.c.base_currency.label("base_currency"), p.c.quote_currency.label("quote_currency"),
                   p.c.active, newest.c.id.label("rate_id"), newest.c.rate, newest.c.source, newest.c.observed_at)
            .select_from(p).join(sources, true()).outerjoin(newest, true())
            .order_by(p.c.base_currency, p.c.quote_currency))
    return stmt.where(p.c.active.is_(True)) if active_only else stmt


def pair_statuses(*, active_only: bool = False, now: datetime | None = None) -> list[PairStatus]:
    """Every pair (or the active ones) with its rates: one statement."""
    now = now or utcnow()
    max_age = services.max_rate_age()
    statuses: dict[uuid.UUID, PairStatus] = {}
    for row in db.session.execute(_pairs_statement(active_only)).all():
        status = statuses.get(row.id)
        if status is None:
            pair = PairView(row.id, row.base_currency, row.quote_currency, row.active)
            status = statuses[row.id] = PairStatus(pair=pair, current=None, newest=None, now=now)
        if row.rate_id is not None:
            status.by_source[row.source] = RateView(row.rate_id, row.rate, row.source, row.observed_at)
    for status in statuses.values():
        status.current = services.choose(status.by_source, now, max_age)
        status.newest = services.newest(status.by_source)
    return list(statuses.values())


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


@functools.cache
def _convert_page_statement(after: bool) -> Select:
    """A page of the user's conversions, newest first, with their wallets (as arrays) beside the
    first row; built once (parameters ``user_id``, ``limit``, and ``after_at`` and ``after_id``
    with ``after``)."""
    c, w = _CONVERSIONS, _WALLETS
    order = (c.c.createdAt.desc(), c.c.id.desc())
    page = (select(c.c.id, c.c.createdAt.label("created_at"),
                   *(c.c[name].label(name) for name in ("quoted_at", "expires_at", "from_currency", "to_currency",
                                                        "from_amount", "to_amount", "fee_amount")),
                   c.c.rate, c.c.status, func.row_number().over(order_by=order).label("position"))
            .where(c.c.user_id == bindparam("user_id")))
    if after:
        page = page.where(tuple_(c.c.createdAt, c.c.id) < tuple_(bindparam("after_at", type_=c.c.createdAt.type),
                                                                bindparam("after_id", type_=c.c.id.type)))
    page = page.order_by(*order).limit(bindparam("limit"))
    wallets = select(func.array_agg(w.c.currency).label("wallet_currencies"),
                     func.array_agg(w.c.balance).label("wallet_balances"),
                     func.array_agg(w.c.locked_balance).label("wallet_locked"),
                     func.array_agg(w.c.status).label("wallet_statuses")).where(w.c.user_id == bindparam("user_id"))
    return beside_first_row(page, wallets)


def convert_page(user_id: uuid.UUID, cursor: str | None,
                 size: int = CONVERSIONS_PER_PAGE) -> tuple[dict[str, Balance], Page]:
    """The user's wallets by currency (wallets never opened are absent) and a page of their
    conversions, newest first: one statement."""
    position = decode_cursor(cursor)
    params = {"user_id": user_id, "limit": size + 1}
    if position is not None:
        params["after_at"], params["after_id"] = position
    rows = db.session.execute(_convert_page_statement(position is not None), params).all()
    first = rows[0]
    wallets = {code: Balance(code, CURRENCIES[code].name, balance, locked, WalletStatus(status))
               for code, balance, locked, status in zip(first.wallet_currencies or (), first.wallet_balances or (),
                                                        first.wallet_locked or (), first.wallet_statuses or (),
                                                        strict=True)}
    items = [row for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
    return wallets, Page(items, next_cursor)


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


#: How long a pair's chart points stay in the shared cache when no new rate drops them first.
CHART_SECONDS = 600


@dataclass(frozen=True, slots=True)
class RatePoint:
    """One observation a chart draws (what ``chart_rows`` keeps of an ``exchange_rates`` row)."""

    rate: Decimal
    observed_at: datetime
    source: RateSource


def chart_rows(pair_id: uuid.UUID, limit: int = CHART_POINTS) -> list[RatePoint]:
    """The newest ``limit`` observations of a pair, oldest first: from the shared cache (the
    chart is the same for every reader; a new rate of the pair drops it,
    ``services.forget_rate_charts``), or one statement."""
    def newest() -> list[list]:
        rows = db.session.execute(select(ExchangeRate.rate, ExchangeRate.observed_at, ExchangeRate.source)
                                  .where(ExchangeRate.pair_id == pair_id)
                                  .order_by(ExchangeRate.observed_at.desc(), ExchangeRate.id.desc()).limit(limit))
        return [[rate, observed_at, source.value] for rate, observed_at, source in reversed(rows.all())]

    stored = (cache.get_or_compute(services.rate_chart_key(pair_id), newest, CHART_SECONDS)
              if limit == CHART_POINTS else newest())
    return [RatePoint(Decimal(rate), datetime.fromisoformat(at) if isinstance(at, str) else at, RateSource(source))
            for rate, at, source in stored]


def build_chart(rows: list[RatePoint], *, width: int = 960, height: int = 340) -> RateChart:
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
