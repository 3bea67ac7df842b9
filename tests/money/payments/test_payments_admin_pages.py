"""Finance's pages of payments: every route for every role with and without htmx, the payments
list's filters (malformed ones answered with a message, never a 500), its keyset paging and
statement budget, a payment's page (facts, ledger rows, timeline with escaped raw data), the
refund form (partial refunds in a row, over-refunds and bad amounts refused, confirmation step,
double submit), the refunds queue's decisions, reconciliation and the webhook log with replay."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.payments import admin_queries, services
from portal.money.payments.models import (
    Payment,
    PaymentEvent,
    PayWith,
    Purpose,
    Refund,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction
from portal.platform.notifications.models import Notification
from tests.factories import PASSWORD
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of
from tests.money.payments.helpers import paid_course, student, succeeded_top_up, top_up

HX = {"HX-Request": "true"}
ROLES_WITHOUT = ["student", "faculty", "compliance"]


def settle():
    """End the test's setup: a view that refuses rolls its request back, not the setup."""
    db.session.commit()


def _login(client, user):
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code in (302, 204)
    return user


def body_of(response) -> str:
    return response.get_data(as_text=True)


def _key(body: str) -> str:
    return re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', body)[1]


def payment_row(user, amount: str = "10.00", code: str = "USD", *, state: PaymentState = PaymentState.SUCCEEDED,
                provider: str = "sandbox", kind: PayWith = PayWith.CARD, purpose: Purpose = Purpose.TOP_UP,
                created_at=None, **fields) -> Payment:
    """A payment row as the services leave one (for the list: no provider, no ledger)."""
    payment = Payment(user_id=user.id, purpose=purpose, wallet_currency=code, amount=Decimal(amount), currency=code,
                      state=state, provider=provider, method_kind=kind, idempotency_key=uuid.uuid4().hex,
                      provider_ref=None if provider == "wallet" else f"pay_{uuid.uuid4().hex[:12]}",
                      credited_at=utcnow() if state == PaymentState.SUCCEEDED else None, **fields)
    if created_at is not None:
        payment.created_at = created_at
    db.session.add(payment)
    db.session.flush()
    return payment


def webhook_row(payment=None, *, outcome=WebhookOutcome.APPLIED, payload=None, event_type="payment.updated",
                received_at=None) -> WebhookEvent:
    hook = WebhookEvent(provider="sandbox", event_id=f"evt_{uuid.uuid4().hex[:16]}", event_type=event_type,
                        received_at=received_at or utcnow(), verified=True,
                        payload=payload if payload is not None else {"type": event_type},
                        headers={"sandbox-signature": "t=1,v1=abc"}, outcome=outcome,
                        payment_id=payment.id if payment is not None else None,
                        applied_at=utcnow() if outcome == WebhookOutcome.APPLIED else None)
    db.session.add(hook)
    db.session.flush()
    return hook


def requested_refund(fake, amount: str = "19.00") -> Refund:
    """A student's course refund request the automatic rule did not approve (too much done)."""
    user, course = student(), paid_course(amount)
    fund(user, "50")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=uuid.uuid4().hex, from_wallet=True)
    refund = Refund(payment_id=payment.id, user_id=user.id, amount=Decimal(amount), currency="USD",
                    reason="The course was not what I expected", state=RefundState.REQUESTED,
                    requested_by_id=user.id, idempotency_key=f"azora-refund-{uuid.uuid4().hex}")
    db.session.add(refund)
    db.session.flush()
    return refund


# -- Every route, every role ----------------------------------------------------------------------


@pytest.fixture
def rows(fake):
    """A succeeded top-up with a webhook, and a refund request waiting for finance."""
    payment = succeeded_top_up(fake, student(), "40.00")
    hook = webhook_row(payment)
    refund = requested_refund(fake)
    settle()
    return payment, hook, refund


def _routes(payment, hook, refund):
    """(method, path, status for an admin without htmx, with htmx)."""
    return [
        ("GET", "/wallet/admin/payments", 200, 200),
        ("GET", f"/wallet/admin/payments/{payment.id}", 200, 200),
        ("POST", f"/wallet/admin/payments/{payment.id}/refund", 422, 422),  # no reason: refused, nothing made
        ("GET", "/wallet/admin/refunds", 200, 200),
        ("POST", f"/wallet/admin/refunds/{refund.id}/reject", 302, 204),  # no reason: refused, back to the queue
        ("POST", f"/wallet/admin/refunds/{uuid.uuid4()}/approve", 404, 404),
        ("GET", "/wallet/admin/payments/reconciliation", 200, 200),
        ("POST", "/wallet/admin/payments/reconciliation", 302, 200),  # run now
        ("GET", "/wallet/admin/payments/webhooks", 200, 200),
        ("GET", f"/wallet/admin/payments/webhooks/{hook.id}", 200, 200),
        ("POST", f"/wallet/admin/payments/webhooks/{uuid.uuid4()}/replay", 404, 404),
    ]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("role", ROLES_WITHOUT)
