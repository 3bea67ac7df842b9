"""The network side: authorization decisions, the messages after them, and expiry, through the
services; the HTTP endpoint's signature, replay window and bad input."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.compliance.security.models import SecurityEvent, SecurityEventKind
from portal.db import db
from portal.db.base import utcnow
from portal.money.cards import codes, network, services
from portal.money.cards.models import (
    CardNetworkMessage,
    CardState,
    CardTransaction,
    CardTransactionKind,
    CardTransactionState,
)
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet
from tests.money.cards.helpers import arrange, auth_body, card_holder, issued, message, new_id, post
from tests.money.factories import wallet_of
from tests.money.factories.exchange import make_pair, make_rate

D = Decimal


def _authorize(revealed, **kwargs):
    return network.authorize(message("authorize", auth_body(revealed, **kwargs)))


def _available(user, code="USD"):
    wallet = wallet_of(user, code)
    return wallet.balance - wallet.locked_balance, wallet.balance


@pytest.fixture
def holder(app):
    user = card_holder("100.00")
    card, revealed = issued(user)
    return user, card, revealed


def test_an_approved_authorization_holds_the_amount(holder):
    user, card, revealed = holder
    answer = _authorize(revealed, amount="12.50")
    assert answer.approved and answer.code == "00"
    assert _available(user) == (D("87.50"), D("100.00"))
    row = db.session.get(CardTransaction, answer.reference)
    assert row.state == CardTransactionState.PENDING and row.amount == D("12.50")
    assert row.hold_transaction_id and row.hold_expires_at > utcnow() + timedelta(days=6)
    assert ledger.verify().ok


def test_the_same_message_twice_is_answered_once(holder):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="30")
    first = network.authorize(message("authorize", body))
    again = network.authorize(message("authorize", body))
    assert first.approved and again.approved and again.duplicate and again.reference == first.reference
    assert _available(user)[0] == D("70.00")


@pytest.mark.parametrize(("setup", "kwargs", "code"), [
    ("frozen", {}, codes.RESTRICTED_CARD),
    ("canceled", {}, codes.CLOSED_ACCOUNT),
    (None, {"amount": "100.01"}, codes.INSUFFICIENT_FUNDS),
    (None, {"amount": "0"}, codes.INVALID_AMOUNT),
    (None, {"amount": "-3"}, codes.INVALID_AMOUNT),
    (None, {"amount": "1.001"}, codes.INVALID_AMOUNT),
    (None, {"amount": "1" + "0" * 30}, codes.INVALID_AMOUNT),
    (None, {"currency": "EUR"}, codes.UNSUPPORTED_CURRENCY),
    (None, {"exp_month": 1, "exp_year": 2099}, codes.EXPIRED_CARD),
    ("gambling", {"mcc": "7995"}, codes.NOT_PERMITTED),
    ("country", {"country": "KP"}, codes.NOT_PERMITTED),
    ("per_purchase", {"amount": "20.01"}, codes.EXCEEDS_LIMIT),
    ("wallet_frozen", {}, codes.DO_NOT_HONOR),
    (None, {"currency": "AZR"}, codes.NO_RATE),
])
def test_declines_leave_no_hold(holder, setup, kwargs, code):
    user, card, revealed = holder
    arrange(setup, user, card)
    answer = _authorize(revealed, **kwargs)
    assert not answer.approved and answer.code == code, answer
    row = db.session.get(CardTransaction, answer.reference)
    assert row.state == CardTransactionState.DECLINED and row.decline_reason
    assert _available(user) == (D("100.00"), D("100.00"))


def test_a_card_past_its_expiry_is_declined(holder):
    _user, card, revealed = holder
    last_month = utcnow().replace(day=1) - timedelta(days=1)
    card.exp_month, card.exp_year = last_month.month, last_month.year
    db.session.flush()
    answer = _authorize(revealed, exp_month=last_month.month, exp_year=last_month.year)
    assert answer.code == codes.EXPIRED_CARD and answer.reason == codes.reason(codes.EXPIRED_CARD)


def test_daily_and_monthly_limits_count_what_was_approved(holder):
    user, card, revealed = holder
    services.set_controls(user, card.id, daily_limit="30", monthly_limit="40")
    assert _authorize(revealed, amount="20").approved
    declined = _authorize(revealed, amount="10.01")
    assert declined.code == codes.EXCEEDS_LIMIT and "daily" in declined.reason
    assert _authorize(revealed, amount="10").approved


def test_an_unknown_card_is_declined_and_noted(app):
    body = {"id": new_id(), "amount": "5", "currency": "USD",
            "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvv": "123"},
            "merchant": {"name": "Shop", "mcc": "5812", "country": "US"}}
    answer = network.authorize(message("authorize", body))
    assert answer.code == codes.NO_SUCH_CARD
    noted = db.session.scalar(select(CardNetworkMessage).where(CardNetworkMessage.network_id == body["id"]))
    assert noted.response_code == codes.NO_SUCH_CARD and "4242" not in json.dumps(noted.summary)


def test_three_wrong_codes_freeze_the_card_and_raise_a_security_event(holder):
    user, card, revealed = holder
    wrong = "000" if revealed.security_code != "000" else "111"
    assert _authorize(revealed, cvv=wrong).code == codes.BAD_CVV
    assert card.wrong_cvv_count == 1
    assert _authorize(revealed).approved  # a right code resets the count
    assert card.wrong_cvv_count == 0
    for _ in range(3):
        assert _authorize(revealed, cvv=wrong).code == codes.BAD_CVV
    assert card.state == CardState.FROZEN and card.frozen_by_staff
    events = db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == SecurityEventKind.CARD_CVV_LOCKOUT,
                                                            SecurityEvent.user_id == user.id)).all()
    assert len(events) == 1 and revealed.number not in events[0].summary
    assert _authorize(revealed).code == codes.RESTRICTED_CARD
    with pytest.raises(Exception, match="frozen by the portal"):
        services.unfreeze(user, card.id)


def test_a_foreign_currency_converts_at_the_current_rate_rounded_up(app):
    user = card_holder("1000", "AZR")
    card, revealed = issued(user, "AZR")
    make_rate(make_pair("USD", "AZR"), "3.333333333")
    answer = _authorize(revealed, amount="10.00", currency="USD")
    assert answer.approved
    row = db.session.get(CardTransaction, answer.reference)
    assert row.rate == D("3.333333333") and row.amount == D("33.33333333")
    assert row.merchant_amount == D("10.00") and row.merchant_currency == "USD"


def _capture(auth_id, amount, currency="USD", network_id=None):
    return network.capture(message("capture", {"id": network_id or new_id("cap"), "authorization_id": auth_id,
                                               "amount": str(amount), "currency": currency}))


def test_capture_in_full_moves_the_hold_to_the_card_float(holder):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="25")
    network.authorize(message("authorize", body))
    float_before = ledger.system_balance(SystemWallet.CARD_FLOAT, "USD")
    answer = _capture(body["id"], "25")
    assert answer.approved
    assert _available(user) == (D("75.00"), D("75.00"))
    assert ledger.system_balance(SystemWallet.CARD_FLOAT, "USD") - float_before == D("25")
    auth = db.session.scalar(select(CardTransaction).where(CardTransaction.network_id == body["id"]))
    assert auth.state == CardTransactionState.CAPTURED and auth.captured_amount == D("25")
    assert _capture(body["id"], "25").code == codes.INVALID_TRANSACTION  # a second capture
    assert ledger.verify().ok


@pytest.mark.parametrize(("captured", "balance", "ok"), [("18.40", "81.60", True), ("29.00", "71.00", True),
                                                         ("30.01", "100.00", False)])
def test_partial_capture_and_tips_within_the_tolerance(holder, captured, balance, ok):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="25")
    network.authorize(message("authorize", body))
    answer = _capture(body["id"], captured)
    assert answer.approved is ok
    if ok:
        assert _available(user) == (D(balance), D(balance))
    else:
        assert answer.code == codes.INVALID_AMOUNT
        assert _available(user) == (D("75.00"), D("100.00"))  # the hold stays for a valid capture
    assert ledger.verify().ok


def test_reversal_releases_and_is_refused_after_capture(holder):
    user, _card, revealed = holder
    first, second = auth_body(revealed, amount="40"), auth_body(revealed, amount="10")
    network.authorize(message("authorize", first))
    network.authorize(message("authorize", second))
    reversed_ = network.reverse(message("reverse", {"id": new_id("rev"), "authorization_id": first["id"]}))
    assert reversed_.approved
    assert _available(user) == (D("90.00"), D("100.00"))
    _capture(second["id"], "10")
    refused = network.reverse(message("reverse", {"id": new_id("rev"), "authorization_id": second["id"]}))
    assert refused.code == codes.INVALID_TRANSACTION and "refunds instead" in refused.reason
    assert _available(user) == (D("90.00"), D("90.00"))


def test_a_capture_before_its_authorization_is_declined_then_applies_on_retry(holder):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="15")
    capture_id = new_id("cap")
    early = _capture(body["id"], "15", network_id=capture_id)
    assert early.code == codes.NO_ORIGINAL
    assert db.session.scalar(select(CardNetworkMessage.outcome).where(CardNetworkMessage.network_id == capture_id)) \
        == "parked"
    network.authorize(message("authorize", body))
    retried = _capture(body["id"], "15", network_id=capture_id)
    assert retried.approved and not retried.duplicate
    assert _available(user) == (D("85.00"), D("85.00"))


def test_refunds_credit_the_wallet_up_to_what_was_captured(holder):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="30")
    network.authorize(message("authorize", body))
    _capture(body["id"], "30")
    refund = {"id": new_id("ref"), "authorization_id": body["id"], "amount": "20", "currency": "USD"}
    assert network.refund(message("refund", refund)).approved
    assert network.refund(message("refund", refund)).duplicate
    too_much = network.refund(message("refund", {**refund, "id": new_id("ref"), "amount": "10.01"}))
    assert too_much.code == codes.INVALID_AMOUNT
    assert _available(user) == (D("90.00"), D("90.00"))
    standalone = {"id": new_id("ref"), "amount": "5", "currency": "USD", "card": {"number": revealed.number},
                  "merchant": {"name": "Bookshop", "mcc": "5942", "country": "US"}}
    assert network.refund(message("refund", standalone)).approved
    assert _available(user) == (D("95.00"), D("95.00"))
    assert ledger.verify().ok


def test_refunds_share_the_prologue_of_captures_and_reversals(holder):
    """A refund of an authorization not (yet) known is parked like a capture and applies when
    retried; one naming no card the portal issued is noted as rejected; every one, by its
    authorization or by the card's number, is answered once."""
    user, _card, revealed = holder
    body = auth_body(revealed, amount="30")
    early_id = new_id("ref")
    early = {"id": early_id, "authorization_id": body["id"], "amount": "10", "currency": "USD"}
    parked = network.refund(message("refund", early))
    assert parked.code == codes.NO_ORIGINAL and "Refund of an authorization not known" in parked.reason
    assert db.session.scalar(select(CardNetworkMessage.outcome).where(CardNetworkMessage.network_id == early_id)) \
        == "parked"
    network.authorize(message("authorize", body))
    _capture(body["id"], "30")
    applied = network.refund(message("refund", early))
    assert applied.approved and not applied.duplicate
    assert network.refund(message("refund", early)).duplicate

    unknown_id = new_id("ref")
    unknown = network.refund(message("refund", {"id": unknown_id, "amount": "5", "currency": "USD",
                                                "card": {"number": "4000000000000002"}}))
    assert unknown.code == codes.NO_SUCH_CARD
    assert db.session.scalar(select(CardNetworkMessage.outcome).where(CardNetworkMessage.network_id == unknown_id)) \
        == "rejected"
    by_number = {"id": new_id("ref"), "amount": "5", "currency": "USD", "card": {"number": revealed.number}}
    first = network.refund(message("refund", by_number))
    again = network.refund(message("refund", by_number))
    assert first.approved and again.duplicate and again.reference == first.reference
    assert _available(user) == (D("85.00"), D("85.00"))


