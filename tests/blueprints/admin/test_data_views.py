"""Admin > Data, the read-only data browser, through its pages: who may open it, the list (full
page and htmx fragment), one row with its links, the security event of each view of personal
data, bad input answered 4xx, row-level security of the admin, statement budgets, and a walk
over every table and column proving no secret value reaches a page."""

from __future__ import annotations

import base64
import html
import re
import uuid

import pytest
from sqlalchemy import LargeBinary, select

from portal.compliance.security.models import SecurityEvent, SecurityEventKind
from portal.db import db
from portal.db.provision import HIDDEN_COLUMNS
from portal.platform.databrowser.catalog import catalog
from tests.compliance.factories import verify
from tests.factories import create_notification, create_user
from tests.money.cards.helpers import card_holder, issued
from tests.money.factories import fund, wallet_of

FRAGMENT = {"HX-Request": "true", "HX-Target": "results"}
ROW_LINK = r'href="/admin/data/{table}/([^"?]+)"'


def viewed_events(actor) -> list[SecurityEvent]:
    return list(db.session.scalars(
        select(SecurityEvent).where(SecurityEvent.actor_id == actor.id,
                                    SecurityEvent.kind == SecurityEventKind.PERSONAL_DATA_VIEWED)
        .order_by(SecurityEvent.created_at)))


@pytest.fixture
def admin(login_as):
    return login_as("admin")


# ------------------------------------------------------------------ who may open it


@pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
def test_only_admins_open_the_data_browser(client, login_as, role):
    login_as(role)
    target = create_user("student")
    for url in ("/admin/data", "/admin/data/users", f"/admin/data/users/{target.id}"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "view system health and the audit trail" in html.unescape(response.get_data(as_text=True))
    assert 'href="/admin/data"' not in client.get("/dashboard").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/admin/data/users")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_admin_navigation_links_the_data_browser(client, admin):
    page = client.get("/admin/data").get_data(as_text=True)
    assert '<a href="/admin/data" aria-current="page">Data</a>' in page
    assert '<a href="/admin/users">Admin</a>' in page  # the longer section is the current one
    users = client.get("/admin/users").get_data(as_text=True)
    assert '<a href="/admin/users" aria-current="page">Admin</a>' in users
    assert '<a href="/admin/data">Data</a>' in users


# ------------------------------------------------------------------ pages


def test_the_index_lists_every_table(client, admin):
    page = client.get("/admin/data").get_data(as_text=True)
    for name in catalog():
        assert f'href="/admin/data/{name}"' in page, name
    assert page.count('class="badge badge-warn">personal<') >= 10


def test_a_list_page_and_its_htmx_fragment(client, admin):
    marker = uuid.uuid4().hex[:10]
    made = create_user("faculty", full_name=f"Grace {marker}")
    url = f"/admin/data/users?f.fullName={marker}"
    page = client.get(url)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in body
    assert f'href="/admin/data/users/{made.id}"' in body and made.email in body
    assert "•••• (hidden: secret)" in body  # the password hash column, masked
    assert 'name="f.fullName"' in body and 'name="f.passwordHash"' not in body  # no filter on a secret
    assert 'value="' + marker + '"' in body
    assert "Rows 1–1 of 1" in body
    fragment = client.get(url, headers=FRAGMENT)
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in text and 'name="f.fullName"' not in text
    assert text.lstrip().startswith('<div id="results">') and made.email in text
    assert "HX-Request" in fragment.headers["Vary"]


def test_sort_links_and_pages_keep_the_filters(client, admin, monkeypatch):
    from portal.platform.databrowser import queries

    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    marker = uuid.uuid4().hex[:10]
    made = sorted((create_user("student", email=f"{c}-{marker}@tests.example") for c in "abcde"),
                  key=lambda u: u.email)
    emails = [u.email for u in made]
    url = f"/admin/data/users?f.email={marker}&sort=email&dir=asc"
    first = client.get(url).get_data(as_text=True)
    assert [e for e in emails if e in first] == emails[:2]
    assert f'href="/admin/data/users?f.email={marker}&amp;sort=email&amp;dir=asc&amp;page=2"' in first
    assert f'href="/admin/data/users?f.email={marker}&amp;sort=email&amp;dir=desc"' in first  # flip
    second = client.get(url + "&page=2", headers=FRAGMENT).get_data(as_text=True)
    assert [e for e in emails if e in second] == emails[2:4]
    assert "Page 2 of 3" in second
    descending = client.get(f"/admin/data/users?f.email={marker}&sort=email&dir=desc").get_data(as_text=True)
    assert [e for e in emails[::-1] if e in descending] == emails[::-1][:2]


def test_a_row_page_links_to_related_rows_both_ways(client, admin):
    student = create_user("student")
    fund(student, "12.00")
    wallet = wallet_of(student)
    page = client.get(f"/admin/data/wallets/{wallet.id}").get_data(as_text=True)
    assert f'href="/admin/data/users/{student.id}">its users row</a>' in page  # this wallet's owner
    assert f'href="/admin/data/transactions?f.creditWalletId={wallet.id}">transactions</a>' in page
    assert re.search(r'by creditWalletId</span>\s*<span class="count-pill">1</span>', page)
    transactions = client.get(f"/admin/data/transactions?f.creditWalletId={wallet.id}").get_data(as_text=True)
    assert f'href="/admin/data/wallets/{wallet.id}"' in transactions and "12.00" in transactions
    # One user's ledger sorts by time (an index leads with the user): the header links it.
    ledger = client.get(f"/admin/data/transactions?f.creditUserId={student.id}").get_data(as_text=True)
    assert re.search(r'aria-sort="descending">\s*<a href="[^"]*sort=createdAt&amp;dir=asc"', ledger)
    assert "sorted by createdAt, descending" in ledger


# ------------------------------------------------------------------ the security event of each view


def test_each_view_of_personal_data_is_a_security_event(client, admin):
    student = create_user("student")
    assert client.get(f"/admin/data/users/{student.id}").status_code == 200
    assert client.get(f"/admin/data/students?f.userId={student.id}").status_code == 200
    events = viewed_events(admin)
    assert [(e.details["table"], e.details["view"]) for e in events] == [("users", "row"), ("students", "list")]
    row, listing = events
    assert row.user_id == student.id and row.details["row"] == str(student.id)
    assert row.summary == f"{admin.email} viewed row {student.id} of users in the data browser"
    assert listing.user_id is None
    assert listing.details["filters"] == {"f.userId": str(student.id)} and listing.details["rows"] == 1
    assert client.get(f"/admin/data/users/{student.id}").status_code == 200
    assert len(viewed_events(admin)) == 3  # every view, not once per row
    # Compliance reads them with the other security events, and may filter on them.
    page = client.get("/compliance/security/events?kind=personal_data_viewed").get_data(as_text=True)
    assert "Personal data viewed (data browser)" in page
    assert html.escape(f"{admin.email} viewed row {student.id} of users in the data browser") in page


def test_tables_without_personal_data_are_read_without_an_event(client, admin):
    assert client.get("/admin/data/currency_pairs").status_code == 200
    assert client.get("/admin/data/plans").status_code == 200
    assert client.get("/admin/data").status_code == 200
    assert viewed_events(admin) == []


def test_a_refused_view_records_nothing(client, admin):
    assert client.get(f"/admin/data/users/{uuid.uuid4()}").status_code == 404
    assert client.get("/admin/data/users?sort=fullName").status_code == 400
    assert viewed_events(admin) == []


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/admin/data/secrets", 404, "There is no table called “secrets”"),
    ("/admin/data/users/not-an-id", 404, "is not a key of users"),
    (f"/admin/data/users/{uuid.UUID(int=7)}", 404, "users has no row"),
    ("/admin/data/users?f.role=overlord", 400, "“overlord” is not one of"),
    ("/admin/data/users?f.nope=1", 400, "users has no column called “nope”"),
    ("/admin/data/users?f.passwordHash=%24argon2", 400, "users.passwordHash is hidden"),
    ("/admin/data/transactions?f.amount.min=lots", 400, "“lots” is not a number"),
    ("/admin/data/transactions?f.createdAt.min=2026-13-45", 400, "is not a date"),
    ("/admin/data/transactions?f.debitWalletId=42", 400, "is not an id"),
    ("/admin/data/users?sort=fullName", 400, "cannot be sorted by “fullName”"),
    ("/admin/data/users?dir=up", 400, "is not a direction"),
    ("/admin/data/users?page=-1", 400, "is not a page number"),
    ("/admin/data/transactions?page=99999999999", 400, "narrow the list with filters"),
    ("/admin/data/users?f.email=nobody-at-all&page=3", 404, "There is no page 3 of this list"),
])
def test_bad_input_is_answered_with_a_clear_4xx(client, admin, url, status, says):
    response = client.get(url)
    assert response.status_code == status
    assert says in html.unescape(response.get_data(as_text=True))
    fragment = client.get(url, headers=FRAGMENT)
    assert fragment.status_code == status
    text = html.unescape(fragment.get_data(as_text=True))
    assert "<html" not in text and says in text


# ------------------------------------------------------------------ row-level security


def test_the_admin_sees_only_what_row_level_security_lets_them(client, admin):
    """Notifications are their owner's alone: the browser, acting as the admin, cannot list or
    open a student's, though the table holds it; it opens the admin's own."""
    student = create_user("student")
    theirs = create_notification(student, title="Only for the student")
    mine = create_notification(admin, title="Only for the admin")
    listing = client.get(f"/admin/data/notifications?f.userId={student.id}").get_data(as_text=True)
    assert "Only for the student" not in listing and "No row of notifications matches" in listing
    assert client.get(f"/admin/data/notifications/{theirs.id}").status_code == 404
    own = client.get(f"/admin/data/notifications/{mine.id}")
    assert own.status_code == 200 and "Only for the admin" in own.get_data(as_text=True)


# ------------------------------------------------------------------ statement budget


