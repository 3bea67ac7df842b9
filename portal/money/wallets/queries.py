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
import functools
import io
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import (
    Select,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)

from portal.accounts.models import User
from portal.db import db
from portal.exports import csv_safe
from portal.money.currency import CURRENCIES, format_amount
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
    TransactionType.TOP_UP: "Top-up",
    TransactionType.PURCHASE: "Course purchase",
    TransactionType.REFUND: "Refund",
}


def show_amount(amount: Decimal, code: str, *, sign: bool = False, exact: bool = False) -> str:
    """An amount for people (``portal.money.currency.format_amount``): at the currency's display
    places, or ``exact``; signed on request."""
    return format_amount(amount, code, sign=sign, exact=exact)


def beside_first_row(rows: Select, extra: Select) -> Select:
    """``rows`` (a column ``position`` numbers them from 1) with the one row of ``extra``
    beside the first of them: a full join on ``position = 1``, so a page and its facts (totals,
    balances) are one statement, the facts are read once rather than on every row, and come
    alone when ``rows`` is empty. Ordered by ``position``."""
    rows_sq, extra_sq = rows.subquery("page"), extra.add_columns(literal_column("1").label("first")).subquery("extra")
    return (select(rows_sq, extra_sq)
            .select_from(rows_sq.join(extra_sq, rows_sq.c.position == extra_sq.c.first, full=True))
            .order_by(rows_sq.c.position))


# -- Balances ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Balance:
    code: str
    name: str
    balance: Decimal
    locked: Decimal
    status: WalletStatus | None  #: None: no wallet yet

    @functools.cached_property
    def available(self) -> Decimal:
        with localcontext(prec=PRECISION):
            return self.balance - self.locked

    @property
    def frozen(self) -> bool:
        return self.status is not None and self.status != WalletStatus.ACTIVE

    # The texts are worked out once per balance: a page shows the available amount twice.
    @functools.cached_property
    def balance_text(self) -> str:
        return show_amount(self.balance, self.code)

    @functools.cached_property
    def locked_text(self) -> str:
        return show_amount(self.locked, self.code)

    @functools.cached_property
    def available_text(self) -> str:
        return show_amount(self.available, self.code)


_TRANSACTIONS = Transaction.__table__
_WALLETS = Wallet.__table__


@functools.cache
def _balances_statement() -> Select:
    """The user's wallets, the four columns a balance shows (built once; parameter ``user_id``)."""
    w = _WALLETS
    return select(w.c.currency, w.c.balance, w.c.locked_balance, w.c.status).where(w.c.user_id == bindparam("user_id"))


def _balances(rows) -> list[Balance]:
    wallets = {code: (balance, locked, status) for code, balance, locked, status in rows}
    zero = (Decimal(0), Decimal(0), None)
    return [Balance(code, unit.name, *wallets.get(code, zero)) for code, unit in CURRENCIES.items()]


def overview(user: User) -> list[Balance]:
    """One row per currency, in ``CURRENCIES`` order; a currency without a wallet shows zero
    (one statement)."""
    return _balances(db.session.execute(_balances_statement(), {"user_id": user.id}).all())


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

    @functools.cached_property
    def signed(self) -> Decimal:
        return self.amount if self.direction == "in" else self.amount.copy_negate()

    # Each text is worked out once per row: the row's template compares and shows both.
    @functools.cached_property
    def amount_text(self) -> str:
        return show_amount(self.signed, self.currency, sign=True)

    @functools.cached_property
    def amount_exact(self) -> str:
        """Every place of the amount, for the line's detail (the list shows it rounded)."""
        return show_amount(self.signed, self.currency, sign=True, exact=True)

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at, self.id)

    # The row's time as the list shows it (UTC), read by the template as plain attributes: a
    # method called from Jinja costs several times the call itself.
    @property
    def stamp(self) -> str:
        return self.created_at.isoformat()

    @property
    def day(self) -> str:
        return self.created_at.strftime("%d %b %Y")

    @property
    def clock(self) -> str:
        return self.created_at.strftime("%H:%M")