def test_uncaptured_holds_expire_after_the_hold_days(holder):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="50")
    network.authorize(message("authorize", body))
    assert network.expire_holds(now=utcnow() + timedelta(days=6)) == 0
    assert network.expire_holds(now=utcnow() + timedelta(days=7, minutes=1)) == 1
    assert network.expire_holds(now=utcnow() + timedelta(days=8)) == 0
    assert _available(user) == (D("100.00"), D("100.00"))
    auth = db.session.scalar(select(CardTransaction).where(CardTransaction.network_id == body["id"]))
    assert auth.state == CardTransactionState.EXPIRED
    assert db.session.scalar(select(func.count()).select_from(CardTransaction).where(
        CardTransaction.authorization_id == auth.id, CardTransaction.kind == CardTransactionKind.EXPIRY)) == 1
    assert _capture(body["id"], "50").code == codes.INVALID_TRANSACTION
    assert ledger.verify().ok


def test_the_expiry_job_is_registered():
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    assert "portal.money.cards.tasks.expire_card_holds" in job_app.tasks


# -- HTTP -----------------------------------------------------------------------------------------


def test_the_endpoint_answers_a_signed_authorization(client, holder):
    user, _card, revealed = holder
    response = post(client, "authorize", auth_body(revealed, amount="7.25"))
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["approved"] is True and data["code"] == "00" and data["amount"] == "7.25"
    assert _available(user)[0] == D("92.75")


