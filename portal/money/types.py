"""Column types the money tables share."""

from __future__ import annotations

from sqlalchemy import Numeric, String

from portal.money.currency import CURRENCIES, MAX_INTEGER_DIGITS

#: Every amount and balance: 20 digits before the point and 18 after (ETH's scale), so any
#: currency's amount fits exactly. Values are quantized to their currency's scale in Python.
AMOUNT = Numeric(MAX_INTEGER_DIGITS + 18, 18)
#: An exchange rate: how many units of the quote currency one unit of the base buys.
RATE = Numeric(38, 18)
CURRENCY_CODE = String(8)


def currency_check(column: str = "currency") -> str:
    """SQL for a CHECK that ``column`` is one of the known currencies."""
    codes = ", ".join(f"'{code}'" for code in CURRENCIES)
    return f'"{column}" IN ({codes})'