@dataclass
class HistoryPage:
    items: list[ActivityRow]
    next_cursor: str | None
    filters: HistoryFilters = field(default_factory=HistoryFilters)

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def _constant(value: str):
    """A fixed value written into the statement (an enum's value, never user input), so the
    planner sees it as it is, on a generic plan too."""
    return literal_column(f"'{value}'")


def _side(out: bool, kind: bool, code: bool, since: bool, until: bool, after: bool) -> Select:
    """The next rows of one side (``out``: the user's debit rows; else their credit rows that are
    not also debits), newest first. Every condition besides the user and the cursor is a filter
    on the rows of one index range: no join in the scan, so the planner walks
    ``ix_transactions_<side>_history`` from the cursor and stops at the limit, whatever the
    length of the user's history (a join on the resolving row made it read the user's whole
    history and sort it)."""
    t = _TRANSACTIONS.alias("t_out" if out else "t_in")
    resolving = _TRANSACTIONS.alias("resolving_out" if out else "resolving_in")
    user = bindparam("user_id")
    where = [t.c.debit_user_id == user] if out else [t.c.credit_user_id == user, t.c.debit_user_id.is_distinct_from(user)]
    # Every movement and every hold except one that was captured (its ``post`` row stands for it);
    # ``void`` rows are shown by the hold they released. The resolution is a scalar subquery,
    # looked up by ``pendingId`` for holds only (never hashed over the whole table, as an
    # EXISTS may be).
    resolution = select(resolving.c.phase).where(resolving.c.pending_id == t.c.id).scalar_subquery()
    where += [t.c.phase != _constant(Phase.VOID),
              or_(t.c.phase != _constant(Phase.PENDING), resolution.is_distinct_from(_constant(Phase.POST)))]
    if kind:
        where.append(t.c.type == bindparam("type"))
    if code:
        where.append(t.c.currency == bindparam("currency"))
    if since:
        where.append(t.c.createdAt >= bindparam("since"))
    if until:
        where.append(t.c.createdAt < bindparam("until"))
    if after:
        where.append(tuple_(t.c.createdAt, t.c.id) < tuple_(bindparam("after_at", type_=t.c.createdAt.type),
                                                            bindparam("after_id", type_=t.c.id.type)))
    return (select(t.c.id, t.c.createdAt.label("created_at"), t.c.type, t.c.phase, t.c.amount, t.c.currency,
                   _constant("out" if out else "in").label("direction"), t.c.description, t.c.details)
            .where(*where).order_by(t.c.createdAt.desc(), t.c.id.desc()).limit(bindparam("limit")))


@functools.cache
def _history_statement(kind: bool, code: bool, since: bool, until: bool, after: bool) -> Select:
    """One page of a user's history for one combination of filters, built once (building it
    anew cost several milliseconds of Python per page): the next ``limit`` rows of each side
    merged, newest first; a hold's resolution (``void`` or ``post``) is looked up for the page's
    holds only. Parameters: ``user_id``, ``limit``, and ``type``, ``currency``, ``since``,
    ``until``, ``after_at`` and ``after_id`` as the shape asks."""
    both = union_all(*(_side(out, kind, code, since, until, after) for out in (True, False))).subquery("history")
    resolved = _TRANSACTIONS.alias("resolved")
    resolution = case((both.c.phase == _constant(Phase.PENDING),
                       select(resolved.c.phase).where(resolved.c.pending_id == both.c.id).scalar_subquery()))
    return (select(both, resolution.label("resolution"))
            .order_by(both.c.created_at.desc(), both.c.id.desc()).limit(bindparam("limit")))


