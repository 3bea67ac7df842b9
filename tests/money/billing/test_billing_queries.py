"""Reads the pages will call: plans to compare, the current subscription and its next invoice,
invoices with their lines, the administration's MRR, states, churn and invoice filters, and the
invoice PDF with the legal details from configuration."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine

from portal.errors import DomainError, NotFound
from portal.money.billing import admin_queries, invoice_pdf, queries, services
from portal.money.billing.models import InvoiceStatus, SubscriptionStatus
from tests.factories import create_user
from tests.money.billing.helpers import plans, student, utc


@pytest.fixture
def catalogue():
    return plans()


def test_offered_plans_leave_archived_ones_out(catalogue):
    services.archive_plan(create_user("admin"), catalogue["proyear"].id)
    offered = {p.id for p in queries.offered_plans()}
    assert {catalogue["free"].id, catalogue["plus"].id, catalogue["pro"].id} <= offered
    assert catalogue["proyear"].id not in offered


def test_current_shows_the_next_invoice_a_scheduled_downgrade_and_the_unpaid_invoice(catalogue):
    user = student("25.00")
    assert queries.current(user) is None
    with time_machine.travel(utc(2026, 1, 31, 9), tick=False):
        services.subscribe(user, catalogue["pro"].id)
        services.change_plan(user, catalogue["plus"].id)
    now = queries.current(user)
    assert now.plan.id == catalogue["pro"].id and now.scheduled_plan.id == catalogue["plus"].id
    assert now.next_invoice_at == utc(2026, 2, 28, 9) and now.next_invoice_total == Decimal("10.00")
    assert now.unpaid is None
    with time_machine.travel(utc(2026, 2, 28, 9, 1), tick=False):
        services.run_due()  # Plus from 28 February, unpaid: the wallet is empty
    now = queries.current(user)
    assert now.subscription.status == SubscriptionStatus.PAST_DUE
    assert now.unpaid is not None and now.unpaid.total == Decimal("10.00")
    services.cancel(user, now=True)
    assert queries.current(user) is None


def test_invoices_newest_first_and_one_with_its_lines_for_its_owner_and_staff(catalogue):
    user, other = student("100"), student()
    with time_machine.travel(utc(2026, 3, 1), tick=False):
        services.subscribe(user, catalogue["pro"].id)
    with time_machine.travel(utc(2026, 4, 1, 0, 1), tick=False):
        services.run_due()
    rows, more = queries.invoices(user)
    assert [r.period_start for r in rows] == [utc(2026, 4, 1), utc(2026, 3, 1)] and not more
    view = queries.invoice(user, rows[0].id)
    assert [line.amount for line in view.lines] == [Decimal("25.00")]
    assert [a.succeeded for a in view.attempts] == [True]
    assert queries.invoice(create_user("admin"), rows[0].id).customer.id == user.id
    with pytest.raises(NotFound):
        queries.invoice(other, rows[0].id)
    with pytest.raises(NotFound):
        queries.invoice(user, "not-an-id")


def test_admin_mrr_states_churn_and_filters(catalogue):
    before_mrr = admin_queries.mrr().get("USD", Decimal(0))
    before = admin_queries.counts_by_status()
    monthly, yearly, trial = student("100"), student("300"), student()
    services.subscribe(monthly, catalogue["pro"].id)  # 25.00 a month
    services.subscribe(yearly, catalogue["proyear"].id)  # 250.00 a year: 20.83 a month
    services.subscribe(trial, catalogue["plus"].id)  # trialing: no revenue yet
    assert admin_queries.mrr()["USD"] - before_mrr == Decimal("45.83")
    after = admin_queries.counts_by_status()
    assert after[SubscriptionStatus.ACTIVE] - before[SubscriptionStatus.ACTIVE] == 2
    assert after[SubscriptionStatus.TRIALING] - before[SubscriptionStatus.TRIALING] == 1
    services.cancel(trial, now=True)
    month = admin_queries.churn()[-1]
    assert month.started >= 3 and month.ended >= 1
    rows, _more = admin_queries.invoices(admin_queries.InvoiceFilters(email=yearly.email))
    assert [(inv.total, who.id) for inv, who in rows] == [(Decimal("250.00"), yearly.id)]
    rows, _more = admin_queries.invoices(admin_queries.InvoiceFilters(number=rows[0][0].number.lower()))
    assert len(rows) == 1
    rows, _more = admin_queries.invoices(admin_queries.InvoiceFilters(status="paid", email=monthly.email))
    assert [inv.status for inv, _who in rows] == [InvoiceStatus.PAID]
    with pytest.raises(DomainError) as refused:
        admin_queries.invoices(admin_queries.InvoiceFilters(status="lost"))
    assert refused.value.field == "status"


def test_the_invoice_pdf_carries_the_legal_details_and_the_lines(catalogue, app, monkeypatch):
    monkeypatch.setitem(app.config, "BILLING_LEGAL_NAME", "Azora Learning Ltd")
    monkeypatch.setitem(app.config, "BILLING_LEGAL_ADDRESS", "1 Campus Road; Nairobi")
    monkeypatch.setitem(app.config, "BILLING_TAX_ID", "KE-TAX-0042")
    user = student("100")
    services.subscribe(user, catalogue["pro"].id)
    [invoice], _more = queries.invoices(user)
    pdf = invoice_pdf.invoice_pdf(user, invoice.id)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    assert f"Invoice {invoice.number}".encode() in pdf  # the document's title, uncompressed
    doc = invoice_pdf.contents(queries.invoice(user, invoice.id))
    assert doc.seller == ["Azora Learning Ltd", "1 Campus Road", "Nairobi", "Tax ID: KE-TAX-0042"]
    assert ("Billed to", f"{user.full_name} ({user.email})") in doc.facts
    assert [amount for _text, amount in doc.lines] == [doc.total] and "25.00" in doc.total
    assert doc.status == "Paid"
    with pytest.raises(NotFound):
        invoice_pdf.invoice_pdf(student(), invoice.id)
