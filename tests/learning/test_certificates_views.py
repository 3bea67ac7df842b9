"""Certificate pages: public verification, PDF, public key, the lookup form, a student's list,
revoking through the page, and the statement budget."""

from __future__ import annotations

import html

import pytest
import segno
from cryptography.hazmat.primitives import serialization
from flask import url_for

from portal.db import db
from portal.learning.lms import certificate_pdf
from portal.learning.lms import certificates as service
from portal.learning.lms.models import ManagementRole
from portal.security import signing
from tests.learning.factories.certificates import add_staff, complete, create_course


@pytest.fixture
def certificate(make_user):
    student = make_user("student", full_name="Katherine Johnson")
    return complete(student, create_course("Orbital Mechanics"))


def test_verification_page_is_public_and_shows_the_live_check(client, certificate):
    response = client.get(f"/learning/certificates/{certificate.code}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Katherine Johnson" in body and "Orbital Mechanics" in body
    assert certificate.issued_at.strftime("%d %B %Y") in body
    assert "Valid.</strong>" in body
    assert "Ed25519 signature valid" in body
    assert certificate.key_id in body
    assert 'href="/learning/certificates/public-key"' in body
    assert f'href="/learning/certificates/{certificate.code}.pdf"' in body
    assert "Revoke this certificate" not in body  # anonymous
    assert response.headers["Cache-Control"] == "no-cache"  # a revocation shows at once


def test_verify_path_in_notifications_is_the_pages_address(app, certificate):
    with app.test_request_context():
        assert url_for("learning.certificate", code=certificate.code) == service.VERIFY_PATH.format(
            code=certificate.code)


def test_an_unknown_code_is_a_clean_404(client):
    response = client.get("/learning/certificates/does-not-exist")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "<html" in body and "No certificate has that code" in body
    assert client.get("/learning/certificates/does-not-exist.pdf").status_code == 404


def test_a_revoked_certificate_says_so_with_reason_and_date(client, make_user, certificate):
    service.revoke_certificate(make_user("admin"), certificate.code, "Exam fraud <b>confirmed</b>")
    body = client.get(f"/learning/certificates/{certificate.code}").get_data(as_text=True)
    assert "Revoked</strong>" in body
    assert html.escape("Exam fraud <b>confirmed</b>") in body
    assert certificate.revoked_at.strftime("%d %B %Y") in body
    assert "Ed25519 signature valid" in body  # still genuine, only revoked


def test_pdf_is_public_and_a_real_pdf(client, certificate):
    response = client.get(f"/learning/certificates/{certificate.code}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    assert response.data.rstrip().endswith(b"%%EOF")
    assert f"certificate-{certificate.code}.pdf" in response.headers["Content-Disposition"]


def test_pdf_qr_code_holds_the_absolute_verification_address(client, certificate, monkeypatch):
    seen = []
    real = certificate_pdf.qr_code

    def spy(url):
        seen.append(url)
        return real(url)

    monkeypatch.setattr(certificate_pdf, "qr_code", spy)
    client.get(f"/learning/certificates/{certificate.code}.pdf")
    assert seen == [f"http://localhost/learning/certificates/{certificate.code}"]
    code = real(seen[0])
    assert code.designator.endswith("-M")  # error correction level M
    reference = segno.make_qr(seen[0], error="m")
    assert [bytes(row) for row in code.matrix] == [bytes(row) for row in reference.matrix]
    assert len(code.matrix) == code.symbol_size(border=0)[0] >= 21


def test_pdf_and_qr_use_base_url_when_configured(app, client, certificate, monkeypatch):
    seen = []
    monkeypatch.setattr(certificate_pdf, "qr_code", lambda url: seen.append(url) or segno.make_qr(url))
    monkeypatch.setitem(app.config, "BASE_URL", "https://portal.example/")
    client.get(f"/learning/certificates/{certificate.code}.pdf")
    assert seen == [f"https://portal.example/learning/certificates/{certificate.code}"]


def test_revoked_pdf_still_renders(client, make_user, certificate):
    service.revoke_certificate(make_user("admin"), certificate.code, "Withdrawn")
    response = client.get(f"/learning/certificates/{certificate.code}.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")


def test_public_key_page_publishes_the_key_that_verifies(client, certificate):
    response = client.get("/learning/certificates/public-key")
    assert response.status_code == 200
    body = html.unescape(response.get_data(as_text=True))
    start = body.index("-----BEGIN PUBLIC KEY-----")
    end = body.index("-----END PUBLIC KEY-----") + len("-----END PUBLIC KEY-----")
    public_key = serialization.load_pem_public_key(body[start:end].encode())
    key_id = signing.key_id_of(public_key)
    assert key_id in body and key_id == certificate.key_id
    assert signing.verify(public_key, certificate.payload.encode(), certificate.signature)


def test_lookup_form(client, certificate):
    assert client.get("/learning/certificates/verify").status_code == 200
    found = client.get("/learning/certificates/verify", query_string={"code": f"  {certificate.code} "})
    assert found.status_code == 302
    assert found.headers["Location"].endswith(f"/learning/certificates/{certificate.code}")
    pasted = client.get("/learning/certificates/verify",
                        query_string={"code": f"https://portal.example/learning/certificates/{certificate.code}"})
    assert pasted.status_code == 302
    missing = client.get("/learning/certificates/verify", query_string={"code": "nope"})
    assert missing.status_code == 404
    body = missing.get_data(as_text=True)
    assert "No certificate has that code" in body and 'value="nope"' in body


def test_lookup_form_answers_htmx_with_the_form_only(client):
    response = client.get("/learning/certificates/verify", query_string={"code": "nope"},
                          headers={"HX-Request": "true", "HX-Target": "certificate-lookup"})
    body = response.get_data(as_text=True)
    assert response.status_code == 404 and "<html" not in body and 'id="certificate-lookup"' in body


def test_my_certificates_lists_only_mine(client, login_as, make_user):
    student = login_as("student")
    mine = complete(student, create_course("My Own Course"))
    other = complete(make_user("student"), create_course("Someone Else's Course"))
    body = client.get("/learning/certificates/mine").get_data(as_text=True)
    assert "My Own Course" in body and mine.code in body
    assert other.code not in body


def test_my_certificates_empty_and_paginated(client, login_as, monkeypatch):
    student = login_as("student")
    assert "You have no certificates yet" in client.get("/learning/certificates/mine").get_data(as_text=True)
    monkeypatch.setattr(service, "PAGE_SIZE", 2)
    monkeypatch.setattr(service.certificates_of, "__defaults__", (None, 2))
    for _ in range(3):
        complete(student, create_course())
    first = client.get("/learning/certificates/mine").get_data(as_text=True)
    assert first.count('class="certificate-item"') == 2 and "Show more" in first
    cursor = service.certificates_of(student, size=2).next_cursor
    more = client.get("/learning/certificates/mine", query_string={"after": cursor}, headers={"HX-Request": "true"})
    assert more.get_data(as_text=True).count('class="certificate-item"') == 1
    assert "<html" not in more.get_data(as_text=True)


@pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
def test_my_certificates_is_for_students(client, login_as, role):
    login_as(role)
    assert client.get("/learning/certificates/mine").status_code == 403


# ------------------------------------------------------------------ revoking through the page


def _owner_logged_in(login_as, course):
    teacher = login_as("faculty")
    add_staff(course, teacher, ManagementRole.OWNER)
    # The client's requests share this session; a view that rolls back after a refused write
    # must not take the test's own rows with it (the test's outer transaction still ends in
    # a rollback).
    db.session.commit()
    return teacher


def test_staff_see_the_revoke_form_and_revoke(client, login_as, make_user):
    course = create_course()
    certificate = complete(make_user("student"), course)
    _owner_logged_in(login_as, course)
    page = client.get(f"/learning/certificates/{certificate.code}").get_data(as_text=True)
    assert "Revoke this certificate" in page
    response = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "Copied work"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/learning/certificates/{certificate.code}")
    body = client.get(f"/learning/certificates/{certificate.code}").get_data(as_text=True)
    assert "Revoked</strong>" in body and "Copied work" in body
    assert "Revoke this certificate" not in body  # nothing more to revoke


def test_htmx_revoke_swaps_the_status(client, login_as, make_user):
    course = create_course()
    certificate = complete(make_user("student"), course)
    _owner_logged_in(login_as, course)
    response = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "Copied work"},
                           headers={"HX-Request": "true", "HX-Target": "certificate-status"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="certificate-status"') and "<html" not in body
    assert "Revoked</strong>" in body and "Copied work" in body


@pytest.mark.parametrize(("reason", "message"), [("", "Say why"), ("z" * 501, "within 500 characters")])
def test_revoke_without_a_good_reason_shows_the_error_by_the_field(client, login_as, make_user, reason, message):
    course = create_course()
    certificate = complete(make_user("student"), course)
    _owner_logged_in(login_as, course)
    response = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": reason})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body and 'class="field-error"' in body
    assert certificate.revoked_at is None


@pytest.mark.parametrize("role", ["assistant", "outsider"])
def test_faculty_without_the_right_cannot_revoke(client, login_as, make_user, role):
    course = create_course()
    certificate = complete(make_user("student"), course)
    teacher = login_as("faculty")
    if role == "assistant":
        add_staff(course, teacher, ManagementRole.ASSISTANT)
    page = client.get(f"/learning/certificates/{certificate.code}").get_data(as_text=True)
    assert "Revoke this certificate" not in page
    response = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "Because"})
    assert response.status_code == 403
    assert certificate.revoked_at is None


