"""Billing's writes: plans, subscribing, changing plan (with proration), canceling and resuming,
invoices and their numbers, charging them from the wallet, and dunning.

Rules, in one place:

- Plans: admins create them, give them a new price as a new version (the old version is
  archived; its subscribers keep it until they change plan, or until an admin moves them to the
  new version at their next renewal, with an e-mail notice now) and archive them. No one new
  subscribes to an archived plan.
- One live subscription per student (a partial unique index, and a per-student advisory lock so
  a second concurrent subscribe waits and is then refused instead of failing on the index).
  A plan with trial days starts with a trial, once per student; a paid plan without a trial is
  invoiced and charged from the wallet at once, and a refused charge subscribes nothing.
- Periods follow ``periods`` (anchored, month ends clamped). At each period end the renewal
  (``renew``, run by the job) ends a subscription set to cancel, applies a scheduled downgrade,
  turns a trial into the first paid period, and makes the period's invoice: exactly once, since
  the subscription row is locked and ``UNIQUE (subscriptionId, periodStart)`` backs it. It
  catches up every period missed while the job was down.
- Changing plan: an upgrade (the prorated total is above zero) happens now, with the unused
  time credited to the day (``proration``), invoiced and charged at once (refused, nothing
  changes, when the wallet cannot pay). A downgrade happens at the end of the period. Every
  change first catches the subscription up, under its row lock, so a change and the renewal job
  never both bill one period.
- Canceling at the period end can be undone (``resume``) until then; canceling now ends the
  subscription and returns the unused time of a paid period to the wallet, a movement from
  ``billing`` back to the student; open invoices are voided.
- Charging: an open invoice is charged from the student's wallet in its currency, once (the
  invoice row is locked; the ledger movement carries an idempotency key derived from the
  invoice). A failed automatic charge counts an attempt (``dunning_attempts``), moves the
  subscription to past due, and is retried ``BILLING_RETRY_DAYS`` days after the invoice was due
  (default 1, 3, 5 and 7), with an e-mail each time. After the last retry the invoice is
  uncollectible and the subscription canceled or moved to the free plan
  (``BILLING_AFTER_FINAL_FAILURE``). Paying by hand in between restores it at once.
- Paying with a saved method of the payment gateway: a subscription may name one
  (``paymentMethodId``, chosen when subscribing or later); its open invoices are then charged to
  it off-session instead of the wallet, and a student may pay an invoice with one by hand. The
  gateway is asynchronous: the charge is a payment of purpose ``invoice``; the invoice stays
  open while it is pending, and no other charge is tried meanwhile (the charging job skips it;
  the database allows one pending or succeeded payment per invoice). When the payment succeeds
  (at once, by webhook or by the reconciliation poll) its amount is credited to the wallet and
  the invoice paid from there in the same transaction (``on_invoice_payment_ended``), which
  restores a past-due subscription; a failed or canceled one counts as a failed charge and is
  retried on the dunning schedule. A payment that succeeds for an invoice no longer open (voided
  meanwhile) leaves its money in the wallet.

Services validate, change rows and flush; the caller commits.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert

from portal.accounts.models import Role, User
from portal.db import db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.billing import entitlements, periods, proration
from portal.money.billing.context import as_billing
from portal.money.billing.models import (
    DunningAttempt,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceNumber,
    InvoiceReason,
    InvoiceStatus,
    LineKind,
    Plan,
    PlanStatus,
    Subscription,
    SubscriptionStatus,
)
from portal.money.billing.states import move_invoice, move_subscription
from portal.money.currency import UnknownCurrency, currency, format_amount
from portal.money.payments import services as payments
from portal.money.payments.models import PaymentMethod
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType

S = SubscriptionStatus
LIVE = (S.TRIALING, S.ACTIVE, S.PAST_DUE)


class BillingError(DomainError):
    status_code = 422


class PlanUnavailable(BillingError):
    field = "plan"


class AlreadySubscribed(Conflict):
    field = "plan"


class NoSubscription(NotFound):
    pass


class PlanInvalid(BillingError):
    """A plan form with a bad field (``field`` names it)."""


# -- Settings -------------------------------------------------------------------------------------


def retry_days() -> list[int]:
    """``BILLING_RETRY_DAYS``: days after the due date when a failed charge is retried."""
    raw = str(current_app.config.get("BILLING_RETRY_DAYS", "1,3,5,7"))
    try:
        days = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"BILLING_RETRY_DAYS must be whole days separated by commas, not {raw!r}.") from None
    if any(d <= 0 for d in days) or days != sorted(set(days)):
        raise ValueError(f"BILLING_RETRY_DAYS must be increasing positive days, not {raw!r}.")
    return days


def after_final_failure() -> str:
    """``BILLING_AFTER_FINAL_FAILURE``: ``cancel`` or ``downgrade`` (to the free plan)."""
    value = str(current_app.config.get("BILLING_AFTER_FINAL_FAILURE", "cancel")).strip().lower()
    if value not in ("cancel", "downgrade"):
        raise ValueError(f"BILLING_AFTER_FINAL_FAILURE is cancel or downgrade, not {value!r}.")
    return value


# -- Plans ----------------------------------------------------------------------------------------


@dataclass
class PlanInput:
    """A plan form as typed (strings), checked by ``_checked_plan``."""

    name: str = ""
    price: str | Decimal = ""
    currency: str = "USD"
    interval: str = "monthly"
    trial_days: str | int = 0
    entitlements: dict | None = None
    description: str = ""
    position: str | int = 0


def _require_admin(actor: User) -> None:
    if actor is None or actor.role != Role.ADMIN:
        raise Forbidden("Only administrators manage plans.")


def _checked_plan(data: PlanInput) -> dict:
    name = (data.name or "").strip()
    if not name or len(name) > 80:
        raise PlanInvalid("Give the plan a name of at most 80 characters.", field="name")
    try:
        code = currency(data.currency).code
    except UnknownCurrency as exc:
        raise PlanInvalid(exc.message, field="currency") from None
    try:
        price = Decimal(str(data.price).strip())
    except (InvalidOperation, ValueError):
        raise PlanInvalid("The price is a number such as 9.99 (0 for a free plan).", field="price") from None
    if not price.is_finite() or price < 0:
        raise PlanInvalid("The price is 0 or more.", field="price")
    if price != price.quantize(currency(code).quantum, rounding=ROUND_HALF_EVEN):
        raise PlanInvalid(f"{code} prices have at most {currency(code).scale} decimal places.", field="price")
    if price >= Decimal(10) ** 12:
        raise PlanInvalid("That price is too large.", field="price")
    try:
        interval = Interval(str(data.interval).strip().lower())
    except ValueError:
        raise PlanInvalid("The interval is monthly or yearly.", field="interval") from None
    try:
        trial_days = int(str(data.trial_days).strip() or 0)
    except ValueError:
        raise PlanInvalid("Trial days are a whole number from 0 to 365.", field="trial_days") from None
    if not 0 <= trial_days <= 365:
        raise PlanInvalid("Trial days are a whole number from 0 to 365.", field="trial_days")
    try:
        features = entitlements.clean(data.entitlements)
    except ValueError as exc:
        raise PlanInvalid(str(exc), field="entitlements") from None
    try:
        position = int(str(data.position).strip() or 0)
    except ValueError:
        raise PlanInvalid("The position is a whole number.", field="position") from None
    description = (data.description or "").strip()
    if len(description) > 500:
        raise PlanInvalid("The description is at most 500 characters.", field="description")
    return {"name": name, "currency": code, "price": price.quantize(currency(code).quantum), "interval": interval,
            "trial_days": trial_days, "entitlements": entitlements.to_json(features), "description": description,
            "position": max(-1000, min(1000, position))}


def create_plan(actor: User, code: str, data: PlanInput) -> Plan:
    """A new plan (version 1). ``code`` is lower-case letters, digits, - and _."""
    _require_admin(actor)
    code = (code or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9_-]{1,40}", code):
        raise PlanInvalid("The code is 1 to 40 lower-case letters, digits, - or _.", field="code")
    values = _checked_plan(data)
    if db.session.scalar(select(Plan.id).where(Plan.code == code).limit(1)) is not None:
        raise PlanInvalid("A plan with this code exists: give it a new version instead.", field="code")
    plan = Plan(code=code, version=1, status=PlanStatus.ACTIVE, **values)
    db.session.add(plan)
    db.session.flush()
    entitlements.forget()
    return plan


def active_plan(code: str) -> Plan | None:
    return db.session.scalar(select(Plan).where(Plan.code == code, Plan.status == PlanStatus.ACTIVE))


def new_plan_version(actor: User, code: str, data: PlanInput) -> Plan:
    """A new version of plan ``code`` (a price change): the current version is archived; its
    subscribers keep it until they change plan."""
    _require_admin(actor)
    current = db.session.scalar(select(Plan).where(Plan.code == code, Plan.status == PlanStatus.ACTIVE)
                                .with_for_update())
    if current is None:
        raise PlanUnavailable("There is no active plan with this code to give a new version.")
    values = _checked_plan(data)
    last = db.session.scalar(select(func.max(Plan.version)).where(Plan.code == code))
    current.status, current.archived_at = PlanStatus.ARCHIVED, periods.now()
    db.session.flush()
    plan = Plan(code=code, version=last + 1, status=PlanStatus.ACTIVE, **values)
    db.session.add(plan)
    db.session.flush()
    entitlements.forget()
    return plan


def move_to_latest_version(actor: User, code: str) -> int:
    """Move every live subscriber of an older version of plan ``code`` to its active version at
    their next renewal, each told by e-mail now (the notice); returns how many. Subscribers set
    to cancel, or with another change scheduled, are left as they are."""
    _require_admin(actor)
    latest = active_plan(code)
    if latest is None:
        raise PlanUnavailable("There is no active plan with this code.")
    older = select(Plan.id).where(Plan.code == code, Plan.id != latest.id)
    subscriptions = db.session.scalars(select(Subscription).where(
        Subscription.plan_id.in_(older), Subscription.status.in_(LIVE),
        Subscription.scheduled_plan_id.is_(None), Subscription.cancel_at_period_end.is_(False))
        .with_for_update().execution_options(populate_existing=True)).all()
    for subscription in subscriptions:
        subscription.scheduled_plan_id = latest.id
        db.session.flush()
        _email(subscription.user_id, "billing_price_change", old=db.session.get(Plan, subscription.plan_id),
               new=latest, at=subscription.current_period_end,
               new_price=format_amount(latest.price, latest.currency))
    return len(subscriptions)


def archive_plan(actor: User, plan_id: uuid.UUID | str) -> Plan:
    """No one new may subscribe to the plan; its subscribers keep it."""
    _require_admin(actor)
    plan = _plan(plan_id, lock=True)
    if plan.status == PlanStatus.ARCHIVED:
        return plan
    plan.status, plan.archived_at = PlanStatus.ARCHIVED, periods.now()
    db.session.flush()
    return plan


def _uuid(raw, message: str, field: str = "plan") -> uuid.UUID:
    try:
        return raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
    except (ValueError, AttributeError, TypeError):
        raise PlanUnavailable(message, field=field) from None


def _plan(plan_id, *, lock: bool = False) -> Plan:
    query = select(Plan).where(Plan.id == _uuid(plan_id, "There is no such plan."))
    plan = db.session.scalar(query.with_for_update() if lock else query)
    if plan is None:
        raise PlanUnavailable("There is no such plan.")
    return plan


def _offered(plan_id) -> Plan:
    plan = _plan(plan_id)
    if plan.status != PlanStatus.ACTIVE:
        raise PlanUnavailable(f"The {plan.name} plan is no longer offered: choose another one.")
    return plan


def free_plan() -> Plan | None:
    return active_plan(entitlements.FREE_PLAN_CODE)


# -- Numbers and invoices ---------------------------------------------------------------------------


def next_invoice_number(at: datetime | None = None) -> str:
    """The next ``INV-YYYY-NNNNNN`` of the year of ``at``: the year's counter row is locked
    ``FOR UPDATE`` until this transaction ends, so numbers have no gaps (a rollback gives the
    number back with everything that used it) and are never given twice."""
    year = periods.as_utc(at or periods.now()).year
    with as_billing():
        db.session.execute(insert(InvoiceNumber).values(id=uuid.uuid4(), year=year, last_number=0,
                                                        created_at=periods.now(), updated_at=periods.now())
                           .on_conflict_do_nothing(index_elements=[InvoiceNumber.year]))
        counter = db.session.scalars(select(InvoiceNumber).where(InvoiceNumber.year == year).with_for_update()
                                     .execution_options(populate_existing=True)).one()
        counter.last_number += 1
        db.session.flush()
        number = counter.last_number
    return f"INV-{year}-{number:06d}"


def _make_invoice(subscription: Subscription, reason: InvoiceReason, start: datetime, end: datetime,
                  lines: list[proration.Line], plan: Plan, at: datetime) -> Invoice:
    total = sum((line.amount for line in lines), Decimal(0))
    invoice = Invoice(user_id=subscription.user_id, subscription_id=subscription.id,
                      number=next_invoice_number(at), reason=reason, status=InvoiceStatus.OPEN,
                      currency=plan.currency, total=total, period_start=start, period_end=end, due_at=at,
                      attempt_count=0, next_attempt_at=at)
    db.session.add(invoice)
    db.session.flush()
    for position, line in enumerate(lines, start=1):
        db.session.add(InvoiceLine(invoice_id=invoice.id, user_id=subscription.user_id, position=position,
                                   kind=LineKind(line.kind), plan_id=plan.id, description=line.text[:300],
                                   amount=line.amount))
    db.session.flush()
    return invoice


def _plan_line(plan: Plan, start: datetime, end: datetime) -> proration.Line:
    return proration.Line("plan", f"{plan.name} ({format_amount(plan.price, plan.currency)} a "
                                  f"{plan.interval.label}), {start:%d %b %Y} to {end:%d %b %Y}", plan.price)


def void_invoice(actor: User, invoice_id: uuid.UUID | str) -> Invoice:
    """An administrator withdraws an open invoice; its number stays used."""
    _require_admin(actor)
    invoice = _lock_invoice(_uuid(invoice_id, "There is no such invoice.", "invoice"))
    if invoice is None:
        raise NotFound("There is no such invoice.")
    _void(invoice)
    return invoice


def _void(invoice: Invoice) -> None:
    move_invoice(invoice, InvoiceStatus.VOID)
    invoice.voided_at, invoice.next_attempt_at = periods.now(), None
    db.session.flush()


def _lock_invoice(invoice_id: uuid.UUID) -> Invoice | None:
    return db.session.scalars(select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                              .execution_options(populate_existing=True)).one_or_none()


# -- Subscribing ------------------------------------------------------------------------------------


def live_subscription(user_id: uuid.UUID, *, lock: bool = False) -> Subscription | None:
    query = select(Subscription).where(Subscription.user_id == user_id, Subscription.status != S.CANCELED)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(query)


def _serialise(user_id: uuid.UUID) -> None:
    """One billing change per student at a time (a transaction-level advisory lock)."""
    db.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"billing:{user_id}"})


def _had_trial(user_id: uuid.UUID) -> bool:
    return db.session.scalar(select(Subscription.id).where(Subscription.user_id == user_id,
                                                           Subscription.trial_end.is_not(None)).limit(1)) is not None


def _require_student(user: User) -> None:
    if user is None or user.role != Role.STUDENT:
        raise Forbidden("Only students subscribe to plans.")


def subscribe(user: User, plan_id: uuid.UUID | str, *, method_id: uuid.UUID | str | None = None,
              idempotency_key: str | None = None) -> Subscription:
    """Subscribe ``user`` to an offered plan (see the module docstring), paid from the wallet, or
    with the saved payment method ``method_id`` (it then pays every invoice automatically; the
    first is charged to it at once, keyed ``idempotency_key``). Raises ``AlreadySubscribed``,
    ``PlanUnavailable``, the ledger's ``InsufficientFunds``, and the payment gateway's
    ``MethodInvalid`` and ``PaymentDeclined`` (nothing subscribed)."""
    _require_student(user)
    plan = _offered(plan_id)
    method = payments.usable_method(user, method_id)
    if method is not None and not plan.is_free and plan.currency not in payments.card_currencies():
        raise payments.MethodInvalid(f"Plans in {plan.currency} cannot be paid by card: pay from your wallet.")
    _serialise(user.id)
    existing = live_subscription(user.id)
    if existing is not None:
        raise AlreadySubscribed("You already have a subscription: change its plan instead.")
    now = periods.now()
    with db.session.begin_nested():
        if plan.trial_days and not plan.is_free and not _had_trial(user.id):
            trial_end = now + timedelta(days=plan.trial_days)
            subscription = Subscription(user_id=user.id, plan_id=plan.id, status=S.TRIALING, anchor_at=now,
                                        anchor_day=now.day, period_index=0, current_period_start=now,
                                        current_period_end=trial_end, trial_end=trial_end,
                                        payment_method_id=method.id if method is not None else None)
            db.session.add(subscription)
            db.session.flush()
        else:
            start, end = periods.period_bounds(now, plan.interval.months, 0)
            subscription = Subscription(user_id=user.id, plan_id=plan.id, status=S.ACTIVE, anchor_at=now,
                                        anchor_day=now.day, period_index=0, current_period_start=start,
                                        current_period_end=end,
                                        payment_method_id=method.id if method is not None else None)
            db.session.add(subscription)
            db.session.flush()
            if not plan.is_free:
                invoice = _make_invoice(subscription, InvoiceReason.CYCLE, start, end,
                                        [_plan_line(plan, start, end)], plan, now)
                if method is not None and invoice.total > 0:
                    payments.start_invoice_payment(user, invoice, method,
                                                   idempotency_key=idempotency_key or f"subscribe-{invoice.id.hex}")
                else:
                    _pay(invoice, initiated_by_id=user.id)
    entitlements.forget(user.id)
    return subscription


# -- Renewal ----------------------------------------------------------------------------------------


def _end(subscription: Subscription, at: datetime, reason: str) -> None:
    move_subscription(subscription, S.CANCELED)
    subscription.ended_at = at
    subscription.canceled_at = subscription.canceled_at or at
    subscription.end_reason = reason
    subscription.past_due_since = None
    subscription.cancel_at_period_end = False
    subscription.scheduled_plan_id = None
    for invoice in _open_invoices(subscription.id):
        _void(invoice)
    entitlements.forget(subscription.user_id)


def _open_invoices(subscription_id: uuid.UUID) -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).where(Invoice.subscription_id == subscription_id,
                                                         Invoice.status == InvoiceStatus.OPEN)
                                   .order_by(Invoice.period_start).with_for_update()
                                   .execution_options(populate_existing=True)))


def _advance(subscription: Subscription) -> Invoice | None:
    """Move a live subscription whose period has ended into its next period; returns the
    period's invoice (None for a free plan or an ended subscription)."""
    boundary = subscription.current_period_end
    if subscription.cancel_at_period_end:
        _end(subscription, boundary, "period_end")
        return None
    plan = db.session.get(Plan, subscription.plan_id)
    restart = False
    if subscription.status == S.TRIALING:
        move_subscription(subscription, S.ACTIVE)
        restart = True
    if subscription.scheduled_plan_id is not None:
        new_plan = db.session.get(Plan, subscription.scheduled_plan_id)
        restart = restart or new_plan.interval != plan.interval
        subscription.plan_id, subscription.scheduled_plan_id, plan = new_plan.id, None, new_plan
        entitlements.forget(subscription.user_id)
    if restart:
        subscription.anchor_at, subscription.anchor_day, subscription.period_index = boundary, boundary.day, 0
    else:
        subscription.period_index += 1
    start, end = periods.period_bounds(subscription.anchor_at, plan.interval.months, subscription.period_index)
    subscription.current_period_start, subscription.current_period_end = start, end
    db.session.flush()
    if plan.is_free:
        return None
    return _make_invoice(subscription, InvoiceReason.CYCLE, start, end, [_plan_line(plan, start, end)], plan,
                         start)


