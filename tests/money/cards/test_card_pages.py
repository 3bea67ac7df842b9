"""The holder's card pages: the list and "create a card" (with the reasons it may be refused),
a card's page, reveal after the password (no-store, never anywhere else), freeze, unfreeze,
cancel, replace, spending controls with field errors, spending against the limits, and the
transactions (live poll and older pages); with and without htmx, malformed input, ownership
and the statement budget."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.money.cards import queries, services
from portal.money.cards.models import CardState, VirtualCard
from portal.money.wallets import ledger
from portal.money.wallets.models import WalletStatus
from tests.compliance.factories import verify
from tests.factories import PASSWORD
from tests.money.cards.helpers import auth_body, card_holder, post
from tests.money.factories import fund, wallet_of
from tests.money.factories.exchange import make_pair, make_rate

HX = {"HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def holder(client, login_as):
    user = login_as("student", full_name="Ada Lovelace")
    verify(user, 2)
    fund(user, "100.00", "USD")
    return user


def card_of(user) -> VirtualCard:
    return services.issue_card(user, "USD")


def revealed_of(user, card):
    return services.reveal(user, card.id, PASSWORD)


# ------------------------------------------------------------------ the list and creating


def test_the_list_shows_brand_last4_expiry_state_and_wallet(client, holder):
    card = card_of(holder)
    page = body(client.get("/wallet/cards"))
    assert f"•••• {card.last4}" in page or f"{card.last4}" in page
    assert card.expiry in page and card.brand.capitalize() in page and "USD wallet" in page and "Active" in page
    assert 'aria-current="page">Cards' in page


def test_creating_a_card_with_htmx_answers_the_list_with_the_new_card(client, holder):
    response = client.post("/wallet/cards", data={"currency": "USD"}, headers=HX)
    assert response.status_code == 200
    card = db.session.scalar(select(VirtualCard).where(VirtualCard.user_id == holder.id))
    html = body(response)
    assert 'id="cards-panel"' in html and "<html" not in html
    assert f'id="card-{card.id}"' in html and "is-new" in html
    assert response.headers["HX-Trigger"] == "card-changed"


def test_creating_a_card_without_javascript_goes_to_its_page(client, holder):
    response = client.post("/wallet/cards", data={"currency": "USD"})
    card = db.session.scalar(select(VirtualCard).where(VirtualCard.user_id == holder.id))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/cards/{card.id}")
    assert "is ready to use" in body(client.get(response.headers["Location"]))


def test_below_identity_level_two_the_list_explains_and_links_to_verification(client, login_as):
    user = login_as("student")
    verify(user, 1)
    page = body(client.get("/wallet/cards"))
    assert "verification level 2" in page and 'href="/wallet/verification"' in page
    assert 'action="/wallet/cards"' not in page
    refused = client.post("/wallet/cards", data={"currency": "USD"}, headers=HX)
    assert refused.status_code == 422 and "level 2" in body(refused)
    assert db.session.scalar(select(VirtualCard).where(VirtualCard.user_id == user.id)) is None


def test_a_frozen_wallet_is_explained(client, holder):
    wallet = wallet_of(holder)
    with ledger.as_ledger():
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
    page = body(client.get("/wallet/cards"))
    assert "frozen wallet cannot have a new card" in page
    refused = client.post("/wallet/cards", data={"currency": "USD"})
    assert refused.status_code == 422 and "frozen" in body(refused)


def test_the_card_limit_is_explained(client, holder, app):
    for _ in range(int(app.config.get("CARD_MAX_LIVE_PER_USER", 3))):
        card_of(holder)
    page = body(client.get("/wallet/cards"))
    assert "the most one person may have" in page
    refused = client.post("/wallet/cards", data={"currency": "USD"}, headers=HX)
    assert refused.status_code == 422 and "cancel one first" in body(refused)


@pytest.mark.parametrize("currency", ["", "XXX", "usd'--", "\u202e" * 5, "A" * 500])
def test_a_malformed_currency_is_refused_clearly(client, holder, currency):
    response = client.post("/wallet/cards", data={"currency": currency}, headers=HX)
    assert response.status_code == 422


# ------------------------------------------------------------------ the card page and ownership


def test_the_card_page_never_shows_the_number(client, holder):
    card = card_of(holder)
    revealed = revealed_of(holder, card)
    html = body(client.get(f"/wallet/cards/{card.id}"))
    assert card.last4 in html and revealed.number not in html and revealed.grouped_number not in html
    assert f'action="/wallet/cards/{card.id}/reveal"' in html


def test_another_students_card_is_not_found_on_every_route(client, holder):
    other = card_holder()
    card = services.issue_card(other, "USD")
    for path in ("", "/spending", "/transactions", "/transactions?since="):
        assert client.get(f"/wallet/cards/{card.id}{path}", headers=HX).status_code == 404, path
    for action in ("reveal", "freeze", "unfreeze", "cancel", "replace", "controls"):
        response = client.post(f"/wallet/cards/{card.id}/{action}", data={"password": PASSWORD, "daily_limit": "5"})
        assert response.status_code == 404, action
    db.session.refresh(card)
    assert card.state == CardState.ACTIVE and card.daily_limit is None
    assert client.get(f"/wallet/cards/{uuid.uuid4()}").status_code == 404
    assert client.get("/wallet/cards/not-a-uuid").status_code == 404


# ------------------------------------------------------------------ reveal


def test_reveal_after_the_password_shows_number_and_code_not_stored(client, holder):
    card = card_of(holder)
    expected = revealed_of(holder, card)
    response = client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD}, headers=HX)
    html = body(response)
    assert response.status_code == 200
    assert expected.grouped_number in html and expected.security_code in html
    assert response.headers["Cache-Control"] == "no-store"
    assert "<html" not in html and 'id="card-reveal"' in html
    # It hides itself: htmx asks the page again after a minute, and a Hide link works without it.
    assert 'hx-trigger="load delay:60s"' in html and ">Hide</a>" in html
    # Nowhere else: the card page, the list, the wallet.
    for path in (f"/wallet/cards/{card.id}", "/wallet/cards", "/wallet/", f"/wallet/cards/{card.id}/transactions"):
        assert expected.number not in body(client.get(path)), path


def test_a_reveal_is_never_logged(client, holder, caplog):
    import logging

    card = card_of(holder)
    expected = revealed_of(holder, card)
    with caplog.at_level(logging.DEBUG):
        response = client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD}, headers=HX)
        client.post(f"/wallet/cards/{card.id}/reveal", data={"password": "wrong"}, headers=HX)
    assert expected.grouped_number in body(response)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert expected.number not in logged and expected.grouped_number not in logged and PASSWORD not in logged


def test_reveal_without_javascript_is_a_full_page_with_no_store(client, holder):
    card = card_of(holder)
    expected = revealed_of(holder, card)
    response = client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD})
    assert response.status_code == 200 and "<html" in body(response)
    assert expected.grouped_number in body(response) and response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("password", ["wrong", "", None, "x" * 5000])
def test_reveal_with_a_wrong_password_is_refused(client, holder, password):
    card = card_of(holder)
    expected = revealed_of(holder, card)
    data = {} if password is None else {"password": password}
    response = client.post(f"/wallet/cards/{card.id}/reveal", data=data, headers=HX)
    assert response.status_code == 422
    html = body(response)
    assert "password is not right" in html
    assert expected.number not in html and expected.grouped_number not in html and "card-cvv" not in html
    assert response.headers["Cache-Control"] == "no-store"


def test_wrong_passwords_are_counted_and_pause_reveals(client, holder):
    card = card_of(holder)
    expected = revealed_of(holder, card)
    for _ in range(services.REVEAL_ATTEMPTS):
        assert client.post(f"/wallet/cards/{card.id}/reveal", data={"password": "wrong"}, headers=HX).status_code == 422
    paused = client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD}, headers=HX)
    html = body(paused)
    assert paused.status_code == 429 and "Too many wrong passwords" in html and expected.number not in html
    assert paused.headers["Cache-Control"] == "no-store" and int(paused.headers["Retry-After"]) > 60


def test_a_right_password_after_a_wrong_one_reveals(client, holder):
    card = card_of(holder)
    assert client.post(f"/wallet/cards/{card.id}/reveal", data={"password": "wrong"}, headers=HX).status_code == 422
    assert client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD}, headers=HX).status_code == 200


def test_a_canceled_card_cannot_be_revealed(client, holder):
    card = card_of(holder)
    services.cancel(holder, card.id)
    response = client.post(f"/wallet/cards/{card.id}/reveal", data={"password": PASSWORD}, headers=HX)
    assert response.status_code in (409, 422) and "no longer works" in body(response)


# ------------------------------------------------------------------ state


def test_freeze_and_unfreeze_with_htmx_swap_the_state(client, holder):
    card = card_of(holder)
    frozen = client.post(f"/wallet/cards/{card.id}/freeze", headers=HX)
    assert frozen.status_code == 200 and 'id="card-state"' in body(frozen) and "Unfreeze" in body(frozen)
    assert frozen.headers["HX-Trigger"] == "card-changed"
    db.session.refresh(card)
    assert card.state == CardState.FROZEN
    thawed = client.post(f"/wallet/cards/{card.id}/unfreeze", headers=HX)
    assert thawed.status_code == 200 and ">Freeze</button>" in body(thawed)
    db.session.refresh(card)
    assert card.state == CardState.ACTIVE


def test_freeze_without_javascript_redirects_to_the_card(client, holder):
    card = card_of(holder)
    response = client.post(f"/wallet/cards/{card.id}/freeze")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/cards/{card.id}")
    assert "Card frozen" in body(client.get(response.headers["Location"]))


def test_a_card_frozen_by_staff_cannot_be_unfrozen_by_its_holder(client, holder, make_user):
    card = card_of(holder)
    services.freeze(make_user("compliance"), card.id, "Looks like fraud")
    page = body(client.get(f"/wallet/cards/{card.id}"))
    assert "Looks like fraud" in page and "Only support can unfreeze it" in page and ">Unfreeze</button>" not in page
    response = client.post(f"/wallet/cards/{card.id}/unfreeze", headers=HX)
    assert response.status_code == 403
    db.session.refresh(card)
    assert card.state == CardState.FROZEN


def test_unfreezing_an_active_card_says_why_not(client, holder):
    card = card_of(holder)
    response = client.post(f"/wallet/cards/{card.id}/unfreeze", headers=HX)
    assert response.status_code == 422 and "not frozen" in body(response)


def test_cancel_stops_the_card(client, holder):
    card = card_of(holder)
    response = client.post(f"/wallet/cards/{card.id}/cancel", headers=HX)
    assert response.status_code == 200 and "canceled" in body(response).lower()
    db.session.refresh(card)
    assert card.state == CardState.CANCELED
    again = client.post(f"/wallet/cards/{card.id}/cancel", headers=HX)
    assert again.status_code == 409


def test_replace_gives_a_new_number_and_the_old_one_stops(client, holder):
    card = card_of(holder)
    old = revealed_of(holder, card)
    response = client.post(f"/wallet/cards/{card.id}/replace", headers=HX)
    assert response.status_code == 204
    new = db.session.scalar(select(VirtualCard).where(VirtualCard.user_id == holder.id,
                                                      VirtualCard.state == CardState.ACTIVE))
    assert response.headers["HX-Location"] == f"/wallet/cards/{new.id}"
    db.session.refresh(card)
    assert card.state == CardState.REPLACED and card.replaced_by_id == new.id
    assert revealed_of(holder, new).number != old.number
    assert post(client, "authorize", auth_body(old, "1.00")).get_json()["code"] == "46"
    old_page = body(client.get(f"/wallet/cards/{card.id}"))
    assert f'href="/wallet/cards/{new.id}"' in old_page and "replaced" in old_page


# ------------------------------------------------------------------ controls and spending


def test_controls_are_saved_and_shown(client, holder):
    card = card_of(holder)
    response = client.post(f"/wallet/cards/{card.id}/controls", headers=HX, data={
        "per_purchase_limit": "20", "daily_limit": "50", "monthly_limit": "300",
        "blocked_mcc_groups": ["gambling", "crypto"], "blocked_countries": "mt, cy"})
    assert response.status_code == 200 and "Spending controls saved." in body(response)
    db.session.refresh(card)
    assert (card.per_purchase_limit, card.daily_limit, card.monthly_limit) == (Decimal(20), Decimal(50), Decimal(300))
    assert card.blocked_mcc_groups == ["gambling", "crypto"] and card.blocked_countries == ["CY", "MT"]
    page = body(client.get(f"/wallet/cards/{card.id}"))
    assert re.search(r'value="gambling" checked', page) and 'value="CY, MT"' in page
    assert 'value="50.00"' in page and 'value="300.00"' in page


@pytest.mark.parametrize("data, field, words", [
    ({"daily_limit": "abc"}, "daily_limit", "Daily limit"),
    ({"per_purchase_limit": "60", "daily_limit": "50"}, "per_purchase_limit", "above the daily limit"),
    ({"daily_limit": "500", "monthly_limit": "100"}, "daily_limit", "above the monthly limit"),
    ({"blocked_mcc_groups": ["casinos"]}, "blocked_mcc_groups", "no merchant category group"),
    ({"blocked_countries": "Malta"}, "blocked_countries", "not a country code"),
    ({"monthly_limit": "-5"}, "monthly_limit", "Monthly limit"),
    ({"monthly_limit": "1e400"}, "monthly_limit", "Monthly limit"),
])
def test_wrong_controls_show_each_fields_error(client, holder, data, field, words):
    card = card_of(holder)
    response = client.post(f"/wallet/cards/{card.id}/controls", data=data, headers=HX)
    assert response.status_code == 422
    html = body(response)
    assert words in html and 'class="field-error"' in html
    db.session.refresh(card)
    assert card.daily_limit is None and card.blocked_mcc_groups == []


def test_spending_today_and_this_month_against_the_limits(client, holder):
    card = card_of(holder)
    services.set_controls(holder, card.id, daily_limit="50", monthly_limit="200")
    revealed = revealed_of(holder, card)
    assert post(client, "authorize", auth_body(revealed, "12.50")).get_json()["approved"]
    html = body(client.get(f"/wallet/cards/{card.id}/spending", headers=HX))
    assert "12.50 USD" in html and "50.00 USD" in html and "200.00 USD" in html and "<meter" in html


# ------------------------------------------------------------------ transactions, live


def test_the_poll_brings_new_transactions_with_their_details(client, holder):
    card = card_of(holder)
    revealed = revealed_of(holder, card)
    page = body(client.get(f"/wallet/cards/{card.id}"))
    poll = re.search(r'hx-get="([^"]*transactions\?since=[^"]*)" hx-trigger="every 2s"', page).group(1)
    quiet = client.get(poll.replace("&amp;", "&"), headers=HX)
    assert quiet.status_code == 200 and "card-tx-" not in body(quiet).replace("card-tx-poll", "")
    assert "HX-Trigger" not in quiet.headers
    assert post(client, "authorize", auth_body(revealed, "9.99", name="Campus Cafe", mcc="5812")).get_json()["approved"]
    services.set_controls(holder, card.id, blocked_mcc_groups=["gambling"])
    declined = post(client, "authorize", auth_body(revealed, "5.00", name="Lucky Spin Casino", mcc="7995", country="MT"))
    assert declined.get_json()["code"] == "57"
    fresh = client.get(poll.replace("&amp;", "&"), headers=HX)
    html = body(fresh)
    assert "Campus Cafe" in html and "Restaurants and cafes" in html and "9.99 USD" in html and "Pending" in html
    assert "Lucky Spin Casino" in html and "Declined" in html and "Merchant category blocked on this card" in html, html
    # Newest first (prepended above the older rows), and the next poll asks from the newest.
    assert html.index("Lucky Spin") < html.index("Campus Cafe")
    assert html.index('id="card-tx-poll"') < html.index("Lucky Spin")
    assert fresh.headers["HX-Trigger"] == "card-changed"
    next_poll = re.search(r'hx-get="([^"]*)" hx-trigger', html).group(1).replace("&amp;", "&")
    assert "card-tx-" not in body(client.get(next_poll, headers=HX)).replace("card-tx-poll", "")


def test_a_purchase_in_another_currency_shows_both_amounts(client, login_as):
    user = login_as("student")
    verify(user, 2)
    fund(user, "1000", "AZR")
    card = services.issue_card(user, "AZR")
    make_rate(make_pair("USD", "AZR"), "3.333333333")
    assert post(client, "authorize", auth_body(revealed_of(user, card), "10.00", "USD")).get_json()["approved"]
    html = body(client.get(f"/wallet/cards/{card.id}"))
    row = html[html.index("card-tx-pending"):]
    assert "10.00 USD" in row and "33.33 AZR" in row


def test_the_poll_with_a_malformed_cursor_and_without_htmx(client, holder):
    card = card_of(holder)
    assert client.get(f"/wallet/cards/{card.id}/transactions?since=%%%", headers=HX).status_code == 200
    plain = client.get(f"/wallet/cards/{card.id}/transactions?since=abc")
    assert plain.status_code == 302
    assert client.get(f"/wallet/cards/{card.id}/transactions?after=garbage").status_code == 200


def test_older_transactions_come_a_page_at_a_time(client, holder):
    card = card_of(holder)
    revealed = revealed_of(holder, card)
    for n in range(queries.PAGE_SIZE + 2):
        assert post(client, "authorize", auth_body(revealed, f"0.{n + 10}")).get_json()["approved"]
    page = body(client.get(f"/wallet/cards/{card.id}"))
    assert page.count('class="card-tx card-tx-') == queries.PAGE_SIZE
    more = re.search(r'href="(/wallet/cards/[^"]*/transactions\?after=[^"]+)"', page).group(1)
    rest = client.get(more, headers=HX)
    html = body(rest)
    assert rest.status_code == 200 and "<html" not in html and html.count('class="card-tx card-tx-') == 2
    assert "0.10 USD" in html and "0.11 USD" in html  # the two oldest
    plain = client.get(more)
    assert "<html" in body(plain) and body(plain).count('class="card-tx card-tx-') == 2


#: The statements of the list and the card page, whatever the number of cards and transactions
#: (the request's own session lookup included).
PAGE_BUDGET = {"list": 6, "card": 8}


def _purchases(client, user, card, count):
    revealed = revealed_of(user, card)
    for n in range(count):
        post(client, "authorize", auth_body(revealed, f"1.{n:02d}"))


def test_the_pages_statements_stay_flat_with_data(client, holder, statements):
    first = card_of(holder)
    _purchases(client, holder, first, 1)
    with statements() as few_list:
        client.get("/wallet/cards")
    with statements() as few_card:
        client.get(f"/wallet/cards/{first.id}")
    for _ in range(2):
        card_of(holder)
    _purchases(client, holder, first, 6)
    with statements() as many_list:
        client.get("/wallet/cards")
    with statements() as many_card:
        client.get(f"/wallet/cards/{first.id}")
    assert many_list.count == few_list.count <= PAGE_BUDGET["list"], many_list.statements
    assert many_card.count == few_card.count <= PAGE_BUDGET["card"], many_card.statements
    with statements() as poll:
        client.get(f"/wallet/cards/{first.id}/transactions?since=", headers=HX)
    assert poll.count <= 5, poll.statements
