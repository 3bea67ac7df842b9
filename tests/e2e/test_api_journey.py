"""The API journey, in a real browser: a student opens their account's "API tokens" page from
the menu, makes a token that may read and write, copies it from the page (shown once), and the
API answers with it over HTTP from the live portal: their profile, their balance, a transfer
sent with an Idempotency-Key (sent twice, paid once). The browser's session cookie alone opens
nothing under /api. Revoking the token on the page ends it at once.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import address, log_in, wait_for_htmx
from tests.factories import create_user
from tests.money.factories import fund

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_case(db_as_tests):
    with db_as_tests():
        student = create_user("student", full_name="Lina Haddad", email=address("lina-api"))
        friend = create_user("student", full_name="Tomas Berg", email=address("tomas-api"))
        fund(student, "40.00", "USD")
        return {"student": student.email, "friend": friend.email}


def test_a_student_makes_a_token_and_the_api_answers_with_it(api_case, page, live_server):
    log_in(page, api_case["student"], "Lina")
    page.get_by_text("Lina", exact=True).click()  # the account menu
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    expect(page.get_by_text("No live token.")).to_be_visible()

    page.get_by_label("Name").fill("budget script")
    page.get_by_label("Change it (mark notifications read, send money)").check()
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Make token").click()
    expect(page.get_by_text("Copy it now: it is shown only this once.")).to_be_visible()
    token = page.get_by_label("Token").input_value()
    assert token.startswith("azp_")

    api = page.request  # carries the browser's session cookie, which the API ignores
    assert api.get(f"{live_server}/api/v1/me").status == 401
    bearer = {"Authorization": f"Bearer {token}"}
    me = api.get(f"{live_server}/api/v1/me", headers=bearer)
    assert me.status == 200 and me.json()["full_name"] == "Lina Haddad"
    assert me.headers["ratelimit-remaining"].isdigit()
    wallets = {w["currency"]: w for w in api.get(f"{live_server}/api/v1/wallets", headers=bearer).json()["items"]}
    assert wallets["USD"]["available"] == "40.00"

    transfer = {"recipient": api_case["friend"], "amount": "7.50", "currency": "USD", "note": "tickets"}
    keyed = {**bearer, "Idempotency-Key": uuid.uuid4().hex}
    first = api.post(f"{live_server}/api/v1/transfers", headers=keyed, data=transfer)
    again = api.post(f"{live_server}/api/v1/transfers", headers=keyed, data=transfer)
    assert (first.status, again.status) == (201, 200)
    assert again.json()["transaction_id"] == first.json()["transaction_id"] and again.json()["replayed"]
    listed = api.get(f"{live_server}/api/v1/transactions", headers=bearer).json()["items"]
    assert [t["amount"] for t in listed if t["type"] == "transfer"] == ["7.50"]

    page.goto("/auth/tokens")
    row = page.get_by_role("row", name="budget script")
    expect(row).to_contain_text(token[:12])
    expect(page.get_by_text(token)).to_have_count(0)  # shown once, then only its prefix
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("is revoked: it no longer works.")).to_be_visible()
    wait_for_htmx(page)
    refused = api.get(f"{live_server}/api/v1/me", headers=bearer)
    assert refused.status == 401 and refused.headers["content-type"] == "application/problem+json"
    assert "revoked" in refused.json()["detail"]