def renew(subscription: Subscription, at: datetime | None = None) -> list[Invoice]:
    """Bring a locked subscription up to ``at``: every period boundary passed makes its invoice
    (catching up after downtime). Returns the invoices made."""
    at = at or periods.now()
    made = []
    while subscription.status in LIVE and subscription.current_period_end <= at:
        invoice = _advance(subscription)
        if invoice is not None:
            made.append(invoice)
    return made


def renew_due(at: datetime | None = None, limit: int = 500) -> dict:
    """One pass of the renewal job: subscriptions whose period ended, oldest first, each locked
    (``SKIP LOCKED``: a second worker takes others) and renewed in its own savepoint."""
    at = at or periods.now()
    counts = {"subscriptions": 0, "invoices": 0, "errors": 0}
    due = db.session.scalars(select(Subscription).where(Subscription.status.in_(LIVE),
                                                        Subscription.current_period_end <= at)
                             .order_by(Subscription.current_period_end).limit(limit)
                             .with_for_update(skip_locked=True).execution_options(populate_existing=True)).all()
    for subscription in due:
        counts["subscriptions"] += 1
        try:
            with db.session.begin_nested():
                counts["invoices"] += len(renew(subscription, at))
        except DomainError:
            counts["errors"] += 1
    return counts


# -- Charging and dunning ---------------------------------------------------------------------------


