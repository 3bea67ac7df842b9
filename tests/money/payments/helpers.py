"""Actions shared by the payment tests."""

from __future__ import annotations

import uuid
from decimal import Decimal

from portal.db import db
from portal.learning.education.models import CourseStatus
from portal.money.payments import services
from portal.money.payments.providers.base import PaymentState
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.factories.catalog import make_course

RETURN_URL = "http://localhost/wallet/payments/return"


def key() -> str:
    return uuid.uuid4().hex


def student(**fields):
    return create_user("student", **fields)


def paid_course(price: str = "19.00", code: str = "USD", **fields):
    return make_course(status=CourseStatus.PUBLISHED, price=Decimal(price), price_currency=code,
                       modules=fields.pop("modules", 1), lessons_per_module=fields.pop("lessons", 5), **fields)


def top_up(user, amount="25.00", code="USD", kind="card", **kwargs):
    """Start a top-up as ``user``."""
    kwargs.setdefault("idempotency_key", key())
    kwargs.setdefault("return_url", RETURN_URL)
    with as_user(user):
        return services.start_top_up(user, amount, code, kind, **kwargs)


def succeeded_top_up(fake, user, amount="25.00", code="USD", **kwargs):
    """A top-up the payer completed, applied as a webhook would."""
    payment = top_up(user, amount, code, **kwargs)
    snapshot = fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    services.apply_provider_payment(snapshot, provider=fake.name, source="webhook")
    db.session.refresh(payment)
    return payment
