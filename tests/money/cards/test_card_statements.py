"""The authorization's budget (p99 under 100 ms) rests on few statements: an approval through
the endpoint takes a fixed, small number, however many transactions the card already has."""

from __future__ import annotations

from tests.money.cards.helpers import auth_body, card_holder, issued, post

#: The request's identity and block check; the network's identity; the card lock; the duplicate
#: check with the limits' sums and the float wallet; the ledger's lock; the hold (transaction
#: insert, wallet update); the card transaction insert; the identity restored.
BUDGET = 10


def _approve(client, revealed, statements) -> int:
    with statements() as counter:
        response = post(client, "authorize", auth_body(revealed, amount="1"))
    assert response.get_json()["approved"], response.get_json()
    return counter.count


def test_an_approval_takes_few_statements_whatever_the_history(app, client, statements):
    user = card_holder("500")
    card, revealed = issued(user)
    from portal.money.cards import services

    services.set_controls(user, card.id, daily_limit="400", monthly_limit="450")
    post(client, "authorize", auth_body(revealed, amount="1"))  # the card float's shard is made on first use
    first = _approve(client, revealed, statements)
    for _ in range(20):
        post(client, "authorize", auth_body(revealed, amount="1"))
    later = _approve(client, revealed, statements)

    assert first <= BUDGET, first
    assert later == first
