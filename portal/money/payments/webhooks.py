"""Webhooks from payment providers: verify, store once, apply.

``receive(provider_name, body, headers)`` is what the route calls (no login, no CSRF: the
signature is the proof):

1. The adapter's ``parse_webhook`` checks the signature (HMAC over timestamp and body, within
   the tolerance) before anything is believed. ``WebhookRejected``: a security event is recorded,
   nothing else changes, and the route answers 400.
2. The event is stored in ``webhook_events`` once by ``(provider, eventId)``: an ``INSERT ... ON
   CONFLICT DO NOTHING``; a second delivery (or twenty at once: the unique index makes them wait
   for the first to commit) finds the row and changes nothing, unless applying it failed the
   first time: a provider's retry of a failed event applies it again.
3. It is applied: for a payment, the portal asks the provider for the payment as it is now
   (``fetch``) and applies that, so the order in which events arrive does not matter; if the
   provider cannot be reached, the event's own snapshot is applied (forward-only, so an old one
   cannot move the payment back). Refunds likewise. The event's outcome is kept for the webhook
   log; a failure is recorded and finance can ``replay_webhook``.

Everything runs as the system actor ``system:webhooks`` (the payer is not logged in), in the
caller's transaction; the route commits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.db.context import Actor, acting_as
from portal.errors import DomainError, Forbidden, NotFound
from portal.money.payments import services
from portal.money.payments.models import EventSource, WebhookEvent, WebhookOutcome
from portal.money.payments.providers import ADAPTERS
from portal.money.payments.providers.base import (
    EventType,
    ProviderEvent,
    ProviderUnavailable,
    WebhookRejected,
)
from portal.security.permissions import Permission, has_permission

log = logging.getLogger(__name__)

WEBHOOK_ACTOR = Actor.system("webhooks")
#: Headers kept with a stored event (what replay needs to check the signature again is not kept:
#: a replay trusts the stored, verified payload).
KEPT_HEADERS = ("content-type", "user-agent")


class UnknownProvider(NotFound):
    """A webhook for a provider the portal does not have."""


class BadWebhook(DomainError):
    """A webhook that is not to be believed (answered 400)."""

    status_code = 400


@dataclass(frozen=True)
class Receipt:
    """What became of one delivery."""

    event_id: str
    duplicate: bool
    outcome: WebhookOutcome


def receive(provider_name: str, body: bytes, headers: Mapping[str, str], *, ip: str | None = None) -> Receipt:
    """Verify, store once and apply a webhook of ``provider_name``. Raises ``UnknownProvider``
    (404) and ``BadWebhook`` (400, after recording a security event)."""
    if provider_name not in ADAPTERS:
        raise UnknownProvider("There is no such payment provider.")
    with acting_as(WEBHOOK_ACTOR, db.session):
        provider = services.get_provider(provider_name)
        try:
            event = provider.parse_webhook(body, headers)
        except WebhookRejected as exc:
            _record_rejection(provider_name, str(exc), ip)
            raise BadWebhook("This webhook could not be verified.") from exc
        stored, duplicate = _store(provider_name, event, body, headers)
        if duplicate and stored.outcome != WebhookOutcome.FAILED:
            return Receipt(event.id, True, stored.outcome)
        # A new event, or the provider's retry of one whose applying failed: apply (again).
        _apply(stored, event, EventSource.WEBHOOK)
        return Receipt(event.id, duplicate, stored.outcome)


def _record_rejection(provider_name: str, reason: str, ip: str | None) -> None:
    from portal.compliance.security import events as security_events
    from portal.compliance.security.models import SecurityEventKind, Severity

    security_events.record(SecurityEventKind.WEBHOOK_REJECTED, Severity.MEDIUM,
                           f"Payment webhook from {provider_name} rejected: {reason}"[:500], ip=ip,
                           details={"provider": provider_name, "reason": reason[:200]})


def _payload(body: bytes, event: ProviderEvent) -> dict:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"raw": dict(event.raw or {})}


def _store(provider_name: str, event: ProviderEvent, body: bytes, headers: Mapping[str, str]) -> tuple[WebhookEvent, bool]:
    now = utcnow()
    kept = {k: v for k, v in ((k.lower(), v) for k, v in headers.items()) if k in KEPT_HEADERS}
    inserted = db.session.execute(
        insert(WebhookEvent).values(id=uuid.uuid4(), provider=provider_name, event_id=event.id[:200],
                                    event_type=event.type.value[:60], received_at=now, verified=True,
                                    payload=_payload(body, event), headers=kept, outcome=WebhookOutcome.RECEIVED,
                                    detail="", attempts=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[WebhookEvent.provider, WebhookEvent.event_id])
        .returning(WebhookEvent.id)).scalar()
    stored = db.session.scalar(select(WebhookEvent).where(WebhookEvent.provider == provider_name,
                                                          WebhookEvent.event_id == event.id[:200])
                               .with_for_update().execution_options(populate_existing=True))
    return stored, inserted is None


def _apply(stored: WebhookEvent, event: ProviderEvent, source: EventSource) -> None:
    """Apply a stored event (the row is locked); record the outcome. A failure is kept on the
    row (savepoint), so the delivery is acknowledged and finance can replay it."""
    stored.attempts += 1
    stored.payment_id = stored.payment_id or _payment_named(stored.provider, event)
    try:
        with db.session.begin_nested():
            outcome, detail, payment_id = _apply_event(stored.provider, event, source)
    except Exception as exc:  # any failure is recorded on the event, for replay
        log.exception("applying webhook %s/%s failed", stored.provider, stored.event_id)
        stored.outcome, stored.detail = WebhookOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:500]
        db.session.flush()
        return
    stored.outcome, stored.detail = outcome, detail[:500]
    stored.payment_id = payment_id or stored.payment_id
    stored.applied_at = utcnow() if outcome == WebhookOutcome.APPLIED else stored.applied_at
    db.session.flush()


def _payment_named(provider_name: str, event: ProviderEvent) -> uuid.UUID | None:
    """The portal's payment an event is about, if any (a read: kept even if applying fails)."""
    from portal.money.payments.models import Refund

    if event.payment is not None:
        payment = services.find_payment_for(event.payment, provider_name)
        return payment.id if payment is not None else None
    if event.refund is not None:
        return db.session.scalar(select(Refund.payment_id).where(Refund.provider_ref == event.refund.ref))
    return None


