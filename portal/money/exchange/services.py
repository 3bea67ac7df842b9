"""Exchange: currency pairs, rates from three sources, the choice of the rate a conversion uses,
and conversions (quote, then accept) posted through the ledger.

Pairs
    A pair ``BASE/QUOTE`` says one unit of BASE buys ``rate`` units of QUOTE, and serves both
    directions: converting QUOTE into BASE uses ``1 / rate``. So a pair and its reverse never
    both exist. Admins add pairs and switch them on and off; an inactive pair quotes nothing and
    takes no new rates from files or feeds (an admin may still type one, to prepare it).

Rates
    Each rate keeps its source (manual, CSV, HTTP), where exactly it came from and when it was
    observed. ``usable_rate`` picks the rate a conversion uses; see ``SOURCE_PREFERENCE``.

Conversions
    ``quote`` fixes the rate, the fee and the amount received, for ``EXCHANGE_QUOTE_SECONDS``;
    ``accept`` moves the money at exactly those numbers, read from the stored quote and never
    from the form, in one ledger posting:

    - user's FROM wallet -> exchange's FROM wallet: the amount;
    - exchange's TO wallet -> user's TO wallet: the amount received;
    - user's FROM wallet -> fees' FROM wallet: the fee, when there is one.

    The amount received is rounded down to the target currency's scale: what is cut off stays
    with the exchange, so rounding never creates money.
"""

from __future__ import annotations

import csv
import functools
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext

from flask import current_app
from sqlalchemy import and_, bindparam, func, insert, or_, select, true, tuple_
from sqlalchemy.dialects import postgresql

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.currency import (
    CURRENCIES,
    MAX_INTEGER_DIGITS,
    UnknownCurrency,
    currency,
    format_amount,
    parse_amount,
)
from portal.money.exchange import sources
from portal.money.exchange.models import Conversion, ConversionStatus, CurrencyPair, ExchangeRate, RateSource
from portal.money.exchange.sources import RATE_QUANTUM, InvalidRate
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import SystemWallet, TransactionType, WalletStatus
from portal.platform.cache import services as cache
from portal.security.permissions import Permission, has_permission

#: The order in which sources are tried for a pair: the first one with a fresh rate wins.
#:
#: 1. ``http``: the live feed. Machine-read market data, refreshed on a schedule, closest to the
#:    market and untouched by hand, so it is the best evidence of the rate right now.
#: 2. ``csv``: a file an admin imports (a treasury or bank rate sheet). Published reference
#:    rates, checked as a whole file before any line is stored, but only as recent as the last
#:    upload.
#: 3. ``manual``: typed by an admin. The last resort that keeps conversions open when the feed
#:    and the files are stale; one typing slip would be a wrong price, so it is used only when
#:    nothing better is fresh.
#:
#: A stale rate is never used, whatever its source; a fresh rate of a later source is used over
#: a stale one of an earlier source.
SOURCE_PREFERENCE: tuple[RateSource, ...] = (RateSource.HTTP, RateSource.CSV, RateSource.MANUAL)

#: CSV imports: the largest file and the most rate lines one import takes.
MAX_CSV_BYTES = 512 * 1024
MAX_CSV_ROWS = 5000
CSV_COLUMNS = ("base", "quote", "rate", "observed_at")
#: How many line errors a refused import lists (the count says how many more there were).
MAX_REPORTED_ERRORS = 50
MAX_NOTE = 300

#: Decimal precision for the products and quotients of amounts and rates: far above what
#: NUMERIC(38, 18) holds, so nothing is rounded before the explicit quantize.
_PRECISION = 80

#: Allowed status changes of a conversion.
_TRANSITIONS: dict[ConversionStatus, frozenset[ConversionStatus]] = {
    ConversionStatus.QUOTED: frozenset({ConversionStatus.COMPLETED, ConversionStatus.EXPIRED}),
    ConversionStatus.COMPLETED: frozenset(),
    ConversionStatus.EXPIRED: frozenset(),
}


class ExchangeError(DomainError):
    status_code = 422


class StaleRate(ExchangeError):
    status_code = 409


