"""The payment pages' statement counts stay within the budget (DESIGN: at most 12 per page) and
do not grow with the number of payments, saved methods or sales."""

from __future__ import annotations

import pytest

from portal.db import db
from portal.money.payments import services
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund
from tests.money.payments import helpers

BUDGET = 12


def _history(fake, user, course, n: int) -> None:
    """``n`` more top-ups (every other one saving a card) and ``n`` more sales of ``course``."""
    for i in range(n):
        helpers.succeeded_top_up(fake, user, "1.00", save_method=bool(i % 2))
        buyer = create_user("student")
        fund(buyer, "50")
        with as_user(buyer):
            services.pay_course(buyer, course, idempotency_key=helpers.key(), from_wallet=True)
    db.session.commit()


@pytest.mark.parametrize("path", ["/wallet/top-up", "/wallet/payments", "/wallet/payments?state=succeeded",
                                  "/wallet/payment-methods", "payment", "checkout", "course"])
def test_student_pages_stay_within_the_budget(client, login_as, fake, statements, path, app, monkeypatch):
    monkeypatch.setitem(app.config, "TOP_UP_MAXIMUMS", {"USD": "10000000"})
    student = login_as("student")
    teacher = create_user("faculty")
    course = helpers.paid_course("19.00", instructor=teacher)
    first = helpers.succeeded_top_up(fake, student, "5.00", save_method=True)
    _history(fake, student, course, 2)
    url = {"payment": f"/wallet/payments/{first.id}", "checkout": f"/wallet/courses/{course.id}/buy",
           "course": f"/learning/courses/{course.slug}"}.get(path, path)
    client.get(url)
    with statements() as few:
        assert client.get(url).status_code == 200
    _history(fake, student, course, 12)
    with statements() as many:
        assert client.get(url).status_code == 200
    assert many.count <= BUDGET, many.statements
    assert many.count == few.count, (few.statements, many.statements)


def test_the_sales_page_stays_within_the_budget(client, login_as, fake, statements):
    teacher = login_as("faculty")
    courses = [helpers.paid_course("19.00", instructor=teacher) for _ in range(2)]
    student = create_user("student")
    _history(fake, student, courses[0], 2)
    client.get("/learning/manage/sales")
    with statements() as few:
        assert client.get("/learning/manage/sales").status_code == 200
    for course in courses:
        _history(fake, student, course, 8)
    with statements() as many:
        assert client.get("/learning/manage/sales").status_code == 200
    assert many.count <= BUDGET, many.statements
    assert many.count == few.count, (few.statements, many.statements)