def test_only_money_admins_reach_the_pages(client, login_as, rows, role, htmx):
    login_as(role)
    runs_before = admin_queries.last_reconciliation()
    headers = HX if htmx else {}
    for method, path, _, _ in _routes(*rows):
        response = client.open(path, method=method, headers=headers, data={"reason": "x", "amount": "1"})
        assert response.status_code == 403, (method, path)
        body = body_of(response)
        assert "manage fees, rates and withdrawals" in body
        assert ("<html" in body) is not htmx
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.payment_id == rows[0].id)) == 0
    assert admin_queries.last_reconciliation() == runs_before  # "Run now" ran nothing


def test_anonymous_visitors_are_sent_to_log_in(client, rows):
    for method, path, _, _ in _routes(*rows):
        response = client.open(path, method=method)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], path
        assert client.open(path, method=method, headers=HX).status_code == 401, path


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_admins_reach_every_page_with_and_without_htmx(client, login_as, rows, htmx):
    login_as("admin")
    for method, path, page_status, htmx_status in _routes(*rows):
        response = client.open(path, method=method, headers=HX if htmx else {})
        assert response.status_code == (htmx_status if htmx else page_status), (method, path, body_of(response)[:300])
        if method == "GET":
            assert "hx-request" in response.headers.get("Vary", "").lower()
            # The lists answer htmx with their results alone; the other pages are whole pages.
            listing = path in ("/wallet/admin/payments", "/wallet/admin/refunds", "/wallet/admin/payments/webhooks")
            assert ("<html" in body_of(response)) is not (htmx and listing), path


# -- The payments list ----------------------------------------------------------------------------


def _listed(client, query: str = "", headers=None) -> tuple[int, str]:
    response = client.get(f"/wallet/admin/payments{query}", headers=headers or {})
    return response.status_code, body_of(response)


def test_the_list_filters_by_each_field(client, login_as):
    login_as("admin")
    ada = student(full_name="Ada Quillfeather", email=f"ada-{uuid.uuid4().hex[:8]}@tests.example")
    bo = student(full_name="Bo Marsh")
    day = utcnow() - timedelta(days=40)
    small = payment_row(ada, "5.00", created_at=day)
    big = payment_row(ada, "250.00", state=PaymentState.FAILED, provider="stripe", created_at=day + timedelta(days=2))
    mobile = payment_row(bo, "12.00", kind=PayWith.MOBILE_MONEY, state=PaymentState.PROCESSING)
    course = paid_course("19.00")
    bought = payment_row(bo, "19.00", provider="wallet", kind=PayWith.WALLET, purpose=Purpose.COURSE_PURCHASE,
                         course_id=course.id)
    btc = payment_row(bo, "0.00100000", "BTC")
    mine = {p.id for p in (small, big, mobile, bought, btc)}

    def shown(query: str) -> set:
        status, body = _listed(client, query)
        assert status == 200, body[:500]
        return {p for p in mine if f'id="payment-{p}"' in body}

    assert shown("") == mine
    page = _listed(client, "")[1]
    assert 'hx-push-url="true"' in page and 'hx-target="#results"' in page and 'method="get"' in page
    assert shown(f"?user={ada.email[:12]}") == {small.id, big.id}
    assert shown("?user=quillFEATHER") == {small.id, big.id}
    assert shown("?user=Bo+Marsh") >= {mobile.id, bought.id, btc.id} and small.id not in shown("?user=Bo+Marsh")
    assert shown("?state=failed") & mine == {big.id}
    assert shown("?state=processing") & mine == {mobile.id}
    assert shown("?provider=stripe") & mine == {big.id}
    assert shown("?method=mobile_money") & mine == {mobile.id}
    assert shown("?purpose=course_purchase") & mine == {bought.id}
    assert shown("?currency=BTC") & mine == {btc.id}
    assert shown("?min=100") & mine == {big.id}
    assert shown("?min=10&max=20&currency=USD") & mine == {mobile.id, bought.id}
    start = day.date().isoformat()
    assert shown(f"?since={start}&until={start}") & mine == {small.id}
    assert shown(f"?since={(day + timedelta(days=1)).date().isoformat()}&user=Quillfeather") == {big.id}
    # the course's title and the payer show on the row
    body = _listed(client, f"?user={ada.email}")[1]
    assert "Ada Quillfeather" in body and ada.email in body and "250.00" in body
    assert course.title in _listed(client, "?purpose=course_purchase&user=Bo+Marsh")[1]


