"""Reads for the staff's card pages (admins and compliance officers): any user's cards, the
authorization log with its decline reasons, and the network messages that reached no card.

Row-level security lets these roles read every card row; the callers' views require the
permission. Each read is one statement per page (keyset pagination on ``(createdAt, id)``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, tuple_

from portal.accounts.models import User
from portal.db import db
from portal.money.cards.models import (
    CardNetworkMessage,
    CardTransaction,
    CardTransactionKind,
    CardTransactionState,
    VirtualCard,
)
from portal.pagination import Page, decode_cursor, encode_cursor, keyset_page

PAGE_SIZE = 50


def cards_of(user_id: uuid.UUID) -> list[VirtualCard]:
    return list(db.session.scalars(select(VirtualCard).where(VirtualCard.user_id == user_id)
                                   .order_by(VirtualCard.created_at.desc(), VirtualCard.id.desc())))


@dataclass(frozen=True)
class LogFilters:
    #: Only declined authorizations.
    declined: bool = False
    #: One response code (``51``, ``N7`` ...).
    code: str | None = None
    card_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    kind: CardTransactionKind | None = None


def authorization_log(filters: LogFilters, cursor: str | None = None, size: int | None = None) -> Page:
    """Card transactions of everyone, newest first, with the holder's name and e-mail: items are
    ``(CardTransaction, full_name, email)`` rows."""
    size = size or PAGE_SIZE
    query = (select(CardTransaction, User.full_name, User.email)
             .join(User, User.id == CardTransaction.user_id))
    if filters.declined:
        query = query.where(CardTransaction.state == CardTransactionState.DECLINED)
    if filters.code:
        query = query.where(CardTransaction.response_code == filters.code.strip().upper()[:2])
    if filters.card_id:
        query = query.where(CardTransaction.card_id == filters.card_id)
    if filters.user_id:
        query = query.where(CardTransaction.user_id == filters.user_id)
    if filters.kind:
        query = query.where(CardTransaction.kind == filters.kind)
    position = decode_cursor(cursor)
    if position is not None:
        query = query.where(tuple_(CardTransaction.created_at, CardTransaction.id) < tuple_(*position))
    rows = db.session.execute(query.order_by(CardTransaction.created_at.desc(), CardTransaction.id.desc())
                              .limit(size + 1)).all()
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1][0].created_at, rows[-1][0].id)
    return Page([tuple(row) for row in rows], next_cursor)


def network_messages(cursor: str | None = None, size: int | None = None) -> Page:
    """Messages that reached no card or original (unknown numbers, out-of-order captures)."""
    size = size or PAGE_SIZE
    return keyset_page(select(CardNetworkMessage), CardNetworkMessage.created_at, CardNetworkMessage.id, cursor, size)


def cards_page(email: str | None = None, cursor: str | None = None, size: int | None = None) -> Page:
    """Cards of everyone (or of the users whose e-mail starts with ``email``), newest first, with
    the holder: items are ``(VirtualCard, full_name, email)`` rows (one statement per page)."""
    size = size or PAGE_SIZE
    query = select(VirtualCard, User.full_name, User.email).join(User, User.id == VirtualCard.user_id)
    if email:
        prefix = email.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(User.email.like(prefix + "%"))
    position = decode_cursor(cursor)
    if position is not None:
        query = query.where(tuple_(VirtualCard.created_at, VirtualCard.id) < tuple_(*position))
    rows = db.session.execute(query.order_by(VirtualCard.created_at.desc(), VirtualCard.id.desc())
                              .limit(size + 1)).all()
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1][0].created_at, rows[-1][0].id)
    return Page([tuple(row) for row in rows], next_cursor)


def card_with_holder(card_id: uuid.UUID) -> tuple[VirtualCard, User] | None:
    row = db.session.execute(select(VirtualCard, User).join(User, User.id == VirtualCard.user_id)
                             .where(VirtualCard.id == card_id)).first()
    return (row[0], row[1]) if row else None
