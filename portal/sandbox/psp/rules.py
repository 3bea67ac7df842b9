"""The sandbox provider's rules: currencies and their scales, fees, test cards, phone numbers.

All amounts here are integers in the currency's minor units (cents for USD).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

#: ISO 4217 minor units of the currencies the sandbox takes.
CURRENCY_SCALES = {"USD": 2, "EUR": 2, "GBP": 2, "KES": 2, "NGN": 2, "ZAR": 2, "GHS": 2, "UGX": 0, "JPY": 0}

#: The largest amount one payment may carry, in minor units.
MAX_AMOUNT = 99_999_999

#: Card fee: 2.9% plus 0.30 of the currency's major unit; mobile money: 1.5%.
CARD_FEE_RATE = Decimal("0.029")
CARD_FEE_FIXED = Decimal("0.30")
MOBILE_MONEY_FEE_RATE = Decimal("0.015")

MOBILE_NETWORKS = {"mpesa": "M-Pesa", "mtn": "MTN Mobile Money", "airtel": "Airtel Money"}


def fee(amount: int, currency: str, method_kind: str) -> int:
    """The provider's fee on ``amount`` minor units, rounded half up to a minor unit."""
    if method_kind == "card":
        exact = Decimal(amount) * CARD_FEE_RATE + CARD_FEE_FIXED.scaleb(CURRENCY_SCALES[currency])
    else:
        exact = Decimal(amount) * MOBILE_MONEY_FEE_RATE
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_minor(amount: int, currency: str) -> str:
    scale = CURRENCY_SCALES[currency]
    return f"{Decimal(amount).scaleb(-scale):,.{scale}f} {currency}"


@dataclass(frozen=True)
class Scenario:
    """What a test card does: ``decline`` is a failure code, or None; ``challenge`` asks for the
    3-D Secure-like step first; ``off_session_decline`` declines only later charges of the saved
    card (the portal's path for a saved card that stops working)."""

    name: str
    decline: str | None = None
    challenge: bool = False
    off_session_decline: str | None = None


SUCCESS = Scenario("success")
#: Test card numbers and what they do; any other valid number succeeds.
TEST_CARDS = {
    "4242424242424242": SUCCESS,
    "4000000000009995": Scenario("insufficient_funds", decline="insufficient_funds"),
    "4000000000009979": Scenario("stolen_card", decline="stolen_card"),
    "4000000000000002": Scenario("card_declined", decline="card_declined"),
    "4000002760003184": Scenario("challenge", challenge=True),
    "4000000000000341": Scenario("decline_off_session", off_session_decline="card_declined"),
}
SCENARIOS = {s.name: s for s in TEST_CARDS.values()}

DECLINE_MESSAGES = {
    "insufficient_funds": "The card has insufficient funds. Try another card.",
    "stolen_card": "The card was declined. Try another card.",
    "card_declined": "The card was declined. Try another card.",
    "authentication_failed": "The card's verification step failed. Try again or use another card.",
}


def luhn_valid(number: str) -> bool:
    if not number.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    return "unknown"


@dataclass(frozen=True)
class Card:
    """A checked card: what the sandbox keeps of it (never the number or the CVC)."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    scenario: Scenario


def check_card(number: str, expiry: str, cvc: str, name: str, today: date) -> tuple[Card | None, dict[str, str]]:
    """The card typed on the payment page, or the message for each field that is wrong."""
    errors: dict[str, str] = {}
    digits = re.sub(r"[\s-]", "", number or "")
    if not digits:
        errors["number"] = "Enter the card number."
    elif not digits.isdigit() or not 12 <= len(digits) <= 19:
        errors["number"] = "A card number is 12 to 19 digits."
    elif not luhn_valid(digits):
        errors["number"] = "This card number is not valid: check the digits."
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2})\s*", expiry or "")
    month = year = 0
    if not match:
        errors["expiry"] = "Enter the expiry date as MM/YY, like 04/29."
    else:
        month, year = int(match[1]), 2000 + int(match[2])
        if not 1 <= month <= 12:
            errors["expiry"] = "The expiry month is between 01 and 12."
        elif (year, month) < (today.year, today.month):
            errors["expiry"] = "This card has expired."
    card_brand = brand(digits) if "number" not in errors else ""
    cvc_length = 4 if card_brand == "amex" else 3
    if not re.fullmatch(rf"\d{{{cvc_length}}}", (cvc or "").strip()):
        errors["cvc"] = f"The security code is the {cvc_length} digits on the card."
    if not (name or "").strip():
        errors["name"] = "Enter the name on the card."
    elif len(name) > 100:
        errors["name"] = "The name is at most 100 characters."
    if errors:
        return None, errors
    return Card(card_brand, digits[-4:], month, year, TEST_CARDS.get(digits, SUCCESS)), {}


def check_phone(phone: str, network: str) -> dict[str, str]:
    errors = {}
    if not re.fullmatch(r"\+[1-9]\d{7,14}", (phone or "").replace(" ", "")):
        errors["phone"] = "Enter the phone number in international form, like +254712345678."
    if network not in MOBILE_NETWORKS:
        errors["network"] = "Choose the mobile money network."
    return errors


def mobile_money_fails(phone: str) -> bool:
    """A phone number ending in 0002 fails for insufficient funds (asynchronously)."""
    return phone.replace(" ", "").endswith("0002")


def refund_fails(amount: int) -> bool:
    """A refund whose amount ends in 13 minor units (0.13, 5.13 USD) fails when it settles."""
    return amount % 100 == 13
