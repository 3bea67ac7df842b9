"""Withdrawal services: asking (quote, hold with two legs, idempotency), cancelling, approving and
rejecting, with the ledger verified after each, and the encrypted destination."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from portal.accounts.models import UserStatus
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.earnings import withdrawals as service
from portal.money.earnings.models import Withdrawal, WithdrawalMethod, WithdrawalStatus
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import (
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletStatus,
)
from portal.platform.notifications.models import Notification
from tests.compliance.factories import verified_user_factory

#: Active students here are verified at level 2, the level withdrawals need.
create_user = verified_user_factory(2)

IBAN = "DE89 3704 0044 0532 0130 00"
IBAN_COMPACT = "DE89370400440532013000"
BANK = WithdrawalMethod.BANK_ACCOUNT.value


def fund(user, code: str = "USD", amount: str = "100") -> Wallet:
    wallet = ledger.open_user_wallet(user.id, code)
    ledger.post([ledger.Leg(ledger.system_wallet(SystemWallet.DEPOSITS, code), wallet, Decimal(amount),
                            TransactionType.DEPOSIT, "Opening balance")])
    return wallet


def withdrawal_fee(code: str = "USD", *, fixed: str = "0.50", percent: str = "1") -> None:
    fees.save_rule(None, "withdrawal", code, fixed=fixed, percent=percent, minimum="", maximum="")


def system_balance(name: SystemWallet, code: str = "USD") -> Decimal:
    return ledger.system_balance(name, code)


def fresh(wallet: Wallet) -> Wallet:
    db.session.refresh(wallet)
    return wallet


def ask(user, amount: str = "40", *, key: str | None = None, method: str = BANK, destination: str = IBAN,
        code: str = "USD", **kwargs):
    return service.request_withdrawal(user, key or ledger.new_key(), code, method, destination, amount, **kwargs)


def assert_verified():
    report = ledger.verify()
    assert report.ok, report.problems


# -- Asking ---------------------------------------------------------------------------------------


def test_a_request_holds_amount_and_fee_with_one_hold_of_two_legs():
    withdrawal_fee()  # 0.50 + 1 %
    student = create_user("student")
    wallet = fund(student)
    withdrawal, replayed = ask(student, "40")
    assert not replayed
    assert withdrawal.status == WithdrawalStatus.PENDING
    assert (withdrawal.amount, withdrawal.fee_amount) == (Decimal("40"), Decimal("0.90"))
    assert withdrawal.destination_masked == "DE •••• 3000"
    assert fresh(wallet).balance == Decimal("100") and wallet.locked_balance == Decimal("40.90")
    legs = db.session.scalars(select(Transaction).where(Transaction.debit_wallet_id == wallet.id,
                                                        Transaction.phase == Phase.PENDING)).all()
    assert len(legs) == 2
    assert len({leg.group_id for leg in legs}) == 1
    by_type = {leg.type: leg for leg in legs}
    assert by_type[TransactionType.WITHDRAWAL].id == withdrawal.hold_transaction_id
    assert by_type[TransactionType.WITHDRAWAL].amount == Decimal("40")
    assert by_type[TransactionType.WITHDRAWAL].credit_wallet_id == ledger.system_wallet(SystemWallet.WITHDRAWALS,
                                                                                         "USD").id
    assert by_type[TransactionType.FEE].amount == Decimal("0.90")
    assert by_type[TransactionType.FEE].credit_wallet_id == ledger.system_wallet(SystemWallet.FEES, "USD",
                                                                                  spread_by=student.id).id
    assert_verified()


def test_without_a_fee_rule_only_the_amount_is_held():
    student = create_user("student")
    wallet = fund(student)
    withdrawal, _ = ask(student, "25")
    assert withdrawal.fee_amount == 0
    assert fresh(wallet).locked_balance == Decimal("25")
    assert len(service.held_legs(withdrawal)) == 1


def test_the_quote_shows_fee_total_and_what_remains():
    withdrawal_fee(fixed="1", percent="0")
    student = create_user("student")
    fund(student, amount="50")
    offer = service.quote(student, "usd", BANK, IBAN, "20.00")
    assert (offer.currency, offer.amount, offer.fee, offer.total, offer.available) == (
        "USD", Decimal("20.00"), Decimal("1.00"), Decimal("21.00"), Decimal("50"))
    assert offer.destination.value == IBAN_COMPACT


def test_a_double_submit_holds_once():
    student = create_user("student")
    wallet = fund(student)
    key = ledger.new_key()
    first, replayed_first = ask(student, "30", key=key)
    second, replayed_second = ask(student, "30", key=key)
    assert (replayed_first, replayed_second) == (False, True)
    assert first.id == second.id
    assert fresh(wallet).locked_balance == Decimal("30")
    assert db.session.scalar(select(func.count()).select_from(Withdrawal).where(Withdrawal.user_id == student.id)) == 1
    assert_verified()


def test_the_same_key_with_another_amount_or_destination_is_refused():
    student = create_user("student")
    fund(student)
    key = ledger.new_key()
    ask(student, "30", key=key)
    with pytest.raises(ledger.IdempotencyMismatch):
        ask(student, "31", key=key)
    with pytest.raises(ledger.IdempotencyMismatch):
        ask(student, "30", key=key, destination="GB82 WEST 1234 5698 7654 32")


def test_the_idempotency_record_holds_no_plain_destination():
    student = create_user("student")
    fund(student)
    ask(student, "30", method=WithdrawalMethod.MOBILE_MONEY.value, destination="+254 712 345 678")
    stored = db.session.execute(text("SELECT \"requestHash\" || result::text FROM idempotency_keys "
                                     "WHERE \"userId\" = :u"), {"u": student.id}).scalar()
    assert "254712345678" not in stored


@pytest.mark.parametrize(("amount", "message"), [
    ("0", "more than zero"),
    ("-5", "must be positive"),
    ("10.001", "at most 2 decimal places"),
    ("1e3", "as a number"),
    ("", "Enter an amount"),
])
def test_bad_amounts_are_refused_and_nothing_is_held(amount, message):
    student = create_user("student")
    wallet = fund(student)
    with pytest.raises(DomainError) as caught:
        ask(student, amount)
    assert message in caught.value.message and caught.value.field == "amount"
    assert fresh(wallet).locked_balance == 0


def test_insufficient_funds_name_the_fee_and_hold_nothing():
    withdrawal_fee(fixed="2", percent="0")
    student = create_user("student")
    wallet = fund(student, amount="50")
    with pytest.raises(ledger.InsufficientFunds) as caught:
        ask(student, "49")
    assert "50.00 USD available" in caught.value.message and "2.00 USD fee" in caught.value.message
    assert fresh(wallet).locked_balance == 0
    assert service.quote(student, "USD", BANK, IBAN, "48").total == Decimal("50")


def test_a_student_without_a_wallet_has_nothing_to_withdraw():
    student = create_user("student")
    with pytest.raises(ledger.InsufficientFunds) as caught:
        ask(student, "1")
    assert "no USD to withdraw" in caught.value.message
    assert ledger.user_wallet(student.id, "USD") is None  # asking did not open one


def test_a_frozen_wallet_cannot_withdraw():
    student = create_user("student")
    wallet = fund(student)
    with ledger.as_ledger():
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
    with pytest.raises(ledger.WalletUnavailable) as caught:
        ask(student, "10")
    assert "frozen" in caught.value.message


def test_unknown_currency_invalid_destination_and_wrong_method_are_refused():
    student = create_user("student")
    fund(student)
    with pytest.raises(DomainError) as caught:
        ask(student, "10", code="EUR")
    assert "Unknown currency" in caught.value.message
    with pytest.raises(DomainError) as caught:
        ask(student, "10", destination="DE89 3704 0044 0532 0130 01")
    assert caught.value.field == "destination"
    with pytest.raises(DomainError) as caught:
        ask(student, "10", method=WithdrawalMethod.CRYPTO_ADDRESS.value)
    assert caught.value.field == "method"
    with pytest.raises(DomainError) as caught:
        ask(student, "10", code="AZR")
    assert "convert it to USD first" in caught.value.message


def test_check_withdrawal_allowed_refuses_inactive_accounts_and_staff():
    student = create_user("student", status=UserStatus.DEACTIVATED)
    with pytest.raises(Forbidden):
        service.check_withdrawal_allowed(student, Decimal("1"), "USD")
    with pytest.raises(Forbidden):
        service.check_withdrawal_allowed(create_user("faculty"), Decimal("1"), "USD")
    service.check_withdrawal_allowed(create_user("student"), Decimal("1"), "USD")


def test_a_changed_fee_since_the_quote_holds_nothing():
    withdrawal_fee(fixed="1", percent="0")
    student = create_user("student")
    wallet = fund(student)
    with pytest.raises(service.FeeChanged) as caught:
        ask(student, "10", quoted_fee="0.50")
    assert "1.00 USD" in caught.value.message and "0.50 USD" in caught.value.message
    assert fresh(wallet).locked_balance == 0
    withdrawal, _ = ask(student, "10", quoted_fee="1.00")
    assert withdrawal.fee_amount == Decimal("1.00")


def test_crypto_withdrawals_hold_in_their_currency():
    student = create_user("student")
    wallet = fund(student, "ETH", "2")
    withdrawal, _ = ask(student, "0.123456789012345678", code="ETH", method=WithdrawalMethod.CRYPTO_ADDRESS.value,
                        destination="0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    assert withdrawal.currency == "ETH" and withdrawal.amount == Decimal("0.123456789012345678")
    assert fresh(wallet).locked_balance == Decimal("0.123456789012345678")
    assert withdrawal.destination_masked == "0x•••• eAed"


# -- The destination at rest ----------------------------------------------------------------------


def test_the_destination_is_encrypted_bound_to_its_row_and_shown_only_to_admins():
    student, admin = create_user("student"), create_user("admin")
    fund(student)
    withdrawal, _ = ask(student, "10", method=WithdrawalMethod.MOBILE_MONEY.value, destination="+254 712 345 678")
    raw = db.session.execute(text('SELECT "destinationEncrypted", "destinationMasked" FROM withdrawals '
                                  "WHERE id = :id"), {"id": withdrawal.id}).one()
    blob = bytes(raw[0])
    for plain in (b"+254712345678", b"254712345678", b"712345678"):
        assert plain not in blob
    assert raw[1] == "+ •••• 5678"
    assert service.reveal_destination(admin, withdrawal) == "+254 712 345678"
    with pytest.raises(Forbidden):
        service.reveal_destination(student, withdrawal)
    # Moved into another row, the blob no longer decrypts.
    other, _ = ask(student, "5")
    from portal.security.crypto import CryptoError

    other.destination_encrypted = blob
    with pytest.raises(CryptoError):
        service.reveal_destination(admin, other)


def test_the_audit_trail_leaves_the_encrypted_destination_out():
    student = create_user("student")
    fund(student)
    withdrawal, _ = ask(student, "10")
    row = db.session.execute(text("SELECT \"newValues\"::text FROM audit_log WHERE \"tableName\" = 'withdrawals' "
                                  "AND \"rowId\" = :id"), {"id": str(withdrawal.id)}).scalar()
    assert row is not None and "destinationEncrypted" not in row and "destinationMasked" in row


# -- Deciding -------------------------------------------------------------------------------------


def test_approval_moves_amount_to_withdrawals_and_fee_to_fees_and_clears_the_lock():
    withdrawal_fee()
    student, admin = create_user("student"), create_user("admin")
    wallet = fund(student)
    out_before, fees_before = system_balance(SystemWallet.WITHDRAWALS), system_balance(SystemWallet.FEES)
    withdrawal, _ = ask(student, "40")
    approved = service.approve(admin, withdrawal.id, "  BANK-REF  42 ", link="/wallet/withdrawals")
    assert approved.status == WithdrawalStatus.APPROVED
    assert approved.reviewed_by_id == admin.id and approved.reviewed_at is not None
    assert approved.review_note == "BANK-REF 42"
    assert fresh(wallet).balance == Decimal("59.10") and wallet.locked_balance == 0
    assert system_balance(SystemWallet.WITHDRAWALS) - out_before == Decimal("40")
    assert system_balance(SystemWallet.FEES) - fees_before == Decimal("0.90")
    posted = db.session.scalars(select(Transaction).where(Transaction.debit_wallet_id == wallet.id,
                                                          Transaction.phase == Phase.POST)).all()
    assert sorted(tx.amount for tx in posted) == [Decimal("0.90"), Decimal("40")]
    note = db.session.scalars(select(Notification).where(Notification.user_id == student.id,
                                                         Notification.kind == "withdrawal")).one()
    assert "approved" in note.title and "BANK-REF 42" in note.body and note.link == "/wallet/withdrawals"
    assert_verified()


def test_rejection_releases_everything_and_tells_the_student_why():
    withdrawal_fee()
    student, admin = create_user("student"), create_user("admin")
    wallet = fund(student)
    out_before = system_balance(SystemWallet.WITHDRAWALS)
    withdrawal, _ = ask(student, "40")
    with pytest.raises(service.InvalidReview) as caught:
        service.reject(admin, withdrawal.id, "  ")
    assert caught.value.field == "reason"
    rejected = service.reject(admin, withdrawal.id, "The IBAN belongs to someone else.")
    assert rejected.status == WithdrawalStatus.REJECTED and rejected.review_note.startswith("The IBAN")
    assert fresh(wallet).balance == Decimal("100") and wallet.locked_balance == 0
    assert system_balance(SystemWallet.WITHDRAWALS) == out_before
    voids = db.session.scalars(select(Transaction).where(Transaction.debit_wallet_id == wallet.id,
                                                         Transaction.phase == Phase.VOID)).all()
    assert len(voids) == 2
    note = db.session.scalars(select(Notification).where(Notification.user_id == student.id)).all()[-1]
    assert "rejected" in note.title and "someone else" in note.body
    assert_verified()


def test_the_student_cancels_a_pending_withdrawal_and_gets_everything_back():
    withdrawal_fee()
    student = create_user("student")
    wallet = fund(student)
    withdrawal, _ = ask(student, "40")
    cancelled = service.cancel(student, withdrawal.id)
    assert cancelled.status == WithdrawalStatus.CANCELLED and cancelled.reviewed_at is not None
    assert fresh(wallet).balance == Decimal("100") and wallet.locked_balance == 0
    assert_verified()
    with pytest.raises(Conflict) as caught:
        service.cancel(student, withdrawal.id)
    assert "already cancelled" in caught.value.message


@pytest.mark.parametrize("first", ["approve", "reject", "cancel"])
def test_a_decided_withdrawal_cannot_be_decided_again_and_money_moves_once(first):
    student, admin = create_user("student"), create_user("admin", full_name="Ada Admin")
    wallet = fund(student)
    withdrawal, _ = ask(student, "40")
    {"approve": lambda: service.approve(admin, withdrawal.id),
     "reject": lambda: service.reject(admin, withdrawal.id, "Not this time, sorry."),
     "cancel": lambda: service.cancel(student, withdrawal.id)}[first]()
    balance, locked = fresh(wallet).balance, wallet.locked_balance
    count = db.session.scalar(select(func.count()).select_from(Transaction))
    for again in (lambda: service.approve(admin, withdrawal.id),
                  lambda: service.reject(admin, withdrawal.id, "Changed my mind."),
                  lambda: service.cancel(student, withdrawal.id)):
        with pytest.raises(Conflict) as caught:
            again()
        assert "already" in caught.value.message and "nothing was changed" in caught.value.message
    if first != "cancel":
        assert "by Ada Admin" in caught.value.message
    assert (fresh(wallet).balance, wallet.locked_balance) == (balance, locked)
    assert db.session.scalar(select(func.count()).select_from(Transaction)) == count
    assert_verified()


def test_the_ledger_itself_refuses_a_second_capture_of_the_same_hold():
    student, admin = create_user("student"), create_user("admin")
    fund(student)
    withdrawal, _ = ask(student, "40")
    legs = service.held_legs(withdrawal)
    service.approve(admin, withdrawal.id)
    with pytest.raises(Conflict):
        ledger.capture(legs)


def test_only_money_admins_decide_and_nobody_decides_their_own():
    student, faculty = create_user("student"), create_user("faculty")
    fund(student)
    withdrawal, _ = ask(student, "40")
    with pytest.raises(Forbidden):
        service.approve(faculty, withdrawal.id)
    with pytest.raises(Forbidden):
        service.approve(student, withdrawal.id)
    with pytest.raises(NotFound):
        service.approve(create_user("admin"), uuid.uuid4())
    # An account that asked as a student and became an admin still needs another admin.
    from portal.accounts.models import Role

    student.role = Role.ADMIN
    with pytest.raises(Forbidden) as caught:
        service.approve(student, withdrawal.id)
    assert "own withdrawal" in caught.value.message


def test_a_student_can_neither_see_nor_cancel_another_students_withdrawal():
    alice, bob = create_user("student"), create_user("student")
    fund(alice)
    withdrawal, _ = ask(alice, "40")
    with pytest.raises(Forbidden):
        service.cancel(bob, withdrawal.id)
    with pytest.raises(Forbidden):
        service.withdrawal_for(bob, withdrawal.id)
    assert service.withdrawal_for(alice, withdrawal.id) is withdrawal
    with pytest.raises(NotFound):
        service.withdrawal_for(alice, uuid.uuid4())
    # Row-level security hides it from Bob's own database role too.
    with acting_as(Actor.for_user(bob.id, "student"), db.session):
        assert db.session.scalar(select(func.count()).select_from(Withdrawal)) == 0
        assert service.withdrawals_of(bob).items == []
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        assert [w.id for w in service.withdrawals_of(alice).items] == [withdrawal.id]
    assert db.session.get(Withdrawal, withdrawal.id).status == WithdrawalStatus.PENDING


def test_the_student_can_cancel_under_their_own_database_role():
    student = create_user("student")
    wallet = fund(student)
    withdrawal, _ = ask(student, "40")
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        service.cancel(student, withdrawal.id)
    assert fresh(wallet).locked_balance == 0
    assert_verified()


# -- Reading --------------------------------------------------------------------------------------


def test_the_queue_lists_pending_first_oldest_first_and_pages_by_keyset():
    admin = create_user("admin")
    students = [create_user("student") for _ in range(3)]
    made = []
    for student in students:
        fund(student)
        for amount in ("10", "11"):
            made.append(ask(student, amount)[0])
    service.approve(admin, made[0].id)
    service.reject(admin, made[1].id, "Wrong account holder.")
    ours = {w.id for w in made}
    seen, cursor = [], None
    while True:
        page = service.queue(admin, None, cursor, size=2)
        seen.extend(row for row in page.items if row.withdrawal.id in ours)
        if not page.has_next:
            break
        cursor = page.next_cursor
    ids = [row.withdrawal.id for row in seen]
    assert len(ids) == len(set(ids)) == 6
    statuses = [row.withdrawal.status for row in seen]
    assert statuses[:4] == [WithdrawalStatus.PENDING] * 4
    pending = [row.withdrawal for row in seen[:4]]
    assert [(w.created_at, w.id) for w in pending] == sorted((w.created_at, w.id) for w in pending)
    assert seen[0].student_email.endswith("@tests.example")
    only = service.queue(admin, "rejected")
    assert made[1].id in [row.withdrawal.id for row in only.items]
    assert all(row.withdrawal.status == WithdrawalStatus.REJECTED for row in only.items)
    # A malformed cursor starts again rather than failing.
    assert service.queue(admin, None, "not-a-cursor").items


def test_the_review_shows_the_full_destination_and_the_students_wallets():
    student, admin = create_user("student"), create_user("admin")
    fund(student)
    fund(student, "BTC", "1")
    withdrawal, _ = ask(student, "40")
    review = service.review(admin, withdrawal.id)
    assert review.destination == "DE89 3704 0044 0532 0130 00"
    assert [w.currency for w in review.wallets] == ["BTC", "USD"]
    assert review.student.id == student.id and review.reviewer is None
    with pytest.raises(Forbidden):
        service.review(student, withdrawal.id)


def test_the_history_names_the_fee_leg_as_the_withdrawals_fee_held_and_paid():
    from portal.money.wallets import queries as wallet_queries

    withdrawal_fee()
    student, admin = create_user("student"), create_user("admin")
    fund(student)
    withdrawal, _ = ask(student, "40")

    def rows():
        return [(row.type, row.description, row.status) for row in wallet_queries.history(student).items
                if row.type in (TransactionType.WITHDRAWAL, TransactionType.FEE)]

    held = rows()
    assert (TransactionType.FEE, "Fee for the withdrawal to DE •••• 3000", "held") in held
    service.approve(admin, withdrawal.id, "REF-1")
    paid = [row for row in rows() if row[2] == "completed"]
    assert sorted(paid) == sorted([(TransactionType.WITHDRAWAL, "Withdrawal paid out DE •••• 3000", "completed"),
                                   (TransactionType.FEE, "Fee for the withdrawal to DE •••• 3000", "completed")])
