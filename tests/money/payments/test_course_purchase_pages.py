"""Paid courses in the pages: the course page's price and "Buy", the checkout (wallet, saved
method, new card; short wallet refused; double submit), enrolment after success, coming back to
a course bought and left, the refund request (at once or queued for finance), the price in the
course editor (owner and admin only, validation) and the sales page (own courses only; admins
all)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.money.payments import services
from portal.money.payments.models import Payment, Purpose, Refund, RefundState
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.factories.catalog import make_course
from tests.money.factories import fund, wallet_of
from tests.money.payments import helpers

HX = {"HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


def key_in(html: str) -> str:
    return re.search(r'name="idempotency_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="idempotency_key"',
                     html).group(1) or ""


def settle():
    db.session.commit()


def enrollment(user, course) -> Enrollment | None:
    with as_user(user):
        return db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id,
                                                          Enrollment.course_id == course.id))


def purchases(user) -> list[Payment]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Payment).where(Payment.user_id == user.id,
                                                             Payment.purpose == Purpose.COURSE_PURCHASE)))


@pytest.fixture
def student(login_as):
    return login_as("student", full_name="Ada Lovelace")


@pytest.fixture
def course():
    made = helpers.paid_course("19.00", title="Money for Makers")
    settle()
    return made


# ------------------------------------------------------------------ the course page


def test_a_paid_course_shows_its_price_and_buy_instead_of_enrol(client, student, course):
    html = body(client.get(f"/learning/courses/{course.slug}"))
    assert "19.00 USD" in html
    assert f'href="/wallet/courses/{course.id}/buy"' in html and "Buy this course" in html
    assert "Enrol in this course" not in html and f"/learning/courses/{course.slug}/enrol" not in html


def test_a_free_course_still_shows_enrol(client, student):
    free = make_course(title="Free Course")
    settle()
    html = body(client.get(f"/learning/courses/{free.slug}"))
    assert "Enrol in this course" in html and "Buy this course" not in html and "Price:" not in html


def test_faculty_see_the_price_but_no_buy_button(client, login_as, course):
    login_as("faculty")
    html = body(client.get(f"/learning/courses/{course.slug}"))
    assert "19.00 USD" in html and "Buy this course" not in html


def test_enrolling_in_a_paid_course_without_paying_is_refused(client, student, course):
    response = client.post(f"/learning/courses/{course.slug}/enrol")
    assert response.status_code == 302
    assert "buy it from its page" in body(client.get(response.headers["Location"]))
    assert enrollment(student, course) is None


# ------------------------------------------------------------------ checkout


def test_checkout_shows_the_balance_and_preselects_the_wallet_when_it_covers(client, student, course):
    fund(student, "50")
    settle()
    html = body(client.get(f"/wallet/courses/{course.id}/buy"))
    assert "Buy Money for Makers" in html and "19.00 USD" in html and "50.00 USD" in html
    assert 'value="wallet" checked' in html
    assert key_in(html)


def test_checkout_marks_a_short_wallet_and_refuses_it_clearly(client, student, course, fake):
    fund(student, "5")
    settle()
    html = body(client.get(f"/wallet/courses/{course.id}/buy"))
    assert "14.00 USD short" in html
    assert 'value="card" checked' in html  # the wallet is not preselected when it cannot pay
    response = client.post(f"/wallet/courses/{course.id}/buy",
                           data={"pay_with": "wallet", "idempotency_key": key_in(html)})
    assert response.status_code == 422
    assert "Not enough" in body(response) or "not enough" in body(response)
    assert purchases(student) == [] and enrollment(student, course) is None
    assert wallet_of(student).balance == Decimal("5")


def test_buying_from_the_wallet_enrols_and_lands_on_the_course(client, student, course):
    fund(student, "50")
    settle()
    key = key_in(body(client.get(f"/wallet/courses/{course.id}/buy")))
    response = client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "wallet", "idempotency_key": key})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/learning/courses/{course.slug}")
    again = client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "wallet", "idempotency_key": key})
    assert again.status_code == 302  # the double submit finds the same payment
    (payment,) = purchases(student)
    assert payment.state == PaymentState.SUCCEEDED
    assert wallet_of(student).balance == Decimal("31.00")  # paid once
    assert enrollment(student, course).status == EnrollmentStatus.ACTIVE
    html = body(client.get(response.headers["Location"]))
    assert "you are enrolled in Money for Makers" in html
    assert "Buy this course" not in html


def test_buying_with_htmx_sends_the_page_to_the_course_with_the_triggers(client, student, course):
    fund(student, "50")
    settle()
    key = key_in(body(client.get(f"/wallet/courses/{course.id}/buy")))
    response = client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "wallet", "idempotency_key": key},
                           headers=HX)
    assert response.status_code == 204
    assert response.headers["HX-Location"] == f"/learning/courses/{course.slug}"
    assert "balance-changed" in response.headers["HX-Trigger"]


def test_buying_with_a_new_card_goes_to_the_provider_and_enrols_on_return(client, student, course, fake):
    key = key_in(body(client.get(f"/wallet/courses/{course.id}/buy")))
    response = client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "card", "idempotency_key": key})
    assert response.status_code == 302 and response.headers["Location"].startswith("https://psp.invalid/pay/")
    (payment,) = purchases(student)
    assert enrollment(student, course) is None
    page = body(client.get(f"/learning/courses/{course.slug}"))
    assert "has not finished yet" in page and f"/wallet/payments/{payment.id}" in page

    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    back = client.get(f"/wallet/payments/return/{key}")
    assert back.status_code == 302 and back.headers["Location"].endswith(f"/learning/courses/{course.slug}")
    assert enrollment(student, course).status == EnrollmentStatus.ACTIVE
    assert "you are enrolled" in body(client.get(back.headers["Location"]))


def test_checkout_of_a_free_or_unknown_course_is_not_found(client, student):
    free = make_course()
    settle()
    assert client.get(f"/wallet/courses/{free.id}/buy").status_code == 404
    assert client.post(f"/wallet/courses/{free.id}/buy", data={"pay_with": "wallet"}).status_code == 404
    assert client.get("/wallet/courses/not-a-uuid/buy").status_code == 404


def test_a_course_bought_and_left_is_entered_again_at_no_charge(client, student, course):
    fund(student, "50")
    with as_user(student):
        services.pay_course(student, course, idempotency_key=helpers.key(), from_wallet=True)
        from portal.learning.education import services as education

        education.leave(student, course.id)
    settle()
    page = body(client.get(f"/learning/courses/{course.slug}"))
    assert "You bought this course" in page and "Enrol again" in page
    checkout = body(client.get(f"/wallet/courses/{course.id}/buy"))
    assert "no charge" in checkout
    response = client.post(f"/wallet/courses/{course.id}/buy",
                           data={"pay_with": "wallet", "idempotency_key": key_in(checkout)})
    assert response.status_code == 302
    assert "Welcome back" in body(client.get(response.headers["Location"]))
    assert enrollment(student, course).status == EnrollmentStatus.ACTIVE
    assert wallet_of(student).balance == Decimal("31.00") and len(purchases(student)) == 1


# ------------------------------------------------------------------ refunds


def _bought(student, course) -> Payment:
    fund(student, "50")
    with as_user(student):
        payment = services.pay_course(student, course, idempotency_key=helpers.key(), from_wallet=True)
    settle()
    return payment


def test_a_refund_within_the_rule_is_approved_at_once(client, student, course):
    payment = _bought(student, course)
    page = body(client.get(f"/wallet/payments/{payment.id}"))
    assert "Ask for a refund" in page and "comes back at once: you bought it today and completed 0% of it" in page
    assert f'href="/learning/courses/{course.slug}" role="button">Go to the course' in page
    form = client.get(f"/wallet/payments/{payment.id}/refund")
    assert form.status_code == 200 and 'name="reason"' in body(form)
    response = client.post(f"/wallet/payments/{payment.id}/refund", data={"reason": "Not for me"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/payments/{payment.id}")
    after = body(client.get(response.headers["Location"]))
    assert "Refund approved" in after
    assert "Ask for a refund" not in after and "Go to the course" not in after
    (refund,) = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id))
    assert refund.automatic and refund.state in (RefundState.PENDING, RefundState.SUCCEEDED)
    assert wallet_of(student).balance == Decimal("50.00")
    assert enrollment(student, course).status != EnrollmentStatus.ACTIVE


def test_a_late_refund_is_queued_for_finance_and_shown_as_waiting(client, student, course):
    payment = _bought(student, course)
    with ledger.as_ledger():
        db.session.get(Payment, payment.id).credited_at -= timedelta(days=60)
    settle()
    assert "finance decides. Bought more than 14 days ago." in body(client.get(f"/wallet/payments/{payment.id}"))
    response = client.post(f"/wallet/payments/{payment.id}/refund", data={"reason": "Changed my mind"}, headers=HX)
    assert response.status_code == 204
    html = body(client.get(response.headers["HX-Location"]))
    assert "Finance will decide" in html and "Waiting for finance" in html
    (refund,) = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id))
    assert refund.state == RefundState.REQUESTED and not refund.automatic
    assert wallet_of(student).balance == Decimal("31.00")


def test_a_second_refund_request_and_a_too_long_reason_are_refused(client, student, course):
    payment = _bought(student, course)
    too_long = client.post(f"/wallet/payments/{payment.id}/refund", data={"reason": "x" * 600})
    assert too_long.status_code == 422 and 'id="reason-error"' in body(too_long)
    client.post(f"/wallet/payments/{payment.id}/refund", data={"reason": ""})
    again = client.post(f"/wallet/payments/{payment.id}/refund", data={"reason": ""}, headers=HX)
    assert again.status_code == 422 and "asked for already" in body(again)
    assert "<html" not in body(again)
    assert db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all().__len__() == 1


def test_a_top_up_has_no_refund_form(client, student, fake):
    payment = helpers.succeeded_top_up(fake, student, "10.00")
    settle()
    assert client.get(f"/wallet/payments/{payment.id}/refund").status_code == 404
    assert "Ask for a refund" not in body(client.get(f"/wallet/payments/{payment.id}"))


# ------------------------------------------------------------------ the price in the course editor


def _settings_form(client, course) -> dict:
    """The settings form's own fields as the page would post them (the gradebook's left out:
    a post without them keeps the scheme)."""
    assert client.get(f"/learning/manage/{course.id}/settings").status_code == 200
    return {"title": course.title, "slug": course.slug, "summary": course.summary or "",
            "description": course.description or "", "category": course.category, "level": course.level.value,
            "requires_all_lessons": "y"}


@pytest.fixture
def teacher(login_as):
    return login_as("faculty", full_name="Katherine Johnson")


def test_the_owner_sets_and_clears_a_price(client, teacher):
    course = make_course(instructor=teacher)
    settle()
    page = body(client.get(f"/learning/manage/{course.id}/settings"))
    assert 'name="price"' in page and 'name="price_currency"' in page
    data = _settings_form(client, course) | {"price": "49.99", "price_currency": "USD"}
    response = client.post(f"/learning/manage/{course.id}/settings", data=data)
    assert response.status_code == 302
    db.session.refresh(course)
    assert (course.price, course.price_currency) == (Decimal("49.99"), "USD")
    assert 'value="49.99"' in body(client.get(f"/learning/manage/{course.id}/settings"))
    client.post(f"/learning/manage/{course.id}/settings", data=data | {"price": ""})
    db.session.refresh(course)
    assert course.price is None and not course.is_paid


@pytest.mark.parametrize(("price", "code", "message"), [
    ("12.345", "USD", "decimal places"),
    ("-5", "USD", ""),
    ("abc", "USD", ""),
    ("10", "XYZ", "XYZ"),
])
def test_a_bad_price_is_a_field_error_and_changes_nothing(client, teacher, price, code, message):
    course = make_course(instructor=teacher)
    settle()
    data = _settings_form(client, course) | {"price": price, "price_currency": code}
    response = client.post(f"/learning/manage/{course.id}/settings", data=data)
    assert response.status_code == 422
    html = body(response)
    error = re.search(r'<small id="(price|price_currency)-error" class="field-error">([^<]+)</small>', html)
    assert error is not None, html[html.find("mg-price"):][:800]
    assert message in error.group(2)
    db.session.refresh(course)
    assert course.price is None


def test_a_co_instructor_does_not_see_the_price_and_cannot_post_one(client, teacher):
    owner = create_user("faculty")
    course = make_course(instructor=owner)
    db.session.add(CourseManagement(course_id=course.id, user_id=teacher.id, role=ManagementRole.INSTRUCTOR))
    settle()
    assert 'name="price"' not in body(client.get(f"/learning/manage/{course.id}/settings"))
    data = _settings_form(client, course) | {"price": "10", "price_currency": "USD"}
    assert client.post(f"/learning/manage/{course.id}/settings", data=data).status_code == 302
    db.session.refresh(course)
    assert course.price is None


def test_an_admin_prices_any_course(client, login_as):
    course = make_course(instructor=create_user("faculty"))
    settle()
    login_as("admin")
    data = _settings_form(client, course) | {"price": "5", "price_currency": "AZR"}
    assert client.post(f"/learning/manage/{course.id}/settings", data=data).status_code == 302
    db.session.refresh(course)
    assert (course.price, course.price_currency) == (Decimal("5"), "AZR")


# ------------------------------------------------------------------ sales


def _sell(course, buyer_name, amount="19.00"):
    buyer = create_user("student", full_name=buyer_name)
    fund(buyer, "100")
    with as_user(buyer):
        return buyer, services.pay_course(buyer, course, idempotency_key=helpers.key(), from_wallet=True)


def test_the_sales_page_shows_only_the_teachers_courses(client, teacher):
    mine = helpers.paid_course("19.00", title="Mine To Sell", instructor=teacher)
    theirs = helpers.paid_course("30.00", title="Someone Elses", instructor=create_user("faculty"))
    _sell(mine, "Buyer One")
    buyer, refunded = _sell(mine, "Buyer Two")
    _sell(theirs, "Buyer Three")
    with as_user(buyer):
        services.request_course_refund(buyer, refunded, "no")
    settle()
    html = body(client.get("/learning/manage/sales"))
    assert "Mine To Sell" in html and "Someone Elses" not in html and "Buyer Three" not in html
    row = re.search(r"Mine To Sell</a></th>(.*?)</tr>", html, re.S).group(1)
    cells = re.findall(r'<td class="mg-num">(?:<strong>)?([^<]+)', row)
    assert cells == ["2", "38.00 USD", "19.00 USD", "19.00 USD"]
    latest = html[html.index("Latest sales"):]
    assert latest.count("Mine To Sell") == 2 and "Buyer One" not in latest  # no payer is named


def test_an_admin_sees_every_courses_sales(client, login_as):
    one = helpers.paid_course("19.00", title="Course One", instructor=create_user("faculty"))
    two = helpers.paid_course("30.00", title="Course Two", instructor=create_user("faculty"))
    _sell(one, "Buyer One")
    _sell(two, "Buyer Two")
    settle()
    login_as("admin")
    html = body(client.get("/learning/manage/sales"))
    assert "Course One" in html and "Course Two" in html


def test_no_sales_says_how_to_start(client, teacher):
    assert "No sales yet" in body(client.get("/learning/manage/sales"))
    assert 'href="/learning/manage/sales"' in body(client.get("/learning/manage/"))


def test_courses_table_is_not_touched_by_a_refused_purchase(client, student, course):
    before = db.session.get(Course, course.id).price
    client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "bitcoin", "idempotency_key": helpers.key()})
    assert db.session.get(Course, course.id).price == before
    assert purchases(student) == []


def test_a_declined_course_payment_offers_to_try_again_at_the_checkout(client, student, course, fake):
    key = key_in(body(client.get(f"/wallet/courses/{course.id}/buy")))
    client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "card", "idempotency_key": key})
    (payment,) = purchases(student)
    snapshot = fake.complete(payment.provider_ref, PaymentState.FAILED, failure_message="Your card was declined.")
    services.apply_provider_payment(snapshot, provider=fake.name, source="webhook")
    settle()
    html = body(client.get(f"/wallet/payments/{payment.id}"))
    assert "Your card was declined." in html
    assert f'href="/wallet/courses/{course.id}/buy" role="button" class="secondary">Try again' in html
    assert enrollment(student, course) is None
    assert "Buy this course" in body(client.get(f"/learning/courses/{course.slug}"))


def test_the_catalog_shows_the_price_of_paid_courses(client, student, course):
    free = make_course(title="Free Course For Catalog")
    settle()
    html = body(client.get("/learning/courses"))
    card = html[html.index("Money for Makers"):][:1200]
    assert '<span class="visually-hidden">Price: </span>19.00 USD' in card
    free_card = html[html.index(free.title):][:1200]
    assert "Price: </span>" not in free_card.split("</article>")[0]


def test_checkout_of_a_course_one_is_enrolled_in_has_nothing_to_pay(client, student, course):
    fund(student, "50")
    with as_user(student):
        services.pay_course(student, course, idempotency_key=helpers.key(), from_wallet=True)
    settle()
    html = body(client.get(f"/wallet/courses/{course.id}/buy"))
    assert "enrolled in this course already" in html and 'name="pay_with"' not in html
    again = client.post(f"/wallet/courses/{course.id}/buy", data={"pay_with": "wallet", "idempotency_key": helpers.key()})
    assert again.status_code == 409 and "enrolled in this course already" in body(again)
    assert wallet_of(student).balance == Decimal("31.00") and len(purchases(student)) == 1
