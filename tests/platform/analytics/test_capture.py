"""Events recorded from the domain events: after the commit, in one INSERT per request or
commit, never failing the user's request; private to admins and their own user."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from types import SimpleNamespace

import blinker
import pytest

from portal import events
from portal.db import db
from portal.money.wallets import ledger
from portal.money.wallets.models import TransactionType
from portal.platform.analytics import capture
from portal.platform.analytics.models import Event
from tests.factories import PASSWORD, create_user
from tests.helpers import as_user
from tests.money.factories import fund
from tests.platform.analytics.helpers import event_inserts, events_of
from tests.rls import visible


def _to_analytics(signal: str, **arguments) -> None:
    """Send ``signal`` to the analytics receivers only (the others want real rows)."""
    receivers = [r for r in getattr(events, signal).receivers_for(blinker.ANY)
                 if r.__module__ == "portal.platform.analytics.listeners"]
    assert len(receivers) == 1, f"{signal} has no analytics receiver"
    receivers[0](None, **arguments)


def _thing(**fields):
    return SimpleNamespace(id=uuid.uuid4(), **fields)


def _student():
    return SimpleNamespace(id=uuid.uuid4(), role="student")


#: (signal, its arguments given the user, the event's name, the properties it must carry)
def _cases():
    course, quiz, lesson = _thing(), _thing(), None
    lesson = _thing(course_id=course.id)
    quiz = _thing(course_id=course.id)
    attempt = _thing(percent=Decimal("75.00"))
    submission = _thing(assignment_id=uuid.uuid4())
    certificate = _thing(course_id=course.id)
    question = _thing(answered=True)
    return [
        ("user_registered", {}, "signed_up", {"role": "student"}),
        ("user_logged_in", {"ip": "192.0.2.1", "user_agent": "tests"}, "logged_in", {"role": "student"}),
        ("enrolled", {"course": course}, "enrolled", {"course_id": str(course.id)}),
        ("lesson_completed", {"lesson": lesson}, "lesson_completed",
         {"course_id": str(course.id), "lesson_id": str(lesson.id)}),
        ("quiz_submitted", {"quiz": quiz, "attempt": attempt}, "quiz_submitted",
         {"quiz_id": str(quiz.id), "attempt_id": str(attempt.id)}),
        ("quiz_passed", {"quiz": quiz, "attempt": attempt, "score": Decimal(3)}, "quiz_passed",
         {"quiz_id": str(quiz.id), "percent": "75.00"}),
        ("assignment_submitted", {"submission": submission}, "assignment_submitted",
         {"assignment_id": str(submission.assignment_id), "submission_id": str(submission.id)}),
        ("course_completed", {"course": course}, "course_completed", {"course_id": str(course.id)}),
        ("certificate_issued", {"certificate": certificate}, "certificate_issued", {"course_id": str(course.id)}),
        ("tutor_asked", {"course": course, "question": question}, "tutor_asked",
         {"course_id": str(course.id), "answered": True}),
    ]


@pytest.mark.parametrize(("signal", "arguments", "name", "properties"), _cases(),
                         ids=[case[0] for case in _cases()])
def test_each_domain_event_is_recorded_once_its_transaction_commits(signal, arguments, name, properties):
    user = _student()
    _to_analytics(signal, user=user, **arguments)
    assert events_of(user.id) == []  # not before the commit
    db.session.commit()
    [row] = events_of(user.id)
    assert row.name == name
    assert properties.items() <= row.properties.items()


def test_an_opened_case_is_recorded_for_its_subject():
    case = _thing(user_id=uuid.uuid4())
    events.case_opened.send(case=case, source="monitoring")
    db.session.commit()
    [row] = events_of(case.user_id)
    assert (row.name, row.properties) == ("case_opened", {"case_id": str(case.id), "source": "monitoring"})


def test_a_rolled_back_transaction_records_nothing():
    user = _student()
    events.enrolled.send(user=user, course=_thing())
    db.session.rollback()
    db.session.commit()
    assert events_of(user.id) == []


def test_a_transfer_and_a_top_up_are_recorded_with_amount_and_currency_but_a_deposit_is_not():
    sender, recipient = create_user("student"), create_user("student")
    fund(sender, "40", "USD")
    ledger.open_user_wallet(recipient.id, "USD")
    db.session.commit()
    source, target = ledger.user_wallet(sender.id, "USD"), ledger.user_wallet(recipient.id, "USD")
    ledger.post([ledger.Leg(source, target, Decimal("12.50"), TransactionType.TRANSFER, "Test transfer", {})])
    db.session.commit()
    [sent] = events_of(sender.id)
    assert (sent.name, sent.properties) == ("money_sent", {"amount": "12.50", "currency": "USD"})
    assert events_of(recipient.id) == []


def test_the_events_of_a_held_request_wait_for_its_response_and_go_in_one_insert(statements):
    user = _student()
    capture.begin_request(lambda: "session-1")
    try:
        for _ in range(3):
            _to_analytics("lesson_completed", user=user, lesson=_thing(course_id=uuid.uuid4()))
        db.session.commit()
        assert events_of(user.id) == []  # committed, but the request has not ended
        write = capture.after_response()
    finally:
        with statements() as ending:
            capture.end_request()
    assert event_inserts(ending.statements) == [] and events_of(user.id) == []  # left to the response
    with statements() as sent:
        assert write() == 3
    assert len(event_inserts(sent.statements)) == 1
    rows = events_of(user.id)
    assert [r.name for r in rows] == ["lesson_completed"] * 3
    assert {r.session_id for r in rows} == {"session-1"}


def test_a_request_whose_response_was_never_made_writes_its_events_at_its_end(statements):
    """``after_response`` did not run (a hook before it failed): the request's end writes them."""
    user = _student()
    capture.begin_request(lambda: None)
    _to_analytics("lesson_completed", user=user, lesson=_thing(course_id=uuid.uuid4()))
    db.session.commit()
    with statements() as ending:
        capture.end_request()
    assert len(event_inserts(ending.statements)) == 1
    assert [r.name for r in events_of(user.id)] == ["lesson_completed"]