class QuoteExpired(Conflict):
    """The quote's time ran out. ``conversion`` is now marked expired: the caller commits that
    mark and offers a new quote."""

    def __init__(self, message: str, conversion: Conversion):
        super().__init__(message)
        self.conversion = conversion


class CsvRejected(ExchangeError):
    """A CSV file with problems; nothing of it was imported. ``errors`` lists
    ``(line number, message)``, line 1 being the header."""

    field = "file"

    def __init__(self, message: str, errors: list[tuple[int, str]] | None = None, more: int = 0):
        super().__init__(message)
        self.errors = errors or []
        self.more = more


# -- Small helpers ---------------------------------------------------------------------------------


def describe_age(seconds: float) -> str:
    """``4000`` -> ``1 hour 6 minutes``; under a minute in seconds."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    shown = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n][:2]
    return " ".join(shown)


def format_time(value: datetime) -> str:
    return value.strftime("%d %b %Y %H:%M UTC")


def max_rate_age() -> timedelta:
    return timedelta(seconds=current_app.config["EXCHANGE_RATE_MAX_AGE_SECONDS"])


def _require_admin(actor: User | None) -> None:
    """Rates and pairs are changed by money admins, or by jobs (no actor)."""
    if actor is not None and not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only money administrators manage currency pairs and rates.")


def _code(raw, field_name: str, label: str) -> str:
    try:
        return currency(raw).code
    except UnknownCurrency:
        raise ExchangeError(f"{label}: choose one of {', '.join(CURRENCIES)}.", field=field_name) from None


def inverse(rate: Decimal) -> Decimal:
    """``1 / rate`` at the 18 places rates are kept in, rounded down (like every amount the
    exchange pays out). Zero when the inverse is below 1e-18: such a rate cannot be used."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (Decimal(1) / rate).quantize(RATE_QUANTUM, rounding=ROUND_DOWN)


