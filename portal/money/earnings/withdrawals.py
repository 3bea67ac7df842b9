"""Withdrawals: money leaving the portal (spec service 9, the withdrawals half).

A student asks; the amount and its fee are held at once; an admin approves (the held value moves
to the withdrawals system wallet, the fee to the fee wallet) or rejects (the holds are released);
until then the student may cancel. Every step runs in the caller's database transaction and moves
money only through the ledger.

- Asking: ``quote`` checks everything and prices it (shown before the student confirms);
  ``request_withdrawal`` does it once per idempotency key: ONE ``ledger.hold`` call with two legs
  sharing a group id (amount to WITHDRAWALS, fee to FEES when there is one). The withdrawal row
  keeps the amount leg in ``holdTransactionId``; the fee leg is found through its group.
- Deciding: ``approve``, ``reject`` and ``cancel`` lock the withdrawal row ``FOR UPDATE`` first,
  so two admins (or an admin and the student) who act at the same moment queue on the row, and
  the second finds the decision already made and is refused with a message. The ledger refuses a
  second capture or release of the same hold as well, so money can never move twice.
- The destination is stored AES-GCM encrypted (``portal.security.crypto``, the configured
  ``FILE_ENCRYPTION_KEYS``), bound to the row by its id and owner as associated data; pages show
  ``destinationMasked``; only an admin's review decrypts it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy import case, func, select, tuple_

from portal.accounts.models import User, UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.currency import currency, format_amount, parse_amount
from portal.money.earnings import destinations
from portal.money.earnings.destinations import Destination
from portal.money.earnings.models import (
    WITHDRAWAL_TRANSITIONS,
    Withdrawal,
    WithdrawalMethod,
    WithdrawalStatus,
)
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import (
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletStatus,
)
from portal.pagination import Page, decode_ranked_cursor, encode_ranked_cursor, keyset_page
from portal.platform.notifications.services import notify
from portal.security.crypto import CryptoError, file_cipher
from portal.security.permissions import Permission, has_permission

#: The idempotency scope of a withdrawal request.
SCOPE = "withdrawal"
#: Longest payout reference or rejection reason.
MAX_NOTE = 500
MIN_REASON = 5


class FeeChanged(Conflict):
    field = "amount"


class InvalidReview(DomainError):
    status_code = 422


# -- Rules ----------------------------------------------------------------------------------------


def check_withdrawal_allowed(user: User, amount: Decimal, code: str) -> None:
    """Whether ``user`` may withdraw ``amount`` in ``code`` at all, before funds are looked at.

    The one place for limits on who may take money out and how much: an active account that
    holds a wallet, verified to the level that allows withdrawals
    (``portal.compliance.kyc.levels.WITHDRAWAL_LEVEL``, an expired identity document counting as
    none), and a currency that can leave the portal.
    """
    from portal.compliance.kyc import levels as kyc_levels
    from portal.compliance.kyc.queries import effective_level

    if user.status != UserStatus.ACTIVE:
        raise Forbidden("Your account is not active, so no money can leave it.")
    if not has_permission(user.role, Permission.USE_WALLET):
        raise Forbidden("Only accounts with a wallet can ask for a withdrawal.")
    kyc_levels.check_may_withdraw(effective_level(user.id))
    if not destinations.methods_for(code):
        raise destinations.MethodNotAllowed(destinations.NOT_WITHDRAWABLE.get(currency(code).code,
                                                                              "This currency cannot be withdrawn."),
                                            field="currency")
    if amount <= 0:
        raise DomainError("The amount must be more than zero.", field="amount")


def _check_transition(withdrawal: Withdrawal, target: WithdrawalStatus) -> None:
    """Refuse unless ``WITHDRAWAL_TRANSITIONS`` lets ``withdrawal`` move to ``target``, saying what
    already happened to it."""
    if target in WITHDRAWAL_TRANSITIONS[withdrawal.status]:
        return
    when = withdrawal.reviewed_at.strftime("%d %b %Y %H:%M UTC") if withdrawal.reviewed_at else ""
    who = ""
    if withdrawal.reviewed_by_id and withdrawal.status != WithdrawalStatus.CANCELLED:
        reviewer = db.session.get(User, withdrawal.reviewed_by_id)
        who = f" by {reviewer.full_name}" if reviewer else ""
    done = {WithdrawalStatus.APPROVED: "approved", WithdrawalStatus.REJECTED: "rejected",
            WithdrawalStatus.CANCELLED: "cancelled"}.get(withdrawal.status, withdrawal.status.value)
    raise Conflict(f"This withdrawal was already {done}{who} on {when}; nothing was changed.")


# -- Asking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """A checked, priced withdrawal, as shown before the student confirms."""

    currency: str
    method: WithdrawalMethod
    destination: Destination
    amount: Decimal
    fee: Decimal
    available: Decimal

    @property
    def total(self) -> Decimal:
        return self.amount + self.fee


def fee_preview(code: str, amount_raw: str | None) -> tuple[Decimal, Decimal]:
    """``(amount, fee)`` for the live preview of the form (no destination needed)."""
    amount = parse_amount(amount_raw, code)
    return amount, fees.fee_for(TransactionType.WITHDRAWAL, amount, code)


def quote(user: User, code: str, method: str | None, destination_raw: str | None, amount_raw) -> Quote:
    """Check every field and price the withdrawal; nothing is held yet."""
    unit = currency(code)
    chosen = destinations.check_method(method, unit.code)
    amount = parse_amount(amount_raw, unit.code)
    check_withdrawal_allowed(user, amount, unit.code)
    destination = destinations.validate(chosen, unit.code, destination_raw)
    fee = fees.fee_for(TransactionType.WITHDRAWAL, amount, unit.code)
    wallet = ledger.user_wallet(user.id, unit.code)
    if wallet is None:
        raise ledger.InsufficientFunds(f"You have no {unit.code} to withdraw.")
    if wallet.status != WalletStatus.ACTIVE:
        state = "frozen" if wallet.status == WalletStatus.FROZEN else "closed"
        raise ledger.WalletUnavailable(f"Your {unit.code} wallet is {state}; no money can move out of it.")
    available = wallet.balance - wallet.locked_balance
    if available < amount + fee:
        fee_text = f" plus the {format_amount(fee, unit.code, exact=True)} fee" if fee else ""
        raise ledger.InsufficientFunds(
            f"Not enough money: {format_amount(available, unit.code, exact=True)} available, "
            f"{format_amount(amount, unit.code, exact=True)}{fee_text} needed.")
    return Quote(unit.code, chosen, destination, amount, fee, available)


def _destination_digest(value: str) -> str:
    """A keyed digest of the destination for the idempotency request: a replay with another
    destination is told apart, and no plain (guessable) hash of a phone number is stored."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"withdrawal-destination:" + value.encode(), hashlib.sha256).hexdigest()


