"""The statements a confirmed ``POST /wallet/send`` sends."""

from __future__ import annotations

from decimal import Decimal

from portal.money.wallets import fees, ledger
from tests.factories import create_user
from tests.money.factories import fund, wallet_of


def test_confirmed_send_statements(client, login_as, statements):
    ada = login_as("student", full_name="Ada Lovelace")
    grace = create_user("student", full_name="Grace Hopper")
    fees.save_rule(create_user("admin").id, "transfer", "USD", fixed="0.25", percent="1", minimum="0", maximum="")
    fund(ada, "100", "USD")
    fund(grace, "1", "USD")
    warm = {"recipient": grace.email, "amount": "1", "currency": "USD", "note": "", "confirmed": "1",
            "idempotency_key": ledger.new_key(), "fee": "0.26"}
    assert client.post("/wallet/send", data=warm).status_code == 200
    data = {**warm, "idempotency_key": ledger.new_key(), "amount": "10", "fee": "0.35"}
    with statements() as counted:
        response = client.post("/wallet/send", data=data)
    assert response.status_code == 200
    for s in counted.statements:
        print(" ".join(s.split())[:200])
    print(counted.count)
    assert wallet_of(ada).balance == Decimal("89.39")
