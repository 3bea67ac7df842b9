"""Where rates come from, before they are stored: the strict parsers every source shares and the
HTTP JSON source adapter.

The HTTP source
---------------
``fetch_rates(url, timeout)`` GETs ``url`` (``EXCHANGE_RATE_URL``) and accepts exactly this
JSON shape, in UTF-8::

    {"rates": [
        {"base": "USD", "quote": "AZR", "rate": "12.5", "observed_at": "2026-12-01T09:00:00Z"},
        ...
    ]}

- ``base`` and ``quote``: currency codes the portal knows (``CURRENCIES``); one unit of
  ``base`` buys ``rate`` units of ``quote``.
- ``rate``: a positive decimal, as a JSON string (preferred: no binary floating point anywhere)
  or a JSON number (read straight into ``Decimal``, never through ``float``). At most 20 digits
  before the point; more than 18 places after it are rounded half-even to 18, the scale rates
  are stored at. Zero, negatives, exponents, NaN, infinity, booleans and text are refused.
- ``observed_at``: ISO 8601 with a time zone (``Z`` or ``+hh:mm``): when the rate held. A
  time more than ``FUTURE_SKEW`` ahead of our clock is refused.
- At most ``MAX_ENTRIES`` entries; a body larger than ``MAX_RESPONSE_BYTES`` is refused without
  reading the rest; the whole exchange (connect, headers, body) must finish within ``timeout``.

The response is all or nothing: one malformed entry rejects the whole response, since a feed
that sends one negative rate cannot be trusted for the others. Entries for pairs the portal does
not offer are not an error here; the service skips them.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

from portal.errors import DomainError
from portal.money.currency import CURRENCIES

#: Places after the point rates are stored at (``RATE`` is NUMERIC(38, 18)).
RATE_SCALE = 18
RATE_QUANTUM = Decimal(1).scaleb(-RATE_SCALE)
#: Digits before the point a stored rate holds.
RATE_INTEGER_DIGITS = 20
#: A source's clock may run a little ahead of ours; more than this is a bad time.
FUTURE_SKEW = timedelta(minutes=5)
MAX_RESPONSE_BYTES = 256 * 1024
MAX_ENTRIES = 1000
_CHUNK = 16 * 1024
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d+)?")


class InvalidRate(DomainError):
    status_code = 422
    field = "rate"


class SourceError(DomainError):
    """The HTTP source could not be used: unreachable, slow, an error status or a bad body."""

    status_code = 502


@dataclass(frozen=True)
class RateQuote:
    """One rate as a source gave it, checked but not yet matched to a pair."""

    base: str
    quote: str
    rate: Decimal
    observed_at: datetime


# -- Parsers every source shares -----------------------------------------------------------------


def _at_scale(rate: Decimal) -> Decimal:
    """``rate`` at 18 places (half-even). The default Decimal context keeps 28 digits, fewer
    than a rate holds (20 + 18), so the quantize runs with room to spare."""
    with localcontext() as ctx:
        ctx.prec = RATE_INTEGER_DIGITS + RATE_SCALE + 4
        return rate.quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)



def parse_rate(raw: str | None) -> Decimal:
    """A rate typed by a person or read from a file: plain digits with an optional point, more
    than zero, at most 20 digits before the point and 18 after (refused, never rounded)."""
    text = str(raw if raw is not None else "").strip()
    if not text:
        raise InvalidRate("Enter the rate.")
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise InvalidRate("Enter the rate as a positive number with a point for decimals, like 12.5.")
    rate = Decimal(text)
    if rate == 0:
        raise InvalidRate("The rate must be more than zero.")
    whole, _, fraction = text.partition(".")
    if len(whole.lstrip("0")) > RATE_INTEGER_DIGITS:
        raise InvalidRate(f"The rate is too large: at most {RATE_INTEGER_DIGITS} digits before the point.")
    if len(fraction.rstrip("0")) > RATE_SCALE:
        raise InvalidRate(f"The rate has too many decimal places: at most {RATE_SCALE}.")
    return _at_scale(rate)


def parse_observed_at(raw: str | None, now: datetime) -> datetime:
    """An ISO 8601 time with a time zone, not in the future (beyond ``FUTURE_SKEW``)."""
    text = str(raw if raw is not None else "").strip()
    if not text:
        raise InvalidRate("Give the time the rate was observed.", field="observed_at")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRate(f"{text[:40]!r} is not a time: use ISO 8601, like 2026-12-01T09:00:00Z.",
                          field="observed_at") from None
    if value.tzinfo is None:
        raise InvalidRate("Give the time with its time zone, like 2026-12-01T09:00:00Z.", field="observed_at")
    if value > now + FUTURE_SKEW:
        raise InvalidRate("The observation time is in the future.", field="observed_at")
    return value


def parse_code(raw, label: str) -> str:
    code = str(raw if raw is not None else "").strip().upper()
    if code not in CURRENCIES:
        raise InvalidRate(f"{label}: unknown currency {str(raw)[:12]!r} (use one of {', '.join(CURRENCIES)}).",
                          field=label.lower())
    return code


# -- The HTTP JSON adapter -----------------------------------------------------------------------


def _feed_rate(value) -> Decimal:
    """A feed's rate (a JSON string or number already read as Decimal), rounded to 18 places."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise InvalidRate("the rate is not a number")
    text = str(value).strip()
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise InvalidRate(f"the rate {text[:30]!r} is not a positive decimal")
    try:
        rate = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise InvalidRate("the rate is not a number") from None
    if len(text.partition(".")[0].lstrip("0")) > RATE_INTEGER_DIGITS:
        raise InvalidRate("the rate is too large")
    rate = _at_scale(rate)
    if rate <= 0:
        raise InvalidRate("the rate is not more than zero")
    return rate


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number")


