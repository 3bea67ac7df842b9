"""Reads of the data browser: one page of a table, one row and the rows related to it.

Everything runs on the request's session (``db.session``), which carries the acting admin's
identity: row-level security shows the browser what it shows that admin on any other page, no
more. Nothing here writes; the caller records the view of personal data.

Cost, whatever the size of the table:

- a page is one statement (``LIMIT`` one more row than the page, to know whether another
  follows) plus, unless the first page already holds every row, one capped count
  (``SELECT count(*) FROM (... LIMIT 10001)``), shown as "10,000+": a million rows are never
  counted, and paging stops at page ``MAX_PAGE`` (offset 10,000), past which filters, not page
  numbers, narrow the list;
- sorting is offered only on columns an index leads with (``catalog``), each ordered with the
  primary key as a tie-breaker so that pages never overlap;
- a row is one statement, its related rows one more: every foreign key into its table becomes
  one capped count in a single ``SELECT``.

Masked columns are never selected, so their values never reach Python, let alone a page.
Input arrives as the strings of an address; anything malformed is refused with
``InvalidQuery`` (400) or ``NotFound`` (404) naming what was wrong, before any SQL runs.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation, localcontext

from sqlalchemy import Text, and_, cast, func, literal, select, text, true

from portal.db import db
from portal.errors import DomainError, NotFound
from portal.platform.databrowser.catalog import (
    RANGE_KINDS,
    ColumnInfo,
    Kind,
    Reference,
    TableInfo,
    table_info,
)

#: Rows per page.
PAGE_SIZE = 50
#: Rows counted at most; beyond, the list says "10,000+".
COUNT_CAP = 10_000
#: The last page the browser serves (its offset is ``COUNT_CAP``).
MAX_PAGE = COUNT_CAP // PAGE_SIZE
#: Related rows counted at most per foreign key.
RELATED_CAP = 100
#: Characters of a value shown in a list (the row's page shows it whole).
LIST_TEXT = 80
#: The largest integer a filter accepts (PostgreSQL's bigint).
MAX_INTEGER = 2**63 - 1
MASK = "••••"
EMPTY = "—"
#: Filter parameters: ``f.<column>`` (equals, contains, one of) and ``f.<column>.min`` / ``.max``.
FILTER_PREFIX = "f."


class InvalidQuery(DomainError):
    status_code = 400


def table_or_404(name: str) -> TableInfo:
    info = table_info(name)
    if info is None:
        raise NotFound(f"There is no table called “{name[:63]}”. Pick one from the list of tables.")
    return info


# ------------------------------------------------------------------ parsing a list's address


@dataclass(frozen=True)
class Filter:
    column: ColumnInfo
    op: str  #: ``eq``, ``contains``, ``min``, ``max``
    value: object
    raw: str

    @property
    def param(self) -> str:
        suffix = f".{self.op}" if self.op in ("min", "max") else ""
        return f"{FILTER_PREFIX}{self.column.name}{suffix}"


@dataclass(frozen=True)
class ListQuery:
    table: TableInfo
    filters: tuple[Filter, ...]
    sort: ColumnInfo
    descending: bool
    page: int
    #: The sort when the address names none (newest first where an index allows).
    default_sort: ColumnInfo

    def can_sort(self, column: ColumnInfo) -> bool:
        return sortable_with(column, self.filters)

    def params(self, **changes) -> dict[str, str]:
        """The address's query for this list, with ``changes`` (``page``, ``sort``, ``dir``);
        defaults are left out so addresses stay short."""
        values: dict[str, str] = {f.param: f.raw for f in self.filters}
        sort = changes.get("sort", self.sort.name)
        descending = changes.get("dir", "desc" if self.descending else "asc") == "desc"
        if sort != self.default_sort.name or not descending:
            values["sort"] = sort
            values["dir"] = "desc" if descending else "asc"
        page = changes.get("page", self.page)
        if page != 1:
            values["page"] = str(page)
        return values

    def raw(self, param: str) -> str:
        return next((f.raw for f in self.filters if f.param == param), "")


def _positive_int(raw: str, what: str, ceiling: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= ceiling:
        raise InvalidQuery(f"“{raw[:20]}” is not a {what} the browser serves: use a whole number from 1 to "
                           f"{ceiling:,}. Past page {ceiling:,}, narrow the list with filters instead.")
    return int(raw)


def _parse_value(column: ColumnInfo, op: str, raw: str):
    label = f"The filter on {column.name}"
    kind = column.kind
    if len(raw) > 200:
        raise InvalidQuery(f"{label} is longer than 200 characters.")
    if column.exact and kind == Kind.UUID:
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise InvalidQuery(f"{label}: “{raw[:40]}” is not an id (a UUID such as "
                               "0b6f8a52-3c1d-4e2f-9a7b-1c2d3e4f5a6b).") from None
    if kind == Kind.CHOICE:
        if raw not in column.choices:
            raise InvalidQuery(f"{label}: “{raw[:40]}” is not one of {', '.join(column.choices)}.")
        return raw
    if kind == Kind.BOOL:
        if raw.lower() not in ("yes", "no"):
            raise InvalidQuery(f"{label}: answer yes or no.")
        return raw.lower() == "yes"
    if kind == Kind.INTEGER:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidQuery(f"{label}: “{raw[:40]}” is not a whole number.") from None
        if abs(value) > MAX_INTEGER:
            raise InvalidQuery(f"{label}: {raw[:40]} is too large.")
        return value
    if kind == Kind.NUMBER:
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InvalidQuery(f"{label}: “{raw[:40]}” is not a number.") from None
        if not value.is_finite() or abs(value.adjusted()) > 30:
            raise InvalidQuery(f"{label}: {raw[:40]} is not a number the browser compares.")
        return value
    if kind in (Kind.DATETIME, Kind.DATE):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InvalidQuery(f"{label}: “{raw[:40]}” is not a date (YYYY-MM-DD).") from None
        if kind == Kind.DATE:
            return day
        start = datetime.combine(day, time(0), tzinfo=UTC)
        if op == "max":  # up to the end of that day
            return start + timedelta(days=1) if day < date.max else start
        return start
    return raw  # text: contains, or equals for an id or a reference held as text


def parse_list_query(table: TableInfo, args: Mapping[str, str]) -> ListQuery:
    """The list an address asks for. Empty filter fields are ignored (a form sends them all)."""
    filters: list[Filter] = []
    for param, raw in args.items():
        if not param.startswith(FILTER_PREFIX):
            continue
        name, _, op = param[len(FILTER_PREFIX):].partition(".")
        column = table.column(name)
        if column is None:
            raise InvalidQuery(f"{table.name} has no column called “{name[:63]}” to filter on.")
        if not column.filterable:
            why = "hidden" if column.hidden else "not filterable"
            raise InvalidQuery(f"{table.name}.{column.name} is {why}: the browser does not filter on it.")
        ranged = column.kind in RANGE_KINDS and not column.exact
        if (op and (op not in ("min", "max") or not ranged)) or (not op and ranged):
            expected = "min and max" if ranged else "a value"
            raise InvalidQuery(f"The filter “{param[:80]}” is not one the browser knows: "
                               f"{column.name} takes {expected}.")
        raw = raw.strip()
        if not raw:
            continue
        if not op:
            op = "eq" if column.exact or column.kind in (Kind.CHOICE, Kind.BOOL) else "contains"
        filters.append(Filter(column, op, _parse_value(column, op, raw), raw))
    for name in {f.column.name for f in filters if f.op == "min"}:
        low = next(f for f in filters if f.column.name == name and f.op == "min")
        high = next((f for f in filters if f.column.name == name and f.op == "max"), None)
        if high is None:
            continue
        # A time's "to" already stands for the end of its day, so an equal "from" is the day before.
        after = low.value >= high.value if low.column.kind == Kind.DATETIME else low.value > high.value
        if after:
            raise InvalidQuery(f"The filter on {name}: “from” ({low.raw}) is after “to” ({high.raw}).")

    default = table.default_sort
    created = table.column("createdAt")
    if default is not created and created is not None and sortable_with(created, filters):
        default = created  # filtered on the column an index of times leads with
    sort_name = args.get("sort") or default.name
    sort = table.column(sort_name)
    if sort is None or not sortable_with(sort, filters):
        offered = ", ".join(c.name for c in table.columns if sortable_with(c, filters))
        raise InvalidQuery(f"{table.name} cannot be sorted by “{sort_name[:63]}”: sort by one of {offered}.")
    direction = args.get("dir") or "desc"
    if direction not in ("asc", "desc"):
        raise InvalidQuery(f"“{direction[:20]}” is not a direction: use asc or desc.")
    page = _positive_int(args.get("page") or "1", "page number", MAX_PAGE)
    return ListQuery(table, tuple(filters), sort, direction == "desc", page, default)


def sortable_with(column: ColumnInfo, filters) -> bool:
    """Whether a list so filtered may be sorted by ``column`` (``catalog``: sorting)."""
    if column.sortable:
        return True
    pinned = {f.column.name for f in filters if f.op == "eq"}
    return bool(column.sortable_after & pinned)


def _condition(flt: Filter):
    column = flt.column.column
    if flt.op == "eq":
        return column == flt.value
    if flt.op == "min":
        return column >= flt.value
    if flt.op == "max":
        return column < flt.value if flt.column.kind == Kind.DATETIME else column <= flt.value
    pattern = "%" + flt.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return cast(column, Text).ilike(pattern, escape="\\")


# ------------------------------------------------------------------ presenting values


@dataclass(frozen=True)
class Cell:
    column: ColumnInfo
    text: str
    #: The whole value, where ``text`` shortens it (an id in a list).
    title: str | None = None
    #: ``(table, key)`` of the row this value refers to, for a reference to a primary key.
    row_link: tuple[str, str] | None = None
    #: ``(table, params)`` of the rows holding this value, for a reference to another column.
    list_link: tuple[str, dict] | None = None

    @property
    def masked(self) -> bool:
        return self.column.hidden is not None

    @property
    def empty(self) -> bool:
        return self.text == EMPTY


def mask(column: ColumnInfo) -> str:
    return f"{MASK} (hidden: {column.hidden})"


def _text(value, full: bool) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC) if value.tzinfo else value
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo else "")
    if isinstance(value, uuid.UUID) and not full:
        return str(value)[:8] + "…"  # a list shows enough to tell rows apart; the title has it whole
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):  # an enum member
        return value.value
    if isinstance(value, Decimal):
        # NUMERIC columns keep the widest scale of any currency (18): show the digits that count,
        # at least two decimals.
        with localcontext() as context:
            context.prec = 100  # wide enough for any NUMERIC the portal stores
            digits = value.normalize()
            if digits.as_tuple().exponent > -2:
                digits = digits.quantize(Decimal("0.01"))
        return f"{digits:f}"
    if isinstance(value, dict | list) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        text = json.dumps(value, ensure_ascii=False, default=str, indent=2 if full else None)
    elif isinstance(value, list):
        text = ", ".join(value)
    else:
        text = str(value)
    if not full and len(text) > LIST_TEXT:
        return text[: LIST_TEXT - 1] + "…"
    return text


def _cell(column: ColumnInfo, row: Mapping, full: bool) -> Cell:
    if column.hidden is not None:
        return Cell(column, mask(column))
    value = row[column.column]
    text = _text(value, full)
    title = str(value) if isinstance(value, uuid.UUID) and not full else None
    if column.refers_to is None or value is None:
        return Cell(column, text, title)
    table, target = column.refers_to
    info = table_info(table)
    if info is not None and len(info.primary_key) == 1 and info.primary_key[0].name == target:
        return Cell(column, text, title, row_link=(table, str(value)))
    return Cell(column, text, title, list_link=(table, {f"{FILTER_PREFIX}{target}": str(value)}))


def row_key(table: TableInfo, row: Mapping) -> str:
    """The part of a row's address that names it: its primary key (joined by ``/``)."""
    return "/".join(str(row[c.column]) for c in table.primary_key)