class ChargeFailed(BillingError):
    field = None


def _ledger_key(invoice: Invoice) -> str:
    return f"invoice-{invoice.id.hex}"


def _pay(invoice: Invoice, *, initiated_by_id: uuid.UUID | None) -> None:
    """Move an open invoice's total from the wallet to ``billing`` and mark it paid. Raises the
    ledger's refusal with nothing changed."""
    code = invoice.currency
    group_id = uuid.uuid4()

    def perform() -> dict:
        if invoice.total > 0:
            wallet = ledger.user_wallet(invoice.user_id, code)
            if wallet is None:
                raise ledger.InsufficientFunds(f"Not enough money: you have no {code} wallet yet. Top up first.")
            with ledger.as_ledger():
                revenue = ledger.system_wallet(SystemWallet.BILLING, code, spread_by=invoice.user_id)
            ledger.post([ledger.Leg(wallet, revenue, invoice.total, TransactionType.SUBSCRIPTION,
                                    f"Invoice {invoice.number}",
                                    {"to_name": "Subscription", "invoice_id": str(invoice.id),
                                     "invoice_number": invoice.number})],
                        initiated_by_id=initiated_by_id, group_id=group_id)
        return {"invoice_id": str(invoice.id), "group_id": str(group_id)}

    with db.session.begin_nested():
        result, _replayed = ledger.once(invoice.user_id, _ledger_key(invoice), "invoice",
                                        {"invoice": str(invoice.id), "total": str(invoice.total)}, perform)
        move_invoice(invoice, InvoiceStatus.PAID)
        invoice.paid_at, invoice.next_attempt_at = periods.now(), None
        invoice.ledger_group_id = uuid.UUID(result["group_id"])
        db.session.add(DunningAttempt(invoice_id=invoice.id, user_id=invoice.user_id,
                                      attempt=invoice.attempt_count + 1, attempted_at=periods.now(),
                                      succeeded=True))
        db.session.flush()