def _aad(withdrawal_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    """Associated data binding an encrypted destination to its row and owner."""
    return b"withdrawals:" + withdrawal_id.bytes + user_id.bytes


def request_withdrawal(user: User, key: str | None, code: str, method: str | None, destination_raw: str | None,
                       amount_raw, *, quoted_fee=None) -> tuple[Withdrawal, bool]:
    """Hold the amount and its fee and record a pending withdrawal, once per ``key``.

    ``quoted_fee`` is the fee the student saw: if the fee rule changed since, nothing is held and
    the student is shown the new fee (a fee is never taken without being shown first). Returns
    ``(withdrawal, replayed)``; a replay of the same request returns the first withdrawal.
    """
    offer = quote(user, code, method, destination_raw, amount_raw)
    if quoted_fee is not None and str(quoted_fee).strip() != "":
        try:
            shown = parse_amount(quoted_fee, offer.currency, allow_zero=True)
        except DomainError:
            raise DomainError("This form is out of date: reload the page and try again.") from None
        if shown != offer.fee:
            raise FeeChanged(f"The fee is now {format_amount(offer.fee, offer.currency, exact=True)} (you were shown "
                             f"{format_amount(shown, offer.currency, exact=True)}). Nothing was held: check and confirm again.")
    request = {"currency": offer.currency, "method": offer.method.value, "amount": str(offer.amount),
               "destination": _destination_digest(offer.destination.value)}

    def perform() -> dict:
        wallet = ledger.user_wallet(user.id, offer.currency)
        withdrawal_id = uuid.uuid4()
        # The masked destination lets the history label the fee leg as this withdrawal's fee.
        details = {"withdrawal": str(withdrawal_id), "destination": offer.destination.masked}
        legs = [ledger.Leg(wallet, ledger.system_wallet(SystemWallet.WITHDRAWALS, offer.currency), offer.amount,
                           TransactionType.WITHDRAWAL,
                           f"Withdrawal to {offer.method.label.lower()} {offer.destination.masked}", details)]
        if offer.fee > 0:
            legs.append(ledger.Leg(wallet, ledger.system_wallet(SystemWallet.FEES, offer.currency, spread_by=user.id), offer.fee,
                                   TransactionType.FEE, "Withdrawal fee", details))
        held = ledger.hold(legs, initiated_by_id=user.id)
        blob = file_cipher(current_app.config).encrypt(offer.destination.value.encode(),
                                                       _aad(withdrawal_id, user.id))
        withdrawal = Withdrawal(id=withdrawal_id, user_id=user.id, wallet_id=wallet.id, amount=offer.amount,
                                fee_amount=offer.fee, currency=offer.currency, method=offer.method,
                                destination_encrypted=blob, destination_masked=offer.destination.masked,
                                status=WithdrawalStatus.PENDING, hold_transaction_id=held[0].id, review_note="")
        db.session.add(withdrawal)
        db.session.flush()
        return {"withdrawal_id": str(withdrawal_id)}

    result, replayed = ledger.once(user.id, key, SCOPE, request, perform)
    withdrawal = db.session.get(Withdrawal, uuid.UUID(result["withdrawal_id"]))
    return withdrawal, replayed


# -- Deciding -------------------------------------------------------------------------------------


def _locked(withdrawal_id: uuid.UUID) -> Withdrawal | None:
    """The withdrawal, fresh and locked ``FOR UPDATE`` until the transaction ends."""
    return db.session.scalars(select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update()
                              .execution_options(populate_existing=True)).one_or_none()


def held_legs(withdrawal: Withdrawal) -> list[Transaction]:
    """The pending transactions of the withdrawal's hold: the amount leg and, if any, the fee leg."""
    hold = db.session.get(Transaction, withdrawal.hold_transaction_id)
    if hold is None:
        raise ledger.LedgerError("This withdrawal's hold is missing.")
    legs = db.session.scalars(select(Transaction).where(Transaction.group_id == hold.group_id,
                                                        Transaction.phase == Phase.PENDING)).all()
    return sorted(legs, key=lambda tx: tx.id != hold.id)


def _reviewer(actor: User) -> None:
    if not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only money administrators review withdrawals.")


def _settle(withdrawal: Withdrawal, target: WithdrawalStatus, by: User, note: str | None = None) -> None:
    """Record the decision: status, who and when together (a CHECK ties ``reviewedAt`` to the status)."""
    withdrawal.status, withdrawal.reviewed_by_id, withdrawal.reviewed_at = target, by.id, utcnow()
    if note is not None:
        withdrawal.review_note = note
    db.session.flush()


def _for_review(actor: User, withdrawal_id: uuid.UUID) -> Withdrawal:
    _reviewer(actor)
    withdrawal = _locked(withdrawal_id)
    if withdrawal is None:
        raise NotFound("That withdrawal does not exist.")
    if withdrawal.user_id == actor.id:
        raise Forbidden("Nobody reviews their own withdrawal: another administrator must decide.")
    return withdrawal


def _note(text: str | None) -> str:
    note = " ".join((text or "").split())
    if len(note) > MAX_NOTE:
        raise InvalidReview(f"Keep it under {MAX_NOTE} characters (this is {len(note)}).", field="note")
    return note


def approve(actor: User, withdrawal_id: uuid.UUID, note: str | None = "", *, link: str | None = None) -> Withdrawal:
    """Pay the withdrawal out: capture both held legs (amount to WITHDRAWALS, fee to FEES)."""
    withdrawal = _for_review(actor, withdrawal_id)
    _check_transition(withdrawal, WithdrawalStatus.APPROVED)
    reference = _note(note)
    ledger.capture(held_legs(withdrawal), initiated_by_id=actor.id,
                   description=f"Withdrawal paid out {withdrawal.destination_masked}")
    _settle(withdrawal, WithdrawalStatus.APPROVED, actor, reference)
    notify(withdrawal.user_id, "withdrawal", "Your withdrawal was approved",
           f"{format_amount(withdrawal.amount, withdrawal.currency)} is on its way to "
           f"{withdrawal.destination_masked}." + (f" Payout reference: {reference}." if reference else ""), link)
    return withdrawal


def reject(actor: User, withdrawal_id: uuid.UUID, reason: str | None, *, link: str | None = None) -> Withdrawal:
    """Refuse the withdrawal with a reason the student reads: release both holds."""
    withdrawal = _for_review(actor, withdrawal_id)
    _check_transition(withdrawal, WithdrawalStatus.REJECTED)
    text = _note(reason)
    if len(text) < MIN_REASON:
        raise InvalidReview("Say why it is rejected: the student reads this reason.", field="reason")
    ledger.release(held_legs(withdrawal), initiated_by_id=actor.id, description="Withdrawal rejected")
    _settle(withdrawal, WithdrawalStatus.REJECTED, actor, text)
    notify(withdrawal.user_id, "withdrawal", "Your withdrawal was rejected",
           f"{format_amount(withdrawal.amount, withdrawal.currency)} to {withdrawal.destination_masked} was not "
           f"paid, and the money is available in your wallet again. Reason: {text}", link)
    return withdrawal


def cancel(user: User, withdrawal_id: uuid.UUID) -> Withdrawal:
    """The student takes back a withdrawal no admin has decided yet: the holds are released."""
    withdrawal = _owned(user, _locked(withdrawal_id))
    _check_transition(withdrawal, WithdrawalStatus.CANCELLED)
    ledger.release(held_legs(withdrawal), initiated_by_id=user.id, description="Withdrawal cancelled")
    _settle(withdrawal, WithdrawalStatus.CANCELLED, user)
    return withdrawal


# -- Reading --------------------------------------------------------------------------------------


def withdrawals_of(user: User, cursor: str | None = None, size: int = 20) -> Page:
    """The user's withdrawals, newest first (one query)."""
    stmt = select(Withdrawal).where(Withdrawal.user_id == user.id)
    return keyset_page(stmt, Withdrawal.created_at, Withdrawal.id, cursor, size)


def withdrawal_for(user: User, withdrawal_id: uuid.UUID) -> Withdrawal:
    """The user's own withdrawal: ``NotFound`` when there is none, ``Forbidden`` when it is
    another user's (in a request, row-level security already hides those, so it is NotFound)."""
    return _owned(user, db.session.get(Withdrawal, withdrawal_id))


def _owned(user: User, withdrawal: Withdrawal | None) -> Withdrawal:
    if withdrawal is None:
        raise NotFound("That withdrawal does not exist.")
    if withdrawal.user_id != user.id:
        raise Forbidden("That withdrawal is another user's.")
    return withdrawal


@dataclass
class QueueRow:
    withdrawal: Withdrawal
    student_name: str
    student_email: str


#: Pending first, then the decided ones; each oldest first.
_RANK = case((Withdrawal.status == WithdrawalStatus.PENDING, 0), else_=1)


def _queue_cursor(row: QueueRow) -> str:
    w = row.withdrawal
    return encode_ranked_cursor(0 if w.status == WithdrawalStatus.PENDING else 1, w.created_at, w.id)


def queue_row(actor: User, withdrawal_id: uuid.UUID) -> QueueRow:
    """One row of the queue (after an inline decision)."""
    _reviewer(actor)
    found = db.session.execute(select(Withdrawal, User.full_name, User.email)
                               .join(User, User.id == Withdrawal.user_id)
                               .where(Withdrawal.id == withdrawal_id)
                               .execution_options(populate_existing=True)).one_or_none()
    if found is None:
        raise NotFound("That withdrawal does not exist.")
    return QueueRow(*found)


def queue(actor: User, status: str | None = None, cursor: str | None = None, size: int = 25) -> Page:
    """Withdrawals for review: pending first, oldest first; ``status`` filters (unknown values
    are ignored). Keyset-paginated on (pending first, createdAt, id); one query with the student."""
    _reviewer(actor)
    stmt = (select(Withdrawal, User.full_name, User.email).join(User, User.id == Withdrawal.user_id))
    if status in WithdrawalStatus._value2member_map_:
        stmt = stmt.where(Withdrawal.status == WithdrawalStatus(status))
    position = decode_ranked_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(_RANK, Withdrawal.created_at, Withdrawal.id) > tuple_(*position))
    rows = [QueueRow(w, name, email) for w, name, email in db.session.execute(
        stmt.order_by(_RANK, Withdrawal.created_at, Withdrawal.id).limit(size + 1))]
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = _queue_cursor(rows[-1])
    return Page(rows, next_cursor)


