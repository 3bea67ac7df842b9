"""The card network's side: authorizations decided in real time against the wallet, then the
messages that follow them (capture, reversal, merchant refund) and the expiry of holds.

Messages arrive as JSON signed by the network (``verify``): header ``Azora-Card-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 over "<t>." + body under CARD_NETWORK_SECRET>``. A message
whose time is outside ``CARD_NETWORK_TOLERANCE_SECONDS`` is refused as a replay; a missing or
wrong signature as forged. Nothing is believed before that.

Every message is applied once, by its network id (``card_transactions.networkId`` is unique): a
second delivery gets the first answer again. Decisions are ISO 8583 response codes
(``portal.money.cards.codes``); a decline leaves nothing behind but its own row.

Authorization, in one database transaction and one call of the database function
``card_authorize`` (migration 0021; ``authorize``):

1. the card, found by the keyed hash of its number, is locked (``FOR UPDATE``): authorizations
   on one card, and a freeze arriving meanwhile, queue here, so a frozen card declines the next
   one and limits are summed over settled figures; the message's network id is looked up after
   the lock (a duplicate gets the first answer);
2. state, expiry, security code (derived again in Python, which alone holds the key, and never
   stored; wrong ones count, and the card freezes after ``CARD_MAX_WRONG_CVV`` with a security
   event), currency and amount, the merchant category and country, per-purchase / daily /
   monthly limits;
3. the amount in the wallet's currency (the exchange's current rate when the merchant's
   currency differs, rounded up: the holder never pays less than the merchant asked; the
   function then asks for it, and a second call carries it, the card still locked);
4. a hold on the ledger, wallet -> card float, as ``ledger.hold`` places one (the wallets locked
   in id order with the ledger's role, what is not available refused, so fifty authorizations
   at once never overdraw it), and the card transaction row, approved or declined.

Its budget is p99 under 100 ms, so the path is kept short: one statement carries the network's
identity and the whole decision (no ORM object is built; the decline reasons are sent from
here, ``_DECLINE_REASONS``); the hold is not announced after the commit, so no monitoring job is
deferred for it: the monitoring rules judge authorizations in a periodic sweep
(``tasks.monitor_card_activity``). An approval is three statements, request hooks included
(the request's identity, its block check, ``card_authorize``), and the commit.

Capture moves the hold (all of it, part of it, or more within ``CARD_TIP_TOLERANCE_PERCENT``:
the hold is then released and the captured amount moved in one go); a reversal releases an
open hold, and is refused after capture (the merchant refunds instead); a refund moves money
from the card float back to the wallet, at most what was captured when it names its
authorization. Captures and reversals whose authorization is unknown are declined with ``25``
and noted in ``card_network_messages`` (the network retries; once the authorization is there
the retry applies). Holds not captured within ``CARD_HOLD_DAYS`` are released by ``expire_holds``.

Everything runs as the system actor ``system:card-network``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm.attributes import set_committed_value

from portal.compliance.security import events as security
from portal.compliance.security.models import SecurityEventKind, Severity
from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as, current_actor, push, reapply, reset
from portal.errors import Conflict, DomainError
from portal.money.cards import codes, pan
from portal.money.cards.models import (
    CardNetworkMessage,
    CardTransaction,
    CardTransactionKind,
    CardTransactionState,
    NetworkMessageOutcome,
    VirtualCard,
)
from portal.money.cards.services import freeze_for_security
from portal.money.currency import CURRENCIES, MAX_INTEGER_DIGITS, currency
from portal.money.wallets import ledger
from portal.money.wallets.ledger import InsufficientFunds, Leg, WalletUnavailable
from portal.money.wallets.models import (
    SYSTEM_SHARDS,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
)

NETWORK_ACTOR = Actor.system("card-network")
#: The same actor with the ledger's row-level-security role, for the messages themselves: they
#: read the card, the wallet and the card float and post on the ledger, and acting with the
#: ledger's role from the start spares the identity switches (a statement each) the ledger would
#: make around every movement. The audit trail still names ``system:card-network``.
NETWORK_LEDGER_ACTOR = Actor(label=NETWORK_ACTOR.label, role=ledger.LEDGER_ROLE)
SIGNATURE_HEADER = "Azora-Card-Signature"
#: Larger than any real message; bigger bodies are refused before they are parsed.
MAX_BODY = 16 * 1024
_NETWORK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_MCC = re.compile(r"^[0-9]{4}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
KINDS = ("authorize", "capture", "reverse", "refund")


class Unauthenticated(DomainError):
    """Unsigned, forged or replayed: answered 400 (and a security event is kept)."""

    status_code = 400


class BadMessage(DomainError):
    """Not a message the network could have meant: answered 400."""

    status_code = 400


# -- Signatures -----------------------------------------------------------------------------------


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The signature header's value for ``body`` (the simulator and tests sign with it)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify(body: bytes, header: str | None, secret: str, tolerance: int, now: float | None = None) -> None:
    if not secret:
        raise Unauthenticated("The card network secret is not configured.")
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    stamps, signatures = parts.get("t", []), parts.get("v1", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise Unauthenticated(f"The message is not signed ({SIGNATURE_HEADER}: t=...,v1=...).")
    stamp = int(stamps[0])
    now = time.time() if now is None else now
    if abs(now - stamp) > tolerance:
        raise Unauthenticated("The message's timestamp is outside the allowed window (a replay, or a clock "
                              "out of step).")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise Unauthenticated("The message's signature does not match.")


# -- Messages -------------------------------------------------------------------------------------


@dataclass
class Message:
    kind: str
    network_id: str
    amount: Decimal | None = None
    currency: str = ""
    authorization_id: str | None = None
    number: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    cvv: str | None = None
    merchant_name: str = ""
    mcc: str = ""
    country: str = ""

    def summary(self) -> dict:
        """What may be kept of the message: never the card's number or security code."""
        return {"amount": str(self.amount) if self.amount is not None else None, "currency": self.currency,
                "merchant": self.merchant_name, "mcc": self.mcc, "country": self.country}


