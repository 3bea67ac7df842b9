"""Finance's journey through payments: find a payment by its payer, refund part of it through the
review and confirmation steps, reject a course refund request in the queue, run reconciliation
and replay a webhook that failed. The payment provider is the in-memory one of the payment
tests (the live server runs in this process), so nothing leaves the machine."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import address, log_in
from tests.factories import create_user


@pytest.fixture
def fake(monkeypatch):
    from portal.money.payments import services
    from tests.money.payments.fakes import FakeProvider

    fakes = {"sandbox": FakeProvider("sandbox"), "stripe": FakeProvider("stripe")}
    monkeypatch.setattr(services, "get_provider", lambda name: fakes[name])
    return fakes["sandbox"]


@pytest.fixture
def finance_case(db_as_tests, fake):
    from portal.db.base import utcnow
    from portal.money.payments import services
    from portal.money.payments.models import Refund, RefundState, WebhookEvent, WebhookOutcome
    from portal.money.payments.providers.base import PaymentState
    from tests.helpers import as_user
    from tests.money.factories import fund
    from tests.money.payments.helpers import paid_course, succeeded_top_up, top_up

    with db_as_tests() as session:
        admin = create_user("admin", full_name="Amara Okafor", email=address("amara"))
        payer = create_user("student", full_name="Nia Achieng", email=address("nia"))
        payment = succeeded_top_up(fake, payer, "40.00")
        # A course bought from the wallet whose refund request waits for finance.
        buyer = create_user("student", full_name="Tomas Berg", email=address("tomas"))
        course = paid_course("19.00", title=f"Budgeting {uuid.uuid4().hex[:6]}")
        fund(buyer, "50")
        with as_user(buyer):
            bought = services.pay_course(buyer, course, idempotency_key=uuid.uuid4().hex, from_wallet=True)
        refund = Refund(payment_id=bought.id, user_id=buyer.id, amount=Decimal("19.00"), currency="USD",
                        reason="Not what I expected", state=RefundState.REQUESTED, requested_by_id=buyer.id,
                        idempotency_key=f"azora-refund-{uuid.uuid4().hex}")
        session.add(refund)
        # A top-up the provider settled whose webhook failed to apply: the portal still waits.
        late = top_up(payer, "12.00")
        fake.complete(late.provider_ref, PaymentState.SUCCEEDED)
        hook = WebhookEvent(provider="sandbox", event_id=f"evt_{uuid.uuid4().hex[:16]}", event_type="payment.updated",
                            received_at=utcnow(), verified=True,
                            payload={"type": "payment.updated", "data": {"id": late.provider_ref, "status": "succeeded"}},
                            headers={}, outcome=WebhookOutcome.FAILED, detail="OperationalError: the database restarted",
                            payment_id=late.id, attempts=1)
        session.add(hook)
        session.flush()
        case = {"admin": admin.email, "payer": payer.email, "payment_id": str(payment.id),
                "refund_id": str(refund.id), "hook": hook.event_id}
    return case


def test_finance_refunds_part_of_a_payment_decides_a_request_reconciles_and_replays(new_page, finance_case):
    page = new_page()
    log_in(page, finance_case["admin"], "Amara")

    # From the money dashboard to the payments list; find the payment by its payer.
    page.goto("/wallet/admin")
    page.get_by_role("navigation", name="Money administration").get_by_role("button", name="Payments").click()
    expect(page.get_by_role("heading", name="Payments", level=1)).to_be_visible()
    page.get_by_label("Payer (e-mail or name)").fill(finance_case["payer"])
    page.get_by_role("button", name="Search").click()
    row = page.locator(f"#payment-{finance_case['payment_id']}")
    expect(row).to_contain_text("40.00 USD")
    expect(page).to_have_url(re.compile(r"user="))
    row.get_by_role("link").click()

    # The payment's page: its timeline, then a partial refund, reviewed and confirmed.
    expect(page.get_by_role("heading", name="Top-up of 40.00 USD")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Timeline"))).to_be_visible()
    expect(page.get_by_label("Amount to refund")).to_have_value("40.00")
    page.get_by_label("Amount to refund").fill("15")
    page.get_by_label("Reason").fill("Charged twice for one top-up")
    page.get_by_role("button", name="Review the refund").click()
    expect(page.locator("#refund-panel")).to_contain_text("Refund 15.00 USD")
    page.get_by_role("button", name="Confirm the refund").click()
    expect(page.locator(".flash")).to_contain_text("Refund of 15.00 USD sent to the provider")
    expect(page.locator("#refund-panel input[name=amount]")).to_have_value("25.00")

    # The refunds queue: reject the waiting course refund with a reason.
    page.get_by_role("navigation", name="Payments administration").get_by_role("link", name="Refunds").click()
    queued = page.locator(f"#refund-row-{finance_case['refund_id']}")
    expect(queued).to_contain_text("Not what I expected")
    queued.get_by_placeholder("Reason (required)").fill("More than half of the course was studied")
    queued.get_by_role("button", name="Reject").click()
    expect(page.locator(f"#refund-row-{finance_case['refund_id']}")).to_contain_text("Rejected")

    # Reconciliation: run it now; the late top-up shows as a difference.
    page.get_by_role("navigation", name="Payments administration").get_by_role("link", name="Reconciliation").click()
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#reconciliation")).to_contain_text("Just now.")
    expect(page.locator("#reconciliation")).to_contain_text("The provider says succeeded")

    # The webhook log: the failed message, replayed.
    page.get_by_role("navigation", name="Payments administration").get_by_role("link", name="Webhook log").click()
    page.get_by_label("Outcome").select_option("failed")
    page.locator("tr", has_text=finance_case["hook"]).get_by_role("link").click()
    expect(page.get_by_role("main")).to_contain_text(finance_case["hook"])
    page.get_by_role("button", name="Replay this message").click()
    expect(page.locator(".flash")).to_contain_text("Replayed: the message was applied.")
