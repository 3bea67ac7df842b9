"""Row-level security on the billing tables, through the app role: a student reads only their own
subscriptions, invoices, lines and attempts, and every billing action works as the student
themselves; admins and compliance read all; faculty none; plans are read by all and written by
admins; the invoice number counters are billing's own."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from psycopg import errors as pg
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.money.billing import services
from portal.money.billing.models import (
    DunningAttempt,
    Invoice,
    InvoiceLine,
    InvoiceNumber,
    InvoiceReason,
    InvoiceStatus,
    Plan,
    Subscription,
)
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.billing.helpers import plans, student, utc
from tests.rls import visible

PRIVATE = {"subscriptions": Subscription, "invoices": Invoice, "invoice_lines": InvoiceLine,
           "dunning_attempts": DunningAttempt}


@pytest.fixture
def catalogue():
    return plans()


def _rows(user) -> dict[str, set]:
    with as_user(user, "admin"):
        return {name: {row_id for row_id in visible(model) if db.session.get(model, row_id).user_id == user.id}
                for name, model in PRIVATE.items()}


@pytest.fixture
def two_subscribers(catalogue):
    first, second = student("100"), student("100")
    for user in (first, second):
        with as_user(user), time_machine.travel(utc(2026, 2, 2), tick=False):
            services.subscribe(user, catalogue["pro"].id)
    return first, _rows(first), second, _rows(second)


def test_every_billing_action_works_as_the_student_themselves(catalogue):
    user = student("300")
    with as_user(user):
        with time_machine.travel(utc(2026, 6, 1, 10), tick=False):
            services.subscribe(user, catalogue["plus"].id)  # a trial
            services.change_plan(user, catalogue["pro"].id)  # during the trial: no charge
        with time_machine.travel(utc(2026, 6, 20), tick=False):
            preview = services.preview_change(user, catalogue["proyear"].id)
            assert preview.when == "now"
            services.cancel(user)
            services.resume(user)
            services.cancel(user, now=True)
            services.subscribe(user, catalogue["pro"].id)
        with time_machine.travel(utc(2026, 6, 21), tick=False):
            services.change_plan(user, catalogue["proyear"].id)
    with as_user(user):
        mine = visible(Invoice)
    reasons = {db.session.get(Invoice, i).reason for i in mine}
    assert reasons == {InvoiceReason.CYCLE, InvoiceReason.CHANGE}
    # The trial's end (15 June) was billed when the student next acted, before canceling.
    assert {db.session.get(Invoice, i).status for i in mine} == {InvoiceStatus.PAID}


@pytest.mark.parametrize("table", sorted(PRIVATE))
def test_a_student_reads_only_their_own_rows(two_subscribers, table):
    first, first_rows, second, second_rows = two_subscribers
    assert first_rows[table] and second_rows[table]
    with as_user(first):
        seen = visible(PRIVATE[table])
    assert first_rows[table] <= seen and not (second_rows[table] & seen)


@pytest.mark.parametrize("role", ["admin", "compliance"])
def test_staff_read_every_subscriber(two_subscribers, role):
    _first, first_rows, _second, second_rows = two_subscribers
    with as_user(create_user(role)):
        for table, model in PRIVATE.items():
            assert first_rows[table] | second_rows[table] <= visible(model), table


def test_faculty_read_none_but_the_plans(two_subscribers, catalogue):
    with as_user(create_user("faculty")):
        assert all(not visible(model) for model in PRIVATE.values())
        assert catalogue["pro"].id in visible(Plan)


def test_a_student_cannot_change_someone_elses_subscription_or_a_plan(two_subscribers, catalogue):
    first, _rows1, _second, second_rows = two_subscribers
    (theirs,) = second_rows["subscriptions"]
    with as_user(first):
        assert db.session.execute(update(Subscription).where(Subscription.id == theirs)
                                  .values(cancel_at_period_end=True)).rowcount == 0
        assert db.session.execute(update(Plan).where(Plan.id == catalogue["pro"].id)
                                  .values(price=Decimal("0"))).rowcount == 0
        assert not visible(InvoiceNumber)


def test_a_student_cannot_insert_an_invoice_for_someone_else(two_subscribers):
    first, _rows1, second, second_rows = two_subscribers
    (their_sub,) = second_rows["subscriptions"]
    with as_user(first), pytest.raises(DBAPIError) as refused, db.session.begin_nested():
        db.session.add(Invoice(user_id=second.id, subscription_id=their_sub, number="INV-2000-000001",
                               reason=InvoiceReason.CYCLE, status=InvoiceStatus.OPEN, currency="USD",
                               total=Decimal("1"), period_start=utc(2000, 1, 1), period_end=utc(2000, 2, 1),
                               due_at=utc(2000, 1, 1), next_attempt_at=utc(2000, 1, 1)))
        db.session.flush()
    assert isinstance(refused.value.orig, pg.InsufficientPrivilege)