def _text(data: dict, key: str, size: int) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadMessage(f"{key} must be text.")
    return value.replace("\x00", "").strip()[:size]


def _amount(data: dict) -> Decimal:
    raw = data.get("amount")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
        raise BadMessage("amount must be a decimal number written as text, such as \"12.50\".")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise BadMessage("amount is not a number.") from exc
    if not value.is_finite():
        raise BadMessage("amount is not a number.")
    return value


def _int(data: dict, key: str) -> int:
    raw = data.get(key)
    if isinstance(raw, bool):
        raise BadMessage(f"{key} must be a whole number.")
    try:
        return int(str(raw).strip())
    except (TypeError, ValueError) as exc:
        raise BadMessage(f"{key} must be a whole number.") from exc


def parse(kind: str, body: bytes) -> Message:
    """The message of ``kind`` in ``body``; ``BadMessage`` for anything malformed."""
    try:
        data = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadMessage("The body is not JSON.") from exc
    if not isinstance(data, dict):
        raise BadMessage("The body must be a JSON object.")
    network_id = data.get("id")
    if not isinstance(network_id, str) or not _NETWORK_ID.match(network_id):
        raise BadMessage("id must be the network's message id (letters, digits, _ . : -, at most 100).")
    message = Message(kind=kind, network_id=network_id)
    if kind in ("authorize", "capture", "refund"):
        message.amount = _amount(data)
        message.currency = _text(data, "currency", 8).upper()
        if not _CURRENCY.match(message.currency):
            raise BadMessage("currency must be a three-letter ISO 4217 code.")
    if kind in ("capture", "reverse", "refund"):
        original = data.get("authorization_id")
        if original is not None and (not isinstance(original, str) or not _NETWORK_ID.match(original)):
            raise BadMessage("authorization_id must be the network id of an authorization.")
        if original is None and kind != "refund":
            raise BadMessage("authorization_id is required.")
        message.authorization_id = original
    if kind == "authorize" or (kind == "refund" and message.authorization_id is None):
        card = data.get("card")
        if not isinstance(card, dict):
            raise BadMessage("card must be an object with number, exp_month, exp_year and cvv.")
        number = card.get("number")
        if not isinstance(number, str) or len(number) > 40:
            raise BadMessage("card.number must be text.")
        message.number = number
        if kind == "authorize":
            message.exp_month = _int(card, "exp_month")
            message.exp_year = _int(card, "exp_year")
            cvv = card.get("cvv")
            if not isinstance(cvv, str) or not re.fullmatch(r"[0-9]{3,4}", cvv):
                raise BadMessage("card.cvv must be three or four digits, as text.")
            message.cvv = cvv
    if kind in ("authorize", "refund"):
        merchant = data.get("merchant") or {}
        if not isinstance(merchant, dict):
            raise BadMessage("merchant must be an object with name, mcc and country.")
        message.merchant_name = _text(merchant, "name", 100)
        message.mcc = _text(merchant, "mcc", 4)
        message.country = _text(merchant, "country", 2).upper()
        if kind == "authorize" and (not _MCC.match(message.mcc) or not _COUNTRY.match(message.country)):
            raise BadMessage("merchant.mcc must be four digits and merchant.country two letters.")
        if message.mcc and not _MCC.match(message.mcc):
            raise BadMessage("merchant.mcc must be four digits.")
    return message