def test_pages_cost_the_same_statements_however_many_rows(client, admin, statements):
    """Measured with more rows than a page (so the list's capped count runs) and with three
    times as many: at most 12 statements, and not one more for the larger table."""
    student = create_user("student")
    wallet = None

    def grow(count: int) -> None:
        for _ in range(count):
            fund(student, "1.00")

    def measure(urls) -> dict[str, int]:
        counts = {}
        for url in urls:
            client.get(url)  # warm, after the set-up's commit
            with statements() as counted:
                assert client.get(url).status_code == 200, url
            assert counted.count <= 12, (url, counted.statements)
            counts[url] = counted.count
        return counts

    grow(55)
    wallet = wallet_of(student)
    urls = [f"/admin/data/transactions?f.creditWalletId={wallet.id}",
            f"/admin/data/transactions?f.creditWalletId={wallet.id}&page=2", "/admin/data/transactions",
            f"/admin/data/wallets/{wallet.id}", f"/admin/data/users/{student.id}", "/admin/data"]
    small = measure(urls)
    grow(110)
    assert measure(urls) == small


# ------------------------------------------------------------------ no secret reaches a page


def _needles(value) -> set[str]:
    """Pieces of a secret value that would show if any part of it reached a page."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        if len(raw) < 8:
            return set()
        return {raw.hex()[:24], html.escape(repr(raw)[2:26]), base64.b64encode(raw).decode()[:24]}
    text = str(value)
    tokens = [t for t in text.split() if len(t) >= 16]
    found = set()
    for token in tokens:
        start = min(len(token) // 3, 40)
        found |= {html.escape(token[start:start + 16]), html.escape(token[-16:])}
    return found


def _secret_values() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Read, as the tests' system actor (which may read them), the values of every masked column
    of every table: the needles, and per table the keys of rows holding them."""
    needles: dict[str, set[str]] = {}
    keys: dict[str, list[str]] = {}
    declared = {(m.local_table.name, name) for m in db.Model.registry.mappers
                for name in getattr(m.class_, "__audit_secret_columns__", ())}
    declared |= {(table, name) for table, names in HIDDEN_COLUMNS.items() for name in names}
    for info in catalog().values():
        # Known independently of the browser's own decision: what the models declare, what the
        # app role may not read, every column of bytes, and whatever the browser masks besides.
        hidden = [c for c in info.columns if (info.name, c.name) in declared or c.hidden is not None
                  or isinstance(c.column.type, LargeBinary)]
        if not hidden:
            continue
        columns = [c.column for c in hidden]
        stmt = select(*[c.column for c in info.primary_key], *columns).order_by(
            info.primary_key[0].column.desc()).limit(200)
        for row in db.session.execute(stmt):
            values = row[len(info.primary_key):]
            if not any(v is not None for v in values):
                continue
            keys.setdefault(info.name, []).append("/".join(str(v) for v in row[:len(info.primary_key)]))
            for column, value in zip(hidden, values, strict=True):
                if value is not None:
                    for needle in _needles(value):
                        needles[needle] = f"{info.name}.{column.name}"
    return needles, keys


def test_no_secret_or_encrypted_value_reaches_any_list_or_row_page(client, admin):
    """Rows with every kind of secret the portal holds (password hashes, session token hashes,
    card numbers, identity data, e-mail bodies), then every table's list and rows as the admin:
    no piece of any masked column's value, nor the card number or the identity data in clear,
    appears on any page."""
    holder = card_holder(level=2)  # verified (encrypted identity data) and funded
    _card, revealed = issued(holder)
    client.get("/dashboard")  # the admin's own session row (a token hash) is in use
    create_user("student", full_name="Walk Student")
    verify(create_user("student"), 1)
    needles, secret_rows = _secret_values()
    covered = set(needles.values())
    for column in ("users.passwordHash", "session_validations.tokenHash", "virtual_cards.panEncrypted",
                   "virtual_cards.panLookup", "kyc_verifications.dataEncrypted"):
        assert column in covered, f"the walk has no value of {column} to look for"
    in_clear = {revealed.number: "the card number", revealed.number[6:12]: "the card number's middle digits",
                "12 Long Street": "an identity address (encrypted at rest)"}

    walked = 0
    opened: set[str] = set()
    for info in catalog().values():
        pages = [f"/admin/data/{info.name}"]
        listing = client.get(pages[0])
        assert listing.status_code == 200, info.name
        body = listing.get_data(as_text=True)
        row_keys = re.findall(ROW_LINK.format(table=re.escape(info.name)), body)[:2]
        row_keys += secret_rows.get(info.name, [])[:20]
        bodies = [body]
        for key in dict.fromkeys(row_keys):
            response = client.get(f"/admin/data/{info.name}/{key}")
            assert response.status_code in (200, 404), (info.name, key)
            if response.status_code == 200:
                opened.add(info.name)
            bodies.append(response.get_data(as_text=True))
        for text in bodies:
            walked += 1
            for needle, column in {**needles, **in_clear}.items():
                assert needle not in text, f"{column} shown on a page of {info.name}"
        if info.name in secret_rows:
            assert "•••• (hidden:" in "".join(bodies), info.name
    assert walked >= len(catalog()) + len(opened)
    assert {"users", "session_validations", "virtual_cards", "kyc_verifications", "wallets",
            "transactions"} <= opened