def _restore_if_settled(subscription: Subscription) -> bool:
    """A past-due subscription with nothing left unpaid is active again."""
    if subscription.status != S.PAST_DUE:
        return False
    unpaid = db.session.scalar(select(func.count()).select_from(Invoice).where(
        Invoice.subscription_id == subscription.id, Invoice.status == InvoiceStatus.OPEN,
        Invoice.attempt_count > 0))
    if unpaid:
        return False
    move_subscription(subscription, S.ACTIVE)
    subscription.past_due_since = None
    db.session.flush()
    return True


def _lock_subscription(subscription_id: uuid.UUID) -> Subscription:
    return db.session.scalars(select(Subscription).where(Subscription.id == subscription_id).with_for_update()
                              .execution_options(populate_existing=True)).one()


def charge(invoice_id: uuid.UUID, at: datetime | None = None) -> str:
    """One automatic charge of an open invoice (the job's), from the wallet or to the
    subscription's saved method: ``paid``, ``failed``, ``final`` (the last retry failed),
    ``pending`` (a card payment is under way: its outcome decides, no second charge) or
    ``skipped`` (not open, or not due yet). Locks the subscription, then the invoice, in the
    order every billing change takes them."""
    at = at or periods.now()
    subscription_id = db.session.scalar(select(Invoice.subscription_id).where(Invoice.id == invoice_id))
    if subscription_id is None:
        return "skipped"
    subscription = _lock_subscription(subscription_id)
    invoice = _lock_invoice(invoice_id)
    if invoice.status != InvoiceStatus.OPEN or invoice.next_attempt_at is None or invoice.next_attempt_at > at:
        return "skipped"
    if payments.live_invoice_payment(invoice.id) is not None:
        return "pending"  # a card payment is under way: its end decides, never a second charge
    method = _automatic_method(subscription)
    if method is not None and invoice.total > 0:
        return _charge_method(invoice, subscription, method, at)
    try:
        _pay(invoice, initiated_by_id=None)
    except DomainError as exc:
        return _failed(invoice, subscription, exc.message, at)
    if _restore_if_settled(subscription):
        _email(subscription.user_id, "billing_restored", invoice=invoice)
    return "paid"


