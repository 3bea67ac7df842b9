"""The watchlist import: every row checked first, every problem reported with its line, nothing
imported when anything is wrong, and a good file replacing the whole list at once."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from sqlalchemy import func, select

from portal.compliance.aml import watchlist
from portal.compliance.aml.models import WatchlistEntry, WatchlistKind
from portal.db import db
from portal.errors import Forbidden
from tests.factories import create_user

HEADER = "name,aliases,birth_date,country,list_source,kind\n"


def entries() -> list[WatchlistEntry]:
    return list(db.session.scalars(select(WatchlistEntry).order_by(WatchlistEntry.name)
                                   .execution_options(populate_existing=True)))


def test_a_good_file_is_imported_with_normalised_names():
    content = (HEADER + 'José Luis Rodríguez,"Jose Rodriguez; Пепе Родригес ;",1960-02-03,es,EU list,Sanction\n'
               "Wang Dalimei,,,,National PEP list,pep\n").encode()
    result = watchlist.import_csv(None, content)
    assert (result.imported, result.replaced, result.sanctions, result.peps) == (2, 0, 1, 1)
    jose, wang = entries()
    assert jose.aliases == ["Jose Rodriguez", "Пепе Родригес"]
    assert jose.normalized_names == ["jose luis rodriguez", "jose rodriguez", "pepe rodriges"]
    assert jose.country == "ES" and jose.kind == WatchlistKind.SANCTION and str(jose.birth_date) == "1960-02-03"
    assert jose.list_source == "EU list" and jose.import_id == result.import_id
    assert wang.birth_date is None and wang.country is None and wang.aliases == []


def test_every_broken_row_is_reported_with_its_line_and_nothing_is_imported():
    watchlist.import_csv(None, (HEADER + "Old Entry,,,,Old list,pep\n").encode())
    content = (HEADER
               + "Good Person,,1970-01-01,FR,List,sanction\n"       # line 2: fine
               + ",alias,,,List,pep\n"                               # line 3: no name
               + "Bad Date,,1970-13-01,FR,List,pep\n"                # line 4
               + "Bad Country,,,XQ,List,pep\n"                       # line 5
               + "Bad Kind,,,,List,terrorist\n"                      # line 6
               + "No Source,,,,,pep\n"                               # line 7
               + "Too,Many,Values,,,List,pep\n"                      # line 8
               + "Too Few,,\n"                                       # line 9
               + "\n"                                                # line 10: blank, skipped
               + "Two Problems,,03/04/1970,,List,\n"                 # line 11
               + "Good Person,,1970-01-01,FR,List,sanction\n"        # line 12: repeats line 2
               + "Future,,2999-01-01,,List,pep\n").encode()          # line 13
    with pytest.raises(watchlist.WatchlistInvalid) as caught:
        watchlist.import_csv(None, content)
    errors = dict(caught.value.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    assert errors[3] == "The name is empty."
    assert "1970-13-01" in errors[4] and "YYYY-MM-DD" in errors[4]
    assert "XQ" in errors[5] and "ISO" in errors[5]
    assert "terrorist" in errors[6]
    assert errors[7] == "The list source is empty."
    assert errors[8].startswith("More values than the 6 columns")
    assert errors[9] == "Fewer values than the 6 columns."
    assert "03/04/1970" in errors[11] and "kind is empty" in errors[11]
    assert errors[12] == "Repeats the entry on line 2."
    assert "not plausible" in errors[13]
    assert "10 problems" in caught.value.message and "Nothing was changed" in caught.value.message
    assert [e.name for e in entries()] == ["Old Entry"]


@pytest.mark.parametrize(("content", "line", "fragment"), [
    (b"", 0, "empty"),
    (b"name,kind\nA,pep\n", 1, "missing column(s): aliases, birth_date, country, list_source"),
    ((HEADER.strip() + ",notes\n").encode(), 1, "unknown column(s): 'notes'"),
    (b"name,name,aliases,birth_date,country,list_source,kind\n", 1, "repeated column(s): name"),
    (HEADER.encode(), 0, "no entries"),
    (HEADER.encode() + b"Caf\xe9 Owner,,,,List,pep\n", 2, "not UTF-8"),
])
def test_file_level_problems(content, line, fragment):
    with pytest.raises(watchlist.WatchlistInvalid) as caught:
        watchlist.import_csv(None, content)
    assert caught.value.errors[0][0] == line
    assert fragment in caught.value.errors[0][1]


def test_columns_may_come_in_any_order_with_a_bom():
    content = "\ufeffkind,name,list_source,country,birth_date,aliases\nPEP,Ana Perez,List,ar,,\n".encode()
    assert watchlist.import_csv(None, content).imported == 1
    assert entries()[0].country == "AR"


def test_size_and_row_limits(monkeypatch):
    with pytest.raises(watchlist.WatchlistInvalid, match="1 problem") as caught:
        watchlist.import_csv(None, b"x" * (watchlist.MAX_BYTES + 1))
    assert "larger than" in caught.value.errors[0][1]
    monkeypatch.setattr(watchlist, "MAX_ROWS", 3)
    rows = "".join(f"Person {chr(65 + i)},,,,List,pep\n" for i in range(5))
    with pytest.raises(watchlist.WatchlistInvalid) as caught:
        watchlist.import_csv(None, (HEADER + rows).encode())
    assert caught.value.errors == [(5, "More than 3 rows: split the list or shorten it.")]


def test_a_good_import_replaces_the_whole_list_atomically():
    first = watchlist.import_csv(None, (HEADER + "Alpha One,,,,L,pep\nBeta Two,,,,L,pep\n").encode())
    second = watchlist.import_csv(None, (HEADER + "Gamma Three,,,,L,sanction\n").encode())
    assert second.replaced == 2 and second.import_id != first.import_id
    assert [(e.name, e.import_id) for e in entries()] == [("Gamma Three", second.import_id)]


def test_a_failing_import_leaves_the_old_list_intact():
    first = watchlist.import_csv(None, (HEADER + "Alpha One,,,,L,pep\nBeta Two,,,,L,pep\n").encode())
    with pytest.raises(watchlist.WatchlistInvalid):
        watchlist.import_csv(None, (HEADER + "Gamma Three,,,,L,sanction\nBroken,,,,L,other\n").encode())
    assert {(e.name, e.import_id) for e in entries()} == {("Alpha One", first.import_id),
                                                          ("Beta Two", first.import_id)}


def test_many_problems_are_all_counted_and_the_report_is_capped():
    rows = "".join(f"Person {i},,,,List,bad\n" for i in range(watchlist.MAX_ERRORS + 20))
    with pytest.raises(watchlist.WatchlistInvalid) as caught:
        watchlist.import_csv(None, (HEADER + rows).encode())
    assert caught.value.total == watchlist.MAX_ERRORS + 20
    assert len(caught.value.errors) == watchlist.MAX_ERRORS


@pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
def test_only_admins_import(role):
    with pytest.raises(Forbidden):
        watchlist.import_csv(create_user(role), (HEADER + "Alpha One,,,,L,pep\n").encode())
    assert entries() == []


def test_an_admin_imports():
    assert watchlist.import_csv(create_user("admin"), (HEADER + "Alpha One,,,,L,pep\n").encode()).imported == 1


def test_the_sample_list_is_valid_and_fictional_in_varied_scripts():
    rows = list(csv.DictReader(io.StringIO(watchlist.SAMPLE_PATH.read_text("utf-8"))))
    assert 35 <= len(rows) <= 60
    assert {r["list_source"] for r in rows} == {"Sample sanctions list", "Sample PEP list"}
    aliases = ";".join(r["aliases"] for r in rows)
    assert any("\u0400" <= ch <= "\u04ff" for ch in aliases)  # Cyrillic
    assert any("\u0600" <= ch <= "\u06ff" for ch in aliases)  # Arabic
    assert any("\u4e00" <= ch <= "\u9fff" for ch in aliases)  # Chinese
    result = watchlist.load_sample()
    assert result.imported == len(rows)
    summary = watchlist.summary()
    assert (summary.entries, summary.sanctions + summary.peps) == (len(rows), len(rows))
    assert summary.sources == ["Sample PEP list", "Sample sanctions list"]


def test_the_demo_seeds_the_sample_only_when_the_list_is_empty():
    assert watchlist.seed_sample_if_empty().imported > 0
    assert watchlist.seed_sample_if_empty() is None
    watchlist.import_csv(None, (HEADER + "Alpha One,,,,L,pep\n").encode())
    assert watchlist.seed_sample_if_empty() is None
    assert db.session.scalar(select(func.count()).select_from(WatchlistEntry)) == 1


def test_the_commands(app, tmp_path):
    """``flask watchlist import`` and ``load-sample`` run the same import (its transaction is the
    test's: the commit is a savepoint release)."""
    runner = app.test_cli_runner()
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "Alpha One,,,,L,pep\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "Alpha One,,,,L,nope\n", encoding="utf-8")
    result = runner.invoke(args=["watchlist", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "Imported 1 entries" in result.output
    result = runner.invoke(args=["watchlist", "import", str(bad)])
    assert result.exit_code == 1
    assert "line 2" in result.output and "nope" in result.output
    assert [e.name for e in entries()] == ["Alpha One"]
    result = runner.invoke(args=["watchlist", "load-sample"])
    assert result.exit_code == 0 and "replaced 1" in result.output


def test_rows_get_fresh_ids():
    watchlist.import_csv(None, (HEADER + "Alpha One,,,,L,pep\nBeta Two,,,,L,pep\n").encode())
    ids = [e.id for e in entries()]
    assert len(set(ids)) == 2 and all(isinstance(i, uuid.UUID) for i in ids)


@pytest.mark.parametrize(("content", "fragment"), [
    (HEADER.encode() + b"Nul\x00Byte,,,,L,pep\n", "A control character (such as NUL) in name."),
    (HEADER.encode() + b"Esc,,,,L\x1b[31m,pep\n", "A control character (such as NUL) in list_source."),
    (HEADER.encode() + b'"' + b"x" * 200_000 + b'",,,,L,pep\n', "cannot be read"),
    (HEADER.encode() + b'"Unclosed quote,,,,L,pep\n', "Fewer values"),
])
def test_unreadable_csv_is_reported_not_raised(content, fragment):
    with pytest.raises(watchlist.WatchlistInvalid) as caught:
        watchlist.import_csv(None, content)
    assert fragment in caught.value.errors[0][1]