def _apply_event(provider_name: str, event: ProviderEvent, source: EventSource):
    provider = services.get_provider(provider_name)
    if event.type == EventType.PAYMENT_UPDATED and event.payment is not None:
        target = services.find_payment_for(event.payment, provider_name)
        if target is None:
            if (event.payment.metadata or {}).get("portal_payment_id"):
                # Ours, but not committed yet (the webhook outran the request that created it):
                # failed, so the provider's retry (or the job) applies it.
                raise LookupError("The payment this event names is not in the portal yet.")
            return WebhookOutcome.IGNORED, "No payment of the portal matches.", None
        snapshot = event.payment
        with contextlib.suppress(ProviderUnavailable):  # else the event's own view, applied forward-only
            snapshot = provider.fetch(event.payment.ref)
        payment = services.apply_provider_payment(snapshot, provider=provider_name, source=source,
                                                  event_id=event.id, payment=target)
        return WebhookOutcome.APPLIED, f"Payment {payment.state.value}", payment.id
    if event.type == EventType.REFUND_UPDATED and event.refund is not None:
        snapshot = event.refund
        with contextlib.suppress(ProviderUnavailable):
            snapshot = provider.fetch_refund(event.refund.ref)
        refund = services.apply_provider_refund(snapshot, provider=provider_name, source=source, event_id=event.id)
        if refund is None:
            return WebhookOutcome.IGNORED, "No refund of the portal matches.", None
        return WebhookOutcome.APPLIED, f"Refund {refund.state.value}", refund.payment_id
    return WebhookOutcome.IGNORED, f"Event type {event.type.value} is not used.", None


def replay_webhook(actor: User, webhook_event: WebhookEvent) -> WebhookEvent:
    """Finance applies a stored event again (after a failure, or to check it). The provider is
    asked for the payment or refund as it is now, so a replay never moves anything back and
    never credits twice."""
    if not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only finance staff can replay webhooks.")
    stored = db.session.scalar(select(WebhookEvent).where(WebhookEvent.id == webhook_event.id).with_for_update()
                               .execution_options(populate_existing=True))
    if stored is None:
        raise NotFound("There is no such webhook.")
    provider = services.get_provider(stored.provider)
    try:
        event = _rebuild(provider, stored)
    except ProviderUnavailable as exc:
        raise services.ProviderDown("The payment service is not answering right now; replay the event later.") from exc
    _apply(stored, event, EventSource.REPLAY)
    return stored


def _rebuild(provider, stored: WebhookEvent) -> ProviderEvent:
    """The stored event, rebuilt from what the provider has now about its payment or refund (the
    stored body's signature cannot be checked again, and the current view is the one to apply)."""
    from portal.money.payments.models import Payment

    if stored.payment_id is None:
        raise BadWebhook("This event names no payment of the portal, so there is nothing to replay.")
    payment = db.session.get(Payment, stored.payment_id)
    if stored.event_type == EventType.REFUND_UPDATED.value:
        from portal.money.payments.models import Refund

        refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id,
                                                          Refund.provider_ref.is_not(None))).all()
        latest = max(refunds, key=lambda r: r.created_at, default=None)
        if latest is None:
            raise BadWebhook("This refund is not known to the provider yet.")
        return ProviderEvent(id=stored.event_id, type=EventType.REFUND_UPDATED, created=stored.received_at,
                             refund=provider.fetch_refund(latest.provider_ref))
    return ProviderEvent(id=stored.event_id, type=EventType.PAYMENT_UPDATED, created=stored.received_at,
                         payment=provider.fetch(payment.provider_ref))
