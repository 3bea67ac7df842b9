"""The confirmed ``POST /wallet/send``: its statements, pinned, and the fee rule kept in process
(read again when any process changes it)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from portal.db import db
from portal.money.wallets import fees, ledger, services
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of

#: A confirmed send, statement by statement (the request's BEGIN/COMMIT and the idempotency
#: key's SAVEPOINT/RELEASE are not counted): the session lookup that sets who acts, the key,
#: the recipient with the fee rule's version, the sender's verification level and plan (the
#: limit), the ledger, the recipient's notification, the key's result. Nothing after the commit.
SEND_STATEMENTS = ("SELECT sv.id", "INSERT INTO idempotency_keys", "SELECT users.id", "SELECT kyc_verifications",
                   "SELECT coalesce(", "SELECT ledger_post(", "INSERT INTO notifications",
                   "UPDATE idempotency_keys")
#: Written once the response has been sent (portal.platform.analytics.capture), outside the
#: request's transaction and its statements: the transfer's analytics event.
AFTER_THE_RESPONSE = "INSERT INTO events"


@pytest.fixture
def grace():
    return create_user("student", full_name="Grace Hopper")


def transfer_fee(fixed="0.25"):
    return fees.save_rule(create_user("admin").id, "transfer", "USD", fixed=fixed, percent="1", minimum="0", maximum="")


def confirmed(to, amount, fee):
    return {"recipient": to.email, "amount": amount, "currency": "USD", "note": "", "confirmed": "1",
            "idempotency_key": ledger.new_key(), "fee": fee}


def test_a_confirmed_send_is_eight_statements_and_only_the_analytics_event_after_the_response(client, login_as, grace, statements):
    ada = login_as("student", full_name="Ada Lovelace")
    transfer_fee()
    fund(ada, "100")
    assert client.post("/wallet/send", data=confirmed(grace, "1", "0.26")).status_code == 200  # warm
    data = confirmed(grace, "10", "0.35")
    with statements() as counted:
        response = client.post("/wallet/send", data=data)
        assert response.status_code == 200 and "Money sent" in response.get_data(as_text=True)
        answered = len(counted.statements)
        response.close()  # the server closes the response once it has sent it
    shapes = [" ".join(s.split()) for s in counted.statements]
    assert answered == len(SEND_STATEMENTS), shapes
    assert all(shape.startswith(start) for shape, start in zip(shapes, SEND_STATEMENTS, strict=False)), shapes
    assert shapes[answered:] == [shapes[-1]] and shapes[-1].startswith(AFTER_THE_RESPONSE), shapes
    assert not any("set_config" in shape for shape in shapes[1:])  # one identity, set by the lookup
    assert wallet_of(ada).balance == Decimal("100") - Decimal("1.26") - Decimal("10.35")
    assert wallet_of(grace).balance == Decimal("11")


def test_the_fee_rule_is_read_once_and_a_change_by_another_process_is_seen(login_as, grace, statements):
    ada = login_as("student", full_name="Ada Lovelace")
    rule = transfer_fee()
    fund(ada, "100")

    def send(amount, fee=None):
        with as_user(ada), statements() as counted:
            receipt, _ = services.send_money(ada, grace.email, amount, "USD", "", ledger.new_key(), expected_fee=fee)
        return receipt, [s for s in counted.statements if s.lstrip().startswith("SELECT transaction_fees.")]

    receipt, reads = send("10")
    assert receipt["fee"] == "0.35" and len(reads) == 1  # a new rule: read
    receipt, reads = send("20")
    assert receipt["fee"] == "0.45" and reads == []  # kept
    # Another process changes the rule (no cache of this one is told): the version read with
    # the recipient differs, so the rule is read again and the confirmed old fee refused.
    with as_user(create_user("admin")):
        changed = db.session.execute(text('UPDATE transaction_fees SET "fixedAmount" = 1 WHERE id = :id'), {"id": rule.id})
        assert changed.rowcount == 1
    with pytest.raises(services.FeeChanged, match="The fee for this transfer is now 1.10 USD"):
        send("10", fee="0.35")
    receipt, reads = send("10", fee="1.10")
    assert receipt["fee"] == "1.10" and reads == []
    # A rule switched off is no rule.
    with as_user(create_user("admin")):
        db.session.execute(text("UPDATE transaction_fees SET active = false WHERE id = :id"), {"id": rule.id})
    receipt, reads = send("10", fee="0")
    assert receipt["fee"] == "0.00" and len(reads) == 1  # changed: read again
    receipt, reads = send("10", fee="0")
    assert receipt["fee"] == "0.00" and reads == []  # "no rule" is kept too
