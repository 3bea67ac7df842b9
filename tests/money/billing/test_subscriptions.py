"""Subscribing, plan versions, changing plan with proration, canceling and resuming."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from portal.db import db
from portal.errors import Forbidden
from portal.money.billing import services
from portal.money.billing.models import (
    Invoice,
    InvoiceLine,
    InvoiceReason,
    InvoiceStatus,
    PlanStatus,
    SubscriptionStatus,
)
from portal.money.billing.states import ForbiddenMove, move_invoice, move_subscription
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction, TransactionType
from tests.factories import create_user
from tests.money.billing.helpers import balance, plans, student, utc

S = SubscriptionStatus


@pytest.fixture
def catalogue():
    return plans()


def _invoices(user) -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).where(Invoice.user_id == user.id).order_by(Invoice.number)))


def test_subscribing_to_a_paid_plan_without_trial_invoices_and_charges_the_wallet(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 1, 31, 10), tick=False):
        sub = services.subscribe(user, catalogue["pro"].id)
    assert sub.status == S.ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 1, 31, 10), utc(2026, 2, 28, 10))
    assert sub.anchor_day == 31
    [invoice] = _invoices(user)
    assert invoice.status == InvoiceStatus.PAID and invoice.total == Decimal("25.00")
    assert invoice.number.startswith("INV-2026-")
    assert balance(user) == Decimal("75.00")
    with ledger.as_ledger():
        [tx] = db.session.scalars(select(Transaction).where(Transaction.debit_user_id == user.id,
                                                            Transaction.type == TransactionType.SUBSCRIPTION)).all()
    assert tx.amount == Decimal("25.00") and tx.details["invoice_number"] == invoice.number


def test_a_refused_first_charge_subscribes_nothing(catalogue):
    user = student("5")
    with pytest.raises(ledger.InsufficientFunds, match="Not enough money"):
        services.subscribe(user, catalogue["pro"].id)
    assert services.live_subscription(user.id) is None
    assert _invoices(user) == []
    assert balance(user) == Decimal("5.00")


def test_trial_first_then_the_first_invoice_at_its_end_once_per_student(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 3, 1, 12), tick=False):
        sub = services.subscribe(user, catalogue["plus"].id)
    assert sub.status == S.TRIALING and sub.trial_end == utc(2026, 3, 15, 12)
    assert _invoices(user) == []
    with time_machine.travel(utc(2026, 3, 15, 12, 5), tick=False):
        services.run_due()
    db.session.refresh(sub)
    assert sub.status == S.ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 3, 15, 12), utc(2026, 4, 15, 12))
    [invoice] = _invoices(user)
    assert invoice.status == InvoiceStatus.PAID and invoice.total == Decimal("10.00")
    # A second subscription after canceling gets no second trial.
    services.cancel(user, now=True)
    again = services.subscribe(user, catalogue["plus"].id)
    assert again.status == S.ACTIVE and again.trial_end is None


def test_subscribing_twice_is_refused_with_a_message(catalogue):
    user = student("100")
    services.subscribe(user, catalogue["pro"].id)
    with pytest.raises(services.AlreadySubscribed, match="already have a subscription"):
        services.subscribe(user, catalogue["plus"].id)


def test_wrong_and_archived_plans_and_non_students_are_refused(catalogue):
    user = student("100")
    with pytest.raises(services.PlanUnavailable, match="no such plan") as wrong:
        services.subscribe(user, "not-a-uuid")
    assert wrong.value.field == "plan"
    admin = create_user("admin")
    services.archive_plan(admin, catalogue["pro"].id)
    with pytest.raises(services.PlanUnavailable, match="no longer offered"):
        services.subscribe(user, catalogue["pro"].id)
    with pytest.raises(Forbidden):
        services.subscribe(create_user("faculty"), catalogue["plus"].id)


def test_a_price_change_is_a_new_version_and_subscribers_keep_theirs(catalogue):
    admin = create_user("admin")
    user = student("100")
    services.subscribe(user, catalogue["pro"].id)
    v2 = services.new_plan_version(admin, catalogue["pro"].code, services.PlanInput(name="Pro", price="30.00"))
    db.session.refresh(catalogue["pro"])
    assert (v2.version, v2.status, catalogue["pro"].status) == (2, PlanStatus.ACTIVE, PlanStatus.ARCHIVED)
    assert services.live_subscription(user.id).plan_id == catalogue["pro"].id


def test_plan_form_errors_name_their_field():
    admin = create_user("admin")
    cases = [(dict(name="", price="1"), "name"), (dict(name="X", price="abc"), "price"),
             (dict(name="X", price="1.001"), "price"), (dict(name="X", price="1", currency="XYZ"), "currency"),
             (dict(name="X", price="1", interval="weekly"), "interval"),
             (dict(name="X", price="1", trial_days="400"), "trial_days"),
             (dict(name="X", price="1", entitlements={"flying": True}), "entitlements"),
             (dict(name="X", price="1", entitlements={"reward_multiplier": "0.5"}), "entitlements")]
    for fields, field in cases:
        with pytest.raises(services.PlanInvalid) as refused:
            services.create_plan(admin, "formtest", services.PlanInput(**fields))
        assert refused.value.field == field, fields
    with pytest.raises(Forbidden):
        services.create_plan(create_user("student"), "formtest", services.PlanInput(name="X", price="1"))


def test_upgrade_now_is_prorated_to_the_day_invoiced_and_charged(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 3, 1, 8), tick=False):
        services.subscribe(user, catalogue["pro"].id)  # no trial on Pro: 25.00 paid
        sub = services.live_subscription(user.id)
        services.cancel(user)  # set to cancel; an upgrade will clear it
    # Down to Plus at the period end first (nothing charged), then back up is refused as "same plan".
    with time_machine.travel(utc(2026, 3, 5), tick=False):
        preview = services.preview_change(user, catalogue["plus"].id)
        assert preview.when == "period_end" and preview.total == 0
    # Pro -> Pro Yearly on 11 March: 21 of 31 days left. Credit 25.00 x 21 / 31 = 16.935... -> 16.94;
    # the year 250.00 from today: 233.06 due now.
    with time_machine.travel(utc(2026, 3, 11, 15), tick=False):
        preview = services.preview_change(user, catalogue["proyear"].id)
        assert preview.when == "now"
        assert [line.amount for line in preview.lines] == [Decimal("-16.94"), Decimal("250.00")]
        assert preview.total == Decimal("233.06")
        with pytest.raises(ledger.InsufficientFunds):
            services.change_plan(user, catalogue["proyear"].id)  # 75.00 left: refused, nothing changes
        db.session.refresh(sub)
        assert sub.plan_id == catalogue["pro"].id and sub.cancel_at_period_end
    assert balance(user) == Decimal("75.00")


def test_an_upgrade_to_another_interval_says_a_new_period_starts(catalogue):
    """Moving from a monthly plan to a yearly one starts a new period today, so the preview must
    not promise the old renewal date."""
    user = student("400")
    with time_machine.travel(utc(2026, 3, 1, 8), tick=False):
        services.subscribe(user, catalogue["pro"].id)
    with time_machine.travel(utc(2026, 3, 11, 15), tick=False):
        preview = services.preview_change(user, catalogue["proyear"].id)
    assert preview.when == "now"
    assert preview.text.endswith("today; a new billing period starts today.")
    assert "renewal date stays the same" not in preview.text


def test_upgrade_plus_to_pro_charges_the_hand_worked_figures(catalogue):
    user = student("100")
    admin = create_user("admin")
    # Plus without a trial for this test: a version with 0 trial days.
    plus = services.new_plan_version(admin, catalogue["plus"].code,
                                     services.PlanInput(name="Plus", price="10.00", trial_days=0))
    with time_machine.travel(utc(2026, 3, 1, 8), tick=False):
        services.subscribe(user, plus.id)
    with time_machine.travel(utc(2026, 3, 11, 15), tick=False):
        done = services.change_plan(user, catalogue["pro"].id)
    # 21 of 31 days: credit -6.77, charge 16.93, total 10.16 (test_proration's first example).
    assert done.total == Decimal("10.16")
    assert done.text == "You move to Pro now and pay 10.16 USD today; your renewal date stays the same."
    change = db.session.scalar(select(Invoice).where(Invoice.user_id == user.id,
                                                     Invoice.reason == InvoiceReason.CHANGE))
    lines = db.session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == change.id)
                               .order_by(InvoiceLine.position)).all()
    assert [(line.kind.value, line.amount) for line in lines] == [("proration_credit", Decimal("-6.77")),
                                                                  ("proration_debit", Decimal("16.93"))]
    assert change.status == InvoiceStatus.PAID and change.total == Decimal("10.16")
    assert balance(user) == Decimal("100") - Decimal("10.00") - Decimal("10.16")
    sub = services.live_subscription(user.id)
    assert sub.plan_id == catalogue["pro"].id
    assert sub.current_period_end == utc(2026, 4, 1, 8)  # the renewal date stays


def test_downgrade_happens_at_the_period_end(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 5, 31, 9), tick=False):
        services.subscribe(user, catalogue["pro"].id)
    with time_machine.travel(utc(2026, 6, 10), tick=False):
        done = services.change_plan(user, catalogue["plus"].id)
    assert done.when == "period_end" and done.effective_at == utc(2026, 6, 30, 9)
    sub = services.live_subscription(user.id)
    assert sub.plan_id == catalogue["pro"].id and sub.scheduled_plan_id == catalogue["plus"].id
    with time_machine.travel(utc(2026, 6, 30, 9), tick=False):
        services.run_due()
    db.session.refresh(sub)
    assert sub.plan_id == catalogue["plus"].id and sub.scheduled_plan_id is None
    assert (sub.current_period_start, sub.current_period_end) == (utc(2026, 6, 30, 9), utc(2026, 7, 31, 9))
    assert [i.total for i in _invoices(user)] == [Decimal("25.00"), Decimal("10.00")]
    assert balance(user) == Decimal("65.00")


def test_cancel_at_period_end_resume_and_end(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 1, 10), tick=False):
        sub = services.subscribe(user, catalogue["pro"].id)
        services.cancel(user)
        assert sub.cancel_at_period_end
        services.resume(user)
        assert not sub.cancel_at_period_end
        with pytest.raises(services.BillingError, match="not set to cancel"):
            services.resume(user)
        services.cancel(user)
    with time_machine.travel(utc(2026, 2, 10, 0, 1), tick=False):
        services.run_due()
    db.session.refresh(sub)
    assert sub.status == S.CANCELED and sub.end_reason == "period_end" and sub.ended_at == utc(2026, 2, 10)
    assert len(_invoices(user)) == 1  # no invoice for a period that never began


def test_cancel_now_returns_the_unused_days_to_the_wallet(catalogue):
    user = student("100")
    with time_machine.travel(utc(2026, 4, 1, 6), tick=False):
        services.subscribe(user, catalogue["pro"].id)  # 25.00 for 1 to 31 April (30 days)
    # On 21 April 10 days are left (21..30): 25.00 x 10 / 30 = 8.333... -> 8.33 back.
    with time_machine.travel(utc(2026, 4, 21, 18), tick=False):
        sub = services.cancel(user, now=True)
    assert sub.status == S.CANCELED and sub.end_reason == "requested"
    assert balance(user) == Decimal("75.00") + Decimal("8.33")
    with ledger.as_ledger():
        [refund] = db.session.scalars(select(Transaction).where(Transaction.credit_user_id == user.id,
                                                                Transaction.type == TransactionType.REFUND)).all()
    assert refund.amount == Decimal("8.33")
    assert ledger.verify().ok


def test_forbidden_moves_raise(catalogue):
    user = student("100")
    sub = services.subscribe(user, catalogue["pro"].id)
    [invoice] = _invoices(user)
    with pytest.raises(ForbiddenMove):
        move_invoice(invoice, InvoiceStatus.OPEN)  # paid is final
    services.cancel(user, now=True)
    with pytest.raises(ForbiddenMove):
        move_subscription(sub, S.ACTIVE)  # canceled is final


def test_invoice_numbers_run_without_gaps_per_year_and_restart_each_year(catalogue):
    with time_machine.travel(utc(2031, 12, 31, 23), tick=False):
        first = [services.next_invoice_number() for _ in range(3)]
    with time_machine.travel(utc(2032, 1, 1, 0, 1), tick=False):
        new_year = services.next_invoice_number()
    numbers = [int(n.rsplit("-", 1)[1]) for n in first]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    assert all(n.startswith("INV-2031-") for n in first)
    assert new_year.startswith("INV-2032-")


def test_a_voided_invoice_keeps_its_number_and_the_next_is_new(catalogue):
    user = student()
    admin = create_user("admin")
    with time_machine.travel(utc(2026, 7, 1), tick=False):
        services.subscribe(user, catalogue["plus"].id)  # a trial
    with time_machine.travel(utc(2026, 7, 15, 0, 1), tick=False):
        services.run_due()  # the first invoice cannot be paid: open, retried
    [invoice] = _invoices(user)
    services.void_invoice(admin, invoice.id)
    assert invoice.status == InvoiceStatus.VOID and invoice.voided_at is not None
    following = services.next_invoice_number()
    assert int(following.rsplit("-", 1)[1]) == int(invoice.number.rsplit("-", 1)[1]) + 1
    assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.number == invoice.number)) == 1


def test_cancel_now_after_an_unbilled_renewal_bills_it_first_and_never_returns_unpaid_time(catalogue):
    user = student("25.00")
    with time_machine.travel(utc(2026, 8, 1), tick=False):
        services.subscribe(user, catalogue["pro"].id)
    # The job has not run since 1 September; the wallet is empty. Canceling on 5 September first
    # bills the new period (its charge fails: past due), then ends it with nothing returned.
    with time_machine.travel(utc(2026, 9, 5), tick=False):
        sub = services.cancel(user, now=True)
    assert sub.status == S.CANCELED
    statuses = sorted(i.status.value for i in _invoices(user))
    assert statuses == ["paid", "void"]
    assert balance(user) == 0
    with ledger.as_ledger():
        assert not db.session.scalars(select(Transaction).where(Transaction.credit_user_id == user.id,
                                                                Transaction.type == TransactionType.REFUND)).all()


def test_subscribers_of_an_old_version_move_to_the_new_price_at_their_next_renewal_with_notice(catalogue):
    from portal.platform.email.models import Email

    admin = create_user("admin")
    user, canceling = student("100"), student("100")
    with time_machine.travel(utc(2026, 1, 15, 9), tick=False):
        services.subscribe(user, catalogue["pro"].id)
        services.subscribe(canceling, catalogue["pro"].id)
        services.cancel(canceling)
    with time_machine.travel(utc(2026, 1, 20), tick=False):
        v2 = services.new_plan_version(admin, catalogue["pro"].code, services.PlanInput(name="Pro", price="30.00"))
        assert services.move_to_latest_version(admin, catalogue["pro"].code) == 1
        assert services.move_to_latest_version(admin, catalogue["pro"].code) == 0  # told once
    [notice] = db.session.scalars(select(Email).where(Email.user_id == user.id,
                                                      Email.template == "billing_price_change")).all()
    assert "30.00" in notice.subject and "15 Feb 2026" in notice.subject
    with time_machine.travel(utc(2026, 2, 15, 9, 1), tick=False):
        services.run_due()
    sub = services.live_subscription(user.id)
    assert sub.plan_id == v2.id
    assert [i.total for i in _invoices(user)] == [Decimal("25.00"), Decimal("30.00")]
    with pytest.raises(Forbidden):
        services.move_to_latest_version(user, catalogue["pro"].code)
