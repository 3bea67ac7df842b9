"""Finance's pages of payments: every route for every role with and without htmx, the payments
list's filters (malformed ones answered with a message, never a 500), its keyset paging and
statement budget, a payment's page (facts, ledger rows, timeline with escaped raw data), the
refund form (partial refunds in a row, over-refunds and bad amounts refused, confirmation step,
double submit), the refunds queue's decisions, reconciliation and the webhook log with replay."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from portal.db import db
from portal.db.base import utcnow
from portal.money.payments import services
from portal.money.payments.models import (
    Payment,
    PaymentEvent,
    PayWith,
    Purpose,
    Refund,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from portal.money.payments.providers.base import PaymentState
from portal.platform.notifications.models import Notification
from tests.factories import PASSWORD
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of
from tests.money.payments.helpers import paid_course, student, succeeded_top_up, top_up

HX = {"HX-Request": "true"}
ROLES_WITHOUT = ["student", "faculty", "compliance"]


def settle():
    """End the test's setup: a view that refuses rolls its request back, not the setup."""
    db.session.commit()


def _login(client, user):
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code in (302, 204)
    return user


def body_of(response) -> str:
    return response.get_data(as_text=True)


def _key(body: str) -> str:
    return re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', body)[1]


def payment_row(user, amount: str = "10.00", code: str = "USD", *, state: PaymentState = PaymentState.SUCCEEDED,
                provider: str = "sandbox", kind: PayWith = PayWith.CARD, purpose: Purpose = Purpose.TOP_UP,
                created_at=None, **fields) -> Payment:
    """A payment row as the services leave one (for the list: no provider, no ledger)."""
    payment = Payment(user_id=user.id, purpose=purpose, wallet_currency=code, amount=Decimal(amount), currency=code,
                      state=state, provider=provider, method_kind=kind, idempotency_key=uuid.uuid4().hex,
                      provider_ref=None if provider == "wallet" else f"pay_{uuid.uuid4().hex[:12]}",
                      credited_at=utcnow() if state == PaymentState.SUCCEEDED else None, **fields)
    if created_at is not None:
        payment.created_at = created_at
    db.session.add(payment)
    db.session.flush()
    return payment


def webhook_row(payment=None, *, outcome=WebhookOutcome.APPLIED, payload=None, event_type="payment.updated",
                received_at=None) -> WebhookEvent:
    hook = WebhookEvent(provider="sandbox", event_id=f"evt_{uuid.uuid4().hex[:16]}", event_type=event_type,
                        received_at=received_at or utcnow(), verified=True,
                        payload=payload if payload is not None else {"type": event_type},
                        headers={"sandbox-signature": "t=1,v1=abc"}, outcome=outcome,
                        payment_id=payment.id if payment is not None else None,
                        applied_at=utcnow() if outcome == WebhookOutcome.APPLIED else None)
    db.session.add(hook)
    db.session.flush()
    return hook


def requested_refund(fake, amount: str = "19.00") -> Refund:
    """A student's course refund request the automatic rule did not approve (too much done)."""
    user, course = student(), paid_course(amount)
    fund(user, "50")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=uuid.uuid4().hex, from_wallet=True)
    refund = Refund(payment_id=payment.id, user_id=user.id, amount=Decimal(amount), currency="USD",
                    reason="The course was not what I expected", state=RefundState.REQUESTED,
                    requested_by_id=user.id, idempotency_key=f"azora-refund-{uuid.uuid4().hex}")
    db.session.add(refund)
    db.session.flush()
    return refund


# -- Every route, every role ----------------------------------------------------------------------


@pytest.fixture
def rows(fake):
    """A succeeded top-up with a webhook, and a refund request waiting for finance."""
    payment = succeeded_top_up(fake, student(), "40.00")
    hook = webhook_row(payment)
    refund = requested_refund(fake)
    settle()
    return payment, hook, refund


def _routes(payment, hook, refund):
    """(method, path, status for an admin without htmx, with htmx)."""
    return [
        ("GET", "/wallet/admin/payments", 200, 200),
        ("GET", f"/wallet/admin/payments/{payment.id}", 200, 200),
        ("POST", f"/wallet/admin/payments/{payment.id}/refund", 422, 422),  # no reason: refused, nothing made
        ("GET", "/wallet/admin/refunds", 200, 200),
        ("POST", f"/wallet/admin/refunds/{refund.id}/reject", 302, 204),  # no reason: refused, back to the queue
        ("POST", f"/wallet/admin/refunds/{uuid.uuid4()}/approve", 404, 404),
        ("GET", "/wallet/admin/payments/reconciliation", 200, 200),
        ("GET", "/wallet/admin/payments/webhooks", 200, 200),
        ("GET", f"/wallet/admin/payments/webhooks/{hook.id}", 200, 200),
        ("POST", f"/wallet/admin/payments/webhooks/{uuid.uuid4()}/replay", 404, 404),
    ]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("role", ROLES_WITHOUT)
def test_only_money_admins_reach_the_pages(client, login_as, rows, role, htmx):
    login_as(role)
    headers = HX if htmx else {}
    for method, path, _, _ in _routes(*rows):
        response = client.open(path, method=method, headers=headers, data={"reason": "x", "amount": "1"})
        assert response.status_code == 403, (method, path)
        body = body_of(response)
        assert "manage fees, rates and withdrawals" in body
        assert ("<html" in body) is not htmx
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.payment_id == rows[0].id)) == 0


def test_anonymous_visitors_are_sent_to_log_in(client, rows):
    for method, path, _, _ in _routes(*rows):
        response = client.open(path, method=method)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], path
        assert client.open(path, method=method, headers=HX).status_code == 401, path


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_admins_reach_every_page_with_and_without_htmx(client, login_as, rows, htmx):
    login_as("admin")
    for method, path, page_status, htmx_status in _routes(*rows):
        response = client.open(path, method=method, headers=HX if htmx else {})
        assert response.status_code == (htmx_status if htmx else page_status), (method, path, body_of(response)[:300])
        if method == "GET":
            assert "hx-request" in response.headers.get("Vary", "").lower()
            # The lists answer htmx with their results alone; the other pages are whole pages.
            listing = path in ("/wallet/admin/payments", "/wallet/admin/refunds", "/wallet/admin/payments/webhooks")
            assert ("<html" in body_of(response)) is not (htmx and listing), path
