"""Card numbers and security codes: made, sealed, looked up and checked; never stored in clear.

- ``new_number``: 16 digits from the configured BIN (``CARD_BIN``), random digits from the
  operating system's generator, and the Luhn check digit (ISO/IEC 7812-1).
- ``seal`` / ``unseal``: AES-256-GCM under ``CARD_DATA_KEYS`` (``portal.security.crypto``, the
  card keys kept apart from every other key), bound to the card's id as associated data, so a
  ciphertext copied into another row does not open there.
- ``lookup_hash``: HMAC-SHA256 of the number under ``CARD_LOOKUP_KEY``, how the network finds a
  card. A plain hash of a 16-digit number with a known BIN could be reversed by trying the 10^9
  possible middles; a keyed one cannot without the key.
- ``security_code``: the CVV, derived as issuers' HSMs do, never stored: HMAC-SHA256 under
  ``CARD_VERIFICATION_KEY`` of the number and the expiry, reduced to three digits. It is
  computed again to check one (``code_matches``, in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask import current_app

from portal.security.crypto import CryptoError, FileCipher

PAN_LENGTH = 16
_DIGITS = re.compile(r"^[0-9]+$")
_cache: dict[str, FileCipher] = {}


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial`` + digit Luhn-valid."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:  # doubled: the check digit will sit to the right of it
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return bool(_DIGITS.match(number or "")) and len(number) >= 2 and \
        luhn_check_digit(number[:-1]) == number[-1]


def configured_bin() -> str:
    value = str(current_app.config.get("CARD_BIN") or "").strip()
    if not _DIGITS.match(value) or not 6 <= len(value) <= 8:
        raise CryptoError("CARD_BIN must be 6 to 8 digits.")
    return value


def new_number(bin_: str) -> str:
    middle = "".join(secrets.choice("0123456789") for _ in range(PAN_LENGTH - len(bin_) - 1))
    partial = bin_ + middle
    return partial + luhn_check_digit(partial)


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    return "azora"


def normalise(raw: str | None) -> str | None:
    """The digits of a number as a network or a person may write it (spaces, dashes), or None
    when it is not 16 Luhn-valid digits."""
    digits = re.sub(r"[\s-]", "", str(raw or ""))
    if len(digits) != PAN_LENGTH or not luhn_valid(digits):
        return None
    return digits


def cipher() -> FileCipher:
    spec = current_app.config.get("CARD_DATA_KEYS") or ""
    found = _cache.get(spec)
    if found is None:
        found = _cache[spec] = FileCipher(spec, "CARD_DATA_KEYS")
    return found


def seal(card_id, number: str) -> tuple[bytes, str]:
    """``(ciphertext, key id)`` of ``number`` for the card ``card_id``."""
    box = cipher()
    return box.encrypt(number.encode(), str(card_id).encode()), box.current_key_id


def unseal(card_id, blob: bytes) -> str:
    return cipher().decrypt(bytes(blob), str(card_id).encode()).decode()


def _key(name: str) -> bytes:
    value = current_app.config.get(name) or ""
    if len(value) < 16:
        raise CryptoError(f"{name} is not set (at least 16 characters).")
    return value.encode()


def lookup_hash(number: str) -> str:
    return hmac.new(_key("CARD_LOOKUP_KEY"), number.encode(), hashlib.sha256).hexdigest()


def security_code(number: str, exp_month: int, exp_year: int) -> str:
    """The card's three-digit security code, derived (never stored)."""
    message = f"cvv:{number}:{int(exp_month):02d}:{int(exp_year):04d}".encode()
    digest = hmac.new(_key("CARD_VERIFICATION_KEY"), message, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1000:03d}"


def code_matches(number: str, exp_month: int, exp_year: int, given: str | None) -> bool:
    return hmac.compare_digest(security_code(number, exp_month, exp_year), str(given or ""))
