"""Transfers between students (portal.money.wallets.services): the preview, every refusal
(each moves nothing), the fee leg, the rolling 24-hour limit, frozen wallets and idempotency.

The services run as the sending student (row-level security applies as in a request); the
test's own set-up (deposits, fee rules, freezing) runs as the test's system actor.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.accounts.models import UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden
from portal.money.wallets import fees, ledger, services
from portal.money.wallets.models import (
    IdempotencyKey,
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletStatus,
)
from portal.platform.notifications.models import Notification
from tests.compliance.factories import verify
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of

KEY = "transfer-key-0000000001"


@pytest.fixture
def ada():
    """The sender in most tests: verified at level 1, so the configured daily limits apply as they are."""
    student = create_user("student", full_name="Ada Lovelace", email="ada.lovelace@tests.example")
    verify(student, 1)
    return student


@pytest.fixture
def grace():
    return create_user("student", full_name="Grace Hopper", email="grace.hopper@tests.example")


@pytest.fixture
def transfer_fee():
    """1% plus 0.25 USD on transfers."""
    admin = create_user("admin")
    return fees.save_rule(admin.id, "transfer", "USD", fixed="0.25", percent="1", minimum="0", maximum="")


def send(sender, to, amount, code="USD", note="", key=KEY, **kwargs):
    with as_user(sender):
        return services.send_money(sender, to, amount, code, note, key, **kwargs)


def preview(sender, to, amount, code="USD"):
    with as_user(sender):
        return services.preview_transfer(sender, to, amount, code)


def snapshot():
    """Everything a transfer could change: transactions, wallets and their balances, keys."""
    with ledger.as_ledger():
        db.session.expire_all()
        count = db.session.scalar(select(func.count()).select_from(Transaction))
        wallets = sorted((str(w.id), w.balance, w.locked_balance) for w in db.session.scalars(select(Wallet)))
        keys = db.session.scalar(select(func.count()).select_from(IdempotencyKey))
        notes = db.session.scalar(select(func.count()).select_from(Notification))
    return count, wallets, keys, notes


def refused(call, match: str, field: str | None = "unset"):
    """``call`` raises a DomainError whose message contains ``match``, and nothing changed."""
    before = snapshot()
    with pytest.raises(DomainError) as caught:
        call()
    assert match in caught.value.message, caught.value.message
    if field != "unset":
        assert caught.value.field == field
    assert snapshot() == before
    return caught.value


# ------------------------------------------------------------------ moving money


def test_transfer_with_fee_posts_two_legs_and_tells_the_recipient(ada, grace, transfer_fee):
    fund(ada, "100", "USD")
    # Fees other tests committed stay in the fees wallet: compare what changed.
    fees_before = ledger.system_balance(SystemWallet.FEES, "USD")
    receipt, replayed = send(ada, "Grace.Hopper@TESTS.example ", "10", note="Lunch \x07 money")
    assert not replayed
    assert receipt["amount"] == "10.00" and receipt["fee"] == "0.35" and receipt["total"] == "10.35"
    assert receipt["recipient_name"] == "Grace Hopper" and receipt["recipient_email"] == "gr***@tests.example"
    assert receipt["note"] == "Lunch money"
    assert wallet_of(ada).balance == Decimal("89.65")
    assert wallet_of(grace).balance == Decimal("10.00")
    with ledger.as_ledger():
        # The fee lands on the fees wallet's shard for the sender.
        fee_wallet = ledger.system_wallet(SystemWallet.FEES, "USD", spread_by=ada.id)
        legs = db.session.scalars(select(Transaction).where(Transaction.group_id == receipt["group_id"])
                                  .order_by(Transaction.type.desc())).all()
    assert ledger.system_balance(SystemWallet.FEES, "USD") - fees_before == Decimal("0.35")
    assert [(leg.type, leg.amount, leg.phase) for leg in legs] == [
        (TransactionType.TRANSFER, Decimal("10"), Phase.SINGLE), (TransactionType.FEE, Decimal("0.35"), Phase.SINGLE)]
    transfer, fee_leg = legs
    assert transfer.debit_user_id == ada.id and transfer.credit_user_id == grace.id
    assert transfer.initiated_by_id == ada.id
    assert transfer.details == {"from_name": "Ada Lovelace", "to_name": "Grace Hopper", "note": "Lunch money"}
    assert fee_leg.credit_wallet_id == fee_wallet.id and fee_leg.credit_user_id is None
    assert str(transfer.id) == receipt["transaction_id"] and str(fee_leg.id) == receipt["fee_transaction_id"]
    note = db.session.scalars(select(Notification).where(Notification.user_id == grace.id,
                                                         Notification.kind == "money_received")).one()
    assert note.title == "Ada Lovelace sent you 10.00 USD" and note.body == "Lunch money"
    assert note.link == "/wallet/history"
    assert ledger.verify().ok


def test_without_a_fee_rule_there_is_one_leg(ada, grace):
    fund(ada, "5", "AZR")
    receipt, _ = send(ada, grace.email, "5", "AZR")
    assert receipt["fee"] == "0E-8" or Decimal(receipt["fee"]) == 0
    assert receipt["fee_transaction_id"] is None
    with ledger.as_ledger():
        count = db.session.scalar(select(func.count()).select_from(Transaction)
                                  .where(Transaction.group_id == receipt["group_id"]))
    assert count == 1
    assert wallet_of(ada, "AZR").balance == 0 and wallet_of(grace, "AZR").balance == Decimal("5")


def test_the_exact_balance_including_the_fee_can_be_sent(ada, grace, transfer_fee):
    fund(ada, "10.35", "USD")
    send(ada, grace.email, "10")
    assert wallet_of(ada).balance == 0


# ------------------------------------------------------------------ refusals move nothing


@pytest.mark.parametrize(("to", "amount", "code", "match", "field"), [
    ("nobody@tests.example", "5", "USD", "No one is registered with nobody@tests.example", "recipient"),
    ("not-an-email", "5", "USD", "Enter a valid e-mail address", "recipient"),
    ("", "5", "USD", "Enter the e-mail address", "recipient"),
    ("grace.hopper@tests.example", "0", "USD", "more than zero", "amount"),
    ("grace.hopper@tests.example", "-5", "USD", "must be positive", "amount"),
    ("grace.hopper@tests.example", "1.001", "USD", "at most 2 decimal places", "amount"),
    ("grace.hopper@tests.example", "1,5", "USD", "commas only between thousands", "amount"),
    ("grace.hopper@tests.example", "1e3", "USD", "as a number", "amount"),
    ("grace.hopper@tests.example", "", "USD", "Enter an amount", "amount"),
    ("grace.hopper@tests.example", "5", "XYZ", "Unknown currency", "currency"),
])
def test_bad_input_is_refused_and_moves_nothing(ada, grace, to, amount, code, match, field):
    fund(ada, "100", "USD")
    refused(lambda: send(ada, to, amount, code), match, field)


def test_sending_to_oneself_is_refused(ada):
    fund(ada, "100", "USD")
    refused(lambda: send(ada, "ADA.lovelace@tests.example", "5"), "cannot send money to yourself", "recipient")


@pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
def test_staff_cannot_receive_money(ada, role):
    staff = create_user(role, full_name="Staff Member")
    fund(ada, "100", "USD")
    refused(lambda: send(ada, staff.email, "5"), "Staff Member cannot receive money: only students have wallets",
            "recipient")


def test_a_deactivated_student_cannot_receive_money(ada):
    gone = create_user("student", full_name="Gone Student", status=UserStatus.DEACTIVATED)
    fund(ada, "100", "USD")
    refused(lambda: send(ada, gone.email, "5"), "Gone Student's account is not active", "recipient")


def test_staff_cannot_send(grace):
    faculty = create_user("faculty")
    with pytest.raises(Forbidden):
        send(faculty, grace.email, "5")


def test_insufficient_funds_counts_the_fee(ada, grace, transfer_fee):
    fund(ada, "10", "USD")
    error = refused(lambda: send(ada, grace.email, "10"), "you have 10.00 USD available", "amount")
    assert "needs 10.35 USD (10.00 USD plus a 0.35 USD fee)" in error.message
    assert isinstance(error, ledger.InsufficientFunds)


def test_no_wallet_in_the_currency_is_no_money_and_opens_nothing(ada, grace):
    refused(lambda: send(ada, grace.email, "0.1", "BTC"), "you have 0.00000000 BTC available and this transfer needs 0.10000000 BTC", "amount")
    assert wallet_of(grace, "BTC") is None and wallet_of(ada, "BTC") is None


def test_held_money_is_not_available(ada, grace):
    fund(ada, "100", "USD")
    with ledger.as_ledger():
        out = ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD")
    ledger.hold([ledger.Leg(wallet_of(ada), out, Decimal("95"), TransactionType.WITHDRAWAL)])
    refused(lambda: send(ada, grace.email, "6"), "you have 5.00 USD available", "amount")


def test_a_long_note_is_refused(ada, grace):
    fund(ada, "100", "USD")
    refused(lambda: send(ada, grace.email, "5", note="x" * (services.MAX_NOTE + 1)), "140 characters", "note")


@pytest.mark.parametrize("status", [WalletStatus.FROZEN, WalletStatus.CLOSED])
def test_a_frozen_or_closed_sender_wallet_sends_nothing(ada, grace, status):
    fund(ada, "100", "USD")
    wallet = wallet_of(ada)
    wallet.status = status
    db.session.flush()
    refused(lambda: send(ada, grace.email, "5"), f"Your USD wallet is {status.value}")
    assert preview(ada, grace.email, "5").message_for("amount").startswith(f"Your USD wallet is {status.value}")


def test_a_frozen_recipient_wallet_receives_nothing(ada, grace):
    fund(ada, "100", "USD")
    fund(grace, "1", "USD")
    wallet = wallet_of(grace)
    wallet.status = WalletStatus.FROZEN
    db.session.flush()
    refused(lambda: send(ada, grace.email, "5"), "Grace Hopper's USD wallet is frozen", "recipient")
    assert "frozen" in preview(ada, grace.email, "5").message_for("recipient")
    # Another currency's wallet is not affected.
    fund(ada, "1", "AZR")
    send(ada, grace.email, "1", "AZR", key="another-key-00000001")


def test_fee_changed_after_confirmation_is_refused(ada, grace, transfer_fee):
    fund(ada, "100", "USD")
    refused(lambda: send(ada, grace.email, "10", expected_fee="0.25"), "The fee for this transfer is now 0.35 USD")
    receipt, _ = send(ada, grace.email, "10", expected_fee="0.35")
    assert receipt["fee"] == "0.35"


# ------------------------------------------------------------------ the 24-hour limit


@pytest.fixture
def usd_limit_50(app, monkeypatch):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {**app.config["TRANSFER_DAILY_LIMITS"], "USD": "50"})


def test_the_rolling_daily_limit(ada, grace, transfer_fee, usd_limit_50, monkeypatch):
    verify(grace, 1)
    fund(ada, "500", "USD")
    fund(grace, "500", "USD")
    send(grace, ada.email, "40", key="grace-key-0000000001")  # money received does not count
    send(ada, grace.email, "30", key="first-key-0000000001")  # its 0.55 fee does not count either
    error = refused(lambda: send(ada, grace.email, "20.01", key="second-key-000000001"),
                    "At verification level 1 you can send at most 50.00 USD in any 24 hours; 20.00 USD is left "
                    "right now.", "amount")
    assert isinstance(error, services.TransferLimitExceeded)
    assert preview(ada, grace.email, "20.01").limit_left == Decimal("20.00")
    send(ada, grace.email, "20", key="third-key-0000000001")
    refused(lambda: send(ada, grace.email, "0.01", key="fourth-key-000000001"), "0.00 USD is left")
    # Other currencies have their own limit.
    fund(ada, "10", "AZR")
    send(ada, grace.email, "10", "AZR", key="azr-key-000000000001")
    # A day later the window has moved past the first transfers.
    later = utcnow() + timedelta(hours=24, minutes=1)
    monkeypatch.setattr(services, "utcnow", lambda: later)
    send(ada, grace.email, "50", key="fifth-key-0000000001")


def test_no_configured_limit_means_no_limit(app, ada, grace, monkeypatch):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {})
    fund(ada, "100000", "USD")
    send(ada, grace.email, "99999")
    assert services.daily_limit("USD") is None


# ------------------------------------------------------------------ idempotency


def test_a_replay_returns_the_first_result_and_pays_once(ada, grace):
    fund(ada, "100", "USD")
    first, replayed = send(ada, grace.email, "10", note="rent")
    assert not replayed
    again, replayed = send(ada, grace.email.upper(), "10.00", note="rent")
    assert replayed and again == first
    assert wallet_of(ada).balance == Decimal("90") and wallet_of(grace).balance == Decimal("10")
    assert db.session.scalar(select(func.count()).select_from(Notification)
                             .where(Notification.user_id == grace.id, Notification.kind == "money_received")) == 1


def test_a_replay_after_the_money_is_spent_still_shows_the_first_receipt(ada, grace):
    fund(ada, "10", "USD")
    first, _ = send(ada, grace.email, "10")
    assert send(ada, grace.email, "10") == (first, True)


@pytest.mark.parametrize("change", [{"amount": "11"}, {"to": "someone@tests.example"}, {"code": "AZR"},
                                    {"note": "different"}])
def test_the_same_key_with_other_details_is_refused(ada, grace, change):
    fund(ada, "100", "USD")
    fund(ada, "100", "AZR")
    send(ada, grace.email, "10")
    arguments = {"to": grace.email, "amount": "10", "code": "USD", "note": "", **change}
    error = refused(lambda: send(ada, arguments["to"], arguments["amount"], arguments["code"], arguments["note"]),
                    "already sent with other details")
    assert isinstance(error, ledger.IdempotencyMismatch)


def test_a_refused_transfer_leaves_its_key_free_for_a_corrected_retry(ada, grace):
    fund(ada, "5", "USD")
    refused(lambda: send(ada, grace.email, "10"), "Not enough money")
    fund(ada, "5", "USD")
    _, replayed = send(ada, grace.email, "10")
    assert not replayed and wallet_of(grace).balance == Decimal("10")


def test_a_malformed_key_is_refused(ada, grace):
    fund(ada, "100", "USD")
    refused(lambda: send(ada, grace.email, "10", key="short"), "reload the page")


# ------------------------------------------------------------------ the preview


def test_preview_shows_fee_total_and_what_is_left(ada, grace, transfer_fee):
    fund(ada, "100", "USD")
    before = snapshot()
    result = preview(ada, " GRACE.hopper@tests.example", "10")
    assert snapshot() == before  # a preview writes nothing, not even the recipient's wallet
    assert result.ok and result.problems == []
    assert (result.recipient_name, result.recipient_email) == ("Grace Hopper", "gr***@tests.example")
    assert (result.amount, result.fee, result.total) == (Decimal("10"), Decimal("0.35"), Decimal("10.35"))
    assert result.available == Decimal("100") and result.remaining == Decimal("89.65")
    assert result.limit_left == Decimal("5000")


def test_preview_collects_problems_instead_of_raising(ada, grace):
    fund(ada, "3", "USD")
    result = preview(ada, "nobody@tests.example", "5")
    assert not result.ok
    assert result.message_for("recipient").startswith("No one is registered with nobody@tests.example")
    assert "Not enough money" in result.message_for("amount")
    assert result.total == Decimal("5") and result.available == Decimal("3")


def test_preview_of_empty_fields_prompts_rather_than_errs(ada):
    result = preview(ada, "", "")
    assert not result.ok and result.incomplete and result.errors == []
    assert {p.field for p in result.problems} == {"recipient", "amount"}


@pytest.mark.parametrize(("amount", "code", "field", "match"), [
    ("abc", "USD", "amount", "as a number"), ("1.123", "USD", "amount", "decimal places"),
    ("5", "DOGE", "currency", "Unknown currency"), ("5", None, "currency", "Unknown currency"),
])
def test_preview_reports_bad_amounts_and_currencies(ada, grace, amount, code, field, match):
    result = preview(ada, grace.email, amount, code)
    assert match in result.message_for(field)


def test_preview_for_oneself_and_staff(ada):
    staff = create_user("faculty", full_name="Prof Staff")
    assert "yourself" in preview(ada, ada.email, "1").message_for("recipient")
    assert "only students" in preview(ada, staff.email, "1").message_for("recipient")


def test_largest_ether_amounts_are_exact(app, ada, grace, monkeypatch):
    monkeypatch.setitem(app.config, "TRANSFER_DAILY_LIMITS", {})
    amount = "12345678901234567890.123456789012345678"
    fund(ada, amount, "ETH")
    result = preview(ada, grace.email, amount, "ETH")
    assert result.ok and result.total == Decimal(amount) and result.remaining == 0
    send(ada, grace.email, amount, "ETH")
    assert wallet_of(grace, "ETH").balance == Decimal(amount)


def test_masking_keeps_little_of_the_address():
    assert services.mask_email("jane.doe@example.org") == "ja***@example.org"
    assert services.mask_email("ab@example.org") == "a***@example.org"
