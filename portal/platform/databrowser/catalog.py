"""What the data browser knows about each table, read from the models' metadata.

Secret columns. A column is masked (never selected, never shown, never filtered or sorted on)
when any of these says so, strongest first:

1. the model declares it in ``__audit_secret_columns__`` (``portal.db.base.Model``): the same
   list that keeps the value out of the audit trail (the trigger's arguments, migrations'
   ``audit_table``), so one declaration hides a column everywhere;
2. the app role may not read it at all (``portal.db.provision.HIDDEN_COLUMNS``);
3. it holds bytes (``bytea``): ciphertext, uploads and keys are stored that way, so binary is
   hidden unless proven harmless (safe default);
4. its name says it is secret (``secret``, ``password``, ``token``, ``encrypted``, ``cipher``,
   ``private key``, ``api key``) and it holds text: a safe default for a table whose author
   forgot rule 1.

Personal tables. Viewing their rows writes a security event (``PERSONAL_TABLES``): the tables
listed there, plus every table with a foreign key to ``users`` (whatever a domain adds that
belongs to a person is personal without a change here).

Sorting is offered on unique columns (the primary key, a unique e-mail) and on times, numbers
and text that an index leads with, so that a sort on a table of a million rows reads an index
instead of sorting the table (``SORTABLE_KINDS`` says why not statuses or references). A column
an index holds second becomes sortable once the list is filtered on the column that index
leads with (``sortable_after``): a user's ledger by time, read from
``("debitUserId", "createdAt" DESC)``.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    TextClause,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import CIDR, INET, JSONB

from portal.db import db
from portal.db.provision import HIDDEN_COLUMNS

#: Tables whose rows are about a person although they have no foreign key to ``users``: the
#: people themselves, the audit trail (old and new values of their rows), e-mails (addresses),
#: the cache (values computed for one user), rate limits (keys name addresses and accounts),
#: card network messages and payment webhooks (card holders' and payers' details), and the
#: watchlist (names and birth dates of listed people). Every table referring to ``users`` is
#: personal too (``is_personal``).
PERSONAL_TABLES = frozenset({
    "users", "students", "faculty", "audit_log", "emails", "cache_entries", "rate_limits",
    "card_network_messages", "webhook_events", "watchlist_entries", "kyc_verifications",
    "kyc_documents", "wallets", "transactions", "security_events", "session_validations",
})

#: Parts of a column name that mark it secret when the model declares nothing (rule 4).
SECRET_NAME = re.compile(r"secret|password|token|encrypted|cipher|private_?key|api_?key", re.IGNORECASE)


class Kind(enum.StrEnum):
    """How a column is shown and filtered."""

    TEXT = "text"  #: contains (case-insensitive)
    UUID = "uuid"  #: equals
    INTEGER = "integer"  #: from / to
    NUMBER = "number"  #: from / to (exact decimals)
    BOOL = "bool"  #: yes / no
    DATETIME = "datetime"  #: from / to (dates)
    DATE = "date"  #: from / to
    CHOICE = "choice"  #: one of the listed values
    JSON = "json"  #: shown, not filtered
    OTHER = "other"  #: arrays, search vectors: shown, not filtered
    BINARY = "binary"  #: never selected (rule 3)


#: Kinds filtered with a range (``<column>.min`` and ``<column>.max``).
RANGE_KINDS = frozenset({Kind.INTEGER, Kind.NUMBER, Kind.DATETIME, Kind.DATE})


@dataclass(frozen=True)
class ColumnInfo:
    name: str  #: the database name (camelCase), which the browser's addresses use
    column: Column = field(repr=False, compare=False)
    kind: Kind
    nullable: bool
    primary: bool
    #: Why the value is hidden (``secret``, ``binary``): None for a column shown as it is.
    hidden: str | None
    choices: tuple[str, ...] = ()
    sortable: bool = False
    #: Columns an equality filter on which makes this one sortable too: an index leads with
    #: that column and continues with this one (``("debitUserId", "createdAt")``: one user's
    #: ledger by time).
    sortable_after: frozenset[str] = frozenset()
    #: ``(table, column)`` this column refers to, for a single-column foreign key.
    refers_to: tuple[str, str] | None = None

    @property
    def filterable(self) -> bool:
        return self.hidden is None and self.kind not in (Kind.JSON, Kind.OTHER, Kind.BINARY)

    @property
    def exact(self) -> bool:
        """Filtered by equality: ids and references (a part of an id finds nothing useful)."""
        return self.kind == Kind.UUID or self.refers_to is not None or self.primary


@dataclass(frozen=True)
class Reference:
    """A foreign key into a table: rows of ``table`` whose ``column`` holds our ``target``."""

    table: str
    column: str
    target: str  #: the column of the referred table it holds (its primary key, usually)


@dataclass(frozen=True)
class TableInfo:
    name: str
    table: Table = field(repr=False, compare=False)
    #: The model's docstring's first sentence, or empty.
    summary: str
    #: The area it belongs to (``money``, ``learning``...), from the model's package.
    area: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[ColumnInfo, ...]
    #: Foreign keys of other tables (and this one) that point at rows of this table.
    referenced_by: tuple[Reference, ...]
    personal: bool

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def visible(self) -> tuple[ColumnInfo, ...]:
        return tuple(c for c in self.columns if c.hidden is None)

    @property
    def hidden(self) -> tuple[ColumnInfo, ...]:
        return tuple(c for c in self.columns if c.hidden is not None)

    @property
    def default_sort(self) -> ColumnInfo:
        created = self.column("createdAt")
        if created is not None and created.sortable:
            return created
        return self.primary_key[0]


#: Column types and the kind each is browsed as, the first match winning (an Enum is a String
#: too, so choices come before text).
_KINDS = ((LargeBinary, Kind.BINARY), (Enum, Kind.CHOICE), (Boolean, Kind.BOOL), (Uuid, Kind.UUID),
          (DateTime, Kind.DATETIME), (Date, Kind.DATE), (Integer, Kind.INTEGER), (Numeric, Kind.NUMBER),
          (JSON | JSONB, Kind.JSON), (String | Text | INET | CIDR, Kind.TEXT))


def _kind(column: Column) -> Kind:
    kind_type = column.type
    for types, kind in _KINDS:
        if isinstance(kind_type, types):
            return kind
    # A type decorator (e.g. the password hash) is judged by what it stores.
    impl = getattr(kind_type, "impl_instance", None)
    if impl is not None and impl is not kind_type:
        return _kind(Column(column.name, impl))
    return Kind.OTHER


def hidden_reason(table: Table, column: Column, declared: tuple[str, ...] = ()) -> str | None:
    """Why ``column`` is masked (rules 1-4 of the module docstring), or None."""
    if column.name in declared or column.name in HIDDEN_COLUMNS.get(table.name, ()):
        return "secret"
    if isinstance(column.type, LargeBinary) or _kind(column) == Kind.BINARY:
        return "binary"
    if SECRET_NAME.search(column.name) and _kind(column) in (Kind.TEXT, Kind.JSON, Kind.OTHER):
        return "secret"  # a time or a flag named after a secret (``passwordChangedAt``) is no secret
    return None


_LEADING_NAME = re.compile(r'^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?')


def _index_leaders(table: Table) -> tuple[set[str], set[str]]:
    """Names of the columns an index starts with, and of those that are unique on their own
    (the primary key, a one-column unique index or constraint)."""
    leaders: set[str] = set()
    unique = {col.name for col in table.primary_key.columns} if len(table.primary_key.columns) == 1 else set()
    if len(table.primary_key.columns) > 1:
        # A composite key (a partitioned table's id and time): its index leads with the first
        # column and orders every row, the rest of the key breaking ties, as a unique one does.
        first = list(table.primary_key.columns)[0].name
        leaders.add(first)
        unique.add(first)
    for index in table.indexes:
        expressions = list(index.expressions)
        name = _expression_name(expressions[0]) if expressions else None
        if name:
            leaders.add(name)
            if index.unique and len(expressions) == 1 and index.dialect_options["postgresql"]["where"] is None:
                unique.add(name)
    for constraint in table.constraints:
        columns = list(getattr(constraint, "columns", []))
        if len(columns) == 1 and isinstance(constraint, UniqueConstraint):
            unique.add(columns[0].name)
    for column in table.columns:
        if column.unique:
            unique.add(column.name)
    return leaders, unique


def _expression_name(expression) -> str | None:
    if isinstance(expression, Column):
        return expression.name
    if isinstance(expression, TextClause):
        match = _LEADING_NAME.match(expression.text)
        return match.group(1) if match else None
    return None


def _second_columns(table: Table) -> dict[str, set[str]]:
    """For each column that is second in an index, the columns its index leads with."""
    after: dict[str, set[str]] = {}
    for index in table.indexes:
        names = [_expression_name(e) for e in list(index.expressions)[:2]]
        if len(names) == 2 and all(names):
            after.setdefault(names[1], set()).add(names[0])
    return after


#: Kinds a sort may use when an index leads with the column: values that rarely tie. Sorting by
#: a status or a reference would order a million rows by a handful of values, each group then
#: sorted by the primary key in memory (the tie-breaker that keeps pages apart).
SORTABLE_KINDS = frozenset({Kind.DATETIME, Kind.DATE, Kind.INTEGER, Kind.NUMBER, Kind.TEXT})


def _sortable(name: str, kind: Kind, hidden: str | None, leaders: set[str], unique: set[str]) -> bool:
    if hidden is not None or kind in (Kind.JSON, Kind.OTHER, Kind.BINARY):
        return False
    return name in unique or (name in leaders and kind in SORTABLE_KINDS)


def _choices(column: Column) -> tuple[str, ...]:
    return tuple(getattr(column.type, "enums", ()) or ())


def describe(table: Table, model: type | None = None, referenced_by: tuple[Reference, ...] = ()) -> TableInfo:
    """The browser's view of one table (``model`` gives its declared secrets and its summary)."""
    declared = tuple(getattr(model, "__audit_secret_columns__", ()) or ())
    leaders, unique = _index_leaders(table)
    second = _second_columns(table)
    primary = {col.name for col in table.primary_key.columns}
    columns = []
    for column in table.columns:
        hidden = hidden_reason(table, column, declared)
        foreign = [fk for fk in column.foreign_keys if len(fk.constraint.elements) == 1]
        refers_to = (foreign[0].column.table.name, foreign[0].column.name) if foreign else None
        kind = _kind(column)
        columns.append(ColumnInfo(
            name=column.name, column=column, kind=kind, nullable=bool(column.nullable),
            primary=column.name in primary, hidden=hidden,
            choices=_choices(column) if kind == Kind.CHOICE else (),
            sortable=_sortable(column.name, kind, hidden, leaders, unique),
            sortable_after=frozenset(second.get(column.name, ()))
            if _sortable(column.name, kind, hidden, {column.name}, set()) else frozenset(),
            refers_to=refers_to,
        ))
    by_name = {c.name: c for c in columns}
    summary = ""
    doc = (getattr(model, "__doc__", None) or "").strip()
    if doc and model is not None and doc != (db.Model.__doc__ or "").strip():
        summary = " ".join(doc.split("\n\n")[0].split()).replace("``", "")  # reST literals, read as text
    module = getattr(model, "__module__", "") or ""
    area = module.split(".")[1] if module.startswith("portal.") and module.count(".") >= 2 else "other"
    return TableInfo(
        name=table.name, table=table, summary=summary, area=area, columns=tuple(columns),
        primary_key=tuple(by_name[c.name] for c in table.primary_key.columns),
        referenced_by=referenced_by, personal=is_personal(table),
    )