def _automatic_method(subscription: Subscription) -> PaymentMethod | None:
    """The saved method that pays the subscription's invoices (None: the wallet, also when the
    method was removed since)."""
    if subscription.payment_method_id is None:
        return None
    method = db.session.get(PaymentMethod, subscription.payment_method_id)
    return method if method is not None and method.removed_at is None else None


def _charge_method(invoice: Invoice, subscription: Subscription, method: PaymentMethod, at: datetime) -> str:
    """The automatic charge of a locked open invoice to the saved ``method``: ``paid``,
    ``pending`` (the gateway answers later), ``failed`` or ``final``. A decline reaches
    ``on_invoice_payment_ended``, which counts it; a refusal before the gateway is asked
    (a blocked payer) is counted here."""
    user = db.session.get(User, invoice.user_id)
    key = f"invoice-{invoice.id.hex}-{invoice.attempt_count + 1}"
    try:
        payment = payments.start_invoice_payment(user, invoice, method, idempotency_key=key)
    except payments.PaymentDeclined:
        db.session.refresh(invoice)
        return "final" if invoice.status == InvoiceStatus.UNCOLLECTIBLE else "failed"
    except DomainError as exc:
        return _failed(invoice, subscription, exc.message, at)
    return "paid" if payment.state == PaymentState.SUCCEEDED else "pending"