@dataclass
class Review:
    withdrawal: Withdrawal
    student: User
    #: The student's wallets, each currency's balance and what is locked.
    wallets: list[Wallet]
    #: The full destination, laid out for reading; None when it cannot be decrypted.
    destination: str | None
    destination_error: str | None
    reviewer: User | None


def reveal_destination(actor: User, withdrawal: Withdrawal) -> str:
    """The full destination, decrypted (money administrators only)."""
    _reviewer(actor)
    plain = file_cipher(current_app.config).decrypt(withdrawal.destination_encrypted,
                                                    _aad(withdrawal.id, withdrawal.user_id))
    return destinations.display(withdrawal.method, plain.decode())


def review(actor: User, withdrawal_id: uuid.UUID) -> Review:
    """Everything an admin needs to decide one withdrawal."""
    _reviewer(actor)
    withdrawal = db.session.get(Withdrawal, withdrawal_id)
    if withdrawal is None:
        raise NotFound("That withdrawal does not exist.")
    people = {u.id: u for u in db.session.scalars(
        select(User).where(User.id.in_([withdrawal.user_id, withdrawal.reviewed_by_id or withdrawal.user_id])))}
    wallets = list(db.session.scalars(select(Wallet).where(Wallet.user_id == withdrawal.user_id)
                                      .order_by(Wallet.currency)))
    destination, error = None, None
    try:
        destination = reveal_destination(actor, withdrawal)
    except CryptoError as exc:
        error = f"The destination cannot be shown: {exc}"
    return Review(withdrawal, people[withdrawal.user_id], wallets, destination, error,
                  people.get(withdrawal.reviewed_by_id) if withdrawal.reviewed_by_id else None)


def pending_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Withdrawal)
                             .where(Withdrawal.status == WithdrawalStatus.PENDING)) or 0
