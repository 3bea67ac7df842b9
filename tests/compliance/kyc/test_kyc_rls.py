"""Row-level security on KYC rows, proved through the app role with queries that have no WHERE
clause: a student reads only their own verifications and documents and cannot change them;
faculty read none; compliance officers read all."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from portal.compliance.aml.models import AmlCheck
from portal.compliance.kyc import services
from portal.compliance.kyc.documents import Upload
from portal.compliance.kyc.models import KycDocument, KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow
from tests.compliance.factories import jpeg_bytes, png_bytes, verify
from tests.factories import create_user
from tests.helpers import as_user


@pytest.fixture(autouse=True)
def _context(app):
    with app.test_request_context():
        yield


def submitted_level2(student) -> KycVerification:
    verify(student, 1)
    return services.submit_level2(student, document_type="national_id", document_number="ZX998877",
                                  expires_on="2031-01-01", front=Upload("f.jpg", jpeg_bytes(), "image/jpeg"),
                                  back=Upload("b.png", png_bytes(), "image/png"))


@pytest.fixture
def two_students():
    alice, bob = create_user("student"), create_user("student")
    return alice, bob, submitted_level2(alice), submitted_level2(bob)


def everything():
    db.session.expire_all()
    return (set(db.session.scalars(select(KycVerification.id))),
            set(db.session.scalars(select(KycDocument.id))))


def test_a_student_sees_only_their_own_verifications_and_documents(two_students):
    alice, bob, _, _ = two_students
    with as_user(alice):
        verifications, docs = everything()
    own_verifications = set(db.session.scalars(select(KycVerification.id).where(KycVerification.user_id == alice.id)))
    own_docs = set(db.session.scalars(select(KycDocument.id).where(KycDocument.user_id == alice.id)))
    assert verifications == own_verifications and len(verifications) == 2  # level 1 and level 2
    assert docs == own_docs and len(docs) == 2
    with as_user(bob):
        assert everything()[0].isdisjoint(own_verifications)


def test_faculty_see_nothing_and_officers_see_everything(two_students):
    alice, bob, _, _ = two_students
    with as_user(create_user("faculty")):
        assert everything() == (set(), set())
    with as_user(create_user("compliance")):
        verifications, docs = everything()
    assert {v for v in verifications} >= set(db.session.scalars(
        select(KycVerification.id).where(KycVerification.user_id.in_([alice.id, bob.id]))))
    assert len(docs) >= 4


def test_a_student_cannot_change_a_verification_even_their_own(two_students):
    alice, _, mine, theirs = two_students
    with as_user(alice):
        changed = db.session.execute(update(KycVerification).values(status=KycStatus.APPROVED,
                                                                    decided_at=utcnow())).rowcount
        assert changed == 0  # no UPDATE policy: not even their own row is visible to UPDATE
    db.session.refresh(mine)
    assert mine.status == KycStatus.SUBMITTED


def test_a_student_cannot_insert_a_verification_for_someone_else(two_students):
    alice, bob, _, _ = two_students
    with as_user(alice), pytest.raises(DBAPIError, match="row-level security"), db.session.begin_nested():
        db.session.add(KycVerification(user_id=bob.id, level=3, status=KycStatus.SUBMITTED, data_encrypted=b"x",
                                       submitted_at=utcnow(), decision_reason=""))
        db.session.flush()


def test_a_student_submits_and_is_screened_under_their_own_identity():
    student = create_user("student")
    with as_user(student):
        verification = services.submit_level1(student, legal_name="Sipho Ndlovu", birth_date="1998-02-03",
                                              country="ZA", address="4 Main Road, Durban 4001")
        assert verification.user_id == student.id
        assert db.session.scalar(select(AmlCheck).where(AmlCheck.verification_id == verification.id)) is None
    # The check exists; only officers may read it.
    check = db.session.scalar(select(AmlCheck).where(AmlCheck.verification_id == verification.id))
    assert check is not None and check.user_id == student.id


def test_ids_of_other_students_documents_are_not_found_for_a_student(two_students):
    from portal.compliance.kyc import queries
    from portal.errors import NotFound

    alice, bob, _, _ = two_students
    bobs_doc = db.session.scalar(select(KycDocument.id).where(KycDocument.user_id == bob.id).limit(1))
    with as_user(alice):
        for document_id in (bobs_doc, uuid.uuid4()):
            with pytest.raises(NotFound):
                queries.own_document(alice, document_id)
