"""Sending money from one student to another: a live preview of fee and total, and the
transfer itself.

A transfer is one ``ledger.post`` of up to two legs in the sender's currency: the amount from
the sender to the recipient (``transfer``) and, when the fee rule asks for one, the fee from the
sender to the fees system wallet (``fee``). The sender pays the fee on top of the amount, so the
recipient receives exactly what was typed.

Rules, each refused with a message a person can act on, and nothing moved:

- the recipient is found by e-mail (case-insensitive), is not the sender, is an active user
  who may hold a wallet (students), and their wallet in the currency is not frozen or closed;
- the amount is positive, has no more decimals than the currency, and the currency is known;
- the sender's wallet is usable and its available balance covers amount plus fee;
- the sender's transfers in the currency over the last 24 hours plus this one stay within
  ``TRANSFER_DAILY_LIMITS`` (scaled by the sender's verification level and their plan's
  ``transfer_limit_multiplier``). The check runs after the sender's wallet is locked, so two
  transfers racing each other cannot both slip under the limit.

``preview_transfer`` runs the same checks without writing and collects the problems instead of
raising, for the live preview; ``send_money`` runs them again under the wallet locks, inside
``ledger.once`` so a double submit pays once.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal, localcontext

from flask import current_app
from sqlalchemy import func, select

from portal import events
from portal.accounts.models import User, UserStatus
from portal.accounts.services import InvalidInput, normalise_email
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden
from portal.money.currency import Currency, currency, parse_amount
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import (
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletStatus,
)
from portal.money.wallets.queries import PRECISION, show_amount
from portal.platform.notifications.services import notify
from portal.security.permissions import Permission, has_permission

#: Longest note a sender may attach (it shows in both histories and the notification).
MAX_NOTE = 140
#: The window the daily limit counts over.
LIMIT_WINDOW = timedelta(hours=24)
SCOPE = "transfer"
#: Where a recipient's notification points.
HISTORY_PATH = "/wallet/history"


class TransferRefused(DomainError):
    status_code = 422


class UnknownRecipient(TransferRefused):
    field = "recipient"


class InvalidRecipient(TransferRefused):
    field = "recipient"


class TransferLimitExceeded(TransferRefused):
    field = "amount"


class FeeChanged(TransferRefused):
    """The fee the sender confirmed is no longer the fee the rule gives."""

    field = None


@dataclass(frozen=True)
class Problem:
    """One reason the transfer cannot go as entered. ``blank``: a field not filled in yet (the
    live preview prompts for it rather than showing an error)."""

    message: str
    field: str | None = None
    blank: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass
class TransferPreview:
    currency: str
    recipient_name: str | None = None
    recipient_email: str | None = None  #: masked
    amount: Decimal | None = None
    fee: Decimal | None = None
    total: Decimal | None = None
    available: Decimal = Decimal(0)
    #: What may still be sent in the currency within the 24-hour window (None: no limit).
    limit_left: Decimal | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def errors(self) -> list[Problem]:
        """The problems that are mistakes, not fields still empty."""
        return [p for p in self.problems if not p.blank]

    @property
    def incomplete(self) -> bool:
        return any(p.blank for p in self.problems)

    @property
    def remaining(self) -> Decimal | None:
        """The sender's available balance after the transfer."""
        if self.total is None:
            return None
        with localcontext(prec=PRECISION):
            return self.available - self.total

    def message_for(self, name: str) -> str | None:
        return next((p.message for p in self.errors if p.field == name), None)


def _exact(function):
    """Run ``function`` with enough digits for any NUMERIC(38, 18) amount: the default context's
    28 would round (or refuse) the largest ETH amounts."""
    @functools.wraps(function)
    def exact(*args, **kwargs):
        with localcontext(prec=PRECISION):
            return function(*args, **kwargs)
    return exact


# -- Pieces shared by the preview and the transfer -------------------------------------------------


def mask_email(email: str) -> str:
    """``jane.doe@example.org`` -> ``ja***@example.org``: enough to recognise, not to harvest."""
    local, _, domain = email.partition("@")
    shown = local[:2] if len(local) > 3 else local[:1]
    return f"{shown}***@{domain}"


def clean_note(raw: str | None) -> str:
    """One line of text: control characters and runs of spaces become single spaces."""
    text = "".join(ch if ch.isprintable() else " " for ch in (raw or ""))
    text = " ".join(text.split())
    if len(text) > MAX_NOTE:
        raise TransferRefused(f"Keep the note to {MAX_NOTE} characters or fewer.", field="note")
    return text


