"""Renewals and dunning through every state, with the clock moved by time-machine: a failed
charge makes the subscription past due and is retried after 1, 3, 5 and 7 days with an e-mail
each time; after the last it is canceled or downgraded; paying by hand restores it at once;
two years of renewals run in seconds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from portal.db import db
from portal.money.billing import services
from portal.money.billing.models import (
    DunningAttempt,
    Invoice,
    InvoiceReason,
    InvoiceStatus,
    SubscriptionStatus,
)
from portal.money.wallets import ledger
from portal.platform.email.models import Email
from tests.money.billing.helpers import as_user, balance, fund, plans, student, utc

S = SubscriptionStatus


@pytest.fixture
def catalogue():
    return plans()


def _emails(user, template: str) -> list[Email]:
    return list(db.session.scalars(select(Email).where(Email.user_id == user.id, Email.template == template)
                                   .order_by(Email.created_at)))


def _at(moment):
    return time_machine.travel(moment, tick=False)


def _cycle_invoices(user) -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).where(Invoice.user_id == user.id,
                                                         Invoice.reason == InvoiceReason.CYCLE)
                                   .order_by(Invoice.period_start)))


def _subscribed_then_broke(catalogue, start):
    """Pro paid for its first month from a wallet that then holds nothing."""
    user = student("25.00")
    with _at(start):
        sub = services.subscribe(user, catalogue["pro"].id)
    assert balance(user) == 0
    return user, sub


def test_a_failed_renewal_is_retried_after_1_3_5_7_days_then_canceled(catalogue, app):
    user, sub = _subscribed_then_broke(catalogue, utc(2026, 1, 31, 9))
    due = utc(2026, 2, 28, 9)
    with _at(due):
        services.run_due()
    db.session.refresh(sub)
    assert sub.status == S.PAST_DUE and sub.past_due_since == due
    invoice = _cycle_invoices(user)[-1]
    assert invoice.status == InvoiceStatus.OPEN and invoice.attempt_count == 1
    assert invoice.next_attempt_at == due + timedelta(days=1)
    # Running again before the retry is due changes nothing (idempotent).
    with _at(due + timedelta(hours=23)):
        services.run_due()
        services.run_due()
    db.session.refresh(invoice)
    assert (invoice.attempt_count, invoice.next_attempt_at) == (1, due + timedelta(days=1))
    schedule = []
    for days in (1, 3, 5, 7):
        with _at(due + timedelta(days=days, minutes=1)):
            services.run_due()
        db.session.refresh(invoice)
        schedule.append((invoice.attempt_count, invoice.status, invoice.next_attempt_at))
    assert schedule == [
        (2, InvoiceStatus.OPEN, due + timedelta(days=3)),
        (3, InvoiceStatus.OPEN, due + timedelta(days=5)),
        (4, InvoiceStatus.OPEN, due + timedelta(days=7)),
        (5, InvoiceStatus.UNCOLLECTIBLE, None),
    ]
    db.session.refresh(sub)
    assert sub.status == S.CANCELED and sub.end_reason == "unpaid"
    attempts = db.session.scalars(select(DunningAttempt).where(DunningAttempt.invoice_id == invoice.id)
                                  .order_by(DunningAttempt.attempt)).all()
    assert [(a.attempt, a.succeeded) for a in attempts] == [(n, False) for n in range(1, 6)]
    assert len(_emails(user, "billing_payment_failed")) == 4
    [ended] = _emails(user, "billing_canceled_unpaid")
    assert invoice.number in ended.subject


def test_after_the_last_retry_it_can_downgrade_to_the_free_plan(catalogue, app):
    app.config["BILLING_AFTER_FINAL_FAILURE"] = "downgrade"
    try:
        user, sub = _subscribed_then_broke(catalogue, utc(2026, 3, 3, 9))
        due = utc(2026, 4, 3, 9)
        for days in (0, 1, 3, 5, 7):
            with _at(due + timedelta(days=days, minutes=1)):
                services.run_due()
    finally:
        app.config["BILLING_AFTER_FINAL_FAILURE"] = "cancel"
    db.session.refresh(sub)
    assert sub.status == S.ACTIVE and sub.plan_id == catalogue["free"].id
    assert len(_emails(user, "billing_downgraded")) == 1
    # On the free plan no more invoices come.
    with _at(utc(2026, 8, 1)):
        services.run_due()
    assert len(_cycle_invoices(user)) == 2


def test_paying_by_hand_while_past_due_restores_at_once(catalogue):
    user, sub = _subscribed_then_broke(catalogue, utc(2026, 5, 10, 9))
    with _at(utc(2026, 6, 10, 9, 1)):
        services.run_due()
    db.session.refresh(sub)
    assert sub.status == S.PAST_DUE
    invoice = _cycle_invoices(user)[-1]
    with _at(utc(2026, 6, 11, 8)):
        with pytest.raises(ledger.InsufficientFunds), as_user(user):
            services.pay_invoice(user, invoice.id)
        fund(user, "30")
        with as_user(user):
            services.pay_invoice(user, invoice.id)
            again = services.pay_invoice(user, invoice.id)  # a second tab: nothing more
    assert again.status == InvoiceStatus.PAID
    db.session.refresh(sub)
    assert sub.status == S.ACTIVE and sub.past_due_since is None
    assert balance(user) == Decimal("5.00")
    assert len(_emails(user, "billing_restored")) == 1
    # The retry job finds nothing left to do.
    with _at(utc(2026, 6, 13, 9)):
        services.run_due()
    assert balance(user) == Decimal("5.00")
    attempts = db.session.scalars(select(DunningAttempt).where(DunningAttempt.invoice_id == invoice.id)
                                  .order_by(DunningAttempt.attempt)).all()
    assert [(a.attempt, a.succeeded) for a in attempts] == [(1, False), (2, True)]


def test_wallet_topped_up_before_a_retry_is_charged_by_the_retry(catalogue):
    user, sub = _subscribed_then_broke(catalogue, utc(2026, 7, 1, 9))
    with _at(utc(2026, 8, 1, 9, 1)):
        services.run_due()
    fund(user, "25")
    with _at(utc(2026, 8, 2, 9, 1)):
        services.run_due()
    assert [i.status for i in _cycle_invoices(user)] == [InvoiceStatus.PAID, InvoiceStatus.PAID]
    db.session.refresh(sub)
    assert sub.status == S.ACTIVE and balance(user) == 0


def test_renewals_catch_up_after_downtime_one_invoice_per_period(catalogue):
    user = student("200")
    with _at(utc(2026, 1, 31, 12)):
        sub = services.subscribe(user, catalogue["pro"].id)
    # No job ran for three and a half months.
    with _at(utc(2026, 5, 15)):
        services.run_due()
        services.run_due()  # and a retried run adds nothing
    starts = [i.period_start for i in _cycle_invoices(user)]
    assert starts == [utc(2026, 1, 31, 12), utc(2026, 2, 28, 12), utc(2026, 3, 31, 12), utc(2026, 4, 30, 12)]
    db.session.refresh(sub)
    assert sub.current_period_end == utc(2026, 5, 31, 12)
    assert balance(user) == Decimal("100.00")


def test_the_period_unique_key_refuses_a_second_invoice_for_one_period(catalogue):
    from sqlalchemy.exc import IntegrityError

    user = student("100")
    sub = services.subscribe(user, catalogue["pro"].id)
    [first] = _cycle_invoices(user)
    with pytest.raises(IntegrityError), db.session.begin_nested():
        db.session.add(Invoice(user_id=user.id, subscription_id=sub.id, number="INV-1999-000001",
                               reason=InvoiceReason.CYCLE, status=InvoiceStatus.OPEN, currency="USD",
                               total=Decimal("25.00"), period_start=first.period_start, period_end=first.period_end,
                               due_at=first.due_at, next_attempt_at=first.due_at))
        db.session.flush()


def test_two_years_of_renewals_failures_retries_and_month_ends(catalogue):
    """Started 31 January 2027 on Pro at 25.00; the job runs once a day for two years (through
    the leap February of 2028). The wallet runs dry in month 6 and is topped up on the 3rd day of
    the dunning; it runs dry again in month 20 and stays dry: canceled after the last retry."""
    user = student("25.00")
    start = utc(2027, 1, 31, 7)
    with _at(start):
        sub = services.subscribe(user, catalogue["pro"].id)
    fund(user, "125.00")  # months 2 to 6
    day = start
    refilled = dry_again = False
    while day < utc(2029, 2, 1):
        day += timedelta(days=1)
        with _at(day):
            services.run_due()
        db.session.refresh(sub)
        if sub.status == S.PAST_DUE and not refilled and day >= sub.past_due_since + timedelta(days=2):
            fund(user, "325.00")  # the missed month and twelve more
            refilled = True
        if sub.status == S.CANCELED:
            dry_again = True
            break
    assert refilled and dry_again
    invoices = _cycle_invoices(user)
    # One invoice per period, every period start on the anchor day clamped to the month.
    expected_days = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
    for invoice in invoices:
        start_day = invoice.period_start
        wanted = 29 if (start_day.year, start_day.month) == (2028, 2) else expected_days[start_day.month]
        assert start_day.day == wanted and start_day.hour == 7, invoice.period_start
    assert len({i.period_start for i in invoices}) == len(invoices)
    paid = [i for i in invoices if i.status == InvoiceStatus.PAID]
    # 1 + 5 (first funding) + 13 (the refill) paid; the 20th uncollectible.
    assert len(paid) == 19
    assert invoices[-1].status == InvoiceStatus.UNCOLLECTIBLE
    assert invoices[-1].period_start == utc(2028, 8, 31, 7)
    assert any(i.period_start == utc(2028, 2, 29, 7) for i in invoices)
    assert balance(user) == 0
    assert db.session.scalar(select(func.count()).select_from(Email).where(
        Email.user_id == user.id, Email.template == "billing_restored")) == 1
    assert ledger.verify().ok


def test_the_job_is_registered_with_the_queue_on_a_schedule():
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    assert "portal.money.billing.tasks.run_billing" in job_app.tasks
    schedules = {p.task.name: p.cron for p in job_app.periodic_registry.periodic_tasks.values()}
    assert schedules["portal.money.billing.tasks.run_billing"] == "*/5 * * * *"


def test_the_job_renews_and_charges_in_one_run(catalogue, app):
    from portal.money.billing import tasks

    user = student("50.00")
    with _at(utc(2026, 10, 31, 9)):
        services.subscribe(user, catalogue["pro"].id)
    with _at(utc(2026, 11, 30, 9, 2)):
        counts = tasks.run_billing(0)  # as the worker runs it: its own app context, as system:worker
    # Other tests' committed subscriptions may be renewed by the same run: count this student's.
    assert counts["renewals"]["invoices"] >= 1 and counts["charges"]["paid"] >= 1
    assert [(i.period_start, i.status) for i in _cycle_invoices(user)] == [
        (utc(2026, 10, 31, 9), InvoiceStatus.PAID), (utc(2026, 11, 30, 9), InvoiceStatus.PAID)]
    assert balance(user) == 0


def test_bad_retry_settings_are_refused_with_a_message(app, monkeypatch):
    for bad in ("1,x", "3,1", "0,2", "1,1"):
        monkeypatch.setitem(app.config, "BILLING_RETRY_DAYS", bad)
        with pytest.raises(ValueError, match="BILLING_RETRY_DAYS"):
            services.retry_days()
    monkeypatch.setitem(app.config, "BILLING_RETRY_DAYS", "2, 4")
    assert services.retry_days() == [2, 4]
    monkeypatch.setitem(app.config, "BILLING_AFTER_FINAL_FAILURE", "explode")
    with pytest.raises(ValueError, match="cancel or downgrade"):
        services.after_final_failure()
