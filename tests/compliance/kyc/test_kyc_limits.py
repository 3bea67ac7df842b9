"""Wallet limits by verification level, enforced by the money services: withdrawals need level 2
(an expired document counts as none), and the transfer daily limit scales with the level."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from portal.compliance.kyc import levels
from portal.money.earnings import withdrawals
from portal.money.wallets import ledger, services
from tests.compliance.factories import verify
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund

IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.mark.parametrize("level", [0, 1])
def test_a_withdrawal_below_level_2_is_refused_with_a_link_to_verification(level):
    student = create_user("student")
    verify(student, level)
    fund(student, "100", "USD")
    with as_user(student), pytest.raises(levels.VerificationRequired) as refused:
        withdrawals.request_withdrawal(student, ledger.new_key(), "USD", "bank_account", IBAN, "40")
    message = refused.value.message
    assert f"Withdrawals need identity verification level 2 (identity document); your level is {level}." in message
    assert "/wallet/verification" in message and refused.value.link == "/wallet/verification"
    assert refused.value.status_code == 403
    with as_user(student):
        assert ledger.user_wallet(student.id, "USD").locked_balance == 0  # nothing held


def test_at_level_2_the_withdrawal_goes_through():
    student = create_user("student")
    verify(student, 2)
    fund(student, "100", "USD")
    with as_user(student):
        withdrawal, replayed = withdrawals.request_withdrawal(student, ledger.new_key(), "USD", "bank_account",
                                                              IBAN, "40")
    assert not replayed and withdrawal.amount == Decimal("40")


def test_an_expired_identity_document_stops_withdrawals():
    student = create_user("student")
    verify(student, 3, expires_on=date.today() - timedelta(days=1))
    fund(student, "100", "USD")
    with pytest.raises(levels.VerificationRequired, match="your level is 1"):
        withdrawals.check_withdrawal_allowed(student, Decimal("10"), "USD")


@pytest.mark.parametrize(("level", "limit"), [(0, "100.00"), (1, "5000.00"), (2, "5000.00"), (3, "25000.00")])
def test_the_transfer_daily_limit_scales_with_the_level(app, monkeypatch, level, limit):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {"USD": "5000", "BTC": "1"})
    student = create_user("student")
    verify(student, level)
    assert services.daily_limit("USD", student.id) == Decimal(limit)
    assert services.daily_limit("USD") == Decimal("5000")  # the configured figure itself
    expected_btc = {0: "0.02", 1: "1", 2: "1", 3: "5"}[level]
    assert services.daily_limit("BTC", student.id) == Decimal(expected_btc)


def test_an_unverified_student_sends_little_and_is_told_how_to_send_more(app, monkeypatch):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {"USD": "5000"})
    sender, recipient = create_user("student"), create_user("student")
    fund(sender, "1000", "USD")
    with as_user(sender):
        services.send_money(sender, recipient.email, "60", "USD", "", ledger.new_key())
        preview = services.preview_transfer(sender, recipient.email, "41", "USD")
        assert preview.limit_left == Decimal("40.00")
        assert "At verification level 0 you can send at most 100.00 USD" in preview.message_for("amount")
        with pytest.raises(services.TransferLimitExceeded) as refused:
            services.send_money(sender, recipient.email, "41", "USD", "", ledger.new_key())
    assert "Verify your identity at /wallet/verification to raise it." in refused.value.message
    verify(sender, 1)
    with as_user(sender):
        services.send_money(sender, recipient.email, "41", "USD", "", ledger.new_key())


def test_at_the_highest_level_the_message_does_not_ask_for_more_verification(app, monkeypatch):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {"USD": "10"})
    sender, recipient = create_user("student"), create_user("student")
    verify(sender, 3)
    fund(sender, "100", "USD")
    with as_user(sender), pytest.raises(services.TransferLimitExceeded) as refused:
        services.send_money(sender, recipient.email, "50.01", "USD", "", ledger.new_key())
    assert "At verification level 3 you can send at most 50.00 USD" in refused.value.message
    assert "Verify your identity" not in refused.value.message
