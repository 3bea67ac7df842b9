"""Row-level security on the payment tables, through the app role: with no WHERE clause at all a
student reads only their own payments, methods, refunds, timeline and customer ids; admins and
compliance officers read all; faculty none; the webhook log is staff-only; nobody writes rows of
someone else."""

from __future__ import annotations

import pytest
from psycopg import errors as pg
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.db.base import utcnow
from portal.money.payments import services
from portal.money.payments.models import (
    Payment,
    PaymentCustomer,
    PaymentEvent,
    PaymentMethod,
    Refund,
    WebhookEvent,
    WebhookOutcome,
)
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.payments.helpers import student, succeeded_top_up
from tests.rls import visible

PRIVATE = {"payments": Payment, "payment_methods": PaymentMethod, "refunds": Refund, "payment_events": PaymentEvent,
           "payment_customers": PaymentCustomer}


def rows_of(fake, user) -> dict[str, set]:
    payment = succeeded_top_up(fake, user, "40", save_method=True)
    services.refund_payment(create_user("admin"), payment, "5", "Test")
    db.session.flush()
    with as_user(user, "admin"):
        return {name: {row_id for row_id in visible(model)
                       if _owner(model, row_id) == user.id} for name, model in PRIVATE.items()}


def _owner(model, row_id):
    return db.session.get(model, row_id).user_id


@pytest.fixture
def two_payers(fake):
    first, second = student(), student()
    return first, rows_of(fake, first), second, rows_of(fake, second)


@pytest.mark.parametrize("table", sorted(PRIVATE))
def test_a_student_reads_only_their_own_rows(two_payers, table):
    first, first_rows, second, second_rows = two_payers
    assert first_rows[table] and second_rows[table]
    with as_user(first):
        seen = visible(PRIVATE[table])
    assert first_rows[table] <= seen
    assert not (second_rows[table] & seen)


@pytest.mark.parametrize("role", ["admin", "compliance"])
def test_staff_read_every_payer(two_payers, role):
    _first, first_rows, _second, second_rows = two_payers
    staff = create_user(role)
    with as_user(staff):
        for table, model in PRIVATE.items():
            assert first_rows[table] | second_rows[table] <= visible(model), table


def test_faculty_read_no_payment(two_payers):
    with as_user(create_user("faculty")):
        assert all(not visible(model) for model in PRIVATE.values())


def test_the_webhook_log_is_for_staff_only(fake):
    row = WebhookEvent(provider="sandbox", event_id=f"evt_rls_{utcnow().timestamp()}", event_type="payment.updated",
                       received_at=utcnow(), payload={}, outcome=WebhookOutcome.RECEIVED)
    db.session.add(row)
    db.session.flush()
    with as_user(student()):
        assert row.id not in visible(WebhookEvent)
    with as_user(create_user("faculty")):
        assert row.id not in visible(WebhookEvent)
    with as_user(create_user("admin")):
        assert row.id in visible(WebhookEvent)


def test_a_student_cannot_change_someone_elses_payment(two_payers):
    first, _first_rows, _second, second_rows = two_payers
    (their_payment,) = second_rows["payments"]
    with as_user(first):
        changed = db.session.execute(update(Payment).where(Payment.id == their_payment)
                                     .values(description="mine now")).rowcount
    assert changed == 0


def test_a_student_cannot_insert_a_payment_for_someone_else(fake):
    first, second = student(), student()
    with as_user(first), pytest.raises(DBAPIError) as refused, db.session.begin_nested():
        db.session.add(Payment(user_id=second.id, purpose="top_up", wallet_currency="USD", amount=1, currency="USD",
                               state="requires_action", provider="sandbox", method_kind="card",
                               idempotency_key="x" * 20))
        db.session.flush()
    assert isinstance(refused.value.orig, pg.InsufficientPrivilege)
