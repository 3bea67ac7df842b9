"""The authorization's budget (p99 under 100 ms) rests on few statements: an approval through
the endpoint takes a fixed, small number, however many transactions the card already has."""

from __future__ import annotations

import pytest

from tests.money.cards.helpers import auth_body, card_holder, issued, post

#: The request's identity; its block check; ``card_authorize`` (migration 0021), which sets the
#: network's identity, locks and checks the card, places the hold and records the card
#: transaction. The identity is given back after the commit.
BUDGET = 3
#: A card with a daily or monthly limit reads its spending inside the same call.
WITH_LIMITS = BUDGET


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
    # The hold is refused inside the same call: nothing is written but the declined row.
    assert counter.count == BUDGET, counter.statements
