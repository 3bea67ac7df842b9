"""KYC submissions and decisions: levels in order, validation, one open submission per level,
encrypted personal data, screening at every submission, transitions, assignment and four eyes."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import UserStatus
from portal.compliance.aml import screening
from portal.compliance.aml.models import AmlCheck
from portal.compliance.kyc import levels, personal_data, queries, services
from portal.compliance.kyc.documents import Upload
from portal.compliance.kyc.models import KycDocument, KycStatus, KycVerification
from portal.db import db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.platform.notifications.models import Notification
from tests.compliance.factories import jpeg_bytes, pdf_bytes, png_bytes, verify
from tests.factories import create_user

TODAY = date(2026, 12, 1)


@pytest.fixture(autouse=True)
def _context(app):
    with app.test_request_context():
        yield


def level1(student, **fields):
    values = {"legal_name": "Thandi Mokoena", "birth_date": "2001-05-17", "country": "ZA",
              "address": "12 Long Street\nCape Town 8001"}
    values.update(fields)
    return services.submit_level1(student, today=TODAY, **values)


def level2(student, **fields):
    values = {"document_type": "national_id", "document_number": "ab 123-4567",
              "expires_on": "2030-01-31", "front": Upload("front.jpg", jpeg_bytes(), "image/jpeg"),
              "back": Upload("back.png", png_bytes(), "image/png")}
    values.update(fields)
    return services.submit_level2(student, today=TODAY, **values)


def level3(student, **fields):
    values = {"proof": Upload("bill.pdf", pdf_bytes(), "application/pdf"),
              "selfie": Upload("me.png", png_bytes(), "image/png")}
    values.update(fields)
    return services.submit_level3(student, today=TODAY, **values)


def officer(role="compliance"):
    return create_user(role)


# ---------------------------------------------------------------------------------- submitting


def test_level_1_stores_the_personal_data_encrypted_and_the_country_in_clear():
    student = create_user("student")
    verification = level1(student)
    db.session.expire(verification)
    assert verification.status == KycStatus.SUBMITTED and verification.level == 1
    assert verification.country == "ZA" and verification.decided_at is None
    blob = bytes(verification.data_encrypted)
    assert b"Thandi" not in blob and b"Long Street" not in blob
    assert personal_data.unseal(verification) == {"legal_name": "Thandi Mokoena", "birth_date": "2001-05-17",
                                              "address": "12 Long Street\nCape Town 8001"}
    # The ciphertext is bound to its row: moved onto another verification it does not open.
    other = level1(create_user("student"))
    other.data_encrypted = blob
    assert "error" in personal_data.unseal(other)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"legal_name": ""}, "legal_name", "Enter your full legal name"),
    ({"legal_name": "R2D2"}, "legal_name", "Use letters only"),
    ({"birth_date": ""}, "birth_date", "Enter your date of birth."),
    ({"birth_date": "17/05/2001"}, "birth_date", "as a date (YYYY-MM-DD)"),
    ({"birth_date": "2010-01-01"}, "birth_date", "at least 18 years old"),
    ({"birth_date": "2008-12-02"}, "birth_date", "at least 18 years old"),  # 18 tomorrow
    ({"birth_date": "1890-01-01"}, "birth_date", "more than 120 years ago"),
    ({"birth_date": "2027-01-01"}, "birth_date", "cannot be in the future"),
    ({"country": ""}, "country", "Choose your country"),
    ({"country": "XX"}, "country", "Choose a country from the list."),
    ({"address": "Here"}, "address", "Enter your full home address"),
    ({"address": "x" * 501}, "address", "500 characters or fewer"),
])
def test_level_1_refuses_bad_details_next_to_their_field(fields, field, message):
    student = create_user("student")
    with pytest.raises(services.KycInvalid) as refused:
        level1(student, **fields)
    assert message in refused.value.errors[field]
    assert db.session.scalar(select(func.count()).select_from(KycVerification)
                             .where(KycVerification.user_id == student.id)) == 0


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(services.KycInvalid) as refused:
        level1(create_user("student"), legal_name="", birth_date="", country="", address="")
    assert set(refused.value.errors) == {"legal_name", "birth_date", "country", "address"}


def test_an_adult_born_exactly_18_years_ago_today_is_accepted():
    assert level1(create_user("student"), birth_date="2008-12-01").level == 1


def test_the_country_list_is_iso_3166_alpha_2_with_names():
    countries = dict(personal_data.countries())
    assert countries["ZA"] == "South Africa" and countries["KE"] == "Kenya" and "XX" not in countries
    assert len(countries) > 240 and all(len(code) == 2 for code in countries)


def test_levels_go_in_order():
    student = create_user("student")
    with pytest.raises(Conflict, match="Level 2 needs level 1 approved first."):
        level2(student)
    with pytest.raises(Conflict, match="Level 3 needs level 2 approved first."):
        level3(student)
    level1(student)
    with pytest.raises(Conflict, match="Level 2 needs level 1 approved first."):
        level2(student)  # submitted is not approved
    verified = create_user("student")
    verify(verified, 1)
    assert level2(verified).level == 2
    with pytest.raises(Conflict, match="already verified at level 1"):
        level1(verified)


def test_one_open_submission_per_level():
    student = create_user("student")
    first = level1(student)
    with pytest.raises(Conflict, match="waiting for review") as refused:
        level1(student, legal_name="Thandi Other")
    assert "nothing new was sent" in refused.value.message
    rows = db.session.scalars(select(KycVerification).where(KycVerification.user_id == student.id)).all()
    assert [row.id for row in rows] == [first.id]


def test_the_partial_unique_index_backs_the_one_open_submission_rule():
    student = create_user("student")
    first = level1(student)
    twin = KycVerification(user_id=student.id, level=1, status=KycStatus.SUBMITTED, data_encrypted=b"x",
                           submitted_at=first.submitted_at, decision_reason="")
    with pytest.raises(IntegrityError, match="uq_kyc_verifications_open"), db.session.begin_nested():
        db.session.add(twin)
        db.session.flush()


def test_after_a_revision_request_the_student_submits_again():
    student, reviewer = create_user("student"), officer()
    first = level1(student)
    services.request_revision(reviewer, first.id, "The address is missing the postal code.")
    second = level1(student, address="12 Long Street, Cape Town 8001")
    assert second.id != first.id and second.status == KycStatus.SUBMITTED


def test_level_2_validation_and_documents():
    student = create_user("student")
    verify(student, 1)
    with pytest.raises(services.KycInvalid) as refused:
        level2(student, document_type="library_card", document_number="!", expires_on="2026-11-30",
               front=Upload("front.pdf", png_bytes(), "application/pdf"), back=None)
    errors = refused.value.errors
    assert "Choose the kind of document" in errors["document_type"]
    assert "4 to 30 letters and digits" in errors["document_number"]
    assert "has expired" in errors["expires_on"]
    assert "named .pdf but its content is a PNG image" in errors["front"]
    assert "Choose a file" in errors["back"]
    with pytest.raises(services.KycInvalid) as refused:
        level2(student, expires_on=TODAY.isoformat())
    assert "has expired" in refused.value.errors["expires_on"]

    verification = level2(student)
    assert verification.document_type == "national_id"
    assert verification.document_expires_on == date(2030, 1, 31)
    assert personal_data.unseal(verification) == {"document_number": "AB 123-4567"}
    docs = db.session.scalars(select(KycDocument).where(KycDocument.verification_id == verification.id)
                              .order_by(KycDocument.kind)).all()
    assert [(d.kind.value, d.content_type, d.original_name) for d in docs] == [
        ("id_back", "image/png", "back.png"), ("id_front", "image/jpeg", "front.jpg")]
    assert all(d.user_id == student.id for d in docs)


def test_a_passport_needs_no_back():
    student = create_user("student")
    verify(student, 1)
    verification = level2(student, document_type="passport", back=None)
    assert db.session.scalar(select(func.count()).select_from(KycDocument)
                             .where(KycDocument.verification_id == verification.id)) == 1


def test_level_3_needs_a_proof_of_address_and_a_photo_selfie():
    student = create_user("student")
    verify(student, 2)
    with pytest.raises(services.KycInvalid) as refused:
        level3(student, proof=None, selfie=Upload("me.pdf", pdf_bytes(), "application/pdf"))
    assert "Choose a file" in refused.value.errors["proof"]
    assert ".pdf are not accepted" in refused.value.errors["selfie"]
    verification = level3(student)
    assert verification.country == "ZA"  # from the approved level 1
    kinds = set(db.session.scalars(select(KycDocument.kind).where(KycDocument.verification_id == verification.id)))
    assert {k.value for k in kinds} == {"proof_of_address", "selfie"}


def test_only_active_students_submit():
    for user in (create_user("faculty"), create_user("compliance"),
                 create_user("student", status=UserStatus.DEACTIVATED)):
        with pytest.raises(Forbidden):
            level1(user)


# ---------------------------------------------------------------------------------- screening


def test_each_submission_is_screened_with_the_level_1_name(monkeypatch):
    calls = []
    real = screening.screen_user

    def recording(user_id, name, birth_date, country, **kwargs):
        calls.append((user_id, name, birth_date, country, kwargs))
        return real(user_id, name, birth_date, country, **kwargs)

    monkeypatch.setattr(screening, "screen_user", recording)
    student = create_user("student")
    first = level1(student)
    assert calls == [(student.id, "Thandi Mokoena", date(2001, 5, 17), "ZA",
                      {"trigger": "kyc_submission", "verification_id": first.id})]
    check = db.session.scalar(select(AmlCheck).where(AmlCheck.verification_id == first.id))
    assert check is not None and check.screened_name == "Thandi Mokoena" and check.trigger.value == "kyc_submission"

    verified = create_user("student")
    verify(verified, 2, legal_name="Amina Diallo")
    third = level3(verified)
    assert calls[-1][1:4] == ("Amina Diallo", date(1999, 4, 1), "ZA")
    assert calls[-1][4]["verification_id"] == third.id


# ---------------------------------------------------------------------------------- levels


def test_effective_level_counts_only_approved_levels_in_order_and_a_valid_document():
    student = create_user("student")
    assert queries.effective_level(student.id) == 0
    verify(student, 3)
    assert queries.effective_level(student.id) == 3
    lapsed = create_user("student")
    verify(lapsed, 3, expires_on=date.today() - timedelta(days=1))
    assert queries.effective_level(lapsed.id) == 1
    assert queries.effective_level(lapsed.id, today=date.today() - timedelta(days=2)) == 3


def test_an_expired_document_is_renewed_by_a_new_level_2_submission():
    student = create_user("student")
    verify(student, 2, expires_on=TODAY - timedelta(days=1))
    overview = queries.student_overview(student, today=TODAY)
    assert overview.level == 1 and overview.expired and overview.next_level == 2
    with pytest.raises(Conflict, match="Level 3 needs level 2 approved first."):
        level3(student)
    renewal = level2(student)
    services.approve(officer(), renewal.id)
    assert queries.effective_level(student.id, today=TODAY) == 2


def test_a_document_near_its_expiry_may_be_renewed_early_but_not_a_fresh_one():
    soon, fresh = create_user("student"), create_user("student")
    verify(soon, 2, expires_on=TODAY + timedelta(days=30))
    verify(fresh, 2, expires_on=TODAY + timedelta(days=400))
    assert queries.student_overview(soon, today=TODAY).renewal_due
    assert level2(soon).level == 2
    with pytest.raises(Conflict, match="already verified at level 2"):
        level2(fresh)


def test_the_levels_table_says_what_each_level_unlocks():
    assert [lv.number for lv in levels.LEVELS] == [0, 1, 2, 3]
    assert levels.WITHDRAWAL_LEVEL == 2
    from decimal import Decimal
    assert levels.transfer_limit(Decimal("5000"), 0, 2) == Decimal("100.00")
    assert levels.transfer_limit(Decimal("5000"), 1, 2) == Decimal("5000.00")
    assert levels.transfer_limit(Decimal("5000"), 3, 2) == Decimal("25000.00")
    assert levels.transfer_limit(Decimal("1"), 0, 8) == Decimal("0.02000000")
    assert levels.transfer_limit(None, 3, 2) is None


# ---------------------------------------------------------------------------------- decisions


def notes_of(user):
    return db.session.scalars(select(Notification).where(Notification.user_id == user.id)
                              .order_by(Notification.created_at)).all()


def test_approval_notifies_the_student_and_raises_the_level():
    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    services.approve(reviewer, verification.id, "Matches the register.")
    assert verification.status == KycStatus.APPROVED and verification.decided_by_id == reviewer.id
    assert verification.decided_at is not None and verification.decision_reason == "Matches the register."
    assert queries.effective_level(student.id) == 1
    (note,) = notes_of(student)
    assert note.title == "Identity verification level 1 approved" and note.link == "/wallet/verification"


@pytest.mark.parametrize(("action", "status", "title"), [
    (services.reject, KycStatus.REJECTED, "was not accepted"),
    (services.request_revision, KycStatus.REVISION_REQUESTED, "needs changes"),
])
def test_reject_and_revision_need_a_reason_the_student_reads(action, status, title):
    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    for reason in ("", "  no ", None):
        with pytest.raises(services.DecisionRefused, match="Give the student a reason") as refused:
            action(reviewer, verification.id, reason)
        assert refused.value.field == "reason"
    with pytest.raises(services.DecisionRefused, match="1000 characters"):
        action(reviewer, verification.id, "x" * 1001)
    assert verification.status == KycStatus.SUBMITTED
    action(reviewer, verification.id, "The name does not match the document.")
    assert verification.status == status
    assert verification.decision_reason == "The name does not match the document."
    (note,) = notes_of(student)
    assert title in note.title and note.body == "The name does not match the document."


def test_decisions_only_along_the_transitions():
    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    services.reject(reviewer, verification.id, "Blurred and unreadable.")
    for action, args in ((services.approve, ()), (services.reject, ("Again, a reason.",)),
                         (services.request_revision, ("Again, a reason.",))):
        with pytest.raises(Conflict, match="already rejected by"):
            action(reviewer, verification.id, *args)
    assert verification.status == KycStatus.REJECTED


def test_four_eyes_for_level_3():
    student = create_user("student")
    verify(student, 2)
    first, second = officer(), officer()
    verification = level3(student)
    services.assign_to_me(first, verification.id)
    services.approve(first, verification.id)
    assert verification.status == KycStatus.AWAITING_SECOND
    assert verification.first_approver_id == first.id and verification.assigned_to_id is None
    assert verification.decided_at is None and queries.effective_level(student.id) == 2
    assert notes_of(student) == []
    with pytest.raises(Forbidden, match="a different officer must give the second"):
        services.approve(first, verification.id)
    with pytest.raises(Forbidden, match="a second officer must take it"):
        services.assign_to_me(first, verification.id)
    services.approve(second, verification.id)
    assert verification.status == KycStatus.APPROVED and verification.decided_by_id == second.id
    assert queries.effective_level(student.id) == 3


def test_the_database_refuses_a_level_3_approval_by_one_officer():
    student, solo = create_user("student"), officer()
    verify(student, 2)
    verification = level3(student)
    with pytest.raises(IntegrityError, match="four_eyes_for_level_3"), db.session.begin_nested():
        db.session.execute(update(KycVerification).where(KycVerification.id == verification.id).values(
            status=KycStatus.APPROVED, first_approver_id=solo.id, decided_by_id=solo.id,
            decided_at=func.now()))


def test_a_level_3_awaiting_second_can_still_be_rejected_by_another_officer():
    student = create_user("student")
    verify(student, 2)
    verification = level3(student)
    services.approve(officer(), verification.id)
    services.request_revision(officer(), verification.id, "The selfie does not show the document.")
    assert verification.status == KycStatus.REVISION_REQUESTED


def test_a_verification_assigned_to_another_officer_is_theirs():
    student, owner, other, admin = create_user("student"), officer(), officer(), create_user("admin")
    verification = level1(student)
    services.assign_to_me(owner, verification.id)
    with pytest.raises(Conflict, match="has already taken this verification"):
        services.assign_to_me(other, verification.id)
    with pytest.raises(Forbidden, match=r"assigned to .*Only they or an administrator"):
        services.approve(other, verification.id)
    with pytest.raises(Forbidden, match="assigned to"):
        services.reject(other, verification.id, "A valid reason here.")
    assert verification.status == KycStatus.SUBMITTED
    services.assign_to_me(owner, verification.id)  # taking it again changes nothing
    services.approve(admin, verification.id)  # an administrator may step in
    assert verification.status == KycStatus.APPROVED and verification.decided_by_id == admin.id


def test_an_unassigned_verification_is_decided_by_whoever_decides_and_recorded_as_theirs():
    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    services.approve(reviewer, verification.id)
    assert verification.assigned_to_id == reviewer.id


def test_assigning_a_decided_verification_is_refused():
    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    services.approve(reviewer, verification.id)
    with pytest.raises(Conflict, match="already decided"):
        services.assign_to_me(officer(), verification.id)


def test_only_officers_decide_and_unknown_ids_are_not_found():
    student = create_user("student")
    verification = level1(student)
    for outsider in (create_user("student"), create_user("faculty")):
        with pytest.raises(Forbidden):
            services.approve(outsider, verification.id)
        with pytest.raises(Forbidden):
            services.assign_to_me(outsider, verification.id)
    with pytest.raises(NotFound):
        services.approve(officer(), uuid.uuid4())
    with pytest.raises(NotFound):
        services.assign_to_me(officer(), uuid.uuid4())


def test_every_decision_is_in_the_audit_trail():
    from portal.db.audit import AuditLog

    student, reviewer = create_user("student"), officer()
    verification = level1(student)
    services.reject(reviewer, verification.id, "Not readable at all.")
    rows = db.session.scalars(select(AuditLog).where(AuditLog.row_id == str(verification.id))).all()
    assert rows, "no audit rows"
    assert any((r.new_values or {}).get("status") == "rejected" for r in rows)
    assert all("dataEncrypted" not in (r.new_values or {}) for r in rows)


def test_a_domain_error_is_raised_for_an_unconfigured_cipher(app, monkeypatch):
    monkeypatch.setitem(app.config, "FILE_ENCRYPTION_KEYS", "")
    with pytest.raises(DomainError, match="not configured"):
        level1(create_user("student"))


def test_the_demo_verifications_cover_every_state_with_real_documents():
    from portal.compliance.kyc import demo, documents

    students = [create_user("student", email=email) for email in demo._PEOPLE]
    students.append(create_user("student", email="student5@azora.example"))
    by_demo = {student.email: student for student in students}
    made = demo.seed_kyc([officer(), officer()], students)
    assert made == 9
    assert demo.seed_kyc([officer(), officer()], students) == 0  # again: nothing new
    assert queries.effective_level(by_demo["student@azora.example"].id) == 2
    statuses = {row.level: row.status for row in queries.own_verifications(by_demo["student4@azora.example"].id)}
    assert statuses == {1: KycStatus.APPROVED, 2: KycStatus.APPROVED, 3: KycStatus.AWAITING_SECOND}
    docs = db.session.scalars(select(KycDocument).where(KycDocument.user_id.in_([s.id for s in students]))).all()
    assert len(docs) == 6  # a passport front; an ID card's two sides; a passport, a bill and a selfie
    for doc in docs:
        assert documents.detect(documents.decrypt(doc.id, doc.user_id, doc.content_encrypted)) == doc.content_type