def _check_sender(sender: User) -> None:
    if not has_permission(sender.role, Permission.USE_WALLET) or sender.status != UserStatus.ACTIVE:
        raise Forbidden("Only students with an active account can send money.")


def _recipient_email(raw: str | None) -> str:
    if not (raw or "").strip():
        raise InvalidRecipient("Enter the e-mail address of the person you are paying.")
    try:
        return normalise_email(raw)
    except InvalidInput as exc:
        raise InvalidRecipient(exc.message) from exc


def _find_recipient(sender: User, email: str) -> User:
    return _find_recipient_checks(sender, db.session.scalar(select(User).where(User.email == email)), email)


def _find_recipient_checks(sender: User, recipient: User | None, email: str) -> User:
    if recipient is None:
        raise UnknownRecipient(f"No one is registered with {email}. Check the address with the person you "
                               "are paying.")
    if recipient.id == sender.id:
        raise InvalidRecipient("You cannot send money to yourself.")
    if not has_permission(recipient.role, Permission.USE_WALLET):
        raise InvalidRecipient(f"{recipient.full_name} cannot receive money: only students have wallets.")
    if recipient.status != UserStatus.ACTIVE:
        raise InvalidRecipient(f"{recipient.full_name}'s account is not active, so it cannot receive money.")
    return recipient


def _check_sender_wallet(wallet: Wallet | None, unit: Currency) -> None:
    if wallet is not None and wallet.status != WalletStatus.ACTIVE:
        state = "frozen" if wallet.status == WalletStatus.FROZEN else "closed"
        raise ledger.WalletUnavailable(f"Your {unit.code} wallet is {state}, so no money can leave it. "
                                       "Contact support to find out why.")


def _check_recipient_wallet(wallet: Wallet | None, recipient: User, unit: Currency) -> None:
    if wallet is not None and wallet.status != WalletStatus.ACTIVE:
        state = "frozen" if wallet.status == WalletStatus.FROZEN else "closed"
        raise ledger.WalletUnavailable(f"{recipient.full_name}'s {unit.code} wallet is {state}, so it cannot "
                                       "receive money.", field="recipient")


def _available(wallet: Wallet | None) -> Decimal:
    return wallet.balance - wallet.locked_balance if wallet is not None else Decimal(0)


def _check_funds(available: Decimal, amount: Decimal, fee: Decimal, unit: Currency) -> None:
    total = amount + fee
    if total > available:
        needed = show_amount(total, unit.code, exact=True)
        with_fee = f" ({show_amount(amount, unit.code, exact=True)} plus a {show_amount(fee, unit.code, exact=True)} fee)" if fee else ""
        raise ledger.InsufficientFunds(f"Not enough money: you have {show_amount(available, unit.code, exact=True)} available "
                                       f"and this transfer needs {needed}{with_fee}.")


def daily_limit(code: str, sender_id: uuid.UUID | None = None) -> Decimal | None:
    """The most one sender may transfer in ``code`` within 24 hours (None: no limit for that
    currency): the configured limit, scaled by the sender's identity-verification level
    (``portal.compliance.kyc.levels``) when ``sender_id`` is given."""
    raw = current_app.config.get("TRANSFER_DAILY_LIMITS", {}).get(code)
    configured = Decimal(raw) if raw not in (None, "") else None
    if configured is None or sender_id is None:
        return configured
    from portal.compliance.kyc import levels as kyc_levels
    from portal.compliance.kyc.queries import effective_level

    scaled = kyc_levels.transfer_limit(configured, effective_level(sender_id), currency(code).scale)
    return _with_plan(scaled, sender_id, code)


def _with_plan(limit: Decimal, sender_id: uuid.UUID, code: str) -> Decimal:
    """``limit`` times the sender's plan's ``transfer_limit_multiplier``, rounded down, asked
    through the ``entitlement_asked`` event (billing stands on the wallets, so they cannot
    import it); unchanged when no one answers."""
    answers = [value for _receiver, value in events.entitlement_asked.send(
        user_id=sender_id, feature="transfer_limit_multiplier")]
    multiplier = Decimal(str(answers[0])) if answers else Decimal(1)
    if multiplier == 1:
        return limit
    return (limit * multiplier).quantize(currency(code).quantum, rounding=ROUND_DOWN)


