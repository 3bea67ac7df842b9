"""Money from outside: top-ups, paid courses, saved payment methods and refunds.

Services take the acting user, validate, change rows and flush; the caller commits (one request,
one transaction). They never import HTTP. Provider adapters come from ``get_provider(name)``
(tests put an in-memory provider in its place).

**Starting a payment** (``start_top_up``, ``pay_course`` with a method): the payer is checked
(an active student, not blocked by compliance, wallet not frozen), the amount against the
currency, the configured limits and the payer's KYC level; the payment row is inserted under
the checkout form's key (``UNIQUE (userId, idempotencyKey)``: a double click, a resubmit or a
second tab finds the first payment instead of making another), then the provider is asked,
with an idempotency key made from the payment's id and ``metadata={"portal_payment_id": ...}``.
If the provider does not answer, the payment is kept (``needsReconcile``) and the caller, after
committing, calls ``raise_if_unreachable`` to show the payer a clear message; the
reconciliation job asks the provider again later with the same key, so nothing is charged twice.

**Applying what a provider says** (``apply_provider_payment``): the one place a provider's view
of a payment is applied, whoever brings it (webhook, the payer's return, the job, an off-session
charge's answer). It locks the payment row, records a ``payment_events`` entry, moves the state
forward only (``states.forward``: late and out-of-order reports never move it back), and on the
first ``succeeded`` credits the wallet exactly once (``creditedAt`` under the row lock).

**The ledger, gross of the provider's fee.** A succeeded payment of ``amount`` with the
provider's ``fee`` posts, in one ``ledger.post``:

- ``top_up``: the provider's clearing wallet -> the payer's wallet, ``amount`` (the payer gets
  what they paid: the portal bears the fee);
- ``fee``: the ``provider_fees`` wallet (the portal's expense, apart from the fees it
  collects) -> the clearing wallet, ``fee`` (the provider keeps its fee, so it owes the portal
  ``amount - fee``: the clearing wallet's balance is minus the payout due);
- for a course bought with a method, also ``purchase``: the payer's wallet -> ``sales``,
  ``amount``, and the enrolment, in the same transaction: both commit or neither.

**Refunds** hold the payer's funds first (a pending ``refund`` from their wallet to the
clearing wallet), then ask the provider; its success captures the hold, its failure releases
it. A course's refund first moves the price back from ``sales`` to the payer's wallet (and ends
the enrolment), so a course paid from the wallet is refunded to the wallet at once, and one paid
with a card goes on to the card (if the provider fails it, the money stays in the wallet). The
refundable amount is checked under the payment's row lock against what was captured minus
every refund not failed, canceled or rejected: concurrent requests cannot exceed it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from blinker import Namespace
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from portal.accounts.models import Role, User, UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.currency import currency, format_amount, parse_amount, quantize
from portal.money.payments import providers
from portal.money.payments import states as st
from portal.money.payments.models import (
    EventSource,
    Payment,
    PaymentCustomer,
    PaymentEvent,
    PaymentMethod,
    PayWith,
    Purpose,
    Refund,
    RefundState,
)
from portal.money.payments.providers.base import (
    MethodKind,
    PaymentState,
    Provider,
    ProviderDeclined,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
)
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, WalletStatus
from portal.security.permissions import Permission, has_permission

#: Where payment pages live (links in notifications and e-mails).
PAYMENTS_PATH = "/wallet/payments"
#: Where a payer's payment page is.
PAYMENT_PATH = "/wallet/payments/{id}"
#: Longest reason a refund may carry.
MAX_REASON = 500
#: The window top-ups count over for the KYC-level limit.
LIMIT_WINDOW = timedelta(hours=24)


# -- Errors ---------------------------------------------------------------------------------------


class PaymentRefused(DomainError):
    """A payment that cannot start as asked; the message says why."""

    status_code = 422


class InvalidPayment(PaymentRefused):
    field = "amount"


class TopUpLimitExceeded(PaymentRefused):
    field = "amount"


class PayerBlocked(Forbidden):
    """The payer may not pay (blocked by compliance, account not active, wallet frozen)."""


class PaymentDeclined(PaymentRefused):
    """The provider declined at once (an off-session charge with a saved method)."""

    field = None

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


class ProviderDown(DomainError):
    """The payment provider did not answer. The payment was kept; it is retried and reconciled
    later. Raised by ``raise_if_unreachable`` after the caller committed."""

    status_code = 503


class NotPayable(Conflict):
    """The thing cannot be bought (free course, already owned, not published)."""


class MethodInvalid(PaymentRefused):
    field = "method"


class RefundRefused(DomainError):
    status_code = 422
    field = "amount"


class IdempotencyMismatch(Conflict):
    """A checkout form's key reused for a different payment."""


# -- Invoice payments' hook ------------------------------------------------------------------------

#: Sent when a payment of purpose ``invoice`` ends, inside the transaction that ended it (the
#: payment row locked): ``send(payment, outcome="succeeded" | "failed")``. On success the amount
#: is already credited to the payer's wallet; billing, the receiver, pays the invoice from there
#: (or leaves the money in the wallet when the invoice no longer wants it). Payments never
#: import billing: the arrow points from billing to here.
invoice_payment_ended = Namespace().signal("invoice_payment_ended")


def _invoice_payment_ended(payment: Payment, outcome: str) -> None:
    if payment.purpose == Purpose.INVOICE:
        invoice_payment_ended.send(payment, outcome=outcome)


# -- Providers ------------------------------------------------------------------------------------


def get_provider(name: str) -> Provider:
    """The adapter ``name`` built from the app's configuration (tests replace this function)."""
    return providers.provider_named(name, current_app.config)


def provider_name_for(kind: MethodKind) -> str:
    return providers.provider_name_for(kind, current_app.config)


#: The clearing system wallet of each provider.
CLEARING = {"sandbox": SystemWallet.CLEARING_SANDBOX, "stripe": SystemWallet.CLEARING_STRIPE}


def clearing_wallet_name(provider: str) -> SystemWallet:
    try:
        return CLEARING[provider]
    except KeyError:
        raise ProviderError(f"No clearing wallet for provider {provider!r}.") from None


# -- Checks ---------------------------------------------------------------------------------------


def check_payer(user: User, code: str | None = None) -> None:
    """Refuse a payer who may not pay: not an active student, blocked by compliance, or whose
    wallet in ``code`` is frozen or closed."""
    if not has_permission(user.role, Permission.USE_WALLET) or user.role != Role.STUDENT:
        raise Forbidden("Only students can pay into a wallet or buy courses.")
    if user.status != UserStatus.ACTIVE:
        raise PayerBlocked("Your account is not active, so it cannot make payments.")
    from portal.compliance.security.blocks import block_on_user

    if block_on_user(user.id) is not None:
        raise PayerBlocked("Payments are not available on your account right now. Contact support.")
    if code is not None:
        wallet = ledger.user_wallet(user.id, code)
        if wallet is not None and wallet.status != WalletStatus.ACTIVE:
            state = "frozen" if wallet.status == WalletStatus.FROZEN else "closed"
            raise PayerBlocked(f"Your {code} wallet is {state}, so no payment can go into it. "
                               "Contact support to find out why.")


def _limit(config_key: str, code: str) -> Decimal | None:
    raw = current_app.config.get(config_key, {}).get(code)
    return quantize(Decimal(raw), code) if raw not in (None, "") else None


