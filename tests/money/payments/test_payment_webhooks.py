"""``POST /wallet/payments/webhooks/<provider>``: verified, stored once, applied in any order;
forged ones refused with a security event; finance replays."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.compliance.security.models import SecurityEvent, SecurityEventKind
from portal.db import db
from portal.errors import Forbidden
from portal.money.payments import webhooks
from portal.money.payments.models import Payment, WebhookEvent, WebhookOutcome
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.providers.base import RefundState as ProviderRefundState
from tests.factories import create_user
from tests.money.factories import wallet_of
from tests.money.payments.helpers import student, succeeded_top_up, top_up

URL = "/wallet/payments/webhooks/sandbox"


def deliver(client, fake, event, **sign):
    body, headers = fake.sign(event, **sign)
    return client.post(URL, data=body, headers={**headers, "Content-Type": "application/json"}, csrf=False)


def stored(event_id: str) -> WebhookEvent | None:
    return db.session.scalar(select(WebhookEvent).where(WebhookEvent.provider == "sandbox",
                                                        WebhookEvent.event_id == event_id))


def test_a_verified_webhook_is_stored_and_applied(client, fake):
    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    response = deliver(client, fake, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True, "id": event.id, "duplicate": False, "outcome": "applied"}
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).state == PaymentState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("30")
    row = stored(event.id)
    assert row.outcome == WebhookOutcome.APPLIED and row.payment_id == payment.id and row.applied_at is not None
    assert row.payload["id"] == event.id


def test_the_same_event_twice_is_acknowledged_and_changes_nothing(client, fake):
    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    assert deliver(client, fake, event).status_code == 200
    again = deliver(client, fake, event)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert wallet_of(user).balance == Decimal("30")
    assert stored(event.id).attempts == 1


def test_events_out_of_order_end_in_the_right_state(client, fake):
    user = student()
    payment = top_up(user, "30", kind="mobile_money")
    processing = fake.event(payment=fake.complete(payment.provider_ref, PaymentState.PROCESSING))
    succeeded = fake.event(payment=fake.complete(payment.provider_ref, PaymentState.SUCCEEDED))
    assert deliver(client, fake, succeeded).status_code == 200
    assert deliver(client, fake, processing).status_code == 200
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).state == PaymentState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("30")


def test_a_late_event_applies_what_the_provider_says_now(client, fake):
    """The ``processing`` event comes first but the provider has settled since: the portal asks
    and applies the current state."""
    user = student()
    payment = top_up(user, "30", kind="mobile_money")
    processing = fake.event(payment=fake.complete(payment.provider_ref, PaymentState.PROCESSING))
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    assert deliver(client, fake, processing).status_code == 200
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).state == PaymentState.SUCCEEDED


@pytest.mark.parametrize("tamper", ["signature", "stale", "body", "missing"])
def test_forged_stale_or_malformed_webhooks_are_refused_with_a_security_event(client, fake, tamper):
    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    if tamper == "stale":
        body, headers = fake.sign(event, timestamp=int(time.time()) - 3600)
    elif tamper == "signature":
        body, headers = fake.sign(event, secret=b"not-the-secret")
    elif tamper == "body":
        body, headers = fake.sign(event)
        body = body.replace(b'"30', b'"3000')
    else:
        body, headers = fake.sign(event)
        headers = {}
    response = client.post(URL, data=body, headers=headers, csrf=False)
    assert response.status_code == 400
    assert response.get_json() == {"error": "This webhook could not be verified."}
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).state == PaymentState.REQUIRES_ACTION
    assert stored(event.id) is None
    assert wallet_of(user).balance == 0
    assert db.session.scalar(select(func.count()).select_from(SecurityEvent).where(
        SecurityEvent.kind == SecurityEventKind.WEBHOOK_REJECTED,
        SecurityEvent.details["reason"].astext.is_not(None))) >= 1


def test_an_unknown_provider_is_404(client, fake):
    response = client.post("/wallet/payments/webhooks/nosuch", data=b"{}", csrf=False)
    assert response.status_code == 404


def test_an_event_for_no_payment_of_ours_is_stored_and_ignored(client, fake):
    from portal.money.payments.providers.base import ProviderPayment

    event = fake.event(payment=ProviderPayment(ref="pay_elsewhere", state=PaymentState.SUCCEEDED,
                                               amount=Decimal("5"), currency="USD"))
    response = deliver(client, fake, event)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"


def test_a_refund_webhook_settles_the_refund(client, fake):
    from portal.money.payments import services

    user = student()
    payment = succeeded_top_up(fake, user, "50")
    refund = services.refund_payment(create_user("admin"), payment, "20", "Asked")
    event = fake.event(refund=fake.settle_refund(refund.provider_ref, ProviderRefundState.SUCCEEDED))
    assert deliver(client, fake, event).status_code == 200
    db.session.expire_all()
    assert wallet_of(user).balance == Decimal("30")


def test_a_failure_while_applying_is_kept_and_finance_replays_it(client, fake, monkeypatch):
    from portal.money.payments import services

    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    real = services.apply_provider_payment

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(services, "apply_provider_payment", broken)
    response = deliver(client, fake, event)
    assert response.status_code == 503 and response.get_json()["outcome"] == "failed"
    assert response.headers["Retry-After"] == "60"
    row = stored(event.id)
    assert row.outcome == WebhookOutcome.FAILED and "database hiccup" in row.detail and row.payment_id == payment.id
    assert wallet_of(user).balance == 0

    monkeypatch.setattr(services, "apply_provider_payment", real)
    with pytest.raises(Forbidden):
        webhooks.replay_webhook(user, row)
    webhooks.replay_webhook(create_user("admin"), row)
    assert row.outcome == WebhookOutcome.APPLIED and row.attempts == 2
    assert wallet_of(user).balance == Decimal("30")
    webhooks.replay_webhook(create_user("admin"), row)
    assert wallet_of(user).balance == Decimal("30")


def test_the_providers_retry_of_a_failed_event_applies_it(client, fake, monkeypatch):
    from portal.money.payments import services

    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    real = services.apply_provider_payment
    monkeypatch.setattr(services, "apply_provider_payment", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    assert deliver(client, fake, event).get_json()["outcome"] == "failed"
    monkeypatch.setattr(services, "apply_provider_payment", real)
    retry = deliver(client, fake, event)
    assert retry.get_json() == {"received": True, "id": event.id, "duplicate": True, "outcome": "applied"}
    assert wallet_of(user).balance == Decimal("30")
    assert deliver(client, fake, event).get_json()["outcome"] == "applied"
    assert wallet_of(user).balance == Decimal("30")
    assert stored(event.id).attempts == 2


def test_an_oversized_body_is_refused_before_it_is_read(client, fake):
    response = client.post(URL, data=b"x" * (256 * 1024 + 1), csrf=False)
    assert response.status_code == 413


def test_an_event_for_a_payment_not_committed_yet_asks_for_a_retry(client, fake):
    from portal.money.payments.providers.base import ProviderPayment

    early = ProviderPayment(ref="pay_early", state=PaymentState.SUCCEEDED, amount=Decimal("5"), currency="USD",
                            metadata={"portal_payment_id": "7d3c1f1e-0000-4000-8000-000000000001"})
    response = deliver(client, fake, fake.event(payment=early))
    assert response.status_code == 503 and response.get_json()["outcome"] == "failed"
