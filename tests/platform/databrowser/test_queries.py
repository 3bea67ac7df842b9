"""Reads of the data browser: parsing an address (every malformed part refused with a clear
message), filters per column type, sorting, pages with a capped count, one row with its related
rows, masked columns never selected, and row-level security of the caller applied."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Column, DateTime, MetaData, Table, Text, Uuid, event

from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.platform.databrowser import queries
from portal.platform.databrowser.catalog import catalog, describe
from portal.platform.databrowser.queries import InvalidQuery, list_page, parse_list_query, row_detail
from portal.platform.notifications.models import Notification
from tests.factories import create_notification, create_user
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of


def listing(table: str, **args):
    info = catalog()[table]
    return list_page(parse_list_query(info, args))


def keys(page) -> list[str]:
    return [row.key for row in page.rows]


def texts(page, column: str) -> list[str]:
    index = [c.name for c in page.query.table.columns].index(column)
    return [row.cells[index].text for row in page.rows]


@pytest.mark.parametrize(("table", "args", "says"), [
    ("users", {"f.nope": "x"}, "users has no column called “nope”"),
    ("users", {"f.passwordHash": "$argon2"}, "users.passwordHash is hidden"),
    ("transactions", {"f.details": "x"}, "transactions.details is not filterable"),
    ("transactions", {"f.debitWalletId": "not-a-uuid"}, "is not an id"),
    ("transactions", {"f.amount.min": "ten"}, "“ten” is not a number"),
    ("transactions", {"f.amount.min": "NaN"}, "is not a number the browser compares"),
    ("transactions", {"f.amount.min": "1e999999"}, "is not a number the browser compares"),
    ("transactions", {"f.amount": "5"}, "amount takes min and max"),
    ("transactions", {"f.amount.between": "5"}, "is not one the browser knows"),
    ("transactions", {"f.createdAt.min": "yesterday"}, "is not a date (YYYY-MM-DD)"),
    ("transactions", {"f.createdAt.min": "2026-03-02", "f.createdAt.max": "2026-03-01"}, "is after “to”"),
    ("transactions", {"f.type": "gift"}, "“gift” is not one of"),
    ("wallets", {"f.shard.min": "99999999999999999999999"}, "is too large"),
    ("currency_pairs", {"f.active": "maybe"}, "answer yes or no"),
    ("users", {"sort": "fullName"}, "users cannot be sorted by “fullName”"),
    ("users", {"sort": "passwordHash"}, "cannot be sorted by “passwordHash”"),
    ("users", {"dir": "sideways"}, "is not a direction"),
    ("users", {"page": "0"}, "is not a page number"),
    ("users", {"page": "two"}, "is not a page number"),
    ("users", {"page": "²"}, "is not a page number"),  # a digit to str.isdigit, not to int()
    ("users", {"page": "99999999999999999999"}, "is not a page number"),
    ("users", {"page": str(queries.MAX_PAGE + 1)}, "narrow the list with filters"),
    ("users", {"f.email": "x" * 201}, "longer than 200 characters"),
])
def test_malformed_addresses_are_refused_with_what_was_wrong(app, table, args, says):
    with pytest.raises(InvalidQuery) as refused:
        parse_list_query(catalog()[table], args)
    assert refused.value.status_code == 400
    assert says in refused.value.message


def test_unknown_tables_and_keys_are_not_found(app):
    with pytest.raises(NotFound, match="no table called “secrets”"):
        queries.table_or_404("secrets")
    users = catalog()["users"]
    with pytest.raises(NotFound, match="is not a key of users"):
        row_detail(users, "42")
    with pytest.raises(NotFound, match="has no row"):
        row_detail(users, str(uuid.uuid4()))
    cache = catalog()["cache_entries"]  # a text key: any string is a key, this one matches nothing
    with pytest.raises(NotFound, match="has no row"):
        row_detail(cache, "no/such/key")


def test_a_composite_key_names_a_row_by_each_part(app):
    """A table keyed by two columns (a table partitioned by month keeps its time in the key)."""
    metadata = MetaData()
    table = Table("events_by_month", metadata, Column("id", Uuid, primary_key=True),
                  Column("createdAt", DateTime(timezone=True), primary_key=True), Column("name", Text))
    info = describe(table, None)
    row_id, at = uuid.uuid4(), utcnow()
    key = queries.row_key(info, {table.c.id: row_id, table.c.createdAt: at})
    assert queries.parse_key(info, key) == (row_id, at)
    with pytest.raises(NotFound, match="is not a key of events_by_month"):
        queries.parse_key(info, str(row_id))
    with pytest.raises(NotFound, match="its createdAt is a datetime"):
        queries.parse_key(info, f"{row_id}/yesterday")


def test_filters_per_column_type(app):
    marker = uuid.uuid4().hex[:10]
    alice = create_user("student", full_name=f"Alice {marker}")
    bob = create_user("faculty", full_name=f"Bob {marker}")
    assert set(texts(listing("users", **{"f.fullName": marker}), "fullName")) == {alice.full_name, bob.full_name}
    # Case-insensitive, and LIKE's wildcards are taken literally.
    assert keys(listing("users", **{"f.fullName": f"ALICE {marker.upper()}"})) == [str(alice.id)]
    assert listing("users", **{"f.fullName": f"%{marker}"}).rows == ()
    assert keys(listing("users", **{"f.fullName": marker, "f.role": "faculty"})) == [str(bob.id)]
    assert texts(listing("users", **{"f.id": str(bob.id)}), "id") == [str(bob.id)[:8] + "…"]  # shortened
    assert texts(listing("users", **{"f.id": str(bob.id)}), "email") == [bob.email]
    empty = listing("users", **{"f.fullName": marker, "f.role": "", "f.email": " "})  # empty fields ignored
    assert len(empty.rows) == 2 and [f.param for f in empty.query.filters] == ["f.fullName"]

    fund(alice, "7.50")
    fund(alice, "20.00")
    wallet = wallet_of(alice)
    credits = listing("transactions", **{"f.creditWalletId": str(wallet.id)})
    assert sorted(texts(credits, "amount")) == ["20.00", "7.50"]
    assert texts(listing("transactions", **{"f.creditWalletId": str(wallet.id), "f.amount.min": "10"}),
                 "amount") == ["20.00"]
    assert texts(listing("transactions", **{"f.creditWalletId": str(wallet.id), "f.amount.max": "7.5"}),
                 "amount") == ["7.50"]
    today = utcnow().date()
    assert len(listing("transactions", **{"f.creditWalletId": str(wallet.id), "f.createdAt.min": str(today),
                                          "f.createdAt.max": str(today)}).rows) == 2
    tomorrow = today + timedelta(days=1)
    assert listing("transactions", **{"f.creditWalletId": str(wallet.id),
                                      "f.createdAt.min": str(tomorrow)}).rows == ()
    assert len(listing("transactions", **{"f.creditWalletId": str(wallet.id), "f.type": "deposit"}).rows) == 2


def test_sorting_by_an_indexed_column_either_way(app):
    marker = uuid.uuid4().hex[:10]
    made = [create_user("student", email=f"{letter}-{marker}@tests.example") for letter in "cab"]
    ascending = texts(listing("users", **{"f.email": marker, "sort": "email", "dir": "asc"}), "email")
    assert ascending == sorted(u.email for u in made)
    descending = texts(listing("users", **{"f.email": marker, "sort": "email", "dir": "desc"}), "email")
    assert descending == ascending[::-1]


def test_a_ledger_filtered_by_user_sorts_by_time_through_its_index(app):
    user = create_user("student")
    first, second = fund(user, "1.00"), fund(user, "2.00")  # the ledger is append-only: times as made
    assert first.created_at < second.created_at
    transactions = catalog()["transactions"]
    with pytest.raises(InvalidQuery, match="cannot be sorted by “createdAt”"):
        parse_list_query(transactions, {"sort": "createdAt"})  # the whole ledger: no index by time
    newest = listing("transactions", **{"f.creditUserId": str(user.id)})
    assert newest.query.sort.name == "createdAt" and newest.query.descending  # the default, once filtered
    assert keys(newest) == [str(second.id), str(first.id)]
    assert newest.query.params() == {"f.creditUserId": str(user.id)}
    oldest = listing("transactions", **{"f.creditUserId": str(user.id), "sort": "createdAt", "dir": "asc"})
    assert keys(oldest) == [str(first.id), str(second.id)]


def test_pages_do_not_overlap_and_the_count_is_capped(app, monkeypatch):
    user = create_user("student")
    with as_user(user):
        notes = sorted((create_notification(user, title=f"Note {n}") for n in range(7)), key=lambda n: n.id)
        expected = [n.title for n in notes]
        monkeypatch.setattr(queries, "PAGE_SIZE", 3)
        args = {"f.userId": str(user.id), "sort": "id", "dir": "asc"}
        first = listing("notifications", **args)
        second = listing("notifications", **args, page="2")
        third = listing("notifications", **args, page="3")
        assert texts(first, "title") + texts(second, "title") + texts(third, "title") == expected
        assert (first.total, first.capped, first.has_next, first.pages) == (7, False, True, 3)
        assert (third.first, third.last, third.has_next) == (7, 7, False)
        with pytest.raises(NotFound, match="There is no page 4 of this list: it has 3 pages"):
            listing("notifications", **args, page="4")
        monkeypatch.setattr(queries, "COUNT_CAP", 5)
        capped = listing("notifications", **args, page="2")
        assert (capped.total, capped.capped, capped.pages) == (5, True, None)


def test_a_page_is_at_most_two_statements_whatever_the_size(app, statements, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 10)
    user = create_user("student")
    fund(user, "1.00")
    args = {"f.creditWalletId": str(wallet_of(user).id)}
    with statements() as small:
        listing("transactions", **args)
    for _ in range(30):
        fund(user, "1.00")
    with statements() as large:
        first = listing("transactions", **args)
    with statements() as later:
        listing("transactions", **args, page="3")
    assert small.count == 1  # the first page holds every row: nothing more to count
    assert (large.count, later.count) == (2, 2)  # the page, and the capped count
    assert first.total == 31 and first.has_next


def test_masked_columns_are_never_selected(app):
    seen: list[str] = []

    def remember(conn, cursor, statement, *args):
        seen.append(statement)

    user = create_user("student")
    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        listing("users", **{"f.id": str(user.id)})
        detail = row_detail(catalog()["users"], str(user.id))
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert seen and not [s for s in seen if "passwordHash" in s or "user_password_hash" in s]
    cell = next(c for c in detail.cells if c.column.name == "passwordHash")
    assert cell.masked and cell.text == "•••• (hidden: secret)"


def test_a_row_links_to_the_rows_it_refers_to_and_counts_the_rows_that_refer_to_it(app, monkeypatch):
    user = create_user("student")
    for _ in range(3):
        fund(user, "2.00")
    wallet = wallet_of(user)
    detail = row_detail(catalog()["wallets"], str(wallet.id))
    owner = next(c for c in detail.cells if c.column.name == "userId")
    assert owner.row_link == ("users", str(user.id))
    related = {(r.reference.table, r.reference.column): r for r in detail.related}
    credits = related[("transactions", "creditWalletId")]
    assert (credits.count, credits.capped) == (3, False)
    assert credits.params == {"f.creditWalletId": str(wallet.id)}
    assert related[("transactions", "debitWalletId")].count == 0
    assert detail.subject_user_id == user.id
    monkeypatch.setattr(queries, "RELATED_CAP", 2)
    capped = {(r.reference.table, r.reference.column): r
              for r in row_detail(catalog()["wallets"], str(wallet.id)).related}
    assert (capped[("transactions", "creditWalletId")].count, capped[("transactions", "creditWalletId")].capped) \
        == (2, True)


def test_a_row_and_its_references_cost_two_statements(app, statements):
    user = create_user("student")
    with statements() as counted:
        row_detail(catalog()["users"], str(user.id))
    assert counted.count == 2  # the row, then every reference's capped count in one SELECT


def test_the_callers_row_level_security_applies(app):
    """Notifications are their owner's alone (and system actors'): what the browser lists and
    opens is what the acting identity may read, not what the table holds."""
    owner, other = create_user("student"), create_user("admin")
    note = create_notification(owner, title="Private note")
    assert db.session.get(Notification, note.id) is not None  # the tests' system actor sees it
    with as_user(other):
        assert listing("notifications", **{"f.userId": str(owner.id)}).rows == ()
        with pytest.raises(NotFound):
            row_detail(catalog()["notifications"], str(note.id))
    with as_user(owner):
        assert texts(listing("notifications", **{"f.userId": str(owner.id)}), "title") == ["Private note"]
