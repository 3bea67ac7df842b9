"""The ledger: the only code that changes a balance.

Every movement of value goes through ``post`` (value moves now), ``hold`` (value is reserved),
``capture`` (a hold moves) or ``release`` (a hold ends). Each of them, in the caller's database
transaction (``post`` in one call of the database function ``ledger_post``, migration 0015, the
others in Python):

1. locks every wallet it touches with ``SELECT ... FOR UPDATE`` in ascending id order, so two
   movements over the same wallets always queue in the same order and never deadlock;
2. checks the rules against the locked rows (a user wallet never spends more than it has
   available, frozen or closed wallets neither send nor receive);
3. changes ``balance`` / ``lockedBalance`` and appends the transaction rows.

One hold is placed outside this module: a card authorization's, by the database function
``card_authorize`` (migration 0021, ``portal.money.cards.network``), which locks, checks and
writes as ``hold`` does, in the same order, in the one statement the authorization's budget
allows; it is not announced after the commit (a pending hold moves nothing the transaction
monitoring judges; the card sweep judges the authorization). Its capture, release and expiry
come back here.

The database holds the same rules as CHECK constraints, so even a bug here cannot make a user
balance negative. While it posts, the ledger acts with the row-level-security role ``ledger``
(keeping the user as the audit trail's actor): a transfer must lock and credit the recipient's
wallet and the system wallets, which the sender's own role may not see. Callers authorise the
movement before they call the ledger; the ledger does not know who may ask for what.

Idempotency (``once``): a money request carries a key; the first request with a key does the
work and stores its result; the same key with the same request returns that result, with a
different request it is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from sqlalchemy import DateTime, Uuid, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal import events
from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, current_actor, push, reset
from portal.errors import Conflict, DomainError
from portal.money.currency import CURRENCIES, currency, quantize
from portal.money.wallets.models import (
    SYSTEM_SHARDS,
    IdempotencyKey,
    Phase,
    SystemWallet,
    Transaction,
    TransactionType,
    Wallet,
    WalletKind,
    WalletStatus,
)

#: The row-level-security role the ledger posts with (policies in migration 0003).
LEDGER_ROLE = "ledger"


class InsufficientFunds(DomainError):
    status_code = 422
    field = "amount"


class WalletUnavailable(DomainError):
    """A frozen or closed wallet was asked to send or receive."""

    status_code = 422


class LedgerError(DomainError):
    """A movement the ledger cannot make as asked (a bug in the caller, never the user's input)."""

    status_code = 400


class IdempotencyMismatch(Conflict):
    field = None


class SpendLimitExceeded(DomainError):
    """``post``'s ``spend_limit`` would be passed; ``left`` is what the window still allows."""

    status_code = 422
    field = "amount"

    def __init__(self, message: str, *, left: Decimal):
        super().__init__(message)
        self.left = left


@dataclass(frozen=True)
class UserWalletRef:
    """A user's wallet in ``currency`` named by its owner, for ``post`` to find under its lock
    (with ``open``, made first if missing: the recipient of a transfer). A missing wallet that
    is not to be opened has nothing to send: ``post`` refuses with ``InsufficientFunds``."""

    user_id: uuid.UUID
    currency: str
    open: bool = False


@dataclass(frozen=True)
class SystemWalletRef:
    """A system wallet's shard, for ``post`` to find (and make on first use) under its lock."""

    name: SystemWallet
    currency: str
    shard: int = 0


@dataclass(frozen=True)
class SpendLimit:
    """A cap ``post`` checks under its locks: what ``user_id`` moved of ``type`` in ``currency``
    since ``since``, plus ``amount``, must not pass ``limit`` (a transfer's 24-hour limit)."""

    user_id: uuid.UUID
    currency: str
    type: TransactionType
    since: object
    limit: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Leg:
    """One movement of ``amount`` from ``debit`` to ``credit`` (both wallets of one currency).
    ``post`` also takes wallets named by a ``UserWalletRef`` or ``SystemWalletRef``."""

    debit: Wallet | UserWalletRef | SystemWalletRef
    credit: Wallet | UserWalletRef | SystemWalletRef
    amount: Decimal
    type: TransactionType
    description: str = ""
    details: dict = field(default_factory=dict)


# -- Acting as the ledger -------------------------------------------------------------------------


@contextlib.contextmanager
def as_ledger() -> Iterator[None]:
    """Run a block with the ``ledger`` role, keeping the acting user for the audit trail."""
    actor = current_actor() or Actor(label="")
    token = push(Actor(label=actor.label, user_id=actor.user_id, role=LEDGER_ROLE), db.session)
    try:
        yield
    except BaseException:
        # After a failed statement the transaction is aborted: the settings go with the rollback
        # the caller now owes, and the statement's own error (not "transaction is aborted") is
        # the one to report.
        with contextlib.suppress(SQLAlchemyError):
            reset(token, db.session)
        raise
    reset(token, db.session)


# -- Wallets --------------------------------------------------------------------------------------


def user_wallet(user_id: uuid.UUID, code: str) -> Wallet | None:
    """The user's wallet in ``code``, or None if they never had one (reads do not create it)."""
    return db.session.scalar(select(Wallet).where(Wallet.user_id == user_id, Wallet.currency == currency(code).code))


def open_user_wallet(user_id: uuid.UUID, code: str) -> Wallet:
    """The user's wallet in ``code``, made if missing (safe against a concurrent opening)."""
    code = currency(code).code
    with as_ledger():
        return _existing_or_made(
            select(Wallet).where(Wallet.user_id == user_id, Wallet.currency == code),
            insert(Wallet).values(id=uuid.uuid4(), user_id=user_id, currency=code, kind=WalletKind.USER,
                                  created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[Wallet.user_id, Wallet.currency]))


def shard_of(name: SystemWallet, spread_by: uuid.UUID | None) -> int:
    """For a sharded system wallet (``SYSTEM_SHARDS``), ``spread_by`` (the id of the user on the
    other side of the movement) picks the shard, so movements of different users lock different
    rows; without it, shard 0."""
    return spread_by.int % SYSTEM_SHARDS[name] if spread_by is not None and name in SYSTEM_SHARDS else 0


def system_wallet(name: SystemWallet, code: str, *, spread_by: uuid.UUID | None = None) -> Wallet:
    """The system wallet ``name`` in ``code``, made on first use, on the shard ``spread_by``
    picks (``shard_of``)."""
    code = currency(code).code
    shard = shard_of(name, spread_by)
    with as_ledger():
        return _existing_or_made(
            select(Wallet).where(Wallet.system_name == name, Wallet.currency == code, Wallet.shard == shard),
            insert(Wallet).values(id=uuid.uuid4(), system_name=name, currency=code, shard=shard,
                                  kind=WalletKind.SYSTEM, created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[Wallet.system_name, Wallet.currency, Wallet.shard]))


def _existing_or_made(find, make) -> Wallet:
    """The wallet ``find`` selects; when there is none yet, ``make`` (an insert that does nothing
    on a conflict: a concurrent opening may win) first. One statement for a wallet that exists."""
    find = find.execution_options(populate_existing=True)
    wallet = db.session.scalars(find).one_or_none()
    if wallet is None:
        db.session.execute(make)
        wallet = db.session.scalars(find).one()
    return wallet


def system_wallet_ref(name: SystemWallet, code: str, *, spread_by: uuid.UUID | None = None) -> SystemWalletRef:
    """``system_wallet`` for ``post`` to find under its lock: no statement of its own."""
    return SystemWalletRef(name, currency(code).code, shard_of(name, spread_by))


def system_balance(name: SystemWallet, code: str) -> Decimal:
    """The balance of system wallet ``name`` in ``code``, all its shards together."""
    with as_ledger():
        return db.session.scalar(select(func.coalesce(func.sum(Wallet.balance), 0))
                                 .where(Wallet.system_name == name, Wallet.currency == currency(code).code))


def _lock(wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Wallet]:
    """Lock the wallets in ascending id order and return them fresh from the database."""
    ids = sorted(set(wallet_ids))
    rows = db.session.scalars(select(Wallet).where(Wallet.id.in_(ids)).order_by(Wallet.id).with_for_update()
                              .execution_options(populate_existing=True)).all()
    if len(rows) != len(ids):
        raise LedgerError("A wallet of this movement does not exist.")
    return {w.id: w for w in rows}


def lock(wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Wallet]:
    """Lock wallets in the ledger's order ahead of a movement, for a service that must read
    something under the same locks first (a transfer's daily limit). The movement then takes the
    same locks again, which it already holds."""
    with as_ledger():
        return _lock(wallet_ids)


def _check_usable(wallet: Wallet, *, sending: bool) -> None:
    if wallet.status != WalletStatus.ACTIVE:
        raise WalletUnavailable(_unavailable_message(wallet.currency, wallet.status, sending=sending))


def _short(wallet: Wallet, needed: Decimal) -> None:
    if wallet.kind == WalletKind.USER and wallet.balance - wallet.locked_balance < needed:
        raise InsufficientFunds(_short_message(wallet.currency, wallet.balance - wallet.locked_balance, needed))


_SAME_CURRENCY = "Both wallets of a movement must hold the same currency."
_TWO_WALLETS = "A movement needs two different wallets."


def _validate_leg(leg: Leg) -> Decimal:
    if leg.debit.currency != leg.credit.currency:
        raise LedgerError(_SAME_CURRENCY)
    if _ref(leg.debit) == _ref(leg.credit):
        raise LedgerError(_TWO_WALLETS)
    if isinstance(leg.amount, float):
        # Money is Decimal end to end: a float here is a caller's bug, even when it looks exact.
        raise LedgerError("A movement's amount must be a Decimal, never a float.")
    amount = quantize(Decimal(leg.amount), leg.debit.currency)
    if amount <= 0:
        raise LedgerError("A movement's amount must be positive.")
    return amount


def _record(leg: Leg, amount: Decimal, phase: Phase, group_id: uuid.UUID, initiated_by_id, *,
            pending_id=None, reverses_id=None) -> Transaction:
    tx = Transaction(id=uuid.uuid4(), group_id=group_id, type=leg.type, phase=phase, debit_wallet_id=leg.debit.id,
                     credit_wallet_id=leg.credit.id, debit_user_id=leg.debit.user_id,
                     credit_user_id=leg.credit.user_id, amount=amount, currency=leg.debit.currency,
                     pending_id=pending_id, reverses_id=reverses_id, initiated_by_id=initiated_by_id,
                     description=leg.description[:300], details=leg.details)
    db.session.add(tx)
    _committed_later(tx)
    return tx


# -- Movements ------------------------------------------------------------------------------------

#: Digits of the ledger's arithmetic. Balances are NUMERIC(38, 18): the default context's 28
#: digits would silently round an ETH balance of ten billion or more.
_PRECISION = 100


def _exact(function):
    @functools.wraps(function)
    def exact(*args, **kwargs):
        with localcontext(prec=_PRECISION):
            return function(*args, **kwargs)
    return exact


#: ``post``'s one statement (migration 0015). The JSON binds go through the engine's serializer.
_POST_SQL = text("SELECT ledger_post(:legs, :group_id, :initiated_by_id, :now, :spend_limit)").bindparams(
    bindparam("legs", type_=JSONB), bindparam("group_id", type_=Uuid()),
    bindparam("initiated_by_id", type_=Uuid()), bindparam("now", type_=DateTime(timezone=True)),
    bindparam("spend_limit", type_=JSONB(none_as_null=True)))


def _ref(wallet) -> dict:
    """How ``ledger_post`` finds a leg's wallet."""
    if isinstance(wallet, UserWalletRef):
        return {"user": str(wallet.user_id), "currency": wallet.currency, "open": wallet.open}
    if isinstance(wallet, SystemWalletRef):
        return {"system": str(wallet.name), "currency": wallet.currency, "shard": wallet.shard}
    return {"id": str(wallet.id)}


@_exact
def post(legs: list[Leg], *, initiated_by_id: uuid.UUID | None = None, group_id: uuid.UUID | None = None,
         spend_limit: SpendLimit | None = None) -> list[Transaction]:
    """Move value now: every leg or none. Each user wallet's net outflow over all legs must be
    covered by what it has available; with ``spend_limit``, the sender's window must allow it.

    One statement (``ledger_post``): it finds and locks the wallets in ascending id order, makes
    the checks, updates the balances and inserts the rows. A refusal raises the same
    ``DomainError`` as before and leaves the transaction usable (nothing moved). The wallets of
    the session get their new balances and the returned rows join the session as loaded
    objects, with no further statement."""
    if not legs:
        raise LedgerError("Nothing to move.")
    amounts = [_validate_leg(leg) for leg in legs]
    group_id = group_id or uuid.uuid4()
    now = utcnow()
    tx_ids = [uuid.uuid4() for _ in legs]
    payload = [{"id": str(tx_id), "debit": _ref(leg.debit), "credit": _ref(leg.credit), "amount": str(amount),
                "currency": leg.debit.currency, "type": str(leg.type), "description": leg.description[:300],
                "details": leg.details}
               for tx_id, leg, amount in zip(tx_ids, legs, amounts, strict=True)]
    limit = None if spend_limit is None else {
        "user": str(spend_limit.user_id), "currency": spend_limit.currency, "type": str(spend_limit.type),
        "since": spend_limit.since.isoformat(), "limit": str(spend_limit.limit), "amount": str(spend_limit.amount)}
    answer = db.session.execute(_POST_SQL, {"legs": payload, "group_id": group_id, "initiated_by_id": initiated_by_id,
                                            "now": now, "spend_limit": limit}).scalar_one()
    if "refused" in answer:
        raise _refusal(answer, legs, amounts)
    _refresh_wallets(answer["wallets"], now)
    recorded = []
    for tx_id, leg, amount, sides in zip(tx_ids, legs, amounts, answer["legs"], strict=True):
        tx = Transaction(id=tx_id, group_id=group_id, type=leg.type, phase=Phase.SINGLE,
                         debit_wallet_id=uuid.UUID(sides["debit"]), credit_wallet_id=uuid.UUID(sides["credit"]),
                         debit_user_id=_uuid_or_none(sides["debitUser"]),
                         credit_user_id=_uuid_or_none(sides["creditUser"]), amount=amount,
                         currency=leg.debit.currency, pending_id=None, reverses_id=None,
                         initiated_by_id=initiated_by_id, description=leg.description[:300], details=leg.details,
                         created_at=now, updated_at=now)
        # The row is in the database already: the object joins the session as loaded from it.
        make_transient_to_detached(tx)
        db.session.add(tx)
        _committed_later(tx)
        recorded.append(tx)
    return recorded


def _uuid_or_none(value) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _refresh_wallets(changed: list[dict], now) -> None:
    """Give the session's copies of the wallets ``ledger_post`` changed their new balances, as a
    reload would (no statement: the function returned them)."""
    for row in changed:
        wallet = db.session.identity_map.get(db.session.identity_key(Wallet, uuid.UUID(row["id"])))
        if wallet is not None:
            set_committed_value(wallet, "balance", Decimal(row["balance"]))
            set_committed_value(wallet, "locked_balance", Decimal(row["lockedBalance"]))
            set_committed_value(wallet, "updated_at", now)


def _unavailable_message(code: str, status: str, *, sending: bool) -> str:
    whose = "Your" if sending else "The recipient's"
    state = "frozen" if status == WalletStatus.FROZEN else "closed"
    return f"{whose} {code} wallet is {state}; no money can move {'out of' if sending else 'into'} it."


def _short_message(code: str, available: Decimal, needed: Decimal) -> str:
    quantum = currency(code).quantum
    return (f"Not enough money: {available.quantize(quantum)} {code} available, "
            f"{needed.quantize(quantum)} {code} needed.")


def _refusal(answer: dict, legs: list[Leg], amounts: list[Decimal]) -> DomainError:
    """The ``DomainError`` for a refusal of ``ledger_post`` (the ones the Python ledger raised).
    Wallet refusals carry what a service needs to say it in its own words: ``user_id``,
    ``wallet_id`` and ``sending`` (unavailable), ``available`` and ``needed`` (short)."""
    code = answer["refused"]
    if code == "unavailable":
        error = WalletUnavailable(_unavailable_message(answer["currency"], answer["status"], sending=answer["sending"]))
        error.status, error.sending = WalletStatus(answer["status"]), answer["sending"]
    elif code == "insufficient":
        available, needed = Decimal(answer["available"]), Decimal(answer["needed"])
        error = InsufficientFunds(_short_message(answer["currency"], available, needed))
        error.available, error.needed = available, needed
    elif code == "no_wallet":
        # A user's wallet that was never opened: nothing available.
        user = answer["user"]
        needed = sum((amount for leg, amount in zip(legs, amounts, strict=True)
                      if isinstance(leg.debit, UserWalletRef) and str(leg.debit.user_id) == user), Decimal(0))
        error = InsufficientFunds(_short_message(answer["currency"], Decimal(0), needed))
        error.available, error.needed = Decimal(0), needed
    elif code == "limit":
        return SpendLimitExceeded("This movement would pass the sender's limit.", left=Decimal(answer["left"]))
    elif code == "currency":
        return LedgerError(_SAME_CURRENCY)
    elif code == "same_wallet":
        return LedgerError(_TWO_WALLETS)
    else:  # "unknown_wallet"
        return LedgerError("A wallet of this movement does not exist.")
    error.user_id = _uuid_or_none(answer.get("user"))
    error.wallet_id = _uuid_or_none(answer.get("wallet"))
    return error


@_exact
def hold(legs: list[Leg], *, initiated_by_id: uuid.UUID | None = None,
         group_id: uuid.UUID | None = None) -> list[Transaction]:
    """Reserve value: each leg becomes a pending transaction that raises its debit wallet's
    ``lockedBalance``; ``capture`` or ``release`` ends it."""
    if not legs:
        raise LedgerError("Nothing to hold.")
    amounts = [_validate_leg(leg) for leg in legs]
    group_id = group_id or uuid.uuid4()
    with as_ledger():
        wallets = _lock([w.id for leg in legs for w in (leg.debit, leg.credit)])
        needed: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
        for leg, amount in zip(legs, amounts, strict=True):
            _check_usable(wallets[leg.debit.id], sending=True)
            _check_usable(wallets[leg.credit.id], sending=False)
            needed[leg.debit.id] += amount
        for wallet_id, amount in needed.items():
            _short(wallets[wallet_id], amount)
        # Only once every check passed: a refused hold leaves no change behind in the session.
        for wallet_id, amount in needed.items():
            wallets[wallet_id].locked_balance += amount
        recorded = [_record(leg, amount, Phase.PENDING, group_id, initiated_by_id)
                    for leg, amount in zip(legs, amounts, strict=True)]
        db.session.flush()
    return recorded


@_exact
def _resolve(pendings: list[Transaction], phase: Phase, initiated_by_id, description: str) -> list[Transaction]:
    if not pendings:
        raise LedgerError("No hold to resolve.")
    with as_ledger():
        # Lock the wallets first: a second capture or release of the same hold waits here, then
        # finds it resolved below.
        wallets = _lock([w for p in pendings for w in (p.debit_wallet_id, p.credit_wallet_id)])
        ids = [p.id for p in pendings]
        if len(set(ids)) != len(ids):
            raise LedgerError("The same hold was listed twice.")
        resolved = db.session.scalars(select(Transaction.pending_id).where(Transaction.pending_id.in_(ids))).all()
        if resolved:
            raise Conflict("This hold was already settled.")
        # Every check before any change: a refused capture leaves nothing behind in the session.
        for pending in pendings:
            if pending.phase != Phase.PENDING:
                raise LedgerError("Only a pending transaction can be captured or released.")
            if phase == Phase.POST:
                _check_usable(wallets[pending.credit_wallet_id], sending=False)
        recorded = []
        for pending in pendings:
            debit, credit = wallets[pending.debit_wallet_id], wallets[pending.credit_wallet_id]
            debit.locked_balance -= pending.amount
            if phase == Phase.POST:
                debit.balance -= pending.amount
                credit.balance += pending.amount
            leg = Leg(debit, credit, pending.amount, pending.type, description or pending.description,
                      dict(pending.details))
            recorded.append(_record(leg, pending.amount, phase, pendings[0].group_id, initiated_by_id,
                                    pending_id=pending.id))
        db.session.flush()
    return recorded


def capture(pendings: list[Transaction], *, initiated_by_id: uuid.UUID | None = None,
            description: str = "") -> list[Transaction]:
    """Move the held value of ``pendings`` (all of them, once)."""
    return _resolve(pendings, Phase.POST, initiated_by_id, description)


def release(pendings: list[Transaction], *, initiated_by_id: uuid.UUID | None = None,
            description: str = "") -> list[Transaction]:
    """End the holds of ``pendings`` without moving anything (all of them, once)."""
    return _resolve(pendings, Phase.VOID, initiated_by_id, description)


@_exact
def reverse(original: Transaction, *, initiated_by_id: uuid.UUID | None = None,
            description: str = "") -> Transaction:
    """Undo a moved transaction with a new one in the other direction (once)."""
    if original.phase not in (Phase.SINGLE, Phase.POST):
        raise LedgerError("Only a transaction that moved value can be reversed.")
    with as_ledger():
        wallets = _lock([original.debit_wallet_id, original.credit_wallet_id])
        debit, credit = wallets[original.credit_wallet_id], wallets[original.debit_wallet_id]
        leg = Leg(debit, credit, original.amount, TransactionType.REVERSAL,
                  description or f"Reversal of {original.type.label.lower()}", {"reverses": str(original.id)})
        already = db.session.scalar(select(Transaction.id).where(Transaction.reverses_id == original.id))
        if already:
            raise Conflict("This transaction was already reversed.")
        _short(wallets[debit.id], original.amount)
        wallets[debit.id].balance -= original.amount
        wallets[credit.id].balance += original.amount
        tx = _record(leg, original.amount, Phase.SINGLE, original.group_id, initiated_by_id,
                     reverses_id=original.id)
        db.session.flush()
    return tx


# -- After commit: tell listeners ----------------------------------------------------------------

_POSTED = "ledger_posted"


def _committed_later(tx: Transaction) -> None:
    # Each id is kept with the session transaction (the savepoint, if any) it was written in:
    # when that savepoint rolls back, ``_forget`` drops it. What a listener may want of the row
    # is copied now: after the commit its attributes are expired.
    session = db.session()
    within = session.get_nested_transaction() or session.get_transaction()
    moved = {"type": tx.type.value, "phase": tx.phase.value, "amount": tx.amount, "currency": tx.currency,
             "debit_user_id": tx.debit_user_id, "credit_user_id": tx.credit_user_id}
    session.info.setdefault(_POSTED, []).append((tx.id, within, moved))


def _announce(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint released (SQLAlchemy reports it as a commit too): the rows are not
        # committed yet, the outer commit announces them.
        return
    posted = session.info.pop(_POSTED, [])
    if posted:
        events.transaction_committed.send(transaction_ids=[tx_id for tx_id, _, _ in posted],
                                          moved=[moved for _, _, moved in posted])


def _forget(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_POSTED, None)
    elif session.info.get(_POSTED):
        # A savepoint rolled back (``begin_nested``): only the rows written in it (or in a
        # savepoint inside it) are gone.
        session.info[_POSTED] = [entry for entry in session.info[_POSTED] if not _inside(entry[1], previous_transaction)]


def _inside(transaction, ended) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


def install_session_hooks() -> None:
    from sqlalchemy import event

    if not event.contains(Session, "after_commit", _announce):
        event.listen(Session, "after_commit", _announce)
        event.listen(Session, "after_soft_rollback", _forget)


install_session_hooks()


# -- Idempotency ----------------------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z0-9_-]{16,100}$")


def request_hash(scope: str, request: dict) -> str:
    canonical = json.dumps({"scope": scope, **request}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def once(user_id: uuid.UUID, key: str | None, scope: str, request: dict,
         perform: Callable[[], dict]) -> tuple[dict, bool]:
    """Run ``perform`` once per ``key``: returns ``(result, replayed)``.

    The first request inserts the key; a concurrent second one waits on the unique index until
    the first commits and then reads its result. A key reused for a different request is refused.
    The key and ``perform`` share a savepoint: if ``perform`` fails, the key and whatever it did
    go back together (even when the caller carries on with its transaction instead of rolling
    it back), so a corrected retry with the same key goes through.
    """
    if not key or not _KEY.match(key):
        raise DomainError("This form is out of date: reload the page and try again.")
    digest = request_hash(scope, request)
    with db.session.begin_nested():
        inserted = db.session.execute(
            insert(IdempotencyKey).values(id=uuid.uuid4(), user_id=user_id, key=key, scope=scope,
                                          request_hash=digest, result={}, created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[IdempotencyKey.user_id, IdempotencyKey.key])
            .returning(IdempotencyKey.id)
        ).scalar()
        if inserted is None:
            first = db.session.scalars(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id,
                                                                    IdempotencyKey.key == key)
                                       .execution_options(populate_existing=True)).one()
            if first.scope != scope or first.request_hash != digest:
                raise IdempotencyMismatch("This form was already sent with other details. Nothing was changed: "
                                          "start again from a fresh form.")
            return dict(first.result), True
        result = perform()
        db.session.execute(IdempotencyKey.__table__.update().where(IdempotencyKey.id == inserted)
                           .values(result=result, updatedAt=utcnow()))
    return result, False


def new_key() -> str:
    """A fresh idempotency key for a form."""
    return uuid.uuid4().hex


# -- Verification ---------------------------------------------------------------------------------


@dataclass
class Verification:
    wallets: int = 0
    transactions: int = 0
    currencies: dict[str, Decimal] = field(default_factory=dict)
    #: Human-readable differences; empty when the ledger is consistent.
    problems: list[str] = field(default_factory=list)
    checked_at: object = None

    @property
    def ok(self) -> bool:
        return not self.problems


_REPLAY_SQL = text("""
WITH moved AS (
    SELECT "debitWalletId" AS wallet, -amount AS delta FROM transactions WHERE phase IN ('single', 'post')
    UNION ALL
    SELECT "creditWalletId", amount FROM transactions WHERE phase IN ('single', 'post')
), replay AS (
    SELECT wallet, sum(delta) AS balance FROM moved GROUP BY wallet
), held AS (
    SELECT p."debitWalletId" AS wallet, sum(p.amount) AS locked
    FROM transactions p
    WHERE p.phase = 'pending'
      AND NOT EXISTS (SELECT 1 FROM transactions r WHERE r."pendingId" = p.id)
    GROUP BY p."debitWalletId"
)
SELECT w.id, w.currency, w.kind, w."systemName", w.balance, w."lockedBalance",
       coalesce(r.balance, 0) AS replayed, coalesce(h.locked, 0) AS held
FROM wallets w
LEFT JOIN replay r ON r.wallet = w.id
LEFT JOIN held h ON h.wallet = w.id
WHERE w.balance <> coalesce(r.balance, 0) OR w."lockedBalance" <> coalesce(h.locked, 0)
""")


def verify() -> Verification:
    """Check the ledger: per currency all balances sum to zero; every wallet's balance is the
    replay of its transactions and its locked balance the sum of its open holds; no user wallet
    is below zero. Reads one consistent snapshot (REPEATABLE READ is not needed: the checks run
    in one statement each and balances only change with their transactions)."""
    report = Verification(checked_at=utcnow())
    with as_ledger():
        sums = db.session.execute(select(Wallet.currency, func.sum(Wallet.balance), func.count())
                                  .group_by(Wallet.currency)).all()
        report.transactions = db.session.scalar(select(func.count()).select_from(Transaction)) or 0
        for code, total, count in sums:
            report.wallets += count
            report.currencies[code] = total
            if total != 0:
                report.problems.append(f"{code}: balances sum to {total}, not zero.")
        for row in db.session.execute(_REPLAY_SQL):
            name = row.systemName or f"user wallet {row.id}"
            if row.balance != row.replayed:
                report.problems.append(f"{name} ({row.currency}): balance {row.balance}, "
                                       f"its transactions add up to {row.replayed}.")
            if row.lockedBalance != row.held:
                report.problems.append(f"{name} ({row.currency}): locked {row.lockedBalance}, "
                                       f"its open holds add up to {row.held}.")
        negative = db.session.scalar(select(func.count()).select_from(Wallet).where(
            Wallet.kind == WalletKind.USER, Wallet.balance - Wallet.locked_balance < 0))
        if negative:
            report.problems.append(f"{negative} user wallets are below zero.")
    for code in CURRENCIES:
        report.currencies.setdefault(code, Decimal(0))
    return report
