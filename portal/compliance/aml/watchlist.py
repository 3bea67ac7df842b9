"""The sanctions and PEP watchlist: CSV import, all or nothing, replacing the previous list.

The file has a header row and the columns ``name,aliases,birth_date,country,list_source,kind``
(any order; no others): aliases separated by ``;``, the birth date as ``YYYY-MM-DD`` or empty, the
country as an ISO 3166-1 alpha-2 code or empty, the kind ``sanction`` or ``pep``.

The whole file is checked before anything is written, and every broken row is reported with its
line number in the file (the header is line 1) and the reason. If any row is broken nothing is
imported. Otherwise the import replaces every existing entry in the caller's transaction: one
DELETE, then the new rows with a new ``import_id``, so a screening running meanwhile sees the old
list or the new one, never half of either. Two imports at once are serialised by a
transaction-level advisory lock (without it, each would delete only the rows it could see and
both lists would survive).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import delete, func, insert, select, text

from portal.accounts.models import User
from portal.compliance.aml import matching
from portal.compliance.aml.models import WatchlistEntry, WatchlistKind
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden
from portal.security.permissions import Permission, has_permission

COLUMNS = ("name", "aliases", "birth_date", "country", "list_source", "kind")
#: Limits: a real consolidated list (UN, EU, OFAC SDN) is a few tens of thousands of names; the
#: candidate pass of screening reads the whole list per screening, so it is kept to this size.
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_ALIASES = 50
MAX_NAME = 300
MAX_SOURCE = 120
#: Errors kept in the report: every broken row up to this many, then a count of the rest.
MAX_ERRORS = 500

SAMPLE_PATH = Path(__file__).parent / "data" / "sample_watchlist.csv"

#: pg_advisory_xact_lock key of the import ("watchlist" as an integer).
_IMPORT_LOCK = 0x77617463686C69


class WatchlistInvalid(DomainError):
    """The file cannot be imported: ``errors`` lists ``(line, reason)`` for every broken row
    (line 0 for a problem with the file as a whole)."""

    status_code = 422

    def __init__(self, errors: list[tuple[int, str]], *, total: int | None = None):
        self.errors = errors[:MAX_ERRORS]
        self.total = total if total is not None else len(errors)
        count = self.total
        super().__init__(f"The file was not imported: {count} problem{'s' if count != 1 else ''} found. "
                         "Nothing was changed.", field="file")


@dataclass(frozen=True)
class ImportResult:
    import_id: uuid.UUID
    imported: int
    replaced: int
    sanctions: int
    peps: int


@dataclass(frozen=True)
class _Row:
    name: str
    aliases: list[str]
    birth_date: date | None
    country: str | None
    list_source: str
    kind: WatchlistKind
    normalized_names: list[str]


def _known_countries() -> frozenset[str]:
    from portal.compliance.kyc.personal_data import countries

    return frozenset(code for code, _ in countries())


def _clean(value: str | None) -> str:
    return " ".join((value or "").split())


def _decode(content: bytes) -> str:
    if not content:
        raise WatchlistInvalid([(0, "The file is empty.")])
    if len(content) > MAX_BYTES:
        raise WatchlistInvalid([(0, f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")])
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise WatchlistInvalid([(line, "The file is not UTF-8 text (save it as CSV UTF-8).")]) from None


#: Control characters (NUL, escape ...) have no place in a name and PostgreSQL refuses NUL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _check_row(record: dict, countries: frozenset[str]) -> tuple[_Row | None, list[str]]:
    bad = [c for c in COLUMNS if _CONTROL.search(record.get(c) or "")]
    if bad:
        return None, [f"a control character (such as NUL) in {', '.join(bad)}"]
    problems: list[str] = []
    name = _clean(record.get("name"))
    if not name:
        problems.append("the name is empty")
    elif len(name) > MAX_NAME:
        problems.append(f"the name is longer than {MAX_NAME} characters")
    elif not matching.normalize_name(name):
        problems.append("the name has no letters or digits")
    aliases: list[str] = []
    for alias in (_clean(a) for a in (record.get("aliases") or "").split(";")):
        if not alias or alias in aliases or alias == name:
            continue
        if len(alias) > MAX_NAME:
            problems.append(f"an alias is longer than {MAX_NAME} characters")
        elif not matching.normalize_name(alias):
            problems.append(f"the alias {alias!r} has no letters or digits")
        else:
            aliases.append(alias)
    if len(aliases) > MAX_ALIASES:
        problems.append(f"more than {MAX_ALIASES} aliases")
    birth_date = None
    raw_birth = _clean(record.get("birth_date"))
    if raw_birth:
        try:
            if len(raw_birth) != 10:
                raise ValueError
            birth_date = date.fromisoformat(raw_birth)
        except ValueError:
            problems.append(f"the birth date {raw_birth!r} is not a date written YYYY-MM-DD")
        else:
            if birth_date > utcnow().date() or birth_date.year < 1900:
                problems.append(f"the birth date {raw_birth} is not plausible")
    country = _clean(record.get("country")).upper() or None
    if country and country not in countries:
        problems.append(f"the country {country!r} is not an ISO 3166 two-letter code")
    source = _clean(record.get("list_source"))
    if not source:
        problems.append("the list source is empty")
    elif len(source) > MAX_SOURCE:
        problems.append(f"the list source is longer than {MAX_SOURCE} characters")
    raw_kind = _clean(record.get("kind")).lower()
    try:
        kind = WatchlistKind(raw_kind)
    except ValueError:
        kind = None
        problems.append(f"the kind {raw_kind!r} is not sanction or pep" if raw_kind else "the kind is empty")
    if problems:
        return None, problems
    normalized = list(dict.fromkeys(matching.normalize_name(n) for n in (name, *aliases)))
    return _Row(name, aliases, birth_date, country, source, kind, normalized), []


def parse(content: bytes) -> list[_Row]:
    """Every row of the file, checked; raises ``WatchlistInvalid`` with all problems found."""
    text_ = _decode(content)
    reader = csv.DictReader(io.StringIO(text_, newline=""), restval=None)
    try:
        header = [(_clean(h)).lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise WatchlistInvalid([(1, f"The header cannot be read: {exc}.")]) from None
    if not header:
        raise WatchlistInvalid([(1, "The file has no header row (expected: " + ",".join(COLUMNS) + ").")])
    missing = [c for c in COLUMNS if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if missing or unknown or duplicated:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(repr(u) for u in unknown))
        if duplicated:
            parts.append("repeated column(s): " + ", ".join(duplicated))
        raise WatchlistInvalid([(1, "The header is wrong: " + "; ".join(parts) + " (expected: "
                                 + ",".join(COLUMNS) + ").")])
    reader.fieldnames = header
    countries = _known_countries()
    rows: list[_Row] = []
    errors: list[tuple[int, str]] = []
    seen: dict[tuple, int] = {}
    count = 0
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not any(_clean(v) for k, v in record.items() if k is not None and isinstance(v, str)):
                continue  # a blank line
            count += 1
            if count > MAX_ROWS:
                errors.append((line, f"More than {MAX_ROWS:,} rows: split the list or shorten it."))
                break
            if record.get(None):
                errors.append((line, f"More values than the {len(COLUMNS)} columns (a comma in a name "
                                     "needs the name in double quotes)."))
                continue
            if any(record.get(c) is None for c in COLUMNS):
                errors.append((line, f"Fewer values than the {len(COLUMNS)} columns."))
                continue
            row, problems = _check_row(record, countries)
            if row is None:
                message = "; ".join(problems)
                errors.append((line, message[0].upper() + message[1:] + "."))
                continue
            key = (row.normalized_names[0], row.birth_date, row.country, row.list_source, row.kind)
            if key in seen:
                errors.append((line, f"Repeats the entry on line {seen[key]}."))
                continue
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        errors.append((reader.line_num or line, f"The CSV cannot be read from here: {exc}."))
    if errors:
        raise WatchlistInvalid(errors)
    if not rows:
        raise WatchlistInvalid([(0, "The file has a header but no entries.")])
    return rows


def _check_importer(actor: User | None) -> None:
    """Admins replace the list from the page; ``None`` is the system (commands, the demo)."""
    if actor is not None and not has_permission(actor.role, Permission.SUPERVISE_CASES):
        raise Forbidden("Only administrators may replace the watchlist.")


def import_csv(actor: User | None, content: bytes) -> ImportResult:
    """Check the whole file, then replace every entry with its rows (flushed; the caller commits)."""
    _check_importer(actor)
    rows = parse(content)
    db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})
    import_id = uuid.uuid4()
    replaced = db.session.execute(delete(WatchlistEntry)).rowcount or 0
    db.session.execute(insert(WatchlistEntry), [
        {"id": uuid.uuid4(), "kind": row.kind, "name": row.name, "aliases": row.aliases,
         "birth_date": row.birth_date, "country": row.country, "list_source": row.list_source,
         "normalized_names": row.normalized_names, "import_id": import_id}
        for row in rows
    ])
    db.session.flush()
    return ImportResult(import_id=import_id, imported=len(rows), replaced=replaced,
                        sanctions=sum(1 for r in rows if r.kind == WatchlistKind.SANCTION),
                        peps=sum(1 for r in rows if r.kind == WatchlistKind.PEP))


def load_sample(actor: User | None = None) -> ImportResult:
    """Replace the list with the fictional sample that ships with the portal."""
    return import_csv(actor, SAMPLE_PATH.read_bytes())


def seed_sample_if_empty() -> ImportResult | None:
    """The demo's list: the sample, only when there is no list yet (idempotent)."""
    if db.session.scalar(select(WatchlistEntry.id).limit(1)) is not None:
        return None
    return load_sample(None)


