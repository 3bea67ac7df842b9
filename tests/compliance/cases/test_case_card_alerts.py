"""Card activity in the case pages: an alert raised on a card authorization (a decline has no
ledger row) appears in its case's alert list beside the ledger alerts, with the card
transaction's merchant, amounts, state and decline reason, for the same number of statements."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.compliance.aml import monitoring
from portal.compliance.kyc.models import KycVerification
from portal.db import db
from portal.money.cards import codes, network
from tests.compliance.factories import structured_case
from tests.money.cards.helpers import auth_body, card_holder, issued, message


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _declined_five_times(user):
    for row in db.session.scalars(select(KycVerification).where(KycVerification.user_id == user.id)):
        row.submitted_at -= timedelta(days=30)
        row.decided_at -= timedelta(days=30)
    _card, revealed = issued(user)
    answers = [network.authorize(message("authorize", auth_body(revealed, amount="50000", country="ZA",
                                                                name="Night Owl Electronics")))
               for _ in range(5)]
    assert {a.code for a in answers} == {codes.INSUFFICIENT_FUNDS}
    (alert,) = monitoring.monitor_card([a.reference for a in answers])
    return alert


def _alert_items(body: str) -> list[str]:
    return re.findall(r'<li class="case-alert">(.*?)</li>\s*(?=<li class="case-alert">|</ol>)', body, re.S)


def test_a_card_decline_alert_shows_in_its_case_with_the_card_transaction(client, login_as):
    user = card_holder("1")
    alert = _declined_five_times(user)
    login_as("compliance")
    body = client.get(f"/compliance/cases/{alert.case_id}").get_data(as_text=True)
    (item,) = _alert_items(body)
    assert "card purchase at Night Owl Electronics" in item
    assert "50,000.00" in item or "50000.00" in item
    assert "Declined" in item and codes.reason(codes.INSUFFICIENT_FUNDS) in item
    assert str(alert.card_transaction_id) in item
    assert "declined card authorizations within" in item


def test_card_and_ledger_alerts_share_the_list_for_the_same_statements(client, login_as, statements):
    from tests.compliance.factories import old_student

    login_as("compliance")
    subject = old_student()
    case = structured_case(subject)  # ledger alerts only
    url = f"/compliance/cases/{case.id}"
    client.get(url)
    with statements() as before:
        body = client.get(url).get_data(as_text=True)
    ledger_items = len(_alert_items(body))
    assert ledger_items >= 1

    from tests.compliance.factories import verify
    from tests.money.factories import fund

    verify(subject, 2)
    fund(subject, "1", "USD")
    alert = _declined_five_times(subject)
    assert alert.case_id == case.id  # joined the subject's open case
    with statements() as after:
        body = client.get(url).get_data(as_text=True)
    items = _alert_items(body)
    assert len(items) == ledger_items + 1
    assert "card purchase at Night Owl Electronics" in items[0]  # newest first
    assert all("card purchase" not in item for item in items[1:])
    assert after.count == before.count == 4, after.statements


def test_the_report_counts_a_card_alert_of_its_case():
    from portal.compliance.cases import reports
    from portal.compliance.cases import services as cases
    from tests.factories import create_user

    officer = create_user("compliance")
    user = card_holder("1")
    alert = _declined_five_times(user)
    cases.assign(officer, alert.case_id)
    case = cases.build_report(officer, alert.case_id, "Five declined card purchases within minutes.")
    report = case.report
    assert [(a["id"], a["transactionId"], a["cardTransactionId"]) for a in report["alerts"]] == [
        (str(alert.id), None, str(alert.card_transaction_id))]
    assert {r["rule"] for r in report["rulesFired"]} == {"card_declines"}
    assert reports.render_pdf(report).startswith(b"%PDF")