def on_invoice_payment_ended(payment, *, outcome: str) -> None:
    """An invoice payment through the gateway ended (the payments area's hook; the payment row
    is locked). Succeeded: its money is in the wallet now, so the invoice is paid from there if
    it is still open or uncollectible, and a past-due subscription with nothing else unpaid is
    restored. Failed or canceled: a failed charge of an open invoice, retried on the schedule."""
    subscription_id = db.session.scalar(select(Invoice.subscription_id).where(Invoice.id == payment.invoice_id))
    if subscription_id is None:
        return
    subscription = _lock_subscription(subscription_id)
    invoice = _lock_invoice(payment.invoice_id)
    if outcome == "succeeded":
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            return
        _pay(invoice, initiated_by_id=payment.user_id)
        if _restore_if_settled(subscription):
            _email(subscription.user_id, "billing_restored", invoice=invoice)
        entitlements.forget(invoice.user_id)
        return
    if invoice.status == InvoiceStatus.OPEN:
        _failed(invoice, subscription, payment.failure_message or "The card payment did not go through.",
                periods.now())


def _catch_up(subscription: Subscription, at: datetime) -> None:
    """Before a student's change: the renewals the job has not run yet, and their charges, as
    the job would run them (a change never acts on a period that was not billed)."""
    for invoice in renew(subscription, at):
        with db.session.begin_nested():
            charge(invoice.id, at)
    db.session.refresh(subscription)


def _failed(invoice: Invoice, subscription: Subscription, message: str, at: datetime) -> str:
    invoice.attempt_count += 1
    schedule = retry_days()
    final = invoice.attempt_count > len(schedule)
    next_at = None if final else invoice.due_at + timedelta(days=schedule[invoice.attempt_count - 1])
    db.session.add(DunningAttempt(invoice_id=invoice.id, user_id=invoice.user_id, attempt=invoice.attempt_count,
                                  attempted_at=at, succeeded=False, message=message[:300], next_attempt_at=next_at))
    if not final:
        invoice.next_attempt_at = next_at
        if subscription.status in (S.ACTIVE,):
            move_subscription(subscription, S.PAST_DUE)
            subscription.past_due_since = at
        db.session.flush()
        _email(subscription.user_id, "billing_payment_failed", invoice=invoice, reason=message, next_at=next_at,
               attempt=invoice.attempt_count, retries=len(schedule))
        return "failed"
    move_invoice(invoice, InvoiceStatus.UNCOLLECTIBLE)
    invoice.next_attempt_at = None
    db.session.flush()
    if subscription.status in LIVE:
        if after_final_failure() == "downgrade" and free_plan() is not None:
            _downgrade_to_free(subscription, at)
            _email(subscription.user_id, "billing_downgraded", invoice=invoice, plan=free_plan())
        else:
            _end(subscription, at, "unpaid")
            _email(subscription.user_id, "billing_canceled_unpaid", invoice=invoice)
    return "final"


def _downgrade_to_free(subscription: Subscription, at: datetime) -> None:
    plan = free_plan()
    for other in _open_invoices(subscription.id):
        _void(other)
    if subscription.status == S.PAST_DUE:
        move_subscription(subscription, S.ACTIVE)
        subscription.past_due_since = None
    subscription.plan_id, subscription.scheduled_plan_id = plan.id, None
    subscription.cancel_at_period_end = False
    subscription.anchor_at, subscription.anchor_day, subscription.period_index = at, at.day, 0
    subscription.current_period_start, subscription.current_period_end = periods.period_bounds(
        at, plan.interval.months, 0)
    db.session.flush()
    entitlements.forget(subscription.user_id)


def charge_due(at: datetime | None = None, limit: int = 500) -> dict:
    """One pass of the charging job: open invoices whose charge is due, each in a savepoint."""
    at = at or periods.now()
    from portal.money.payments.models import Payment

    counts = {"paid": 0, "failed": 0, "final": 0, "skipped": 0, "pending": 0, "errors": 0}
    pending = select(Payment.id).where(Payment.invoice_id == Invoice.id,
                                       Payment.state.not_in((PaymentState.FAILED, PaymentState.CANCELED)))
    ids = db.session.scalars(select(Invoice.id).where(Invoice.status == InvoiceStatus.OPEN,
                                                      Invoice.next_attempt_at <= at, ~pending.exists())
                             .order_by(Invoice.next_attempt_at, Invoice.id).limit(limit)).all()
    for invoice_id in ids:
        try:
            with db.session.begin_nested():
                counts[charge(invoice_id, at)] += 1
        except DomainError:
            counts["errors"] += 1
    return counts


def run_due(at: datetime | None = None) -> dict:
    """Renewals, then charges and retries, up to ``at`` (the jobs' one entry point)."""
    at = at or periods.now()
    return {"renewals": renew_due(at), "charges": charge_due(at)}


def own_invoice(user: User, invoice_id: uuid.UUID | str) -> Invoice:
    """The user's invoice (staff may read anyone's); NotFound otherwise."""
    try:
        wanted = invoice_id if isinstance(invoice_id, uuid.UUID) else uuid.UUID(str(invoice_id))
    except ValueError:
        raise NotFound("There is no such invoice.") from None
    query = select(Invoice).where(Invoice.id == wanted)
    if user.role not in (Role.ADMIN, Role.COMPLIANCE):
        query = query.where(Invoice.user_id == user.id)
    invoice = db.session.scalar(query)
    if invoice is None:
        raise NotFound("There is no such invoice.")
    return invoice