@dataclass(frozen=True)
class ListSummary:
    entries: int
    sanctions: int
    peps: int
    sources: list[str]
    imported_at: object | None


def summary() -> ListSummary:
    """The current list in one statement: counts by kind, its sources and when it was imported."""
    row = db.session.execute(select(
        func.count(WatchlistEntry.id),
        func.count(WatchlistEntry.id).filter(WatchlistEntry.kind == WatchlistKind.SANCTION),
        func.count(WatchlistEntry.id).filter(WatchlistEntry.kind == WatchlistKind.PEP),
        func.array_agg(func.distinct(WatchlistEntry.list_source)),
        func.max(WatchlistEntry.created_at),
    )).one()
    return ListSummary(entries=row[0], sanctions=row[1], peps=row[2],
                       sources=sorted(s for s in (row[3] or []) if s), imported_at=row[4])


# ---------------------------------------------------------------------------------- commands


@click.group("watchlist", help="The sanctions and PEP watchlist used by AML screening.")
def watchlist_group():
    pass


def _report(result: ImportResult) -> None:
    click.echo(f"Imported {result.imported} entries ({result.sanctions} sanctions, {result.peps} PEP); "
               f"replaced {result.replaced}. Import {result.import_id}.")


def _run(action):
    from portal.db import as_cli_actor

    try:
        return as_cli_actor(action)()
    except WatchlistInvalid as exc:
        click.echo(exc.message, err=True)
        for line, reason in exc.errors:
            click.echo(f"  line {line}: {reason}" if line else f"  file: {reason}", err=True)
        if exc.total > len(exc.errors):
            click.echo(f"  ... and {exc.total - len(exc.errors)} more.", err=True)
        raise SystemExit(1) from None


@watchlist_group.command("import", help="Replace the watchlist with a CSV file (all rows checked first; "
                                        "nothing changes if any row is wrong).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_command(file: Path):
    if file.stat().st_size > MAX_BYTES:
        click.echo(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.", err=True)
        raise SystemExit(1)
    _report(_run(lambda: import_csv(None, file.read_bytes())))


@watchlist_group.command("load-sample", help="Replace the watchlist with the fictional sample list.")
@with_appcontext
def load_sample_command():
    _report(_run(lambda: load_sample(None)))
