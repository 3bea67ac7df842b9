"""Identity-verification levels: what each one asks for and what it unlocks, in one table.

A student starts at level 0 and climbs one level at a time; each level needs the previous one
approved. The money services ask this module, never the verification rows directly:

- transfers: the configured ``TRANSFER_DAILY_LIMITS`` (per currency) times the level's
  ``transfer_multiplier``, quantized to the currency's scale;
- withdrawals: from ``WITHDRAWAL_LEVEL`` on.

An expired identity document (level 2) drops the student's effective level to 1 until a renewed
document is approved (``portal.compliance.kyc.queries.effective_level``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from portal.errors import Forbidden

#: Where a student raises their level.
VERIFICATION_PATH = "/wallet/verification"


@dataclass(frozen=True)
class Level:
    number: int
    name: str
    #: What the student submits to reach this level (empty for level 0).
    requires: tuple[str, ...]
    #: What the level allows, as shown to the student.
    unlocks: tuple[str, ...]
    #: The share of the configured transfer daily limit the level may send in 24 hours.
    transfer_multiplier: Decimal
    withdrawals: bool


LEVELS: tuple[Level, ...] = (
    Level(0, "Not verified", (),
          ("Receive rewards and transfers", "Convert between currencies",
           "Send up to 2% of the standard daily limit"),
          Decimal("0.02"), False),
    Level(1, "Basic", ("Legal name", "Date of birth", "Country", "Home address"),
          ("Send up to the standard daily limit",),
          Decimal("1"), False),
    Level(2, "Identity document", ("Passport, national ID card or driving licence", "Photos of the document"),
          ("Withdraw to a bank, mobile money or crypto address", "Send up to the standard daily limit"),
          Decimal("1"), True),
    Level(3, "Full", ("Proof of address (a recent bill or bank statement)", "A selfie"),
          ("Send up to 5 times the standard daily limit", "Everything level 2 allows"),
          Decimal("5"), True),
)
MAX_LEVEL = LEVELS[-1].number
#: The first level that may take money out of the portal.
WITHDRAWAL_LEVEL = next(level.number for level in LEVELS if level.withdrawals)
#: A level-2 document this close to its expiry may be renewed already.
RENEWAL_WINDOW_DAYS = 60


def level(number: int) -> Level:
    return LEVELS[max(0, min(number, MAX_LEVEL))]


def transfer_limit(configured: Decimal | None, level_number: int, scale: int) -> Decimal | None:
    """The 24-hour transfer limit of a student at ``level_number`` for a currency whose
    configured limit is ``configured`` (None: no limit), rounded down to the currency's scale."""
    if configured is None:
        return None
    quantum = Decimal(1).scaleb(-scale)
    return (configured * level(level_number).transfer_multiplier).quantize(quantum, rounding=ROUND_DOWN)


def transfer_limits(configured: dict, level_number: int) -> list[tuple[str, Decimal]]:
    """``[(code, limit)]`` for every currency with a configured limit (``TRANSFER_DAILY_LIMITS``),
    at ``level_number``, for pages that show the figures."""
    from portal.money.currency import currency

    limits = []
    for code, raw in configured.items():
        if raw in (None, ""):
            continue
        limits.append((code, transfer_limit(Decimal(raw), level_number, currency(code).scale)))
    return limits


class VerificationRequired(Forbidden):
    """An action the student's verification level does not allow yet. ``link`` is where they
    raise it."""

    link = VERIFICATION_PATH
    field = None


def check_may_withdraw(level_number: int) -> None:
    if level_number < WITHDRAWAL_LEVEL:
        needed = level(WITHDRAWAL_LEVEL)
        raise VerificationRequired(
            f"Withdrawals need identity verification level {needed.number} ({needed.name.lower()}); "
            f"your level is {level_number}. Verify your identity at {VERIFICATION_PATH} first.")