def sent_in_window(sender_id: uuid.UUID, code: str) -> Decimal:
    """What the sender transferred in ``code`` over the last 24 hours (fees not counted).
    Reads through ``ix_transactions_debit_history``."""
    since = utcnow() - LIMIT_WINDOW
    total = db.session.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.debit_user_id == sender_id, Transaction.created_at > since,
            Transaction.type == TransactionType.TRANSFER, Transaction.currency == code,
            Transaction.phase.in_((Phase.SINGLE, Phase.POST))))
    return Decimal(total)


def _limit_left(sender_id: uuid.UUID, unit: Currency) -> Decimal | None:
    limit = daily_limit(unit.code, sender_id)
    if limit is None:
        return None
    return max(limit - sent_in_window(sender_id, unit.code), Decimal(0))


def _check_limit(left: Decimal | None, amount: Decimal, unit: Currency, sender_id: uuid.UUID) -> None:
    if left is not None and amount > left:
        from portal.compliance.kyc import levels as kyc_levels
        from portal.compliance.kyc.queries import effective_level

        level = effective_level(sender_id)
        limit = daily_limit(unit.code, sender_id)
        more = (f" Verify your identity at {kyc_levels.VERIFICATION_PATH} to raise it."
                if level < kyc_levels.MAX_LEVEL else "")
        raise TransferLimitExceeded(f"At verification level {level} you can send at most "
                                    f"{show_amount(limit, unit.code)} in any 24 hours; "
                                    f"{show_amount(left, unit.code)} is left right now.{more}")


def _read_wallet(user_id: uuid.UUID, code: str) -> Wallet | None:
    """Another user's wallet, read (never created) with the ledger's row access."""
    with ledger.as_ledger():
        return ledger.user_wallet(user_id, code)


# -- Preview ----------------------------------------------------------------------------------------


@_exact
def preview_transfer(sender: User, recipient_email: str | None, raw_amount: str | None,
                     code: str | None) -> TransferPreview:
    """What sending ``raw_amount`` ``code`` to ``recipient_email`` would do, and every reason it
    would be refused. Writes nothing and never raises for ordinary bad input."""
    _check_sender(sender)
    problems: list[Problem] = []

    def problem(exc: DomainError, default_field: str, *, blank: bool = False) -> None:
        problems.append(Problem(exc.message, exc.field or default_field, blank))

    try:
        unit = currency(code)
    except DomainError as exc:
        preview = TransferPreview(currency=(code or "").upper()[:3])
        problem(exc, "currency")
        preview.problems = problems
        return preview
    preview = TransferPreview(currency=unit.code)

    amount = None
    if not str(raw_amount or "").strip():
        problems.append(Problem("Enter an amount.", "amount", blank=True))
    else:
        try:
            amount = parse_amount(raw_amount, unit.code)
        except DomainError as exc:
            problem(exc, "amount")

    recipient = None
    if not (recipient_email or "").strip():
        problems.append(Problem("Enter the e-mail address of the person you are paying.", "recipient", blank=True))
    else:
        try:
            recipient = _find_recipient(sender, _recipient_email(recipient_email))
            preview.recipient_name, preview.recipient_email = recipient.full_name, mask_email(recipient.email)
            _check_recipient_wallet(_read_wallet(recipient.id, unit.code), recipient, unit)
        except DomainError as exc:
            problem(exc, "recipient")

    own = ledger.user_wallet(sender.id, unit.code)
    preview.available = _available(own)
    try:
        _check_sender_wallet(own, unit)
    except DomainError as exc:
        problem(exc, "amount")

    preview.limit_left = _limit_left(sender.id, unit)
    if amount is not None:
        preview.amount = amount
        preview.fee = fees.fee_for(TransactionType.TRANSFER, amount, unit.code)
        preview.total = amount + preview.fee
        for check in (lambda: _check_funds(preview.available, amount, preview.fee, unit),
                      lambda: _check_limit(preview.limit_left, amount, unit, sender.id)):
            try:
                check()
            except DomainError as exc:
                problem(exc, "amount")
    preview.problems = problems
    return preview


# -- Sending ----------------------------------------------------------------------------------------


