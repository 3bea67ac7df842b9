"""Case services: opening and attaching, the state machine, assignment rules, attachments and the
suspicious activity report."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from portal.compliance.cases import reports
from portal.compliance.cases import services as cases
from portal.compliance.cases.models import (
    CASE_TRANSITIONS,
    CaseEvent,
    CaseEventKind,
    CaseSeverity,
    CaseStatus,
    Disposition,
    SuspiciousActivity,
)
from portal.db import db
from portal.errors import DomainError, Forbidden, NotFound
from portal.platform.notifications.models import Notification
from tests.compliance.factories import structured_case
from tests.factories import create_user

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _kinds(case) -> list[CaseEventKind]:
    return list(db.session.scalars(select(CaseEvent.kind).where(CaseEvent.case_id == case.id)
                                   .order_by(CaseEvent.created_at, CaseEvent.id)))


def _case() -> SuspiciousActivity:
    return cases.open_or_attach(create_user("student").id, title="Large amount: 12,000.00 USD sent",
                                severity="medium", risk_score=40, source="monitoring")


# -- opening --------------------------------------------------------------------------------------


def test_open_then_attach_adds_events_and_raises_severity():
    student = create_user("student")
    first = cases.open_or_attach(student.id, title="Large amount", severity="low", risk_score=20,
                                 source="monitoring", details={"alertId": "a"})
    assert first.status == CaseStatus.OPEN and first.assigned_to_id is None
    assert (first.due_at - first.detected_at).days == 30
    second = cases.open_or_attach(student.id, title="Structuring", severity=CaseSeverity.HIGH, risk_score=70,
                                  source="monitoring")
    assert second.id == first.id
    assert second.severity == CaseSeverity.HIGH and second.risk_score == 70
    third = cases.open_or_attach(student.id, title="Velocity", severity="low", risk_score=20, source="monitoring")
    assert third.severity == CaseSeverity.HIGH and third.risk_score == 70  # never lowered
    assert _kinds(first) == [CaseEventKind.CREATED, CaseEventKind.ALERT, CaseEventKind.ALERT]


def test_a_more_severe_alert_gives_the_case_its_title_and_says_so():
    student = create_user("student")
    case = cases.open_or_attach(student.id, title="Velocity: 6 transfers in an hour", severity="low",
                                risk_score=20, source="monitoring")
    cases.open_or_attach(student.id, title="Sanctions list match: Ivan Petrov", severity="critical",
                         risk_score=95, source="aml_screening")
    assert case.title == "Sanctions list match: Ivan Petrov" and case.severity == CaseSeverity.CRITICAL
    db.session.flush()
    alert = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                       CaseEvent.kind == CaseEventKind.ALERT)).one()
    assert alert.data["retitled"] == {"fromTitle": "Velocity: 6 transfers in an hour", "fromSeverity": "low"}
    # an alert that is not more severe (equal or less) leaves the title as it is
    cases.open_or_attach(student.id, title="Large amount", severity="critical", risk_score=90, source="monitoring")
    cases.open_or_attach(student.id, title="Velocity again", severity="medium", risk_score=40, source="monitoring")
    assert case.title == "Sanctions list match: Ivan Petrov"
    later = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                       CaseEvent.kind == CaseEventKind.ALERT)).all()
    assert sum("retitled" in e.data for e in later) == 1


def test_a_closed_case_does_not_take_new_alerts():
    admin = create_user("admin")
    case = _case()
    cases.close(admin, case.id, "false_positive", "Scholarship paid by the university.")
    again = cases.open_or_attach(case.user_id, title="Large amount again", severity="low", risk_score=30,
                                 source="monitoring")
    assert again.id != case.id and again.status == CaseStatus.OPEN


def test_a_student_request_can_open_a_case_it_cannot_see(app):
    """Screening inside a student's own request opens the case with the system's role."""
    from portal.db.context import Actor, acting_as

    student = create_user("student")
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        case = cases.open_or_attach(student.id, title="Screening hit", severity="high", risk_score=70,
                                    source="aml_screening")
        case_id = case.id
        db.session.expire_all()
        assert db.session.scalars(select(SuspiciousActivity.id)).all() == []
    assert db.session.get(SuspiciousActivity, case_id) is not None


def test_severity_follows_the_score():
    assert [cases.severity_for_score(s) for s in (0, 34, 35, 59, 60, 79, 80, 100)] == [
        CaseSeverity.LOW, CaseSeverity.LOW, CaseSeverity.MEDIUM, CaseSeverity.MEDIUM, CaseSeverity.HIGH,
        CaseSeverity.HIGH, CaseSeverity.CRITICAL, CaseSeverity.CRITICAL]


# -- the state machine ------------------------------------------------------------------------------


def test_status_changes_follow_the_state_machine():
    officer = create_user("compliance")
    case = _case()
    with pytest.raises(cases.CaseActionRefused, match="cannot become open"):
        cases.change_status(officer, case.id, "open")
    cases.change_status(officer, case.id, "investigating", "Looking at the counterparties.")
    assert case.status == CaseStatus.INVESTIGATING
    assert case.assigned_to_id == officer.id  # taking it up assigns it
    with pytest.raises(cases.InvalidCaseInput, match="Choose a status"):
        cases.change_status(officer, case.id, "reopened")
    with pytest.raises(cases.InvalidCaseInput, match="disposition"):
        cases.change_status(officer, case.id, "closed")
    events = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                        CaseEvent.kind == CaseEventKind.STATUS)).all()
    assert [(e.data["from"], e.data["to"], e.body) for e in events] == [
        ("open", "investigating", "Looking at the counterparties.")]


@pytest.mark.parametrize("start", list(CaseStatus))
def test_every_transition_of_the_table_is_allowed_and_no_other(start):
    admin = create_user("admin")
    for target in CaseStatus:
        if target == CaseStatus.CLOSED:
            continue
        case = _case()
        if start != CaseStatus.OPEN:
            path = {CaseStatus.INVESTIGATING: ["investigating"], CaseStatus.ESCALATED: ["escalated"],
                    CaseStatus.CLOSED: []}[start]
            for step in path:
                cases.change_status(admin, case.id, step)
            if start == CaseStatus.CLOSED:
                cases.close(admin, case.id, "false_positive", "Nothing suspicious here.")
        if target in CASE_TRANSITIONS[start]:
            cases.change_status(admin, case.id, target.value)
            assert case.status == target
        else:
            with pytest.raises(DomainError):
                cases.change_status(admin, case.id, target.value)
            assert case.status == start


def test_closing_needs_a_disposition_a_note_and_for_reported_a_report():
    officer = create_user("compliance")
    case = _case()
    with pytest.raises(cases.InvalidCaseInput, match="Choose a disposition"):
        cases.close(officer, case.id, "", "A long enough note.")
    with pytest.raises(cases.InvalidCaseInput, match="at least 10"):
        cases.close(officer, case.id, "false_positive", "short")
    with pytest.raises(cases.CaseActionRefused, match="Build the suspicious activity report"):
        cases.close(officer, case.id, "reported", "Reported to the authority.")
    cases.build_report(officer, case.id, "The subject moved money in a pattern that avoids the threshold.")
    cases.close(officer, case.id, "reported", "Reported to the authority.")
    assert case.status == CaseStatus.CLOSED and case.disposition == Disposition.REPORTED
    assert case.closed_at is not None
    with pytest.raises(cases.CaseActionRefused, match="closed"):
        cases.comment(officer, case.id, "After the fact.")


def test_escalation_hands_the_case_to_supervisors():
    officer, other, admin = create_user("compliance"), create_user("compliance"), create_user("admin")
    case = _case()
    cases.assign(officer, case.id)
    with pytest.raises(cases.InvalidCaseInput, match="at least 10"):
        cases.escalate(officer, case.id, "why")
    cases.escalate(officer, case.id, "Amounts exceed what I can judge.")
    assert case.status == CaseStatus.ESCALATED
    for someone in (officer, other):
        with pytest.raises(Forbidden, match="escalated"):
            cases.comment(someone, case.id, "Still here.")
    cases.comment(admin, case.id, "Taking it over.")
    cases.change_status(admin, case.id, "investigating")
    assert case.status == CaseStatus.INVESTIGATING


# -- assignment -------------------------------------------------------------------------------------


def test_officers_take_unassigned_cases_and_keep_off_others():
    alice, bob = create_user("compliance"), create_user("compliance")
    case = _case()
    cases.assign(alice, case.id)
    assert case.assigned_to_id == alice.id
    with pytest.raises(cases.CaseActionRefused, match="already assigned to you"):
        cases.assign(alice, case.id)
    for action in (lambda: cases.assign(bob, case.id), lambda: cases.comment(bob, case.id, "Mine now?"),
                   lambda: cases.change_status(bob, case.id, "investigating"),
                   lambda: cases.close(bob, case.id, "false_positive", "Nothing to see here."),
                   lambda: cases.build_report(bob, case.id, "A narrative long enough to be valid."),
                   lambda: cases.attach(bob, case.id, cases.Upload("a.png", PNG))):
        with pytest.raises(Forbidden, match="assigned to another officer"):
            action()
    assert case.assigned_to_id == alice.id and case.status == CaseStatus.OPEN
    with pytest.raises(Forbidden, match="supervising officer"):
        cases.assign(alice, case.id, bob.id)


def test_supervisors_assign_to_officers_and_the_officer_is_told():
    admin, officer, student = create_user("admin"), create_user("compliance"), create_user("student")
    case = _case()
    cases.assign(admin, case.id, officer.id, link=f"/compliance/cases/{case.id}")
    assert case.assigned_to_id == officer.id
    note = db.session.scalars(select(Notification).where(Notification.user_id == officer.id)).one()
    assert note.kind == "case_assigned" and note.link == f"/compliance/cases/{case.id}"
    with pytest.raises(cases.InvalidCaseInput, match="active compliance officer"):
        cases.assign(admin, case.id, student.id)
    cases.assign(admin, case.id)  # a supervisor takes it from the officer
    assert case.assigned_to_id == admin.id
    data = [e.data["toName"] for e in db.session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == CaseEventKind.ASSIGNED)
        .order_by(CaseEvent.created_at))]
    assert data == [officer.full_name, admin.full_name]


def test_non_officers_cannot_reach_a_case():
    student, faculty = create_user("student"), create_user("faculty")
    case = _case()
    for user in (student, faculty):
        with pytest.raises(Forbidden):
            cases.case_for(user, case.id)
        with pytest.raises(NotFound):
            cases.comment(user, case.id, "hello")


def test_case_for_loads_the_case_for_an_officer_and_says_when_there_is_none():
    officer = create_user("compliance")
    case = _case()
    assert cases.case_for(officer, case.id) is case
    with pytest.raises(NotFound):
        cases.case_for(officer, uuid.uuid4())


# -- attachments --------------------------------------------------------------------------------------


def test_attachments_are_checked_encrypted_and_served_to_officers(app):
    officer, other = create_user("compliance"), create_user("compliance")
    case = _case()
    event = cases.attach(officer, case.id, cases.Upload("../../bank statement.pdf", b"%PDF-1.4\n% evidence\n"),
                         "Statement from the bank.")
    assert event.attachment_name == "bank statement.pdf"
    assert b"evidence" not in event.attachment_encrypted
    name, content_type, data = cases.attachment(other, case.id, event.id)  # any officer may read
    assert (name, content_type, data) == ("bank statement.pdf", "application/pdf", b"%PDF-1.4\n% evidence\n")
    with pytest.raises(NotFound):
        cases.attachment(create_user("student"), case.id, event.id)
    # Bound to its case: the blob copied to another case's event does not decrypt.
    other_case = _case()
    copy = CaseEvent(case_id=other_case.id, kind=CaseEventKind.ATTACHMENT, attachment_name="x.pdf",
                     attachment_content_type="application/pdf", attachment_encrypted=event.attachment_encrypted)
    db.session.add(copy)
    db.session.flush()
    with pytest.raises(Forbidden, match="cannot be opened"):
        cases.attachment(officer, other_case.id, copy.id)


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("evidence.pdf", b"MZ\x90\x00 not a pdf", "not really a .pdf"),
    ("photo.png", b"\xff\xd8\xff\xe0 a jpeg", "not really a .png"),
    ("notes.txt", b"<script>alert(1)</script>", "not plain text"),
    ("notes.txt", b"\xff\xfe\x00binary", "not plain text"),
    ("tool.exe", b"MZ\x90\x00", "cannot be attached"),
    ("page.html", b"<html></html>", "cannot be attached"),
    ("empty.pdf", b"", "empty"),
])
def test_forged_or_wrong_files_are_refused(filename, data, message):
    officer = create_user("compliance")
    case = _case()
    with pytest.raises(cases.InvalidCaseInput, match=message):
        cases.attach(officer, case.id, cases.Upload(filename, data))
    assert CaseEventKind.ATTACHMENT not in _kinds(case)


def test_oversized_files_are_refused(app, monkeypatch):
    monkeypatch.setitem(app.config, "KYC_MAX_UPLOAD_BYTES", 1000)
    officer = create_user("compliance")
    case = _case()
    with pytest.raises(cases.InvalidCaseInput, match="larger than the limit"):
        cases.attach(officer, case.id, cases.Upload("big.pdf", b"%PDF-" + b"x" * 1000))


# -- the report ---------------------------------------------------------------------------------------


def test_the_report_holds_the_case_facts():
    officer = create_user("compliance")
    case = structured_case()
    cases.assign(officer, case.id)
    narrative = "Three transfers just under 10,000 USD to one person within minutes."
    cases.build_report(officer, case.id, narrative)
    report = case.report
    assert case.report_generated_at is not None
    assert report["reference"].startswith("SAR-") and report["narrative"] == narrative
    assert report["subject"]["id"] == str(case.user_id) and report["subject"]["kycLevel"] == 0
    assert report["generatedBy"]["name"] == officer.full_name
    amounts = [(t["direction"], t["amount"], t["type"]) for t in report["transactions"]]
    assert amounts == [("in", "40000.00", "deposit"), ("out", "9500.00", "transfer"), ("out", "9700.00", "transfer"),
                       ("out", "9900.00", "transfer")]
    assert [t["alerted"] for t in report["transactions"]] == [False, False, True, True]
    assert all(t["counterparty"] for t in report["transactions"])
    assert report["transactions"][0]["counterparty"] == "Deposits"
    assert {r["rule"] for r in report["rulesFired"]} >= {"structuring", "large_amount"}
    assert report["totals"] == [{"currency": "USD", "in": "40000.00", "out": "29100.00",
                                 "inDisplay": "40,000.00 USD", "outDisplay": "29,100.00 USD"}]
    json.dumps(report)  # JSON as stored
    assert CaseEventKind.REPORT in _kinds(case)
    pdf = reports.render_pdf(report)
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000


def test_the_report_writes_amounts_read_from_the_database_at_their_currency_scale():
    """Amounts read back from the ledger's NUMERIC columns carry the column's 18 places; the
    report writes each at its currency's scale, as the PDF shows it."""
    officer = create_user("compliance")
    case = structured_case()
    cases.assign(officer, case.id)
    db.session.flush()
    db.session.expire_all()  # the movements are loaded from the database, as in a real request
    cases.build_report(officer, case.id, "Three transfers just under 10,000 USD to one person.")
    db.session.flush()
    db.session.expire_all()
    report = db.session.get(type(case), case.id).report  # the JSON as stored
    assert [t["amount"] for t in report["transactions"]] == ["40000.00", "9500.00", "9700.00", "9900.00"]
    assert (report["totals"][0]["in"], report["totals"][0]["out"]) == ("40000.00", "29100.00")


def test_the_report_needs_a_narrative():
    officer = create_user("compliance")
    case = _case()
    with pytest.raises(cases.InvalidCaseInput, match="at least 20"):
        cases.build_report(officer, case.id, "Too short.")
    assert case.report is None
