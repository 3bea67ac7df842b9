"""The student's "Loans" pages: what they could borrow and why, the offer before applying (rate,
fee, schedule, total cost, APR), applying with collateral, field errors, the loan's schedule with
paid / due / overdue, repaying (an instalment, early payoff, a part) after a confirmation page,
auto-repay, withdrawing, accepting a counter-offer; double submits, malformed input, another
student's loan, every role with and without htmx, and the statement budget."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.lending import services
from portal.money.lending.models import Collateral, Loan, LoanState, Repayment
from portal.money.wallets import ledger
from tests.factories import PASSWORD, create_user
from tests.money.factories import fund
from tests.money.lending.helpers import borrower, lines, product

HX = {"HX-Request": "true"}
D = Decimal


def body(response) -> str:
    return response.get_data(as_text=True)


def key_in(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def log_in(client, user):
    assert client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code in (302, 204)
    return user


@pytest.fixture
def prod(app):
    return product()


@pytest.fixture
def ada(client, prod):
    student = borrower()
    db.session.commit()
    return log_in(client, student)


def form(prod, **over) -> dict:
    return {"product": str(prod.id), "amount": "1000", "term": "12", "purpose": "Laptop for my course",
            "collateral_currency": "", "collateral_amount": ""} | over


def loans_of(user) -> list[Loan]:
    return list(db.session.scalars(select(Loan).where(Loan.user_id == user.id)
                                   .execution_options(populate_existing=True)))


def apply_via_pages(client, prod, **over) -> Loan:
    offer = client.post("/wallet/loans/offer", data=form(prod, **over))
    assert offer.status_code == 200, body(offer)[:2000]
    data = form(prod, **over) | {"idempotency_key": key_in(body(offer))}
    done = client.post("/wallet/loans/apply", data=data)
    assert done.status_code == 302, body(done)[:2000]
    return loans_of_user_from(done)


def loans_of_user_from(response) -> Loan:
    loan_id = response.headers["Location"].rsplit("/", 1)[1]
    return db.session.get(Loan, uuid.UUID(loan_id))


def repayments_of(loan) -> int:
    return db.session.scalar(select(func.count()).select_from(Repayment).where(Repayment.loan_id == loan.id))


def approved_and_paid(loan):
    officer = create_user("admin")
    services.approve(officer, loan.id)
    services.disburse(officer, loan.id)
    db.session.commit()
    return loan


# ------------------------------------------------------------------ what they could borrow


def test_the_page_explains_the_assessment_and_the_limit(client, ada, prod):
    response = client.get("/wallet/loans")
    html = body(response)
    assert response.status_code == 200
    assert 'aria-current="page">Loans' in html
    assert "Up to 2,000.00 USD" in html or "Up to 2000.00 USD" in html
    assert "Band C" in html and "12% a year (8% + 4 for your band)" in html
    for factor in ("Identity", "Account age", "Learning record", "Earnings", "Repayment history", "AML screening"):
        assert factor in html
    assert "No loans yet." in html and "See the offer" in html


def test_an_unverified_student_reads_why_not_and_gets_no_form(client, login_as, prod):
    login_as("student")
    html = body(client.get("/wallet/loans"))
    assert "You cannot borrow from this product yet" in html
    assert "Your identity is not verified yet" in html
    assert "See the offer" not in html


# ------------------------------------------------------------------ the offer and applying


def test_the_offer_shows_rate_fee_schedule_total_cost_and_apr_before_anything_is_saved(client, ada, prod):
    response = client.post("/wallet/loans/offer", data=form(prod))
    html = body(response)
    assert response.status_code == 200
    shown = services.offer(ada, prod.id, "1000", 12)
    assert "12%" in html and "Fee at payout" in html and "20.00 USD" in html
    assert f"{shown.apr.normalize()}%" in html
    assert f"{shown.total_cost:,}" in html or str(shown.total_cost) in html
    assert html.count('<tr><td>') == 12  # the twelve instalments
    first = shown.schedule.instalments[0]
    assert f"{first.principal + first.interest:,}" in html
    assert "Accept and apply" in html and "Decline" in html
    assert loans_of(ada) == []


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"amount": "50"}, "amount", "Borrow between 100 and 4000 USD"),
    ({"amount": "3000"}, "amount", "You can borrow at most 2000 USD"),
    ({"amount": "abc"}, "amount", ""),
    ({"amount": "x" * 5000}, "amount", ""),
    ({"term": "2"}, "term", "Choose between 3 and 24 instalments"),
    ({"term": "twelve"}, "term", "whole number"),
    ({"purpose": "   "}, "purpose", "Say what the loan is for"),
    ({"product": "not-a-uuid"}, "product", "Choose one of the loan products"),
    ({"product": str(uuid.uuid4())}, "product", "Choose one of the loan products"),
    ({"collateral_currency": "DOGE", "collateral_amount": "1"}, "collateral_currency", "BTC or ETH"),
])
def test_bad_applications_are_field_errors_not_500(client, ada, prod, over, field, message):
    for path in ("/wallet/loans/offer", "/wallet/loans/apply"):
        response = client.post(path, data=form(prod, **over) | {"idempotency_key": uuid.uuid4().hex})
        html = body(response)
        assert response.status_code == 422, (path, html[:1000])
        assert f'id="{field}-error"' in html, (path, field)
        assert message in html
    assert loans_of(ada) == []


def test_applying_with_collateral_holds_it_and_a_double_submit_makes_one_application(client, ada, prod):
    fund(ada, "1.00000000", "BTC")
    db.session.commit()
    data = form(prod, collateral_currency="BTC", collateral_amount="0.25")
    offer = body(client.post("/wallet/loans/offer", data=data))
    assert "0.25 BTC" in offer
    key = key_in(offer)
    first = client.post("/wallet/loans/apply", data=data | {"idempotency_key": key})
    second = client.post("/wallet/loans/apply", data=data | {"idempotency_key": key})
    assert first.status_code == 302 and second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    [loan] = loans_of(ada)
    assert loan.state == LoanState.SUBMITTED
    [pledge] = db.session.scalars(select(Collateral).where(Collateral.loan_id == loan.id)).all()
    assert pledge.amount == D("0.25")
    assert ledger.user_wallet(ada.id, "BTC").locked_balance == D("0.25")
    other_tab = client.post("/wallet/loans/apply", data=data | {"idempotency_key": uuid.uuid4().hex})
    assert other_tab.status_code == 409 and "already have an application" in body(other_tab)
    assert len(loans_of(ada)) == 1
    page = body(client.get(first.headers["Location"]))
    assert "A loan officer is looking at your application" in page and "0.25 BTC" in page


def test_too_much_collateral_is_a_field_error(client, ada, prod):
    fund(ada, "0.10000000", "BTC")
    db.session.commit()
    data = form(prod, collateral_currency="BTC", collateral_amount="2") | {"idempotency_key": uuid.uuid4().hex}
    response = client.post("/wallet/loans/apply", data=data)
    assert response.status_code == 422 and 'id="collateral_amount-error"' in body(response)
    assert loans_of(ada) == []


def test_withdrawing_an_application_frees_the_collateral(client, ada, prod):
    fund(ada, "1.00000000", "ETH")
    db.session.commit()
    loan = apply_via_pages(client, prod, collateral_currency="ETH", collateral_amount="0.5")
    assert client.post(f"/wallet/loans/{loan.id}/withdraw").status_code == 302
    assert loans_of(ada)[0].state == LoanState.WITHDRAWN
    assert ledger.user_wallet(ada.id, "ETH").locked_balance == 0


def test_a_counter_offer_is_shown_and_accepted(client, ada, prod):
    loan = apply_via_pages(client, prod)
    services.counter_offer(create_user("admin"), loan.id, "800", "10", "11", "We can lend 800 over 10 months")
    db.session.commit()
    html = body(client.get(f"/wallet/loans/{loan.id}"))
    assert "An officer offered you other terms" in html and "We can lend 800 over 10 months" in html
    assert client.post(f"/wallet/loans/{loan.id}/accept").status_code == 302
    assert loans_of(ada)[0].accepted_at is not None
    again = client.post(f"/wallet/loans/{loan.id}/accept")
    assert again.status_code == 409 and "no offer waiting" in body(again)


# ------------------------------------------------------------------ the loan and repaying


def test_the_schedule_shows_paid_due_and_overdue(client, ada, prod):
    fund(ada, "500")
    with time_machine.travel(utcnow() - timedelta(days=75), tick=False):
        loan = approved_and_paid(services.apply(ada, prod.id, "1000", 12, "Laptop", ledger.new_key()))
    first = lines(loan)[0]
    with time_machine.travel(datetime.combine(first.due_on, time(9), UTC), tick=False):
        services.repay(ada, loan.id, str(first.outstanding), ledger.new_key())
        db.session.commit()
    html = body(client.get(f"/wallet/loans/{loan.id}"))
    assert html.count('status status-inst-paid">Paid') == 1
    assert html.count('status status-inst-overdue">Overdue') == 1  # the second one, past its date
    assert html.count('status status-inst-due">Due') == 10
    assert "Pay what is due" in html



def test_the_list_badge_and_the_loan_page_count_overdue_alike_before_the_nightly_job(client, ada, prod):
    """Overdue means due before today's clock and not fully paid, for the list's badge and the
    loan's page alike, whether or not the nightly job has marked the lines yet."""
    from portal.money.lending import queries
    from portal.money.lending.models import InstalmentState

    fund(ada, "500")
    with time_machine.travel(utcnow() - timedelta(days=75), tick=False):
        loan = approved_and_paid(services.apply(ada, prod.id, "1000", 12, "Laptop", ledger.new_key()))
    first, second, third, fourth = lines(loan)[:4]
    with time_machine.travel(datetime.combine(first.due_on, time(9), UTC), tick=False):
        services.repay(ada, loan.id, str(first.outstanding), ledger.new_key())
        db.session.commit()
    assert {x.state for x in lines(loan)[1:]} == {InstalmentState.DUE}  # no job has run

    def counts(day) -> tuple[int, int]:
        with time_machine.travel(datetime.combine(day, time(9), UTC), tick=False):
            [row] = queries.my_loans(ada)
            detail = queries.loan_detail(ada, loan.id)
        return row.overdue, sum(x.status == InstalmentState.OVERDUE for x in detail.schedule)

    assert counts(second.due_on) == (0, 0)  # due today is not overdue yet
    assert counts(second.due_on + timedelta(days=1)) == (1, 1)
    assert counts(third.due_on + timedelta(days=1)) == (2, 2)
    assert counts(fourth.due_on) == (2, 2)
    # The pages today say the same: the list's badge and the loan's schedule.
    expected = sum(1 for x in (second, third, fourth) if x.due_on < services.today())
    assert expected >= 1
    listed = re.search(r'status-inst-overdue">(\d+) overdue', body(client.get("/wallet/loans")))
    assert listed is not None and int(listed.group(1)) == expected
    assert body(client.get(f"/wallet/loans/{loan.id}")).count('status status-inst-overdue">Overdue') == expected