def parse_feed(body: bytes, now: datetime) -> list[RateQuote]:
    """The rates of a response body in the documented shape, or SourceError naming the first
    problem (with the entry's index)."""
    try:
        document = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"The rate source did not send valid JSON ({str(exc)[:80]}).") from None
    if not isinstance(document, dict) or not isinstance(document.get("rates"), list):
        raise SourceError('The rate source sent JSON without a "rates" list.')
    entries = document["rates"]
    if len(entries) > MAX_ENTRIES:
        raise SourceError(f"The rate source sent {len(entries)} rates; at most {MAX_ENTRIES} are accepted.")
    quotes = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise InvalidRate("not an object")
            base, quote = parse_code(entry.get("base"), "Base"), parse_code(entry.get("quote"), "Quote")
            if base == quote:
                raise InvalidRate("base and quote are the same currency")
            rate = _feed_rate(entry.get("rate"))
            if not isinstance(entry.get("observed_at"), str):
                raise InvalidRate("observed_at is missing or not a string")
            observed_at = parse_observed_at(entry["observed_at"], now)
        except InvalidRate as exc:
            raise SourceError(f"The rate source sent a bad rate (entry {index}): {exc.message}") from None
        quotes.append(RateQuote(base, quote, rate, observed_at))
    return quotes


def _read_capped(response, limit: int, deadline: float, timeout: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SourceError(f"The rate source's answer is larger than {limit} bytes; it was not read.")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise SourceError(f"The rate source did not answer within {timeout:g} seconds.")
        chunk = response.read1(min(_CHUNK, limit + 1 - size))  # one recv at most: the deadline holds
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise SourceError(f"The rate source's answer is larger than {limit} bytes; it was not read.")


def fetch_rates(url: str, timeout: float, *, now: datetime, max_bytes: int = MAX_RESPONSE_BYTES) -> list[RateQuote]:
    """GET ``url`` and return its rates, or raise SourceError with what went wrong.

    ``timeout`` bounds each socket operation and the whole exchange: a server that trickles
    its answer a byte at a time is cut off at the deadline as well."""
    if not url.lower().startswith(("http://", "https://")):
        raise SourceError("The rate source URL must start with http:// or https://.")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json",  # noqa: S310 - checked above
                                                   "User-Agent": "AzoraPortal-rates/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            body = _read_capped(response, max_bytes, deadline, timeout)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"The rate source answered HTTP {exc.code}.") from None
    except TimeoutError:
        raise SourceError(f"The rate source did not answer within {timeout:g} seconds.") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise SourceError(f"The rate source did not answer within {timeout:g} seconds.") from None
        raise SourceError(f"The rate source cannot be reached ({str(exc.reason)[:80]}).") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, bad URL, broken answer
        raise SourceError(f"The rate source cannot be reached ({str(exc)[:80]}).") from None
    return parse_feed(body, now)