def test_students_and_anonymous_visitors_cannot_revoke(client, login_as, make_user):
    certificate = complete(make_user("student"), create_course())
    anonymous = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "x"})
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]
    login_as("student")
    assert client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "x"}).status_code == 403
    assert certificate.revoked_at is None


def test_revoking_twice_through_the_page_is_a_conflict(client, login_as, make_user):
    certificate = complete(make_user("student"), create_course())
    login_as("admin")
    assert client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "One"}).status_code == 302
    second = client.post(f"/learning/certificates/{certificate.code}/revoke", data={"reason": "Two"})
    assert second.status_code == 409 and "already revoked" in second.get_data(as_text=True)


def test_unknown_code_revoke_is_404_for_staff(client, login_as):
    login_as("admin")
    assert client.post("/learning/certificates/nothing-here/revoke", data={"reason": "x"}).status_code == 404


# ------------------------------------------------------------------ statement budget


@pytest.mark.parametrize("viewer", ["anonymous", "owner"])
def test_verification_page_statement_budget(client, login_as, make_user, statements, viewer):
    course = create_course()
    if viewer == "owner":
        _owner_logged_in(login_as, course)
    many = [complete(make_user("student"), course) for _ in range(6)]
    # Warm: issuing committed before this request, and its after-commit work emptied the caches.
    assert client.get(f"/learning/certificates/{many[1].code}").status_code == 200
    counts = []
    for certificate in (many[0], many[-1]):
        with statements() as counter:
            response = client.get(f"/learning/certificates/{certificate.code}")
        assert response.status_code == 200
        counts.append(counter.count)
    assert max(counts) <= 12, counts
    assert counts[0] == counts[1]  # no statement per entry in the register


def test_other_public_pages_statement_budget(client, login_as, statements):
    student = login_as("student")
    for _ in range(4):
        complete(student, create_course())
    for path in ("/learning/certificates/mine", "/learning/certificates/public-key", "/learning/certificates/verify"):
        with statements() as counter:
            assert client.get(path).status_code == 200
        assert counter.count <= 12, (path, counter.count)


def test_public_key_page_reads_nothing_from_the_database(client, statements):
    """The public key comes from configuration and is kept in each process's memory, so it is
    not put in the shared cache (README, "Cache"): the page reads neither the certificates nor
    the cache, only what every request reads (the address's blocks)."""
    with statements() as counted:
        response = client.get("/learning/certificates/public-key")
    assert response.status_code == 200 and "BEGIN PUBLIC KEY" in response.get_data(as_text=True)
    assert counted.statements and not [s for s in counted.statements if "certificates" in s or "cache_entries" in s]