@pytest.mark.parametrize(("query", "field", "message"), [
    ("?since=2026-13-40", "Created from", "Enter a date like 2026-12-31."),
    ("?until=yesterday", "Created to", "Enter a date like 2026-12-31."),
    ("?since=2026-05-02&until=2026-05-01", "Created to", "The end is before the start."),
    ("?min=abc", "Amount from", "Enter an amount like 10 or 12.50."),
    ("?max=-5", "Amount to", "Enter an amount like 10 or 12.50."),
    ("?min=NaN", "Amount from", "Enter an amount like 10 or 12.50."),
    ("?min=50&max=10", "Amount to", "The upper amount is below the lower one."),
    ("?state=paid", "State", "Choose a state from the list."),
    ("?provider=paypal", "Provider", "Choose a provider from the list."),
    ("?method=cheque", "Paid with", "Choose a method from the list."),
    ("?purpose=gift", "Purpose", "Choose a purpose from the list."),
    ("?currency=XYZ", "Currency", "Choose a currency from the list."),
])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_malformed_filters_get_a_clear_message_never_a_500(client, login_as, query, field, message, htmx):
    login_as("admin")
    payment_row(student(), "70.00")
    status, body = _listed(client, query, HX if htmx else None)
    assert status == 422
    assert "Some filters could not be used" in body and f"{field}: " in body and message in body
    assert ("<html" in body) is not htmx
    assert 'id="payment-' in body  # the filters that could be used still apply: the list is shown


def test_a_malformed_cursor_gives_the_first_page(client, login_as):
    login_as("admin")
    payment = payment_row(student(), "7.00")
    status, body = _listed(client, "?after=not-a-cursor!!")
    assert status == 200 and f'id="payment-{payment.id}"' in body


def test_keyset_pages_are_newest_first_and_stable_with_equal_times(client, login_as, monkeypatch):
    from portal.money.payments import admin_queries

    monkeypatch.setattr(admin_queries.payments, "__defaults__", (None, None, 3))
    login_as("admin")
    payer = student(full_name=f"Paging {uuid.uuid4().hex[:6]}")
    same = utcnow() - timedelta(days=3)
    made = [payment_row(payer, f"{n + 1}.00", created_at=same) for n in range(5)]
    newest = payment_row(payer, "99.00")
    query = f"?user={payer.full_name.replace(' ', '+')}"
    status, first = _listed(client, query)
    order = re.findall(r'id="payment-([0-9a-f-]{36})"', first)
    assert status == 200 and len(order) == 3 and order[0] == str(newest.id)
    assert "Show older payments" in first
    seen = list(order)
    next_url = re.search(r'href="(/wallet/admin/payments\?[^"]*after=[^"]+)"', first)[1].replace("&amp;", "&")
    while next_url:
        response = client.get(next_url, headers=HX)
        fragment = body_of(response)
        assert response.status_code == 200 and "<table" not in fragment  # only the following rows
        seen += re.findall(r'id="payment-([0-9a-f-]{36})"', fragment)
        found = re.search(r'href="(/wallet/admin/payments\?[^"]*after=[^"]+)"', fragment)
        next_url = found[1].replace("&amp;", "&") if found else None
    assert sorted(seen) == sorted(str(p.id) for p in [*made, newest]) and len(seen) == len(set(seen)) == 6
    tied = [uuid.UUID(i) for i in seen[1:]]
    assert tied == sorted(tied, reverse=True)  # equal times: by id, the same order on every request


def test_the_count_beside_the_list_is_capped(client, login_as, monkeypatch):
    import blueprints.compliance
    import portal.compliance as compliance

    login_as("admin")
    payer = student(full_name=f"Counted {uuid.uuid4().hex[:6]}")
    for n in range(4):
        payment_row(payer, f"{n + 1}.00")
    query = f"?user={payer.full_name.replace(' ', '+')}"
    assert "4 payments match these filters." in _listed(client, query)[1]
    monkeypatch.setattr(compliance, "COUNT_CAP", 2)  # counted up to 3
    monkeypatch.setattr(blueprints.compliance, "COUNT_CAP", 2)  # shown as "2+"
    assert "2+ payments match these filters." in _listed(client, query)[1]


def test_the_list_keeps_its_statement_budget(client, login_as, statements):
    login_as("admin")
    course = paid_course("9.00")
    payer = student()
    for n in range(2):
        payment_row(payer, f"{n + 1}.00")
    client.get("/wallet/admin/payments")
    query = "?state=succeeded&min=0.5&since=2000-01-01&user=tests.example"
    with statements() as few:
        assert client.get("/wallet/admin/payments").status_code == 200
    with statements() as few_filtered:
        assert client.get(f"/wallet/admin/payments{query}").status_code == 200
    for n in range(30):
        payment_row(student(), f"{n + 1}.00", purpose=Purpose.COURSE_PURCHASE if n % 3 == 0 else Purpose.TOP_UP,
                    course_id=course.id if n % 3 == 0 else None)
    with statements() as many:
        assert client.get("/wallet/admin/payments").status_code == 200
    with statements() as many_filtered:
        assert client.get(f"/wallet/admin/payments{query}").status_code == 200
    assert many.count == few.count <= 12, many.statements
    assert many_filtered.count == few_filtered.count <= 12, many_filtered.statements


