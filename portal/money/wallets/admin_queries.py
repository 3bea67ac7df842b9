"""Reads for the money administrators' pages: the ledger at a glance (system wallets and what
users hold, per currency), the last verification, a user's wallets and their history.

Each function is one SQL statement whatever the data size, so the pages stay inside the
statement budget at the large demo scale. Money staff see every wallet and transaction through
row-level security (the ``money_staff`` policies of migration 0003).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Uuid, case, cast, func, literal, or_, select, tuple_, union_all
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.db import db
from portal.db.audit import AuditLog
from portal.money.currency import CURRENCIES
from portal.money.earnings.models import Withdrawal, WithdrawalStatus
from portal.money.wallets.admin_services import POSITIONS_KEY, VERIFICATION_METRIC
from portal.money.wallets.models import SystemWallet, Transaction, Wallet, WalletKind
from portal.pagination import Page, decode_cursor, encode_cursor
from portal.platform.analytics.models import Metric
from portal.platform.cache import services as cache

HISTORY_PAGE_SIZE = 25


# -- The dashboard --------------------------------------------------------------------------------


@dataclass
class CurrencyPosition:
    """One currency's picture: each system wallet's balance, and what users hold."""

    code: str
    system: dict[SystemWallet, Decimal] = field(default_factory=dict)
    users_balance: Decimal = Decimal(0)
    users_locked: Decimal = Decimal(0)
    user_wallets: int = 0
    frozen_wallets: int = 0

    @property
    def system_total(self) -> Decimal:
        return sum(self.system.values(), Decimal(0))

    @property
    def net(self) -> Decimal:
        """Zero when the ledger balances: users hold exactly what the outside world put in."""
        return self.system_total + self.users_balance


#: How long a sum of the wallets is shown: summing every wallet (20,000 at the large demo scale)
#: on each view cost more as the users grew; now it is summed at most this often whatever the
#: number of wallets (kept in the shared cache under ``POSITIONS_KEY``), and the page says when.
POSITIONS_SECONDS = 30


@dataclass
class Positions:
    """The currencies' positions as summed at ``as_of``."""

    currencies: list[CurrencyPosition]
    as_of: datetime


def positions() -> Positions:
    """Per currency (in the currency table's order), every system wallet (0 where it was never
    used) and the users' totals, as summed at most ``POSITIONS_SECONDS`` ago (one grouped
    statement over the wallets when the shared cache holds no fresher sum). Only the money
    administrators' page reads it."""
    stored = cache.get_or_compute(POSITIONS_KEY, _sum_wallets, POSITIONS_SECONDS)
    found = {code: CurrencyPosition(code, {name: Decimal(0) for name in SystemWallet}) for code in CURRENCIES}
    for code, kind, name, balance, locked, count, inactive in stored["rows"]:
        position = found.get(code)
        if position is None:
            continue
        if kind == WalletKind.SYSTEM:
            position.system[SystemWallet(name)] = Decimal(balance)
        else:
            position.users_balance += Decimal(balance)
            position.users_locked += Decimal(locked)
            position.user_wallets += count
            position.frozen_wallets += inactive
    return Positions(list(found.values()), datetime.fromisoformat(stored["as_of"]).astimezone(UTC))


def _sum_wallets() -> dict:
    rows = db.session.execute(
        select(Wallet.currency, Wallet.kind, Wallet.system_name, func.sum(Wallet.balance),
               func.sum(Wallet.locked_balance), func.count(),
               func.count().filter(Wallet.status != "active"), func.now())
        .group_by(Wallet.currency, Wallet.kind, Wallet.system_name)
    ).all()
    as_of = rows[0][-1] if rows else db.session.scalar(select(func.now()))
    return {"as_of": as_of.isoformat(),
            "rows": [[code, str(kind), str(name) if name else None, str(balance), str(locked), count, inactive]
                     for code, kind, name, balance, locked, count, inactive, _ in rows]}


@dataclass
class LastVerification:
    recorded_at: datetime
    ok: bool
    problem_count: int
    problems: list[str]
    truncated: bool
    wallets: int
    transactions: int
    currencies: dict[str, str]
    ran_by: str


def last_verification() -> LastVerification | None:
    metric = db.session.scalar(select(Metric).where(Metric.name == VERIFICATION_METRIC)
                               .order_by(Metric.recorded_at.desc()).limit(1))
    if metric is None:
        return None
    labels = metric.labels or {}
    return LastVerification(recorded_at=metric.recorded_at, ok=int(metric.value) == 0,
                            problem_count=int(metric.value), problems=list(labels.get("problems", [])),
                            truncated=bool(labels.get("truncated")), wallets=int(labels.get("wallets", 0)),
                            transactions=int(labels.get("transactions", 0)),
                            currencies=dict(labels.get("currencies", {})), ran_by=str(labels.get("ran_by", "")))


def pending_withdrawals() -> int:
    return db.session.scalar(select(func.count()).select_from(Withdrawal)
                             .where(Withdrawal.status == WithdrawalStatus.PENDING)) or 0


