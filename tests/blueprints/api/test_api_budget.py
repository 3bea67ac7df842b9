"""The bench's API part (tests/perf/api.py), on the test database: the transactions list
answers with a token and keeps within the page budget of statements, however many rows the
user has."""

from __future__ import annotations

from tests.money.factories import fund
from tests.perf import api as api_bench

BUDGET = 12


def test_the_api_transactions_list_keeps_within_the_budget(app, make_user):
    from tests.blueprints.api.conftest import token_for

    few, many = make_user(), make_user()
    fund(few, "1", "USD")
    for n in range(60):
        fund(many, str(n + 1), "USD")
    counts = [api_bench.count_statements(app, token_for(app, user)) for user in (few, many)]
    assert counts[0] == counts[1] <= BUDGET, counts