# -- A payment's page -----------------------------------------------------------------------------


def _page(client, payment, headers=None) -> tuple[int, str]:
    response = client.get(f"/wallet/admin/payments/{payment.id}", headers=headers or {})
    return response.status_code, body_of(response)


def test_a_payments_page_shows_everything_about_it(client, login_as, fake):
    login_as("admin")
    payer = student(full_name="Nia Okafor")
    payment = succeeded_top_up(fake, payer, "40.00")
    services.record_event(payment, services.EventSource.WEBHOOK, "odd", "A provider note",
                          provider_event_id="evt_raw_1", data={"note": "<script>alert('x')</script>", "n": 1})
    hook = webhook_row(payment)
    hook.event_id = "evt_raw_1"
    db.session.flush()
    status, body = _page(client, payment)
    assert status == 200
    assert "Nia Okafor" in body and payer.email in body and f"/wallet/admin/users/{payer.id}" in body
    assert "40.00" in body and f"{fake.fee_for(Decimal('40.00'))}" in body  # the provider's fee
    assert payment.provider_ref in body and "Sandbox" in body and "Card" in body
    # the ledger rows of the credit, each linked to the payer's history where the admin pages show it
    with ledger.as_ledger():
        rows = db.session.scalars(select(Transaction).where(Transaction.group_id == payment.ledger_group_id)).all()
    assert len(rows) >= 2
    for row in rows:
        assert f'id="tx-{row.id}"' in body
    assert f"/wallet/admin/users/{payer.id}#tx-" in body
    # every event of the timeline, with its source, and the raw data escaped in a <details>
    events = db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)).all()
    assert len(events) >= 3
    for event in events:
        assert f'id="event-{event.id}"' in body and f">{event.kind}<" in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body and "<script>alert" not in body
    assert "<details" in body and "Raw data" in body
    assert f"/wallet/admin/payments/webhooks/{hook.id}" in body  # the webhook that told it
    # the refund form offers the whole payment
    assert 'name="amount" type="text" value="40.00"' in body and "Review the refund" in body


def test_an_unknown_payment_is_a_404(client, login_as):
    login_as("admin")
    assert client.get(f"/wallet/admin/payments/{uuid.uuid4()}").status_code == 404
    assert client.get("/wallet/admin/payments/not-a-uuid").status_code == 404


def test_a_payment_that_did_not_succeed_offers_no_refund(client, login_as, fake):
    login_as("admin")
    payment = top_up(student(), "20.00")
    settle()
    status, body = _page(client, payment)
    assert status == 200 and "Only a succeeded payment can be refunded." in body and "Review the refund" not in body
    response = client.post(f"/wallet/admin/payments/{payment.id}/refund",
                           data={"amount": "5", "reason": "Goodwill", "op": "review"}, headers=HX)
    assert response.status_code == 422 and "Only a succeeded payment can be refunded." in body_of(response)


# -- Refunds from a payment's page ----------------------------------------------------------------


def _refund(client, payment, amount: str, reason: str = "Charged twice", *, key: str | None = None,
            op: str = "review", headers=None):
    data = {"amount": amount, "reason": reason, "op": op, "idempotency_key": key or uuid.uuid4().hex}
    return client.post(f"/wallet/admin/payments/{payment.id}/refund", data=data, headers=headers or {})


def _refunds_of(payment) -> list[Refund]:
    return list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.created_at)))


@pytest.fixture
def paid(fake):
    payer = student()
    payment = succeeded_top_up(fake, payer, "40.00")
    settle()
    return payment


def test_review_then_confirm_makes_a_partial_refund(client, login_as, fake, paid):
    login_as("admin")
    review = _refund(client, paid, "15", headers=HX)
    fragment = body_of(review)
    assert review.status_code == 200 and "<html" not in fragment and 'id="refund-panel"' in fragment
    assert "Confirm the refund" in fragment and "15.00" in fragment and "Charged twice" in fragment
    assert _refunds_of(paid) == []  # reviewing changes nothing
    key = _key(fragment)
    edit = client.post(f"/wallet/admin/payments/{paid.id}/refund",
                       data={"amount": "15", "reason": "Charged twice", "op": "edit", "idempotency_key": key}, headers=HX)
    assert edit.status_code == 200 and "Review the refund" in body_of(edit) and 'value="15"' in body_of(edit)
    done = _refund(client, paid, "15", key=key, op="confirm")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/wallet/admin/payments/{paid.id}")
    (refund,) = _refunds_of(paid)
    assert refund.amount == Decimal("15.00") and refund.reason == "Charged twice"
    assert refund.state == RefundState.PENDING and len(fake.refunds) == 1
    page = client.get(f"/wallet/admin/payments/{paid.id}")
    body = body_of(page)
    assert "Refund of 15.00 USD sent to the provider" in body
    assert f'id="refund-{refund.id}"' in body and 'value="25.00"' in body  # the rest is offered next
    assert "+ 15.00 USD asked for or pending" in body