def _history_query(user_id: uuid.UUID, filters: HistoryFilters, position, limit: int) -> tuple[Select, dict]:
    """The statement for ``filters`` and its parameters."""
    params: dict = {"user_id": user_id, "limit": limit}
    if filters.type is not None:
        params["type"] = filters.type
    if filters.currency:
        params["currency"] = filters.currency
    if filters.date_from:
        params["since"] = datetime.combine(filters.date_from, time.min, UTC)
    if filters.date_to:
        params["until"] = datetime.combine(filters.date_to + timedelta(days=1), time.min, UTC)
    if position is not None:
        params["after_at"], params["after_id"] = position
    stmt = _history_statement(filters.type is not None, bool(filters.currency), filters.date_from is not None,
                              filters.date_to is not None, position is not None)
    return stmt, params


def _row(raw) -> ActivityRow:
    kind = raw.type  # a TransactionType already (the column's type reads it)
    details = raw.details or {}
    direction = raw.direction
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
    stmt, params = _history_query(user.id, filters, decode_cursor(after), limit + 1)
    rows = [_row(raw) for raw in db.session.execute(stmt, params).all()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = rows[-1].cursor
    return HistoryPage(rows, next_cursor, filters)


@functools.cache
def _wallet_page_statement() -> Select:
    """The wallet page's recent activity (the first ``limit`` rows of the history) with the
    user's wallets beside the first row, as arrays (``beside_first_row``): one statement, built
    once; parameters ``user_id`` and ``limit``."""
    w = _WALLETS
    recent = _history_statement(False, False, False, False, False).subquery("recent")
    rows = select(recent, func.row_number().over(order_by=(recent.c.created_at.desc(), recent.c.id.desc()))
                  .label("position"))
    wallets = select(func.array_agg(w.c.currency).label("codes"), func.array_agg(w.c.balance).label("balances"),
                     func.array_agg(w.c.locked_balance).label("locked"),
                     func.array_agg(w.c.status).label("statuses")).where(w.c.user_id == bindparam("user_id"))
    return beside_first_row(rows, wallets)


def wallet_page(user: User, limit: int = RECENT) -> tuple[list[Balance], list[ActivityRow]]:
    """The balances (as ``overview``) and the first ``limit`` rows of the history, in one
    statement."""
    rows = db.session.execute(_wallet_page_statement(), {"user_id": user.id, "limit": limit}).all()
    first = rows[0]
    balances = _balances(zip(first.codes, first.balances, first.locked, map(WalletStatus, first.statuses), strict=True)
                         if first.codes else ())
    return balances, [_row(raw) for raw in rows if raw.id is not None]


# -- CSV -----------------------------------------------------------------------------------------------

CSV_HEADER = ("Date (UTC)", "Type", "Direction", "Amount", "Currency", "Counterparty", "Description", "Note",
              "Status", "Transaction id")


def export_csv(user: User, filters: HistoryFilters | None = None, batch: int | None = None) -> Iterator[str]:
    """The user's whole history (with ``filters``) as CSV text, newest first, streamed in keyset
    batches of ``batch`` rows, one piece of text per batch (a piece per line cost a write to the
    socket per line): memory stays the same however long the history. Text cells that a
    spreadsheet would run as a formula are neutralised. Amounts are exact, signed from the user's
    side, at the currency's scale."""
    filters = filters or HistoryFilters()
    batch = batch or EXPORT_BATCH
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    quanta = {code: unit.quantum for code, unit in CURRENCIES.items()}

    def taken() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_HEADER)
    cursor = None
    while True:
        page = history(user, filters, cursor, batch)
        lines = []
        with localcontext(prec=PRECISION):
            for row in page.items:
                # The amount is a number the export made itself, so its minus sign stays. The
                # cells a person may have typed (a name, a description, a note) are neutralised;
                # the others are the export's own words, digits and ids, which never start
                # like a formula.
                exact = row.signed.quantize(quanta[row.currency])
                lines.append((row.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), row.type.label,
                              row.direction, f"{exact:f}", row.currency, csv_safe(row.counterparty),
                              csv_safe(row.description), csv_safe(row.note), row.status, str(row.id)))
        writer.writerows(lines)
        yield taken()
        if not page.has_next:
            return
        cursor = page.next_cursor
