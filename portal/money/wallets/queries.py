"""Reads for the wallet pages: balances, recent activity, the history with its filters and
keyset pagination, and the CSV export. Nothing here writes: a user with no wallet in a currency
sees zero, and the wallet is only made when money first arrives.

The history is read from the user's side. A user's rows are found through two indexes,
``ix_transactions_debit_history`` (money out) and ``ix_transactions_credit_history`` (money in),
each ``(userId, createdAt DESC, id DESC)``. One statement takes the next ``limit + 1`` rows from
each index after the cursor, merges the two and keeps the first ``limit + 1``, so a page costs
the same on the first page and the thousandth.

What a history shows: every movement (``single`` and ``post`` rows), and holds (``pending``
rows) while they are open ("held") or after they were released ("released"). A captured hold is
shown by its ``post`` row, and ``void`` rows (releases) by the hold they ended.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import and_, or_, select, tuple_, union_all
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.db import db
from portal.exports import csv_safe
from portal.money.currency import CURRENCIES, currency, format_amount
from portal.money.wallets.models import Phase, Transaction, TransactionType, Wallet, WalletStatus
from portal.pagination import decode_cursor, encode_cursor

#: Digits of the arithmetic on amounts: NUMERIC(38, 18) values need more than the default 28.
PRECISION = 100
PAGE_SIZE = 25
RECENT = 8
EXPORT_BATCH = 500

#: Who is on the other side of a movement with a system wallet, by type.
SYSTEM_SIDE = {
    TransactionType.DEPOSIT: "Deposit",
    TransactionType.FEE: "Azora fees",
    TransactionType.REWARD: "Azora rewards",
    TransactionType.WITHDRAWAL: "Withdrawal",
    TransactionType.CONVERSION: "Currency exchange",
    TransactionType.REVERSAL: "Correction",
}


def show_amount(amount: Decimal, code: str, *, sign: bool = False, exact: bool = False) -> str:
    """An amount for people (``portal.money.currency.format_amount``): at the currency's display
    places, or ``exact``; signed on request."""
    return format_amount(amount, code, sign=sign, exact=exact)


# -- Balances ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Balance:
    code: str
    name: str
    balance: Decimal
    locked: Decimal
    status: WalletStatus | None  #: None: no wallet yet

    @property
    def available(self) -> Decimal:
        with localcontext(prec=PRECISION):
            return self.balance - self.locked

    @property
    def frozen(self) -> bool:
        return self.status is not None and self.status != WalletStatus.ACTIVE

    @property
    def balance_text(self) -> str:
        return show_amount(self.balance, self.code)

    @property
    def locked_text(self) -> str:
        return show_amount(self.locked, self.code)

    @property
    def available_text(self) -> str:
        return show_amount(self.available, self.code)


def overview(user: User) -> list[Balance]:
    """One row per currency, in ``CURRENCIES`` order; a currency without a wallet shows zero."""
    wallets = {w.currency: w for w in db.session.scalars(select(Wallet).where(Wallet.user_id == user.id))}
    rows = []
    for code, unit in CURRENCIES.items():
        wallet = wallets.get(code)
        rows.append(Balance(code, unit.name, wallet.balance if wallet else Decimal(0),
                            wallet.locked_balance if wallet else Decimal(0), wallet.status if wallet else None))
    return rows


# -- History -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilters:
    type: TransactionType | None = None
    currency: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def query_args(self) -> dict[str, str]:
        """The filters as the history form's GET parameters (for links that keep them)."""
        args = {"type": self.type.value if self.type else "", "currency": self.currency or "",
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in args.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.query_args())


def parse_filters(args: Mapping[str, str]) -> tuple[HistoryFilters, dict[str, str]]:
    """The history filters from GET parameters ``type``, ``currency``, ``from``, ``to``.
    Returns the filters that are valid and a message per field that is not (that filter is then
    left out, never guessed)."""
    errors: dict[str, str] = {}
    kind = None
    raw_type = (args.get("type") or "").strip().lower()
    if raw_type:
        try:
            kind = TransactionType(raw_type)
        except ValueError:
            errors["type"] = "Choose a type from the list."
    code = None
    raw_code = (args.get("currency") or "").strip().upper()
    if raw_code:
        if raw_code in CURRENCIES:
            code = raw_code
        else:
            errors["currency"] = f"Choose one of {', '.join(CURRENCIES)}."
    dates = {}
    for name, label in (("from", "From"), ("to", "To")):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        try:
            if len(raw) != 10:
                raise ValueError(raw)
            dates[name] = date.fromisoformat(raw)
        except ValueError:
            errors[name] = f"{label}: enter a date like 2025-01-31."
    if "from" in dates and "to" in dates and dates["from"] > dates["to"]:
        errors["to"] = "To: the end date is before the start date."
        del dates["to"]
    return HistoryFilters(kind, code, dates.get("from"), dates.get("to")), errors


@dataclass(frozen=True)
class ActivityRow:
    """One row of a user's history, from their side."""

    id: uuid.UUID
    created_at: datetime
    type: TransactionType
    currency: str
    #: ``in`` or ``out``
    direction: str
    amount: Decimal
    counterparty: str
    description: str
    note: str
    #: ``completed``, ``held`` (an open hold) or ``released`` (a hold that ended unused)
    status: str

    @property
    def signed(self) -> Decimal:
        return self.amount if self.direction == "in" else self.amount.copy_negate()

    @property
    def amount_text(self) -> str:
        return show_amount(self.signed, self.currency, sign=True)

    @property
    def amount_exact(self) -> str:
        """Every place of the amount, for the line's detail (the list shows it rounded)."""
        return show_amount(self.signed, self.currency, sign=True, exact=True)

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at, self.id)


