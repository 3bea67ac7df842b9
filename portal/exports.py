"""Helpers every file export shares (CSV downloads from the gradebook, the wallet history)."""

from __future__ import annotations

#: What a spreadsheet reads as the start of a formula (or of a cell it would move into one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading quote."""
    cell = "" if value is None else str(value)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell
