"""Reads for the card holder's pages: their cards, one card with its controls, and their card
transactions (keyset pages, and the ones newer than what the page shows, for live updates).

Row-level security already limits a student to their own rows; the queries filter by the user
as well, so a staff member calling them sees only the user they ask about. Every page's reads
are a fixed number of statements, whatever the number of cards or transactions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from flask import current_app
from sqlalchemy import select, text, tuple_

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.money.cards import codes
from portal.money.cards.models import LIVE_STATES, CardTransaction, CardTransactionKind, VirtualCard
from portal.pagination import Page, keyset_page

PAGE_SIZE = 25


@dataclass(frozen=True)
class CardsOverview:
    cards: list[VirtualCard]
    #: Whether the holder may add a card now (below the live-card limit).
    may_add: bool
    limit: int


def my_cards(user: User) -> CardsOverview:
    """The user's cards, live ones first, newest first (one statement)."""
    cards = list(db.session.scalars(
        select(VirtualCard).where(VirtualCard.user_id == user.id)
        .order_by(VirtualCard.state.in_(LIVE_STATES).desc(), VirtualCard.created_at.desc(), VirtualCard.id.desc())))
    limit = int(current_app.config.get("CARD_MAX_LIVE_PER_USER", 3))
    return CardsOverview(cards, sum(1 for c in cards if c.live) < limit, limit)


def my_card(user: User, card_id: uuid.UUID) -> VirtualCard:
    card = db.session.scalar(select(VirtualCard).where(VirtualCard.id == card_id, VirtualCard.user_id == user.id))
    if card is None:
        raise NotFound("There is no such card.")
    return card


def transactions(user_id: uuid.UUID, *, card_id: uuid.UUID | None = None, cursor: str | None = None,
                 size: int = PAGE_SIZE) -> Page:
    """A user's card transactions, newest first (one statement per page)."""
    query = select(CardTransaction).where(CardTransaction.user_id == user_id)
    if card_id is not None:
        query = query.where(CardTransaction.card_id == card_id)
    return keyset_page(query, CardTransaction.created_at, CardTransaction.id, cursor, size)


def newer_than(user_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, *, card_id: uuid.UUID | None = None,
               limit: int = 50) -> list[CardTransaction]:
    """Transactions added after the newest one a page shows (``(createdAt, id)``), oldest
    first, for a list that polls for what is new."""
    query = select(CardTransaction).where(CardTransaction.user_id == user_id)
    if card_id is not None:
        query = query.where(CardTransaction.card_id == card_id)
    if after is not None:
        query = query.where(tuple_(CardTransaction.created_at, CardTransaction.id) > tuple_(*after))
    return list(db.session.scalars(query.order_by(CardTransaction.created_at, CardTransaction.id).limit(limit)))


@dataclass(frozen=True)
class Spending:
    """What counts against a card's daily and monthly limits now (wallet currency)."""

    today: Decimal
    this_month: Decimal


_SPENDING = text("""
SELECT coalesce(sum(CASE WHEN state = 'captured' THEN "capturedAmount" ELSE amount END)
                FILTER (WHERE "createdAt" >= :day), 0) AS today,
       coalesce(sum(CASE WHEN state = 'captured' THEN "capturedAmount" ELSE amount END), 0) AS this_month
FROM card_transactions
WHERE "cardId" = :card_id AND kind = 'authorization' AND state IN ('pending', 'captured') AND "createdAt" >= :month
""")


def spending(card: VirtualCard, now: datetime | None = None) -> Spending:
    """The card's spending today and this month (UTC), as the network's limits count it: open
    holds and captured purchases (one statement)."""
    day = (now or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
    row = db.session.execute(_SPENDING, {"card_id": card.id, "day": day, "month": day.replace(day=1)}).one()
    return Spending(row.today, row.this_month)


def decline_reason(row: CardTransaction) -> str:
    return row.decline_reason or codes.reason(row.response_code)


def mcc_group_choices() -> list[tuple[str, str]]:
    """``[(name, label)]`` of the merchant-category groups a holder may block."""
    return [(name, label) for name, (label, _codes) in codes.MCC_GROUPS.items()]


def authorizations_between(start: datetime, end: datetime, limit: int | None = None
                           ) -> list[tuple[uuid.UUID, datetime]]:
    """``(id, createdAt)`` of the card authorizations made in ``[start, end)``, oldest first, at
    most ``limit``: what the card monitoring sweep judges next (``tasks.monitor_card_activity``)."""
    return [tuple(row) for row in db.session.execute(
        select(CardTransaction.id, CardTransaction.created_at)
        .where(CardTransaction.kind == CardTransactionKind.AUTHORIZATION,
               CardTransaction.created_at >= start, CardTransaction.created_at < end)
        .order_by(CardTransaction.created_at, CardTransaction.id)
        .limit(limit))]
