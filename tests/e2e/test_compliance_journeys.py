"""The compliance journeys, in a real browser with htmx running:

a) a student verifies their identity at level 1 and then level 2 (an identity document, its two
   sides uploaded through the file inputs) while a compliance officer takes each submission from
   the review queue, looks at the documents beside the data and approves; the student sees
   level 2 and the withdrawals it unlocks;
b) a verified student sends three amounts just under the large amount; the monitoring job runs
   on the transfers the ledger committed; an officer finds the case in the unassigned queue,
   works it (assigns, comments, attaches a file, takes it up), builds the suspicious activity
   report, downloads it as PDF and JSON and closes the case as reported, every step on the
   timeline; the student's pages show nothing of it.

People and money are made through the factories and services (committed: e2e rows are not
rolled back), each unique to the run. With ``E2E_SHOTS`` set to a folder, every compliance
page the journeys pass is saved there as a full-page screenshot.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import delete, select

from portal.accounts.models import User
from portal.compliance.aml import tasks
from portal.compliance.aml.models import MonitoringAlert
from portal.compliance.cases.models import SuspiciousActivity
from portal.compliance.kyc.models import KycVerification
from portal.db import db
from portal.db.base import utcnow
from portal.platform import jobs
from tests.e2e.helpers import address, log_in
from tests.factories import create_user

pytestmark = pytest.mark.e2e

SHOTS = os.environ.get("E2E_SHOTS")
MONITORING_TASK = "portal.compliance.aml.tasks.monitor_transactions"
#: The student's own pages that could give a case away (alerts and notifications included).
STUDENT_PAGES = ("/dashboard", "/wallet", "/wallet/history", "/notifications", "/wallet/verification")


def _shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _document_images(folder: Path) -> tuple[Path, Path]:
    """A front (PNG) and a back (JPEG) of an identity card: small real images."""
    from PIL import Image, ImageDraw

    front = Image.new("RGB", (360, 228), (226, 236, 247))
    draw = ImageDraw.Draw(front)
    draw.rectangle((0, 0, 359, 40), fill=(24, 72, 140))
    draw.text((12, 12), "REPUBLIC OF SOUTH AFRICA - IDENTITY CARD", fill=(255, 255, 255))
    draw.rectangle((16, 56, 116, 190), fill=(180, 190, 205))
    for row, line in enumerate(("DUBE", "LERATO", "01 APR 1999", "ZA 8801235111088")):
        draw.text((132, 64 + 28 * row), line, fill=(20, 30, 45))
    back = Image.new("RGB", (360, 228), (238, 240, 232))
    draw = ImageDraw.Draw(back)
    for x in range(16, 344, 6):
        draw.line((x, 150, x, 150 + (x * 7) % 50), fill=(30, 30, 30), width=3)
    draw.text((16, 20), "ISSUED 2021 - VALID UNTIL 2031", fill=(40, 40, 40))
    front_path, back_path = folder / "id-front.png", folder / "id-back.jpg"
    front.save(front_path, "PNG")
    back.save(back_path, "JPEG", quality=85)
    return front_path, back_path


def _no_case_on_the_students_pages(page: Page, secrets: list[str]) -> None:
    for path in STUDENT_PAGES:
        page.goto(path)
        body = page.locator("body").inner_text()
        for secret in secrets:
            assert secret.lower() not in body.lower(), (path, secret)


# ------------------------------------------------------------- a) identity verification, two levels


@pytest.fixture
def kyc_people(db_as_tests):
    with db_as_tests():
        student = create_user("student", full_name="Lerato Dube", email=address("lerato"))
        officer = create_user("compliance", full_name="Joseph Banda", email=address("joseph"))
        people = {"student": student.email, "student_id": student.id, "officer": officer.email,
                  "officer_id": officer.id}
    yield people
    # Neither moved money, so both go, and with them their verifications, documents, screenings,
    # notifications and sessions: the KYC queue and its counts are as they were.
    with db_as_tests():
        db.session.execute(delete(User).where(User.id.in_([people["student_id"], people["officer_id"]])))


def test_a_student_verifies_two_levels_and_an_officer_reviews_them(new_page, kyc_people, tmp_path):
    front, back = _document_images(tmp_path)
    student = new_page()
    log_in(student, kyc_people["student"], "Lerato")
    student.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()
    student.get_by_role("navigation", name="Wallet").get_by_role("link", name="Verification").click()
    expect(student.get_by_role("heading", name=re.compile(r"^Your level: 0"))).to_be_visible()
    _shot(student, "a01-student-verification-level-0")

    # Level 1: personal details.
    student.get_by_label("Full legal name").fill("Lerato Dube")
    student.get_by_label("Date of birth").fill("1999-04-01")
    student.get_by_label("Country of residence").select_option("ZA")
    student.get_by_label("Home address").fill("12 Long Street\nCape Town 8001")
    student.get_by_role("button", name="Send for review").click()
    expect(student.get_by_role("main")).to_contain_text("Your level 1 verification was sent")
    expect(student.get_by_role("heading", name="Waiting for review")).to_be_visible()
    _shot(student, "a02-student-level-1-sent")

    # The officer takes it from the queue and approves it beside the data.
    officer = new_page()
    log_in(officer, kyc_people["officer"], "Joseph")
    officer.get_by_role("link", name="Identity verifications to review").click()
    expect(officer.get_by_role("heading", name="Identity verifications", level=1)).to_be_visible()
    row = officer.locator("tr", has_text="Lerato Dube")
    expect(row).to_have_count(1)
    _shot(officer, "a03-officer-kyc-queue")
    with officer.expect_response(lambda r: "/assign" in r.url) as assigned:
        row.get_by_role("button", name=re.compile(r"^Assign to me")).click()
    assert assigned.value.request.headers.get("hx-request") == "true"  # the row swaps in place
    expect(row).to_contain_text("You")
    row.get_by_role("link", name=re.compile(r"^Review")).click()
    expect(officer.get_by_role("heading", name="Level 1 verification")).to_be_visible()
    facts = officer.locator(".kyc-facts")
    expect(facts).to_contain_text("Lerato Dube")
    expect(facts).to_contain_text("1999-04-01")
    expect(facts).to_contain_text("South Africa")
    expect(facts).to_contain_text("Cape Town 8001")
    expect(officer.locator("#decision")).to_contain_text("Assigned to you.")
    _shot(officer, "a04-officer-review-level-1")
    officer.get_by_role("button", name="Approve level 1").click()
    expect(officer.get_by_role("main")).to_contain_text("Level 1 approved. The student was notified.")
    expect(officer.locator("#decision")).to_contain_text("Approved by Joseph Banda")

    # Level 2: the identity document, both sides uploaded.
    student.reload()
    expect(student.get_by_role("heading", name=re.compile(r"^Your level: 1"))).to_be_visible()
    expect(student.get_by_role("heading", name=re.compile(r"^Verify level 2"))).to_be_visible()
    student.get_by_role("combobox", name=re.compile(r"^Document")).select_option("national_id")
    student.get_by_label("Document number").fill("8801235111088")
    student.get_by_label("Valid until").fill((date.today() + timedelta(days=3 * 365)).isoformat())
    student.get_by_label(re.compile(r"^Front")).set_input_files(front)
    student.get_by_label(re.compile(r"^Back")).set_input_files(back)
    _shot(student, "a05-student-level-2-form")
    student.get_by_role("button", name="Send for review").click()
    expect(student.get_by_role("main")).to_contain_text("Your level 2 verification was sent")
    expect(student.get_by_role("heading", name="Waiting for review")).to_be_visible()

    officer.goto("/compliance/kyc?level=2")
    row = officer.locator("tr", has_text="Lerato Dube")
    expect(row).to_contain_text("National ID card")
    row.get_by_role("button", name=re.compile(r"^Assign to me")).click()
    expect(row).to_contain_text("You")
    documents = []
    officer.on("response", lambda r: documents.append(r) if "/compliance/kyc/documents/" in r.url else None)
    row.get_by_role("link", name=re.compile(r"^Review")).click()
    expect(officer.get_by_role("heading", name="Level 2 verification")).to_be_visible()
    expect(officer.locator(".kyc-facts")).to_contain_text("8801235111088")
    images = officer.locator(".kyc-document img")
    expect(images).to_have_count(2)
    for index in range(2):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") == 360  # decoded: the real picture came back
    for _ in range(100):  # the response events may trail the images' load by a moment
        if len(documents) >= 2:
            break
        officer.wait_for_timeout(50)
    assert sorted(r.headers["content-type"] for r in documents) == ["image/jpeg", "image/png"]
    assert all(r.status == 200 for r in documents)
    document_url = images.first.get_attribute("src")
    # The view checks who asks: the student cannot open it at the officers' address.
    assert student.request.get(document_url, max_redirects=0).status in (403, 404)
    _shot(officer, "a06-officer-review-level-2-documents")
    officer.get_by_label("Note (optional)").fill("Photo and number match the level 1 details.")
    officer.get_by_role("button", name="Approve level 2").click()
    expect(officer.get_by_role("main")).to_contain_text("Level 2 approved. The student was notified.")
    _shot(officer, "a07-officer-level-2-approved")

    # The student is at level 2, which unlocks withdrawals.
    student.reload()
    current = student.get_by_role("region", name=re.compile(r"^Your level"))
    expect(current).to_contain_text("Your level: 2")
    expect(current).to_contain_text("Identity document")
    expect(current).to_contain_text("Withdraw to a bank, mobile money or crypto address")
    _shot(student, "a08-student-level-2")
    student.get_by_role("navigation", name="Wallet").get_by_role("link", name="Withdrawals").click()
    student.get_by_role("button", name="New withdrawal").click()
    expect(student.get_by_role("heading", name="Withdraw money")).to_be_visible()
    expect(student.get_by_role("main")).not_to_contain_text("Withdrawals need identity verification")


# ------------------------------------------------------------------- b) structuring, a case, a SAR


@pytest.fixture
def structuring_people(db_as_tests, monkeypatch):
    from portal.compliance.aml import listeners
    from tests.compliance.factories import verify
    from tests.money.factories import fund

    year_ago = utcnow() - timedelta(days=365)
    # The deposit is the journey's setting, not part of it: no monitoring job for it (and
    # deferring from this thread, where the browser holds an event loop, could not work). The
    # ledger announces its rows after the commit, at the end of the block.
    with monkeypatch.context() as patch, db_as_tests():
        patch.setattr(listeners, "defer_monitoring", lambda ids: 0)
        student = create_user("student", full_name="Kofi Boateng", email=address("kofi"), created_at=year_ago)
        friend = create_user("student", full_name="Ama Serwaa", email=address("ama"), created_at=year_ago)
        officer = create_user("compliance", full_name="Grace Phiri", email=address("grace"))
        # Level 3: 5 times the standard daily limit, so three sends of 80-100 % of the AZR large
        # amount fit in one day (the two officers of the four-eyes approval are made with it).
        verify(student, 3)
        fund(student, "300000", "AZR")
        approvers = set(db.session.scalars(
            select(KycVerification.first_approver_id).where(KycVerification.user_id == student.id,
                                                            KycVerification.level == 3)))
        approvers |= set(db.session.scalars(
            select(KycVerification.decided_by_id).where(KycVerification.user_id == student.id,
                                                        KycVerification.level == 3)))
        people = {"student": student.email, "friend": friend.email, "officer": officer.email,
                  "ids": [student.id, friend.id], "staff": [officer.id, *approvers]}
    yield people
    # The ledger keeps its rows (and so the two students); their cases, alerts and timelines go,
    # so counts of open and unassigned cases are as they were; the officers go too.
    with db_as_tests():
        db.session.execute(delete(MonitoringAlert).where(MonitoringAlert.user_id.in_(people["ids"])))
        db.session.execute(delete(SuspiciousActivity).where(SuspiciousActivity.user_id.in_(people["ids"])))
        # The verifications go too (the level 3 approval names its two approvers, whom the
        # four-eyes CHECK holds), so lists of approved verifications are as they were.
        db.session.execute(delete(KycVerification).where(KycVerification.user_id == people["ids"][0]))
        db.session.execute(delete(User).where(User.id.in_(people["staff"])))


def _run_monitoring_jobs(before: set[int]) -> int:
    """Run the monitoring jobs the ledger's commits deferred since ``before``, as the worker would.

    Under test the queue lives in memory and no worker runs beside the live server (the browser
    holds this thread's event loop, which the worker's async loop cannot share). So each job
    queued for the task is taken as the worker takes it and its function run: in an app context,
    as ``system:worker``, committing once (``portal.platform.jobs.task``)."""
    queued = [job for job_id, job in list(jobs.job_app.connector.jobs.items())
              if job_id not in before and job["task_name"] == MONITORING_TASK and job["status"] == "todo"]
    assert queued, "the transfers deferred no monitoring job"
    raised = 0
    for job in queued:
        job["status"] = "doing"
        raised += tasks.monitor_transactions(**job["args"])
        job["status"] = "succeeded"
    return raised


def _send(page: Page, email: str, amount: str) -> None:
    """From the send form: the live preview, the review, then the receipt."""
    expect(page.get_by_role("heading", name="Send money")).to_be_visible()
    page.get_by_label("Recipient's e-mail").fill(email)
    page.get_by_label("Currency").select_option("AZR")
    with page.expect_response(lambda r: "/wallet/send/preview" in r.url):
        page.get_by_label("Amount").fill(amount)
    expect(page.locator("main")).to_contain_text("Ama Serwaa")
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name=re.compile(r"^Send ")).click()
    expect(page.get_by_role("heading", name="Money sent")).to_be_visible()


def test_structured_transfers_raise_a_case_an_officer_reports_and_closes(new_page, structuring_people):
    people = structuring_people
    student = new_page()
    log_in(student, people["student"], "Kofi")
    student.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()

    # Three amounts just under the AZR large amount (100,000), through the real transfer page.
    before = set(jobs.job_app.connector.jobs)
    student.get_by_role("navigation", name="Wallet").get_by_role("link", name="Send money").click()
    for number, amount in enumerate(("85000", "90000", "95000")):
        if number:
            student.get_by_role("button", name="Send more").click()
        _send(student, people["friend"], amount)
    # From the second send on, the sum within a day is large: each side of the second and third
    # transfers is alerted on its own, the sender's and the recipient's (two cases).
    assert _run_monitoring_jobs(before) == 4

    # The officer finds the case in the unassigned queue.
    officer = new_page()
    log_in(officer, people["officer"], "Grace")
    officer.get_by_role("navigation", name="Main").get_by_role("link", name="Compliance").click()
    expect(officer.get_by_role("heading", name="Compliance overview")).to_be_visible()
    _shot(officer, "b01-officer-compliance-overview")
    officer.get_by_role("link", name=re.compile(r"Unassigned cases")).first.click()
    expect(officer.get_by_role("heading", name="Suspicious-activity cases")).to_be_visible()
    row = officer.locator("tr.case-row", has_text="Kofi Boateng")
    expect(row).to_have_count(1)
    # The recipient of the series tripped the rules on their side and has a case of their own.
    expect(officer.locator("tr.case-row", has_text="Ama Serwaa")).to_have_count(1)
    _shot(officer, "b02-officer-unassigned-queue")
    row.get_by_role("link").first.click()
    work = officer.locator("#case-work")
    expect(work.get_by_role("heading", level=1)).to_contain_text("sent")
    alerts = officer.get_by_role("region", name=re.compile(r"^Alerts"))
    expect(alerts).to_contain_text("Structuring")
    expect(alerts).to_contain_text("95,000.00 AZR")
    _shot(officer, "b03-officer-case-opened")
    case_id = officer.url.rstrip("/").rsplit("/", 1)[-1]
    case_title = work.get_by_role("heading", level=1).inner_text()

    # Work it: assign, comment, attach, take it up. Each answer swaps the working area.
    actions = officer.get_by_role("complementary", name="Actions")
    actions.get_by_role("button", name="Assign to me").click()
    expect(work).to_contain_text("The case is assigned to you.")
    expect(work.locator(".case-facts").first).to_contain_text("Grace Phiri")
    actions.get_by_label("Comment").fill("Three sends of 85-95k AZR to one student within minutes. Asked Kofi why.")
    actions.get_by_role("button", name="Add comment").click()
    expect(work).to_contain_text("Comment added.")
    actions.get_by_label("Attach evidence").set_input_files(files=[{
        "name": "call-notes.txt", "mimeType": "text/plain",
        "buffer": b"Call with the student: says he paid a friend back for a shared car.\n"}])
    actions.get_by_label("About the file (optional)").fill("Notes of the call")
    actions.get_by_role("button", name="Attach", exact=True).click()
    expect(work).to_contain_text("File attached.")
    actions.get_by_label("Move to").select_option("investigating")
    actions.get_by_role("button", name="Change status").click()
    expect(work).to_contain_text("The case is now investigating.")
    # Not escalated: the officer reports it themself.

    # The suspicious activity report, built from the case's facts, in PDF and JSON.
    actions.get_by_label(re.compile(r"^Suspicious activity report")).fill(
        "Kofi Boateng sent 270,000 AZR to Ama Serwaa in three amounts just under the reporting "
        "threshold within minutes; the explanation given does not fit the pattern.")
    actions.get_by_role("button", name="Build report").click()
    expect(work).to_contain_text("The suspicious activity report is built.")
    report_box = officer.locator(".case-report")
    expect(report_box).to_contain_text("SAR-")
    _shot(officer, "b04-officer-case-report-built")
    pdf = officer.request.get(report_box.get_by_role("link", name="Download PDF").get_attribute("href"))
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    as_json = officer.request.get(report_box.get_by_role("link", name="JSON").get_attribute("href"))
    assert as_json.status == 200 and as_json.headers["content-type"].startswith("application/json")
    report = json.loads(as_json.body())
    assert report["case"]["id"] == case_id and report["case"]["title"] == case_title
    assert report["subject"]["email"] == people["student"] and report["subject"]["kycLevel"] == 3
    sent = sorted(Decimal(t["amount"]) for t in report["transactions"] if t["direction"] == "out")
    assert sent == [Decimal(85000), Decimal(90000), Decimal(95000)]
    assert {t["counterparty"] for t in report["transactions"] if t["direction"] == "out"} == {"Ama Serwaa"}
    assert "structuring" in {rule["rule"] for rule in report["rulesFired"]}
    assert "three amounts just under" in report["narrative"]

    # Close it as reported.
    actions.get_by_label("Close as").select_option("reported")
    actions.get_by_label("Closing note").fill("Reported to the financial intelligence unit.")
    actions.get_by_role("button", name="Close case").click()
    expect(work).to_contain_text("The case is closed.")
    expect(work.locator(".case-badges")).to_contain_text("Closed")
    expect(work.locator(".case-badges")).to_contain_text("Reported")

    # The timeline shows every step (newest first).
    timeline = officer.get_by_role("region", name="Timeline")
    kinds = timeline.locator(".timeline-kind").all_inner_texts()[::-1]
    assert kinds[0] == "Opened" and "Alert" in kinds
    assert kinds[kinds.index("Assigned"):] == ["Assigned", "Comment", "File", "Status", "Report", "Status"]
    expect(timeline).to_contain_text("Asked Kofi why.")
    expect(timeline.get_by_role("link", name="call-notes.txt")).to_be_visible()
    expect(timeline).to_contain_text("Open → Investigating")
    expect(timeline).to_contain_text("Investigating → Closed: Reported")
    _shot(officer, "b05-officer-case-closed")

    # The student sees nothing of it, and cannot open it.
    _no_case_on_the_students_pages(student, [case_title, "Structuring", "suspicious activity", "SAR-",
                                             "Grace Phiri", "investigat"])
    refused = student.request.get(f"/compliance/cases/{case_id}", max_redirects=0)
    assert refused.status in (403, 404) and case_title not in refused.text()
