"""Billing administration pages: the figures, the plans (create with validation, a new price as
a new version, moving old versions' subscribers with notice, archive), every invoice with
filters and keyset pages, an invoice's page with void; roles, htmx, malformed input and the
statement budget."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from portal.db import db
from portal.money.billing import admin_queries, services
from portal.money.billing.models import Invoice, InvoiceStatus, Plan, PlanStatus, Subscription
from portal.platform.email.models import Email
from tests.money.billing.helpers import plans, student

#: An id no row has (fixed, so every test process collects the same test ids).
UNKNOWN_ID = uuid.UUID("00000000-0000-4000-8000-00000000dead")

HX = {"HX-Request": "true"}


@pytest.fixture
def catalogue():
    return plans("_adm")


@pytest.fixture
def admin(login_as):
    return login_as("admin")


def body(response) -> str:
    return response.get_data(as_text=True)


def plan_form(**over) -> dict:
    return {"name": "Team", "code": "team_adm", "price": "12.50", "currency": "USD", "interval": "monthly",
            "trial_days": "7", "description": "For groups", "position": "3", "tutor_model": "y",
            "tutor_questions_per_day": "", "reward_multiplier": "1.25", "transfer_limit_multiplier": "2", **over}


def paying(catalogue, funds="100"):
    user = student(funds)
    services.subscribe(user, catalogue["pro"].id)
    return user


# ------------------------------------------------------------------ figures and plans


def test_dashboard_shows_mrr_counts_churn_and_plans(client, admin, catalogue):
    paying(catalogue)
    html = body(client.get("/wallet/admin/billing"))
    mrr = admin_queries.mrr()["USD"]
    assert f"{mrr:,.2f} USD" in html or f"{mrr} USD" in html
    for status, n in admin_queries.counts_by_status().items():
        assert f'class="count-{status.value}">{n}<' in html
    assert "Churn per month" in html and "<code>pro_adm</code>" in html and "Pro Yearly" in html


def test_create_a_plan_with_entitlements(client, admin, catalogue):
    response = client.post("/wallet/admin/billing/plans/new", data=plan_form())
    assert response.status_code == 302
    plan = services.active_plan("team_adm")
    assert plan.price == Decimal("12.50") and plan.trial_days == 7 and plan.position == 3
    assert plan.entitlements["tutor_model"] is True and plan.entitlements["tutor_questions_per_day"] is None
    assert Decimal(plan.entitlements["reward_multiplier"]) == Decimal("1.25")
    assert "The Team plan is offered now." in body(client.get("/wallet/admin/billing"))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "", "Give the plan a name"),
    ("code", "Bad Code!", "The code is 1 to 40"),
    ("code", "pro_adm", "A plan with this code exists"),
    ("price", "abc", "The price is a number"),
    ("price", "-1", "The price is 0 or more."),
    ("price", "1.999", "at most 2 decimal places"),
    ("currency", "XXX", "Unknown currency &#39;XXX&#39;"),
    ("interval", "weekly", "The interval is monthly or yearly."),
    ("trial_days", "400", "Trial days are a whole number"),
    ("tutor_questions_per_day", "many", "Tutor questions a day are a whole number"),
    ("reward_multiplier", "lots", "reward_multiplier is a number such as 1.5."),
    ("transfer_limit_multiplier", "500", "transfer_limit_multiplier is between 1 and 100."),
    ("name", "x" * 5000, "at most 80 characters"),
])
def test_bad_plan_fields_get_messages_beside_them(client, admin, catalogue, field, value, message):
    response = client.post("/wallet/admin/billing/plans/new", data=plan_form(**{field: value}))
    assert response.status_code == 422
    html = body(response)
    assert 'class="field-error"' in html or 'class="form-errors"' in html
    assert message in html
    assert services.active_plan("team_adm") is None


def test_a_new_price_is_a_new_version_and_subscribers_move_with_notice(client, admin, catalogue):
    user = paying(catalogue)
    form_page = body(client.get("/wallet/admin/billing/plans/pro_adm/version"))
    assert "Its one live subscriber keeps 25.00 USD until they change plan" in form_page
    assert 'value="25.00"' in form_page
    response = client.post("/wallet/admin/billing/plans/pro_adm/version", data=plan_form(name="Pro", price="30.00",
                                                                                          code="ignored"))
    assert response.status_code == 302
    new = services.active_plan("pro_adm")
    assert new.version == 2 and new.price == Decimal("30.00")
    sub = db.session.scalar(select(Subscription).where(Subscription.user_id == user.id))
    assert sub.plan_id == catalogue["pro"].id  # keeps the old price
    assert client.post("/wallet/admin/billing/plans/pro_adm/move").status_code == 302
    db.session.refresh(sub)
    assert sub.scheduled_plan_id == new.id
    assert db.session.scalar(select(Email).where(Email.user_id == user.id,
                                                 Email.template == "billing_price_change")) is not None
    assert "1 subscriber will move to the new price" in body(client.get("/wallet/admin/billing"))


def test_archive_stops_new_subscriptions(client, admin, catalogue):
    assert client.post(f"/wallet/admin/billing/plans/{catalogue['plus'].id}/archive").status_code == 302
    assert db.session.get(Plan, catalogue["plus"].id).status == PlanStatus.ARCHIVED
    assert "is archived" in body(client.get("/wallet/admin/billing"))


@pytest.mark.parametrize("path", ["/wallet/admin/billing/plans/nope/version", "/wallet/admin/billing/invoices/nope",
                                  f"/wallet/admin/billing/invoices/{UNKNOWN_ID}.pdf"])
def test_unknown_things_are_not_found(client, admin, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/wallet/admin/billing/plans/nope/move", "/wallet/admin/billing/plans/nope/archive",
                                  f"/wallet/admin/billing/plans/{UNKNOWN_ID}/archive"])
def test_bad_plan_actions_are_messages(client, admin, path):
    response = client.post(path)
    assert response.status_code == 302
    assert "no" in body(client.get("/wallet/admin/billing")).lower()


# ------------------------------------------------------------------ invoices


def test_invoices_filter_by_state_plan_dates_and_student(client, admin, catalogue):
    a = paying(catalogue)
    b = student("300")
    services.subscribe(b, catalogue["proyear"].id)
    a_invoice = db.session.scalar(select(Invoice).where(Invoice.user_id == a.id))
    html = body(client.get(f"/wallet/admin/billing/invoices?student={a.email}"))
    assert a_invoice.number in html and a.email in html and b.email not in html
    html = body(client.get("/wallet/admin/billing/invoices?plan=proyear_adm"))
    assert b.email in html and a.email not in html
    html = body(client.get("/wallet/admin/billing/invoices?status=void&plan=pro_adm"))
    assert a.email not in html
    today = a_invoice.created_at.date()
    html = body(client.get(f"/wallet/admin/billing/invoices?from={today}&to={today}&plan=pro_adm"))
    assert a_invoice.number in html
    html = body(client.get(f"/wallet/admin/billing/invoices?to={today - timedelta(days=1)}&plan=pro_adm"))
    assert a_invoice.number not in html


@pytest.mark.parametrize("query", ["status=lost", "from=yesterday", "to=2026-13-45", "after=garbage",
                                   "after=2026-01-01T00:00:00_nope", "student=" + "x" * 3000])
def test_bad_filters_are_messages_not_500(client, admin, query):
    response = client.get(f"/wallet/admin/billing/invoices?{query}")
    assert response.status_code in (200, 422)
    if response.status_code == 422:
        assert 'class="form-errors"' in body(response)


def test_invoice_pages_by_keyset(client, admin, catalogue, monkeypatch):
    monkeypatch.setattr(admin_queries, "PAGE_SIZE", 2)
    users = [paying(catalogue) for _ in range(3)]
    first = body(client.get("/wallet/admin/billing/invoices?plan=pro_adm"))
    link = re.search(r'href="(/wallet/admin/billing/invoices\?[^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "plan=pro_adm" in link
    second = body(client.get(link))
    shown = [u.email for u in users if u.email in first] + [u.email for u in users if u.email in second]
    assert sorted(shown) == sorted(u.email for u in users)  # every invoice once, across the pages
    fragment = client.get(link, headers={**HX, "HX-Target": "results"})
    assert "<html" not in body(fragment) and body(fragment).lstrip().startswith('<div id="results">')


def test_an_invoice_page_and_void(client, admin, catalogue):
    user = student("5")
    services.subscribe(user, catalogue["plus"].id)
    sub = db.session.scalar(select(Subscription).where(Subscription.user_id == user.id))
    with time_machine.travel(sub.current_period_end + timedelta(minutes=1), tick=False):
        services.run_due()
    invoice = db.session.scalar(select(Invoice).where(Invoice.user_id == user.id))
    assert invoice.status == InvoiceStatus.OPEN
    html = body(client.get(f"/wallet/admin/billing/invoices/{invoice.id}"))
    assert invoice.number in html and user.email in html and "Void this invoice" in html and "Pay " not in html
    assert client.get(f"/wallet/admin/billing/invoices/{invoice.id}.pdf").data.startswith(b"%PDF")
    assert client.post(f"/wallet/admin/billing/invoices/{invoice.id}/void").status_code == 302
    db.session.refresh(invoice)
    assert invoice.status == InvoiceStatus.VOID
    again = client.post(f"/wallet/admin/billing/invoices/{invoice.id}/void")
    assert again.status_code == 302
    assert "is void" in body(client.get(f"/wallet/admin/billing/invoices/{invoice.id}"))
    assert client.post(f"/wallet/admin/billing/invoices/{uuid.uuid4()}/void").status_code == 404


# ------------------------------------------------------------------ roles, htmx, budget

ADMIN_PAGES = ["/wallet/admin/billing", "/wallet/admin/billing/plans/new", "/wallet/admin/billing/invoices"]


@pytest.mark.parametrize("headers", [{}, HX])
@pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
def test_others_are_refused(client, login_as, catalogue, role, headers):
    login_as(role)
    for path in [*ADMIN_PAGES, "/wallet/admin/billing/plans/pro_adm/version"]:
        assert client.get(path, headers=headers).status_code == 403
    assert client.post("/wallet/admin/billing/plans/new", data=plan_form(), headers=headers).status_code == 403
    assert client.post("/wallet/admin/billing/plans/pro_adm/move", headers=headers).status_code == 403
    assert services.active_plan("team_adm") is None


@pytest.mark.parametrize("headers", [{}, HX])
def test_anonymous_is_sent_to_login(client, headers):
    for path in ADMIN_PAGES:
        assert client.get(path, headers=headers).status_code in (302, 401)


@pytest.mark.parametrize("headers", [HX, {**HX, "HX-Boosted": "true"}])
def test_admin_pages_answer_htmx(client, admin, catalogue, headers):
    for path in ADMIN_PAGES:
        assert client.get(path, headers=headers).status_code == 200
    done = client.post(f"/wallet/admin/billing/plans/{catalogue['plus'].id}/archive", headers=headers)
    assert done.status_code == 204 and done.headers["HX-Location"].endswith("/wallet/admin/billing")


@pytest.mark.parametrize("path", ["/wallet/admin/billing", "/wallet/admin/billing/invoices"])
def test_admin_pages_stay_flat_with_data(client, admin, catalogue, statements, path):
    paying(catalogue)
    client.get(path)
    with statements() as few:
        assert client.get(path).status_code == 200
    for _ in range(8):
        paying(catalogue)
    with statements() as many:
        assert client.get(path).status_code == 200
    assert many.count == few.count, (few.statements, many.statements)
