"""Each API operation on real data: what it answers, paging by cursor, marking notifications
read, and sending money once per Idempotency-Key through the same service as the pages."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from portal.db import db
from portal.learning.education import services as education
from portal.money.wallets.models import Transaction, TransactionType
from portal.platform.notifications.models import Notification
from portal.platform.notifications.services import notify
from tests.learning.factories.assign import make_course
from tests.money.factories import fund


def test_me_names_the_user_and_the_token(api, make_user, make_token):
    user = make_user(role="student", full_name="Ada Lovelace")
    token = make_token(user, ("read", "write"))
    body = api("GET", "/me", token).get_json()
    assert body["full_name"] == "Ada Lovelace" and body["role"] == "student"
    assert body["token"]["scopes"] == ["read", "write"]


def test_courses_lists_published_courses_and_searches(api, make_user, make_token):
    course = make_course()
    title = course.title
    token = make_token(make_user(role="faculty"))
    found = api("GET", "/courses", token, query_string={"q": title}).get_json()
    assert title in [c["title"] for c in found["items"]]
    assert found["total"] >= 1 and found["page"] == 1


def test_enrolments_show_progress(api, make_user, make_token):
    student = make_user(role="student")
    course = make_course()
    education.enrol(student, course.id)
    course_id = str(course.id)
    body = api("GET", "/enrolments", make_token(student)).get_json()
    assert [(e["course_id"], e["status"], e["progress_percent"]) for e in body["items"]] == [(course_id, "active", 0)]


def test_grades_start_empty(api, make_user, make_token):
    body = api("GET", "/grades", make_token(make_user(role="student"))).get_json()
    assert body == {"totals": [], "items": [], "page": 1, "has_next": False}


def test_wallets_show_exact_balances_as_strings(api, make_user, make_token):
    student = make_user(role="student")
    fund(student, "12.3", "USD")
    items = {w["currency"]: w for w in api("GET", "/wallets", make_token(student)).get_json()["items"]}
    assert (items["USD"]["balance"], items["USD"]["available"], items["USD"]["locked"]) == ("12.30", "12.30", "0.00")
    assert items["USD"]["status"] == "active" and items["AZR"]["status"] is None


def test_transactions_page_by_cursor_newest_first(api, make_user, make_token):
    student = make_user(role="student")
    for n in range(1, 8):
        fund(student, str(n), "USD", description=f"Deposit {n}")
    token = make_token(student)
    first = api("GET", "/transactions", token, query_string={"limit": 3}).get_json()
    assert [t["description"] for t in first["items"]] == ["Deposit 7", "Deposit 6", "Deposit 5"]
    second = api("GET", "/transactions", token, query_string={"limit": 3, "cursor": first["next_cursor"]}).get_json()
    assert [t["description"] for t in second["items"]] == ["Deposit 4", "Deposit 3", "Deposit 2"]
    last = api("GET", "/transactions", token, query_string={"limit": 3, "cursor": second["next_cursor"]}).get_json()
    assert [t["description"] for t in last["items"]] == ["Deposit 1"] and last["next_cursor"] is None
    assert (last["items"][0]["amount"], last["items"][0]["direction"]) == ("1.00", "in")


def test_notifications_list_unread_and_mark_read(api, make_user, make_token):
    user = make_user(role="student")
    older = notify(user.id, "account", "Older")
    newer = notify(user.id, "account", "Newer")
    db.session.flush()
    older_id, newer_id = older.id, newer.id
    token = make_token(user, ("read", "write"))
    listed = api("GET", "/notifications", token).get_json()
    assert {n["id"] for n in listed["items"]} == {str(older_id), str(newer_id)}
    marked = api("POST", f"/notifications/{older_id}/read", token)
    assert marked.status_code == 200 and marked.get_json()["read_at"] is not None
    unread = api("GET", "/notifications", token, query_string={"unread": "true"}).get_json()
    assert [n["id"] for n in unread["items"]] == [str(newer_id)]
    assert api("POST", "/notifications/read-all", token).get_json() == {"marked": 1}
    assert db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None))) == 0


def _transfers_from(user_id) -> int:
    return db.session.scalar(select(func.count()).select_from(Transaction).where(
        Transaction.initiated_by_id == user_id, Transaction.type == TransactionType.TRANSFER))


def test_send_money_with_the_same_key_twice_pays_once(api, make_user, make_token):
    sender, recipient = make_user(role="student"), make_user(role="student")
    fund(sender, "100", "USD")
    sender_id, recipient_email = sender.id, recipient.email
    token = make_token(sender, ("read", "write"))
    key = uuid.uuid4().hex
    body = {"recipient": recipient_email, "amount": "10", "currency": "USD", "note": "books"}
    first = api("POST", "/transfers", token, headers={"Idempotency-Key": key}, json=body)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = api("POST", "/transfers", token, headers={"Idempotency-Key": key}, json=body)
    assert again.status_code == 200
    assert again.get_json()["replayed"] is True and first.get_json()["replayed"] is False
    assert again.get_json()["transaction_id"] == first.get_json()["transaction_id"]
    assert _transfers_from(sender_id) == 1


def test_send_money_with_a_used_key_and_another_body_is_refused(api, make_user, make_token):
    sender, recipient = make_user(role="student"), make_user(role="student")
    fund(sender, "100", "USD")
    sender_id, recipient_email = sender.id, recipient.email
    token = make_token(sender, ("read", "write"))
    key = uuid.uuid4().hex
    body = {"recipient": recipient_email, "amount": "10", "currency": "USD"}
    assert api("POST", "/transfers", token, headers={"Idempotency-Key": key}, json=body).status_code == 201
    refused = api("POST", "/transfers", token, headers={"Idempotency-Key": key}, json={**body, "amount": "20"})
    assert refused.status_code == 409
    assert refused.get_json()["type"].endswith("idempotency-mismatch")
    assert _transfers_from(sender_id) == 1


def test_send_money_rules_of_the_service_come_back_as_field_errors(api, make_user, make_token):
    sender = make_user(role="student")
    fund(sender, "5", "USD")
    token = make_token(sender, ("read", "write"))
    response = api("POST", "/transfers", token, headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"recipient": "nobody-here@tests.example", "amount": "1", "currency": "USD"})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert [e["field"] for e in response.get_json()["errors"]] == ["recipient"]
    too_much = api("POST", "/transfers", token, headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"recipient": "nobody-here@tests.example", "amount": "abc", "currency": "USD"})
    assert too_much.status_code == 422
    assert [e["field"] for e in too_much.get_json()["errors"]] == ["amount"]


def test_send_money_needs_an_idempotency_key(api, make_user, make_token):
    token = make_token(make_user(role="student"), ("read", "write"))
    body = {"recipient": "x@tests.example", "amount": "1", "currency": "USD"}
    missing = api("POST", "/transfers", token, json=body)
    assert missing.status_code == 422 and missing.get_json()["errors"][0]["field"] == "Idempotency-Key"
    short = api("POST", "/transfers", token, headers={"Idempotency-Key": "short"}, json=body)
    assert short.status_code == 422 and short.get_json()["errors"][0]["field"] == "Idempotency-Key"


def test_the_api_key_rule_is_the_ledgers():
    from blueprints.api.v1 import IDEMPOTENCY_KEY
    from portal.money.wallets import ledger

    assert IDEMPOTENCY_KEY.pattern.strip("^$") == ledger._KEY.pattern.strip("^$")