@pytest.mark.parametrize("fault", ["unsigned", "forged", "replayed", "future", "not_json", "no_id", "float_amount",
                                   "no_card", "bad_cvv_format", "list_body"])
def test_bad_messages_get_400_and_leave_no_hold(client, holder, fault):
    user, _card, revealed = holder
    body = auth_body(revealed, amount="9")
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    from tests.money.cards.helpers import signed_headers

    if fault == "unsigned":
        pass
    elif fault == "forged":
        headers.update(signed_headers(raw, secret="not-the-secret"))
    elif fault == "replayed":
        headers.update(signed_headers(raw, timestamp=int(time.time()) - 3600))
    elif fault == "future":
        headers.update(signed_headers(raw, timestamp=int(time.time()) + 3600))
    else:
        raw = {"not_json": b"{nope", "no_id": json.dumps({**body, "id": ""}).encode(),
               "float_amount": json.dumps({**body, "amount": True}).encode(),
               "no_card": json.dumps({k: v for k, v in body.items() if k != "card"}).encode(),
               "bad_cvv_format": json.dumps({**body, "card": {**body["card"], "cvv": 123}}).encode(),
               "list_body": b"[1, 2]"}[fault]
        headers.update(signed_headers(raw))
    response = client.post("/wallet/cards/network/authorize", data=raw, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.is_json and response.get_json()["error"]
    assert _available(user)[0] == D("100.00")
    if fault in ("unsigned", "forged", "replayed", "future"):
        assert db.session.scalar(select(func.count()).select_from(SecurityEvent).where(
            SecurityEvent.kind == SecurityEventKind.CARD_NETWORK_REJECTED)) >= 1


def test_every_route_follows_the_message_kinds(client, holder):
    _user, _card, revealed = holder
    body = auth_body(revealed, amount="11")
    assert post(client, "authorize", body).get_json()["approved"]
    capture = post(client, "capture", {"id": new_id(), "authorization_id": body["id"], "amount": "11",
                                       "currency": "USD"}).get_json()
    assert capture["approved"]
    refund = post(client, "refund", {"id": new_id(), "authorization_id": body["id"], "amount": "11",
                                     "currency": "USD"}).get_json()
    assert refund["approved"]
    other = auth_body(revealed, amount="3")
    post(client, "authorize", other)
    assert post(client, "reverse", {"id": new_id(), "authorization_id": other["id"]}).get_json()["approved"]
    assert client.post("/wallet/cards/network/refund", data=b"x" * (network.MAX_BODY + 1)).status_code == 413


def test_a_delivery_that_lost_a_race_is_received_again(client, holder, monkeypatch):
    """The route rolls back a delivery whose row the same message's other delivery beat, and
    receives it again (the answer then found is the first one); it never loops for ever."""
    _user, _card, revealed = holder
    real, calls = network.receive, []

    def lose_once(kind, body, headers):
        calls.append(kind)
        if len(calls) == 1:
            raise network.DeliveredAtOnce("lost")
        return real(kind, body, headers)

    monkeypatch.setattr(network, "receive", lose_once)
    answer = post(client, "authorize", auth_body(revealed, amount="2"))
    assert answer.status_code == 200 and answer.get_json()["approved"] and calls == ["authorize", "authorize"]

    def always_lose(kind, body, headers):
        calls.append(kind)
        raise network.DeliveredAtOnce("lost")

    monkeypatch.setattr(network, "receive", always_lose)
    calls.clear()
    refused = post(client, "authorize", auth_body(revealed, amount="2"))
    assert refused.status_code == 409 and "send it again" in refused.get_json()["error"] and len(calls) == 2