# -- Answers --------------------------------------------------------------------------------------


@dataclass
class Answer:
    network_id: str
    code: str
    reason: str = ""
    duplicate: bool = False
    reference: uuid.UUID | None = None
    extra: dict = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.code == codes.APPROVED

    def as_json(self) -> dict:
        return {"id": self.network_id, "approved": self.approved, "code": self.code,
                "reason": self.reason or codes.reason(self.code), "duplicate": self.duplicate,
                "reference": str(self.reference) if self.reference else None, **self.extra}


def _answer_of(row: CardTransaction, duplicate: bool = False) -> Answer:
    extra = {"amount": str(row.amount), "currency": row.currency} if row.approved else {}
    return Answer(row.network_id, row.response_code, row.decline_reason or codes.reason(row.response_code),
                  duplicate, row.id, extra)


def _existing(network_id: str) -> CardTransaction | None:
    return db.session.scalar(select(CardTransaction).where(CardTransaction.network_id == network_id))


def _noted(message: Message, code: str, outcome: NetworkMessageOutcome, detail: str) -> Answer:
    """A message that reaches no card or original: noted for reconciliation, answered ``code``."""
    with acting_as(NETWORK_ACTOR, db.session):
        db.session.add(CardNetworkMessage(network_id=message.network_id, kind=_KIND[message.kind],
                                          original_network_id=message.authorization_id, outcome=outcome,
                                          response_code=code, detail=detail[:300], summary=message.summary()))
        db.session.flush()
    return Answer(message.network_id, code, detail)


_KIND = {"authorize": CardTransactionKind.AUTHORIZATION, "capture": CardTransactionKind.CAPTURE,
         "reverse": CardTransactionKind.REVERSAL, "refund": CardTransactionKind.REFUND}


# -- Helpers --------------------------------------------------------------------------------------