def test_two_partial_refunds_in_a_row_then_an_over_refund_is_refused(client, login_as, fake, paid):
    login_as("admin")
    assert _refund(client, paid, "15", op="confirm").status_code == 302
    assert _refund(client, paid, "10.50", op="confirm").status_code == 302
    assert sorted(r.amount for r in _refunds_of(paid)) == [Decimal("10.50"), Decimal("15.00")]
    settle()
    for op in ("review", "confirm"):
        refused = _refund(client, paid, "14.51", op=op, headers=HX)
        assert refused.status_code == 422
        assert "At most 14.50 USD can still be refunded." in body_of(refused)
    assert len(_refunds_of(paid)) == 2 and len(fake.refunds) == 2
    assert _refund(client, paid, "14.50", op="confirm").status_code == 302  # exactly what is left
    settle()
    status, body = _page(client, paid)
    assert "Nothing is left to refund" in body and "Review the refund" not in body


@pytest.mark.parametrize(("amount", "reason", "message"), [
    ("1.001", "Goodwill", "USD amounts have at most 2 decimal places."),
    ("abc", "Goodwill", "Enter the amount as a number"),
    ("-3", "Goodwill", "The amount must be positive."),
    ("0", "Goodwill", "The amount must be more than zero."),
    ("40.01", "Goodwill", "At most 40.00 USD can still be refunded."),
    ("5", "   ", "Say why the money is given back."),
])
@pytest.mark.parametrize("op", ["review", "confirm"])
def test_bad_refunds_are_refused_beside_their_field(client, login_as, fake, paid, amount, reason, message, op):
    login_as("admin")
    response = _refund(client, paid, amount, reason, op=op, headers=HX)
    fragment = body_of(response)
    assert response.status_code == 422 and message in fragment and 'class="field-error"' in fragment
    assert 'aria-invalid="true"' in fragment and "<html" not in fragment
    assert _refunds_of(paid) == [] and fake.refunds == {}


def test_without_javascript_a_refused_refund_shows_the_whole_page(client, login_as, paid):
    login_as("admin")
    response = _refund(client, paid, "99", op="review")
    body = body_of(response)
    assert response.status_code == 422 and "<html" in body and "At most 40.00 USD" in body and "Timeline" in body


def test_a_double_submitted_refund_is_made_once(client, login_as, fake, paid):
    login_as("admin")
    key = uuid.uuid4().hex
    first = _refund(client, paid, "12", key=key, op="confirm")
    second = _refund(client, paid, "12", key=key, op="confirm")
    assert first.status_code == second.status_code == 302
    assert len(_refunds_of(paid)) == 1 and len(fake.refunds) == 1
    assert "was already made; nothing was refunded twice" in body_of(client.get(f"/wallet/admin/payments/{paid.id}"))
    # the same form key for another amount is refused, not a second refund
    other = _refund(client, paid, "13", key=key, op="confirm", headers=HX)
    assert other.status_code == 409 and "already used for another refund" in body_of(other)
    assert len(_refunds_of(paid)) == 1


# -- The refunds queue ----------------------------------------------------------------------------


def _decide(client, refund, action: str, text: str = "", *, in_row: bool = True):
    field = "note" if action == "approve" else "reason"
    data = {field: text, **({"from": "queue"} if in_row else {})}
    return client.post(f"/wallet/admin/refunds/{refund.id}/{action}", data=data, headers=HX if in_row else {})


def test_the_queue_lists_requests_waiting_for_finance_with_counts(client, login_as, fake):
    login_as("admin")
    refund = requested_refund(fake)
    response = client.get("/wallet/admin/refunds")
    body = body_of(response)
    assert response.status_code == 200 and f'id="refund-row-{refund.id}"' in body
    assert "The course was not what I expected" in body and "19.00" in body
    assert f"/wallet/admin/payments/{refund.payment_id}" in body
    assert re.search(r'Waiting for finance <span class="count-pill">\d+\+?</span>', body)
    assert "Approve" in body and "Reject" in body
    # the other tabs: none of them lists it
    rejected = body_of(client.get("/wallet/admin/refunds?state=rejected"))
    assert f'id="refund-row-{refund.id}"' not in rejected
    everything = body_of(client.get("/wallet/admin/refunds?state=all"))
    assert f'id="refund-row-{refund.id}"' in everything


def test_an_unknown_state_says_so_and_shows_the_waiting_requests(client, login_as, fake):
    login_as("admin")
    refund = requested_refund(fake)
    response = client.get("/wallet/admin/refunds?state=lost")
    body = body_of(response)
    assert response.status_code == 422 and "is not a refund state" in body and f'id="refund-row-{refund.id}"' in body