def test_a_request_answers_before_its_events_are_written_and_they_follow_once_it_is_sent(client, statements):
    user = create_user("student")
    with statements() as answering:
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    # The response is made, the request's work committed and its app context gone: no event yet.
    assert event_inserts(answering.statements) == []
    assert events_of(user.id, "logged_in") == [] and capture.pending_count() == 1
    with statements() as sent:
        response.close()  # as the server does once the client has the whole answer (WSGI close)
    assert len(event_inserts(sent.statements)) == 1
    [row] = events_of(user.id, "logged_in")
    assert row.properties == {"role": "student"}
    assert capture.pending_count() == 0


def test_events_written_after_the_response_carry_the_user_and_session_of_the_request(client, login_as):
    from sqlalchemy import select

    from portal.compliance.security.models import SessionValidation
    from tests.learning.factories.catalog import make_course

    student = login_as("student")
    course = make_course()
    course_id, url = course.id, f"/learning/courses/{course.slug}/enrol"
    response = client.post(url)
    assert response.status_code in (200, 302, 204)
    assert events_of(student.id, "enrolled") == []
    response.close()
    [row] = events_of(student.id, "enrolled")
    session_id = db.session.scalar(select(SessionValidation.id).where(SessionValidation.user_id == student.id))
    assert row.properties == {"course_id": str(course_id)} and row.session_id == str(session_id)


def test_a_request_rolled_back_records_nothing_after_its_response(client):
    """A blocked user's right password: the login's event was recorded, then the request rolled
    its work back (the block refuses it): nothing is written, before or after the response."""
    from portal.compliance.security import blocks

    user = create_user("student")
    blocks.add_block(create_user("admin"), kind="user", target=user.email, reason="testing", duration="24h")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 403
    response.close()
    assert events_of(user.id) == [] and capture.pending_count() == 0


def test_a_request_that_fails_after_recording_records_nothing(client, monkeypatch):
    """A refusal (DomainError) after the event was recorded: its handler rolls back, and the
    response, an error page, writes nothing."""
    from blueprints.auth import routes
    from portal.errors import DomainError

    def refuse(*_args, **_kwargs):
        raise DomainError("Not now.")

    user = create_user("student")
    monkeypatch.setattr(routes, "set_actor", refuse)  # after ``authenticate`` recorded the login
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert 400 <= response.status_code < 500
    response.close()
    assert events_of(user.id) == [] and capture.pending_count() == 0


