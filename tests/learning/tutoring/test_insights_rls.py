"""Row-level security on insights, paths and steps: a student's query without any WHERE sees
only their own rows; course staff (faculty, admins, the system) reach every row; a compliance
officer none. A student cannot write rows for someone else."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.learning.tutoring import paths
from portal.learning.tutoring.insights import refresh_insights
from portal.learning.tutoring.models import LearningInsight, LearningPath, PathStep
from tests.learning.tutoring.factories.paths import build_course, create_user, enrol, take_quiz

TABLES = (LearningInsight, LearningPath, PathStep)


@pytest.fixture
def two_students():
    built = build_course(questions=3, estimated_hours=4)
    students = [create_user("student"), create_user("student")]
    for student in students:
        enrol(student, built)
        take_quiz(student, built.topic("Loops").quiz, correct=0)
        refresh_insights(student.id, built.course.id)
        paths.generate_path(student.id, built.course.id)
    db.session.flush()
    return built, students


def owners(model) -> set:
    return set(db.session.scalars(select(model.user_id)))


def test_a_student_sees_only_their_own_rows(two_students):
    _, (alice, bob) = two_students
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        for model in TABLES:
            assert owners(model) == {alice.id}, model.__tablename__
            assert db.session.scalar(select(func.count()).select_from(model)) > 0
    with acting_as(Actor.for_user(bob.id, "student"), db.session):
        assert owners(LearningInsight) == {bob.id}


@pytest.mark.parametrize("role", ["faculty", "admin"])
def test_course_staff_reach_every_row(two_students, role):
    _, (alice, bob) = two_students
    staff = create_user(role)
    with acting_as(Actor.for_user(staff.id, role), db.session):
        for model in TABLES:
            assert {alice.id, bob.id} <= owners(model)


def test_a_compliance_officer_sees_none(two_students):
    officer = create_user("compliance")
    with acting_as(Actor.for_user(officer.id, "compliance"), db.session):
        for model in TABLES:
            assert db.session.scalar(select(func.count()).select_from(model)) == 0


def test_a_student_cannot_write_anothers_insights(two_students):
    built, (alice, bob) = two_students
    with (acting_as(Actor.for_user(alice.id, "student"), db.session), pytest.raises(DBAPIError) as caught,
          db.session.begin_nested()):
        db.session.add(LearningInsight(user_id=bob.id, course_id=built.course.id, kind="pace", module_id=None,
                                       score=0, summary="Forged."))
        db.session.flush()
    assert "row-level security" in str(caught.value)
