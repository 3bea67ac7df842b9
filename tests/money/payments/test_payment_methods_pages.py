"""Saved payment methods: the list (brand, last four, expiry, default, expired), making one the
default and removing one (confirm page without JavaScript, htmx fragment with it), CSRF on every
POST, another student's method as a 404, the provider down while removing."""

from __future__ import annotations

import re
import uuid

import pytest

from portal.db import db
from portal.money.payments import pages
from portal.money.payments.models import PaymentMethod
from portal.money.payments.providers.base import MethodKind, PaymentState, ProviderMethod
from tests.factories import create_user
from tests.money.payments import helpers

HX = {"HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def student(login_as):
    return login_as("student", full_name="Ada Lovelace")


def save(fake, user, brand="visa", last4="4242", month=12, year=2030, kind=MethodKind.CARD):
    """A method saved by a succeeded top-up paid with it."""
    payment = helpers.top_up(user, "10.00", kind=kind.value, save_method=True)
    method = ProviderMethod(fake._id("pm"), kind, brand, last4, month, year)
    snapshot = fake.complete(payment.provider_ref, PaymentState.SUCCEEDED, method=method)
    from portal.money.payments import services

    services.apply_provider_payment(snapshot, provider=fake.name, source="webhook")
    db.session.commit()
    return db.session.get(PaymentMethod, payment.method_id)


def test_the_list_shows_brand_last_four_expiry_default_and_expired(client, student, fake):
    visa = save(fake, student)
    master = save(fake, student, "mastercard", "5555", 1, 2021)
    mobile = save(fake, student, "mpesa", "5678", None, None, kind=MethodKind.MOBILE_MONEY)
    html = body(client.get("/wallet/payment-methods"))
    items = re.findall(r'<li id="method-([0-9a-f-]+)" class="method-item( is-expired)?">', html)
    assert [i[0] for i in items][0] == str(visa.id)  # the default first
    assert {i[0] for i in items} == {str(visa.id), str(master.id), str(mobile.id)}
    assert dict(items)[str(master.id)] == " is-expired"
    visa_item = html[html.index(f'id="method-{visa.id}"'):html.index(f'id="method-{visa.id}"') + 1500]
    assert "Visa" in visa_item and "4242" in visa_item and "expires 12/2030" in visa_item
    assert '<span class="badge">Default</span>' in visa_item
    master_item = html[html.index(f'id="method-{master.id}"'):][:1500]
    assert "Expired" in master_item and "5555" in master_item and "expires 01/2021" in master_item
    assert "Make default" not in master_item  # an expired card cannot become the default
    assert "Mpesa" in html and "5678" in html and "Mobile money" in html
    # Nothing beyond brand, last four and expiry is ever shown.
    assert visa.provider_ref not in html


def test_an_empty_list_says_how_to_save_one(client, student):
    assert "No saved payment method" in body(client.get("/wallet/payment-methods"))


def test_make_default_without_javascript_redirects_back(client, student, fake):
    first, second = save(fake, student), save(fake, student, "mastercard", "4444")
    response = client.post(f"/wallet/payment-methods/{second.id}/default")
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/payment-methods")
    db.session.refresh(first)
    db.session.refresh(second)
    assert second.is_default and not first.is_default
    assert "Default payment method changed." in body(client.get("/wallet/payment-methods"))


def test_make_default_with_htmx_swaps_the_list(client, student, fake):
    first, second = save(fake, student), save(fake, student, "mastercard", "4444")
    response = client.post(f"/wallet/payment-methods/{second.id}/default", headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert f'id="method-{first.id}"' in html
    assert "<html" not in html and html.lstrip().startswith('<div id="payment-method-list">')
    assert response.headers["HX-Trigger"] == "payment-methods-changed"
    assert re.findall(r'<li id="method-([0-9a-f-]+)"', html)[0] == str(second.id)
    assert "Default payment method changed." in html


def test_remove_asks_first_without_javascript_then_removes(client, student, fake):
    method = save(fake, student)
    confirm = client.get(f"/wallet/payment-methods/{method.id}/remove")
    assert confirm.status_code == 200
    html = body(confirm)
    assert "Remove Visa" in html and "4242" in html and 'method="post"' in html
    db.session.refresh(method)
    assert method.removed_at is None  # a GET changes nothing
    done = client.post(f"/wallet/payment-methods/{method.id}/remove")
    assert done.status_code == 302
    db.session.refresh(method)
    assert method.removed_at is not None and method.provider_ref in fake.detached
    assert "No saved payment method" in body(client.get("/wallet/payment-methods"))


def test_remove_with_htmx_confirms_in_the_browser_and_swaps_the_list(client, student, fake):
    method, other = save(fake, student), save(fake, student, "mastercard", "4444")
    page = body(client.get("/wallet/payment-methods"))
    assert f'hx-post="/wallet/payment-methods/{method.id}/remove"' in page and "hx-confirm=" in page
    response = client.post(f"/wallet/payment-methods/{method.id}/remove", headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert f'id="method-{method.id}"' not in html and f'id="method-{other.id}"' in html
    assert "Payment method removed." in html
    # The remaining method became the default.
    assert re.search(rf'id="method-{other.id}".*?<span class="badge">Default</span>', html, re.S)


def test_every_post_needs_the_csrf_token(client, student, fake):
    method = save(fake, student)
    for url in (f"/wallet/payment-methods/{method.id}/default", f"/wallet/payment-methods/{method.id}/remove"):
        assert client.post(url, csrf=False).status_code == 400
    db.session.refresh(method)
    assert method.removed_at is None and fake.detached == []


def test_another_students_method_is_not_found(client, fake, login_as):
    owner = create_user("student")
    method = save(fake, owner)
    login_as("student")
    for verb, url in (("POST", f"/wallet/payment-methods/{method.id}/default"),
                      ("GET", f"/wallet/payment-methods/{method.id}/remove"),
                      ("POST", f"/wallet/payment-methods/{method.id}/remove"),
                      ("POST", f"/wallet/payment-methods/{uuid.uuid4()}/remove")):
        assert client.open(url, method=verb).status_code == 404, url
        assert client.open(url, method=verb, headers=HX).status_code == 404, url
    db.session.refresh(method)
    assert method.removed_at is None and fake.detached == []
    assert "4242" not in body(client.get("/wallet/payment-methods"))


def test_provider_down_while_removing_keeps_the_method_and_says_so(client, student, fake):
    method = save(fake, student)
    fake.down = True
    response = client.post(f"/wallet/payment-methods/{method.id}/remove", headers=HX)
    assert response.status_code == 503
    assert "not answering" in body(response) and f'id="method-{method.id}"' in body(response)
    plain = client.post(f"/wallet/payment-methods/{method.id}/remove")
    assert plain.status_code == 302
    assert "not answering" in body(client.get("/wallet/payment-methods"))
    db.session.refresh(method)
    assert method.removed_at is None


def test_saved_methods_are_offered_when_paying_and_expired_ones_disabled(client, student, fake):
    good = save(fake, student)
    old = save(fake, student, "mastercard", "5555", 1, 2021)
    html = body(client.get("/wallet/top-up"))
    assert re.search(rf'value="method:{good.id}" checked', html)
    assert re.search(rf'value="method:{old.id}"\s+disabled', html)
    assert [m.id for m in pages.methods_of(student)][0] == good.id
