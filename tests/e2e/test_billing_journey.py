"""The billing journey, in a real browser: a student starts a free trial, the trial turns into
a paid month (the billing job), they upgrade with the proration lines shown before confirming,
see the invoice, the next renewal fails on an empty wallet (the clock moved to the renewal in
the test process, then the job run), they get the past-due banner and the e-mail, pay and are
restored.

Plans and people are made through the services (committed: e2e rows are not rolled back), with
plan codes unique to the run.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.money.billing import services
from portal.money.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from portal.platform.email.models import Email
from tests.e2e.helpers import address, log_in
from tests.factories import create_user
from tests.money.billing.helpers import fund, plans

pytestmark = pytest.mark.e2e


@pytest.fixture
def billing_case(db_as_tests):
    suffix = "_" + uuid.uuid4().hex[:6]
    with db_as_tests():
        catalogue = plans(suffix, with_free=False)
        student = create_user("student", full_name="Lena Sorensen", email=address("lena"))
        fund(student, "40.00")
        case = {"student": student.email, "student_id": student.id, "plus": catalogue["plus"].name,
                "plus_id": str(catalogue["plus"].id), "pro_id": str(catalogue["pro"].id)}
    yield case
    with db_as_tests():  # the run's plans are no longer offered to later journeys
        admin = create_user("admin")
        for key in ("plus_id", "pro_id"):
            services.archive_plan(admin, case[key])


def _subscription(user_id) -> Subscription:
    return db.session.scalar(select(Subscription).where(Subscription.user_id == user_id,
                                                        Subscription.status != SubscriptionStatus.CANCELED))


def test_trial_upgrade_invoice_failed_renewal_banner_email_pay_and_restored(new_page, billing_case, db_as_tests):
    page = new_page()
    log_in(page, billing_case["student"], "Lena")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Plan & billing").click()
    expect(page.get_by_role("heading", name="Plan & billing", level=1)).to_be_visible()

    # Start the Plus trial (the run's Plus plan: its card holds the plan id in its form).
    card = page.locator("article.plan-card", has=page.locator(f'input[value="{billing_case["plus_id"]}"]'))
    expect(card).to_contain_text("14-day free trial")
    card.get_by_role("button", name="Start free trial").click()
    expect(page.get_by_role("main")).to_contain_text("trial has started")
    expect(page.get_by_role("main")).to_contain_text("Your plan: Plus")

    # The trial ends: its window is moved into the past and the billing job turns it into a
    # paid month (10.00 USD from the wallet).
    with db_as_tests():
        sub = _subscription(billing_case["student_id"])
        now = utcnow()
        sub.anchor_at = sub.current_period_start = now - timedelta(days=14)
        sub.trial_end = sub.current_period_end = now - timedelta(minutes=1)
        db.session.flush()
        services.run_due()
        db.session.refresh(sub)
        assert sub.status == SubscriptionStatus.ACTIVE

    # Upgrade to Pro: the confirmation shows the credit for the unused Plus days first.
    page.reload()
    pro = page.locator("article.plan-card", has=page.locator(f'input[value="{billing_case["pro_id"]}"]'))
    pro.get_by_role("button", name=re.compile(r"^Switch to Pro")).click()
    expect(page.get_by_role("heading", name="Switch to Pro?")).to_be_visible()
    expect(page.locator("tr.line-proration_credit")).to_contain_text(re.compile(r"Unused time on Plus: \d+ of \d+ days"))
    expect(page.locator("tr.line-proration_debit")).to_contain_text("Remaining time on Pro")
    pay = page.get_by_role("button", name=re.compile(r"^Pay [\d.]+ USD and switch"))
    charged = Decimal(re.search(r"Pay ([\d.]+) USD", pay.inner_text()).group(1))
    pay.click()
    expect(page.get_by_role("main")).to_contain_text("You are now on Pro")

    # The invoice of the change, its lines explained.
    page.locator("table.invoices tbody tr").first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Invoice INV-\d{4}-\d{6}"))).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("A change of plan")
    expect(page.locator("tr.line-proration_credit")).to_be_visible()
    expect(page.locator("tfoot")).to_contain_text(f"{charged} USD")
    page.get_by_role("link", name="Plan & billing").click()
    expect(page.get_by_role("heading", name="Plan & billing", level=1)).to_be_visible()

    # The renewal: 40 - 10 - the upgrade leaves less than Pro's 25.00; the job's charge fails.
    # The period is moved into the past rather than the clock forward: the portal under test
    # serves in this process, and a request served a month ahead would find the login expired.
    with db_as_tests():
        sub = _subscription(billing_case["student_id"])
        shift = sub.current_period_end - utcnow() + timedelta(minutes=5)
        sub.anchor_at -= shift
        sub.current_period_start -= shift
        sub.current_period_end -= shift
        db.session.flush()
        services.run_due()
        db.session.refresh(sub)
        assert sub.status == SubscriptionStatus.PAST_DUE
        [mail] = db.session.scalars(select(Email).where(Email.user_id == billing_case["student_id"],
                                                        Email.template == "billing_payment_failed")).all()
        assert mail.to_address == billing_case["student"] and "25.00 USD" in mail.body_text

    page.reload()
    banner = page.locator(".billing-past-due")
    expect(banner).to_contain_text("Your payment failed.")
    expect(page.get_by_role("main")).to_contain_text("Past due")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.locator(".billing-past-due")).to_contain_text("Your payment failed.")

    # Money arrives; "Pay now" pays the invoice and the plan is active again at once.
    with db_as_tests():
        fund(db.session.get(User, billing_case["student_id"]), "30.00")
    page.locator(".billing-past-due").get_by_role("button", name="Pay now").click()
    page.get_by_role("button", name="Pay 25.00 USD now").click()
    expect(page.get_by_role("main")).to_contain_text("is paid. Thank you.")
    page.get_by_role("link", name="Plan & billing").click()
    expect(page.get_by_role("main")).not_to_contain_text("Your payment failed.")
    expect(page.locator("#current-head")).to_contain_text("Active")
    with db_as_tests():
        unpaid = db.session.scalars(select(Invoice).where(Invoice.user_id == billing_case["student_id"],
                                                          Invoice.status == InvoiceStatus.OPEN)).all()
        assert unpaid == []
        assert db.session.scalar(select(Email.id).where(Email.user_id == billing_case["student_id"],
                                                        Email.template == "billing_restored")) is not None