def test_approving_a_request_makes_the_refund(client, login_as, fake):
    login_as("admin")
    refund = requested_refund(fake)
    from portal.accounts.models import User

    payer_wallet = wallet_of(db.session.get(User, refund.user_id))
    before = payer_wallet.balance
    settle()
    response = _decide(client, refund, "approve", "Course withdrawn by faculty")
    fragment = body_of(response)
    assert response.status_code == 200 and "<html" not in fragment and f'id="refund-row-{refund.id}"' in fragment
    assert "approved and paid back. The student was notified." in fragment
    assert response.headers["HX-Trigger"] == "refunds-changed"
    db.session.refresh(refund)
    assert refund.state == RefundState.SUCCEEDED and refund.decision_note == "Course withdrawn by faculty"
    # the tabs' counts refresh on that event, as a fragment of their own
    page = body_of(client.get("/wallet/admin/refunds"))
    assert 'hx-trigger="refunds-changed from:body"' in page
    tabs = client.get("/wallet/admin/refunds?state=requested&part=tabs", headers=HX)
    assert tabs.status_code == 200 and body_of(tabs).lstrip().startswith("<nav") and "count-pill" in body_of(tabs)
    assert 'id="results"' not in body_of(tabs)
    db.session.refresh(payer_wallet)
    assert payer_wallet.balance == before + Decimal("19.00")  # paid from the wallet: back to the wallet
    # decided already: the second click is refused on the row, nothing twice
    again = _decide(client, refund, "approve")
    assert again.status_code == 409 and "decided already" in body_of(again)
    db.session.refresh(payer_wallet)
    assert payer_wallet.balance == before + Decimal("19.00")


def test_rejecting_needs_a_reason_and_tells_the_student(client, login_as, fake):
    login_as("admin")
    refund = requested_refund(fake)
    settle()
    refused = _decide(client, refund, "reject", "  ")
    assert refused.status_code == 422 and "Say why" in body_of(refused)
    db.session.refresh(refund)
    assert refund.state == RefundState.REQUESTED
    response = _decide(client, refund, "reject", "More than half of the course was studied", in_row=False)
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/admin/refunds")
    db.session.refresh(refund)
    assert refund.state == RefundState.REJECTED
    note = db.session.scalar(select(Notification).where(Notification.user_id == refund.user_id,
                                                        Notification.kind == "refund_rejected"))
    assert note is not None and note.body == "More than half of the course was studied"
    assert "rejected. The student was told why." in body_of(client.get("/wallet/admin/refunds"))
    assert f'id="refund-row-{refund.id}"' in body_of(client.get("/wallet/admin/refunds?state=rejected"))


# -- The webhook log ------------------------------------------------------------------------------


def test_the_webhook_log_lists_filters_and_pages(client, login_as, monkeypatch):
    from portal.money.payments import admin_queries

    monkeypatch.setattr(admin_queries.webhook_log, "__kwdefaults__",
                        {"provider": None, "outcome": None, "event_id": None, "cursor": None, "size": 2})
    login_as("admin")
    at = utcnow() - timedelta(days=400)  # older than anything else here: the last rows of the log
    hooks = [webhook_row(outcome=o, received_at=at) for o in (WebhookOutcome.APPLIED, WebhookOutcome.FAILED,
                                                              WebhookOutcome.IGNORED)]
    for hook in hooks:
        response = client.get(f"/wallet/admin/payments/webhooks?event={hook.event_id}")
        body = body_of(response)
        assert response.status_code == 200 and f'id="webhook-{hook.id}"' in body and hook.outcome.value.capitalize() in body
    failed = body_of(client.get(f"/wallet/admin/payments/webhooks?outcome=failed&event={hooks[1].event_id}"))
    assert f'id="webhook-{hooks[1].id}"' in failed
    assert 'id="webhook-' not in body_of(client.get(f"/wallet/admin/payments/webhooks?outcome=applied&event={hooks[1].event_id}"))
    bad = client.get("/wallet/admin/payments/webhooks?outcome=lost&provider=paypal", headers=HX)
    assert bad.status_code == 422 and "Choose an outcome from the list." in body_of(bad)
    assert "Choose a provider from the list." in body_of(bad)
    first = body_of(client.get("/wallet/admin/payments/webhooks"))
    assert "Show older messages" in first and len(re.findall(r'id="webhook-', first)) == 2


def test_a_webhooks_page_shows_its_payload_escaped(client, login_as):
    login_as("admin")
    hook = webhook_row(payload={"type": "payment.updated", "note": "<img src=x onerror=alert(1)>", "amount": 1250})
    body = body_of(client.get(f"/wallet/admin/payments/webhooks/{hook.id}"))
    assert hook.event_id in body and "payment.updated" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "<img src=x" not in body
    assert '\n  &#34;amount&#34;: 1250,\n' in body  # pretty JSON, one key a line, keys sorted
    assert "Replay this message" in body
    assert client.get(f"/wallet/admin/payments/webhooks/{uuid.uuid4()}").status_code == 404


