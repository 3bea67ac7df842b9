"""The KYC pages: the student's verification page and documents, the officers' queue, review,
assignment, decisions and document view; every route for every role, with and without htmx."""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.compliance.kyc import services
from portal.compliance.kyc.documents import Upload
from portal.compliance.kyc.models import KycDocument, KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow
from tests.compliance.factories import jpeg_bytes, pdf_bytes, png_bytes, verify
from tests.factories import PASSWORD, create_user

HX = {"HX-Request": "true"}
LEVEL1 = {"legal_name": "Thandi Mokoena", "birth_date": "2001-05-17", "country": "ZA",
          "address": "12 Long Street, Cape Town 8001"}


def settle():
    """End the test's setup: a view that refuses rolls its request back, not the setup."""
    db.session.commit()


def login(client, user):
    client.post("/auth/logout")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code in (302, 204)
    return user


def body(response) -> str:
    return response.data.decode("utf-8", "replace")


def level2_submission(student, **fields) -> KycVerification:
    verify(student, 1)
    values = {"document_type": "national_id", "document_number": "AB1234567", "expires_on": "2031-01-31",
              "front": Upload("front.png", png_bytes(), "image/png"),
              "back": Upload("back.pdf", pdf_bytes(), "application/pdf")}
    values.update(fields)
    return services.submit_level2(student, **values)


def level1_submission(student, **fields) -> KycVerification:
    return services.submit_level1(student, **{**LEVEL1, **fields})


@pytest.fixture(autouse=True)
def _request_context(app):
    with app.test_request_context():
        yield


# ---------------------------------------------------------------------------------- every route, every role


@pytest.fixture
def case():
    student = create_user("student", full_name="Lerato Dube")
    verification = level2_submission(student)
    doc = db.session.scalar(select(KycDocument).where(KycDocument.verification_id == verification.id,
                                                      KycDocument.kind == "id_front"))
    settle()
    return {"verification": verification.id, "document": doc.id, "student": student}


def _routes(ids):
    v, d = ids["verification"], ids["document"]
    return [  # (method, url, permission, status without htmx, status with htmx)
        ("GET", "/wallet/verification", "wallet", 200, 200),
        ("POST", "/wallet/verification/level/1", "wallet", 422, 422),  # an empty form
        ("POST", "/wallet/verification/level/9", "wallet", 404, 404),
        ("GET", f"/wallet/verification/documents/{d}", "wallet", 404, 404),  # another student's
        ("GET", "/compliance/kyc", "review", 200, 200),
        ("GET", "/compliance/kyc?status=all&level=2&assigned=unassigned&age=0", "review", 200, 200),
        ("GET", f"/compliance/kyc/{v}", "review", 200, 200),
        ("GET", f"/compliance/kyc/documents/{d}", "review", 200, 200),
        ("POST", f"/compliance/kyc/{v}/reject", "review", 422, 422),  # no reason
        ("POST", f"/compliance/kyc/{v}/assign", "review", 302, 204),
        ("POST", f"/compliance/kyc/{v}/approve", "review", 302, 204),
        ("POST", f"/compliance/kyc/{v}/revision", "review", 409, 409),  # already approved
    ]


