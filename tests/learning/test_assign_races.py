"""A double click on "Submit": two requests at once on two connections, committed. One
submission row results (the second request updates it), and neither request fails."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.db import context as db_context
from portal.db import db
from portal.learning.lms import assignments as service
from portal.learning.lms.models import Submission
from tests.factories import create_user
from tests.learning.factories.assign import enroll, make_assignment, make_course
from tests.learning.test_catalog_races import run_twice
from tests.races import remove_committed


@pytest.fixture
def committed(app):
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        student = create_user("student")
        course = make_course(requires_quizzes_passed=False)
        enroll(course, student)
        assignment = make_assignment(course)
        ids = {"user": student.id, "course": course.id, "assignment": assignment.id}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        remove_committed(app, course_id=ids["course"], user_ids=[ids["user"]])  # the certificate too


@pytest.mark.no_db_rollback
def test_double_submit_makes_one_submission(app, committed):
    results = run_twice(app, committed, lambda student: service.submit(
        student, committed["assignment"], text="My answer").id)
    assert results[0] == results[1]
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        rows = db.session.scalars(select(Submission).where(Submission.assignment_id == committed["assignment"])).all()
        assert len(rows) == 1 and rows[0].version == 2
        db.session.remove()