def test_a_failing_write_does_not_fail_the_request(client, monkeypatch, caplog):
    user = create_user("student")

    def broken(_bind, _rows):
        raise RuntimeError("events table unavailable")

    monkeypatch.setattr(capture, "_write", broken)
    with caplog.at_level(logging.ERROR, logger="portal.platform.analytics.capture"):
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code == 302
        response.close()  # the write after the response fails, quietly
    assert "could not write 1 analytics events" in caplog.text
    assert client.get("/").status_code in (200, 302)
    assert events_of(user.id) == []
    assert capture.pending_count() == 0  # dropped, not kept to fail again


def test_a_write_the_database_refuses_does_not_fail_the_request(client, monkeypatch, caplog):
    """No partition holds 1990: the INSERT itself fails inside the database."""
    from datetime import UTC, datetime

    user = create_user("student")
    monkeypatch.setattr(capture, "utcnow", lambda: datetime(1990, 1, 1, tzinfo=UTC))
    with caplog.at_level(logging.ERROR, logger="portal.platform.analytics.capture"):
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code == 302
        response.close()
    assert "no partition" in caplog.text
    assert events_of(user.id) == []


def test_capture_can_be_turned_off(app, monkeypatch):
    monkeypatch.setitem(app.config, "ANALYTICS_CAPTURE", False)
    user = _student()
    events.enrolled.send(user=user, course=_thing())
    db.session.commit()
    assert events_of(user.id) == []


def test_events_are_private_admins_read_all_and_a_user_only_their_own():
    student, other, faculty, admin = (create_user(role) for role in ("student", "student", "faculty", "admin"))
    for user in (student, other):
        events.enrolled.send(user=user, course=_thing())
    db.session.commit()
    mine = {e.id for e in events_of(student.id)}
    theirs = {e.id for e in events_of(other.id)}
    with as_user(student):
        seen = visible(Event)
        assert mine <= seen and not theirs & seen
    with as_user(faculty):
        assert not (mine | theirs) & visible(Event)
    with as_user(admin):
        assert (mine | theirs) <= visible(Event)


def test_a_request_whose_end_has_not_run_holds_nothing_of_the_work_after_it(app):
    """A request's hold lives on its own app context: one left open (a streamed body not read
    yet) does not keep the events of the work that runs next in the same thread."""
    with app.app_context():
        capture.begin_request(lambda: "left-open")  # its end never runs
    user = _student()
    _to_analytics("lesson_completed", user=user, lesson=_thing(course_id=uuid.uuid4()))
    db.session.commit()
    [row] = events_of(user.id)
    assert row.name == "lesson_completed" and row.session_id is None


def test_after_a_response_in_production_the_events_go_through_a_pool_of_their_own_with_no_identity(app):
    """Outside the test suite a request's session is on the app's engine: the events go through
    the writer's own autocommit pool, from a thread with no app context (the server's, after
    the response), with no actor set (the INSERT policy admits any writer; no RETURNING). The
    rows are committed, as in production, under a user id no other test uses."""
    import threading

    writer = capture._writer(db.engine)
    assert capture._writer(db.engine) is writer  # one per process, made once
    assert writer is not db.engine and writer.pool.size() == 1
    assert writer.url.difference_update_query(["options"]) == db.engine.url.difference_update_query(["options"])
    with writer.connect() as conn:
        assert conn.connection.driver_connection.autocommit is True  # one statement, no BEGIN or COMMIT
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
    user_id = uuid.uuid4()
    capture._to_buffer([capture._row("lesson_completed", user_id, {"course_id": "c-1"})])
    written = []
    thread = threading.Thread(target=lambda: written.append(capture.write_after_response(writer)))
    thread.start()
    thread.join(10)
    assert written == [1]
    [row] = events_of(user_id)  # committed by the writer: seen from the test's transaction
    assert (row.name, row.properties, row.user_id) == ("lesson_completed", {"course_id": "c-1"}, user_id)