def parse_key(table: TableInfo, raw: str) -> tuple:
    """The primary key an address names, or ``NotFound`` saying what a key of this table is."""
    parts = raw.split("/", len(table.primary_key) - 1)
    if len(parts) != len(table.primary_key) or len(raw) > 500:
        raise NotFound(f"“{raw[:60]}” is not a key of {table.name}.")
    values = []
    for column, part in zip(table.primary_key, parts, strict=True):
        try:
            if column.kind == Kind.DATETIME:
                values.append(datetime.fromisoformat(part))
            else:
                values.append(_parse_value(column, "eq", part) if column.kind != Kind.TEXT else part)
        except (InvalidQuery, ValueError):
            raise NotFound(f"“{raw[:60]}” is not a key of {table.name}: its {column.name} is a "
                           f"{column.kind.value}.") from None
    return tuple(values)


# ------------------------------------------------------------------ a page of a table


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class ListPage:
    query: ListQuery
    rows: tuple[Row, ...]
    #: Rows matching the filters, up to ``COUNT_CAP`` (``capped``: at least that many).
    total: int
    capped: bool
    has_next: bool

    @property
    def first(self) -> int:
        return (self.query.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def pages(self) -> int | None:
        """How many pages there are, when known (not capped)."""
        return None if self.capped else max(1, math.ceil(self.total / PAGE_SIZE))


def _visible(table: TableInfo):
    return [c.column for c in table.visible]


def list_page(query: ListQuery) -> ListPage:
    """One page of a table: at most two statements, whatever its size (module docstring)."""
    table = query.table
    conditions = [_condition(f) for f in query.filters]
    where = and_(true(), *conditions)
    order = [query.sort.column.desc() if query.descending else query.sort.column.asc()]
    order += [c.column.desc() if query.descending else c.column.asc()
              for c in table.primary_key if c is not query.sort]
    stmt = (select(*_visible(table)).where(where).order_by(*order)
            .offset((query.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))
    found = db.session.execute(stmt).mappings().all()
    has_next = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    if query.page == 1 and not has_next:
        total, capped = len(found), False
    else:
        matching = select(literal(1)).select_from(table.table).where(where).limit(COUNT_CAP + 1).subquery()
        total = db.session.scalar(select(func.count()).select_from(matching))
        capped = total > COUNT_CAP
        total = min(total, COUNT_CAP)
    if not found and query.page > 1:
        pages = max(1, math.ceil(total / PAGE_SIZE))
        raise NotFound(f"There is no page {query.page} of this list: it has {pages} "
                       f"page{'s' if pages != 1 else ''}.")
    rows = tuple(Row(row_key(table, row), tuple(_cell(c, row, full=False) for c in table.columns))
                 for row in found)
    return ListPage(query, rows, total, capped, has_next)


# ------------------------------------------------------------------ one row


@dataclass(frozen=True)
class Related:
    reference: Reference
    count: int
    capped: bool
    #: The filter that lists these rows (``f.<column>`` = our value).
    params: dict


@dataclass(frozen=True)
class Detail:
    table: TableInfo
    key: str
    cells: tuple[Cell, ...]
    related: tuple[Related, ...]
    #: The user the row is about, when it says (``userId``, or the user itself): for the audit.
    subject_user_id: uuid.UUID | None


def _subject(table: TableInfo, row: Mapping) -> uuid.UUID | None:
    column = table.column("id" if table.name == "users" else "userId")
    value = row[column.column] if column is not None and column.hidden is None else None
    return value if isinstance(value, uuid.UUID) else None


def row_detail(table: TableInfo, raw_key: str) -> Detail:
    """One row, shown whole (secrets masked), and how many rows of each table refer to it:
    two statements (one when nothing refers to the table)."""
    key = parse_key(table, raw_key)
    match = and_(*(c.column == v for c, v in zip(table.primary_key, key, strict=True)))
    row = db.session.execute(select(*_visible(table)).where(match)).mappings().first()
    if row is None:
        raise NotFound(f"{table.name} has no row {raw_key[:60]} (or it is not yours to see).")
    def target(ref: Reference):
        column = table.column(ref.target)
        return row[column.column] if column is not None and column.hidden is None else None

    countable = [ref for ref in table.referenced_by if target(ref) is not None]
    counts: Mapping = {}
    if countable:
        parts = []
        for n, ref in enumerate(countable):
            other = table_info(ref.table)
            matching = (select(literal(1)).select_from(other.table)
                        .where(other.column(ref.column).column == target(ref))
                        .limit(RELATED_CAP + 1).subquery())
            parts.append(select(func.count()).select_from(matching).scalar_subquery().label(f"r{n}"))
        counts = db.session.execute(select(*parts)).mappings().one()
    related = tuple(
        Related(ref, min(counts[f"r{n}"], RELATED_CAP), counts[f"r{n}"] > RELATED_CAP,
                {f"{FILTER_PREFIX}{ref.column}": str(target(ref))})
        for n, ref in enumerate(countable)
    )
    return Detail(table, row_key(table, row), tuple(_cell(c, row, full=True) for c in table.columns), related,
                  _subject(table, row))


_SIZES = text("SELECT relname::text, reltuples FROM pg_class "
              "WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')")


def size_estimates() -> dict[str, int]:
    """PostgreSQL's own estimate of each table's rows (``pg_class.reltuples``, kept by
    ANALYZE and autovacuum), in one statement: the index page shows a table's size without
    counting it. A table never analysed has no estimate (left out)."""
    return {name: int(estimate) for name, estimate in db.session.execute(_SIZES)
            if estimate is not None and estimate >= 0}