def _config_int(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def _expired(card, now: datetime) -> bool:
    return (now.year, now.month) > (card.exp_year, card.exp_month)


def _merchant_scale_ok(amount: Decimal, code: str) -> bool:
    unit = CURRENCIES[code]
    if amount <= 0 or amount.adjusted() >= MAX_INTEGER_DIGITS:
        return False
    return amount == amount.quantize(unit.quantum, rounding=ROUND_DOWN)


def _in_wallet_currency(amount: Decimal, from_code: str, to_code: str, *, up: bool,
                        rate: Decimal | None = None) -> tuple[Decimal, Decimal | None]:
    """``amount`` of ``from_code`` in ``to_code`` and the rate used (None: same currency).
    ``up``: round up (what the holder pays), else down (what the holder gets back)."""
    if from_code == to_code:
        return amount, None
    if rate is None:
        from portal.money.exchange.services import usable_rate

        rate = usable_rate(from_code, to_code).rate
    quantum = currency(to_code).quantum
    converted = (amount * rate).quantize(quantum, rounding=ROUND_UP if up else ROUND_DOWN)
    return converted, rate


def _float_wallet(card_user_id: uuid.UUID, code: str) -> Wallet:
    return ledger.system_wallet(SystemWallet.CARD_FLOAT, code, spread_by=card_user_id)


#: The authorization's one statement (migration 0021): the identity, the card locked and checked,
#: the spending sums, the hold on the ledger and the card transaction row. Its argument is one
#: JSON document (``_decision``); the answer says what was decided, or what Python must add.
_AUTHORIZE = text("SELECT card_authorize(CAST(:message AS jsonb))")

#: What each decline of ``card_authorize`` says, by the name the function gives it (the texts
#: that depend on the message are added per message: ``currency``, ``mcc``, ``country``).
_DECLINE_REASONS = {
    "canceled": "The card is canceled",
    "replaced": "The card is replaced",
    "frozen": codes.reason(codes.RESTRICTED_CARD),
    "expired": codes.reason(codes.EXPIRED_CARD),
    "expiry_mismatch": "The expiry date does not match the card",
    "cvv": codes.reason(codes.BAD_CVV),
    "amount": codes.reason(codes.INVALID_AMOUNT),
    "rate": codes.reason(codes.NO_RATE),
    "per_purchase": "Above the card's per-purchase limit",
    "daily": "Above the card's daily limit",
    "monthly": "Above the card's monthly limit",
    "wallet": codes.reason(codes.DO_NOT_HONOR),
    "funds": codes.reason(codes.INSUFFICIENT_FUNDS),
}


class DeliveredAtOnce(Exception):
    """The same message arrived twice at the same moment and the other delivery was applied
    first (the unique network id refused this one's row). The caller rolls back and receives
    the message again, which then finds the first answer."""


# -- Authorization --------------------------------------------------------------------------------


def _wrong_code(card_id: uuid.UUID, network_id: str) -> None:
    """Count a wrong security code on the (locked) card; freeze it at ``CARD_MAX_WRONG_CVV``
    with a security event. Rare, so the card is loaded as an object here only."""
    card = db.session.get(VirtualCard, card_id, populate_existing=True)
    card.wrong_cvv_count += 1
    if card.wrong_cvv_count >= _config_int("CARD_MAX_WRONG_CVV", 3):
        freeze_for_security(card, f"Frozen after {card.wrong_cvv_count} wrong security codes in a row")
        security.record(SecurityEventKind.CARD_CVV_LOCKOUT, Severity.HIGH,
                        f"Card {card.bin}…{card.last4} frozen after {card.wrong_cvv_count} wrong security codes",
                        user_id=card.user_id, details={"card_id": str(card.id), "network_id": network_id})


def _decision(message: Message, number: str, now: datetime) -> dict:
    """What ``card_authorize`` needs of the message, checked as far as Python alone can: the
    security code is compared here (against the expiry sent: the function declines first when
    that is not the card's), since only Python holds the card verification key."""
    exp_year = message.exp_year + 2000 if message.exp_year < 100 else message.exp_year
    known = message.currency in CURRENCIES
    group = codes.group_of(message.mcc)
    reasons = {**_DECLINE_REASONS,
               "currency": f"{message.currency} is not a currency the portal settles",
               "country": f"Purchases in {message.country} are blocked on this card"}
    if group is not None:
        reasons["mcc"] = f"Merchant category blocked on this card ({codes.MCC_GROUPS[group][0]})"
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    actor = current_actor() or Actor(label="")
    amount = message.amount
    return {
        "actor": {"label": actor.label, "role": actor.role, "user_id": actor.user_id},
        "lookup": pan.lookup_hash(number), "network_id": message.network_id,
        "now_year": now.year, "now_month": now.month,
        # As text: any whole number the network sends compares, none overflows an integer column.
        "exp_month": str(message.exp_month), "exp_year": str(exp_year),
        "cvv_ok": pan.code_matches(number, message.exp_month, exp_year, message.cvv),
        "currency": message.currency, "currency_known": known,
        "scale_ok": known and _merchant_scale_ok(amount, message.currency),
        "amount": str(amount), "merchant_amount": str(max(amount, Decimal(0)) if abs(amount).adjusted() < 20
                                                      else Decimal(0)),
        "mcc_group": group, "country": message.country, "mcc": message.mcc, "merchant_name": message.merchant_name,
        "day": day.isoformat(), "month": day.replace(day=1).isoformat(),
        "hold_expires_at": (now + timedelta(days=_config_int("CARD_HOLD_DAYS", 7))).isoformat(),
        "float_shards": SYSTEM_SHARDS[SystemWallet.CARD_FLOAT],
        "reasons": reasons,
    }


def _decide(payload: dict) -> dict:
    payload["created"] = utcnow().isoformat()  # the portal's clock, for the function to compare with its own
    return db.session.execute(_AUTHORIZE, {"message": json.dumps(payload)}).scalar_one()


def _refresh_session(answer: dict) -> None:
    """Give the session's copies of the card and the wallet (when it holds them) what the call
    changed, as a reload would; no statement."""
    if answer["cvv_reset"]:
        card = db.session.identity_map.get(db.session.identity_key(VirtualCard, uuid.UUID(answer["card"])))
        if card is not None:
            set_committed_value(card, "wrong_cvv_count", 0)
    if "locked" in answer:
        wallet = db.session.identity_map.get(db.session.identity_key(Wallet, uuid.UUID(answer["wallet"])))
        if wallet is not None:
            set_committed_value(wallet, "locked_balance", Decimal(answer["locked"]))


def authorize(message: Message, now: datetime | None = None) -> Answer:
    """Decide an authorization: one call of ``card_authorize`` (migration 0021), two when the
    merchant's currency is not the card's (the rate is read in between, the card still locked)."""
    now = now or utcnow()
    number = pan.normalise(message.number)
    if number is None:
        reapply(db.session)
        existing = _existing(message.network_id)
        if existing is not None:
            return _answer_of(existing, duplicate=True)
        return _noted(message, codes.NO_SUCH_CARD, NetworkMessageOutcome.REJECTED, codes.reason(codes.NO_SUCH_CARD))
    payload = _decision(message, number, now)
    answer = _decide(payload)
    converted = None
    if "convert" in answer:
        try:
            converted = _in_wallet_currency(message.amount, message.currency, answer["convert"], up=True)
            payload["converted"] = {"currency": answer["convert"], "amount": str(converted[0]),
                                    "rate": str(converted[1])}
        except DomainError:
            payload["converted"] = {"currency": answer["convert"], "no_rate": True}
        answer = _decide(payload)
    if answer.get("no_card"):
        if answer["duplicate"] is not None:
            return _answer_of(db.session.get(CardTransaction, uuid.UUID(answer["duplicate"])), duplicate=True)
        return _noted(message, codes.NO_SUCH_CARD, NetworkMessageOutcome.REJECTED, codes.reason(codes.NO_SUCH_CARD))
    if "duplicate" in answer:
        return _answer_of(db.session.get(CardTransaction, uuid.UUID(answer["duplicate"])), duplicate=True)
    _refresh_session(answer)
    if answer["code"] != codes.APPROVED:
        if answer["wrong_cvv"]:
            _wrong_code(uuid.UUID(answer["card"]), message.network_id)
        return Answer(message.network_id, answer["code"], answer["reason"], False, uuid.UUID(answer["id"]))
    amount = converted[0] if converted is not None else message.amount
    return Answer(message.network_id, codes.APPROVED, codes.reason(codes.APPROVED), False, uuid.UUID(answer["id"]),
                  {"amount": str(amount), "currency": answer["currency"]})


# -- After the authorization ----------------------------------------------------------------------


def _original(message: Message) -> CardTransaction | None:
    return db.session.scalar(select(CardTransaction).where(CardTransaction.network_id == message.authorization_id,
                                                           CardTransaction.kind == CardTransactionKind.AUTHORIZATION)
                             .with_for_update().execution_options(populate_existing=True))


def _follow_up(message: Message, auth: CardTransaction, kind: CardTransactionKind) -> CardTransaction:
    return CardTransaction(id=uuid.uuid4(), card_id=auth.card_id, user_id=auth.user_id, wallet_id=auth.wallet_id,
                           kind=kind, network_id=message.network_id, authorization_id=auth.id,
                           merchant_name=auth.merchant_name, mcc=auth.mcc, merchant_country=auth.merchant_country,
                           merchant_amount=Decimal(0), merchant_currency=auth.merchant_currency,
                           amount=Decimal(0), currency=auth.currency, rate=auth.rate,
                           captured_amount=Decimal(0), refunded_amount=Decimal(0), ledger_transaction_ids=[])


def _decline_row(row: CardTransaction, code: str, reason: str = "") -> Answer:
    row.state = CardTransactionState.DECLINED
    row.response_code = code
    row.decline_reason = (reason or codes.reason(code))[:200]
    db.session.add(row)
    db.session.flush()
    return _answer_of(row)


def _unusable_auth(auth: CardTransaction, what: str) -> str | None:
    if auth.state == CardTransactionState.PENDING:
        return None
    return {CardTransactionState.DECLINED: f"The authorization was declined: nothing to {what}",
            CardTransactionState.CAPTURED: f"The authorization was captured already: nothing to {what}",
            CardTransactionState.REVERSED: f"The authorization was reversed: nothing to {what}",
            CardTransactionState.EXPIRED: f"The authorization expired: nothing to {what}"}[auth.state]


def _subject_or_answer(message: Message, subject, missing: Callable[[], Answer]):
    """``subject`` (the locked authorization or card a message acts on), or the answer already
    due: the first answer to a duplicate (looked up after the subject's lock, which serializes
    deliveries), or ``missing()`` when there is no subject."""
    existing = _existing(message.network_id)
    if existing is not None:
        return None, _answer_of(existing, duplicate=True)
    if subject is None:
        return None, missing()
    return subject, None


def _original_or_answer(message: Message, what: str):
    """The authorization a follow-up message is about, or the answer already due: the first
    answer to a duplicate, or a parked note when the authorization has not arrived yet."""
    return _subject_or_answer(message, _original(message), lambda: _noted(
        message, codes.NO_ORIGINAL, NetworkMessageOutcome.PARKED,
        f"{what} of an authorization not known (yet): retry once it has arrived"))


def _card_or_answer(message: Message):
    """The card a refund without an authorization names (by its number, locked), or the answer
    already due: the first answer to a duplicate, or a note that no such card exists."""
    number = pan.normalise(message.number)
    card = None if number is None else db.session.scalar(
        select(VirtualCard).where(VirtualCard.pan_lookup == pan.lookup_hash(number))
        .with_for_update().execution_options(populate_existing=True))
    return _subject_or_answer(message, card, lambda: _noted(
        message, codes.NO_SUCH_CARD, NetworkMessageOutcome.REJECTED, codes.reason(codes.NO_SUCH_CARD)))


def capture(message: Message) -> Answer:
    auth, answer = _original_or_answer(message, "Capture")
    if answer is not None:
        return answer
    row = _follow_up(message, auth, CardTransactionKind.CAPTURE)
    row.merchant_amount = max(message.amount, Decimal(0)) if abs(message.amount).adjusted() < 20 else Decimal(0)
    problem = _unusable_auth(auth, "capture")
    if problem:
        return _decline_row(row, codes.INVALID_TRANSACTION, problem)
    if message.currency != auth.merchant_currency:
        return _decline_row(row, codes.INVALID_TRANSACTION,
                            f"The capture's currency ({message.currency}) is not the authorization's "
                            f"({auth.merchant_currency})")
    if not _merchant_scale_ok(message.amount, message.currency):
        return _decline_row(row, codes.INVALID_AMOUNT)
    if message.amount == auth.merchant_amount:
        amount = auth.amount
    else:
        amount, _rate = _in_wallet_currency(message.amount, message.currency, auth.currency, up=True, rate=auth.rate)
    tolerance = Decimal(_config_int("CARD_TIP_TOLERANCE_PERCENT", 20))
    ceiling = auth.amount + (auth.amount * tolerance / 100).quantize(currency(auth.currency).quantum,
                                                                     rounding=ROUND_DOWN)
    if amount > ceiling:
        return _decline_row(row, codes.INVALID_AMOUNT,
                            f"The capture exceeds the authorization by more than the {tolerance}% tolerance")
    pending = db.session.get(Transaction, auth.hold_transaction_id)
    try:
        with db.session.begin_nested():
            if amount == auth.amount:
                moved = ledger.capture([pending], description=f"Card {auth.merchant_name}: captured"[:300])
            else:
                released = ledger.release([pending], description="Card hold released for a different capture")
                wallet = db.session.get(Wallet, auth.wallet_id)
                float_wallet = db.session.get(Wallet, pending.credit_wallet_id)
                posted = ledger.post([Leg(wallet, float_wallet, amount, TransactionType.CARD_PURCHASE,
                                          f"Card: {auth.merchant_name}"[:300], dict(pending.details))],
                                     group_id=pending.group_id)
                moved = released + posted
    except InsufficientFunds:
        return _decline_row(row, codes.INSUFFICIENT_FUNDS, "Not enough money for the amount above the hold")
    except WalletUnavailable:
        return _decline_row(row, codes.DO_NOT_HONOR)
    auth.state = CardTransactionState.CAPTURED
    auth.captured_amount = amount
    row.state = CardTransactionState.CAPTURED
    row.response_code = codes.APPROVED
    row.amount = amount
    row.ledger_transaction_ids = [tx.id for tx in moved]
    db.session.add(row)
    db.session.flush()
    return _answer_of(row)


def reverse(message: Message) -> Answer:
    auth, answer = _original_or_answer(message, "Reversal")
    if answer is not None:
        return answer
    row = _follow_up(message, auth, CardTransactionKind.REVERSAL)
    row.merchant_amount = auth.merchant_amount
    problem = _unusable_auth(auth, "reverse")
    if problem:
        if auth.state == CardTransactionState.CAPTURED:
            problem += " (the merchant refunds instead)"
        return _decline_row(row, codes.INVALID_TRANSACTION, problem)
    pending = db.session.get(Transaction, auth.hold_transaction_id)
    released = ledger.release([pending], description=f"Card {auth.merchant_name}: reversed"[:300])
    auth.state = CardTransactionState.REVERSED
    row.state = CardTransactionState.REVERSED
    row.response_code = codes.APPROVED
    row.amount = auth.amount
    row.ledger_transaction_ids = [tx.id for tx in released]
    db.session.add(row)
    db.session.flush()
    return _answer_of(row)


def refund(message: Message) -> Answer:
    if message.authorization_id is not None:
        auth, answer = _original_or_answer(message, "Refund")
        card = db.session.get(VirtualCard, auth.card_id) if auth is not None else None
    else:
        auth = None
        card, answer = _card_or_answer(message)
    if answer is not None:
        return answer
    row = CardTransaction(id=uuid.uuid4(), card_id=card.id, user_id=card.user_id, wallet_id=card.wallet_id,
                          kind=CardTransactionKind.REFUND, network_id=message.network_id,
                          authorization_id=auth.id if auth else None,
                          merchant_name=message.merchant_name or (auth.merchant_name if auth else ""),
                          mcc=message.mcc or (auth.mcc if auth else ""),
                          merchant_country=message.country or (auth.merchant_country if auth else ""),
                          merchant_amount=max(message.amount, Decimal(0)) if abs(message.amount).adjusted() < 20
                          else Decimal(0), merchant_currency=message.currency, amount=Decimal(0),
                          currency=card.currency, captured_amount=Decimal(0), refunded_amount=Decimal(0),
                          ledger_transaction_ids=[])
    if message.currency not in CURRENCIES:
        return _decline_row(row, codes.UNSUPPORTED_CURRENCY)
    if not _merchant_scale_ok(message.amount, message.currency):
        return _decline_row(row, codes.INVALID_AMOUNT)
    if auth is not None:
        if auth.state != CardTransactionState.CAPTURED:
            return _decline_row(row, codes.INVALID_TRANSACTION, "Only a captured purchase can be refunded")
        if message.currency != auth.merchant_currency:
            return _decline_row(row, codes.INVALID_TRANSACTION, "The refund's currency is not the purchase's")
    try:
        amount, rate = _in_wallet_currency(message.amount, message.currency, card.currency, up=False,
                                           rate=auth.rate if auth is not None else None)
    except DomainError:
        return _decline_row(row, codes.NO_RATE)
    row.amount, row.rate = amount, rate
    if amount <= 0:
        return _decline_row(row, codes.INVALID_AMOUNT)
    if auth is not None and auth.refunded_amount + amount > auth.captured_amount:
        return _decline_row(row, codes.INVALID_AMOUNT, "The refunds would exceed what was captured")
    wallet = db.session.get(Wallet, card.wallet_id)
    try:
        moved = ledger.post([Leg(_float_wallet(card.user_id, card.currency), wallet, amount,
                                 TransactionType.CARD_REFUND, f"Card refund: {row.merchant_name}"[:300],
                                 {"card": card.last4, "merchant": row.merchant_name})])
    except WalletUnavailable:
        return _decline_row(row, codes.DO_NOT_HONOR)
    if auth is not None:
        auth.refunded_amount += amount
    row.state = CardTransactionState.REFUNDED
    row.response_code = codes.APPROVED
    row.ledger_transaction_ids = [tx.id for tx in moved]
    db.session.add(row)
    db.session.flush()
    return _answer_of(row)


_HANDLERS = {"authorize": authorize, "capture": capture, "reverse": reverse, "refund": refund}


def receive(kind: str, body: bytes, headers) -> Answer:
    """Verify, parse and apply one message. Raises ``Unauthenticated`` or ``BadMessage``; any
    decision, approve or decline, is an ``Answer``.

    The caller commits inside ``acting_for_network()``: the message is applied as the network
    (with the ledger's role) and the identity is given back only after the commit, when it costs
    no statement. ``DeliveredAtOnce``: roll back and receive it again."""
    if kind not in _HANDLERS:
        raise BadMessage("There is no such card network message.")
    config = current_app.config
    try:
        verify(body, headers.get(SIGNATURE_HEADER), config.get("CARD_NETWORK_SECRET") or "",
               int(config.get("CARD_NETWORK_TOLERANCE_SECONDS", 300)))
    except Unauthenticated as exc:
        with acting_as(NETWORK_ACTOR, db.session):
            security.record(SecurityEventKind.CARD_NETWORK_REJECTED, Severity.MEDIUM,
                            f"Card network message refused: {exc.message}"[:500],
                            details={"kind": kind, "bytes": len(body)})
        raise
    message = parse(kind, body)
    # The network's identity is made current here and reaches the database with the message's
    # first statement: an authorization's one call sets it itself (``card_authorize``); the
    # other messages send it first.
    with _network_identity():
        if kind != "authorize":
            reapply(db.session)
        try:
            return _HANDLERS[kind](message)
        except IntegrityError as exc:
            if _NETWORK_ID_KEY in str(exc.orig):
                raise DeliveredAtOnce(message.network_id) from exc
            raise


_NETWORK_ID_KEY = "uq_card_transactions_networkId"


@contextlib.contextmanager
def acting_for_network() -> Iterator[None]:
    """The block acts as the network from its start. The identity is not sent to the database
    here: ``receive`` sends it with the message's first statement (an authorization's one call
    carries it), and the one in place before is restored after the block, when the caller has
    committed (two statements saved on every authorization)."""
    with _network_identity():
        yield


@contextlib.contextmanager
def _network_identity() -> Iterator[None]:
    """``acting_as(NETWORK_LEDGER_ACTOR, db.session)`` but for its first statement: the identity
    becomes current without being sent to the transaction (the caller sends it, or the next
    statement carries it); the previous one is restored in the transaction as ``acting_as`` does."""
    token = push(NETWORK_LEDGER_ACTOR)
    try:
        yield
    except BaseException:
        with contextlib.suppress(SQLAlchemyError):  # an aborted transaction takes the settings with it
            reset(token, db.session)
        raise
    reset(token, db.session)


# -- Expiry ---------------------------------------------------------------------------------------

#: Holds one run of the job releases at most (the next run takes the rest).
EXPIRY_BATCH = 500


def expire_holds(now: datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
    """Release the holds of authorizations not captured by their expiry; returns how many.
    Each gets an ``expiry`` row with the network id ``expiry:<authorization id>``, so a second
    run (or two at once: ``SKIP LOCKED``) releases nothing twice."""
    now = now or utcnow()
    auths = db.session.scalars(
        select(CardTransaction)
        .where(CardTransaction.kind == CardTransactionKind.AUTHORIZATION,
               CardTransaction.state == CardTransactionState.PENDING, CardTransaction.hold_expires_at <= now)
        .order_by(CardTransaction.hold_expires_at).limit(limit)
        .with_for_update(skip_locked=True).execution_options(populate_existing=True)).all()
    done = 0
    for auth in auths:
        pending = db.session.get(Transaction, auth.hold_transaction_id)
        try:
            with db.session.begin_nested():
                released = ledger.release([pending], description=f"Card {auth.merchant_name}: hold expired"[:300])
        except Conflict:
            continue
        auth.state = CardTransactionState.EXPIRED
        row = CardTransaction(id=uuid.uuid4(), card_id=auth.card_id, user_id=auth.user_id, wallet_id=auth.wallet_id,
                              kind=CardTransactionKind.EXPIRY, state=CardTransactionState.EXPIRED,
                              network_id=f"expiry:{auth.id}", authorization_id=auth.id,
                              merchant_name=auth.merchant_name, mcc=auth.mcc, merchant_country=auth.merchant_country,
                              merchant_amount=auth.merchant_amount, merchant_currency=auth.merchant_currency,
                              amount=auth.amount, currency=auth.currency, rate=auth.rate,
                              captured_amount=Decimal(0), refunded_amount=Decimal(0), response_code=codes.APPROVED,
                              ledger_transaction_ids=[tx.id for tx in released])
        db.session.add(row)
        done += 1
    db.session.flush()
    return done
