"""The student's "Plan & billing" pages: compare and subscribe (trial first), the current plan,
upgrades with the proration shown before confirming, downgrades and cancels at the period end,
cancel now with the credit shown first, resume, invoices (list, page, PDF), "Pay now" for a
failed charge; double submits, malformed input, other students' invoices, every role, and the
statement budget."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.billing import services
from portal.money.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from portal.money.currency import format_amount
from portal.platform.email.models import Email
from tests.factories import create_user
from tests.money.billing.helpers import balance, fund, plans

#: An id no row has (fixed, so every test process collects the same test ids).
UNKNOWN_ID = uuid.UUID("00000000-0000-4000-8000-00000000dead")

HX = {"HX-Request": "true"}
S = SubscriptionStatus


@pytest.fixture
def catalogue():
    return plans("_pg")


@pytest.fixture
def ada(login_as):
    return login_as("student", full_name="Ada Lovelace")


def body(response) -> str:
    return response.get_data(as_text=True)


def key_in(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def subscriptions(user) -> list[Subscription]:
    return list(db.session.scalars(select(Subscription).where(Subscription.user_id == user.id)
                                   .execution_options(populate_existing=True)))


def invoices(user) -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).where(Invoice.user_id == user.id).order_by(Invoice.number)
                                   .execution_options(populate_existing=True)))


def subscribe(client, plan, key=None):
    key = key or key_in(body(client.get("/wallet/billing")))
    return client.post("/wallet/billing/subscribe", data={"plan": str(plan.id), "idempotency_key": key})


# ------------------------------------------------------------------ comparing and subscribing


def test_the_page_compares_plans_in_words_with_price_and_trial(client, ada, catalogue):
    response = client.get("/wallet/billing")
    html = body(response)
    assert response.status_code == 200
    assert "Choose a plan" in html and "No invoices yet." in html
    plus = html.split('id="plan-plus_pg"')[1].split("</article>")[0]
    assert "10.00 USD</strong> a month" in plus
    assert "14-day free trial" in plus and "Start free trial" in plus
    assert "Unlimited questions to the tutor" in plus and "Earnings rewards ×1.5" in plus
    free = html.split('id="plan-free"')[1].split("</article>")[0]
    assert "3 questions to the tutor a day" in free and "without the language model" in free
    assert 'aria-current="page">Plan &amp; billing' in html


def test_subscribing_starts_the_trial_and_a_double_submit_makes_one_subscription(client, ada, catalogue):
    key = key_in(body(client.get("/wallet/billing")))
    first = subscribe(client, catalogue["plus"], key)
    assert first.status_code == 302 and first.headers["Location"].endswith("/wallet/billing")
    second = subscribe(client, catalogue["plus"], key)
    assert second.status_code == 302
    [sub] = subscriptions(ada)
    assert sub.status == S.TRIALING
    html = body(client.get("/wallet/billing"))
    assert "You had subscribed already; nothing was charged again." in html
    assert "Your plan: Plus" in html and "Free trial until" in html
    assert "Next invoice</dt><dd>10.00 USD on" in html


def test_subscribing_to_a_paid_plan_charges_once_for_two_tabs(client, ada, catalogue):
    fund(ada, "100")
    key = key_in(body(client.get("/wallet/billing")))
    assert subscribe(client, catalogue["pro"], key).status_code == 302
    assert subscribe(client, catalogue["pro"], key).status_code == 302
    other_tab = subscribe(client, catalogue["pro"])  # another page's key: refused, not charged
    assert other_tab.status_code == 409 and "You already have a subscription" in body(other_tab)
    assert len(subscriptions(ada)) == 1
    [invoice] = invoices(ada)
    assert invoice.status == InvoiceStatus.PAID and balance(ada) == Decimal("75.00")


def test_insufficient_funds_is_a_clear_message_and_subscribes_nothing(client, ada, catalogue):
    fund(ada, "5")
    response = subscribe(client, catalogue["pro"])
    assert response.status_code == 422
    assert "Not enough money" in body(response)
    assert subscriptions(ada) == [] and balance(ada) == Decimal("5.00")


@pytest.mark.parametrize("plan", ["", "not-a-uuid", str(UNKNOWN_ID), "x" * 5000, "archived"])
def test_wrong_and_archived_plans_are_clear_messages(client, ada, catalogue, plan):
    if plan == "archived":
        services.archive_plan(create_user("admin"), catalogue["pro"].id)
        plan = str(catalogue["pro"].id)
    response = subscribe(client, type("P", (), {"id": plan})())
    assert response.status_code == 422
    html = body(response)
    assert "There is no such plan." in html or "is no longer offered" in html
    assert subscriptions(ada) == []


def test_a_post_without_a_key_changes_nothing(client, ada, catalogue):
    response = client.post("/wallet/billing/subscribe", data={"plan": str(catalogue["plus"].id)})
    assert response.status_code == 400 and "reload the page" in body(response)
    assert subscriptions(ada) == []


# ------------------------------------------------------------------ changing plan


def test_an_upgrade_shows_the_proration_before_confirming_then_charges_once(client, ada, catalogue):
    fund(ada, "300")
    subscribe(client, catalogue["pro"])  # 25.00 paid for this month
    key = key_in(body(client.get("/wallet/billing")))
    review = client.post("/wallet/billing/change", data={"plan": str(catalogue["proyear"].id),
                                                         "idempotency_key": key})
    html = body(review)
    assert review.status_code == 200 and "Switch to Pro Yearly?" in html
    assert "a new yearly period starts today" in html and "Nothing has changed yet" in html
    assert "line-proration_credit" in html and "line-plan" in html
    assert re.search(r"Unused time on Pro: \d+ of \d+ days", html)
    total = re.search(r"Pay ([\d.]+ USD) and switch", html).group(1)
    assert subscriptions(ada)[0].plan_id == catalogue["pro"].id  # nothing changed yet
    assert len(invoices(ada)) == 1
    confirmed = {"plan": str(catalogue["proyear"].id), "idempotency_key": key, "confirmed": "1"}
    assert client.post("/wallet/billing/change", data=confirmed).status_code == 302
    assert client.post("/wallet/billing/change", data=confirmed).status_code == 302
    first, invoice = invoices(ada)
    assert format_amount(invoice.total, "USD") == total and invoice.status == InvoiceStatus.PAID
    assert invoice.total < Decimal("250.00")  # the unused Pro days were credited
    assert balance(ada) == Decimal("300") - first.total - invoice.total  # charged once
    assert subscriptions(ada)[0].plan_id == catalogue["proyear"].id
    page = body(client.get("/wallet/billing"))
    assert "This change was made already" in page


def test_a_downgrade_is_shown_as_at_the_period_end(client, ada, catalogue):
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    key = key_in(body(client.get("/wallet/billing")))
    review = body(client.post("/wallet/billing/change", data={"plan": str(catalogue["plus"].id),
                                                               "idempotency_key": key}))
    assert "You keep Pro until" in review and "then move to Plus" in review and "Confirm the change" in review
    client.post("/wallet/billing/change", data={"plan": str(catalogue["plus"].id), "idempotency_key": key,
                                                 "confirmed": "1"})
    html = body(client.get("/wallet/billing"))
    assert "You move to Plus (10.00 USD a month) on" in html
    assert "Next invoice</dt><dd>10.00 USD on" in html


def test_changing_without_a_subscription_or_to_the_same_plan_is_a_message(client, ada, catalogue):
    response = client.post("/wallet/billing/change", data={"plan": str(catalogue["pro"].id),
                                                           "idempotency_key": "k" * 20})
    assert response.status_code == 404
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    same = client.post("/wallet/billing/change", data={"plan": str(catalogue["pro"].id), "idempotency_key": "k" * 20})
    assert same.status_code == 422 and "You are on Pro already." in body(same)


# ------------------------------------------------------------------ canceling and resuming


def test_cancel_at_period_end_then_resume(client, ada, catalogue):
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    key = key_in(body(client.get("/wallet/billing")))
    client.post("/wallet/billing/cancel", data={"when": "period_end", "idempotency_key": key})
    html = body(client.get("/wallet/billing"))
    assert "Your plan ends on" in html and "Resume my plan" in html
    assert subscriptions(ada)[0].cancel_at_period_end
    key = key_in(html)
    client.post("/wallet/billing/resume", data={"idempotency_key": key})
    client.post("/wallet/billing/resume", data={"idempotency_key": key})  # double click
    assert not subscriptions(ada)[0].cancel_at_period_end
    assert "Your subscription continues" in body(client.get("/wallet/billing"))


def test_cancel_now_shows_the_credit_first_then_returns_it(client, ada, catalogue):
    fund(ada, "25")
    subscribe(client, catalogue["pro"])
    sub = subscriptions(ada)[0]
    credit = services.unused_credit(sub, utcnow())
    assert credit > 0
    key = key_in(body(client.get("/wallet/billing")))
    review = body(client.post("/wallet/billing/cancel", data={"when": "now", "idempotency_key": key}))
    assert "Cancel Pro now?" in review and f"{credit} USD" in review
    assert subscriptions(ada)[0].status == S.ACTIVE
    confirmed = {"when": "now", "idempotency_key": key, "confirmed": "1"}
    assert client.post("/wallet/billing/cancel", data=confirmed).status_code == 302
    client.post("/wallet/billing/cancel", data=confirmed)
    assert subscriptions(ada)[0].status == S.CANCELED
    assert balance(ada) == credit  # returned once


@pytest.mark.parametrize("data", [{"when": "tomorrow"}, {"when": "now", "confirmed": "1"}, {}])
def test_bad_cancels_never_500(client, ada, catalogue, data):
    response = client.post("/wallet/billing/cancel", data={**data, "idempotency_key": "k" * 20})
    assert 400 <= response.status_code < 500


def test_resume_when_not_canceling_is_a_message(client, ada, catalogue):
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    response = client.post("/wallet/billing/resume", data={"idempotency_key": "r" * 20})
    assert response.status_code == 422 and "not set to cancel" in body(response)


# ------------------------------------------------------------------ invoices, failure and paying


def _past_due(client, ada, catalogue):
    """Pro paid for a month, then a renewal the empty wallet cannot pay."""
    fund(ada, "25")
    subscribe(client, catalogue["pro"])
    sub = subscriptions(ada)[0]
    with time_machine.travel(sub.current_period_end + timedelta(minutes=5), tick=False):
        services.run_due()
    assert subscriptions(ada)[0].status == S.PAST_DUE
    return [i for i in invoices(ada) if i.status == InvoiceStatus.OPEN][0]


def test_a_failed_charge_shows_the_banner_and_pay_now_restores_once(client, ada, catalogue):
    unpaid = _past_due(client, ada, catalogue)
    assert db.session.scalar(select(func.count()).select_from(Email).where(
        Email.user_id == ada.id, Email.template == "billing_payment_failed")) == 1
    for path in ("/wallet/billing", "/wallet/", "/dashboard"):
        html = body(client.get(path))
        assert "Your payment failed." in html, path
        assert f"Invoice {unpaid.number} for 25.00 USD is unpaid" in html, path
        assert f'href="/wallet/billing/invoices/{unpaid.id}"' in html and "Pay now" in html
    billing_page = body(client.get("/wallet/billing"))
    assert "Pay the unpaid invoice first; then you can change plan." in billing_page
    assert "Switch to" not in billing_page
    page = body(client.get(f"/wallet/billing/invoices/{unpaid.id}"))
    assert "Pay 25.00 USD now" in page and "failed" in page
    key = key_in(page)
    refused = client.post(f"/wallet/billing/invoices/{unpaid.id}/pay", data={"idempotency_key": key})
    assert refused.status_code == 422 and "Not enough money" in body(refused)
    fund(ada, "30")
    assert client.post(f"/wallet/billing/invoices/{unpaid.id}/pay", data={"idempotency_key": key}).status_code == 302
    assert client.post(f"/wallet/billing/invoices/{unpaid.id}/pay", data={"idempotency_key": key}).status_code == 302
    assert client.post(f"/wallet/billing/invoices/{unpaid.id}/pay",
                       data={"idempotency_key": "another-tab-key-123"}).status_code == 302
    assert balance(ada) == Decimal("5.00")  # paid once
    assert subscriptions(ada)[0].status == S.ACTIVE
    assert "Your payment failed." not in body(client.get("/wallet/billing"))


def test_invoice_page_lists_lines_and_the_pdf_downloads(client, ada, catalogue):
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    [invoice] = invoices(ada)
    listing = body(client.get("/wallet/billing/invoices"))
    assert invoice.number in listing
    html = body(client.get(f"/wallet/billing/invoices/{invoice.id}"))
    assert f"Invoice {invoice.number}" in html and "Pro (25.00 USD a month)" in html
    assert "Paid</span>" in html and "Pay 25.00 USD" not in html
    pdf = client.get(f"/wallet/billing/invoices/{invoice.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert invoice.number in pdf.headers["Content-Disposition"]


def test_another_students_invoice_is_not_found(client, catalogue, login_as):
    owner = create_user("student")
    fund(owner, "100")
    services.subscribe(owner, catalogue["pro"].id)
    [invoice] = invoices(owner)
    login_as("student")
    for path in (f"/wallet/billing/invoices/{invoice.id}", f"/wallet/billing/invoices/{invoice.id}.pdf"):
        assert client.get(path).status_code == 404
    assert client.post(f"/wallet/billing/invoices/{invoice.id}/pay",
                       data={"idempotency_key": "p" * 20}).status_code == 404
    assert invoices(owner)[0].status == InvoiceStatus.PAID


@pytest.mark.parametrize("path", ["/wallet/billing/invoices/nope", "/wallet/billing/invoices/nope.pdf",
                                  "/wallet/billing/invoices?page=abc", "/wallet/billing/invoices?page=-4"])
def test_malformed_addresses_never_500(client, ada, path):
    assert client.get(path).status_code in (200, 404)


# ------------------------------------------------------------------ roles and htmx

STUDENT_PAGES = ["/wallet/billing", "/wallet/billing/invoices"]


@pytest.mark.parametrize("headers", [{}, HX])
@pytest.mark.parametrize("role", ["faculty", "compliance", "admin"])
def test_staff_are_refused(client, login_as, role, headers):
    login_as(role)
    for path in STUDENT_PAGES:
        assert client.get(path, headers=headers).status_code == 403
    assert client.post("/wallet/billing/subscribe", data={}, headers=headers).status_code == 403


@pytest.mark.parametrize("headers", [{}, HX])
def test_anonymous_is_sent_to_login(client, headers):
    for path in STUDENT_PAGES:
        response = client.get(path, headers=headers)
        assert response.status_code in (302, 401)


@pytest.mark.parametrize("headers", [HX, {**HX, "HX-Boosted": "true"}])
def test_pages_answer_htmx(client, ada, catalogue, headers):
    fund(ada, "100")
    subscribe(client, catalogue["pro"])
    [invoice] = invoices(ada)
    for path in (*STUDENT_PAGES, f"/wallet/billing/invoices/{invoice.id}"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200 and "Invoice" in body(response)
    done = client.post("/wallet/billing/cancel", data={"when": "period_end", "idempotency_key": "h" * 20},
                       headers=headers)
    assert done.status_code == 204 and done.headers["HX-Location"].endswith("/wallet/billing")


# ------------------------------------------------------------------ statement budget


def _history(user, catalogue, n: int) -> None:
    """``n`` invoices of past renewals for ``user``."""
    fund(user, str(25 * (n + 1)))
    sub = services.subscribe(user, catalogue["pro"].id)
    for _ in range(n):
        with time_machine.travel(sub.current_period_end + timedelta(minutes=1), tick=False):
            services.run_due()
        db.session.refresh(sub)


@pytest.mark.parametrize("path", ["/wallet/billing", "/wallet/billing/invoices"])
def test_pages_stay_flat_with_data(client, ada, catalogue, statements, path):
    _history(ada, catalogue, 1)
    client.get(path)
    with statements() as few:
        assert client.get(path).status_code == 200
    sub = subscriptions(ada)[0]
    fund(ada, "250")
    for _ in range(6):
        with time_machine.travel(sub.current_period_end + timedelta(minutes=1), tick=False):
            services.run_due()
        db.session.refresh(sub)
    with statements() as many:
        assert client.get(path).status_code == 200
    assert len(invoices(ada)) >= 7
    assert many.count == few.count, (few.statements, many.statements)
    assert many.count <= 8, many.statements


# ------------------------------------------------------------------ a double click, at once


@pytest.mark.no_db_rollback
def test_two_tabs_posting_one_form_at_once_make_one_subscription_and_one_charge(app):
    """Two requests with the same form (one idempotency key) at the same moment, each on its own
    connection: one subscribes and charges, the other waits for it and answers with its outcome."""
    import threading

    from portal.accounts.models import User
    from portal.db.context import Actor, acting_as
    from portal.money.wallets import ledger
    from tests.factories import PASSWORD

    def committed(fn):
        with app.app_context(), acting_as(Actor.system("tests")):
            try:
                value = fn()
                db.session.commit()
                return value
            finally:
                db.session.rollback()
                db.session.remove()

    suffix = "-" + uuid.uuid4().hex[:8]
    pro_id = committed(lambda: plans(suffix, with_free=False)["pro"].id)
    email = committed(lambda: (lambda u: (fund(u, "100"), u.email)[1])(create_user("student")))
    tabs = []
    for _ in range(2):
        tab = app.test_client()
        assert tab.post("/auth/login", data={"email": email, "password": PASSWORD}).status_code in (302, 204)
        tabs.append(tab)
    key = ledger.new_key()
    gate, answers = threading.Barrier(2), []

    def click(tab):
        gate.wait(timeout=30)
        answers.append(tab.post("/wallet/billing/subscribe", data={"plan": str(pro_id), "idempotency_key": key}))

    threads = [threading.Thread(target=click, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [302, 302]

    def check():
        user = db.session.scalar(select(User).where(User.email == email))
        assert len(subscriptions(user)) == 1
        with ledger.as_ledger():
            wallet = ledger.user_wallet(user.id, "USD")
        assert wallet.balance == Decimal("75.00")  # charged once
        assert [i.total for i in invoices(user)] == [Decimal("25.00")]

    committed(check)
