"""Upload checks for KYC documents (content, not names, decides) and their encryption at rest."""

from __future__ import annotations

import uuid

import pytest

from portal.compliance.kyc import documents
from portal.compliance.kyc.documents import JPEG, PDF, PNG, Upload, UploadRefused
from portal.compliance.kyc.models import KycDocumentKind
from portal.errors import Forbidden
from tests.compliance.factories import jpeg_bytes, pdf_bytes, png_bytes

FRONT = KycDocumentKind.ID_FRONT


@pytest.fixture(autouse=True)
def _context(app):
    with app.test_request_context():
        yield


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("front.png", png_bytes(), PNG),
    ("front.JPG", jpeg_bytes(), JPEG),
    ("scan.jpeg", jpeg_bytes(), JPEG),
    ("scan.pdf", pdf_bytes(), PDF),
])
def test_real_files_are_accepted_with_the_type_their_content_has(name, data, expected):
    checked = documents.check(Upload(name, data, ""), FRONT, "front")
    assert checked.content_type == expected
    assert checked.data == data and len(checked.sha256) == 64
    assert documents.detect(data) == expected


@pytest.mark.parametrize(("name", "data", "content_type", "message"), [
    ("id.pdf", png_bytes(), "application/pdf", "named .pdf but its content is a PNG image"),
    ("id.jpg", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "image/jpeg", "a web page"),
    ("id.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>x()</script></svg>", "image/png", "a web page"),
    ("id.jpg", b"MZ\x90\x00" + b"\x00" * 200, "image/jpeg", "a program"),
    ("id.jpg", jpeg_bytes()[:-2], "image/jpeg", "damaged or incomplete"),
    ("id.png", png_bytes()[:-12], "image/png", "damaged or incomplete"),
    ("id.pdf", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "application/pdf", "damaged or incomplete"),
    ("id.png", png_bytes(), "image/jpeg", "was sent as image/jpeg but its content is a PNG image"),
    ("id.gif", b"GIF89a" + b"\x00" * 30, "image/gif", "Files of type .gif are not accepted"),
    ("id", png_bytes(), "", "Files of type .(none) are not accepted"),
    ("id.png", b"", "image/png", "The file is empty."),
])
def test_forged_and_broken_files_are_refused_with_a_message(name, data, content_type, message):
    with pytest.raises(UploadRefused) as refused:
        documents.check(Upload(name, data, content_type), FRONT, "front")
    assert message in refused.value.message
    assert refused.value.field == "front" and refused.value.status_code == 422


def test_a_png_with_a_corrupted_chunk_is_refused():
    data = bytearray(png_bytes())
    data[40] ^= 0xFF  # inside IDAT: its CRC no longer matches
    assert documents.detect(bytes(data)) is None


def test_oversized_files_are_refused_at_the_configured_limit(app, monkeypatch):
    monkeypatch.setitem(app.config, "KYC_MAX_UPLOAD_BYTES", 2048)
    padded = png_bytes(64, 64)
    assert len(padded) < 2048
    documents.check(Upload("ok.png", padded), FRONT, "front")
    big = pdf_bytes("x" * 10) + b"%" + b"0" * 3000 + b"\n%%EOF\n"
    with pytest.raises(UploadRefused, match="larger than the limit of 2 kB"):
        documents.check(Upload("big.pdf", big), FRONT, "front")


def test_a_selfie_must_be_a_photo_and_missing_files_are_asked_for():
    with pytest.raises(UploadRefused, match=r"Files of type \.pdf are not accepted here. Upload JPG, PNG"):
        documents.check(Upload("me.pdf", pdf_bytes()), KycDocumentKind.SELFIE, "selfie")
    with pytest.raises(UploadRefused, match="Choose a file to upload."):
        documents.check(None, FRONT, "front")
    assert documents.check(None, KycDocumentKind.ID_BACK, "back", required=False) is None


def test_display_names_are_made_safe_and_stored_names_are_server_made():
    checked = documents.check(Upload('../../etc/"pass<wd>".png', png_bytes()), FRONT, "front")
    assert checked.original_name == "passwd.png"
    owner, verification = uuid.uuid4(), uuid.uuid4()
    doc = documents.make_document(checked, FRONT, verification, owner)
    assert doc.stored_name.startswith("kyc-") and doc.stored_name.endswith(".png")
    assert "passwd" not in doc.stored_name
    assert doc.stored_name != documents.make_document(checked, FRONT, verification, owner).stored_name


def test_the_stored_bytes_are_encrypted_and_bound_to_the_document_and_its_owner():
    data = png_bytes()
    owner = uuid.uuid4()
    doc = documents.make_document(documents.check(Upload("id.png", data), FRONT, "front"), FRONT, uuid.uuid4(), owner)
    blob = bytes(doc.content_encrypted)
    assert data not in blob and blob[:8] != data[:8]
    assert doc.size_bytes == len(data) and doc.content_type == PNG
    assert documents.decrypt(doc.id, owner, blob) == data
    with pytest.raises(Forbidden, match="does not authenticate"):
        documents.decrypt(uuid.uuid4(), owner, blob)  # copied onto another document
    with pytest.raises(Forbidden, match="does not authenticate"):
        documents.decrypt(doc.id, uuid.uuid4(), blob)  # claimed by another student
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(Forbidden):
        documents.decrypt(doc.id, owner, bytes(tampered))


def test_response_headers_keep_the_browser_from_guessing_or_caching():
    headers = documents.response_headers("Pièce d'identité.png")
    assert headers["Content-Disposition"].startswith('inline; filename="Pi_ce_d_identit_.png"')
    assert "filename*=UTF-8''Pi%C3%A8ce%20d%27identit%C3%A9.png" in headers["Content-Disposition"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert "sandbox" in headers["Content-Security-Policy"]