@_exact
def send_money(sender: User, recipient_email: str | None, raw_amount: str | None, code: str | None,
               note: str | None, idempotency_key: str | None, *,
               expected_fee: str | Decimal | None = None) -> tuple[dict, bool]:
    """Send ``raw_amount`` ``code`` to the user with ``recipient_email``; the sender pays the fee.

    Returns ``(receipt, replayed)``: the receipt of the transfer this key made, and whether it was
    made by an earlier request. ``expected_fee`` is the fee the sender saw when confirming; if the
    rule changed since, the transfer is refused so nobody pays a fee they did not see. The caller
    commits."""
    _check_sender(sender)
    unit = currency(code)
    amount = parse_amount(raw_amount, unit.code)
    email = _recipient_email(recipient_email)
    text = clean_note(note)
    request = {"recipient": email, "amount": str(amount), "currency": unit.code, "note": text}

    def perform() -> dict:
        return _transfer(sender, email, amount, unit, text, expected_fee)

    return ledger.once(sender.id, idempotency_key, SCOPE, request, perform)


def _recipient_and_fee_version(sender: User, email: str, unit: Currency) -> tuple[User, str | None]:
    """``_find_recipient`` and, in the same statement, the version of the transfer fee rule
    (``fees.version_of``), so the rule kept in process is checked on every transfer for free."""
    row = db.session.execute(select(User, fees.version_of(TransactionType.TRANSFER, unit.code))
                             .where(User.email == email)).first()
    recipient, version = row if row is not None else (None, None)
    return _find_recipient_checks(sender, recipient, email), version


def _transfer(sender: User, email: str, amount: Decimal, unit: Currency, note: str,
              expected_fee: str | Decimal | None) -> dict:
    recipient, rule_version = _recipient_and_fee_version(sender, email, unit)
    fee = fees.compute(fees.rule_at(TransactionType.TRANSFER, unit.code, rule_version), amount, unit.code)
    if expected_fee not in (None, ""):
        try:
            shown = Decimal(str(expected_fee))
        except ArithmeticError:
            shown = None
        if shown != fee:
            raise FeeChanged(f"The fee for this transfer is now {show_amount(fee, unit.code, exact=True)}. Nothing was sent: "
                             "check the new total and confirm again.")
    limit = daily_limit(unit.code, sender.id)
    # The wallets by owner: ``ledger.post`` finds them (opening the recipient's), locks them in
    # its order and checks them, the sender's 24-hour total under the lock of their wallet, so
    # two transfers racing each other cannot both slip under the limit.
    own = ledger.UserWalletRef(sender.id, unit.code)
    theirs = ledger.UserWalletRef(recipient.id, unit.code, open=True)
    details = {"from_name": sender.full_name, "to_name": recipient.full_name, "note": note}
    legs = [ledger.Leg(own, theirs, amount, TransactionType.TRANSFER, f"Transfer to {recipient.full_name}"[:300],
                       details)]
    if fee > 0:
        legs.append(ledger.Leg(own, ledger.system_wallet_ref(SystemWallet.FEES, unit.code, spread_by=sender.id), fee,
                               TransactionType.FEE, "Transfer fee",
                               {"to_name": "Azora fees", "note": f"Fee for the transfer to {recipient.full_name}"}))
    spend = None if limit is None else ledger.SpendLimit(sender.id, unit.code, TransactionType.TRANSFER,
                                                         utcnow() - LIMIT_WINDOW, limit, amount)
    try:
        posted = ledger.post(legs, initiated_by_id=sender.id, spend_limit=spend)
    except ledger.WalletUnavailable as exc:
        # In the transfer's words: the sender's wallet, else the recipient's.
        if exc.user_id == sender.id and exc.sending:
            _check_sender_wallet(_Status(exc.status), unit)
        if exc.user_id == recipient.id:
            _check_recipient_wallet(_Status(exc.status), recipient, unit)
        raise
    except ledger.SpendLimitExceeded as exc:
        _check_limit(exc.left, amount, unit, sender.id)
        raise
    except ledger.InsufficientFunds as exc:
        if exc.user_id == sender.id:
            _check_funds(exc.available, amount, fee, unit)
        raise

    shown = show_amount(amount, unit.code)
    notify(recipient.id, "money_received", f"{sender.full_name} sent you {shown}",
           note or None, HISTORY_PATH)
    return {
        "transaction_id": str(posted[0].id),
        "fee_transaction_id": str(posted[1].id) if fee > 0 else None,
        "group_id": str(posted[0].group_id),
        "recipient_name": recipient.full_name,
        "recipient_email": mask_email(recipient.email),
        "amount": str(amount),
        "fee": str(fee),
        "total": str(amount + fee),
        "currency": unit.code,
        "note": note,
        "created_at": posted[0].created_at.isoformat(),
    }


@dataclass(frozen=True)
class _Status:
    """A wallet's status as ``_check_sender_wallet`` and ``_check_recipient_wallet`` read it."""

    status: WalletStatus