@pytest.mark.parametrize("role", ["anonymous", "student", "faculty", "compliance", "admin"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_every_route_answers_each_role_as_declared(client, login_as, case, role, htmx):
    if role != "anonymous":
        login_as(role)
    allowed = {"student": "wallet", "compliance": "review", "admin": "review"}.get(role)
    headers = HX if htmx else {}
    for method, url, needs, plain, fragment in _routes(case):
        response = client.open(url, method=method, headers=headers)
        text = body(response)
        assert response.status_code < 500, (method, url, text[:500])
        if role == "anonymous":
            assert response.status_code == (401 if htmx else 302), (method, url)
        elif needs != allowed:
            assert response.status_code == 403, (method, url)
            assert ("<html" in text) != htmx
        else:
            assert response.status_code == (fragment if htmx else plain), (method, url, text[:300])
            if response.status_code in (200, 409, 422) and "documents" not in url:
                assert ("<html" in text) != htmx, (method, url)
    expected = KycStatus.APPROVED if role in ("compliance", "admin") else KycStatus.SUBMITTED
    assert db.session.get(KycVerification, case["verification"]).status == expected


@pytest.mark.parametrize("role", ["student", "faculty"])
def test_students_and_faculty_get_nothing_from_compliance_urls_even_by_guessing(client, login_as, case, role):
    login_as(role)
    for url in ("/compliance/kyc", f"/compliance/kyc/{case['verification']}", f"/compliance/kyc/{uuid.uuid4()}",
                f"/compliance/kyc/documents/{case['document']}", f"/compliance/kyc/documents/{uuid.uuid4()}"):
        response = client.get(url)
        assert response.status_code == 403 and "Lerato" not in body(response)
    for action in ("assign", "approve", "reject", "revision"):
        assert client.post(f"/compliance/kyc/{case['verification']}/{action}",
                           data={"reason": "A long enough reason"}).status_code == 403
    assert db.session.get(KycVerification, case["verification"]).status == KycStatus.SUBMITTED


def test_guessed_ids_are_404_for_officers_and_students(client, make_user):
    login(client, make_user("compliance"))
    for method, url in (("GET", f"/compliance/kyc/{uuid.uuid4()}"), ("GET", f"/compliance/kyc/documents/{uuid.uuid4()}"),
                        ("POST", f"/compliance/kyc/{uuid.uuid4()}/approve"),
                        ("POST", f"/compliance/kyc/{uuid.uuid4()}/reject"),
                        ("POST", f"/compliance/kyc/{uuid.uuid4()}/revision"),
                        ("POST", f"/compliance/kyc/{uuid.uuid4()}/assign"),
                        ("GET", "/compliance/kyc/not-a-uuid")):
        assert client.open(url, method=method, data={"reason": "Some reason here"}).status_code == 404, url
    login(client, make_user("student"))
    assert client.get(f"/wallet/verification/documents/{uuid.uuid4()}").status_code == 404


# ---------------------------------------------------------------------------------- the student's page


def test_a_new_student_sees_level_0_what_each_level_unlocks_and_the_level_1_form(client, login_as):
    login_as("student")
    response = client.get("/wallet/verification")
    text = body(response)
    assert response.status_code == 200
    assert re.search(r'Your level: <span class="kyc-level-number">0</span>', text)
    for unlock in ("Send up to the standard daily limit", "Withdraw to a bank", "5 times the standard daily limit"):
        assert unlock in text
    assert 'action="/wallet/verification/level/1"' in text
    assert '<option value="ZA">South Africa</option>' in text
    for name in ("legal_name", "birth_date", "country", "address"):
        assert f'<label for="{name}">' in text


def test_level_1_submitted_through_the_page_then_a_double_submit_makes_one(client, login_as):
    student = login_as("student")
    first = client.post("/wallet/verification/level/1", data=LEVEL1)
    assert first.status_code == 302
    page = body(client.get("/wallet/verification"))
    assert "Your level 1 verification was sent" in page and "Waiting for review" in page
    again = client.post("/wallet/verification/level/1", data=LEVEL1)
    assert again.status_code == 409 and "is waiting for review" in body(again)
    count = db.session.scalar(select(func.count()).select_from(KycVerification)
                              .where(KycVerification.user_id == student.id))
    assert count == 1


def test_bad_input_shows_every_message_keeps_what_was_typed_and_htmx_gets_the_form(client, login_as):
    login_as("student")
    data = {**LEVEL1, "birth_date": "2015-02-02", "country": "QQ"}
    response = client.post("/wallet/verification/level/1", data=data)
    text = body(response)
    assert response.status_code == 422 and "<html" in text
    assert "You must be at least 18 years old" in text and "Choose a country from the list." in text
    assert 'value="Thandi Mokoena"' in text and 'aria-invalid="true"' in text
    fragment = client.post("/wallet/verification/level/1", data=data, headers={**HX, "HX-Target": "kyc-form"})
    assert fragment.status_code == 422 and "<html" not in body(fragment) and 'id="kyc-form"' in body(fragment)


def test_level_2_with_files_and_forged_uploads(client, login_as):
    student = login_as("student")
    verify(student, 1)
    settle()
    forged = {"document_type": "driving_licence", "document_number": "DL-99887766", "expires_on": "2030-06-30",
              "front": (io.BytesIO(png_bytes()), "front.pdf", "application/pdf"),
              "back": (io.BytesIO(b"<html><script>steal()</script></html>"), "back.jpg", "image/jpeg")}
    refused = client.post("/wallet/verification/level/2", data=forged, content_type="multipart/form-data")
    text = body(refused)
    assert refused.status_code == 422
    assert "named .pdf but its content is a PNG image" in text and "its content is a web page" in text
    assert db.session.scalar(select(func.count()).select_from(KycDocument).where(KycDocument.user_id == student.id)) == 0
    good = {**forged, "front": (io.BytesIO(jpeg_bytes()), "front.jpg", "image/jpeg"),
            "back": (io.BytesIO(png_bytes()), "back.png", "image/png")}
    assert client.post("/wallet/verification/level/2", data=good, content_type="multipart/form-data").status_code == 302
    docs = db.session.scalars(select(KycDocument).where(KycDocument.user_id == student.id)).all()
    assert sorted(d.original_name for d in docs) == ["back.png", "front.jpg"]


def test_an_oversized_upload_is_refused(app, client, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "KYC_MAX_UPLOAD_BYTES", 1024)
    student = login_as("student")
    verify(student, 2)
    settle()
    data = {"proof": (io.BytesIO(pdf_bytes("y" * 4000) + b"0" * 2000), "bill.pdf", "application/pdf"),
            "selfie": (io.BytesIO(b""), "me.png", "image/png")}
    response = client.post("/wallet/verification/level/3", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "larger than the limit of 1 kB" in body(response) and "The file is empty." in body(response)


def test_the_student_views_their_own_documents_only(client, login_as, make_user):
    student = login_as("student")
    mine = level2_submission(student)
    other = level2_submission(make_user("student"))
    settle()
    front = db.session.scalar(select(KycDocument).where(KycDocument.verification_id == mine.id,
                                                        KycDocument.kind == "id_front"))
    response = client.get(f"/wallet/verification/documents/{front.id}")
    assert response.status_code == 200 and response.data == png_bytes()
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    page = body(client.get("/wallet/verification"))
    assert f"/wallet/verification/documents/{front.id}" in page
    theirs = db.session.scalar(select(KycDocument.id).where(KycDocument.verification_id == other.id).limit(1))
    assert client.get(f"/wallet/verification/documents/{theirs}").status_code == 404


def test_the_student_reads_the_officers_reason(client, login_as):
    student = login_as("student")
    verification = level1_submission(student)
    services.request_revision(create_user("compliance"), verification.id, "Write the postal code in the address.")
    settle()
    page = body(client.get("/wallet/verification"))
    assert "Changes requested" in page and "Write the postal code in the address." in page
    assert 'action="/wallet/verification/level/1"' in page  # the form is offered again


def test_an_expired_document_asks_for_renewal(client, login_as):
    student = login_as("student")
    verify(student, 3, expires_on=date.today() - timedelta(days=3))
    settle()
    page = body(client.get("/wallet/verification"))
    assert re.search(r'Your level: <span class="kyc-level-number">1</span>', page)
    assert "Your identity document expired on" in page and "Renew your identity document" in page
    assert 'action="/wallet/verification/level/2"' in page


def test_the_student_page_stays_within_the_statement_budget(client, login_as, statements):
    student = login_as("student")
    verify(student, 1)
    level2_submission_after = services.submit_level2(
        student, document_type="passport", document_number="P1234567", expires_on="2030-01-01",
        front=Upload("p.png", png_bytes(), "image/png"), back=None)
    assert level2_submission_after.level == 2
    settle()
    with statements() as counter:
        assert client.get("/wallet/verification").status_code == 200
    assert counter.count <= 12, counter.statements


# ---------------------------------------------------------------------------------- the queue


def test_the_queue_filters_and_pages_within_the_statement_budget(client, login_as, statements):
    officer = login_as("compliance")
    students = [create_user("student", full_name=f"Queue Student {i:02d}") for i in range(3)]
    for student in students:
        level1_submission(student)
    settle()
    with statements() as few:
        assert client.get("/compliance/kyc").status_code == 200
    for i in range(30):
        level1_submission(create_user("student", full_name=f"Later Student {i:02d}"))
    settle()
    with statements() as many:
        text = body(client.get("/compliance/kyc"))
    # Who is asking, then the queue with its counts in one statement.
    assert many.count == few.count == 2, many.statements
    assert text.count('class="kyc-row"') == 25 and "Show more" in text
    names = re.findall(r'<td>((?:Queue|Later) Student \d\d)<small', text)
    assert names[:3] == ["Queue Student 00", "Queue Student 01", "Queue Student 02"]  # oldest first
    more = re.search(r'href="(/compliance/kyc\?[^"]*after=[^"]+)"', text)[1].replace("&amp;", "&")
    rest = client.get(more, headers=HX)
    assert "<html" not in body(rest) and body(rest).count('class="kyc-row"') >= 8

    # Filters: level, status, assigned and age.
    target = db.session.scalar(select(KycVerification).where(KycVerification.user_id == students[0].id))
    services.assign_to_me(officer, target.id)
    target.submitted_at = utcnow() - timedelta(days=10)
    settle()
    mine = body(client.get("/compliance/kyc?assigned=mine"))
    assert mine.count('class="kyc-row"') == 1 and "Queue Student 00" in mine
    old = body(client.get("/compliance/kyc?age=7"))
    assert "Queue Student 00" in old and "Later Student" not in old
    unassigned = body(client.get("/compliance/kyc?assigned=unassigned"))
    assert "Queue Student 00" not in unassigned
    # Rows other tests committed (the browser journeys' verified students) may be listed too:
    # none of this test's submissions is.
    assert not re.search(r"(Queue|Later) Student", body(client.get("/compliance/kyc?level=2")))
    assert "No verification matches these filters." in body(client.get("/compliance/kyc?level=3"))
    assert not re.search(r"(Queue|Later) Student", body(client.get("/compliance/kyc?status=approved")))
    fragment = client.get("/compliance/kyc?status=open&level=1", headers={**HX, "HX-Target": "results"})
    assert "<html" not in body(fragment) and 'id="results"' in body(fragment)


def test_the_queue_counts_stop_at_the_cap(client, login_as, count_cap, statements):
    """The counts above the queue go up to a cap ("1000+" on the real page), so their cost does
    not grow with the backlog: here the cap is 3 and five verifications wait."""
    login_as("compliance")
    for _ in range(5):
        level1_submission(create_user("student"))
    settle()
    count_cap(3)
    with statements() as counted:
        text = body(client.get("/compliance/kyc"))
    assert re.search(r"3\+ waiting · 3\+ unassigned", text)
    assert any("LIMIT" in s and "count(*)" in s for s in counted.statements), counted.statements


def test_assign_to_me_inline_and_without_javascript(client, login_as, make_user):
    first = make_user("compliance")
    verification = level1_submission(create_user("student", full_name="Inline Student"))
    other = level1_submission(create_user("student"))
    settle()
    login(client, first)
    inline = client.post(f"/compliance/kyc/{verification.id}/assign", data={"from": "queue"}, headers=HX)
    assert inline.status_code == 200 and inline.headers["HX-Trigger"] == "kyc-changed"
    assert "<html" not in body(inline) and f'id="kyc-{verification.id}"' in body(inline)
    assert re.search(r'<td class="kyc-assign-cell">\s*You\s', body(inline))
    plain = client.post(f"/compliance/kyc/{other.id}/assign", data={"from": "queue", "status": "open", "level": "1"})
    assert plain.status_code == 302 and plain.headers["Location"].startswith("/compliance/kyc?")
    assert "level=1" in plain.headers["Location"]
    db.session.expire_all()
    assert db.session.get(KycVerification, verification.id).assigned_to_id == first.id
    # Another officer cannot take it: the row says who has it.
    login(client, make_user("compliance"))
    taken = client.post(f"/compliance/kyc/{verification.id}/assign", data={"from": "queue"}, headers=HX)
    assert taken.status_code == 409 and "has already taken this verification" in body(taken)
    assert db.session.get(KycVerification, verification.id).assigned_to_id == first.id


# ---------------------------------------------------------------------------------- review and decisions


def test_the_review_page_shows_the_data_beside_the_documents_and_the_screening(client, login_as, statements):
    login_as("compliance")
    student = create_user("student", full_name="Review Student")
    verification = level2_submission(student)
    settle()
    url = f"/compliance/kyc/{verification.id}"
    with statements() as counter:
        response = client.get(url)
    assert counter.count <= 12, counter.statements
    text = body(response)
    assert response.status_code == 200
    assert "AB1234567" in text and "National ID card" in text and "31 Jan 2031" in text
    docs = {d.kind.value: d for d in db.session.scalars(select(KycDocument)
                                                        .where(KycDocument.verification_id == verification.id))}
    assert f'<img src="/compliance/kyc/documents/{docs["id_front"].id}"' in text
    assert f'href="/compliance/kyc/documents/{docs["id_back"].id}" download="back.pdf"' in text
    assert "Latest AML screening" in text and "Review Student" in text
    assert re.search(r"Screened “(Review Student|Test Student [0-9a-f]+)”", text)
    image = client.get(f"/compliance/kyc/documents/{docs['id_front'].id}")
    assert image.data == png_bytes() and image.headers["Content-Type"] == "image/png"
    assert image.headers["Content-Disposition"].startswith("inline;")
    assert image.headers["X-Content-Type-Options"] == "nosniff" and image.headers["Cache-Control"] == "no-store"
    pdf = client.get(f"/compliance/kyc/documents/{docs['id_back'].id}")
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.data.startswith(b"%PDF-")


def test_the_review_page_costs_the_same_statements_whatever_the_students_history(client, login_as, statements):
    """The review reads the verification, its documents, the student's other verifications and
    latest screening in one statement: the request sends two (who is asking, then the page),
    with one submission as with a history of decisions and screenings."""
    from portal.compliance.aml import screening

    login_as("compliance")
    student = create_user("student", full_name="History Student")
    verification = level1_submission(student)
    settle()
    url = f"/compliance/kyc/{verification.id}"
    client.get(url)
    with statements() as few:
        assert client.get(url).status_code == 200
    verify(student, 3)
    for _ in range(3):
        screening.screen_user(student.id, "History Student", None, None)
    settle()
    with statements() as many:
        text = body(client.get(url))
    assert many.count == few.count == 2, many.statements
    assert text.count('<li><a href="/compliance/kyc/') == 3 and "Current level: <strong>3</strong>" in text


def test_level_1_review_shows_the_decrypted_personal_data(client, login_as):
    login_as("compliance")
    verification = level1_submission(create_user("student"))
    settle()
    text = body(client.get(f"/compliance/kyc/{verification.id}"))
    for shown in ("Thandi Mokoena", "2001-05-17", "South Africa", "12 Long Street, Cape Town 8001"):
        assert shown in text


def test_decisions_through_the_page(client, login_as):
    officer = login_as("compliance")
    student = create_user("student")
    verification = level1_submission(student)
    settle()
    empty = client.post(f"/compliance/kyc/{verification.id}/reject", data={"reason": ""})
    assert empty.status_code == 422 and "Give the student a reason" in body(empty)
    fragment = client.post(f"/compliance/kyc/{verification.id}/revision", data={"reason": "Add the postal code."},
                           headers={**HX, "HX-Target": "decision"})
    assert fragment.status_code == 204 and fragment.headers["HX-Trigger"] == "kyc-changed"
    assert fragment.headers["HX-Location"] == f"/compliance/kyc/{verification.id}"
    page = body(client.get(fragment.headers["HX-Location"]))
    assert "Revision requested. The student was notified" in page and "Add the postal code." in page
    again = client.post(f"/compliance/kyc/{verification.id}/approve")
    assert again.status_code == 409 and "already revision requested by" in body(again)
    db.session.expire_all()
    row = db.session.get(KycVerification, verification.id)
    assert row.status == KycStatus.REVISION_REQUESTED and row.decided_by_id == officer.id


def test_four_eyes_through_the_page(client, make_user):
    student = create_user("student")
    verify(student, 2)
    verification = services.submit_level3(student, proof=Upload("bill.pdf", pdf_bytes(), "application/pdf"),
                                          selfie=Upload("me.jpg", jpeg_bytes(), "image/jpeg"))
    first, second = make_user("compliance"), make_user("compliance")
    settle()
    login(client, first)
    assert "Give first approval" in body(client.get(f"/compliance/kyc/{verification.id}"))
    done = client.post(f"/compliance/kyc/{verification.id}/approve")
    assert done.status_code == 302
    page = body(client.get(done.headers["Location"]))
    assert "First approval recorded" in page and "You gave the first approval." in page
    assert "Approve level 3" not in page and "Assign to me" not in page
    refused = client.post(f"/compliance/kyc/{verification.id}/approve")
    assert refused.status_code == 403 and "a different officer must give the second" in body(refused)
    login(client, second)
    assert client.post(f"/compliance/kyc/{verification.id}/approve").status_code == 302
    db.session.expire_all()
    row = db.session.get(KycVerification, verification.id)
    assert row.status == KycStatus.APPROVED and {row.first_approver_id, row.decided_by_id} == {first.id, second.id}


def test_a_decision_on_another_officers_verification_is_refused_unless_admin(client, make_user):
    owner, other, admin = make_user("compliance"), make_user("compliance"), make_user("admin")
    verification = level1_submission(create_user("student"))
    services.assign_to_me(owner, verification.id)
    settle()
    login(client, other)
    response = client.post(f"/compliance/kyc/{verification.id}/approve")
    assert response.status_code == 403 and "Only they or an administrator can decide on it." in body(response)
    login(client, admin)
    assert client.post(f"/compliance/kyc/{verification.id}/approve").status_code == 302
    db.session.expire_all()
    assert db.session.get(KycVerification, verification.id).decided_by_id == admin.id


def test_after_a_revision_request_the_form_starts_from_what_was_sent(client, login_as):
    student = login_as("student")
    verification = level1_submission(student)
    services.request_revision(create_user("compliance"), verification.id, "Add the postal code, please.")
    settle()
    page = body(client.get("/wallet/verification"))
    assert 'value="Thandi Mokoena"' in page and '<option value="ZA" selected>' in page
    assert "12 Long Street, Cape Town 8001</textarea>" in page
