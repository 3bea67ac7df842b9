"""Reads for the pages: the payer's payments and one payment's story; finance's filtered list,
refunds queue and webhook log; faculty's sales. One statement each, whatever the data."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from portal.errors import NotFound
from portal.money.payments import admin_queries, queries, services
from portal.money.payments.models import PayWith, RefundState
from portal.money.payments.providers.base import PaymentState
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund
from tests.money.payments.helpers import key, paid_course, student, succeeded_top_up, top_up


def test_my_payments_are_paged_newest_first(fake):
    user = student()
    made = [top_up(user, str(10 + i)) for i in range(5)]
    with as_user(user):
        first = queries.my_payments(user, size=3)
        second = queries.my_payments(user, first.next_cursor, size=3)
    assert [r.id for r in first.items + second.items] == [p.id for p in reversed(made)]
    assert second.next_cursor is None
    assert first.items[0].state_label == "Needs your action" and first.items[0].open


def test_a_payments_story_is_its_owners_only(fake):
    user, other = student(), student()
    payment = succeeded_top_up(fake, user, "20")
    with as_user(user):
        detail = queries.payment_detail(user, payment.id)
    assert [e.kind for e in detail.timeline][:2] == ["created", "state"]
    assert detail.refundable == Decimal("20") and not detail.refund_requested
    with as_user(other), pytest.raises(NotFound):
        queries.payment_detail(other, payment.id)
    with pytest.raises(NotFound):
        queries.payment_detail(user, "not-an-id")


def test_the_live_state_fragment_reads_one_row(fake, statements):
    user = student()
    payment = top_up(user, "20")
    with as_user(user), statements() as counted:
        row = queries.payment_state(user, payment.id)
    assert row.state == PaymentState.REQUIRES_ACTION and counted.count == 1


def test_finance_filters_payments(fake):
    name = f"Filterable {uuid.uuid4().hex[:10]}"
    user = student(full_name=name)
    small = succeeded_top_up(fake, user, "12.00")
    big = top_up(user, "150.00", kind="mobile_money")
    filters, errors = admin_queries.parse_payment_filters({"user": name.lower(), "min": "100", "method": "mobile_money"})
    assert errors == {}
    page = admin_queries.payments(filters)
    assert [r.id for r in page.items] == [big.id]
    filters, _ = admin_queries.parse_payment_filters({"user": name, "state": "succeeded"})
    assert [r.id for r in admin_queries.payments(filters).items] == [small.id]
    assert admin_queries.payments(filters).items[0].fee == fake.fee_for(Decimal("12.00"))


def test_bad_filters_are_reported_not_raised():
    filters, errors = admin_queries.parse_payment_filters({"state": "nope", "since": "yesterday", "min": "-1",
                                                           "provider": "paypal", "method": PayWith.CARD.value})
    assert set(errors) == {"state", "since", "min", "provider"}
    assert filters.method == PayWith.CARD and filters.state is None


def test_finance_pages_through_payments_by_keyset(fake):
    name = f"Keyset {uuid.uuid4().hex[:10]}"
    user = student(full_name=name)
    made = [top_up(user, str(20 + i)) for i in range(5)]
    filters, _ = admin_queries.parse_payment_filters({"user": name})
    first = admin_queries.payments(filters, size=2)
    second = admin_queries.payments(filters, first.next_cursor, size=2)
    third = admin_queries.payments(filters, second.next_cursor, size=2)
    assert [r.id for r in first.items + second.items + third.items] == [p.id for p in reversed(made)]
    assert third.next_cursor is None


def test_the_refunds_queue_lists_requests_oldest_first(fake, app):
    from datetime import timedelta

    user, course = student(), paid_course("19.00")
    fund(user, "100")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
    payment.credited_at -= timedelta(days=app.config["COURSE_REFUND_DAYS"] + 1)
    with as_user(user):
        refund = services.request_course_refund(user, payment, "Late")
    queue = admin_queries.refunds_queue(RefundState.REQUESTED, size=1000)
    row = next(r for r in queue.items if r.id == refund.id)
    assert (row.course_title, row.amount, row.reason) == (course.title, Decimal("19.00"), "Late")


def test_the_webhook_log_pages(client, fake):
    from tests.money.payments.test_payment_webhooks import deliver

    user = student()
    payment = top_up(user, "30")
    event = fake.event(payment=fake.complete(payment.provider_ref))
    deliver(client, fake, event)
    page = admin_queries.webhook_log(provider="sandbox", size=1000)
    row = next(r for r in page.items if r.event_id == event.id)
    assert row.outcome.value == "applied" and row.payment_id == payment.id


def test_faculty_see_the_sales_of_their_courses_only(fake):
    teacher = create_user("faculty")
    mine, theirs = paid_course("19.00", instructor=teacher), paid_course("5.00")
    buyer = student()
    fund(buyer, "100")
    with as_user(buyer):
        services.pay_course(buyer, mine, idempotency_key=key(), from_wallet=True)
        services.pay_course(buyer, theirs, idempotency_key=key(), from_wallet=True)
    with as_user(teacher):
        summary = admin_queries.course_sales(teacher)
    assert [(c.course_id, c.sold, c.revenue) for c in summary.courses] == [(mine.id, 1, Decimal("19.00"))]


@pytest.mark.parametrize("rows", [2, 8])
def test_finance_list_is_one_statement_whatever_the_rows(fake, statements, rows):
    name = f"Counted {uuid.uuid4().hex[:10]}"
    user = student(full_name=name)
    for i in range(rows):
        top_up(user, str(10 + i))
    filters, _ = admin_queries.parse_payment_filters({"user": name})
    with statements() as counted:
        page = admin_queries.payments(filters)
    assert len(page.items) == rows and counted.count == 1


@pytest.mark.parametrize("rows", [2, 8])
def test_my_payments_is_one_statement_whatever_the_rows(fake, statements, rows):
    user = student()
    for i in range(rows):
        top_up(user, str(10 + i))
    with as_user(user):
        queries.my_payments(user)  # the identity's settings are sent once per transaction
        with statements() as counted:
            page = queries.my_payments(user)
    assert len(page.items) == rows and counted.count == 1


def test_the_top_up_form_says_what_is_left_at_the_payers_level(fake):
    user = student()
    before = queries.top_up_form(user)
    (usd,) = [limit for limit in before.limits if limit.currency == "USD"]
    top_up(user, "50")
    (after,) = [limit for limit in queries.top_up_form(user).limits if limit.currency == "USD"]
    assert after.maximum == usd.maximum - Decimal("50")
    assert usd.minimum == Decimal("1.00") and before.default_method is None


def test_the_course_checkout_knows_price_wallet_and_ownership(fake):
    user, course = student(), paid_course("19.00")
    fund(user, "25")
    with as_user(user):
        box = queries.course_checkout(user, course)
    assert (box.price, box.currency, box.available, box.wallet_covers, box.enrolled) == (
        Decimal("19.00"), "USD", Decimal("25"), True, False)
    assert box.owned_payment_id is None
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
        box = queries.course_checkout(user, course)
    assert box.owned_payment_id == payment.id and box.enrolled and not box.wallet_covers


def test_finance_reads_any_payments_story(fake):
    payment = succeeded_top_up(fake, student(), "20")
    admin = create_user("admin")
    with as_user(admin):
        assert queries.payment_detail(admin, payment.id).payment.id == payment.id
