"""The case pages for every role, with and without htmx; the actions through the views."""

from __future__ import annotations

import uuid

import pytest

from portal.compliance.cases.models import CaseEvent, CaseStatus, SuspiciousActivity
from portal.db import db
from tests.compliance.factories import structured_case

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _pages(case_id) -> list[str]:
    return ["/compliance/", "/compliance/cases", "/compliance/cases?queue=mine",
            f"/compliance/cases/{case_id}"]


@pytest.mark.parametrize("role", ["compliance", "admin"])
@pytest.mark.parametrize("htmx", [False, True])
def test_officers_reach_every_page(client, login_as, role, htmx):
    case = structured_case()
    login_as(role)
    for url in _pages(case.id):
        response = client.get(url, headers=HX if htmx else {})
        assert response.status_code == 200, (url, response.status_code)
        body = response.get_data(as_text=True)
        if htmx and url.endswith(str(case.id)):
            assert "<html" not in body and 'id="case-work"' in body
        if not htmx:
            assert "<html" in body
    queue = client.get("/compliance/cases?queue=unassigned").get_data(as_text=True)
    assert case.title in queue


@pytest.mark.parametrize("role", ["student", "faculty"])
def test_students_and_faculty_get_nothing(client, login_as, role):
    case = structured_case()
    login_as(role)
    for url in [*_pages(case.id), "/compliance/rules", f"/compliance/cases/{case.id}/report.json"]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert case.title not in response.get_data(as_text=True)
    response = client.post(f"/compliance/cases/{case.id}/comment", data={"body": "hello"})
    assert response.status_code == 403
    assert db.session.get(SuspiciousActivity, case.id).status == CaseStatus.OPEN


def test_anonymous_is_sent_to_login(client):
    response = client.get("/compliance/cases")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_supervisor_queues_need_supervision(client, login_as):
    structured_case()
    login_as("compliance")
    for queue in ("escalated", "all"):
        response = client.get(f"/compliance/cases?queue={queue}")
        assert response.status_code == 403
        assert "for supervising officers" in response.get_data(as_text=True)
    assert client.get("/compliance/rules").status_code == 403


def test_guessed_ids_give_404(client, login_as):
    login_as("admin")
    missing = uuid.uuid4()
    for url in (f"/compliance/cases/{missing}", f"/compliance/cases/{missing}/report.json",
                f"/compliance/cases/{missing}/report.pdf", f"/compliance/cases/{missing}/attachments/{uuid.uuid4()}"):
        assert client.get(url).status_code == 404, url
    for action in ("assign", "comment", "status", "escalate", "close", "report", "attachments"):
        assert client.post(f"/compliance/cases/{missing}/{action}", data={"body": "x"}).status_code == 404, action
    case = structured_case()
    # A real case with another case's event id: no file.
    other = structured_case()
    event_id = db.session.query(CaseEvent.id).filter(CaseEvent.case_id == other.id).first()[0]
    assert client.get(f"/compliance/cases/{case.id}/attachments/{event_id}").status_code == 404