def test_replaying_a_failed_webhook_applies_it_once_and_says_so(client, login_as, fake):
    login_as("admin")
    payer = student()
    payment = top_up(payer, "30.00")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)  # the provider has it; the portal was not told
    hook = webhook_row(payment, outcome=WebhookOutcome.FAILED)
    settle()
    response = client.post(f"/wallet/admin/payments/webhooks/{hook.id}/replay")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/webhooks/{hook.id}")
    page = body_of(client.get(f"/wallet/admin/payments/webhooks/{hook.id}"))
    assert "Replayed: the message was applied." in page and "Payment succeeded" in page
    db.session.refresh(payment)
    assert payment.state == PaymentState.SUCCEEDED and wallet_of(payer).balance == Decimal("30.00")
    again = client.post(f"/wallet/admin/payments/webhooks/{hook.id}/replay", headers=HX)
    assert again.status_code == 204 and again.headers["HX-Location"].endswith(f"/webhooks/{hook.id}")
    assert wallet_of(payer).balance == Decimal("30.00")  # credited once


def test_replaying_a_webhook_about_no_payment_is_refused_with_a_reason(client, login_as, fake):
    login_as("admin")
    hook = webhook_row(outcome=WebhookOutcome.IGNORED)
    settle()
    assert client.post(f"/wallet/admin/payments/webhooks/{hook.id}/replay").status_code == 302
    page = body_of(client.get(f"/wallet/admin/payments/webhooks/{hook.id}"))
    assert "Replay refused: This event names no payment of the portal" in page


# -- Reconciliation -------------------------------------------------------------------------------


def test_run_now_lists_each_difference_with_its_payment(client, login_as, fake):
    admin = login_as("admin")
    body = body_of(client.get("/wallet/admin/payments/reconciliation"))
    assert ("Not run yet" in body) is (admin_queries.last_reconciliation() is None) and "Run now" in body
    payer = student()
    behind = top_up(payer, "30.00")
    fake.complete(behind.provider_ref, PaymentState.SUCCEEDED)  # the provider has it; the portal was not told
    fine = succeeded_top_up(fake, student(), "12.00")
    settle()
    response = client.post("/wallet/admin/payments/reconciliation", data={"period": "30"}, headers=HX)
    fragment = body_of(response)
    assert response.status_code == 200 and 'id="reconciliation"' in fragment and "<html" not in fragment
    assert "Just now." in fragment and admin.email in fragment and "difference" in fragment
    assert f"/wallet/admin/payments/{behind.id}" in fragment and payer.email in fragment
    assert "The provider says succeeded, the portal requires_action." in fragment
    assert f"/wallet/admin/payments/{fine.id}" not in fragment  # only what differs is listed
    # the page shows the last run to whoever comes next, without running it again
    page = body_of(client.get("/wallet/admin/payments/reconciliation"))
    assert "The provider says succeeded, the portal requires_action." in page and "Last run" in page
    db.session.refresh(behind)
    assert behind.state == PaymentState.REQUIRES_ACTION  # comparing changed nothing


