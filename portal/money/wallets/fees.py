"""Fee rules (``transaction_fees``): what a movement costs, shown before the user confirms and
posted as its own leg to the fee wallet."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

from sqlalchemy import literal_column, select

from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.currency import currency, parse_amount
from portal.money.wallets.models import TransactionFee, TransactionType

#: Movement types a fee rule can apply to (fees are not charged on fees, rewards or reversals).
CHARGEABLE = (TransactionType.TRANSFER, TransactionType.CONVERSION, TransactionType.WITHDRAWAL)
MAX_PERCENT = Decimal(50)
_PERCENT_QUANTUM = Decimal("0.0001")
#: ASCII digits with at most one decimal point.
_PERCENT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
#: Digits of the arithmetic a fee is computed with (exact for any two NUMERIC(38, 18) values).
_PRECISION = 100


class InvalidFeeRule(DomainError):
    status_code = 422


def rule_for(kind: TransactionType, code: str) -> TransactionFee | None:
    return db.session.scalar(select(TransactionFee).where(TransactionFee.transaction_type == kind,
                                                          TransactionFee.currency == currency(code).code,
                                                          TransactionFee.active.is_(True)))


@dataclass(frozen=True)
class Terms:
    """What ``compute`` reads of a rule, kept in process by ``rule_at``."""

    fixed_amount: Decimal
    percent: Decimal
    minimum: Decimal
    maximum: Decimal | None


#: The rules read last, by (type, currency): (the rule's version, its terms or None for no rule).
_known: dict[tuple[TransactionType, str], tuple[str | None, Terms | None]] = {}


def version_of(kind: TransactionType, code: str):
    """A scalar subquery for a statement the caller sends anyway (the transfer's recipient
    lookup): a digest of the active rule's whole row (so any change to it, by any process,
    changes it), NULL when there is none. ``rule_at`` takes its value."""
    return (select(literal_column("md5(transaction_fees::text)"))
            .where(TransactionFee.transaction_type == kind, TransactionFee.currency == currency(code).code,
                   TransactionFee.active.is_(True))
            .scalar_subquery())


def rule_at(kind: TransactionType, code: str, version: str | None) -> Terms | None:
    """The terms of the rule whose version (``version_of``) is ``version``: from this process's
    copy when it is of that version, else read again (one statement) and kept."""
    code = currency(code).code
    known = _known.get((kind, code))
    if known is not None and known[0] == version:
        return known[1]
    # Columns, not the entity: a rule object this session holds would not be refreshed.
    row = db.session.execute(select(TransactionFee.fixed_amount, TransactionFee.percent, TransactionFee.minimum,
                                    TransactionFee.maximum)
                             .where(TransactionFee.transaction_type == kind, TransactionFee.currency == code,
                                    TransactionFee.active.is_(True))).first()
    terms = None if row is None else Terms(*row)
    # Kept under the version asked for: if the rule changed between the two reads, the next
    # transfer sees another version and reads it again.
    _known[(kind, code)] = (version, terms)
    return terms


def compute(rule: TransactionFee | Terms | None, amount: Decimal, code: str) -> Decimal:
    """``fixed + amount * percent / 100``, at least ``minimum``, at most ``maximum``, rounded up
    to the currency's scale (a fee never rounds in the payer's favour below the rule)."""
    unit = currency(code)
    # Exact arithmetic: amounts and rates are NUMERIC(38, 18), so a product has up to 76 digits,
    # beyond the default context's 28 (which would round before the rounding up, or fail).
    with localcontext(prec=_PRECISION):
        if rule is None:
            return Decimal(0).quantize(unit.quantum)
        fee = rule.fixed_amount + amount * rule.percent / 100
        fee = max(fee, rule.minimum)
        if rule.maximum is not None:
            fee = min(fee, rule.maximum)
        return fee.quantize(unit.quantum, rounding=ROUND_CEILING)


def fee_for(kind: TransactionType, amount: Decimal, code: str) -> Decimal:
    return compute(rule_for(kind, code), amount, code)


def rules() -> list[TransactionFee]:
    return list(db.session.scalars(select(TransactionFee).order_by(TransactionFee.transaction_type,
                                                                   TransactionFee.currency)))


def _parse(raw, code: str, label: str, *, optional: bool = False) -> Decimal | None:
    text = str(raw if raw is not None else "").strip()
    if not text:
        if optional:
            return None
        return Decimal(0)
    field = label.lower().replace(" ", "_")
    if text.startswith("-"):
        raise InvalidFeeRule(f"{label}: must not be negative.", field=field)
    try:
        return parse_amount(text, code, allow_zero=True)
    except DomainError as exc:
        raise InvalidFeeRule(f"{label}: {exc.message}", field=field) from exc


def _parse_percent(raw) -> Decimal:
    """A percent typed by an admin: a plain number from 0 to ``MAX_PERCENT`` with at most four
    decimal places (its own rules: a percent is not an amount of any currency)."""
    text = str(raw if raw is not None else "").strip() or "0"
    if text.startswith("-"):
        raise InvalidFeeRule("Percent: must not be negative.", field="percent")
    if not _PERCENT.fullmatch(text):
        raise InvalidFeeRule("Percent: enter a number, like 1.5.", field="percent")
    value = Decimal(text)
    if value > MAX_PERCENT:
        raise InvalidFeeRule(f"Percent: at most {MAX_PERCENT}.", field="percent")
    if value != value.quantize(_PERCENT_QUANTUM):
        raise InvalidFeeRule("Percent: at most four decimal places.", field="percent")
    return value


def save_rule(actor_id: uuid.UUID, kind: str, code: str, *, fixed, percent, minimum, maximum,
              active: bool = True) -> TransactionFee:
    """Create or replace the rule for ``kind`` and ``code`` (admins; the view checks the
    permission). Amounts are typed in the currency; the percent has up to four decimals."""
    try:
        kind = TransactionType(kind)
    except ValueError:
        raise InvalidFeeRule("Choose a transaction type.", field="transaction_type") from None
    if kind not in CHARGEABLE:
        raise InvalidFeeRule("Fees apply to transfers, conversions and withdrawals only.", field="transaction_type")
    code = currency(code).code
    fixed_amount = _parse(fixed, code, "Fixed amount")
    minimum_amount = _parse(minimum, code, "Minimum")
    maximum_amount = _parse(maximum, code, "Maximum", optional=True)
    percent_value = _parse_percent(percent)
    if maximum_amount is not None and maximum_amount < minimum_amount:
        raise InvalidFeeRule("Maximum: must not be below the minimum.", field="maximum")
    rule = db.session.scalar(select(TransactionFee).where(TransactionFee.transaction_type == kind,
                                                          TransactionFee.currency == code).with_for_update())
    if rule is None:
        rule = TransactionFee(transaction_type=kind, currency=code)
        db.session.add(rule)
    rule.fixed_amount, rule.percent, rule.minimum, rule.maximum = (fixed_amount, percent_value, minimum_amount,
                                                                   maximum_amount)
    rule.active = active
    rule.updated_by_id = actor_id
    db.session.flush()
    return rule


def delete_rule(rule_id: uuid.UUID) -> None:
    rule = db.session.get(TransactionFee, rule_id)
    if rule is None:
        raise NotFound("No such fee rule.")
    db.session.delete(rule)
    db.session.flush()