def find_users(query: str, limit: int = 10) -> list[User]:
    """Accounts whose e-mail starts with ``query`` (case-insensitive), exact match first."""
    text = (query or "").strip().lower()[:254]
    if not text:
        return []
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(db.session.scalars(
        select(User).where(func.lower(User.email).like(pattern, escape="\\"))
        .order_by((func.lower(User.email) == text).desc(), User.email).limit(limit)))


# -- A user's wallets and history -----------------------------------------------------------------


def user_wallets(user_id: uuid.UUID) -> list[Wallet]:
    order = {code: n for n, code in enumerate(CURRENCIES)}
    wallets = db.session.scalars(select(Wallet).where(Wallet.user_id == user_id)).all()
    return sorted(wallets, key=lambda w: order.get(w.currency, len(order)))


@dataclass
class HistoryRow:
    id: uuid.UUID
    created_at: datetime
    type: str
    phase: str
    currency: str
    amount: Decimal
    #: +amount for money in, -amount for money out, 0 for holds and releases.
    signed: Decimal
    incoming: bool
    #: The other side: a person's name (with their e-mail) or a system wallet's label.
    counterparty: str
    counterparty_email: str | None
    description: str


def _counterparty(system_name, full_name) -> str:
    if system_name:
        return SystemWallet(system_name).label
    return full_name or "\u2014"


def user_history(user_id: uuid.UUID, cursor: str | None = None, size: int = HISTORY_PAGE_SIZE) -> Page:
    """The user's transactions newest first, ``size`` per page after ``cursor``; one statement.

    The two sides are read separately (each walks its own ``(userId, createdAt DESC, id DESC)``
    index and stops after ``size + 1`` rows) and merged, instead of one ``OR`` that would have to
    sort every row of the user first."""
    position = decode_cursor(cursor)
    other_wallet, other_user = aliased(Wallet), aliased(User)

    def side(user_col, other_wallet_col, incoming: bool):
        stmt = (select(Transaction.id.label("id"), Transaction.created_at.label("created_at"),
                       Transaction.type.label("type"), Transaction.phase.label("phase"),
                       Transaction.currency.label("currency"), Transaction.amount.label("amount"),
                       Transaction.description.label("description"), literal(incoming).label("incoming"),
                       other_wallet.system_name.label("system_name"), other_user.full_name.label("full_name"),
                       other_user.email.label("email"))
                .join(other_wallet, other_wallet.id == other_wallet_col)
                .outerjoin(other_user, other_user.id == other_wallet.user_id)
                .where(user_col == user_id))
        if not incoming:
            # Never the same row twice (a user's two wallets are never the two sides of one
            # movement, but the page must not depend on that).
            stmt = stmt.where(or_(Transaction.credit_user_id.is_(None), Transaction.credit_user_id != user_id))
        if position is not None:
            stmt = stmt.where(tuple_(Transaction.created_at, Transaction.id) < tuple_(*position))
        return stmt.order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(size + 1)

    both = union_all(side(Transaction.credit_user_id, Transaction.debit_wallet_id, True),
                     side(Transaction.debit_user_id, Transaction.credit_wallet_id, False)).subquery()
    rows = db.session.execute(select(both).order_by(both.c.created_at.desc(), both.c.id.desc())
                              .limit(size + 1)).all()
    items = []
    for row in rows[:size]:
        moves = row.phase in ("single", "post")
        signed = (row.amount if row.incoming else -row.amount) if moves else Decimal(0)
        items.append(HistoryRow(id=row.id, created_at=row.created_at, type=str(row.type), phase=str(row.phase),
                                currency=row.currency, amount=row.amount, signed=signed, incoming=row.incoming,
                                counterparty=_counterparty(row.system_name, row.full_name),
                                counterparty_email=row.email,
                                description=row.description))
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None
    return Page(items, next_cursor)


@dataclass
class StatusChange:
    at: datetime
    actor: str
    currency: str
    old: str
    new: str
    reason: str


#: The user id in an audit actor ``user:<uuid>`` (NULL for system actors), cast only when it is one.
_actor_user_id = case((AuditLog.actor.regexp_match("^user:[0-9a-f-]{36}$"),
                       cast(func.substr(AuditLog.actor, 6), Uuid)), else_=None)


def status_changes(wallet_ids: list[uuid.UUID], limit: int = 10) -> list[StatusChange]:
    """The latest status changes (freeze, unfreeze) of these wallets, from the audit trail."""
    if not wallet_ids:
        return []
    old_status = AuditLog.old_values["status"].astext
    new_status = AuditLog.new_values["status"].astext
    rows = db.session.execute(
        select(AuditLog.created_at, AuditLog.actor, AuditLog.new_values["currency"].astext, old_status, new_status,
               AuditLog.new_values["statusReason"].astext, User.email)
        .outerjoin(User, User.id == _actor_user_id)
        .where(AuditLog.table_name == "wallets", AuditLog.action == "UPDATE",
               AuditLog.row_id.in_([str(w) for w in wallet_ids]), old_status != new_status)
        .order_by(AuditLog.seq.desc()).limit(limit)
    ).all()
    return [StatusChange(at=at, actor=email or actor, currency=code or "", old=old or "", new=new or "",
                         reason=reason or "") for at, actor, code, old, new, reason, email in rows]