def top_up_limits(user: User | None, code: str) -> tuple[Decimal, Decimal]:
    """``(minimum, maximum)`` of one top-up in ``code`` for ``user``: the configured minimum, and
    the configured maximum scaled by the payer's verification level (as transfer limits are)
    less what they topped up in the last 24 hours. Raises ``InvalidPayment`` (field
    ``currency``) when ``code`` cannot be topped up."""
    unit = currency(code)
    minimum, maximum = _limit("TOP_UP_MINIMUMS", unit.code), _limit("TOP_UP_MAXIMUMS", unit.code)
    if minimum is None or maximum is None:
        allowed = sorted(set(current_app.config.get("TOP_UP_MINIMUMS", {}))
                         & set(current_app.config.get("TOP_UP_MAXIMUMS", {})))
        raise InvalidPayment(f"Top-ups in {unit.code} are not available; use {', '.join(allowed) or 'none'}.",
                             field="currency")
    if user is not None:
        from portal.compliance.kyc import levels as kyc_levels
        from portal.compliance.kyc.queries import effective_level

        maximum = kyc_levels.transfer_limit(maximum, effective_level(user.id), unit.scale)
        maximum = max(maximum - topped_up_in_window(user.id, unit.code), Decimal(0))
    return minimum, maximum


def topped_up_in_window(user_id: uuid.UUID, code: str) -> Decimal:
    """What the payer topped up (or is paying in) in ``code`` over the last 24 hours: every
    top-up not failed or canceled."""
    since = utcnow() - LIMIT_WINDOW
    return Decimal(db.session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.user_id == user_id, Payment.currency == code, Payment.purpose == Purpose.TOP_UP,
            Payment.created_at > since,
            Payment.state.not_in((PaymentState.FAILED, PaymentState.CANCELED)))))


def _method_kind(raw: str | MethodKind | None) -> MethodKind:
    try:
        return MethodKind(str(raw or "").strip().lower())
    except ValueError:
        raise MethodInvalid("Choose how to pay: card or mobile money.") from None


def _return_url(raw: str | None) -> str:
    url = (raw or "").strip()
    if not url or len(url) > 1000:
        raise DomainError("This form is out of date: reload the page and try again.")
    return url


def _checkout_key(raw: str | None) -> str:
    key = (raw or "").strip()
    if not ledger._KEY.match(key):
        raise DomainError("This form is out of date: reload the page and try again.")
    return key


# -- Timeline -------------------------------------------------------------------------------------


def record_event(payment: Payment, source: EventSource, kind: str, summary: str = "", *,
                 from_state: str | None = None, to_state: str | None = None, data: dict | None = None,
                 provider_event_id: str | None = None, refund: Refund | None = None) -> PaymentEvent:
    """Add an entry to ``payment``'s timeline."""
    event = PaymentEvent(id=uuid.uuid4(), payment_id=payment.id, user_id=payment.user_id, source=source, kind=kind,
                         summary=summary[:300], from_state=from_state, to_state=to_state, data=_jsonable(data or {}),
                         provider_event_id=provider_event_id, refund_id=refund.id if refund is not None else None)
    db.session.add(event)
    return event


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _snapshot_data(snapshot: ProviderPayment) -> dict:
    return {"ref": snapshot.ref, "state": snapshot.state.value, "amount": str(snapshot.amount),
            "currency": snapshot.currency, "fee": str(snapshot.fee) if snapshot.fee is not None else None,
            "amount_refunded": str(snapshot.amount_refunded), "failure_code": snapshot.failure_code,
            "failure_message": snapshot.failure_message, "raw": dict(snapshot.raw or {})}


# -- Creating payments ----------------------------------------------------------------------------


def _find_by_key(user_id: uuid.UUID, key: str) -> Payment | None:
    return db.session.scalar(select(Payment).where(Payment.user_id == user_id, Payment.idempotency_key == key)
                             .execution_options(populate_existing=True))


def _insert_payment(user: User, key: str, values: dict) -> tuple[Payment, bool]:
    """Insert the payment under the checkout key, or find the one an earlier request made with
    it (a concurrent one waits on the unique index, then finds it). Returns (payment, created)."""
    payment_id = uuid.uuid4()
    now = utcnow()
    inserted = db.session.execute(
        insert(Payment).values(id=payment_id, user_id=user.id, idempotency_key=key, created_at=now, updated_at=now,
                               **values)
        .on_conflict_do_nothing(index_elements=[Payment.user_id, Payment.idempotency_key])
        .returning(Payment.id)).scalar()
    payment = _find_by_key(user.id, key)
    if inserted is None:
        same = (payment.purpose == values["purpose"] and payment.amount == values["amount"]
                and payment.currency == values["currency"] and payment.method_kind == values["method_kind"]
                and payment.course_id == values.get("course_id")
                and payment.invoice_id == values.get("invoice_id"))
        if not same:
            raise IdempotencyMismatch("This form was already sent with other details. Nothing was changed: "
                                      "start again from a fresh form.")
        return payment, False
    return payment, True


def _customer_ref(user: User, provider: Provider, *, create: bool) -> str | None:
    ref = db.session.scalar(select(PaymentCustomer.customer_ref).where(PaymentCustomer.user_id == user.id,
                                                                       PaymentCustomer.provider == provider.name))
    if ref is not None or not create:
        return ref
    ref = provider.ensure_customer(customer_ref=None, email=user.email, name=user.full_name)
    db.session.execute(insert(PaymentCustomer).values(id=uuid.uuid4(), user_id=user.id, provider=provider.name,
                                                      customer_ref=ref, created_at=utcnow(), updated_at=utcnow())
                       .on_conflict_do_nothing(index_elements=[PaymentCustomer.user_id, PaymentCustomer.provider]))
    return ref


def _saved_method(user: User, method_id: uuid.UUID | str | None, kind: MethodKind) -> PaymentMethod | None:
    if method_id in (None, ""):
        return None
    try:
        method_id = uuid.UUID(str(method_id))
    except ValueError:
        raise MethodInvalid("Choose one of your saved payment methods.") from None
    method = db.session.get(PaymentMethod, method_id)
    if method is None or method.user_id != user.id or method.removed_at is not None:
        raise MethodInvalid("That payment method is not saved on your account any more.")
    if method.kind.value != kind.value:
        raise MethodInvalid(f"That saved method is not a {kind.value.replace('_', ' ')}.")
    return method


def provider_idempotency_key(payment: Payment) -> str:
    """The key the provider is asked with for ``payment``: the same on every retry."""
    return f"azora-pay-{payment.id.hex}"


def _ask_provider_to_create(payment: Payment, user: User, provider: Provider, method: PaymentMethod | None,
                            source: EventSource = EventSource.PROVIDER) -> Payment:
    """Create ``payment`` at the provider and apply its answer. A decline ends the payment as
    failed (and raises ``PaymentDeclined``); no answer keeps it for reconciliation."""
    try:
        customer = _customer_ref(user, provider, create=payment.save_method or method is not None)
        snapshot = provider.create_payment(
            amount=payment.amount, currency=payment.currency, method_kind=MethodKind(payment.method_kind.value),
            idempotency_key=provider_idempotency_key(payment), return_url=payment.return_url,
            description=payment.description, customer_ref=customer,
            saved_method_ref=method.provider_ref if method is not None else None, save_method=payment.save_method,
            metadata={"portal_payment_id": str(payment.id)})
    except ProviderUnavailable as exc:
        payment.needs_reconcile = True
        record_event(payment, source, "unreachable", "The payment provider did not answer; it will be asked again.",
                     data={"error": str(exc)})
        db.session.flush()
        return payment
    except ProviderDeclined as exc:
        payment.failure_code, payment.failure_message = exc.code, str(exc)[:300]
        previous = st.move_payment(payment, PaymentState.FAILED)
        payment.needs_reconcile = False
        record_event(payment, source, "declined", str(exc), from_state=previous, to_state=PaymentState.FAILED,
                     data={"code": exc.code})
        db.session.flush()
        _invoice_payment_ended(payment, "failed")
        raise PaymentDeclined(str(exc) or "The payment was declined.", code=exc.code) from exc
    payment.needs_reconcile = False
    return apply_provider_payment(snapshot, provider=provider.name, source=source, payment=payment)


def start_top_up(user: User, amount: str | Decimal, currency_code: str, method_kind: str | MethodKind, *,
                 idempotency_key: str, return_url: str, saved_method_id: uuid.UUID | str | None = None,
                 save_method: bool = False) -> Payment:
    """Start a top-up of ``amount`` ``currency_code`` into ``user``'s wallet, paid by
    ``method_kind`` (card or mobile money), or with a saved method (charged at once).

    Returns the payment: ``requires_action`` with ``next_action_url`` (send the payer there),
    ``processing``, ``succeeded`` (a saved method charged at once; the wallet is credited), or
    with ``needs_reconcile`` when the provider did not answer (commit, then
    ``raise_if_unreachable``). The same ``idempotency_key`` returns the same payment.

    Raises ``UnknownCurrency`` / ``InvalidPayment`` (field ``currency``), ``InvalidAmount`` /
    ``InvalidPayment`` / ``TopUpLimitExceeded`` (field ``amount``), ``MethodInvalid`` (field
    ``method``), ``PayerBlocked``, ``PaymentDeclined`` (the saved method was declined; the
    failed payment stays on record only if the caller commits)."""
    key = _checkout_key(idempotency_key)
    unit = currency(currency_code)
    check_payer(user, unit.code)
    value = parse_amount(amount, unit.code)
    kind = _method_kind(method_kind)
    url = _return_url(return_url)
    method = _saved_method(user, saved_method_id, kind)

    existing = _find_by_key(user.id, key)
    if existing is not None:
        return _same_or_refused(existing, Purpose.TOP_UP, value, unit.code, kind)

    # The payer's wallet is locked while the limit is read, so two top-ups racing each other
    # cannot both slip under it.
    wallet = ledger.open_user_wallet(user.id, unit.code)
    ledger.lock([wallet.id])
    minimum, maximum = top_up_limits(user, unit.code)
    if value < minimum:
        raise InvalidPayment(f"The smallest top-up is {format_amount(minimum, unit.code)}.")
    if value > maximum:
        raise TopUpLimitExceeded(_limit_message(user, unit.code, maximum))

    provider_name = method.provider if method is not None else provider_name_for(kind)
    provider = get_provider(provider_name)
    payment, created = _insert_payment(user, key, dict(
        purpose=Purpose.TOP_UP, course_id=None, wallet_currency=unit.code, amount=value, currency=unit.code,
        state=PaymentState.REQUIRES_PAYMENT_METHOD, provider=provider.name, method_kind=PayWith(kind.value),
        method_id=method.id if method is not None else None, save_method=bool(save_method) and method is None,
        return_url=url, description=f"Azora wallet top-up {format_amount(value, unit.code)}"))
    if not created:
        return payment
    record_event(payment, EventSource.PORTAL, "created",
                 f"Top-up of {format_amount(value, unit.code)} by {kind.value.replace('_', ' ')} started")
    return _ask_provider_to_create(payment, user, provider, method)


def _limit_message(user: User, code: str, left: Decimal) -> str:
    from portal.compliance.kyc import levels as kyc_levels
    from portal.compliance.kyc.queries import effective_level

    level = effective_level(user.id)
    more = (f" Verify your identity at {kyc_levels.VERIFICATION_PATH} to raise it."
            if level < kyc_levels.MAX_LEVEL else "")
    return (f"At verification level {level} you can top up at most {format_amount(left, code)} more "
            f"in the next 24 hours.{more}")


def _same_or_refused(payment: Payment, purpose: Purpose, amount: Decimal, code: str, kind: MethodKind | PayWith) -> Payment:
    if (payment.purpose != purpose or payment.amount != amount or payment.currency != code
            or payment.method_kind.value != kind.value):
        raise IdempotencyMismatch("This form was already sent with other details. Nothing was changed: "
                                  "start again from a fresh form.")
    return payment


def raise_if_unreachable(payment: Payment) -> None:
    """Raise ``ProviderDown`` if the provider did not answer when ``payment`` was created. Call it
    after committing, so the payment is kept for the reconciliation job."""
    if payment.needs_reconcile and payment.provider_ref is None:
        raise ProviderDown("The payment service is not answering right now. Nothing was charged yet: your "
                           "payment is saved and will be checked again in a few minutes, or try again later.")


def resume_payment(actor: User | None, payment: Payment, *, source: EventSource = EventSource.POLL) -> Payment:
    """Ask the provider again about ``payment``: create it there if the first call got no answer
    (same idempotency key: never twice), else fetch it and apply what it says. Used by the
    reconciliation job and by the payer's return from the hosted page (``source=RETURN``)."""
    if actor is not None and actor.id != payment.user_id and not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise NotFound("There is no such payment.")
    if payment.provider == "wallet":
        return payment
    provider = get_provider(payment.provider)
    if payment.provider_ref is None:
        if payment.state in st.FINAL_PAYMENT_STATES:
            return payment
        user = db.session.get(User, payment.user_id)
        method = db.session.get(PaymentMethod, payment.method_id) if payment.method_id else None
        try:
            return _ask_provider_to_create(payment, user, provider, method, source)
        except PaymentDeclined:
            return payment
    snapshot = provider.fetch(payment.provider_ref)
    return apply_provider_payment(snapshot, provider=provider.name, source=source, payment=payment)


def cancel_payment(user: User, payment: Payment) -> Payment:
    """The payer (or finance) cancels a payment that has not been paid yet (waiting for the
    payer or a challenge). A payment already processing or ended cannot be canceled: the
    provider decides it."""
    payment = own_payment(user, payment.id)
    if payment.state not in (PaymentState.REQUIRES_PAYMENT_METHOD, PaymentState.REQUIRES_ACTION):
        raise Conflict("This payment can no longer be canceled.")
    if payment.provider_ref is None:
        locked = _lock_payment(payment.id)
        previous = st.move_payment(locked, PaymentState.CANCELED)
        locked.needs_reconcile = False
        record_event(locked, EventSource.PORTAL, "state", "Canceled by the payer before it reached the provider",
                     from_state=previous, to_state=PaymentState.CANCELED)
        db.session.flush()
        _invoice_payment_ended(locked, "failed")
        return locked
    try:
        snapshot = get_provider(payment.provider).cancel(payment.provider_ref)
    except ProviderUnavailable as exc:
        raise ProviderDown("The payment service is not answering right now, so the payment could not be "
                           "canceled. Try again in a few minutes.") from exc
    except ProviderDeclined as exc:
        raise Conflict(f"The payment could not be canceled: {exc}") from exc
    return apply_provider_payment(snapshot, provider=payment.provider, source=EventSource.PORTAL, payment=payment)


def cancel_abandoned(payment: Payment) -> Payment:
    """Cancel at the provider a payment the payer never completed, and apply the answer."""
    provider = get_provider(payment.provider)
    snapshot = provider.cancel(payment.provider_ref)
    return apply_provider_payment(snapshot, provider=provider.name, source=EventSource.POLL, payment=payment)


# -- Applying the provider's view -----------------------------------------------------------------


def _lock_payment(payment_id: uuid.UUID) -> Payment | None:
    return db.session.scalar(select(Payment).where(Payment.id == payment_id).with_for_update()
                             .execution_options(populate_existing=True))


def find_payment_for(snapshot: ProviderPayment, provider: str) -> Payment | None:
    """The portal's payment a provider's snapshot is about: by ``metadata["portal_payment_id"]``
    (checked against the provider and its ref), else by the provider's ref."""
    raw_id = (snapshot.metadata or {}).get("portal_payment_id")
    if raw_id:
        try:
            payment = db.session.get(Payment, uuid.UUID(str(raw_id)))
        except ValueError:
            payment = None
        if (payment is not None and payment.provider == provider
                and payment.provider_ref in (None, snapshot.ref)):
            return payment
    return db.session.scalar(select(Payment).where(Payment.provider == provider, Payment.provider_ref == snapshot.ref))


