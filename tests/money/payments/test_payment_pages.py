"""The student's payment pages: top-up (form, field errors, idempotency, the provider's page,
the provider down), the return from the provider, a payment's live state (polling, 286, the
triggers), my payments (filters, keyset pages), receipts; every route for every role, with and
without htmx, and another student's payment as a 404. The provider is the in-memory fake."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.db import db
from portal.money.payments import pages
from portal.money.payments.models import Payment
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from tests.factories import create_user
from tests.money.factories import wallet_of
from tests.money.payments import helpers

HX = {"HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


def key_in(html: str) -> str:
    return re.search(r'name="idempotency_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="idempotency_key"',
                     html).group(1) or ""


def settle():
    """End the test's setup: a view that refuses rolls its request back, not the setup."""
    db.session.commit()


def payments_of(user) -> list[Payment]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Payment).where(Payment.user_id == user.id)
                                       .order_by(Payment.created_at)))


def count_payments() -> int:
    with ledger.as_ledger():
        return db.session.scalar(select(func.count()).select_from(Payment))


def top_up_form(key: str, amount: str = "25.00", currency: str = "USD", pay_with: str = "card", **extra) -> dict:
    return {"amount": amount, "currency": currency, "pay_with": pay_with, "idempotency_key": key, **extra}


@pytest.fixture
def student(login_as):
    return login_as("student", full_name="Ada Lovelace")


def balance(user, code: str = "USD") -> Decimal:
    wallet = wallet_of(user, code)
    return wallet.balance if wallet is not None else Decimal(0)


# ------------------------------------------------------------------ every route, every role


@pytest.fixture
def owned(fake):
    """Another student's succeeded top-up (a card saved with it) and a paid course."""
    owner = create_user("student", full_name="Grace Hopper")
    payment = helpers.succeeded_top_up(fake, owner, "30.00", save_method=True)
    method = pages.methods_of(owner)[0]
    course = helpers.paid_course("19.00")
    settle()
    return payment, method, course


def _routes(payment, method, course):
    """(method, path, needs, status without htmx, status with htmx) for a student who is not the owner."""
    return [
        ("GET", "/wallet/top-up", "use", 200, 200),
        ("POST", "/wallet/top-up", "use", 422, 422),  # an empty form: refused, nothing charged
        ("GET", "/wallet/payments", "use", 200, 200),
        ("GET", f"/wallet/payments/{payment.id}", "use", 404, 404),
        ("GET", f"/wallet/payments/return/{payment.idempotency_key}", "use", 404, 404),
        ("GET", f"/wallet/payments/{payment.id}/receipt", "use", 404, 404),
        ("GET", f"/wallet/payments/{payment.id}/receipt.pdf", "use", 404, 404),
        ("GET", f"/wallet/payments/{payment.id}/refund", "use", 404, 404),
        ("POST", f"/wallet/payments/{payment.id}/cancel", "use", 404, 404),
        ("POST", f"/wallet/payments/{payment.id}/refund", "use", 404, 404),
        ("GET", "/wallet/payment-methods", "use", 200, 200),
        ("POST", f"/wallet/payment-methods/{method.id}/default", "use", 404, 404),
        ("GET", f"/wallet/payment-methods/{method.id}/remove", "use", 404, 404),
        ("POST", f"/wallet/payment-methods/{method.id}/remove", "use", 404, 404),
        ("GET", f"/wallet/courses/{course.id}/buy", "use", 200, 200),
        ("POST", f"/wallet/courses/{course.id}/buy", "use", 422, 422),
        ("GET", "/learning/manage/sales", "teach", 200, 200),
    ]