def convert_amount(amount: Decimal, rate: Decimal, to_code: str) -> Decimal:
    """``amount * rate`` rounded down to ``to_code``'s scale, with no intermediate rounding."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (amount * rate).quantize(currency(to_code).quantum, rounding=ROUND_DOWN)


# -- Pairs -----------------------------------------------------------------------------------------


def get_pair(pair_id: uuid.UUID) -> CurrencyPair:
    pair = db.session.get(CurrencyPair, pair_id)
    if pair is None:
        raise NotFound("There is no such currency pair.")
    return pair


def find_pair(code_a: str, code_b: str) -> tuple[CurrencyPair, bool] | None:
    """The pair between two currencies in either direction, and whether it is stored the other
    way round (``True``: ``code_a`` is the pair's quote currency)."""
    # ``add_pair`` never makes both directions; should rows made some other way hold both,
    # the direct one is used, so the answer never depends on the order rows come back in.
    pair = db.session.scalar(select(CurrencyPair).where(or_(
        and_(CurrencyPair.base_currency == code_a, CurrencyPair.quote_currency == code_b),
        and_(CurrencyPair.base_currency == code_b, CurrencyPair.quote_currency == code_a)))
        .order_by(CurrencyPair.base_currency != code_a).limit(1))
    if pair is None:
        return None
    return pair, pair.base_currency != code_a


def add_pair(actor: User, base: str, quote: str, *, active: bool = True) -> CurrencyPair:
    _require_admin(actor)
    base, quote = _code(base, "base_currency", "Base"), _code(quote, "quote_currency", "Quote")
    if base == quote:
        raise ExchangeError("A pair needs two different currencies.", field="quote_currency")
    existing = find_pair(base, quote)
    if existing is not None:
        pair, reversed_ = existing
        if reversed_:
            raise ExchangeError(f"{pair.symbol} already exists and serves both directions: "
                                f"{base} to {quote} uses the inverse of its rate.", field="quote_currency")
        raise ExchangeError(f"{pair.symbol} already exists.", field="quote_currency")
    pair = CurrencyPair(id=uuid.uuid4(), base_currency=base, quote_currency=quote, active=active)
    db.session.add(pair)
    db.session.flush()
    return pair


def set_pair_active(actor: User, pair_id: uuid.UUID, active: bool) -> CurrencyPair:
    """Switch a pair on or off. Quotes already given stay acceptable until they expire: the
    user was promised that rate for that window."""
    _require_admin(actor)
    pair = db.session.scalar(select(CurrencyPair).where(CurrencyPair.id == pair_id).with_for_update())
    if pair is None:
        raise NotFound("There is no such currency pair.")
    pair.active = active
    db.session.flush()
    return pair


# -- Rates from each source ------------------------------------------------------------------------


def record_manual_rate(actor: User, pair_id: uuid.UUID | None, raw_rate: str, *,
                       observed_at: datetime | None = None, note: str = "",
                       now: datetime | None = None) -> ExchangeRate:
    """A rate typed by an admin: more than zero, at most 18 decimal places, observed now unless
    a time is given (never in the future), with an optional note kept as its source detail."""
    _require_admin(actor)
    now = now or utcnow()
    if pair_id is None:
        raise ExchangeError("Choose a pair.", field="pair")
    pair = db.session.get(CurrencyPair, pair_id)
    if pair is None:
        raise ExchangeError("Choose a pair.", field="pair")
    rate = sources.parse_rate(raw_rate)
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ExchangeError(f"The note is at most {MAX_NOTE} characters.", field="note")
    if observed_at is None:
        observed_at = now
    elif observed_at > now + sources.FUTURE_SKEW:
        raise ExchangeError("The observation time is in the future.", field="observed_at")
    row = ExchangeRate(id=uuid.uuid4(), pair_id=pair.id, rate=rate, source=RateSource.MANUAL,
                       source_detail=note, observed_at=observed_at, recorded_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    forget_rate_charts(pair.id)
    return row


def rate_chart_key(pair_id: uuid.UUID) -> cache.Key:
    """The shared cache entry of a pair's chart points (``queries.chart_rows``): rates are
    public to every wallet user, so one entry per pair serves them all."""
    return cache.shared_key("rate-chart", pair_id)


def forget_rate_charts(*pair_ids: uuid.UUID) -> None:
    """A new rate of these pairs is recorded: their charts are redrawn once it commits."""
    cache.invalidate_on_commit(*(rate_chart_key(pair_id) for pair_id in sorted(set(pair_ids))))


@dataclass
class ImportResult:
    imported: int = 0
    #: pair symbol -> rates stored
    pairs: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    #: pair symbols a feed sent that the portal does not offer (HTTP only)
    not_offered: list[str] = field(default_factory=list)


def _pairs_by_symbol() -> dict[tuple[str, str], CurrencyPair]:
    return {(p.base_currency, p.quote_currency): p for p in db.session.scalars(select(CurrencyPair))}


def _already_stored(source: RateSource, keys: set[tuple[uuid.UUID, datetime]]) -> set[tuple[uuid.UUID, datetime]]:
    """Which ``(pair id, observed at)`` of ``keys`` the source already has."""
    if not keys:
        return set()
    rows = db.session.execute(select(ExchangeRate.pair_id, ExchangeRate.observed_at).where(
        ExchangeRate.source == source,
        tuple_(ExchangeRate.pair_id, ExchangeRate.observed_at).in_(list(keys)))).all()
    return {(pair_id, observed) for pair_id, observed in rows}


def _store(rows: list[dict]) -> None:
    if rows:
        stamp = utcnow()
        db.session.execute(insert(ExchangeRate), [dict(r, created_at=stamp, updated_at=stamp) for r in rows])
        forget_rate_charts(*(r["pair_id"] for r in rows))


def _decode_csv(data: bytes) -> str:
    if not data or not data.strip():
        raise CsvRejected("The file is empty.")
    if len(data) > MAX_CSV_BYTES:
        raise CsvRejected(f"The file is larger than {MAX_CSV_BYTES // 1024} KB: split it and import the parts.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRejected(f"The file is not UTF-8 text (a byte at position {exc.start} cannot be read).") from None


def import_csv(actor: User, filename: str, data: bytes, *, now: datetime | None = None) -> ImportResult:
    """Import rates from CSV with the header ``base,quote,rate,observed_at`` (any column order).

    All or nothing: every line is checked first; if any is bad, CsvRejected lists each bad line
    with its number and nothing is stored. A line must name an active pair in its stored
    direction, a rate as ``parse_rate`` takes it and an ISO 8601 time with a time zone; the same
    pair and time twice in the file, or a rate already imported for that pair and time, is an
    error too (so importing a file twice cannot double the history). Blank lines are skipped.
    """
    _require_admin(actor)
    now = now or utcnow()
    text = _decode_csv(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CsvRejected(f"Line 1: the header cannot be read ({exc}).", [(1, str(exc))]) from None
    columns = [c.strip().lower() for c in header or []]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if missing or unknown or len(set(columns)) != len(columns):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(repr(c[:20]) for c in unknown)}")
        if len(set(columns)) != len(columns):
            problems.append("a column appears twice")
        message = f"Line 1: the header must be {','.join(CSV_COLUMNS)} ({'; '.join(problems)})."
        raise CsvRejected(message, [(1, message.removeprefix("Line 1: "))])
    index = {name: columns.index(name) for name in CSV_COLUMNS}
    pairs = _pairs_by_symbol()
    errors: list[tuple[int, str]] = []
    good: list[tuple[int, CurrencyPair, Decimal, datetime]] = []
    seen: dict[tuple[uuid.UUID, datetime], int] = {}
    lines = 0
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            lines += 1
            if lines > MAX_CSV_ROWS:
                raise CsvRejected(f"The file has more than {MAX_CSV_ROWS} rates: split it and import the parts.")
            if len(record) != len(columns):
                errors.append((line, f"expected {len(columns)} values, found {len(record)}"))
                continue
            try:
                base = sources.parse_code(record[index["base"]], "Base")
                quote = sources.parse_code(record[index["quote"]], "Quote")
                pair = pairs.get((base, quote))
                if pair is None:
                    reverse = pairs.get((quote, base))
                    if reverse is not None:
                        raise InvalidRate(f"{base}/{quote} is not a pair; the pair is {reverse.symbol}: "
                                          f"give its rate in that direction")
                    raise InvalidRate(f"{base}/{quote} is not a currency pair here")
                if not pair.active:
                    raise InvalidRate(f"{pair.symbol} is inactive: activate it first")
                rate = sources.parse_rate(record[index["rate"]])
                observed_at = sources.parse_observed_at(record[index["observed_at"]], now)
            except DomainError as exc:
                errors.append((line, exc.message.rstrip(".")))
                continue
            key = (pair.id, observed_at)
            if key in seen:
                errors.append((line, f"{pair.symbol} at {observed_at.isoformat()} is already on line {seen[key]}"))
                continue
            seen[key] = line
            good.append((line, pair, rate, observed_at))
    except csv.Error as exc:
        errors.append((reader.line_num, f"the line cannot be read as CSV ({exc})"))
    if not errors and not good:
        raise CsvRejected("The file has a header but no rates.")
    stored = _already_stored(RateSource.CSV, {(pair.id, observed) for _, pair, _, observed in good})
    for line, pair, _, observed_at in good:
        if (pair.id, observed_at) in stored:
            errors.append((line, f"{pair.symbol} at {observed_at.isoformat()} was already imported"))
    if errors:
        errors.sort()
        count = len(errors)
        raise CsvRejected(f"Nothing was imported: {count} line{'s' if count != 1 else ''} "
                          f"{'have' if count != 1 else 'has'} problems. Fix them and upload the file again.",
                          errors[:MAX_REPORTED_ERRORS], more=max(count - MAX_REPORTED_ERRORS, 0))
    detail = f"CSV {filename or 'upload'}"[:300]
    result = ImportResult()
    rows = []
    for _, pair, rate, observed_at in good:
        rows.append({"id": uuid.uuid4(), "pair_id": pair.id, "rate": rate, "source": RateSource.CSV,
                     "source_detail": detail, "observed_at": observed_at, "recorded_by_id": actor.id})
        result.pairs[pair.symbol] = result.pairs.get(pair.symbol, 0) + 1
    _store(rows)
    result.imported = len(rows)
    return result


def refresh_from_http(actor: User | None = None, *, now: datetime | None = None) -> ImportResult:
    """Fetch the configured HTTP source (``EXCHANGE_RATE_URL``) and store its rates for active
    pairs in their stored direction. Rates already stored (same pair and observation time) are
    skipped, so a feed that has not moved adds nothing. SourceError when the source fails."""
    _require_admin(actor)
    url = current_app.config.get("EXCHANGE_RATE_URL") or ""
    if not url:
        raise ExchangeError("No HTTP rate source is configured (set EXCHANGE_RATE_URL).")
    now = now or utcnow()
    quotes = sources.fetch_rates(url, float(current_app.config["EXCHANGE_RATE_TIMEOUT_SECONDS"]), now=now)
    pairs = _pairs_by_symbol()
    result = ImportResult()
    wanted: dict[tuple[uuid.UUID, datetime], tuple[CurrencyPair, Decimal]] = {}
    for item in quotes:
        pair = pairs.get((item.base, item.quote))
        if pair is None or not pair.active:
            symbol = f"{item.base}/{item.quote}"
            if symbol not in result.not_offered:
                result.not_offered.append(symbol)
            result.skipped += 1
            continue
        wanted[(pair.id, item.observed_at)] = (pair, item.rate)
    stored = _already_stored(RateSource.HTTP, set(wanted))
    host = url.split("//", 1)[-1].split("/", 1)[0]
    rows = []
    for (pair_id, observed_at), (pair, rate) in wanted.items():
        if (pair_id, observed_at) in stored:
            result.skipped += 1
            continue
        rows.append({"id": uuid.uuid4(), "pair_id": pair_id, "rate": rate, "source": RateSource.HTTP,
                     "source_detail": f"HTTP {host}"[:300], "observed_at": observed_at,
                     "recorded_by_id": actor.id if actor else None})
        result.pairs[pair.symbol] = result.pairs.get(pair.symbol, 0) + 1
    _store(rows)
    result.imported = len(rows)
    return result


# -- Choosing the rate ------------------------------------------------------------------------------


@functools.cache
def _latest_by_source_statement():
    """Built once (a ``VALUES`` list cannot be cached, so the statement was compiled anew on
    every call); parameter ``pair_ids``, a list."""
    source_list = (func.unnest(postgresql.array([s.value for s in RateSource])).table_valued("source")
                   .render_derived(name="rate_sources"))
    combos = (select(CurrencyPair.id.label("pair_id"), source_list.c.source)
              .select_from(CurrencyPair).join(source_list, true())  # every pair with every source
              .where(CurrencyPair.id.in_(bindparam("pair_ids", expanding=True))).subquery())
    newest = (select(ExchangeRate.id).where(ExchangeRate.pair_id == combos.c.pair_id,
                                            ExchangeRate.source == combos.c.source)
              .order_by(ExchangeRate.observed_at.desc()).limit(1).lateral())
    ids = select(newest.c.id).select_from(combos).join(newest, true())
    return select(ExchangeRate).where(ExchangeRate.id.in_(ids))


def latest_by_source(pair_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[RateSource, ExchangeRate]]:
    """The newest rate of each source for each pair, in one statement (a LATERAL lookup per pair
    and source on the ``(pairId, source, observedAt DESC)`` index, however long the history)."""
    if not pair_ids:
        return {}
    found: dict[uuid.UUID, dict[RateSource, ExchangeRate]] = {pid: {} for pid in pair_ids}
    for row in db.session.scalars(_latest_by_source_statement(), {"pair_ids": list(pair_ids)}):
        found.setdefault(row.pair_id, {})[row.source] = row
    return found


def choose(by_source: dict[RateSource, ExchangeRate], now: datetime, max_age: timedelta) -> ExchangeRate | None:
    """The first source in ``SOURCE_PREFERENCE`` whose newest rate is fresh, or None."""
    for source in SOURCE_PREFERENCE:
        row = by_source.get(source)
        if row is not None and now - row.observed_at <= max_age:
            return row
    return None


def newest(by_source: dict[RateSource, ExchangeRate]) -> ExchangeRate | None:
    rows = list(by_source.values())
    return max(rows, key=lambda r: r.observed_at) if rows else None


@dataclass(frozen=True)
class UsableRate:
    pair: CurrencyPair
    row: ExchangeRate
    #: Units of the target currency per unit of the source currency (inverted when needed).
    rate: Decimal
    inverted: bool

    @property
    def source(self) -> RateSource:
        return self.row.source


def stale_message(symbol: str, row: ExchangeRate | None, max_age: timedelta) -> str:
    if row is None:
        return f"There is no rate for {symbol} yet, so it cannot be converted. Try again later."
    return (f"The {symbol} rate is stale since {format_time(row.observed_at + max_age)}: its newest rate "
            f"({row.source.value}, observed {format_time(row.observed_at)}) is older than "
            f"{describe_age(max_age.total_seconds())}. Conversions are paused until a fresh rate arrives.")


def usable_rate(from_code: str, to_code: str, *, now: datetime | None = None) -> UsableRate:
    """The rate to convert ``from_code`` into ``to_code`` now, or a clear refusal: no such pair,
    the pair is inactive, or no source has a fresh rate (StaleRate, saying since when)."""
    now = now or utcnow()
    found = find_pair(from_code, to_code)
    if found is None:
        raise ExchangeError(f"{from_code} cannot be converted into {to_code} here: there is no such pair.",
                            field="to_currency")
    pair, inverted = found
    if not pair.active:
        raise ExchangeError(f"Conversions between {pair.base_currency} and {pair.quote_currency} are switched off "
                            "for now.", field="to_currency")
    by_source = latest_by_source([pair.id])[pair.id]
    max_age = max_rate_age()
    row = choose(by_source, now, max_age)
    if row is None:
        raise StaleRate(stale_message(f"{from_code}/{to_code}", newest(by_source), max_age))
    rate = inverse(row.rate) if inverted else row.rate
    if rate <= 0:
        raise ExchangeError(f"The {from_code}/{to_code} rate is too small to quote.", field="to_currency")
    return UsableRate(pair=pair, row=row, rate=rate, inverted=inverted)


# -- Conversions ------------------------------------------------------------------------------------


def _move(conversion: Conversion, status: ConversionStatus) -> None:
    if status not in _TRANSITIONS[conversion.status]:
        raise Conflict(f"A {conversion.status.value} conversion cannot become {status.value}.")
    conversion.status = status


def quote(user: User, from_code: str, to_code: str, raw_amount: str, *, now: datetime | None = None) -> Conversion:
    """Offer a conversion: the rate, the fee (in the source currency, on top of the amount), the
    amount received (rounded down) and how long the offer holds. Refused at once when the user
    could not pay it: accepting checks again, under the ledger's locks."""
    now = now or utcnow()
    from_code = _code(from_code, "from_currency", "From")
    to_code = _code(to_code, "to_currency", "To")
    if from_code == to_code:
        raise ExchangeError("Choose two different currencies.", field="to_currency")
    amount = parse_amount(raw_amount, from_code)
    usable = usable_rate(from_code, to_code, now=now)
    target = currency(to_code)
    to_amount = convert_amount(amount, usable.rate, to_code)
    if to_amount <= 0:
        raise ExchangeError(f"That amount is too small: it buys less than {target.quantum} {to_code}.",
                            field="amount")
    if len(str(int(to_amount))) > MAX_INTEGER_DIGITS:
        raise ExchangeError("That amount is too large to convert.", field="amount")
    fee = fees.fee_for(TransactionType.CONVERSION, amount, from_code)
    wallet = ledger.user_wallet(user.id, from_code)
    if wallet is not None and wallet.status != WalletStatus.ACTIVE:
        raise ledger.WalletUnavailable(f"Your {from_code} wallet is {wallet.status.value}; no money can move out "
                                       "of it.")
    available = wallet.available if wallet is not None else Decimal(0)
    if available < amount + fee:
        unit = currency(from_code)
        raise ledger.InsufficientFunds(
            f"Not enough {from_code}: {available.quantize(unit.quantum)} available, "
            f"{(amount + fee).quantize(unit.quantum)} needed ({amount} plus a {fee} fee).")
    conversion = Conversion(id=uuid.uuid4(), user_id=user.id, from_currency=from_code, to_currency=to_code,
                            from_amount=amount, to_amount=to_amount, rate=usable.rate, rate_id=usable.row.id,
                            rate_source=usable.source.value, fee_amount=fee, quoted_at=now,
                            expires_at=now + timedelta(seconds=current_app.config["EXCHANGE_QUOTE_SECONDS"]),
                            status=ConversionStatus.QUOTED)
    db.session.add(conversion)
    db.session.flush()
    return conversion


def conversion_of(user: User, conversion_id: uuid.UUID, *, for_update: bool = False) -> Conversion:
    """The user's own conversion; someone else's is NotFound, exactly like one that does not exist."""
    query = select(Conversion).where(Conversion.id == conversion_id, Conversion.user_id == user.id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    found = db.session.scalar(query)
    if found is None:
        raise NotFound("There is no such conversion.")
    return found


def is_expired(conversion: Conversion, now: datetime | None = None) -> bool:
    return conversion.status == ConversionStatus.EXPIRED or (
        conversion.status == ConversionStatus.QUOTED and (now or utcnow()) >= conversion.expires_at)


def accept(user: User, conversion_id: uuid.UUID, key: str | None, *,
           now: datetime | None = None) -> tuple[Conversion, bool]:
    """Complete the user's quote at its stored numbers: returns ``(conversion, replayed)``.

    The quote row is locked first, so two accepts of one quote run one after the other and the
    second finds it completed: a double submit pays once, whatever key it carries. An expired
    quote is marked expired and refused (QuoteExpired; the caller commits the mark).
    """
    now = now or utcnow()
    conversion = conversion_of(user, conversion_id, for_update=True)
    if conversion.status == ConversionStatus.QUOTED and now >= conversion.expires_at:
        _move(conversion, ConversionStatus.EXPIRED)
        db.session.flush()
    if conversion.status == ConversionStatus.EXPIRED:
        raise QuoteExpired(f"This quote expired at {format_time(conversion.expires_at)}; nothing was converted. "
                           "Get a new quote at the current rate.", conversion)

    def perform() -> dict:
        if conversion.status == ConversionStatus.COMPLETED:
            return {"conversion": str(conversion.id), "group": str(conversion.transaction_group_id)}
        group_id = _post(user, conversion)
        _move(conversion, ConversionStatus.COMPLETED)
        conversion.completed_at = now
        conversion.transaction_group_id = group_id
        db.session.flush()
        return {"conversion": str(conversion.id), "group": str(group_id)}

    already_done = conversion.status == ConversionStatus.COMPLETED
    _, replayed = ledger.once(user.id, key, "conversion", {"conversion": str(conversion.id)}, perform)
    return conversion, replayed or already_done


def _post(user: User, conversion: Conversion) -> uuid.UUID:
    source, target = conversion.from_currency, conversion.to_currency
    paying = ledger.user_wallet(user.id, source)
    if paying is None:
        raise ledger.InsufficientFunds(f"You have no {source} to convert.")
    if paying.status != WalletStatus.ACTIVE:
        raise ledger.WalletUnavailable(f"Your {source} wallet is {paying.status.value}; no money can move out of it.")
    receiving = ledger.open_user_wallet(user.id, target)
    if receiving.status != WalletStatus.ACTIVE:
        raise ledger.WalletUnavailable(f"Your {target} wallet is {receiving.status.value}; no money can move into it.")
    details = {"conversion": str(conversion.id), "rate": str(conversion.rate), "from": source, "to": target,
               "rate_source": conversion.rate_source}
    # The ledger keeps the text as written: exact amounts, but not the column's 18 places.
    description = (f"Conversion of {format_amount(conversion.from_amount, source, exact=True)} into "
                   f"{format_amount(conversion.to_amount, target, exact=True)} at {conversion.rate.normalize():f}")
    legs = [
        ledger.Leg(paying, ledger.system_wallet(SystemWallet.EXCHANGE, source, spread_by=user.id), conversion.from_amount,
                   TransactionType.CONVERSION, description, details),
        ledger.Leg(ledger.system_wallet(SystemWallet.EXCHANGE, target, spread_by=user.id), receiving, conversion.to_amount,
                   TransactionType.CONVERSION, description, details),
    ]
    if conversion.fee_amount > 0:
        legs.append(ledger.Leg(paying, ledger.system_wallet(SystemWallet.FEES, source, spread_by=user.id), conversion.fee_amount,
                               TransactionType.FEE, f"Fee for converting {source} into {target}", details))
    group_id = uuid.uuid4()
    ledger.post(legs, initiated_by_id=user.id, group_id=group_id)
    return group_id