def apply_provider_payment(snapshot: ProviderPayment, *, provider: str, source: EventSource | str,
                           event_id: str | None = None, payment: Payment | None = None) -> Payment | None:
    """Apply the provider's view of a payment: the only place a provider changes a payment.

    Locks the payment row, records the report on its timeline, takes the provider's ref, fee,
    method and failure details, moves the state forward (never back), and on the first
    ``succeeded`` credits the wallet once (and for a course, buys it and enrols the payer in the
    same transaction), saves the method when the payer asked, and queues the receipt. Returns the
    payment, or None when no payment of the portal matches (nothing changes)."""
    source = EventSource(source)
    target = payment if payment is not None else find_payment_for(snapshot, provider)
    if target is None:
        return None
    payment = _lock_payment(target.id)
    if payment.provider != provider:
        return None
    if payment.provider_ref is None:
        payment.provider_ref = snapshot.ref
    elif payment.provider_ref != snapshot.ref:
        record_event(payment, source, "ignored", "A report about another provider payment was ignored.",
                     data=_snapshot_data(snapshot), provider_event_id=event_id)
        db.session.flush()
        return payment
    payment.provider_seen_at = utcnow()
    if snapshot.amount != payment.amount or snapshot.currency.upper() != payment.currency:
        record_event(payment, source, "mismatch",
                     f"The provider reports {snapshot.amount} {snapshot.currency}, not "
                     f"{payment.amount} {payment.currency}: not applied", data=_snapshot_data(snapshot),
                     provider_event_id=event_id)
        db.session.flush()
        return payment

    new_state = st.forward(payment.state, snapshot.state)
    if snapshot.next_action_url and (new_state or payment.state) == PaymentState.REQUIRES_ACTION:
        payment.next_action_url = snapshot.next_action_url[:1000]
    if (snapshot.failure_code or snapshot.failure_message) and new_state in (
            PaymentState.FAILED, PaymentState.CANCELED, PaymentState.REQUIRES_PAYMENT_METHOD):
        payment.failure_code = (snapshot.failure_code or "")[:60] or None
        payment.failure_message = (snapshot.failure_message or "")[:300] or None
    if snapshot.method is not None:
        payment.method_brand = (snapshot.method.brand or "")[:30]
        payment.method_last4 = (snapshot.method.last4 or "")[-4:]
    if snapshot.fee is not None and payment.credited_at is None:
        payment.fee = quantize(Decimal(snapshot.fee), payment.currency)
    elif snapshot.fee is not None and payment.fee is None and payment.credited_at is not None:
        _book_late_fee(payment, quantize(Decimal(snapshot.fee), payment.currency), source, event_id)

    if new_state is None:
        record_event(payment, source, "report", f"The provider reports {snapshot.state.value.replace('_', ' ')}"
                     + ("" if snapshot.state == payment.state else "; the payment has moved on already"),
                     data=_snapshot_data(snapshot), provider_event_id=event_id)
        db.session.flush()
        return payment

    previous = st.move_payment(payment, new_state)
    record_event(payment, source, "state", f"{previous.value.replace('_', ' ').capitalize()} -> "
                 f"{new_state.value.replace('_', ' ')}", from_state=previous, to_state=new_state,
                 data=_snapshot_data(snapshot), provider_event_id=event_id)
    if new_state in st.FINAL_PAYMENT_STATES or new_state == PaymentState.PROCESSING:
        payment.next_action_url = None
    if new_state == PaymentState.SUCCEEDED:
        _credit(payment, source, event_id)
        if snapshot.method_saved and snapshot.method is not None:
            _save_method(payment, snapshot)
        db.session.flush()
        _invoice_payment_ended(payment, "succeeded")
    elif new_state == PaymentState.FAILED:
        _notify_failed(payment)
        db.session.flush()
        _invoice_payment_ended(payment, "failed")
    elif new_state == PaymentState.CANCELED:
        db.session.flush()
        _invoice_payment_ended(payment, "failed")
    db.session.flush()
    return payment


def _credit(payment: Payment, source: EventSource, event_id: str | None) -> None:
    """Credit a succeeded payment on the ledger, once (the caller holds the row lock)."""
    if payment.credited_at is not None:
        return
    # Set with the state, before anything flushes (a CHECK ties ``succeeded`` to it); if the
    # posting fails, the whole transaction goes back.
    group_id = uuid.uuid4()
    payment.credited_at, payment.ledger_group_id = utcnow(), group_id
    user = db.session.get(User, payment.user_id)
    code = payment.currency
    with ledger.as_ledger():
        wallet = ledger.open_user_wallet(user.id, code)
        clearing = ledger.system_wallet(clearing_wallet_name(payment.provider), code, spread_by=user.id)
        fee = payment.fee or Decimal(0)
        what = "Top-up" if payment.purpose == Purpose.TOP_UP else "Payment"
        method = f"{payment.method_brand.capitalize()} {payment.method_last4}".strip() or payment.method_kind.label
        legs = [ledger.Leg(clearing, wallet, payment.amount, TransactionType.TOP_UP, f"{what} by {method}"[:300],
                           {"from_name": f"{what} ({payment.method_kind.label})", "payment_id": str(payment.id),
                            "provider": payment.provider})]
        if fee > 0:
            fees_wallet = ledger.system_wallet(SystemWallet.PROVIDER_FEES, code, spread_by=user.id)
            legs.append(ledger.Leg(fees_wallet, clearing, fee, TransactionType.FEE, "Payment provider fee",
                                   {"payment_id": str(payment.id), "provider": payment.provider}))
        course = None
        if payment.purpose == Purpose.COURSE_PURCHASE:
            course = _course(payment.course_id)
            sales = ledger.system_wallet(SystemWallet.SALES, code, spread_by=user.id)
            legs.append(ledger.Leg(wallet, sales, payment.amount, TransactionType.PURCHASE,
                                   f"Course: {course.title}"[:300],
                                   {"to_name": course.title, "payment_id": str(payment.id),
                                    "course_id": str(course.id)}))
    ledger.post(legs, initiated_by_id=user.id, group_id=group_id)
    record_event(payment, source, "credited",
                 f"{format_amount(payment.amount, code)} credited to the wallet"
                 + (f" (provider fee {format_amount(fee, code)} borne by Azora)" if fee > 0 else "")
                 + (f"; {course.title} bought" if course is not None else ""),
                 data={"group_id": str(group_id)}, provider_event_id=event_id)
    if course is not None:
        _enrol(user, course.id)
    _receipt(payment, user, course)


def _book_late_fee(payment: Payment, fee: Decimal, source: EventSource, event_id: str | None) -> None:
    """The provider told its fee only after the payment was credited: book it now, once (the
    caller holds the row lock; ``fee`` is set with it)."""
    payment.fee = fee
    if fee <= 0:
        return
    with ledger.as_ledger():
        clearing = ledger.system_wallet(clearing_wallet_name(payment.provider), payment.currency,
                                        spread_by=payment.user_id)
        fees_wallet = ledger.system_wallet(SystemWallet.PROVIDER_FEES, payment.currency, spread_by=payment.user_id)
    ledger.post([ledger.Leg(fees_wallet, clearing, fee, TransactionType.FEE, "Payment provider fee",
                            {"payment_id": str(payment.id), "provider": payment.provider})],
                initiated_by_id=payment.user_id, group_id=payment.ledger_group_id)
    record_event(payment, source, "fee", f"Provider fee {format_amount(fee, payment.currency)} booked",
                 provider_event_id=event_id)


def _course(course_id: uuid.UUID):
    from portal.learning.education.models import Course

    course = db.session.get(Course, course_id)
    if course is None:
        raise NotFound("That course does not exist.")
    return course


