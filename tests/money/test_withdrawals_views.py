"""Withdrawal pages: every route for every role, with and without htmx; the request form's steps;
inline decisions in the queue; the statement budget of the list pages."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.money.earnings import withdrawals as service
from portal.money.earnings.models import Withdrawal, WithdrawalStatus
from portal.money.wallets import ledger
from tests.compliance.factories import verified_user_factory
from tests.factories import PASSWORD
from tests.money.test_withdrawals_services import IBAN, ask, fund, withdrawal_fee

#: Active students here are verified at level 2, the level withdrawals need.
create_user = verified_user_factory(2)

HX = {"HX-Request": "true"}


@pytest.fixture
def make_user(app):
    """``login_as`` and ``make_user`` give students verified at level 2."""
    return create_user


def _login(client, user):
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code in (302, 204)
    return user


def settle():
    """End the test's setup: a view that refuses rolls its request back, not the setup."""
    db.session.commit()


def _key(body: str) -> str:
    return re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', body)[1]


def form(key: str, amount: str = "40", **fields) -> dict:
    return {"currency": "USD", "method": "bank_account", "destination": IBAN, "amount": amount,
            "idempotency_key": key, **fields}


# -- Every route, every role ----------------------------------------------------------------------


@pytest.fixture
def pending(make_user):
    student = make_user("student")
    fund(student)
    settle()
    withdrawal, _ = ask(student, "20")
    settle()
    return withdrawal


#: (method, path, permission, status without htmx, status with htmx) for the role that may.
def _routes(withdrawal_id):
    return [
        ("GET", "/wallet/withdrawals", "use", 200, 200),
        ("GET", "/wallet/withdrawals/new", "use", 200, 200),
        ("POST", "/wallet/withdrawals/new", "use", 422, 422),  # an empty form: refused, nothing held
        ("GET", "/wallet/withdrawals/fee?currency=USD&amount=5", "use", 302, 200),
        ("POST", f"/wallet/withdrawals/{withdrawal_id}/cancel", "use", 404, 404),  # another student's
        ("GET", "/wallet/admin/withdrawals", "manage", 200, 200),
        ("GET", f"/wallet/admin/withdrawals/{withdrawal_id}", "manage", 200, 200),
        ("POST", f"/wallet/admin/withdrawals/{withdrawal_id}/approve", "manage", 302, 204),
        ("POST", f"/wallet/admin/withdrawals/{withdrawal_id}/reject", "manage", 302, 204),  # already approved
    ]


