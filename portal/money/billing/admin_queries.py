"""Reads for the billing administration: subscriptions by state, MRR per currency, churn per
month, and every invoice with filters, in keyset pages (``after``: the last row shown's
``cursor``), so a deep page costs what the first does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import case, func, select, tuple_

from portal.accounts.models import User
from portal.db import db
from portal.errors import DomainError
from portal.money.billing.models import Invoice, InvoiceStatus, Plan, Subscription, SubscriptionStatus
from portal.money.currency import currency

PAGE_SIZE = 50


def counts_by_status() -> dict[SubscriptionStatus, int]:
    """How many subscriptions are in each state (every state listed, zeros included)."""
    rows = dict(db.session.execute(select(Subscription.status, func.count()).group_by(Subscription.status)).all())
    return {status: rows.get(status, 0) for status in SubscriptionStatus}


def mrr() -> dict[str, Decimal]:
    """Monthly recurring revenue per currency: active and past-due subscriptions' plan prices,
    yearly ones divided by 12, at the currency's scale (half-even). Trials are not revenue yet."""
    monthly = case((Plan.interval == "yearly", Plan.price / 12), else_=Plan.price)
    rows = db.session.execute(
        select(Plan.currency, func.sum(monthly))
        .join(Subscription, Subscription.plan_id == Plan.id)
        .where(Subscription.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)))
        .group_by(Plan.currency)).all()
    return {code: Decimal(total).quantize(currency(code).quantum, rounding=ROUND_HALF_EVEN) for code, total in rows}


@dataclass(frozen=True)
class ChurnMonth:
    month: str  #: ``YYYY-MM``
    started: int
    ended: int


def churn(months: int = 12) -> list[ChurnMonth]:
    """Subscriptions started and ended per UTC month, the last ``months`` months with any."""
    started_month = func.to_char(func.timezone("UTC", Subscription.created_at), "YYYY-MM")
    ended_month = func.to_char(func.timezone("UTC", Subscription.ended_at), "YYYY-MM")
    started = dict(db.session.execute(select(started_month, func.count()).group_by(started_month)).all())
    ended = dict(db.session.execute(select(ended_month, func.count())
                                    .where(Subscription.ended_at.is_not(None)).group_by(ended_month)).all())
    keys = sorted(set(started) | set(ended))[-months:]
    return [ChurnMonth(k, started.get(k, 0), ended.get(k, 0)) for k in keys]


@dataclass(frozen=True)
class InvoiceFilters:
    status: str = ""
    number: str = ""
    email: str = ""
    plan: str = ""  #: a plan's code (every version)
    since: datetime | None = None
    until: datetime | None = None


def cursor(invoice: Invoice) -> str:
    """Where the page after ``invoice`` starts (``invoices(after=...)``)."""
    return f"{invoice.created_at.isoformat()}_{invoice.id}"


def _after(raw: str) -> tuple[datetime, uuid.UUID]:
    try:
        moment, _, ident = raw.rpartition("_")
        return datetime.fromisoformat(moment), uuid.UUID(ident)
    except ValueError:
        raise DomainError("This page link is broken: start again from the first page.", field="after") from None


def invoices(filters: InvoiceFilters, page: int = 1, after: str | None = None
             ) -> tuple[list[tuple[Invoice, User]], bool]:
    """Every invoice with its customer, newest first, filtered; (this page, whether more).
    With ``after`` (a ``cursor``) the page after that row, by keyset. Raises DomainError
    (``field`` set) for an unknown status or a broken cursor."""
    query = select(Invoice, User).join(User, User.id == Invoice.user_id)
    if filters.status:
        try:
            query = query.where(Invoice.status == InvoiceStatus(filters.status))
        except ValueError:
            raise DomainError(f"Unknown status {filters.status!r}: use "
                              f"{', '.join(s.value for s in InvoiceStatus)}.", field="status") from None
    if filters.number.strip():
        query = query.where(Invoice.number == filters.number.strip().upper())
    if filters.email.strip():
        query = query.where(User.email == filters.email.strip().lower())
    if filters.plan.strip():
        query = query.where(Invoice.subscription_id.in_(
            select(Subscription.id).join(Plan, Plan.id == Subscription.plan_id)
            .where(Plan.code == filters.plan.strip().lower())))
    if filters.since is not None:
        query = query.where(Invoice.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Invoice.created_at < filters.until)
    if after:
        moment, ident = _after(after)
        query = query.where(tuple_(Invoice.created_at, Invoice.id) < tuple_(moment, ident))
    else:
        query = query.offset((max(1, page) - 1) * PAGE_SIZE)
    rows = list(db.session.execute(query.order_by(Invoice.created_at.desc(), Invoice.id.desc())
                                   .limit(PAGE_SIZE + 1)).all())
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