def _enrol(user: User, course_id: uuid.UUID) -> None:
    from portal.learning.education import services as education

    education.enrol(user, course_id, paid=True)


def _receipt(payment: Payment, user: User, course) -> None:
    from portal.platform.email.services import queue_email
    from portal.platform.notifications.services import notify

    path = PAYMENT_PATH.format(id=payment.id)
    shown = format_amount(payment.amount, payment.currency)
    title = (f"Your top-up of {shown} arrived" if payment.purpose == Purpose.TOP_UP
             else f"Your payment of {shown} arrived" if payment.purpose == Purpose.INVOICE
             else f"You bought {course.title}")
    notify(user.id, "payment_succeeded", title, None, path)
    queue_email(user.email, "payment_receipt", user_id=user.id, user=user, payment=payment, course=course,
                amount=shown, path=path, receipt=receipt_lines(payment, course))


def _notify_failed(payment: Payment) -> None:
    from portal.platform.notifications.services import notify

    shown = format_amount(payment.amount, payment.currency)
    notify(payment.user_id, "payment_failed", f"Your payment of {shown} did not go through",
           payment.failure_message or None, PAYMENT_PATH.format(id=payment.id))


def receipt_lines(payment: Payment, course=None) -> list[tuple[str, str]]:
    """The receipt's facts, as label and value, for the e-mail, the page and the PDF."""
    lines = [("Receipt", str(payment.id)),
             ("Date", (payment.credited_at or payment.created_at).strftime("%Y-%m-%d %H:%M UTC")),
             ("For", payment.purpose.label if course is None else f"Course: {course.title}"),
             ("Amount", format_amount(payment.amount, payment.currency, exact=True)),
             ("Paid with", (f"{payment.method_brand.capitalize()} ending {payment.method_last4}"
                            if payment.method_last4 else payment.method_kind.label)),
             ("Provider reference", payment.provider_ref or "-")]
    if payment.amount_refunded:
        lines.append(("Refunded", format_amount(payment.amount_refunded, payment.currency, exact=True)))
    return lines


def _save_method(payment: Payment, snapshot: ProviderPayment) -> PaymentMethod | None:
    method = snapshot.method
    if not payment.save_method or method is None:
        return None
    existing = db.session.scalar(select(PaymentMethod).where(PaymentMethod.provider == payment.provider,
                                                             PaymentMethod.provider_ref == method.ref))
    if existing is not None:
        payment.method_id = existing.id
        return existing
    customer = db.session.scalar(select(PaymentCustomer.customer_ref).where(
        PaymentCustomer.user_id == payment.user_id, PaymentCustomer.provider == payment.provider))
    has_default = db.session.scalar(select(func.count()).select_from(PaymentMethod).where(
        PaymentMethod.user_id == payment.user_id, PaymentMethod.is_default, PaymentMethod.removed_at.is_(None)))
    saved = PaymentMethod(id=uuid.uuid4(), user_id=payment.user_id, provider=payment.provider,
                          provider_ref=method.ref, customer_ref=customer, kind=PayWith(method.kind.value),
                          brand=(method.brand or "")[:30], last4=(method.last4 or "")[-4:],
                          exp_month=method.exp_month, exp_year=method.exp_year, is_default=not has_default)
    db.session.add(saved)
    db.session.flush()
    payment.method_id = saved.id
    record_event(payment, EventSource.PORTAL, "method_saved", f"{saved.label} saved for later payments")
    return saved


# -- Courses --------------------------------------------------------------------------------------


def set_course_price(actor: User, course, price: str | Decimal | None, currency_code: str | None) -> None:
    """Set (or clear, with an empty price or 0) the price of a course the actor owns or teaches,
    or any course for an admin."""
    from portal.learning.lms.models import CourseManagement

    if actor.role != Role.ADMIN:
        manages = db.session.scalar(select(func.count()).select_from(CourseManagement).where(
            CourseManagement.course_id == course.id, CourseManagement.user_id == actor.id))
        if actor.role != Role.FACULTY or not manages:
            raise Forbidden("Only the course's staff can set its price.")
    if price in (None, "") or (isinstance(price, str) and price.strip() in ("", "0")):
        course.price, course.price_currency = None, None
        db.session.flush()
        return
    unit = currency(currency_code)
    value = parse_amount(price, unit.code, allow_zero=True)
    course.price, course.price_currency = (value, unit.code) if value > 0 else (None, None)
    db.session.flush()


def owned_purchase(user_id: uuid.UUID, course_id: uuid.UUID) -> Payment | None:
    """The payer's succeeded, not wholly refunded purchase of the course, if any."""
    return db.session.scalar(select(Payment).where(
        Payment.user_id == user_id, Payment.course_id == course_id, Payment.purpose == Purpose.COURSE_PURCHASE,
        Payment.state == PaymentState.SUCCEEDED, Payment.amount_refunded < Payment.amount,
        ~select(Refund.id).where(Refund.payment_id == Payment.id,
                                 Refund.state.in_((RefundState.SUCCEEDED, RefundState.PENDING))).exists())
        .order_by(Payment.created_at.desc()).limit(1))


def card_currencies() -> frozenset[str]:
    """The currencies the payment providers take (those top-ups are configured for)."""
    return frozenset(current_app.config.get("TOP_UP_MINIMUMS", {})) & frozenset(
        current_app.config.get("TOP_UP_MAXIMUMS", {}))


def usable_method(user: User, method_id: uuid.UUID | str | None) -> PaymentMethod | None:
    """The payer's saved method ``method_id`` (any kind), None for none; ``MethodInvalid`` when
    it is not theirs or was removed."""
    if method_id in (None, ""):
        return None
    try:
        method = db.session.get(PaymentMethod, uuid.UUID(str(method_id)))
    except ValueError:
        raise MethodInvalid("Choose one of your saved payment methods.") from None
    if method is None or method.user_id != user.id or method.removed_at is not None:
        raise MethodInvalid("That payment method is not saved on your account any more.")
    return method


def live_invoice_payment(invoice_id: uuid.UUID) -> Payment | None:
    """The invoice's payment that is pending or succeeded (at most one: the database holds it)."""
    return db.session.scalar(select(Payment).where(
        Payment.invoice_id == invoice_id, Payment.state.not_in((PaymentState.FAILED, PaymentState.CANCELED)))
        .execution_options(populate_existing=True))


def start_invoice_payment(user: User, invoice, method: PaymentMethod, *, idempotency_key: str,
                          return_url: str = "") -> Payment:
    """Charge ``invoice``'s total (billing's, locked by the caller) to the payer's saved
    ``method`` off-session: a payment of purpose ``invoice``. Returns it ``succeeded`` (credited
    to the wallet; the ``invoice_payment_ended`` receivers have paid the invoice), pending
    (``processing``, or ``requires_action`` with the challenge's address), or with
    ``needs_reconcile``. The same key returns the same payment; an invoice with a payment
    pending or succeeded returns that one (``uq_payments_one_live_per_invoice`` enforces it
    when two requests race). Raises ``MethodInvalid`` (a currency the providers do not take),
    ``PayerBlocked``, ``PaymentDeclined`` (the failed payment is kept only if the caller
    commits; the receivers have counted the failure)."""
    key = _checkout_key(idempotency_key)
    check_payer(user, invoice.currency)
    if invoice.currency not in card_currencies():
        raise MethodInvalid(f"Invoices in {invoice.currency} cannot be paid by card: pay them from your wallet.")
    kind = MethodKind(method.kind.value)
    existing = _find_by_key(user.id, key)
    if existing is not None:
        if existing.invoice_id != invoice.id:
            raise IdempotencyMismatch("This form was already sent with other details. Nothing was changed: "
                                      "start again from a fresh form.")
        return existing
    live = live_invoice_payment(invoice.id)
    if live is not None:
        return live
    provider = get_provider(method.provider)
    payment, created = _insert_payment(user, key, dict(
        purpose=Purpose.INVOICE, course_id=None, invoice_id=invoice.id, wallet_currency=invoice.currency,
        amount=invoice.total, currency=invoice.currency, state=PaymentState.REQUIRES_PAYMENT_METHOD,
        provider=provider.name, method_kind=PayWith(kind.value), method_id=method.id, save_method=False,
        return_url=(return_url or "")[:1000], description=f"Invoice {invoice.number}"[:300]))
    if not created:
        return payment
    record_event(payment, EventSource.PORTAL, "created",
                 f"Payment of invoice {invoice.number} ({format_amount(invoice.total, invoice.currency)}) "
                 f"with {method.brand.capitalize()} {method.last4}".strip() + " started")
    return _ask_provider_to_create(payment, user, provider, method)