@dataclass
class HistoryPage:
    items: list[ActivityRow]
    next_cursor: str | None
    filters: HistoryFilters = field(default_factory=HistoryFilters)

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


#: Made once: an alias adapts each column the first time it is used and keeps the result, so
#: building the history statement on every request stays cheap (new aliases per call cost about
#: 15 ms of Python per page).
_T = aliased(Transaction, name="t")
_RESOLVED = aliased(Transaction, name="resolved")


def _side(user_id: uuid.UUID, out: bool, filters: HistoryFilters, position, limit: int):
    t, resolved = _T, _RESOLVED
    stmt = (select(t.id.label("id"), t.created_at.label("created_at"), t.type.label("type"),
                   t.phase.label("phase"), t.amount.label("amount"), t.currency.label("currency"),
                   t.debit_user_id.label("debit_user_id"), t.description.label("description"),
                   t.details.label("details"), resolved.phase.label("resolution"))
            .outerjoin(resolved, resolved.pending_id == t.id))
    if out:
        stmt = stmt.where(t.debit_user_id == user_id)
    else:
        stmt = stmt.where(t.credit_user_id == user_id, t.debit_user_id.is_distinct_from(user_id))
    stmt = stmt.where(or_(t.phase.in_((Phase.SINGLE, Phase.POST)),
                          and_(t.phase == Phase.PENDING, or_(resolved.id.is_(None), resolved.phase == Phase.VOID))))
    if filters.type is not None:
        stmt = stmt.where(t.type == filters.type)
    if filters.currency:
        stmt = stmt.where(t.currency == filters.currency)
    if filters.date_from:
        stmt = stmt.where(t.created_at >= datetime.combine(filters.date_from, time.min, UTC))
    if filters.date_to:
        stmt = stmt.where(t.created_at < datetime.combine(filters.date_to + timedelta(days=1), time.min, UTC))
    if position is not None:
        stmt = stmt.where(tuple_(t.created_at, t.id) < tuple_(*position))
    return stmt.order_by(t.created_at.desc(), t.id.desc()).limit(limit)


def _row(user_id: uuid.UUID, raw) -> ActivityRow:
    kind = TransactionType(raw.type)
    details = raw.details or {}
    direction = "out" if raw.debit_user_id == user_id else "in"
    name = details.get("to_name" if direction == "out" else "from_name") or details.get("counterparty")
    counterparty = name or SYSTEM_SIDE.get(kind, kind.label)
    if kind == TransactionType.TRANSFER and name:
        description = f"Sent to {name}" if direction == "out" else f"Received from {name}"
    elif kind == TransactionType.FEE and details.get("withdrawal"):
        # Once paid out, both legs of a withdrawal carry the payout's description: the fee leg is
        # named as the withdrawal's fee, not as a second withdrawal.
        where = details.get("destination")
        description = f"Fee for the withdrawal to {where}" if where else "Withdrawal fee"
    else:
        description = raw.description or kind.label
    status = "completed"
    if raw.phase == Phase.PENDING:
        status = "released" if raw.resolution == Phase.VOID else "held"
    return ActivityRow(raw.id, raw.created_at, kind, raw.currency, direction, raw.amount, counterparty,
                       description, str(details.get("note") or ""), status)


def history(user: User, filters: HistoryFilters | None = None, after: str | None = None,
            limit: int = PAGE_SIZE) -> HistoryPage:
    """One page of the user's history, newest first, after the cursor ``after``; one statement."""
    filters = filters or HistoryFilters()
    position = decode_cursor(after)
    both = union_all(_side(user.id, True, filters, position, limit + 1),
                     _side(user.id, False, filters, position, limit + 1)).subquery("history")
    stmt = select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit + 1)
    rows = [_row(user.id, raw) for raw in db.session.execute(stmt)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = rows[-1].cursor
    return HistoryPage(rows, next_cursor, filters)


def recent_activity(user: User, limit: int = RECENT) -> list[ActivityRow]:
    return history(user, None, None, limit).items


# -- CSV -----------------------------------------------------------------------------------------------

CSV_HEADER = ("Date (UTC)", "Type", "Direction", "Amount", "Currency", "Counterparty", "Description", "Note",
              "Status", "Transaction id")
AMOUNT_COLUMN = CSV_HEADER.index("Amount")


def export_csv(user: User, filters: HistoryFilters | None = None, batch: int | None = None) -> Iterator[str]:
    """The user's whole history (with ``filters``) as CSV lines, newest first, streamed in keyset
    batches of ``batch`` rows: memory stays the same however long the history. Text cells that a
    spreadsheet would run as a formula are neutralised. Amounts are exact, signed from the user's
    side, at the currency's scale."""
    filters = filters or HistoryFilters()
    batch = batch or EXPORT_BATCH
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def emit(cells, exact_amount: str | None = None) -> str:
        # The amount is a number the export made itself, so its minus sign stays; every other
        # cell may hold text a person typed (a note, a name) and is neutralised.
        safe = [csv_safe(cell) for cell in cells]
        if exact_amount is not None:
            safe[AMOUNT_COLUMN] = exact_amount
        writer.writerow(safe)
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    yield emit(CSV_HEADER)
    cursor = None
    while True:
        page = history(user, filters, cursor, batch)
        for row in page.items:
            with localcontext(prec=PRECISION):
                exact = row.signed.quantize(currency(row.currency).quantum)
            yield emit([row.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), row.type.label,
                        row.direction, "", row.currency, row.counterparty, row.description, row.note,
                        row.status, str(row.id)], f"{exact:f}")
        if not page.has_next:
            return
        cursor = page.next_cursor
