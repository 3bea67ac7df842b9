"""Currencies and amounts: the one table of the currencies the portal knows and their scales,
and the strict parsing every money form goes through.

Amounts are ``Decimal`` end to end and ``NUMERIC`` in the database, never float. Each currency
has a scale (the number of decimal places it is counted in); an amount is always quantized to
its currency's scale, and input with more places than that is refused rather than rounded, so
nobody sends an amount they did not type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from portal.errors import DomainError


@dataclass(frozen=True)
class Currency:
    code: str
    name: str
    #: Decimal places the currency is counted in.
    scale: int
    symbol: str
    #: Decimal places lists and cards show (see ``format_amount``).
    display_places: int = 2

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.scale)


#: The currencies, in one place (scales as the design sets them; display places as
#: ``format_amount`` explains).
CURRENCIES: dict[str, Currency] = {c.code: c for c in (
    Currency("AZR", "Azora token", 8, "AZR", display_places=2),
    Currency("USD", "US dollar", 2, "$", display_places=2),
    Currency("BTC", "Bitcoin", 8, "₿", display_places=8),
    Currency("ETH", "Ether", 18, "Ξ", display_places=6),
)}

#: Digits grouped by thousands with commas, then an optional fraction.
_GROUPED = re.compile(r"\d{1,3}(,\d{3})+(\.\d*)?")

#: Digits before the decimal point the database columns hold (NUMERIC(38, 18)).
MAX_INTEGER_DIGITS = 20
#: Digits of the arithmetic amounts are checked with: room for any NUMERIC(38, 18) value.
_PRECISION = 100


class UnknownCurrency(DomainError):
    status_code = 422


class InvalidAmount(DomainError):
    status_code = 422


def currency(code: str | None) -> Currency:
    """The currency for ``code`` (case-insensitive), or UnknownCurrency."""
    found = CURRENCIES.get((code or "").strip().upper())
    if found is None:
        raise UnknownCurrency(f"Unknown currency {code!r}: use one of {', '.join(CURRENCIES)}.", field="currency")
    return found


def quantize(amount: Decimal, code: str) -> Decimal:
    """``amount`` at its currency's scale; refuses amounts that would lose digits."""
    unit = currency(code)
    with localcontext(prec=_PRECISION):  # 38 digits exceed the default context's 28
        quantized = amount.quantize(unit.quantum)
    if quantized != amount:
        raise InvalidAmount(f"{unit.code} amounts have at most {unit.scale} decimal places.", field="amount")
    return quantized


def parse_amount(raw: str | Decimal | None, code: str, *, allow_zero: bool = False) -> Decimal:
    """A positive amount typed by a person, checked against the currency.

    Accepts ASCII digits with one optional decimal point (and spaces or commas as thousands
    separators); refuses signs, exponents, NaN and infinity, zero (unless ``allow_zero``), more
    decimal places than the currency has, and more digits than the database holds.
    """
    unit = currency(code)
    text = str(raw if raw is not None else "").strip().replace(" ", "").replace("\u00a0", "")
    if "," in text:
        # Commas only as thousands separators (1,234.50): "1,5" is refused, never read as 15.
        if not _GROUPED.fullmatch(text):
            raise InvalidAmount("Use a point for decimals and commas only between thousands, like 1,234.50.",
                                field="amount")
        text = text.replace(",", "")
    if not text:
        raise InvalidAmount("Enter an amount.", field="amount")
    if text.startswith("-"):
        raise InvalidAmount("The amount must be positive.", field="amount")
    if not all(ch in "0123456789." for ch in text) or text.count(".") > 1 or text == ".":
        raise InvalidAmount("Enter the amount as a number, like 25 or 12.50.", field="amount")
    amount = Decimal(text)  # only ASCII digits and one point remain: always a valid Decimal
    if amount == 0 and not allow_zero:
        raise InvalidAmount("The amount must be more than zero.", field="amount")
    integer_digits = len(text.split(".")[0].lstrip("0"))
    if integer_digits > MAX_INTEGER_DIGITS:
        raise InvalidAmount("That amount is too large.", field="amount")
    return quantize(amount, unit.code)


def format_amount(amount: Decimal, code: str, *, sign: bool = False, exact: bool = False) -> str:
    """An amount for people, the one way every page and message writes it.

    Two forms, as a bank's app has them:

    - **Display** (the default; lists, cards, tables, balances, messages): always the currency's
      fixed display places, so figures in a column line up and two amounts side by side never
      differ in form (``257.67 AZR`` beside ``0.00 AZR``, not ``257.66915`` beside ``0.00``).
      USD and AZR show 2 places, as money people spend is shown in cents; BTC shows 8 (the
      satoshi, the smallest unit wallets show); ETH shows 6, the places wallets commonly show
      (its 18 are wei, far below any value a person reads). Rounded half up; an amount that is
      not zero but would round to zero is written ``<0.01 AZR`` rather than a false zero.
    - **Exact** (``exact=True``; where the amount itself matters: the confirmation of a transfer
      or withdrawal, the receipt, a ledger line's detail): every place the amount has, at
      least the display places (``257.66915 AZR``), never rounded. CSV exports write the raw
      number, not this text.

    Both group thousands with commas and end with the currency's code. ``sign`` writes ``+``
    or a real minus sign for money in and out."""
    unit = currency(code)
    with localcontext(prec=_PRECISION):
        value = Decimal(amount).quantize(unit.quantum)
        if exact:
            exponent = value.normalize().as_tuple().exponent
            significant = max(-exponent, 0) if isinstance(exponent, int) else 0
            places = min(unit.scale, max(unit.display_places, significant))
            shown = value
        else:
            places = unit.display_places
            shown = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    prefix = "\u2212" if value < 0 else "+" if sign and value > 0 else ""
    if shown == 0 and value != 0:
        # Too small to show at the display places: say so instead of showing zero.
        return f"{prefix}<{Decimal(1).scaleb(-places):.{places}f} {unit.code}"
    return f"{prefix}{shown.copy_abs():,.{places}f} {unit.code}"