def pay_invoice(user: User, invoice_id: uuid.UUID | str) -> Invoice:
    """The student pays an open (or uncollectible) invoice of theirs from the wallet now. A
    past-due subscription with nothing else unpaid is active again at once. Paying an invoice
    paid already (a second tab) changes nothing and returns it. Raises ``InsufficientFunds``."""
    invoice = own_invoice(user, invoice_id)
    if invoice.user_id != user.id:
        raise Forbidden("Only the subscriber pays their invoices.")
    subscription = _lock_subscription(invoice.subscription_id)
    invoice = _lock_invoice(invoice.id)
    if invoice.status == InvoiceStatus.PAID:
        return invoice
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        raise ChargeFailed(f"Invoice {invoice.number} is {invoice.status.value}: there is nothing to pay.")
    if payments.live_invoice_payment(invoice.id) is not None:
        raise PaymentPending(f"A card payment of invoice {invoice.number} is under way: wait for its outcome "
                             "before paying again.")
    _pay(invoice, initiated_by_id=user.id)
    if _restore_if_settled(subscription):
        _email(subscription.user_id, "billing_restored", invoice=invoice)
    entitlements.forget(user.id)
    return invoice


class PaymentPending(Conflict):
    """An invoice with a card payment under way is not charged again until it ends."""


def pay_invoice_with_method(user: User, invoice_id: uuid.UUID | str, method_id: uuid.UUID | str | None, *,
                            idempotency_key: str, return_url: str = ""):
    """The student pays an open (or uncollectible) invoice of theirs with a saved payment method.
    Returns the gateway's payment: ``succeeded`` (the invoice is paid), pending (``processing``,
    or ``requires_action`` with the challenge's address), or failed never (a decline raises
    ``PaymentDeclined``). A second submit, or a second tab while one is pending, returns the
    payment under way; an invoice already paid raises ``ChargeFailed``."""
    invoice = own_invoice(user, invoice_id)
    if invoice.user_id != user.id:
        raise Forbidden("Only the subscriber pays their invoices.")
    method = payments.usable_method(user, method_id)
    if method is None:
        raise payments.MethodInvalid("Choose one of your saved payment methods.")
    _lock_subscription(invoice.subscription_id)
    invoice = _lock_invoice(invoice.id)
    live = payments.live_invoice_payment(invoice.id)
    if live is not None:
        return live
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.total <= 0:
        raise ChargeFailed(f"Invoice {invoice.number} is {invoice.status.value}: there is nothing to pay.")
    payment = payments.start_invoice_payment(user, invoice, method, idempotency_key=idempotency_key,
                                             return_url=return_url)
    entitlements.forget(user.id)
    return payment


def set_payment_method(user: User, method_id: uuid.UUID | str | None):
    """The saved method that pays the student's subscription automatically (None or "": the
    wallet). Returns the method or None."""
    _require_student(user)
    method = payments.usable_method(user, method_id)
    _serialise(user.id)
    subscription = live_subscription(user.id, lock=True)
    if subscription is None:
        raise NoSubscription("You have no subscription.")
    plan = db.session.get(Plan, subscription.plan_id)
    if method is not None and plan.currency not in payments.card_currencies():
        raise payments.MethodInvalid(f"Plans in {plan.currency} cannot be paid by card: they are paid from "
                                     "your wallet.")
    subscription.payment_method_id = method.id if method is not None else None
    db.session.flush()
    return method


# -- Changing plan, canceling, resuming -------------------------------------------------------------


@dataclass(frozen=True)
class ChangePreview:
    """What changing to ``plan`` would do, for the page to show before the student confirms."""

    plan: Plan
    current_plan: Plan
    #: ``now`` (an upgrade, invoiced at once) or ``period_end`` (a downgrade).
    when: str
    effective_at: datetime
    lines: list[proration.Line]
    #: What is charged now (0 for a change at the period end).
    total: Decimal
    currency: str

    @property
    def text(self) -> str:
        if self.when == "now":
            # A change to another interval starts a new period today (the unused days credited);
            # within one interval the period, and so the renewal date, stay.
            renewal = ("a new billing period starts today" if self.plan.interval != self.current_plan.interval
                       else "your renewal date stays the same")
            return (f"You move to {self.plan.name} now and pay {format_amount(self.total, self.currency)} "
                    f"today; {renewal}.")
        return (f"You keep {self.current_plan.name} until {self.effective_at:%d %b %Y}, then move to "
                f"{self.plan.name}.")


def _subscription_of(user: User, *, lock: bool) -> Subscription:
    subscription = live_subscription(user.id, lock=lock)
    if subscription is None:
        raise NoSubscription("You have no subscription: choose a plan to subscribe.")
    return subscription


def _preview(subscription: Subscription, plan: Plan, at: datetime) -> ChangePreview:
    current = db.session.get(Plan, subscription.plan_id)
    if plan.id == current.id:
        raise PlanUnavailable(f"You are on {plan.name} already.")
    if plan.currency != current.currency:
        raise PlanUnavailable(f"{plan.name} is billed in {plan.currency}, your plan in {current.currency}: "
                              "cancel and subscribe again to change currency.")
    if subscription.status == S.TRIALING:
        return ChangePreview(plan, current, "now", at, [], Decimal(0), plan.currency)
    result = proration.prorate(old_name=current.name, old_price=current.price, new_name=plan.name,
                               new_price=plan.price, code=plan.currency,
                               period_start=subscription.current_period_start,
                               period_end=subscription.current_period_end, at=at,
                               same_interval=plan.interval == current.interval)
    if result.total > 0:
        return ChangePreview(plan, current, "now", at, result.lines, result.total, plan.currency)
    return ChangePreview(plan, current, "period_end", subscription.current_period_end, [], Decimal(0), plan.currency)


