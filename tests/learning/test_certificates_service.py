"""Certificates: canonical payloads, signatures, issuing on completion, the hash chain, the
register check (``flask certificates verify``) and revocation rules."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, update

from portal import events
from portal.db import db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.learning.lms import certificates as service
from portal.learning.lms.models import Certificate, ManagementRole
from portal.platform.notifications.models import Notification
from portal.security import signing
from tests.learning.factories.certificates import add_staff, complete, create_course


def _register_report():
    signer = service.current_signer()
    return service.verify_register(service.whole_register(), signer.public_key, signer.key_id)


def _run_verify(app):
    return app.test_cli_runner().invoke(args=["certificates", "verify"])


# ------------------------------------------------------------------ payload and signing


def test_canonical_json_is_sorted_compact_ascii_and_stable():
    fields = {"b": 1, "a": "Zoë", "c": {"y": 2, "x": [1, 2]}}
    text = service.canonical_json(fields)
    assert text == '{"a":"Zo\\u00eb","b":1,"c":{"x":[1,2],"y":2}}'
    reordered = {"c": {"x": [1, 2], "y": 2}, "a": "Zoë", "b": 1}
    assert service.canonical_json(reordered) == text
    assert json.loads(text) == fields


def test_payload_has_every_stated_field_and_no_serial():
    issued = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    user_id, course_id = uuid.UUID(int=1), uuid.UUID(int=2)
    payload = service.canonical_json(service.payload_fields(
        code="abc", user_id=user_id, course_id=course_id, holder_name="Ada Lovelace",
        course_title="Engines", issued_at=issued, key_id="0123456789abcdef"))
    assert payload == (
        '{"code":"abc","course_id":"00000000-0000-0000-0000-000000000002","course_title":"Engines",'
        '"holder_name":"Ada Lovelace","issued_at":"2025-03-04T05:06:07+00:00","issuer":"Azora Portal",'
        '"key_id":"0123456789abcdef","user_id":"00000000-0000-0000-0000-000000000001","v":1}'
    )
    assert "serial" not in payload


def test_entry_hash_is_sha256_of_previous_payload_and_signature():
    expected = hashlib.sha256(b"0" * 64 + b'{"a":1}' + b"sig").hexdigest()
    assert service.entry_hash("0" * 64, '{"a":1}', "sig") == expected


def test_sign_and_verify_with_a_configured_key():
    signer = signing.load_signer(signing.generate_key())
    signature = signer.sign(b"message")
    assert signer.verify(b"message", signature)
    assert not signer.verify(b"messagE", signature)
    assert not signer.verify(b"message", "not base64!")
    other = signing.load_signer(signing.generate_key())
    assert not other.verify(b"message", signature)
    assert len(base64.b64decode(signature)) == 64


def test_key_id_is_the_start_of_the_public_key_fingerprint():
    signer = signing.load_signer(signing.generate_key())
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16]
    loaded = serialization.load_pem_public_key(signer.public_pem.encode())
    assert signing.key_id_of(loaded) == signer.key_id


@pytest.mark.parametrize("value", ["", None, "not base64 ***", base64.b64encode(b"short").decode()])
def test_a_missing_or_malformed_key_is_refused(value):
    with pytest.raises(signing.SigningKeyError):
        signing.load_signer(value)


def test_development_key_is_kept_in_the_instance_folder(monkeypatch, tmp_path):
    from portal import config

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.delenv("CERTIFICATE_SIGNING_KEY", raising=False)
    value = config.load_config({"AZORA_ENV": "test"})["CERTIFICATE_SIGNING_KEY"]
    path = tmp_path / "certificate_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert value == path.read_text().strip() and signing.load_signer(value)
    assert config.load_config({"AZORA_ENV": "development"})["CERTIFICATE_SIGNING_KEY"] == value  # kept
    production = {"AZORA_ENV": "production", "SECRET_KEY": "x", "DATABASE_URL": "postgresql://a@db.invalid/b"}
    assert config.load_config(production)["CERTIFICATE_SIGNING_KEY"] == ""  # production never makes one
    configured = signing.generate_key()
    monkeypatch.setenv("CERTIFICATE_SIGNING_KEY", configured)
    assert config.load_config(production)["CERTIFICATE_SIGNING_KEY"] == configured


# ------------------------------------------------------------------ issuing


def test_course_completed_issues_a_signed_chained_certificate(make_user):
    student = make_user("student", full_name="Grace Hopper")
    course = create_course("Compilers 101")
    issued = []

    def listener(_sender, **kwargs):
        issued.append(kwargs)

    events.certificate_issued.connect(listener)
    try:
        certificate = complete(student, course)
    finally:
        events.certificate_issued.disconnect(listener)

    assert certificate.holder_name == "Grace Hopper" and certificate.course_title == "Compilers 101"
    assert len(certificate.code) >= 16 and certificate.code.replace("-", "").replace("_", "").isalnum()
    signed = json.loads(certificate.payload)
    assert signed["code"] == certificate.code
    assert signed["user_id"] == str(student.id) and signed["course_id"] == str(course.id)
    assert signed["holder_name"] == "Grace Hopper" and signed["course_title"] == "Compilers 101"
    assert datetime.fromisoformat(signed["issued_at"]) == certificate.issued_at
    signer = service.current_signer()
    assert certificate.key_id == signer.key_id
    assert signer.verify(certificate.payload.encode(), certificate.signature)
    assert certificate.previous_hash == service.previous_entry_hash(certificate)
    assert certificate.entry_hash == service.entry_hash(certificate.previous_hash, certificate.payload,
                                                        certificate.signature)
    assert service.check_one(certificate).ok
    assert issued == [{"user": student, "certificate": certificate}]
    note = db.session.scalar(select(Notification).where(Notification.user_id == student.id,
                                                        Notification.kind == "certificate"))
    assert note is not None and note.link == f"/learning/certificates/{certificate.code}"
    assert "Compilers 101" in note.title


def test_issuing_works_in_a_students_own_transaction(make_user):
    """Completion is announced while the student acts (row-level security applies)."""
    from portal.db.context import Actor, acting_as

    student = make_user("student")
    course = create_course()
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        certificate = complete(student, course)
        assert service.check_one(certificate).ok
    assert certificate.user_id == student.id


def test_issuing_is_idempotent_per_student_and_course(make_user):
    student = make_user("student")
    course = create_course()
    first = complete(student, course)
    events.course_completed.send(user=student, course=course)
    again = service.issue_certificate(student, course)
    assert again.id == first.id
    count = db.session.scalar(select(func.count()).select_from(Certificate).where(Certificate.user_id == student.id))
    assert count == 1
    notes = db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == student.id, Notification.kind == "certificate"))
    assert notes == 1


def test_codes_differ_and_a_chain_of_several_verifies(app, make_user):
    course = create_course()
    made = [complete(make_user("student"), course) for _ in range(4)]
    assert len({c.code for c in made}) == 4
    for before, after in zip(made, made[1:], strict=False):
        assert after.serial > before.serial
        assert after.previous_hash == before.entry_hash
    report = _register_report()
    assert report.ok and report.total >= 4 and report.valid == report.total
    result = _run_verify(app)
    assert result.exit_code == 0, result.output
    assert "The register is intact." in result.output


def test_the_first_certificate_links_to_the_genesis_hash(make_user):
    certificate = complete(make_user("student"), create_course())
    first = db.session.scalar(select(Certificate).order_by(Certificate.serial).limit(1))
    assert first.previous_hash == service.GENESIS_HASH
    assert certificate.previous_hash == service.previous_entry_hash(certificate)


# ------------------------------------------------------------------ tampering


def _three(make_user):
    course = create_course()
    return [complete(make_user("student"), course) for _ in range(3)]


def _tamper(certificate: Certificate, **values) -> None:
    db.session.execute(update(Certificate).where(Certificate.id == certificate.id).values(**values))
    db.session.expire_all()


def _payload_with(certificate: Certificate, **changes) -> str:
    fields = json.loads(certificate.payload)
    fields.update(changes)
    return service.canonical_json(fields)


TAMPERINGS = {
    "payload": lambda c: {"payload": _payload_with(c, holder_name="Mallory")},
    "signature": lambda c: {"signature": base64.b64encode(b"\0" * 64).decode()},
    "previous_hash": lambda c: {"previous_hash": "f" * 64},
    "holder_name": lambda c: {"holder_name": "Mallory Impostor"},
    "course_title": lambda c: {"course_title": "Brain Surgery"},
    "issued_at": lambda c: {"issued_at": datetime(2001, 1, 1, tzinfo=UTC)},
    "entry_hash": lambda c: {"entry_hash": "e" * 64},
}


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
def test_tampering_is_found_by_the_command_and_the_page(app, client, make_user, what):
    certificates = _three(make_user)
    middle = certificates[1]
    _tamper(middle, **TAMPERINGS[what](middle))

    result = _run_verify(app)
    assert result.exit_code == 1, result.output
    assert middle.code in result.output

    page = client.get(f"/learning/certificates/{middle.code}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Not valid." in body and "Valid.</strong>" not in body

    # The neighbours' own entries are untouched and their pages still say valid, unless the
    # tampered entry's hash itself changed, which breaks the next one's link.
    first = client.get(f"/learning/certificates/{certificates[0].code}").get_data(as_text=True)
    assert "Valid.</strong>" in first


def test_rewriting_one_entry_with_a_fresh_hash_still_breaks_the_link_after_it(app, make_user):
    first, middle, last = _three(make_user)
    forged_payload = _payload_with(middle, holder_name="Mallory")
    # Whoever rewrites the row can recompute its hash, but not sign for the key, nor change the
    # next entry's link without breaking that entry's hash.
    _tamper(middle, payload=forged_payload, holder_name="Mallory",
            entry_hash=service.entry_hash(middle.previous_hash, forged_payload, middle.signature))
    report = _register_report()
    problems = {(code, problem) for _serial, code, problem in report.problems}
    assert (middle.code, "the signature does not match the payload") in problems
    assert (last.code, "the previous hash does not link to the entry before it") in problems
    assert not any(code == first.code for code, _ in problems)
    result = _run_verify(app)
    assert result.exit_code == 1
    assert "problems" in result.output and last.code in result.output


def test_a_removed_entry_breaks_the_chain(app, make_user):
    _first, middle, last = _three(make_user)
    db.session.execute(Certificate.__table__.delete().where(Certificate.__table__.c.id == middle.id))
    db.session.expire_all()
    result = _run_verify(app)
    assert result.exit_code == 1
    assert last.code in result.output and "does not link" in result.output


def test_a_certificate_signed_with_another_key_fails(app, make_user):
    other = signing.load_signer(signing.generate_key())
    certificate = service.issue_certificate(make_user("student"), create_course(), signer=other)
    assert not service.check_one(certificate).ok
    result = _run_verify(app)
    assert result.exit_code == 1 and other.key_id in result.output


def test_the_command_reports_counts_on_an_intact_register(app, make_user):
    certificates = _three(make_user)
    admin = make_user("admin")
    service.revoke_certificate(admin, certificates[0].code, "Issued by mistake")
    result = _run_verify(app)
    assert result.exit_code == 0, result.output
    report = _register_report()
    assert f"{report.total} certificates, {report.total} valid, {report.revoked} revoked, 0 problems" in result.output
    assert report.revoked >= 1


def test_new_key_command_prints_a_usable_key(app):
    result = app.test_cli_runner().invoke(args=["certificates", "new-key"])
    assert result.exit_code == 0
    assert signing.load_signer(result.output.strip()).key_id


# ------------------------------------------------------------------ revoking


@pytest.mark.parametrize("role", [ManagementRole.OWNER, ManagementRole.INSTRUCTOR])
def test_course_staff_who_release_grades_may_revoke(make_user, role):
    course = create_course()
    teacher = make_user("faculty")
    add_staff(course, teacher, role)
    certificate = complete(make_user("student"), course)
    revoked = service.revoke_certificate(teacher, certificate.code, "  Plagiarism found after completion.  ")
    assert revoked.revoked_reason == "Plagiarism found after completion."
    assert revoked.revoked_by_id == teacher.id and revoked.revoked_at is not None
    note = db.session.scalar(select(Notification).where(Notification.user_id == certificate.user_id,
                                                        Notification.title.like("%was revoked")))
    assert note is not None and note.body == "Plagiarism found after completion."
    # It stays in the register, which still verifies.
    assert service.check_one(revoked).ok
    assert _register_report().ok


def test_admins_may_revoke_any_certificate(make_user):
    certificate = complete(make_user("student"), create_course())
    service.revoke_certificate(make_user("admin"), certificate.code, "Duplicate account")
    assert certificate.revoked_at is not None


@pytest.mark.parametrize("who", ["assistant", "other_faculty", "student", "holder", "compliance"])
def test_others_may_not_revoke(make_user, who):
    course = create_course()
    holder = make_user("student")
    certificate = complete(holder, course)
    if who == "assistant":
        actor = make_user("faculty")
        add_staff(course, actor, ManagementRole.ASSISTANT)
    elif who == "other_faculty":
        actor = make_user("faculty")
        add_staff(create_course(), actor, ManagementRole.OWNER)
    elif who == "holder":
        actor = holder
    else:
        actor = make_user(who)
    with pytest.raises(Forbidden):
        service.revoke_certificate(actor, certificate.code, "No reason")
    assert certificate.revoked_at is None


@pytest.mark.parametrize(("reason", "message"), [("", "Say why"), ("   ", "Say why"), ("x" * 501, "500 characters")])
def test_a_revocation_needs_a_reason_within_500_characters(make_user, reason, message):
    certificate = complete(make_user("student"), create_course())
    with pytest.raises(DomainError) as caught:
        service.revoke_certificate(make_user("admin"), certificate.code, reason)
    assert caught.value.field == "reason" and message in caught.value.message
    assert certificate.revoked_at is None


def test_a_reason_of_exactly_500_characters_is_kept(make_user):
    certificate = complete(make_user("student"), create_course())
    service.revoke_certificate(make_user("admin"), certificate.code, "y" * 500)
    db.session.expire_all()
    assert db.session.get(Certificate, certificate.id).revoked_reason == "y" * 500


def test_revoking_twice_is_refused_and_unknown_codes_are_not_found(make_user):
    admin = make_user("admin")
    certificate = complete(make_user("student"), create_course())
    service.revoke_certificate(admin, certificate.code, "First")
    with pytest.raises(Conflict):
        service.revoke_certificate(admin, certificate.code, "Second")
    assert certificate.revoked_reason == "First"
    with pytest.raises(NotFound):
        service.revoke_certificate(admin, "no-such-code", "Why")
    with pytest.raises(NotFound):
        service.get_by_code("x" * 41)


def test_a_students_list_holds_only_their_certificates_paginated(make_user):
    student, other = make_user("student"), make_user("student")
    mine = [complete(student, create_course()) for _ in range(3)]
    complete(other, create_course())
    first = service.certificates_of(student, size=2)
    assert len(first.items) == 2 and first.has_next
    second = service.certificates_of(student, first.next_cursor, size=2)
    assert not second.has_next
    assert {c.id for c in first.items + second.items} == {c.id for c in mine}
