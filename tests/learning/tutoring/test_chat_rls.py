"""Row-level security on the tutor's conversations, through the app role: a query with no
WHERE clause at all returns a student only their own conversations, messages and questions;
admins and the system see every row; faculty read questions (for the course report) but never a
conversation; nobody writes another student's rows."""

from __future__ import annotations

import pytest
from psycopg import errors as pg
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.learning.tutoring import services
from portal.learning.tutoring.models import Message, MessageRole, TutoringSession, TutorQuestion
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.tutoring.factories.chat import record_question, student_in, tutor_course
from tests.rls import visible

TABLES = {"tutoring_sessions": TutoringSession, "messages": Message, "tutor_questions": TutorQuestion}


@pytest.fixture
def world():
    """Three students with conversations in one course (two exchanges each, inserted as
    ``system:tests``), and a user of every staff role."""
    course = tutor_course().course
    people = {name: student_in(course) for name in ("alice", "bob", "carol")}
    rows = {}
    for name, user in people.items():
        first = record_question(user, course, f"{name}'s first question?")
        session = db.session.get(TutoringSession, first.session_id)
        second = record_question(user, course, f"{name}'s second question?", session=session)
        rows[name] = {
            "tutoring_sessions": {session.id},
            "messages": {first.question_message_id, first.reply_message_id, second.question_message_id,
                         second.reply_message_id},
            "tutor_questions": {first.id, second.id},
        }
    staff = {role: create_user(role) for role in ("admin", "compliance", "faculty")}
    return {"course": course, "people": people, "rows": rows, "staff": staff}


def everyone(world, table: str) -> set:
    return set().union(*(rows[table] for rows in world["rows"].values()))


def test_a_student_sees_only_their_own_rows(world):
    everything = {table: visible(model) for table, model in TABLES.items()}  # as system:tests
    for name, user in world["people"].items():
        with as_user(user, "student"):
            for table, model in TABLES.items():
                seen = visible(model)
                assert seen == world["rows"][name][table], (name, table)
                assert seen < everything[table]  # there are other rows to hide


def test_admins_see_every_row(world):
    with as_user(world["staff"]["admin"], "admin"):
        for table, model in TABLES.items():
            assert everyone(world, table) <= visible(model), table


def test_faculty_read_questions_but_no_conversation(world):
    with as_user(world["staff"]["faculty"], "faculty"):
        assert visible(TutoringSession) == set() and visible(Message) == set()
        assert everyone(world, "tutor_questions") <= visible(TutorQuestion)
        # Reading is all: a faculty member cannot mark or delete a student's question.
        assert db.session.execute(update(TutorQuestion).values(helpful=False)).rowcount == 0
        assert db.session.execute(delete(TutorQuestion)).rowcount == 0


def test_compliance_and_anonymous_see_nothing(world):
    with as_user(world["staff"]["compliance"], "compliance"):
        for model in TABLES.values():
            assert visible(model) == set()
    with acting_as(Actor(label="anonymous:web", role="anonymous"), db.session):
        for model in TABLES.values():
            assert visible(model) == set()


def refused(write) -> None:
    with pytest.raises(DBAPIError) as error, db.session.begin_nested():
        write()
        db.session.flush()
    assert isinstance(error.value.orig, pg.InsufficientPrivilege), error.value.orig
    assert "row-level security" in str(error.value.orig)


def test_a_student_cannot_write_someone_elses_rows(world):
    alice, bob = world["people"]["alice"], world["people"]["bob"]
    (bob_session,) = world["rows"]["bob"]["tutoring_sessions"]
    with as_user(alice, "student"):
        refused(lambda: db.session.add(Message(session_id=bob_session, user_id=bob.id, role=MessageRole.STUDENT,
                                               body="planted")))
        refused(lambda: db.session.add(TutoringSession(user_id=bob.id, course_id=world["course"].id, title="x")))
        assert db.session.execute(update(TutorQuestion).where(TutorQuestion.user_id == bob.id)
                                  .values(helpful=False)).rowcount == 0
        assert db.session.execute(update(TutoringSession).where(TutoringSession.id == bob_session)
                                  .values(title="renamed")).rowcount == 0
        assert db.session.execute(delete(Message).where(Message.user_id == bob.id)).rowcount == 0
    assert db.session.scalar(select(TutoringSession.title).where(TutoringSession.id == bob_session)) != "renamed"
    assert all(q.helpful is None for q in db.session.scalars(select(TutorQuestion)
                                                              .where(TutorQuestion.user_id == bob.id)))


def test_the_services_work_as_the_student_under_these_rules(world):
    """Asking, marking and ending run as the student (as a request does), and stay within them."""
    alice = world["people"]["alice"]
    with as_user(alice, "student"):
        exchange = services.ask(alice, world["course"], "What does chlorophyll do?")
        services.mark(alice, exchange.record.id, True)
        services.end_session(alice, exchange.session.id)
        assert visible(TutorQuestion) == world["rows"]["alice"]["tutor_questions"] | {exchange.record.id}


def test_the_idle_sweep_runs_as_the_system(world, app, monkeypatch):
    from datetime import timedelta

    from portal.db import base

    later = base.utcnow() + timedelta(minutes=services.idle_minutes() + 1)
    with acting_as(Actor.system("worker"), db.session):
        assert services.end_idle_sessions(at=later) >= 3  # journeys' committed rows may be swept too
    ours = everyone(world, "tutoring_sessions")
    assert all(s.ended_at is not None for s in db.session.scalars(
        select(TutoringSession).where(TutoringSession.id.in_(ours)).execution_options(populate_existing=True)))