def test_run_now_can_apply_what_the_providers_say_first(client, login_as, fake):
    login_as("admin")
    payer = student()
    behind = top_up(payer, "30.00")
    fake.complete(behind.provider_ref, PaymentState.SUCCEEDED)
    settle()
    response = client.post("/wallet/admin/payments/reconciliation", data={"period": "7", "fix": "1"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/admin/payments/reconciliation")
    page = body_of(client.get("/wallet/admin/payments/reconciliation"))
    assert "1 brought up to date from the providers first" in page
    assert f"/wallet/admin/payments/{behind.id}" not in page
    db.session.refresh(behind)
    assert behind.state == PaymentState.SUCCEEDED and wallet_of(payer).balance == Decimal("30.00")


def test_run_now_with_an_unknown_period_says_so(client, login_as, fake):
    login_as("admin")
    response = client.post("/wallet/admin/payments/reconciliation", data={"period": "forever"}, headers=HX)
    assert response.status_code == 422 and "Choose the payments of the last 7, 30 or 90 days" in body_of(response)


def test_a_payments_page_keeps_its_statement_budget(client, login_as, fake, statements):
    login_as("admin")
    payment = succeeded_top_up(fake, student(), "40.00")
    webhook_row(payment)
    settle()
    client.get(f"/wallet/admin/payments/{payment.id}")
    with statements() as few:
        assert client.get(f"/wallet/admin/payments/{payment.id}").status_code == 200
    for n in range(6):
        services.record_event(payment, services.EventSource.POLL, "report", f"Report {n}", data={"n": n})
        webhook_row(payment)
    assert _refund(client, payment, "5", op="confirm").status_code == 302
    assert _refund(client, payment, "6", op="confirm").status_code == 302
    settle()
    with statements() as many:
        assert client.get(f"/wallet/admin/payments/{payment.id}").status_code == 200
    assert many.count == few.count <= 12, many.statements


@pytest.mark.parametrize("query", ["?until=9999-12-31", "?since=0001-01-01", "?user=%00ab", "?min=99999999999999999999999999999",
                                   "?max=1e400", "?after=%00", "?user=" + "x" * 5000])
def test_odd_but_harmless_filters_answer_the_list(client, login_as, query):
    """Never a 500: the list, or a clear refusal (a NUL byte in the address is refused as a bad
    request before any view)."""
    login_as("admin")
    status, body = _listed(client, query)
    assert status in (200, 422) and "Payments" in body or status == 400 and "%00" in query


@pytest.mark.parametrize("query", ["?event=%00evt", "?after=zzz", "?outcome=%00"])
def test_odd_webhook_filters_answer_the_log(client, login_as, query):
    login_as("admin")
    response = client.get(f"/wallet/admin/payments/webhooks{query}")
    assert (response.status_code in (200, 422) and "Webhook log" in body_of(response)
            or response.status_code == 400 and "%00" in query)


def test_the_refunds_queue_and_the_webhook_log_keep_their_statement_budget(client, login_as, fake, statements):
    login_as("admin")
    requested_refund(fake)
    webhook_row()
    settle()
    for path in ("/wallet/admin/refunds", "/wallet/admin/refunds?state=all", "/wallet/admin/payments/webhooks"):
        client.get(path)
    with statements() as few_queue:
        assert client.get("/wallet/admin/refunds?state=all").status_code == 200
    with statements() as few_log:
        assert client.get("/wallet/admin/payments/webhooks").status_code == 200
    for _ in range(5):
        requested_refund(fake)
        webhook_row(outcome=WebhookOutcome.FAILED)
    settle()
    with statements() as many_queue:
        assert client.get("/wallet/admin/refunds?state=all").status_code == 200
    with statements() as many_log:
        assert client.get("/wallet/admin/payments/webhooks").status_code == 200
    assert many_queue.count == few_queue.count <= 12, many_queue.statements
    assert many_log.count == few_log.count <= 12, many_log.statements


def test_approving_a_request_for_a_course_paid_by_card_sends_it_to_the_provider(client, login_as, fake):
    from tests.money.payments.helpers import RETURN_URL

    login_as("admin")
    buyer, course = student(), paid_course("25.00")
    with as_user(buyer):
        payment = services.pay_course(buyer, course, idempotency_key=uuid.uuid4().hex, method_kind="card",
                                      return_url=RETURN_URL)
    services.apply_provider_payment(fake.complete(payment.provider_ref), provider="sandbox", source="webhook")
    refund = Refund(payment_id=payment.id, user_id=buyer.id, amount=Decimal("25.00"), currency="USD",
                    reason="Bought twice", state=RefundState.REQUESTED, requested_by_id=buyer.id,
                    idempotency_key=f"azora-refund-{uuid.uuid4().hex}")
    db.session.add(refund)
    settle()
    response = _decide(client, refund, "approve")
    assert response.status_code == 200
    assert "approved and sent to the provider; the student is told when it settles." in body_of(response)
    db.session.refresh(refund)
    assert refund.state == RefundState.PENDING and len(fake.refunds) == 1


def test_run_now_with_a_provider_not_set_up_says_so(client, login_as, fake, monkeypatch):
    from portal.money.payments.providers.base import ProviderUnavailable

    login_as("admin")
    succeeded_top_up(fake, student(), "12.00")
    settle()

    def not_configured(name):
        raise ProviderUnavailable("The sandbox payment provider is not configured.")

    monkeypatch.setattr(services, "get_provider", not_configured)
    before = admin_queries.last_reconciliation()
    # The run goes through (with or without applying the providers' answers first), the
    # payment listed as one its provider could not be asked about, and the run is recorded.
    for form in ({"period": "30"}, {"period": "30", "fix": "1"}):
        response = client.post("/wallet/admin/payments/reconciliation", data=form, headers=HX)
        assert response.status_code == 200
        assert "The provider could not be asked: The sandbox payment provider is not configured." in body_of(response)
        assert admin_queries.last_reconciliation() != before
        before = admin_queries.last_reconciliation()


def test_replaying_while_the_provider_is_down_says_to_try_later(client, login_as, fake):
    login_as("admin")
    payment = top_up(student(), "30.00")
    hook = webhook_row(payment, outcome=WebhookOutcome.FAILED)
    settle()
    fake.down = True
    response = client.post(f"/wallet/admin/payments/webhooks/{hook.id}/replay")
    assert response.status_code == 302
    page = body_of(client.get(f"/wallet/admin/payments/webhooks/{hook.id}"))
    assert "Replay refused: The payment service is not answering right now" in page
    db.session.refresh(hook)
    assert hook.outcome == WebhookOutcome.FAILED and hook.attempts == 0
