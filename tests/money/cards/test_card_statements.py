"""The authorization's budget (p99 under 100 ms) rests on few statements: an approval through
the endpoint takes a fixed, small number, however many transactions the card already has."""

from __future__ import annotations

import pytest

from tests.money.cards.helpers import auth_body, card_holder, issued, post

#: The request's identity and block check; the network's identity; the card locked and read with
#: the duplicate check and the float wallets; the ledger's lock; the hold (transaction insert,
#: wallet update); the card transaction insert. The identity is given back after the commit.
BUDGET = 8
#: A card with a daily or monthly limit also reads its spending, once the card is locked.
WITH_LIMITS = BUDGET + 1


def _approve(client, revealed, statements) -> int:
    with statements() as counter:
        response = post(client, "authorize", auth_body(revealed, amount="1"))
    assert response.get_json()["approved"], response.get_json()
    return counter.count


@pytest.mark.parametrize("limits, budget", [(False, BUDGET), (True, WITH_LIMITS)])
def test_an_approval_takes_few_statements_whatever_the_history(app, client, statements, limits, budget):
    user = card_holder("500")
    card, revealed = issued(user)
    from portal.money.cards import services

    if limits:
        services.set_controls(user, card.id, daily_limit="400", monthly_limit="450")
    post(client, "authorize", auth_body(revealed, amount="1"))  # the card float's shard is made on first use
    first = _approve(client, revealed, statements)
    for _ in range(20):
        post(client, "authorize", auth_body(revealed, amount="1"))
    later = _approve(client, revealed, statements)

    assert first == budget, first
    assert later == first


def test_a_decline_takes_no_more_than_an_approval(app, client, statements):
    user = card_holder("500")
    _card, revealed = issued(user)
    post(client, "authorize", auth_body(revealed, amount="1"))
    with statements() as counter:
        answer = post(client, "authorize", auth_body(revealed, amount="900")).get_json()
    assert answer["code"] == "51", answer
    # The hold is refused after the ledger's lock: nothing is written but the declined row.
    assert counter.count == BUDGET - 2, counter.statements