def pay_course(user: User, course, *, idempotency_key: str, from_wallet: bool = False,
               method_kind: str | MethodKind | None = None, saved_method_id: uuid.UUID | str | None = None,
               save_method: bool = False, return_url: str = "") -> Payment:
    """Buy a paid course: from the wallet (one ledger movement to ``sales`` and the enrolment,
    at once; the payment is ``succeeded``) or with a method (a payment of purpose
    ``course_purchase``: the enrolment comes with its success). A student who owns the course
    already (bought, not refunded, left it) is enrolled again and pays nothing: that purchase
    is returned. Raises ``NotPayable`` for a free or unpublished course or one already owned
    and enrolled, ``InsufficientFunds`` (from the wallet), and as ``start_top_up``."""
    from portal.learning.education.models import CourseStatus, Enrollment, EnrollmentStatus

    key = _checkout_key(idempotency_key)
    if course is None or course.status != CourseStatus.PUBLISHED:
        raise NotPayable("That course is not open for enrolment.")
    if not course.is_paid:
        raise NotPayable("This course is free: enrol from its page.")
    code = course.price_currency
    check_payer(user, code)
    kind = PayWith.WALLET if from_wallet else PayWith(_method_kind(method_kind).value)

    existing = _find_by_key(user.id, key)
    if existing is not None:
        return _same_or_refused(existing, Purpose.COURSE_PURCHASE, course.price, code, kind)
    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.course_id == course.id,
                                                            Enrollment.user_id == user.id))
    owned = owned_purchase(user.id, course.id)
    if owned is not None:
        if enrollment is not None and enrollment.status != EnrollmentStatus.LEFT:
            raise NotPayable("You already have this course.")
        _enrol(user, course.id)
        return owned
    if enrollment is not None and enrollment.status != EnrollmentStatus.LEFT:
        raise NotPayable("You are already enrolled in this course.")

    price = quantize(course.price, code)
    common = dict(purpose=Purpose.COURSE_PURCHASE, course_id=course.id, wallet_currency=code, amount=price,
                  currency=code, method_kind=kind, description=f"Course: {course.title}"[:300])
    if from_wallet:
        payment, created = _insert_payment(user, key, dict(common, state=PaymentState.REQUIRES_PAYMENT_METHOD,
                                                           provider="wallet"))
        if not created:
            return payment
        wallet = ledger.user_wallet(user.id, code)
        if wallet is None:
            raise ledger.InsufficientFunds(f"Not enough money: you have no {code} wallet yet. Top up first.")
        with ledger.as_ledger():
            sales = ledger.system_wallet(SystemWallet.SALES, code, spread_by=user.id)
        group_id = uuid.uuid4()
        ledger.post([ledger.Leg(wallet, sales, price, TransactionType.PURCHASE, f"Course: {course.title}"[:300],
                                {"to_name": course.title, "payment_id": str(payment.id),
                                 "course_id": str(course.id)})], initiated_by_id=user.id, group_id=group_id)
        st.move_payment(payment, PaymentState.SUCCEEDED)
        payment.credited_at, payment.ledger_group_id = utcnow(), group_id
        record_event(payment, EventSource.PORTAL, "paid", f"{course.title} bought from the wallet for "
                     f"{format_amount(price, code)}", from_state=PaymentState.REQUIRES_PAYMENT_METHOD,
                     to_state=PaymentState.SUCCEEDED, data={"group_id": str(group_id)})
        _enrol(user, course.id)
        _receipt(payment, user, course)
        db.session.flush()
        return payment

    method_kind = MethodKind(kind.value)
    method = _saved_method(user, saved_method_id, method_kind)
    provider = get_provider(method.provider if method is not None else provider_name_for(method_kind))
    payment, created = _insert_payment(user, key, dict(
        common, state=PaymentState.REQUIRES_PAYMENT_METHOD, provider=provider.name,
        method_id=method.id if method is not None else None, save_method=bool(save_method) and method is None,
        return_url=_return_url(return_url)))
    if not created:
        return payment
    record_event(payment, EventSource.PORTAL, "created", f"Purchase of {course.title} for "
                 f"{format_amount(price, code)} started")
    return _ask_provider_to_create(payment, user, provider, method)


# -- Saved methods --------------------------------------------------------------------------------


def list_methods(user: User) -> list[PaymentMethod]:
    """The payer's saved methods, default first."""
    return list(db.session.scalars(select(PaymentMethod).where(PaymentMethod.user_id == user.id,
                                                               PaymentMethod.removed_at.is_(None))
                                   .order_by(PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc())))


def _own_method(user: User, method_id: uuid.UUID | str) -> PaymentMethod:
    try:
        method_id = uuid.UUID(str(method_id))
    except ValueError:
        raise NotFound("There is no such payment method.") from None
    method = db.session.scalar(select(PaymentMethod).where(PaymentMethod.id == method_id).with_for_update())
    if method is None or method.user_id != user.id or method.removed_at is not None:
        raise NotFound("There is no such payment method.")
    return method


def set_default_method(user: User, method_id: uuid.UUID | str) -> PaymentMethod:
    """Make a saved method the payer's default (the one checkout picks first)."""
    method = _own_method(user, method_id)
    db.session.execute(update(PaymentMethod).where(PaymentMethod.user_id == user.id, PaymentMethod.is_default,
                                                   PaymentMethod.id != method.id).values(is_default=False))
    method.is_default = True
    db.session.flush()
    return method


def remove_method(user: User, method_id: uuid.UUID | str) -> PaymentMethod:
    """Remove a saved method: detached at the provider, then marked removed here (kept for the
    payments that used it). If it was the default, the newest other method becomes it. If the
    provider does not answer, nothing changes and ``ProviderDown`` says so."""
    method = _own_method(user, method_id)
    try:
        get_provider(method.provider).detach_method(method.provider_ref)
    except ProviderUnavailable as exc:
        raise ProviderDown("The payment service is not answering right now, so the method could not be "
                           "removed. Try again in a few minutes.") from exc
    except ProviderDeclined:
        pass  # the provider no longer knows it: removing it here is all that is left
    was_default = method.is_default
    method.is_default = False
    method.removed_at = utcnow()
    db.session.flush()
    if was_default:
        other = db.session.scalar(select(PaymentMethod).where(PaymentMethod.user_id == user.id,
                                                              PaymentMethod.removed_at.is_(None))
                                  .order_by(PaymentMethod.created_at.desc()).limit(1))
        if other is not None:
            other.is_default = True
            db.session.flush()
    return method


# -- Refunds --------------------------------------------------------------------------------------


def refundable(payment: Payment) -> Decimal:
    """What may still be refunded: captured minus every refund requested, pending or succeeded.
    Read under the payment's row lock to be exact."""
    if payment.state != PaymentState.SUCCEEDED:
        return Decimal(0)
    taken = db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)).where(
        Refund.payment_id == payment.id, Refund.state.in_(tuple(st.OUTSTANDING_REFUND_STATES))))
    return payment.amount - Decimal(taken)