def preview_change(user: User, plan_id: uuid.UUID | str) -> ChangePreview:
    """What ``change_plan`` would do now, line by line; changes nothing."""
    plan = _offered(plan_id)
    subscription = _subscription_of(user, lock=False)
    return _preview(subscription, plan, periods.now())


def change_plan(user: User, plan_id: uuid.UUID | str) -> ChangePreview:
    """Change plan (see the module docstring): returns what was done, as ``preview_change``
    showed it. Raises ``InsufficientFunds`` for an upgrade the wallet cannot pay (nothing
    changes), ``PlanUnavailable``, ``NoSubscription``, and ``BillingError`` while past due."""
    plan = _offered(plan_id)
    _serialise(user.id)
    subscription = _subscription_of(user, lock=True)
    now = periods.now()
    _catch_up(subscription, now)
    if subscription.status not in LIVE:
        raise NoSubscription("Your subscription has ended: choose a plan to subscribe again.")
    if subscription.status == S.PAST_DUE:
        raise BillingError("Your last invoice is unpaid: pay it first, then change plan.", field="plan")
    preview = _preview(subscription, plan, now)
    with db.session.begin_nested():
        if subscription.status == S.TRIALING:
            subscription.plan_id, subscription.scheduled_plan_id = plan.id, None
        elif preview.when == "now":
            current = preview.current_plan
            if plan.interval != current.interval:
                subscription.anchor_at, subscription.anchor_day, subscription.period_index = now, now.day, 0
                subscription.current_period_start, subscription.current_period_end = periods.period_bounds(
                    now, plan.interval.months, 0)
            subscription.plan_id, subscription.scheduled_plan_id = plan.id, None
            subscription.cancel_at_period_end = False
            db.session.flush()
            invoice = _make_invoice(subscription, InvoiceReason.CHANGE, now, subscription.current_period_end,
                                    preview.lines, plan, now)
            _pay(invoice, initiated_by_id=user.id)
        else:
            subscription.scheduled_plan_id = plan.id
        db.session.flush()
    entitlements.forget(user.id)
    return preview


def cancel(user: User, *, now: bool = False) -> Subscription:
    """Cancel at the end of the period (undo with ``resume``), or ``now``: the subscription ends,
    open invoices are voided, and the unused days of a paid period go back to the wallet."""
    _serialise(user.id)
    subscription = _subscription_of(user, lock=True)
    at = periods.now()
    _catch_up(subscription, at)
    if subscription.status not in LIVE:
        return subscription
    if not now:
        if subscription.status == S.PAST_DUE:
            raise BillingError("Your last invoice is unpaid: pay it, or cancel now.", field="when")
        subscription.cancel_at_period_end = True
        subscription.canceled_at = at
        db.session.flush()
        return subscription
    credit = unused_credit(subscription, at)
    was = subscription.status
    _end(subscription, at, "requested")
    if credit > 0 and was == S.ACTIVE:
        plan = db.session.get(Plan, subscription.plan_id)
        wallet = ledger.open_user_wallet(user.id, plan.currency)
        with ledger.as_ledger():
            revenue = ledger.system_wallet(SystemWallet.BILLING, plan.currency, spread_by=user.id)
        ledger.post([ledger.Leg(revenue, wallet, credit, TransactionType.REFUND,
                                f"Unused time of {plan.name} returned",
                                {"to_name": "Subscription", "subscription_id": str(subscription.id)})],
                    initiated_by_id=user.id)
    db.session.flush()
    return subscription


def unused_credit(subscription: Subscription, at: datetime) -> Decimal:
    """What canceling now gives back: the plan's price for the days left of a paid period
    (``proration``'s credit); nothing while trialing, past due or with an invoice unpaid."""
    if subscription.status != S.ACTIVE:
        return Decimal(0)
    plan = db.session.get(Plan, subscription.plan_id)
    if plan.is_free or _open_invoices(subscription.id):
        return Decimal(0)
    period_days = periods.days_between(subscription.current_period_start, subscription.current_period_end)
    days_left = max(0, min(period_days, periods.days_between(at, subscription.current_period_end)))
    with localcontext(prec=100):
        return (plan.price * days_left / period_days).quantize(currency(plan.currency).quantum,
                                                               rounding=ROUND_HALF_EVEN)


def resume(user: User) -> Subscription:
    """Undo a cancel at the period end (before it comes)."""
    _serialise(user.id)
    subscription = _subscription_of(user, lock=True)
    _catch_up(subscription, periods.now())
    if subscription.status not in LIVE:
        raise NoSubscription("Your subscription has ended: choose a plan to subscribe again.")
    if not subscription.cancel_at_period_end:
        raise BillingError("Your subscription is not set to cancel.", field="when")
    subscription.cancel_at_period_end, subscription.canceled_at = False, None
    db.session.flush()
    return subscription


# -- E-mail ---------------------------------------------------------------------------------------


def _email(user_id: uuid.UUID, template: str, **context) -> None:
    from portal.platform.email.services import queue_email

    user = db.session.get(User, user_id)
    if user is None:
        return
    invoice = context.get("invoice")
    if invoice is not None:
        context["amount"] = format_amount(invoice.total, invoice.currency)
    queue_email(user.email, template, user_id=user.id, user=user, **context)
