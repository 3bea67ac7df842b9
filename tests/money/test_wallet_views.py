"""The wallet pages: balances, history (filters, keyset pages, CSV), sending money in its three
steps, with and without htmx, bad input, double submits, the dashboard card and the statement
budget."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, Wallet
from tests.factories import create_user
from tests.money.factories import fund, wallet_of

HX = {"HX-Request": "true"}
BUDGET = 12


@pytest.fixture
def student(login_as):
    return login_as("student", full_name="Ada Lovelace")


@pytest.fixture
def grace():
    return create_user("student", full_name="Grace Hopper", email="grace.hopper@tests.example")


def body(response) -> str:
    return response.get_data(as_text=True)


def key_in(html: str) -> str:
    return re.search(r'name="idempotency_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="idempotency_key"',
                     html).group(1) or ""


def wallets_count() -> int:
    with ledger.as_ledger():
        return db.session.scalar(select(func.count()).select_from(Wallet))


def transfer_fee():
    fees.save_rule(create_user("admin").id, "transfer", "USD", fixed="0.25", percent="1", minimum="0", maximum="")


# ------------------------------------------------------------------ balances


def test_overview_shows_every_currency_with_available_and_locked(client, student, grace):
    fund(student, "120.5", "USD")
    fund(student, "3", "AZR")
    with ledger.as_ledger():
        out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    ledger.hold([ledger.Leg(wallet_of(student), out, Decimal("20"), TransactionType.WITHDRAWAL, "Withdrawal")])
    response = client.get("/wallet/")
    assert response.status_code == 200
    html = body(response)
    cards = re.findall(r'<span class="balance-code">(\w+)</span>', html)
    assert cards == ["AZR", "USD", "BTC", "ETH"]
    assert "<dt>Available</dt><dd>100.50 USD</dd>" in html
    assert "<dt>Locked</dt><dd>20.00 USD</dd>" in html
    assert "<dt>Balance</dt><dd>120.50 USD</dd>" in html
    assert "<dt>Available</dt><dd>0.00000000 BTC</dd>" in html  # BTC shows its 8 places
    assert "Recent activity" in html and "Test deposit" in html
    assert 'class="status status-held">Held' in html
    assert 'href="/wallet/send"' in html


def test_balances_show_fixed_places_and_history_keeps_the_exact_amount(client, student):
    """A balance with more places than AZR's display shows rounded to 2, like the zero beside it;
    the history line shows the exact amount as its detail."""
    fund(student, "257.66915", "AZR")
    html = body(client.get("/wallet/"))
    assert '<p class="balance-available"><span class="visually-hidden">Available: </span>257.67 AZR</p>' in html
    assert "<dt>Locked</dt><dd>0.00 AZR</dd>" in html
    assert "257.66915" not in html.split('id="balances"')[-1].split("Recent activity")[0]
    history = body(client.get("/wallet/history"))
    assert '<span title="Exactly +257.66915 AZR">+257.67 AZR</span>' in history
    assert '<small class="tx-exact">exactly +257.66915 AZR</small>' in history


def test_overview_never_creates_a_wallet(client, student):
    before = wallets_count()
    html = body(client.get("/wallet/"))
    assert wallets_count() == before
    assert "No money has moved in your wallet yet" in html
    assert html.count("0.000000 ETH") >= 1  # ETH shows 6 places


def test_overview_fragment_for_the_balance_refresh(client, student):
    fund(student, "7", "USD")
    response = client.get("/wallet/", headers={**HX, "HX-Target": "balances"})
    html = body(response)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section id="balances"') and "7.00 USD" in html
    assert 'hx-trigger="balance-changed from:body"' in html
    assert "HX-Request" in response.headers.get("Vary", "")


@pytest.mark.parametrize("path", ["/wallet/", "/wallet/history", "/wallet/send", "/wallet/history.csv"])
def test_staff_are_refused(client, login_as, path):
    login_as("faculty")
    assert client.get(path).status_code == 403


# ------------------------------------------------------------------ history


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="tx tx-(\w+) tx-(\w+)">', html)


def _descriptions(html: str) -> list[str]:
    return re.findall(r'<span class="tx-description">([^<]*)</span>', html)


def test_history_keyset_pages_with_and_without_htmx(client, student):
    for i in range(30):
        fund(student, str(i + 1), "USD", description=f"Deposit {i + 1:02d}")
    first = client.get("/wallet/history")
    html = body(first)
    assert first.status_code == 200
    assert _descriptions(html) == [f"Deposit {n:02d}" for n in range(30, 5, -1)]  # newest first, 25 a page
    older = re.search(r'href="(/wallet/history\?after=[^"]+)"', html).group(1).replace("&amp;", "&")
    second = client.get(older)
    assert _descriptions(body(second)) == [f"Deposit {n:02d}" for n in range(5, 0, -1)]
    assert "Show older" not in body(second) and "Back to the newest" in body(second)
    fragment = client.get(older, headers=HX)
    assert "<html" not in body(fragment) and "<table" not in body(fragment)
    assert _descriptions(body(fragment)) == [f"Deposit {n:02d}" for n in range(5, 0, -1)]


def test_history_rows_are_from_the_users_side(client, student, grace):
    fund(student, "50", "USD")
    fund(grace, "50", "USD")
    from portal.money.wallets import services

    services.send_money(student, grace.email, "10", "USD", "books", ledger.new_key())
    services.send_money(grace, student.email, "4", "USD", "", ledger.new_key())
    html = body(client.get("/wallet/history"))
    assert _descriptions(html)[:2] == ["Received from Grace Hopper", "Sent to Grace Hopper"]
    assert "+4.00 USD" in html and "\u221210.00 USD" in html
    assert "“books”" in html
    assert _rows(html)[:2] == [("in", "completed"), ("out", "completed")]


def test_history_filters(client, student, grace):
    fund(student, "10", "USD")
    fund(student, "5", "AZR")
    from portal.money.wallets import services

    services.send_money(student, grace.email, "1", "AZR", "", ledger.new_key())
    assert _descriptions(body(client.get("/wallet/history?type=transfer"))) == ["Sent to Grace Hopper"]
    assert len(_rows(body(client.get("/wallet/history?currency=AZR")))) == 2
    assert len(_rows(body(client.get("/wallet/history?currency=usd&type=deposit")))) == 1
    today = utcnow().date()
    assert len(_rows(body(client.get(f"/wallet/history?from={today}&to={today}")))) == 3
    tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)
    html = body(client.get(f"/wallet/history?from={tomorrow}"))
    assert _rows(html) == [] and "Nothing matches these filters" in html
    assert _rows(body(client.get(f"/wallet/history?to={yesterday}"))) == []
    fragment = client.get("/wallet/history?type=deposit", headers={**HX, "HX-Target": "results"})
    assert "<html" not in body(fragment) and body(fragment).lstrip().startswith('<div id="results">')
    assert len(_rows(body(fragment))) == 2


@pytest.mark.parametrize(("query", "message"), [
    ("type=bogus", "Choose a type from the list."),
    ("currency=DOGE", "Choose one of AZR, USD, BTC, ETH."),
    ("from=2025-13-45", "From: enter a date like 2025-01-31."),
    ("to=yesterday", "To: enter a date like 2025-01-31."),
    ("from=2025-02-01&to=2025-01-01", "To: the end date is before the start date."),
    ("from=" + "9" * 500, "From: enter a date"),
])
def test_bad_history_filters_get_a_message_not_a_500(client, student, query, message):
    fund(student, "10", "USD")
    for headers in ({}, {**HX, "HX-Target": "results"}):
        response = client.get(f"/wallet/history?{query}", headers=headers)
        assert response.status_code == 422
        assert message in body(response)
        assert len(_rows(body(response))) == 1  # the valid filters still apply
    csv_response = client.get(f"/wallet/history.csv?{query}")
    assert csv_response.status_code == 422 and message in body(csv_response)


@pytest.mark.parametrize("shape", [(False,) * 5, (True,) * 5])
def test_the_history_statement_reads_each_side_without_a_join(shape):
    """Each side is a walk of its index from the cursor (the hold's resolution is a scalar
    subquery, run for holds only): joined to the resolving row, the planner read and sorted the
    user's whole history at a million rows. Built once per shape of filters."""
    from portal.money.wallets import queries

    statement = queries._history_statement(*shape)
    assert statement is queries._history_statement(*shape)
    assert "JOIN" not in str(statement.compile(dialect=db.engine.dialect)).upper()


