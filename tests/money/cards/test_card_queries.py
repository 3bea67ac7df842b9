"""Reads for the card pages: the holder's cards and transactions (paged, and what is new since
a page was drawn), staff's log with its filters, and row-level security on the card tables."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import NotFound
from portal.money.cards import admin_queries, codes, network, queries, services
from portal.money.cards.models import CardNetworkMessage, CardTransaction, VirtualCard
from tests.money.cards.helpers import auth_body, card_holder, issued, message, new_id


def test_my_cards_and_the_limit(app):
    user = card_holder()
    first = services.issue_card(user, "USD")
    services.cancel(user, first.id)
    second = services.issue_card(user, "USD")
    overview = queries.my_cards(user)
    assert [c.id for c in overview.cards] == [second.id, first.id]  # live first
    assert overview.may_add
    with pytest.raises(NotFound):
        queries.my_card(card_holder(), second.id)


def test_transactions_page_and_what_is_new(app):
    user = card_holder()
    _card, revealed = issued(user)
    answers = [network.authorize(message("authorize", auth_body(revealed, amount="1"))) for _ in range(5)]
    page = queries.transactions(user.id, size=3)
    assert len(page.items) == 3 and page.has_next
    rest = queries.transactions(user.id, cursor=page.next_cursor, size=3)
    assert len(rest.items) == 2 and not rest.has_next
    shown = page.items[0]
    assert queries.newer_than(user.id, (shown.created_at, shown.id)) == []
    later = network.authorize(message("authorize", auth_body(revealed, amount="2")))
    assert [r.id for r in queries.newer_than(user.id, (shown.created_at, shown.id))] == [later.reference]
    assert {a.reference for a in answers} <= {r.id for r in page.items + rest.items}


def test_spending_counts_holds_and_captures_not_declines_or_reversals(app):
    user = card_holder("100")
    card, revealed = issued(user)
    held = auth_body(revealed, amount="10")
    network.authorize(message("authorize", held))
    network.capture(message("capture", {"id": new_id(), "authorization_id": held["id"], "amount": "12",
                                        "currency": "USD"}))
    network.authorize(message("authorize", auth_body(revealed, amount="5")))
    gone = auth_body(revealed, amount="7")
    network.authorize(message("authorize", gone))
    network.reverse(message("reverse", {"id": new_id(), "authorization_id": gone["id"]}))
    network.authorize(message("authorize", auth_body(revealed, amount="500")))  # declined
    spent = queries.spending(card)
    assert (spent.today, spent.this_month) == (Decimal("17"), Decimal("17"))


def test_the_staff_log_filters_declines_by_code(app):
    user = card_holder("5")
    _card, revealed = issued(user)
    network.authorize(message("authorize", auth_body(revealed, amount="1")))
    network.authorize(message("authorize", auth_body(revealed, amount="50")))
    declined = admin_queries.authorization_log(admin_queries.LogFilters(declined=True, user_id=user.id))
    assert [(row.response_code, email) for row, _name, email in declined.items] == [(codes.INSUFFICIENT_FUNDS,
                                                                                     user.email)]
    by_code = admin_queries.authorization_log(admin_queries.LogFilters(code="00", user_id=user.id))
    assert len(by_code.items) == 1
    network.authorize(message("authorize", {**auth_body(revealed), "card": {
        "number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvv": "123"}, "id": new_id()}))
    assert admin_queries.network_messages(size=5).items[0].response_code == codes.NO_SUCH_CARD


@pytest.mark.parametrize(("role", "sees_other"), [("student", False), ("admin", True), ("compliance", True),
                                                  ("faculty", False)])
def test_row_level_security_on_cards(app, role, sees_other, make_user):
    owner = card_holder()
    _card, revealed = issued(owner)
    network.authorize(message("authorize", auth_body(revealed, amount="1")))
    network.authorize(message("authorize", {**auth_body(revealed), "card": {
        "number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvv": "123"}, "id": new_id()}))
    viewer = make_user(role)
    with acting_as(Actor.for_user(viewer.id, role), db.session):
        cards = db.session.scalar(select(func.count()).select_from(VirtualCard).where(VirtualCard.user_id == owner.id))
        txs = db.session.scalar(select(func.count()).select_from(CardTransaction)
                                .where(CardTransaction.user_id == owner.id))
        messages = db.session.scalar(select(func.count()).select_from(CardNetworkMessage))
    assert (cards, txs) == ((1, 1) if sees_other else (0, 0))
    assert (messages > 0) is sees_other
    with acting_as(Actor.for_user(owner.id, "student"), db.session):
        assert db.session.scalar(select(func.count()).select_from(VirtualCard)
                                 .where(VirtualCard.user_id == owner.id)) == 1
        assert db.session.execute(text("SELECT count(*) FROM card_network_messages")).scalar() == 0