@pytest.mark.parametrize("role", ["anonymous", "student", "faculty", "compliance", "admin"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_every_route_answers_each_role_as_declared(client, login_as, pending, role, htmx):
    if role != "anonymous":
        login_as(role)
    allowed = {"student": "use", "admin": "manage"}.get(role)
    headers = HX if htmx else {}
    for method, url, needs, plain, fragment in _routes(pending.id):
        response = client.open(url, method=method, headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code < 500, (method, url, body[:500])
        if role == "anonymous":
            assert response.status_code == (401 if htmx else 302), (method, url)
        elif needs != allowed:
            assert response.status_code == 403, (method, url)
            assert ("<html" in body) != htmx
        else:
            assert response.status_code == (fragment if htmx else plain), (method, url, body[:300])
            if response.status_code in (200, 422):
                assert ("<html" in body) != htmx, (method, url)
    expected = WithdrawalStatus.APPROVED if role == "admin" else WithdrawalStatus.PENDING
    assert db.session.get(Withdrawal, pending.id).status == expected
    assert ledger.verify().ok


def test_unknown_withdrawals_are_404_for_both_sides(client, login_as):
    login_as("student")
    assert client.post(f"/wallet/withdrawals/{uuid.uuid4()}/cancel").status_code == 404
    assert client.post("/wallet/withdrawals/not-a-uuid/cancel").status_code == 404
    client.post("/auth/logout")
    login_as("admin")
    for method, url in (("GET", f"/wallet/admin/withdrawals/{uuid.uuid4()}"),
                        ("POST", f"/wallet/admin/withdrawals/{uuid.uuid4()}/approve"),
                        ("POST", f"/wallet/admin/withdrawals/{uuid.uuid4()}/reject")):
        assert client.open(url, method=method, data={"reason": "Some reason here"}).status_code == 404


# -- The student's side ---------------------------------------------------------------------------


def test_the_form_offers_withdrawable_currencies_and_a_fresh_key(client, login_as):
    login_as("student")
    body = client.get("/wallet/withdrawals/new").get_data(as_text=True)
    assert '<option value="USD"' in body and '<option value="BTC"' in body and '<option value="ETH"' in body
    assert '<option value="AZR"' not in body
    assert "convert it to USD first" in body
    assert len(_key(body)) >= 16
    assert _key(client.get("/wallet/withdrawals/new").get_data(as_text=True)) != _key(body)


def test_review_then_confirm_holds_once_and_shows_the_list(client, login_as):
    withdrawal_fee(fixed="1", percent="0")
    student = login_as("student")
    wallet = fund(student)
    settle()
    page = client.get("/wallet/withdrawals/new").get_data(as_text=True)
    key = _key(page)
    review = client.post("/wallet/withdrawals/new", data=form(key, op="review"))
    body = review.get_data(as_text=True)
    assert review.status_code == 200
    assert "Confirm your withdrawal" in body and "1.00 USD" in body and "41.00 USD" in body
    assert "DE89 3704 0044 0532 0130 00" in body  # the student checks what they typed
    assert 'name="quoted_fee" type="hidden" value="1.00"' in body
    assert ledger.user_wallet(student.id, "USD").locked_balance == 0  # nothing held by the review
    confirm = client.post("/wallet/withdrawals/new", data=form(key, op="confirm", quoted_fee="1.00"))
    assert confirm.status_code == 302 and confirm.headers["Location"].endswith("/wallet/withdrawals")
    again = client.post("/wallet/withdrawals/new", data=form(key, op="confirm", quoted_fee="1.00"))
    assert again.status_code == 302
    db.session.refresh(wallet)
    assert wallet.locked_balance == Decimal("41.00")
    assert db.session.scalar(select(func.count()).select_from(Withdrawal).where(Withdrawal.user_id == student.id)) == 1
    listing = client.get("/wallet/withdrawals").get_data(as_text=True)
    assert "already requested" in listing  # the second submit's flash
    assert "DE •••• 3000" in listing and "40.00 USD" in listing and "Pending" in listing
    assert "0532 0130" not in listing  # never the full destination
    assert ledger.verify().ok


def test_confirm_with_htmx_sends_the_browser_to_the_list_and_refreshes_balances(client, login_as):
    student = login_as("student")
    fund(student)
    settle()
    response = client.post("/wallet/withdrawals/new", data=form(ledger.new_key(), op="confirm", quoted_fee="0.00"),
                           headers=HX)
    assert response.status_code == 204
    assert response.headers["HX-Location"].endswith("/wallet/withdrawals")
    assert response.headers["HX-Trigger"] == "balance-changed"


@pytest.mark.parametrize(("fields", "message"), [
    ({"destination": "DE89 3704 0044 0532 0130 01"}, "check digits do not match"),
    ({"amount": "0"}, "more than zero"),
    ({"amount": "-1"}, "must be positive"),
    ({"amount": "1.001"}, "at most 2 decimal places"),
    ({"amount": "500"}, "Not enough money"),
    ({"currency": "XYZ"}, "Unknown currency"),
    ({"method": "crypto_address"}, "not to a crypto address"),
])
def test_bad_input_is_refused_next_to_its_field_and_holds_nothing(client, login_as, fields, message):
    student = login_as("student")
    wallet = fund(student)
    settle()
    for op in ("review", "confirm"):
        response = client.post("/wallet/withdrawals/new", data={**form(ledger.new_key(), op=op), **fields})
        assert response.status_code in (409, 422), response.status_code
        assert message in response.get_data(as_text=True)
        fragment = client.post("/wallet/withdrawals/new", data={**form(ledger.new_key(), op=op), **fields}, headers=HX)
        assert message in fragment.get_data(as_text=True) and "<html" not in fragment.get_data(as_text=True)
        assert 'id="withdrawal-panel"' in fragment.get_data(as_text=True)
    db.session.refresh(wallet)
    assert wallet.locked_balance == 0


def test_a_frozen_wallet_is_refused_with_a_message(client, login_as):
    from portal.money.wallets.models import WalletStatus

    student = login_as("student")
    wallet = fund(student)
    settle()
    with ledger.as_ledger():
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
    settle()
    response = client.post("/wallet/withdrawals/new", data=form(ledger.new_key(), op="confirm"))
    assert response.status_code == 422 and "frozen" in response.get_data(as_text=True)


def test_a_changed_fee_sends_the_student_back_to_check(client, login_as):
    withdrawal_fee(fixed="2", percent="0")
    student = login_as("student")
    fund(student)
    settle()
    response = client.post("/wallet/withdrawals/new", data=form(ledger.new_key(), op="confirm", quoted_fee="1.00"))
    assert response.status_code == 409
    assert "The fee is now 2.00 USD" in response.get_data(as_text=True)
    assert ledger.user_wallet(student.id, "USD").locked_balance == 0


def test_change_details_goes_back_to_the_filled_form(client, login_as):
    login_as("student")
    response = client.post("/wallet/withdrawals/new", data=form(ledger.new_key(), op="edit"), headers=HX)
    body = response.get_data(as_text=True)
    assert "Withdraw money" in body and 'value="40"' in body and "<html" not in body


def test_the_fee_preview_is_a_fragment_and_a_plain_visit_goes_to_the_form(client, login_as):
    withdrawal_fee(fixed="0.50", percent="1")
    login_as("student")
    preview = client.get("/wallet/withdrawals/fee?currency=USD&amount=100", headers=HX).get_data(as_text=True)
    assert "1.50 USD" in preview and "101.50 USD" in preview and "<html" not in preview
    bad = client.get("/wallet/withdrawals/fee?currency=USD&amount=1.234", headers=HX).get_data(as_text=True)
    assert "at most 2 decimal places" in bad
    plain = client.get("/wallet/withdrawals/fee?currency=USD&amount=100")
    assert plain.status_code == 302 and "/wallet/withdrawals/new" in plain.headers["Location"]


def test_the_student_cancels_inline_or_by_a_plain_post(client, login_as):
    student = login_as("student")
    wallet = fund(student)
    settle()
    first, _ = ask(student, "10")
    second, _ = ask(student, "15")
    row = client.post(f"/wallet/withdrawals/{first.id}/cancel", headers=HX)
    body = row.get_data(as_text=True)
    assert row.status_code == 200 and row.headers["HX-Trigger"] == "balance-changed"
    assert f'id="withdrawal-{first.id}"' in body and "Cancelled" in body and "<html" not in body
    plain = client.post(f"/wallet/withdrawals/{second.id}/cancel")
    assert plain.status_code == 302
    db.session.refresh(wallet)
    assert wallet.locked_balance == 0
    again = client.post(f"/wallet/withdrawals/{second.id}/cancel", headers=HX)
    assert again.status_code == 409 and "already cancelled" in again.get_data(as_text=True)
    assert ledger.verify().ok


def test_a_student_cannot_see_or_cancel_another_students_withdrawal(client, login_as, pending):
    login_as("student")
    assert client.post(f"/wallet/withdrawals/{pending.id}/cancel").status_code == 404
    assert client.post(f"/wallet/withdrawals/{pending.id}/cancel", headers=HX).status_code == 404
    assert str(pending.id) not in client.get("/wallet/withdrawals").get_data(as_text=True)
    assert db.session.get(Withdrawal, pending.id).status == WithdrawalStatus.PENDING


def test_a_rejected_withdrawal_shows_its_reason_to_the_student(client, login_as):
    student = login_as("student")
    fund(student)
    settle()
    withdrawal, _ = ask(student, "10")
    service.reject(create_user("admin"), withdrawal.id, "The account is not in your name.")
    body = client.get("/wallet/withdrawals").get_data(as_text=True)
    assert "Rejected" in body and "The account is not in your name." in body


def test_the_students_list_pages_by_keyset_within_the_statement_budget(client, login_as, statements):
    student = login_as("student")
    fund(student, amount="1000")
    settle()
    for _ in range(3):
        ask(student, "1")
    with statements() as few:
        assert client.get("/wallet/withdrawals").status_code == 200
    for _ in range(30):
        ask(student, "1")
    with statements() as many:
        first = client.get("/wallet/withdrawals").get_data(as_text=True)
    assert many.count == few.count <= 12, many.statements
    after = re.search(r'hx-get="/wallet/withdrawals\?after=([^"]+)"', first)[1]
    rows = client.get(f"/wallet/withdrawals?after={after}", headers=HX).get_data(as_text=True)
    assert rows.count('class="withdrawal-row"') == 13 and "<html" not in rows


# -- The admins' side -----------------------------------------------------------------------------


def test_the_queue_and_review_page_show_what_an_admin_needs(client, login_as, pending):
    login_as("admin")
    queue = client.get("/wallet/admin/withdrawals").get_data(as_text=True)
    assert f'id="queue-{pending.id}"' in queue and "DE •••• 3000" in queue
    assert "0532 0130" not in queue  # the full destination only on the review page
    review = client.get(f"/wallet/admin/withdrawals/{pending.id}").get_data(as_text=True)
    assert "DE89 3704 0044 0532 0130 00" in review
    assert re.search(r"<th scope=\"row\">USD</th>\s*<td>100.00</td>\s*<td>20.00</td>\s*<td>80.00</td>", review)
    assert "Approve and pay out 20.00 USD" in review
    results = client.get("/wallet/admin/withdrawals?status=pending", headers={**HX, "HX-Target": "results"})
    assert 'id="results"' in results.get_data(as_text=True) and "<html" not in results.get_data(as_text=True)


def test_inline_approve_then_a_second_click_is_refused_cleanly(client, login_as, pending):
    login_as("admin")
    url = f"/wallet/admin/withdrawals/{pending.id}/approve"
    first = client.post(url, data={"from": "queue", "note": "SEPA-991"}, headers=HX)
    body = first.get_data(as_text=True)
    assert first.status_code == 200 and "Approved" in body and "SEPA-991" in body and "<html" not in body
    second = client.post(url, data={"from": "queue"}, headers=HX)
    assert second.status_code == 409 and "already approved" in second.get_data(as_text=True)
    rejected = client.post(f"/wallet/admin/withdrawals/{pending.id}/reject", data={"reason": "Too late now."})
    assert rejected.status_code == 302
    page = client.get(rejected.headers["Location"]).get_data(as_text=True)
    assert "already approved" in page and "SEPA-991" in page
    wallet = db.session.get(type(ledger.user_wallet(pending.user_id, "USD")), pending.wallet_id)
    db.session.refresh(wallet)
    assert wallet.balance == Decimal("80") and wallet.locked_balance == 0
    assert ledger.verify().ok


def test_reject_needs_a_reason_inline_and_without_javascript(client, login_as, pending):
    login_as("admin")
    url = f"/wallet/admin/withdrawals/{pending.id}/reject"
    inline = client.post(url, data={"from": "queue", "reason": ""}, headers=HX)
    assert inline.status_code == 422 and "Say why" in inline.get_data(as_text=True)
    plain = client.post(url, data={"reason": "no"})
    assert plain.status_code == 422
    body = plain.get_data(as_text=True)
    assert "Say why" in body and 'aria-invalid="true"' in body and "<html" in body
    assert db.session.get(Withdrawal, pending.id).status == WithdrawalStatus.PENDING
    done = client.post(url, data={"reason": "The IBAN is not in the student's name."})
    assert done.status_code == 302
    assert db.session.get(Withdrawal, pending.id).status == WithdrawalStatus.REJECTED
    assert "The hold was released" in client.get(done.headers["Location"]).get_data(as_text=True)


def test_the_queue_stays_within_the_statement_budget(client, login_as, statements):
    login_as("admin")
    for _ in range(2):
        student = create_user("student")
        fund(student)
        ask(student, "1")
    with statements() as few:
        assert client.get("/wallet/admin/withdrawals?status=all").status_code == 200
    for _ in range(30):
        student = create_user("student")
        fund(student)
        ask(student, "1")
    with statements() as many:
        body = client.get("/wallet/admin/withdrawals?status=all").get_data(as_text=True)
    assert many.count == few.count <= 12, many.statements
    assert body.count('class="queue-row"') == 25 and "Show more" in body
    with statements() as review:
        student_w = db.session.scalars(select(Withdrawal).limit(1)).one()
        client.get(f"/wallet/admin/withdrawals/{student_w.id}")
    assert review.count <= 12, review.statements
