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
from portal.money.payments.models import Payment, PaymentEvent, Refund, RefundState, WebhookEvent
from portal.money.payments.providers.base import PaymentState
from portal.platform.notifications.models import Notification
from tests.factories import PASSWORD
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