@pytest.mark.parametrize("role", ["anonymous", "student", "faculty", "compliance", "admin"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_every_route_answers_each_role_as_declared(client, login_as, owned, fake, role, htmx):
    payment, method, course = owned
    before = count_payments()  # other tests may have committed payments of their own
    if role != "anonymous":
        login_as(role)
    allowed = {"student": {"use"}, "faculty": {"teach"}, "admin": {"teach"}}.get(role, set())
    headers = HX if htmx else {}
    for verb, url, needs, plain, fragment in _routes(payment, method, course):
        response = client.open(url, method=verb, headers=headers)
        html = body(response)
        assert response.status_code < 500, (verb, url, html[:500])
        assert "HX-Request" in response.headers.get("Vary", ""), (verb, url)
        if role == "anonymous":
            assert response.status_code == (401 if htmx else 302), (verb, url)
        elif needs not in allowed:
            assert response.status_code == 403, (verb, url, role)
        else:
            assert response.status_code == (fragment if htmx else plain), (verb, url, html[:300])
    # Nobody but the owner touched the owner's payment or card, and nobody bought anything.
    owner = db.session.get(User, payment.user_id)
    assert [p.id for p in payments_of(owner)] == [payment.id]
    assert [(m.id, m.is_default) for m in pages.methods_of(owner)] == [(method.id, True)]
    assert fake.detached == []
    assert count_payments() == before


def test_pages_are_fragments_for_htmx_and_whole_pages_without(client, student, fake):
    for url, marker in (("/wallet/top-up", 'id="top-up-panel"'), ("/wallet/payments", 'id="results"'),
                        ("/wallet/payment-methods", 'id="payment-method-list"')):
        page, fragment = client.get(url), client.get(url, headers=HX)
        assert "<html" in body(page) and marker in body(page)
        assert "<html" not in body(fragment) and marker in body(fragment)


# ------------------------------------------------------------------ top-up


def test_the_top_up_form_offers_the_configured_currencies_with_their_limits(client, student, app, monkeypatch):
    monkeypatch.setitem(app.config, "TOP_UP_MINIMUMS", {"USD": "1", "AZR": "5"})
    monkeypatch.setitem(app.config, "TOP_UP_MAXIMUMS", {"USD": "10000", "AZR": "50000"})
    html = body(client.get("/wallet/top-up"))
    assert re.findall(r'<option[^>]*value="(\w+)"', html) == ["AZR", "USD"]
    assert re.search(r'<option selected value="USD">', html)  # dollars first when offered
    assert 'value="card" checked' in html  # no saved method: a new card is preselected
    assert key_in(html)
    assert "1.00 USD" in html and "Top up" in html
    assert 'name="save_method"' in html


def test_a_top_up_goes_to_the_providers_page_and_comes_back_credited(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    response = client.post("/wallet/top-up", data=top_up_form(key, "25.00"))
    assert response.status_code == 302
    (payment,) = payments_of(student)
    assert response.headers["Location"] == payment.next_action_url
    assert response.headers["Location"].startswith("https://psp.invalid/pay/")
    assert payment.state == PaymentState.REQUIRES_ACTION
    assert payment.return_url.endswith(f"/wallet/payments/return/{key}")

    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    # The provider's reference in the query is never believed: a forged one changes nothing.
    back = client.get(f"/wallet/payments/return/{key}?payment_ref=pay_forged")
    assert back.status_code == 302
    assert back.headers["Location"].endswith(f"/wallet/payments/{payment.id}")
    db.session.refresh(payment)
    assert payment.state == PaymentState.SUCCEEDED
    assert balance(student) == Decimal("25.00")
    html = body(client.get(f"/wallet/payments/{payment.id}"))
    assert "Succeeded" in html and "was added to your wallet" in html
    assert "Visa" in html and "4242" in html
    assert "/receipt" in html and "receipt.pdf" in html
    assert 'hx-trigger="every 2s"' not in html  # final: nothing to poll


def test_an_htmx_top_up_leaves_the_portal_with_hx_redirect(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    response = client.post("/wallet/top-up", data=top_up_form(key), headers=HX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("https://psp.invalid/pay/")
    assert "HX-Location" not in response.headers


def test_double_submit_and_a_second_tab_make_one_payment(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    first = client.post("/wallet/top-up", data=top_up_form(key))
    second = client.post("/wallet/top-up", data=top_up_form(key))
    third = client.post("/wallet/top-up", data=top_up_form(key), headers=HX)
    assert first.headers["Location"] == second.headers["Location"] == third.headers["HX-Redirect"]
    assert len(payments_of(student)) == 1
    assert fake.calls.count("create_payment") == 1


def test_the_same_key_with_other_details_is_refused_with_a_fresh_form(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    client.post("/wallet/top-up", data=top_up_form(key, "25.00"))
    response = client.post("/wallet/top-up", data=top_up_form(key, "40.00"))
    assert response.status_code == 409
    html = body(response)
    assert "already sent with other details" in html
    assert key_in(html) != key  # the next submit is a new payment
    assert len(payments_of(student)) == 1


@pytest.mark.parametrize(("amount", "currency", "field", "message"), [
    ("0.50", "USD", "amount", "smallest top-up is 1.00 USD"),
    ("20000", "USD", "amount", "at most"),
    ("10.001", "USD", "amount", "at most 2 decimal places"),
    ("ten", "USD", "amount", ""),
    ("", "USD", "amount", ""),
    ("10", "XYZ", "currency", "XYZ"),
    ("10", "BTC", "currency", "not available"),
])
def test_bad_amounts_and_currencies_get_a_field_error_and_charge_nothing(client, student, fake, amount, currency,
                                                                         field, message):
    key = key_in(body(client.get("/wallet/top-up")))
    response = client.post("/wallet/top-up", data=top_up_form(key, amount, currency))
    assert response.status_code == 422
    html = body(response)
    error = re.search(rf'<small id="{field}-error" class="field-error">([^<]+)</small>', html)
    assert error is not None, html[html.find("top-up-form"):][:1500]
    assert message in error.group(1)
    assert 'aria-invalid="true"' in html
    assert key_in(html) == key  # the same form: sending it again is still one payment
    assert f'value="{amount}"' in html or not amount
    assert payments_of(student) == [] and fake.calls == []


def test_an_unknown_way_to_pay_is_a_field_error(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    for pay_with in ("bitcoin", f"method:{uuid.uuid4()}", "method:not-a-uuid", ""):
        response = client.post("/wallet/top-up", data=top_up_form(key, pay_with=pay_with))
        assert response.status_code == 422, pay_with
        assert 'id="pay-with-error"' in body(response), pay_with
    assert payments_of(student) == []


def test_a_missing_or_forged_key_asks_for_a_fresh_form(client, student, fake):
    for key in ("", "x" * 300, "<script>"):
        response = client.post("/wallet/top-up", data=top_up_form(key))
        assert response.status_code == 422
        assert "out of date" in body(response)
    assert payments_of(student) == []


def test_provider_down_shows_the_form_again_and_a_resubmit_resumes_the_same_payment(client, student, fake):
    key = key_in(body(client.get("/wallet/top-up")))
    fake.down = True
    response = client.post("/wallet/top-up", data=top_up_form(key, "25.00"))
    assert response.status_code == 503
    html = body(response)
    assert "not answering" in html
    assert 'value="25.00"' in html and key_in(html) == key  # nothing lost
    (kept,) = payments_of(student)
    assert kept.needs_reconcile and kept.provider_ref is None

    fake.down = False
    other = client.post("/wallet/top-up", data=top_up_form(key, "26.00"))  # the same key, another amount
    assert other.status_code == 409 and key_in(body(other)) != key
    assert fake.payments == {}  # nothing made at the provider for it
    again = client.post("/wallet/top-up", data=top_up_form(key, "25.00"))
    assert again.status_code == 302 and again.headers["Location"].startswith("https://psp.invalid/pay/")
    (same,) = payments_of(student)
    assert same.id == kept.id and same.provider_ref is not None


def test_the_saved_default_method_is_preselected_and_charged_at_once(client, student, fake):
    helpers.succeeded_top_up(fake, student, "10.00", save_method=True)
    settle()
    (method,) = pages.methods_of(student)
    html = body(client.get("/wallet/top-up"))
    assert f'value="method:{method.id}" checked' in html
    assert "4242" in html

    fake.mode = "succeed"
    key = key_in(html)
    response = client.post("/wallet/top-up", data=top_up_form(key, "15.00", pay_with=f"method:{method.id}"),
                           headers=HX)
    assert response.status_code == 204
    payment = payments_of(student)[-1]
    assert response.headers["HX-Location"] == f"/wallet/payments/{payment.id}"
    assert "balance-changed" in response.headers["HX-Trigger"]
    assert payment.state == PaymentState.SUCCEEDED and payment.method_id == method.id
    assert balance(student) == Decimal("25.00")


def test_a_declined_saved_method_says_why_and_the_next_try_is_a_new_payment(client, student, fake):
    helpers.succeeded_top_up(fake, student, "10.00", save_method=True)
    settle()
    (method,) = pages.methods_of(student)
    key = key_in(body(client.get("/wallet/top-up")))
    fake.mode = "decline"
    response = client.post("/wallet/top-up", data=top_up_form(key, "15.00", pay_with=f"method:{method.id}"))
    assert response.status_code == 422
    html = body(response)
    assert "declined" in html and "insufficient funds" in html
    assert key_in(html) != key
    failed = payments_of(student)[-1]
    assert failed.state == PaymentState.FAILED  # kept on record


def test_only_http_addresses_are_followed_out_of_the_portal():
    assert pages.safe_external("https://psp.example/pay/1") == "https://psp.example/pay/1"
    assert pages.safe_external("http://127.0.0.1:8001/pay/1")
    for bad in ("javascript:alert(1)", "//evil.example/x", "/wallet/", "ftp://x.example/", "https://",
                "https://psp.example/\n", "data:text/html,hi", None, ""):
        assert pages.safe_external(bad) is None, bad


def test_a_provider_page_address_that_is_not_http_is_never_followed(client, student, fake, monkeypatch):
    real = fake.create_payment

    def odd(**kwargs):
        from dataclasses import replace

        return replace(real(**kwargs), next_action_url="javascript:alert(1)")

    monkeypatch.setattr(fake, "create_payment", odd)
    key = key_in(body(client.get("/wallet/top-up")))
    response = client.post("/wallet/top-up", data=top_up_form(key))
    (payment,) = payments_of(student)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/wallet/payments/{payment.id}")
    assert "javascript:" not in body(client.get(response.headers["Location"]))


# ------------------------------------------------------------------ a payment's page and its live state


def _open_payment(fake, user, kind="card"):
    payment = helpers.top_up(user, "25.00", kind=kind)
    settle()
    return payment


def test_an_open_payment_polls_every_two_seconds_and_links_to_the_provider(client, student, fake):
    payment = _open_payment(fake, student)
    html = body(client.get(f"/wallet/payments/{payment.id}"))
    assert "Needs your action" in html
    assert f'hx-get="/wallet/payments/{payment.id}" hx-trigger="every 2s"' in html
    assert f'href="{payment.next_action_url}"' in html and "Continue" in html
    assert "Reload to see the latest state" in html  # works without JavaScript

    poll = client.get(f"/wallet/payments/{payment.id}", headers=HX)
    assert poll.status_code == 200
    assert "<html" not in body(poll) and 'id="payment-state"' in body(poll)
    assert "HX-Trigger" not in poll.headers


def test_polling_stops_with_286_once_the_payment_succeeded_and_refreshes_the_balance(client, student, fake):
    payment = _open_payment(fake, student, kind="mobile_money")
    snapshot = fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    from portal.money.payments import services

    services.apply_provider_payment(snapshot, provider=fake.name, source="webhook")
    settle()
    poll = client.get(f"/wallet/payments/{payment.id}", headers=HX)
    assert poll.status_code == 286
    assert "every 2s" not in body(poll)
    assert "balance-changed" in poll.headers["HX-Trigger"] and "notifications-changed" in poll.headers["HX-Trigger"]
    assert "25.00 USD was added to your wallet" in body(poll)


def test_a_failed_payment_shows_the_reason_and_stops_polling(client, student, fake):
    payment = _open_payment(fake, student)
    snapshot = fake.complete(payment.provider_ref, PaymentState.FAILED, failure_code="stolen_card",
                             failure_message="The card was reported stolen.")
    from portal.money.payments import services

    services.apply_provider_payment(snapshot, provider=fake.name, source="webhook")
    settle()
    poll = client.get(f"/wallet/payments/{payment.id}", headers=HX)
    assert poll.status_code == 286 and "HX-Trigger" not in poll.headers
    html = body(client.get(f"/wallet/payments/{payment.id}"))
    assert "Failed" in html and "The card was reported stolen." in html and "Nothing was taken" in html
    assert "Try again" in html
    assert client.get(f"/wallet/payments/{payment.id}/receipt").status_code == 404
    assert client.get(f"/wallet/payments/{payment.id}/receipt.pdf").status_code == 404


def test_the_return_with_the_provider_down_keeps_the_payment_and_says_so(client, student, fake):
    payment = _open_payment(fake, student)
    fake.down = True
    back = client.get(f"/wallet/payments/return/{payment.idempotency_key}")
    assert back.status_code == 302 and back.headers["Location"].endswith(f"/wallet/payments/{payment.id}")
    html = body(client.get(back.headers["Location"]))
    assert "has not confirmed your payment yet" in html
    db.session.refresh(payment)
    assert payment.state == PaymentState.REQUIRES_ACTION


def test_another_students_payment_is_not_found_and_unknown_ids_too(client, fake, login_as):
    other = create_user("student")
    payment = helpers.succeeded_top_up(fake, other, "30.00")
    settle()
    login_as("student")
    for url in (f"/wallet/payments/{payment.id}", f"/wallet/payments/{payment.id}/receipt",
                f"/wallet/payments/{payment.id}/receipt.pdf", f"/wallet/payments/return/{payment.idempotency_key}",
                f"/wallet/payments/{uuid.uuid4()}", "/wallet/payments/return/nope"):
        assert client.get(url).status_code == 404, url
        assert client.get(url, headers=HX).status_code == 404, url
    assert client.get("/wallet/payments/not-a-uuid").status_code == 404
    assert "Grace" not in body(client.get("/wallet/payments"))


# ------------------------------------------------------------------ my payments


def test_my_payments_newest_first_with_state_filters(client, student, fake):
    older = helpers.succeeded_top_up(fake, student, "10.00")
    newer = helpers.top_up(student, "20.00")
    helpers.succeeded_top_up(fake, create_user("student"), "99.00")  # someone else's
    settle()
    html = body(client.get("/wallet/payments"))
    ids = re.findall(r'<tr id="payment-([0-9a-f-]+)"', html)
    assert ids == [str(newer.id), str(older.id)]
    assert "99.00" not in html
    succeeded = body(client.get("/wallet/payments?state=succeeded"))
    assert re.findall(r'<tr id="payment-([0-9a-f-]+)"', succeeded) == [str(older.id)]
    assert 'aria-current="page">Succeeded' in succeeded
    # An unknown state is no filter, never an error.
    assert client.get("/wallet/payments?state=nonsense").status_code == 200
    assert "No payment in this state" in body(client.get("/wallet/payments?state=canceled"))


def test_my_payments_pages_by_key(client, student, fake, app, monkeypatch):
    monkeypatch.setitem(app.config, "TOP_UP_MAXIMUMS", {"USD": "10000000"})
    made = [helpers.top_up(student, f"{n + 1}.00") for n in range(pages.PAGE_SIZE + 2)]
    settle()
    first = body(client.get("/wallet/payments"))
    shown = re.findall(r'<tr id="payment-([0-9a-f-]+)"', first)
    assert len(shown) == pages.PAGE_SIZE
    after = re.search(r'href="(/wallet/payments\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    more = client.get(after, headers=HX)
    assert "<html" not in body(more) and "<table" not in body(more)  # just the rows
    rest = re.findall(r'<tr id="payment-([0-9a-f-]+)"', body(more))
    assert len(rest) == 2 and not set(rest) & set(shown)
    assert set(shown + rest) == {str(p.id) for p in made}
    assert client.get("/wallet/payments?after=garbage").status_code == 200


def test_my_payments_says_so_when_empty(client, student):
    assert "You have not paid anything in yet" in body(client.get("/wallet/payments"))


# ------------------------------------------------------------------ receipts


def test_a_succeeded_payment_has_a_receipt_page_and_a_pdf(client, student, fake):
    payment = helpers.succeeded_top_up(fake, student, "30.00")
    settle()
    html = body(client.get(f"/wallet/payments/{payment.id}/receipt"))
    assert "Receipt" in html and "30.00 USD" in html and str(payment.id) in html
    assert "Ada Lovelace" in html and payment.provider_ref in html
    pdf = client.get(f"/wallet/payments/{payment.id}/receipt.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.data.startswith(b"%PDF") and len(pdf.data) > 1000
    assert "attachment" in pdf.headers["Content-Disposition"]


# ------------------------------------------------------------------ the wallet's entry points


def test_the_wallet_has_a_top_up_tab_and_button(client, student):
    html = body(client.get("/wallet/"))
    assert html.count('href="/wallet/top-up"') >= 2
    assert 'href="/wallet/payments"' in html and 'href="/wallet/payment-methods"' in html
    tabs = body(client.get("/wallet/top-up"))
    assert re.search(r'<a href="/wallet/top-up" aria-current="page">Top up</a>', tabs)


def test_a_payer_whose_wallet_is_frozen_is_told_so_beside_the_form(client, student, fake):
    from tests.money.factories.exchange import freeze

    fund_wallet = helpers.succeeded_top_up(fake, student, "5.00")
    freeze(student, "USD")
    settle()
    key = key_in(body(client.get("/wallet/top-up")))
    for headers in ({}, HX):
        response = client.post("/wallet/top-up", data=top_up_form(key, "10.00"), headers=headers)
        assert response.status_code == 403
        html = body(response)
        assert "wallet is frozen" in html and 'id="top-up-form"' in html
        assert ("<html" in html) != bool(headers)
    assert [p.id for p in payments_of(student)] == [fund_wallet.id]


def test_the_payer_cancels_a_payment_not_paid_yet(client, student, fake):
    payment = _open_payment(fake, student)
    html = body(client.get(f"/wallet/payments/{payment.id}"))
    assert f'hx-post="/wallet/payments/{payment.id}/cancel"' in html and "hx-confirm=" in html
    response = client.post(f"/wallet/payments/{payment.id}/cancel")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/payments/{payment.id}")
    db.session.refresh(payment)
    assert payment.state == PaymentState.CANCELED
    page = body(client.get(response.headers["Location"]))
    assert "Payment canceled. Nothing was taken." in page and "Cancel the payment" not in page


def test_cancel_with_htmx_swaps_the_state_and_a_processing_payment_cannot_be_canceled(client, student, fake):
    payment = _open_payment(fake, student)
    response = client.post(f"/wallet/payments/{payment.id}/cancel", headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert "<html" not in html and 'id="payment-state"' in html and "was canceled" in html
    assert "every 2s" not in html

    fake.mode = "processing"
    waiting = helpers.top_up(student, "9.00", kind="mobile_money")
    settle()
    refused = client.post(f"/wallet/payments/{waiting.id}/cancel", headers=HX)
    assert refused.status_code == 409
    assert "can no longer be canceled" in body(refused) and "every 2s" in body(refused)
    db.session.refresh(waiting)
    assert waiting.state == PaymentState.PROCESSING


def test_an_unconfigured_provider_is_a_clear_503_without_its_details(client, student, monkeypatch):
    from portal.money.payments import services
    from portal.money.payments.providers.base import ProviderUnavailable

    def unconfigured(name):
        raise ProviderUnavailable("SANDBOX_PSP_URL is not set")

    monkeypatch.setattr(services, "get_provider", unconfigured)
    key = key_in(body(client.get("/wallet/top-up")))
    response = client.post("/wallet/top-up", data=top_up_form(key, "25.00"))
    assert response.status_code == 503
    html = body(response)
    assert "cannot be reached right now" in html and "SANDBOX_PSP_URL" not in html
    assert 'value="25.00"' in html and key_in(html) == key
    assert payments_of(student) == []