def test_actions_through_the_views_with_and_without_htmx(client, login_as):
    case = structured_case()
    officer = login_as("compliance")
    response = client.post(f"/compliance/cases/{case.id}/assign", data={"assignee": "me"})
    assert response.status_code == 302
    assert db.session.get(SuspiciousActivity, case.id).assigned_to_id == officer.id
    response = client.post(f"/compliance/cases/{case.id}/comment", data={"body": "Asked the student."}, headers=HX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "case-changed"
    assert "Asked the student." in response.get_data(as_text=True)
    # A forbidden status change answers with its message next to the form and changes nothing.
    response = client.post(f"/compliance/cases/{case.id}/status", data={"status": "open"}, headers=HX)
    assert response.status_code == 409
    assert "cannot become open" in response.get_data(as_text=True)
    response = client.post(f"/compliance/cases/{case.id}/close", data={"disposition": "reported",
                                                                        "note": "Filed with the regulator."})
    assert response.status_code == 409
    assert "Build the suspicious activity report" in response.get_data(as_text=True)
    response = client.post(f"/compliance/cases/{case.id}/report",
                           data={"narrative": "Three transfers just under the threshold within an hour."})
    assert response.status_code == 302
    pdf = client.get(f"/compliance/cases/{case.id}/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    as_json = client.get(f"/compliance/cases/{case.id}/report.json")
    assert as_json.status_code == 200 and as_json.json["case"]["id"] == str(case.id)
    response = client.post(f"/compliance/cases/{case.id}/close", data={"disposition": "reported",
                                                                        "note": "Filed with the regulator."})
    assert response.status_code == 302
    closed = db.session.get(SuspiciousActivity, case.id)
    assert closed.status == CaseStatus.CLOSED and closed.disposition.value == "reported"


def test_another_officers_case_is_refused_with_a_message(client, login_as, make_user):
    from portal.compliance.cases import services as cases

    case = structured_case()
    other = make_user("compliance")
    cases.assign(other, case.id)
    login_as("compliance")
    page = client.get(f"/compliance/cases/{case.id}").get_data(as_text=True)
    assert f"assigned to {other.full_name}" in page and "Add comment" not in page
    response = client.post(f"/compliance/cases/{case.id}/comment", data={"body": "Let me in."}, headers=HX)
    assert response.status_code == 403
    assert "assigned to another officer" in response.get_data(as_text=True)
    assert db.session.query(CaseEvent).filter(CaseEvent.case_id == case.id, CaseEvent.body == "Let me in.").count() == 0


def test_attachments_upload_and_download_through_the_views(client, login_as):
    import io

    case = structured_case()
    login_as("compliance")
    forged = client.post(f"/compliance/cases/{case.id}/attachments",
                         data={"file": (io.BytesIO(b"MZ\x90\x00program"), "statement.pdf")},
                         content_type="multipart/form-data", headers=HX)
    assert forged.status_code == 422 and "not really a .pdf" in forged.get_data(as_text=True)
    missing = client.post(f"/compliance/cases/{case.id}/attachments", data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "Choose a file" in missing.get_data(as_text=True)
    done = client.post(f"/compliance/cases/{case.id}/attachments",
                       data={"file": (io.BytesIO(b"date,amount\n2026-01-01,9500\n"), "bank.csv"), "note": "Export"},
                       content_type="multipart/form-data")
    assert done.status_code == 302
    event = db.session.query(CaseEvent).filter(CaseEvent.case_id == case.id,
                                               CaseEvent.attachment_name == "bank.csv").one()
    download = client.get(f"/compliance/cases/{case.id}/attachments/{event.id}")
    assert download.status_code == 200 and download.data == b"date,amount\n2026-01-01,9500\n"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="bank.csv"')
    assert "sandbox" in download.headers["Content-Security-Policy"]


def test_supervisors_assign_and_escalated_queue(client, login_as, make_user):
    case = structured_case()
    officer = make_user("compliance")
    login_as("admin")
    page = client.get(f"/compliance/cases/{case.id}").get_data(as_text=True)
    assert officer.full_name in page  # in the assignee list
    response = client.post(f"/compliance/cases/{case.id}/assign", data={"assignee": str(officer.id)}, headers=HX)
    assert response.status_code == 200
    assert db.session.get(SuspiciousActivity, case.id).assigned_to_id == officer.id
    bad = client.post(f"/compliance/cases/{case.id}/assign", data={"assignee": "nobody"}, headers=HX)
    assert bad.status_code == 422 and "active compliance officer" in bad.get_data(as_text=True)
    response = client.post(f"/compliance/cases/{case.id}/escalate", data={"note": "Needs a senior look."})
    assert response.status_code == 302
    escalated = client.get("/compliance/cases?queue=escalated", headers=HX)
    assert escalated.status_code == 200 and case.title in escalated.get_data(as_text=True)
    assert "<html" not in escalated.get_data(as_text=True)
    assert case.title in client.get("/compliance/cases?queue=all").get_data(as_text=True)


def test_the_rules_page_edits_and_validates(client, login_as):
    from portal.compliance.aml.models import MonitoringRule

    login_as("admin")
    page = client.get("/compliance/rules")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    for title in ("Large amount", "Structuring", "Velocity", "Rapid in and out", "New account moving high value"):
        assert title in body
    bad = client.post("/compliance/rules/structuring", data={"enabled": "on", "score": "35", "lower_percent": "150",
                                                             "days": "3", "min_count": "3"}, headers=HX)
    assert bad.status_code == 422
    fragment = bad.get_data(as_text=True)
    assert "<html" not in fragment and 'id="rule-structuring"' in fragment and "between 50 and 99" in fragment
    assert 'value="150"' in fragment  # what was typed is kept
    assert db.session.query(MonitoringRule).count() == 0
    ok = client.post("/compliance/rules/structuring", data={"score": "30", "lower_percent": "85", "days": "5",
                                                            "min_count": "4"})
    assert ok.status_code == 302
    row = db.session.query(MonitoringRule).filter_by(name="structuring").one()
    assert row.enabled is False and row.params == {"score": 30, "lower_percent": 85, "days": 5, "min_count": 4}
    reset = client.post("/compliance/rules/structuring/reset", headers=HX)
    assert reset.status_code == 200 and "back to the defaults" in reset.get_data(as_text=True)
    assert client.post("/compliance/rules/nonsense", data={}).status_code == 404


def test_a_student_with_an_open_case_sees_no_trace_of_it(client, login_as):
    from tests.factories import PASSWORD

    student = login_as("student")
    case = structured_case(student)
    assert case.user_id == student.id
    client.post("/auth/logout")
    client.post("/auth/login", data={"email": student.email, "password": PASSWORD})
    words = ("case", "suspicious", "monitoring", "alert", "compliance review", case.title.lower())
    for url in ("/dashboard", "/wallet/", "/wallet/history", "/notifications", "/wallet/verification"):
        response = client.get(url, follow_redirects=True)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True).lower()
        for word in words:
            assert f"{word} " not in body.replace("showcase", ""), (url, word)
        assert str(case.id) not in body


def test_report_downloads_need_a_report(client, login_as):
    case = structured_case()
    login_as("compliance")
    assert client.get(f"/compliance/cases/{case.id}/report.json").status_code == 404
    assert client.get(f"/compliance/cases/{case.id}/report.pdf").status_code == 404


# -- statement budget ---------------------------------------------------------------------------------


def test_pages_stay_within_the_statement_budget(client, login_as, statements):
    from portal.compliance.aml import monitoring
    from portal.compliance.cases import services as cases
    from tests.compliance.factories import old_student
    from tests.compliance.helpers import transfer

    admin = login_as("admin")
    first = structured_case()
    structured_case()
    # Who is asking (one statement), then the page: the dashboard and a queue in one statement
    # each, the case in three (the case with its subject, its alerts, its timeline).
    expected = {"/compliance/": 2, "/compliance/cases?queue=all": 2, "/compliance/cases?queue=unassigned": 2,
                f"/compliance/cases/{first.id}": 4}
    urls = list(expected)
    few = {}
    for url in urls:
        with statements() as counted:
            assert client.get(url).status_code == 200
        few[url] = counted.count
    assert few == expected
    for _ in range(28):
        structured_case()
    # The first case grows: more alerts, comments and events.
    subject_id = first.user_id
    from portal.accounts.models import User

    subject = db.session.get(User, subject_id)
    other = old_student()
    txs = [transfer(subject, other, "100") for _ in range(12)]
    db.session.flush()
    monitoring.monitor([t.id for t in txs])
    for i in range(10):
        cases.comment(admin, first.id, f"Note {i}")
    for url in urls:
        with statements() as counted:
            body = client.get(url).get_data(as_text=True)
        assert counted.count == few[url] <= 12, (url, counted.statements)
    assert body.count("timeline-item") > 10
    queue = client.get("/compliance/cases?queue=all").get_data(as_text=True)
    assert queue.count('class="case-row') == 25 and "Show more" in queue


def _all_routes(case_id, event_id) -> list[tuple[str, str]]:
    gets = ["/compliance/", "/compliance/cases", "/compliance/cases?queue=escalated", "/compliance/cases?queue=all",
            f"/compliance/cases/{case_id}", f"/compliance/cases/{case_id}/report.json",
            f"/compliance/cases/{case_id}/report.pdf", f"/compliance/cases/{case_id}/attachments/{event_id}",
            "/compliance/rules"]
    posts = [f"/compliance/cases/{case_id}/{a}" for a in ("assign", "comment", "attachments", "status", "escalate",
                                                          "close", "report")]
    posts += ["/compliance/rules/velocity", "/compliance/rules/velocity/reset"]
    return [("GET", u) for u in gets] + [("POST", u) for u in posts]


@pytest.mark.parametrize("role", [None, "student", "faculty", "compliance", "admin"])
@pytest.mark.parametrize("htmx", [False, True])
def test_every_route_for_every_role(client, login_as, role, htmx):
    from portal.compliance.cases import services as cases
    from tests.factories import create_user

    case = structured_case()
    officer_case = structured_case()
    event = cases.attach(create_user("admin"), officer_case.id, cases.Upload("n.txt", b"note"))
    if role:
        login_as(role)
    headers = HX if htmx else {}
    for method, url in _all_routes(case.id, event.id):
        if url.endswith("attachments/" + str(event.id)):
            url = url.replace(str(case.id), str(officer_case.id))
        response = client.open(url, method=method, headers=headers, data={})
        code = response.status_code
        body = response.get_data(as_text=True)
        assert code < 500, (method, url, code)
        if role is None:
            assert code == (401 if htmx else 302), (method, url, code)
            assert case.title not in body
        elif role in ("student", "faculty"):
            assert code == 403, (method, url, code)
            assert case.title not in body
        else:
            supervisor_only = "rules" in url or "queue=escalated" in url or "queue=all" in url
            if role == "compliance" and supervisor_only:
                assert code == 403, (method, url, code)
            elif method == "GET" and "report." not in url:
                assert code == 200, (method, url, code)
            elif method == "GET":
                assert code == 404  # no report built yet
            elif url.endswith(("/assign", "/reset")):  # done: back to the page, or its fragment
                assert code == (200 if htmx else 302), (method, url, code)
            else:  # the empty form is refused with its message
                assert code == 422, (method, url, code)
        if (htmx and code == 200 and method == "GET" and "/compliance/cases/" in url and "report." not in url
                and "attachments" not in url):
            assert "<html" not in body, url


def test_the_officers_home_dashboard_shows_the_case_summary(client, login_as):
    structured_case()
    structured_case()
    login_as("compliance")
    body = client.get("/dashboard").get_data(as_text=True)
    assert "Cases and alerts" in body and 'href="/compliance/"' in body
    assert "Unassigned cases</a>: <strong>2</strong>" in body


def test_admins_get_links_to_the_accounts_and_officers_do_not(client, login_as):
    case = structured_case()
    login_as("compliance")
    page = client.get(f"/compliance/cases/{case.id}").get_data(as_text=True)
    assert "/wallet/admin/users/" not in page
    assert "Structuring" in page and "9,900.00 USD" in page  # the rules fired and the transactions
    client.post("/auth/logout")
    login_as("admin")
    page = client.get(f"/compliance/cases/{case.id}").get_data(as_text=True)
    assert f"/wallet/admin/users/{case.user_id}" in page
    assert page.count("/wallet/admin/users/") >= 2  # the subject and the counterparty


def test_the_timeline_says_when_a_more_severe_alert_retitled_the_case(client, login_as, make_user):
    from portal.compliance.cases import services as cases

    student = make_user(role="student")
    case = cases.open_or_attach(student.id, title="Velocity: 6 transfers in an hour", severity="low",
                                risk_score=20, source="monitoring")
    cases.open_or_attach(student.id, title="Sanctions list match", severity="critical", risk_score=95,
                         source="aml_screening")
    login_as("compliance")
    page = client.get(f"/compliance/cases/{case.id}").get_data(as_text=True)
    assert "<h1" in page and "Sanctions list match" in page
    assert "More severe than the case was (low → critical)" in page
    assert "instead of “Velocity: 6 transfers in an hour”" in page
    queue = client.get("/compliance/cases?queue=unassigned", headers=HX).get_data(as_text=True)
    assert "Sanctions list match" in queue
