"""The staff's card pages: every card with its holder (search by e-mail), a card's page (freeze
with a reason, unfreeze, its authorization log), the authorization log across cards (filters,
keyset pages), the network messages, and the admins' card terminal sending signed messages over
HTTP to the portal's own endpoint; roles, htmx, malformed input."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from portal.db import db
from portal.money.cards import admin_queries, services
from portal.money.cards.models import CardState, CardTransaction
from tests.factories import PASSWORD, create_user
from tests.money.cards.helpers import auth_body, card_holder, issued, new_id, post
from tests.money.factories import wallet_of

HX = {"HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture(params=["admin", "compliance"])
def staff(request, login_as):
    return login_as(request.param)


@pytest.fixture
def admin(login_as):
    return login_as("admin")


@pytest.fixture
def holder():
    return card_holder("100.00")


# ------------------------------------------------------------------ cards of anyone


def test_staff_see_every_card_with_its_holder_never_the_number(client, staff, holder):
    card, revealed = issued(holder)
    html = body(client.get("/wallet/admin/cards"))
    assert card.masked in html and holder.email in html and holder.full_name in html
    assert revealed.number not in html
    assert f'href="/wallet/admin/cards/{card.id}"' in html


def test_the_search_by_email_finds_the_holders_cards(client, staff, holder):
    card, _ = issued(holder)
    other = card_holder()
    other_card, _ = issued(other)
    found = client.get("/wallet/admin/cards", query_string={"email": holder.email[:12]}, headers=HX)
    html = body(found)
    assert found.status_code == 200 and "<html" not in html and 'id="results"' in html
    assert card.masked in html and other_card.masked not in html
    none = body(client.get("/wallet/admin/cards", query_string={"email": "nobody-%_\\@"}))
    assert "No card belongs" in none


def test_the_list_pages_by_key(client, staff, monkeypatch):
    monkeypatch.setattr(admin_queries, "PAGE_SIZE", 2)
    user = card_holder()
    cards = [services.issue_card(user, "USD") for _ in range(3)]
    first = body(client.get("/wallet/admin/cards", query_string={"email": user.email}))
    more = re.search(r'href="(/wallet/admin/cards\?[^"]*after=[^"]+)"', first)
    assert more, first
    rest = body(client.get(more.group(1).replace("&amp;", "&"), headers=HX))
    shown = [c for c in cards if c.masked in first], [c for c in cards if c.masked in rest]
    assert len(shown[0]) == 2 and len(shown[1]) == 1 and "<html" not in rest


def test_a_cards_admin_page_shows_its_log_with_decline_reasons(client, staff, holder):
    card, revealed = issued(holder)
    post(client, "authorize", auth_body(revealed, "10.00"))
    post(client, "authorize", auth_body(revealed, "5000.00"))
    html = body(client.get(f"/wallet/admin/cards/{card.id}"))
    assert holder.email in html and "Not enough money in the wallet" in html and "<code>51</code>" in html
    assert "<code>00</code>" in html and revealed.number not in html


def test_staff_freeze_needs_a_reason_and_only_staff_unfreeze(client, staff, holder):
    card, revealed = issued(holder)
    refused = client.post(f"/wallet/admin/cards/{card.id}/freeze", data={"reason": "  "}, headers=HX)
    assert refused.status_code == 422 and "Give a reason" in body(refused)
    db.session.refresh(card)
    assert card.state == CardState.ACTIVE
    frozen = client.post(f"/wallet/admin/cards/{card.id}/freeze", data={"reason": "Reported stolen"}, headers=HX)
    assert frozen.status_code == 200 and "Reported stolen" in body(frozen) and frozen.headers["HX-Trigger"]
    db.session.refresh(card)
    assert card.state == CardState.FROZEN and card.frozen_by_staff
    assert post(client, "authorize", auth_body(revealed, "1.00")).get_json()["code"] == "62"
    with pytest.raises(Exception, match="ask support"):
        services.unfreeze(holder, card.id)
    db.session.rollback()
    thawed = client.post(f"/wallet/admin/cards/{card.id}/unfreeze")
    assert thawed.status_code == 302 and thawed.headers["Location"].endswith(f"/wallet/admin/cards/{card.id}")
    db.session.refresh(card)
    assert card.state == CardState.ACTIVE


def test_unknown_cards_are_not_found(client, staff):
    missing = uuid.uuid4()
    assert client.get(f"/wallet/admin/cards/{missing}").status_code == 404
    assert client.post(f"/wallet/admin/cards/{missing}/freeze", data={"reason": "x"}).status_code == 404
    assert client.post(f"/wallet/admin/cards/{missing}/unfreeze").status_code == 404


# ------------------------------------------------------------------ the log and the messages


def test_the_log_filters_declines_and_codes_and_pages_by_key(client, staff, holder, monkeypatch):
    card, revealed = issued(holder)
    for amount in ("1.00", "2.00"):
        post(client, "authorize", auth_body(revealed, amount))
    post(client, "authorize", auth_body(revealed, "9999.00"))
    post(client, "authorize", auth_body(revealed, "1.00", cvv="000" if revealed.security_code != "000" else "111"))
    html = body(client.get("/wallet/admin/cards/log", query_string={"declined": "1", "card": str(card.id)}))
    assert "Not enough money" in html and "Wrong security code" in html and "<code>00</code>" not in html
    only = body(client.get("/wallet/admin/cards/log", query_string={"code": "N7", "card": str(card.id)}, headers=HX))
    assert "Wrong security code" in only and "Not enough money" not in only and "<html" not in only
    monkeypatch.setattr(admin_queries, "PAGE_SIZE", 2)
    first = body(client.get("/wallet/admin/cards/log", query_string={"card": str(card.id)}))
    more = re.search(r'href="(/wallet/admin/cards/log\?[^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert f"card={card.id}" in more
    rest = body(client.get(more, headers=HX))
    assert rest.count('class="card-tx ') == 2 and first.count('class="card-tx ') == 2


@pytest.mark.parametrize("query", [{"code": "ZZ"}, {"kind": "nonsense"}, {"card": "not-a-uuid"},
                                   {"user": "x" * 500}, {"code": "9"}])
def test_a_malformed_filter_is_a_clear_answer(client, staff, query):
    response = client.get("/wallet/admin/cards/log", query_string=query)
    assert response.status_code == 422 and "field-error" in body(response)


def test_a_malformed_cursor_is_the_first_page(client, staff, holder):
    _card, revealed = issued(holder)
    post(client, "authorize", auth_body(revealed, "1.00"))
    for path in ("/wallet/admin/cards/log", "/wallet/admin/cards", "/wallet/admin/cards/messages"):
        response = client.get(path, query_string={"after": "%%%"})
        assert response.status_code == 200, path
    assert "Campus Cafe" in body(client.get("/wallet/admin/cards/log", query_string={"after": "garbage"}))


def test_the_network_messages_show_unmatched_and_parked_ones(client, staff):
    post(client, "capture", {"id": new_id("cap"), "authorization_id": "auth_never_seen", "amount": "5.00",
                             "currency": "USD"})
    html = body(client.get("/wallet/admin/cards/messages"))
    assert "auth_never_seen" in html and "Parked" in html


# ------------------------------------------------------------------ the terminal


class _Response:
    def __init__(self, response):
        self.status_code = response.status_code
        self._json = response.get_json(silent=True)
        self.text = response.get_data(as_text=True)

    def json(self):
        if self._json is None:
            raise ValueError("not JSON")
        return self._json


@pytest.fixture
def network_over_client(app, monkeypatch):
    """The terminal's HTTP client, handing each request to a test client of the app (as a
    request over the network would reach it), recording what was sent."""
    from blueprints.wallet import cards_admin

    sent = []

    class Transport:
        def __init__(self):
            self.client = app.test_client()

        def post(self, url, data=None, headers=None, timeout=None):
            sent.append((url, data, dict(headers or {})))
            return _Response(self.client.post(url.split("localhost", 1)[-1], data=data, headers=headers))

    monkeypatch.setattr(cards_admin, "http_session", Transport)
    return sent


def test_the_terminal_buys_with_a_card_over_signed_http(client, admin, holder, network_over_client):
    card, revealed = issued(holder)
    page = client.get("/wallet/admin/cards/terminal")
    assert page.status_code == 200 and "http://localhost" in body(page)
    response = client.post("/wallet/admin/cards/terminal", headers=HX, data={
        "op": "authorize", "number": revealed.grouped_number, "exp": f"{revealed.exp_month:02d}/{revealed.exp_year % 100:02d}",
        "cvv": revealed.security_code, "amount": "12.00", "currency": "USD", "merchant": "1"})
    html = body(response)
    assert response.status_code == 200 and "Approved" in html and "<code>00</code>" in html
    url, sent_body, headers = network_over_client[-1]
    assert url == "http://localhost/wallet/cards/network/authorize" and "Azora-Card-Signature" in headers
    assert revealed.number not in html  # neither echoed back nor shown
    auth = db.session.scalar(select(CardTransaction).where(CardTransaction.card_id == card.id))
    assert auth.merchant_name == "University Bookstore" and auth.amount == 12
    assert f'value="{auth.network_id}"' in html  # ready for the capture
    captured = client.post("/wallet/admin/cards/terminal", headers=HX, data={
        "op": "capture", "authorization_id": auth.network_id, "amount": "12.00", "currency": "USD"})
    assert "Approved" in body(captured)
    assert wallet_of(holder).balance == 88


def test_the_terminal_shows_a_decline_in_words(client, admin, holder, network_over_client):
    card, revealed = issued(holder)
    services.freeze(holder, card.id)
    db.session.flush()
    response = client.post("/wallet/admin/cards/terminal", data={
        "op": "authorize", "number": revealed.number, "exp": f"{revealed.exp_month}/{revealed.exp_year}",
        "cvv": revealed.security_code, "amount": "1", "currency": "USD", "merchant": "0"})
    html = body(response)
    assert "Declined" in html and "<code>62</code>" in html and "The card is frozen" in html


@pytest.mark.parametrize("data, field", [
    ({"op": "authorize", "number": "12ab", "exp": "12/30", "cvv": "123", "amount": "1"}, "number"),
    ({"op": "authorize", "number": "4" * 16, "exp": "13/30", "cvv": "123", "amount": "1"}, "exp"),
    ({"op": "authorize", "number": "4" * 16, "exp": "12/30", "cvv": "x", "amount": "1"}, "cvv"),
    ({"op": "authorize", "number": "4" * 16, "exp": "12/30", "cvv": "123", "amount": "-1"}, "amount"),
    ({"op": "authorize", "number": "4" * 16, "exp": "12/30", "cvv": "123", "amount": "1", "merchant": "99"}, "merchant"),
    ({"op": "capture", "amount": "1"}, "authorization_id"),
    ({"op": "explode"}, "op"),
    ({"op": "refund", "amount": "1", "currency": "ZZZ", "number": "4" * 16}, "currency"),
])
def test_the_terminal_refuses_malformed_input_before_sending(client, admin, network_over_client, data, field):
    data = {"currency": "USD", **data}
    response = client.post("/wallet/admin/cards/terminal", data=data, headers=HX)
    assert response.status_code == 422 and f't-{field}-error' in body(response) or "field-error" in body(response)
    assert response.status_code == 422 and network_over_client == []


def test_the_terminal_says_when_the_endpoint_cannot_be_reached(client, admin, app, monkeypatch):
    import requests

    from blueprints.wallet import cards_admin

    class Down:
        def post(self, *args, **kwargs):
            raise requests.ConnectionError("refused")

    monkeypatch.setattr(cards_admin, "http_session", Down)
    response = client.post("/wallet/admin/cards/terminal", data={
        "op": "reverse", "authorization_id": "auth_x"})
    assert response.status_code == 502 and "could not be reached" in body(response)


def test_only_admins_use_the_terminal(client, login_as):
    login_as("compliance")
    assert client.get("/wallet/admin/cards/terminal").status_code == 403
    assert client.get("/wallet/admin/cards").status_code == 200


def test_students_and_faculty_get_no_staff_page(client, login_as, holder):
    card, _ = issued(holder)
    for role in ("student", "faculty"):
        login_as(role)
        for path in ("/wallet/admin/cards", f"/wallet/admin/cards/{card.id}", "/wallet/admin/cards/log",
                     "/wallet/admin/cards/messages", "/wallet/admin/cards/terminal"):
            assert client.get(path).status_code == 403, (role, path)
        assert client.post(f"/wallet/admin/cards/{card.id}/freeze", data={"reason": "x"}).status_code == 403


def test_a_student_cannot_see_the_admin_pages_of_their_own_card(client, login_as):
    user = login_as("student")
    from tests.compliance.factories import verify

    verify(user, 2)
    card = services.issue_card(user, "USD")
    assert client.get(f"/wallet/admin/cards/{card.id}").status_code == 403
    assert create_user and PASSWORD