def _clean_reason(raw: str | None, *, required: bool) -> str:
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (raw or "")).split())
    if required and not text:
        raise RefundRefused("Say why the money is given back.", field="reason")
    if len(text) > MAX_REASON:
        raise RefundRefused(f"Keep the reason to {MAX_REASON} characters or fewer.", field="reason")
    return text


@dataclass(frozen=True)
class RefundRule:
    """What the course refund rule says about one purchase."""

    automatic: bool
    days_since: int
    progress_percent: int
    explanation: str


def course_refund_rule(payment: Payment) -> RefundRule:
    """Whether a course purchase is refunded at once: bought at most ``COURSE_REFUND_DAYS`` ago
    with at most ``COURSE_REFUND_MAX_PROGRESS_PERCENT`` of its lessons completed."""
    from portal.learning.education.models import Enrollment

    days = current_app.config.get("COURSE_REFUND_DAYS", 14)
    most = current_app.config.get("COURSE_REFUND_MAX_PROGRESS_PERCENT", 20)
    since = utcnow() - (payment.credited_at or payment.created_at)
    progress = db.session.scalar(select(Enrollment.progress_percent).where(
        Enrollment.course_id == payment.course_id, Enrollment.user_id == payment.user_id)) or 0
    within = since <= timedelta(days=days)
    little = progress <= most
    if within and little:
        why = f"Bought {since.days} days ago with {progress}% done: refunded at once."
    elif not within:
        why = f"Bought more than {days} days ago: finance will review the request."
    else:
        why = f"{progress}% of the course is done (more than {most}%): finance will review the request."
    return RefundRule(within and little, since.days, progress, why)


def _new_refund(payment: Payment, amount: Decimal, reason: str, requested_by: User | None,
                state: RefundState = RefundState.REQUESTED, key: str | None = None) -> Refund:
    refund = Refund(id=uuid.uuid4(), payment_id=payment.id, user_id=payment.user_id, amount=amount,
                    currency=payment.currency, reason=reason, state=state,
                    requested_by_id=requested_by.id if requested_by is not None else None,
                    idempotency_key=key or f"azora-refund-{uuid.uuid4().hex}", hold_transaction_ids=[])
    db.session.add(refund)
    db.session.flush()
    return refund


def request_course_refund(user: User, payment: Payment, reason: str | None) -> Refund:
    """A student asks for their money back for a course they bought. Approved at once when the
    rule holds (``course_refund_rule``), else queued for finance (``requested``)."""
    if payment is None or payment.user_id != user.id:
        raise NotFound("There is no such payment.")
    text = _clean_reason(reason, required=False)
    locked = _lock_payment(payment.id)
    if locked.purpose != Purpose.COURSE_PURCHASE or locked.state != PaymentState.SUCCEEDED:
        raise RefundRefused("Only a course you bought can be refunded this way.", field=None)
    if db.session.scalar(select(func.count()).select_from(Refund).where(
            Refund.payment_id == locked.id, Refund.state.in_(tuple(st.OUTSTANDING_REFUND_STATES)))):
        raise RefundRefused("A refund of this purchase was asked for already.", field=None)
    amount = refundable(locked)
    if amount <= 0:
        raise RefundRefused("Nothing is left to refund on this purchase.", field=None)
    rule = course_refund_rule(locked)
    refund = _new_refund(locked, amount, text, user)
    record_event(locked, EventSource.PORTAL, "refund.requested",
                 f"Refund of {format_amount(amount, locked.currency)} asked for. {rule.explanation}", refund=refund,
                 data={"automatic": rule.automatic, "progress": rule.progress_percent, "days": rule.days_since})
    if rule.automatic:
        refund.automatic = True
        _approve(refund, locked, None)
    db.session.flush()
    return refund


def _check_finance(actor: User) -> None:
    if not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only finance staff can refund payments.")


def refund_payment(actor: User, payment: Payment, amount: str | Decimal | None, reason: str | None, *,
                   key: str | None = None) -> Refund:
    """Finance refunds ``amount`` (all that is left when empty) of a succeeded payment, with a
    reason. Never more than what is left: checked under the payment's row lock."""
    _check_finance(actor)
    text = _clean_reason(reason, required=True)
    locked = _lock_payment(payment.id)
    if locked.state != PaymentState.SUCCEEDED:
        raise RefundRefused("Only a succeeded payment can be refunded.", field=None)
    left = refundable(locked)
    value = left if amount in (None, "") else parse_amount(amount, locked.currency)
    if left <= 0:
        raise RefundRefused("Nothing is left to refund on this payment.")
    if value > left:
        raise RefundRefused(f"At most {format_amount(left, locked.currency, exact=True)} can still be refunded.")
    refund = _new_refund(locked, value, text, actor, key=key)
    record_event(locked, EventSource.ADMIN, "refund.requested",
                 f"{actor.full_name} refunds {format_amount(value, locked.currency)}: {text}", refund=refund)
    _approve(refund, locked, actor)
    db.session.flush()
    return refund


def refund_payment_once(actor: User, payment: Payment, amount: str | Decimal | None, reason: str | None, *,
                        idempotency_key: str) -> tuple[Refund, bool]:
    """``refund_payment`` for finance's form: one refund per form key, whatever the number of
    submits (a double click, a resubmit after "back"). Returns ``(refund, replayed)``: the same
    key again gives the first refund back (``replayed``); with another amount it is refused.
    The payment's row lock orders two submits at once, so the second finds the first."""
    _check_finance(actor)
    if not idempotency_key or len(idempotency_key) > 64:
        raise RefundRefused("The form has expired: review the refund again.", field=None)
    key = f"azora-refund-form-{idempotency_key}"
    _lock_payment(payment.id)
    first = db.session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if first is not None:
        asked = None if amount in (None, "") else parse_amount(amount, first.currency)
        if first.payment_id != payment.id or (asked is not None and asked != first.amount):
            raise IdempotencyMismatch("This form was already used for another refund: review the refund again.")
        return first, True
    return refund_payment(actor, payment, amount, reason, key=key), False


def decide_refund(actor: User, refund: Refund, *, approve: bool, note: str | None = None) -> Refund:
    """Finance approves or rejects a queued request."""
    _check_finance(actor)
    text = _clean_reason(note, required=not approve)
    payment = _lock_payment(refund.payment_id)
    refund = db.session.scalar(select(Refund).where(Refund.id == refund.id).with_for_update()
                               .execution_options(populate_existing=True))
    if refund.state != RefundState.REQUESTED:
        raise Conflict("This request was decided already.")
    refund.decision_note = text
    if approve:
        _approve(refund, payment, actor)
    else:
        st.move_refund(refund, RefundState.REJECTED)
        refund.decided_by_id, refund.decided_at = actor.id, utcnow()
        record_event(payment, EventSource.ADMIN, "refund.rejected", f"Refund request rejected: {text}",
                     refund=refund)
        from portal.platform.notifications.services import notify

        notify(payment.user_id, "refund_rejected", "Your refund request was not approved", text,
               PAYMENT_PATH.format(id=payment.id))
    db.session.flush()
    return refund