def test_a_garbled_cursor_shows_the_first_page(client, student):
    fund(student, "10", "USD")
    response = client.get("/wallet/history?after=%01not-a-cursor")
    assert response.status_code == 200 and len(_rows(body(response))) == 1


def test_holds_show_as_held_then_released_and_a_capture_once(client, student):
    fund(student, "100", "USD")
    with ledger.as_ledger():
        out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    wallet = wallet_of(student)
    ledger.hold([ledger.Leg(wallet, out, Decimal("10"), TransactionType.WITHDRAWAL, "Open request")])
    released = ledger.hold([ledger.Leg(wallet, out, Decimal("20"), TransactionType.WITHDRAWAL, "Rejected request")])
    ledger.release(released)
    captured = ledger.hold([ledger.Leg(wallet, out, Decimal("30"), TransactionType.WITHDRAWAL, "Paid request")])
    ledger.capture(captured)
    html = body(client.get("/wallet/history"))
    assert _descriptions(html) == ["Paid request", "Rejected request", "Open request", "Test deposit"]
    assert _rows(html) == [("out", "completed"), ("out", "released"), ("out", "held"), ("in", "completed")]


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body(response))))


def test_csv_export_neutralises_formulas_and_keeps_amounts_exact(client, student, grace):
    fund(student, "100", "USD", description="=HYPERLINK(\"http://evil.example\")")
    from portal.money.wallets import services

    services.send_money(student, grace.email, "12.5", "USD", "@SUM(A1:A9)", ledger.new_key())
    response = client.get("/wallet/history.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="wallet-history.csv"'
    rows = _csv(response)
    assert rows[0] == ["Date (UTC)", "Type", "Direction", "Amount", "Currency", "Counterparty", "Description", "Note",
                       "Status", "Transaction id"]
    sent, deposit = rows[1], rows[2]
    assert sent[1:9] == ["Transfer", "out", "-12.50", "USD", "Grace Hopper", "Sent to Grace Hopper", "'@SUM(A1:A9)",
                         "completed"]
    assert deposit[3] == "100.00" and deposit[6] == "'=HYPERLINK(\"http://evil.example\")"
    filtered = _csv(client.get("/wallet/history.csv?type=deposit"))
    assert len(filtered) == 2 and filtered[1][1] == "Deposit"


def test_csv_export_streams_every_row_in_batches(client, student, monkeypatch):
    from portal.money.wallets import queries

    for i in range(7):
        fund(student, str(i + 1), "AZR")
    real_history = queries.history
    sizes = []

    def spy(user, filters=None, after=None, limit=queries.PAGE_SIZE):
        page = real_history(user, filters, after, limit)
        sizes.append(len(page.items))
        return page

    monkeypatch.setattr(queries, "history", spy)
    monkeypatch.setattr(queries, "EXPORT_BATCH", 3)
    rows = _csv(client.get("/wallet/history.csv"))
    assert [row[3] for row in rows[1:]] == [f"{n}.00000000" for n in range(7, 0, -1)]
    assert sizes == [3, 3, 1]


def test_csv_export_writes_a_piece_per_batch_not_per_line(student):
    """Each piece of a streamed body is a write to the socket: a batch of lines is one piece."""
    from portal.money.wallets import queries
    from tests.helpers import as_user

    for i in range(7):
        fund(student, str(i + 1), "AZR")
    with as_user(student):
        pieces = list(queries.export_csv(student, batch=3))
    assert [piece.count("\n") for piece in pieces] == [4, 3, 1]  # the header rides with the first batch
    lines = list(csv.reader(io.StringIO("".join(pieces))))
    assert lines[0][0] == "Date (UTC)" and [line[3] for line in lines[1:]] == [f"{n}.00000000" for n in range(7, 0, -1)]


# ------------------------------------------------------------------ sending


def _form(to, amount, key, currency="USD", note=""):
    return {"recipient": to, "amount": amount, "currency": currency, "note": note, "idempotency_key": key}


def test_send_form(client, student):
    fund(student, "5", "BTC")
    response = client.get("/wallet/send")
    html = body(response)
    assert response.status_code == 200
    assert len(key_in(html)) >= 16
    assert 'hx-post="/wallet/send/preview"' in html and 'hx-trigger="input changed delay:300ms"' in html
    assert '<label for="recipient">' in html and '<label for="amount">' in html and '<label for="currency">' in html
    # A label holds only the field's name; its hint is the description, not part of the name.
    assert re.search(r'<label for="recipient">\s*Recipient(&#39;|&#x27;|\')s e-mail\s*</label>', html)
    assert re.search(r'<input[^>]*aria-describedby="recipient-hint"[^>]*id="recipient"', html) or \
        re.search(r'<input[^>]*id="recipient"[^>]*aria-describedby="recipient-hint"', html)
    assert '<small id="recipient-hint" class="field-hint">The e-mail address' in html
    # The form's double-submit guard is the form's own: the live preview inside does not inherit it.
    assert 'hx-disabled-elt="find button[type=submit]" hx-disinherit="hx-disabled-elt"' in html
    assert '<option selected value="BTC">' in html or 'value="BTC" selected' in html or \
        re.search(r'<option[^>]*selected[^>]*value="BTC"', html)
    assert "Enter the recipient and the amount" in html
    assert key_in(body(client.get("/wallet/send"))) != key_in(html)  # a fresh key per form


def test_live_preview_fragment_and_full_page(client, student, grace):
    transfer_fee()
    fund(student, "100", "USD")
    data = _form("Grace.Hopper@tests.example", "10", ledger.new_key())
    fragment = client.post("/wallet/send/preview", data=data, headers={**HX, "HX-Target": "transfer-preview"})
    html = body(fragment)
    assert fragment.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section id="transfer-preview"')
    assert "Grace Hopper" in html and "gr***@tests.example" in html
    assert "<dt>Fee</dt><dd>0.35 USD</dd>" in html and '<dd class="total">10.35 USD</dd>' in html
    assert "<dt>Available after</dt><dd>89.65 USD</dd>" in html
    page = client.post("/wallet/send/preview", data=data)
    assert "<html" in body(page) and "10.35 USD" in body(page)
    assert 'value="Grace.Hopper@tests.example"' in body(page)
    assert wallet_of(grace) is None  # previews write nothing


def test_live_preview_shows_problems(client, student):
    fund(student, "3", "USD")
    data = _form("nobody@tests.example", "5", ledger.new_key())
    html = body(client.post("/wallet/send/preview", data=data, headers={**HX, "HX-Target": "transfer-preview"}))
    assert 'class="preview-problems"' in html
    assert "No one is registered with nobody@tests.example" in html and "Not enough money" in html
    page = body(client.post("/wallet/send/preview", data=data))
    assert 'id="recipient-error"' in page and 'aria-invalid="true"' in page
    empty = body(client.post("/wallet/send/preview", data=_form("", "", "x"), headers=HX))
    assert "preview-problems" not in empty and "Enter the recipient and the amount" in empty


def test_review_confirm_send_and_double_submit_pays_once(client, student, grace):
    transfer_fee()
    fund(student, "100", "USD")
    key = key_in(body(client.get("/wallet/send")))
    review = client.post("/wallet/send", data=_form("grace.hopper@tests.example", "10", key, note="Thanks!"))
    html = body(review)
    assert review.status_code == 200 and "Confirm the transfer" in html
    assert "Send 10.35 USD" in html and "<dt>Fee</dt><dd>0.35 USD</dd>" in html
    assert 'name="confirmed" value="1"' in html and f'name="idempotency_key" value="{key}"' in html
    assert wallet_of(grace) is None  # nothing sent yet

    confirmed = {**_form("grace.hopper@tests.example", "10", key, note="Thanks!"), "confirmed": "1", "fee": "0.35"}
    sent = client.post("/wallet/send", data=confirmed)
    assert sent.status_code == 200, body(sent)
    assert sent.headers["HX-Trigger"] == "balance-changed"
    assert "Money sent" in body(sent) and "10.35 USD" in body(sent) and "already been sent" not in body(sent)
    again = client.post("/wallet/send", data=confirmed, headers=HX)
    assert again.status_code == 200 and "already been sent" in body(again)
    assert wallet_of(student).balance == Decimal("89.65") and wallet_of(grace).balance == Decimal("10")
    with ledger.as_ledger():
        transfers = db.session.scalar(select(func.count()).select_from(Transaction)
                                      .where(Transaction.type == TransactionType.TRANSFER,
                                             Transaction.debit_user_id == student.id))
    assert transfers == 1


def test_review_with_bad_input_shows_the_form_with_messages(client, student, grace):
    fund(student, "10", "USD")
    response = client.post("/wallet/send", data=_form(grace.email, "1.005", ledger.new_key()))
    assert response.status_code == 422
    html = body(response)
    assert 'id="amount-error"' in html and "at most 2 decimal places" in html
    assert 'value="1.005"' in html
    response = client.post("/wallet/send", data=_form("", "", ledger.new_key(), currency="NOPE"))
    assert response.status_code == 422 and "Unknown currency" in body(response)


@pytest.mark.parametrize("htmx", [False, True])
def test_confirmed_send_refused_for_insufficient_funds(client, student, grace, htmx):
    fund(student, "5", "USD")
    db.session.commit()  # the refused request rolls its own work back, not the set-up
    data = {**_form(grace.email, "10", ledger.new_key()), "confirmed": "1"}
    response = client.post("/wallet/send", data=data, headers=HX if htmx else {})
    assert response.status_code == 422
    assert "Not enough money" in body(response)
    assert wallet_of(grace) is None and wallet_of(student).balance == Decimal("5")


def test_the_same_key_for_another_amount_is_refused_with_a_fresh_form(client, student, grace):
    fund(student, "100", "USD")
    key = ledger.new_key()
    assert client.post("/wallet/send", data={**_form(grace.email, "10", key), "confirmed": "1"}).status_code == 200
    response = client.post("/wallet/send", data={**_form(grace.email, "99", key), "confirmed": "1"})
    assert response.status_code == 409
    html = body(response)
    assert "already sent with other details" in html
    assert key_in(html) != key
    assert wallet_of(grace).balance == Decimal("10")


def test_a_tampered_fee_is_refused(client, student, grace):
    transfer_fee()
    fund(student, "100", "USD")
    db.session.commit()
    data = {**_form(grace.email, "10", ledger.new_key()), "confirmed": "1", "fee": "0.00"}
    response = client.post("/wallet/send", data=data)
    assert response.status_code == 422 and "The fee for this transfer is now 0.35 USD" in body(response)
    assert wallet_of(grace) is None and wallet_of(student).balance == Decimal("100")


@pytest.mark.parametrize("data", [
    {}, {"confirmed": "1"}, {"confirmed": "1", "idempotency_key": "../../etc"},
    {"recipient": "x" * 5000, "amount": "9" * 400, "currency": "USD", "confirmed": "1", "idempotency_key": "k" * 32},
])
def test_malformed_posts_never_500(client, student, data):
    for path in ("/wallet/send", "/wallet/send/preview"):
        for headers in ({}, HX):
            response = client.post(path, data=data, headers=headers)
            assert 200 <= response.status_code < 500, body(response)[:500]


# ------------------------------------------------------------------ dashboard


def test_dashboard_has_a_wallet_card(client, student):
    fund(student, "42", "USD")
    html = body(client.get("/dashboard"))
    card = html[html.index('<article id="wallet"'):]
    card = card[:card.index("</article>")]
    assert "42.00 USD" in card and "0.00 AZR" in card
    assert 'href="/wallet/"' in card and 'href="/wallet/send"' in card


# ------------------------------------------------------------------ statement budget


def _many(student, grace, n):
    fund(grace, "1000", "USD")
    for i in range(n):
        fund(student, "1", "USD", description=f"Deposit {i}")
    for _ in range(n // 4):
        from portal.money.wallets import services

        services.send_money(grace, student.email, "1", "USD", "hi", ledger.new_key())


#: What each wallet page sends, the request's own statements (its session lookup) included: the
#: balances and the recent activity are one statement (the overview adds one for the unpaid
#: invoice of a past-due plan), a history page one, the send form's balances one, the balance
#: refresh one.
PAGE_STATEMENTS = {
    "/wallet/": 3,
    "/wallet/history": 2,
    "/wallet/history?type=deposit&currency=USD": 2,
    "/wallet/history?from=2000-01-01&to=2999-12-31": 2,
    "/wallet/send": 2,
}


@pytest.mark.parametrize("path", [*PAGE_STATEMENTS, "/dashboard"])
def test_pages_stay_within_the_statement_budget(client, student, grace, statements, path):
    _many(student, grace, 4)
    client.get(path)
    with statements() as few:
        assert client.get(path).status_code == 200
    _many(student, grace, 120)
    with statements() as many:
        response = client.get(path)
    assert response.status_code == 200
    assert many.count <= PAGE_STATEMENTS.get(path, BUDGET), many.statements
    assert many.count == few.count, (few.statements, many.statements)


def _older(html: str) -> str:
    return re.search(r'href="(/wallet/history\?after=[^"]+)"', html).group(1).replace("&amp;", "&")


@pytest.mark.parametrize("htmx", [False, True])
def test_an_older_history_page_costs_what_the_first_does(client, student, grace, statements, htmx):
    headers = HX if htmx else {}
    _many(student, grace, 40)
    older = _older(body(client.get("/wallet/history")))
    client.get(older, headers=headers)
    with statements() as few:
        assert client.get(older, headers=headers).status_code == 200
    _many(student, grace, 120)
    older = _older(body(client.get(_older(body(client.get("/wallet/history"))))))
    with statements() as many:
        assert client.get(older, headers=headers).status_code == 200
    assert many.count == few.count <= PAGE_STATEMENTS["/wallet/history"], many.statements


def test_the_balance_refresh_reads_only_the_balances(client, student, grace, statements):
    _many(student, grace, 8)
    client.get("/wallet/", headers={**HX, "HX-Target": "balances"})
    with statements() as refresh:
        response = client.get("/wallet/", headers={**HX, "HX-Target": "balances"})
    assert response.status_code == 200 and "<section id=\"balances\"" in body(response)
    assert refresh.count <= PAGE_STATEMENTS["/wallet/"], refresh.statements
    assert not any("transactions" in statement for statement in refresh.statements), refresh.statements