def test_repaying_an_instalment_early_confirms_first_and_a_double_submit_pays_once(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    fund(ada, "500")
    db.session.commit()
    page = body(client.get(f"/wallet/loans/{loan.id}"))
    assert "Pay the next instalment early" in page
    confirm = client.post(f"/wallet/loans/{loan.id}/repay", data={"kind": "due", "idempotency_key": key_in(page)})
    html = body(confirm)
    assert confirm.status_code == 200 and "Nothing has been paid yet." in html
    assert repayments_of(loan) == 0
    amount = re.search(r'name="amount" value="([^"]+)"', html).group(1)
    assert D(amount) == lines(loan)[0].total
    data = {"kind": "part", "amount": amount, "confirmed": "1", "idempotency_key": key_in(html)}
    assert client.post(f"/wallet/loans/{loan.id}/repay", data=data).status_code == 302
    assert client.post(f"/wallet/loans/{loan.id}/repay", data=data).status_code == 302
    [repayment] = db.session.scalars(select(Repayment).where(Repayment.loan_id == loan.id)).all()
    assert repayment.amount == D(amount) and repayment.principal > 0
    assert ledger.user_wallet(ada.id, "USD").balance == D("1480.00") - D(amount)
    assert lines(loan)[0].principal_paid == repayment.principal
    assert "Thank you" in body(client.get(f"/wallet/loans/{loan.id}"))


def test_early_payoff_closes_the_loan_with_interest_to_today(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    fund(ada, "1500")
    db.session.commit()
    payoff = services.payoff_amount(loan)
    assert payoff < sum(x.total for x in lines(loan))  # interest not yet run is waived
    page = body(client.get(f"/wallet/loans/{loan.id}"))
    html = body(client.post(f"/wallet/loans/{loan.id}/repay", data={"kind": "payoff", "idempotency_key": key_in(page)}))
    assert "This closes the loan" in html
    data = {"kind": "part", "amount": str(payoff), "confirmed": "1", "idempotency_key": key_in(html)}
    assert client.post(f"/wallet/loans/{loan.id}/repay", data=data).status_code == 302
    assert loans_of(ada)[0].state == LoanState.CLOSED


@pytest.mark.parametrize(("amount", "message"), [("", ""), ("abc", ""), ("-5", ""), ("99999", "more than is owed"),
                                                  ("1" * 400, "")])
def test_bad_repayments_are_messages_not_500(client, ada, prod, amount, message):
    loan = approved_and_paid(apply_via_pages(client, prod))
    for confirmed in ("", "1"):
        response = client.post(f"/wallet/loans/{loan.id}/repay", data={
            "kind": "part", "amount": amount, "confirmed": confirmed, "idempotency_key": uuid.uuid4().hex})
        assert response.status_code == 422, body(response)[:1000]
        assert message in body(response) and 'class="flash flash-error"' in body(response)
    assert repayments_of(loan) == 0


def test_repaying_without_money_is_a_clear_message(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    ledger_wallet = ledger.user_wallet(ada.id, "USD")
    assert ledger_wallet.balance == D("980.00")  # 1000 less the 2% fee
    response = client.post(f"/wallet/loans/{loan.id}/repay", data={
        "kind": "part", "amount": "990", "confirmed": "1", "idempotency_key": uuid.uuid4().hex})
    assert response.status_code == 422 and "Not enough money" in body(response)


def test_unknown_kind_is_a_message(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    response = client.post(f"/wallet/loans/{loan.id}/repay", data={"kind": "everything"})
    assert response.status_code == 422 and "Choose what to repay" in body(response)


def test_auto_repay_switch(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    assert "Automatic repayment is <strong>off</strong>" in body(client.get(f"/wallet/loans/{loan.id}"))
    assert client.post(f"/wallet/loans/{loan.id}/auto-repay", data={"enabled": "1"}).status_code == 302
    assert loans_of(ada)[0].auto_repay is True
    assert "Automatic repayment is <strong>on</strong>" in body(client.get(f"/wallet/loans/{loan.id}"))
    assert client.post(f"/wallet/loans/{loan.id}/auto-repay", data={"enabled": "0"}).status_code == 302
    assert loans_of(ada)[0].auto_repay is False


def test_collateral_ltv_and_the_margin_call_notice(client, ada, prod):
    fund(ada, "1.00000000", "BTC")
    db.session.commit()
    loan = approved_and_paid(apply_via_pages(client, prod, collateral_currency="BTC", collateral_amount="0.02"))
    pledge = db.session.scalars(select(Collateral).where(Collateral.loan_id == loan.id)).one()
    assert "Not valued yet" in body(client.get(f"/wallet/loans/{loan.id}"))
    pledge.value, pledge.ltv, pledge.valued_at, pledge.margin_called_at = D("1200.00"), D("0.8333"), utcnow(), utcnow()
    db.session.commit()
    html = body(client.get(f"/wallet/loans/{loan.id}"))
    assert "Margin call:" in html and "83.3%" in html and "1,200.00 USD" in html


# ------------------------------------------------------------------ ownership, roles, htmx, budget


def test_another_students_loan_is_not_found(client, ada, prod):
    loan = approved_and_paid(apply_via_pages(client, prod))
    client.post("/auth/logout")
    other = borrower("other.borrower@tests.example")
    fund(other, "500")
    db.session.commit()
    log_in(client, other)
    assert client.get(f"/wallet/loans/{loan.id}").status_code == 404
    for action, data in [("repay", {"kind": "payoff", "confirmed": "1"}), ("auto-repay", {"enabled": "1"}),
                         ("withdraw", {}), ("accept", {})]:
        assert client.post(f"/wallet/loans/{loan.id}/{action}", data=data).status_code == 404, action
    assert "No loans yet." in body(client.get("/wallet/loans"))
    assert repayments_of(loan) == 0
    assert client.get("/wallet/loans/not-a-uuid").status_code == 404


STUDENT_PAGES = ["/wallet/loans"]


@pytest.mark.parametrize("headers", [{}, HX])
@pytest.mark.parametrize("role", ["faculty", "compliance", "admin"])
def test_other_roles_are_refused(client, login_as, prod, role, headers):
    login_as(role)
    assert client.get("/wallet/loans", headers=headers).status_code == 403
    assert client.post("/wallet/loans/offer", data=form(prod), headers=headers).status_code == 403
    assert client.post("/wallet/loans/apply", data=form(prod), headers=headers).status_code == 403
    assert client.get(f"/wallet/loans/{uuid.uuid4()}", headers=headers).status_code == 403


@pytest.mark.parametrize("headers", [{}, HX])
def test_anonymous_is_sent_to_login(client, prod, headers):
    assert client.get("/wallet/loans", headers=headers).status_code in (302, 401)
    assert client.post("/wallet/loans/apply", data=form(prod), headers=headers).status_code in (302, 401)


@pytest.mark.parametrize("headers", [HX, {**HX, "HX-Boosted": "true"}])
def test_pages_answer_htmx(client, ada, prod, headers):
    assert client.get("/wallet/loans", headers=headers).status_code == 200
    offer = client.post("/wallet/loans/offer", data=form(prod), headers=headers)
    assert offer.status_code == 200
    done = client.post("/wallet/loans/apply", data=form(prod) | {"idempotency_key": key_in(body(offer))},
                       headers=headers)
    assert done.status_code == 204 and "/wallet/loans/" in done.headers["HX-Location"]
    assert client.get(done.headers["HX-Location"], headers=headers).status_code == 200
    bad = client.post("/wallet/loans/offer", data=form(prod, amount="1"), headers=headers)
    assert bad.status_code == 422


def test_pages_stay_flat_with_data(client, ada, prod, statements):
    loan = approved_and_paid(apply_via_pages(client, prod))
    client.get("/wallet/loans")
    client.get(f"/wallet/loans/{loan.id}")
    with statements() as few_index:
        assert client.get("/wallet/loans").status_code == 200
    with statements() as few_loan:
        assert client.get(f"/wallet/loans/{loan.id}").status_code == 200
    fund(ada, "1000")
    db.session.commit()
    for _ in range(3):
        services.repay(ada, loan.id, "20", ledger.new_key())
    services.withdraw(ada, services.apply(ada, prod.id, "100", 3, "Books", ledger.new_key()).id)
    db.session.commit()
    with statements() as many_index:
        assert client.get("/wallet/loans").status_code == 200
    with statements() as many_loan:
        assert client.get(f"/wallet/loans/{loan.id}").status_code == 200
    assert many_index.count == few_index.count, (few_index.statements, many_index.statements)
    assert many_loan.count == few_loan.count, (few_loan.statements, many_loan.statements)