def _approve(refund: Refund, payment: Payment, actor: User | None) -> None:
    """Approve ``refund`` (the payment's row is locked): give a course back, hold the payer's
    funds and ask the provider. A refusal by the provider raises (and the caller rolls back)."""
    if refund.amount > refundable(payment) + (refund.amount if refund.state == RefundState.REQUESTED else 0):
        raise RefundRefused("That is more than what is left to refund.")
    st.move_refund(refund, RefundState.PENDING)
    refund.decided_by_id = actor.id if actor is not None else None
    refund.decided_at = utcnow()
    user = db.session.get(User, payment.user_id)
    code = payment.currency
    group_id = refund.ledger_group_id = uuid.uuid4()
    initiated = actor.id if actor is not None else user.id
    with ledger.as_ledger():
        wallet = ledger.open_user_wallet(user.id, code)
        if payment.purpose == Purpose.COURSE_PURCHASE:
            course = _course(payment.course_id)
            sales = ledger.system_wallet(SystemWallet.SALES, code, spread_by=user.id)
    if payment.purpose == Purpose.COURSE_PURCHASE:
        ledger.post([ledger.Leg(sales, wallet, refund.amount, TransactionType.REFUND,
                                f"Refund: {course.title}"[:300],
                                {"from_name": course.title, "refund_id": str(refund.id),
                                 "payment_id": str(payment.id)})], initiated_by_id=initiated, group_id=group_id)
        _end_enrolment(user, course.id)
    if payment.provider == "wallet":
        _settle_refund(refund, payment, RefundState.SUCCEEDED, EventSource.PORTAL)
        return
    with ledger.as_ledger():
        clearing = ledger.system_wallet(clearing_wallet_name(payment.provider), code, spread_by=user.id)
    try:
        holds = ledger.hold([ledger.Leg(wallet, clearing, refund.amount, TransactionType.REFUND,
                                        f"Refund to {payment.method_kind.label.lower()}"[:300],
                                        {"to_name": f"Refund ({payment.method_kind.label})",
                                         "refund_id": str(refund.id), "payment_id": str(payment.id)})],
                            initiated_by_id=initiated, group_id=group_id)
    except ledger.InsufficientFunds as exc:
        raise RefundRefused("The payer's wallet no longer holds the money to give back: "
                            f"{exc.message}", field=None) from exc
    refund.hold_transaction_ids = [h.id for h in holds]
    record_event(payment, EventSource.PORTAL, "refund.pending",
                 f"Refund of {format_amount(refund.amount, code)} approved"
                 + (" automatically" if refund.automatic else "") + "; the funds are held", refund=refund)
    db.session.flush()
    _send_refund(refund, payment)


def _send_refund(refund: Refund, payment: Payment, source: EventSource = EventSource.PROVIDER, *,
                 resend: bool = False) -> None:
    """Ask the provider to refund. A refusal on the first asking raises (the caller rolls the
    refund back whole); on a resend (the first asking got no answer) it fails the refund and
    releases the held funds."""
    try:
        answer = get_provider(payment.provider).refund(payment.provider_ref, refund.amount,
                                                       idempotency_key=refund.idempotency_key,
                                                       reason=refund.reason or "requested_by_customer")
    except ProviderUnavailable:
        record_event(payment, source, "refund.unreachable",
                     "The payment provider did not answer; the refund will be sent again.", refund=refund)
        db.session.flush()
        return
    except ProviderDeclined as exc:
        if not resend:
            raise RefundRefused(f"The payment provider refused the refund: {exc}", field=None) from exc
        refund.failure_reason = f"The payment provider refused the refund: {exc}"[:300]
        _settle_refund(refund, payment, RefundState.FAILED, source)
        return
    refund.provider_ref = answer.ref
    db.session.flush()
    apply_provider_refund(answer, provider=payment.provider, source=source, refund=refund)


def _end_enrolment(user: User, course_id: uuid.UUID) -> None:
    from portal.learning.education import services as education
    from portal.learning.education.models import Enrollment, EnrollmentStatus

    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.course_id == course_id,
                                                            Enrollment.user_id == user.id))
    if enrollment is not None and enrollment.status == EnrollmentStatus.ACTIVE:
        education.leave(user, course_id)


def apply_provider_refund(snapshot: ProviderRefund, *, provider: str, source: EventSource | str,
                          event_id: str | None = None, refund: Refund | None = None) -> Refund | None:
    """Apply the provider's view of a refund (the one place): lock the payment then the refund,
    record it, and on a final state capture the held funds (succeeded) or release them (failed,
    canceled). Reports about a settled refund change nothing. None when no refund matches."""
    source = EventSource(source)
    if refund is None:
        refund = db.session.scalar(select(Refund).where(Refund.provider_ref == snapshot.ref))
        if refund is None:
            return None
    payment = _lock_payment(refund.payment_id)
    if payment.provider != provider:
        return None
    refund = db.session.scalar(select(Refund).where(Refund.id == refund.id).with_for_update()
                               .execution_options(populate_existing=True))
    if refund.provider_ref is None:
        refund.provider_ref = snapshot.ref
    to = st.forward_refund(refund.state, snapshot.state)
    if to is None or to == RefundState.PENDING:
        record_event(payment, source, "refund.report", f"The provider reports the refund {snapshot.state.value}",
                     refund=refund, provider_event_id=event_id,
                     data={"ref": snapshot.ref, "state": snapshot.state.value, "raw": dict(snapshot.raw or {})})
        db.session.flush()
        return refund
    if to == RefundState.FAILED:
        refund.failure_reason = (snapshot.failure_reason or "The provider could not refund it.")[:300]
    _settle_refund(refund, payment, to, source, event_id)
    return refund


def _settle_refund(refund: Refund, payment: Payment, to: RefundState, source: EventSource,
                   event_id: str | None = None) -> None:
    previous = st.move_refund(refund, to)
    refund.settled_at = utcnow()
    holds = list(db.session.scalars(select(Transaction).where(Transaction.id.in_(refund.hold_transaction_ids))))
    initiated = refund.decided_by_id or refund.user_id
    if holds:
        if to == RefundState.SUCCEEDED:
            ledger.capture(holds, initiated_by_id=initiated, description="Refund sent")
        else:
            ledger.release(holds, initiated_by_id=initiated, description="Refund failed: funds released")
    if to == RefundState.SUCCEEDED:
        payment.amount_refunded = payment.amount_refunded + refund.amount
    record_event(payment, source, f"refund.{to.value}",
                 f"Refund of {format_amount(refund.amount, refund.currency)} {to.value}"
                 + (f": {refund.failure_reason}" if refund.failure_reason else ""),
                 from_state=previous, to_state=to, refund=refund, provider_event_id=event_id)
    from portal.platform.notifications.services import notify

    shown = format_amount(refund.amount, refund.currency)
    if to == RefundState.SUCCEEDED:
        notify(refund.user_id, "refund_succeeded", f"Your refund of {shown} was sent", None,
               PAYMENT_PATH.format(id=payment.id))
    elif to == RefundState.FAILED:
        notify(refund.user_id, "refund_failed", f"Your refund of {shown} could not be sent to your "
               f"{payment.method_kind.label.lower()}", refund.failure_reason, PAYMENT_PATH.format(id=payment.id))
    db.session.flush()


def resume_refund(refund: Refund, *, source: EventSource = EventSource.POLL) -> Refund:
    """Ask the provider again about a pending refund: send it if the first call got no answer
    (same idempotency key), else fetch it and apply what it says."""
    payment = db.session.get(Payment, refund.payment_id)
    if refund.state != RefundState.PENDING or payment.provider == "wallet":
        return refund
    if refund.provider_ref is None:
        locked = _lock_payment(payment.id)
        _send_refund(refund, locked, source, resend=True)
        return refund
    snapshot = get_provider(payment.provider).fetch_refund(refund.provider_ref)
    return apply_provider_refund(snapshot, provider=payment.provider, source=source, refund=refund)


# -- Reading one's own ----------------------------------------------------------------------------


def own_payment(user: User, payment_id: uuid.UUID | str) -> Payment:
    """The payer's payment ``payment_id`` (finance staff: any), or ``NotFound``."""
    try:
        payment_id = uuid.UUID(str(payment_id))
    except ValueError:
        raise NotFound("There is no such payment.") from None
    payment = db.session.get(Payment, payment_id)
    if payment is None or (payment.user_id != user.id and not has_permission(user.role, Permission.MANAGE_MONEY)):
        raise NotFound("There is no such payment.")
    return payment