def is_personal(table: Table) -> bool:
    """Whether viewing the table's rows is a view of personal data (module docstring)."""
    if table.name in PERSONAL_TABLES:
        return True
    return any(fk.column.table.name == "users" for fk in table.foreign_keys)


@functools.cache
def catalog() -> dict[str, TableInfo]:
    """Every mapped table by name, sorted. Built once, after the app imported every model."""
    models = {mapper.local_table.name: mapper.class_ for mapper in db.Model.registry.mappers
              if isinstance(mapper.local_table, Table)}
    tables = db.metadata.tables
    references: dict[str, list[Reference]] = {name: [] for name in tables}
    for table in tables.values():
        for column in table.columns:
            for fk in column.foreign_keys:
                if len(fk.constraint.elements) == 1 and fk.column.table.name in references:
                    references[fk.column.table.name].append(Reference(table.name, column.name, fk.column.name))
    return {
        name: describe(tables[name], models.get(name),
                       tuple(sorted(references[name], key=lambda r: (r.table, r.column))))
        for name in sorted(tables)
    }


def table_info(name: str) -> TableInfo | None:
    return catalog().get(name)


def python_type(info: ColumnInfo) -> type:
    """The Python type of a key column's values (for parsing a row's key from an address)."""
    return {Kind.UUID: uuid.UUID, Kind.INTEGER: int, Kind.DATETIME: datetime, Kind.DATE: date}.get(info.kind, str)
