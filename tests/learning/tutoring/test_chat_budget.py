"""Statement budgets of the tutor's pages: the chat page with many conversations and a long
one, the lesson panel, the history with many questions and the course report stay within 12
statements, and do not grow with the rows behind them. The lesson page spends nothing on its
panel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.db import db
from portal.learning.lms.models import ManagementRole
from portal.learning.tutoring.models import TutoringSession
from tests.learning.factories.assign import add_staff, enroll
from tests.learning.tutoring.factories.chat import record_question, tutor_course

BUDGET = 12
HX = {"HX-Request": "true"}


@pytest.fixture
def plants():
    return tutor_course()


def asked(student, course, count: int, *, one_session: bool = False, topic=None) -> None:
    """``count`` questions: each in its own conversation, or all in one."""
    start = datetime.now(UTC) - timedelta(hours=count)
    session = None
    for i in range(count):
        row = record_question(student, course, f"Question {i} about chlorophyll?", topic=topic,
                              kind="answer" if i % 3 else "not_found", helpful=(i % 2 == 0) if i % 5 else None,
                              at=start + timedelta(minutes=i), session=session)
        if one_session and session is None:
            session = db.session.get(TutoringSession, row.session_id)


def measure(client, statements, url: str, headers=None) -> tuple[int, list[str]]:
    client.get(url, headers=headers)  # warm
    # Twice, the fewer kept: the session's once-a-minute "last seen" touch may fall in either
    # request (its minute runs from the test transaction's start), and is not the page's.
    measured = []
    for _ in range(2):
        with statements() as counted:
            response = client.get(url, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        measured.append((counted.count, counted.statements))
    return min(measured, key=lambda m: m[0])


def test_chat_page_with_many_conversations_and_a_long_one(client, login_as, statements, plants):
    student = login_as("student")
    enroll(plants.course, student)
    asked(student, plants.course, 2)
    first = db.session.query(TutoringSession).filter_by(user_id=student.id).first()
    base = f"/learning/courses/{plants.course.slug}/tutor"
    small = {url: measure(client, statements, url)[0] for url in (base, f"{base}/sessions/{first.id}")}
    asked(student, plants.course, 60)
    asked(student, plants.course, 80, one_session=True)
    long_one = db.session.query(TutoringSession).filter_by(user_id=student.id).order_by(
        TutoringSession.message_count.desc()).first()
    assert long_one.message_count == 160
    for url in (base, f"{base}/sessions/{first.id}", f"{base}/sessions/{long_one.id}"):
        count, sent = measure(client, statements, url)
        assert count <= BUDGET, sent
        assert count == small.get(url, small[f"{base}/sessions/{first.id}"]), sent


def test_lesson_panel_within_budget(client, login_as, statements, plants):
    student = login_as("student")
    enroll(plants.course, student)
    asked(student, plants.course, 50, one_session=True)
    db.session.query(TutoringSession).filter_by(user_id=student.id).update(
        {"last_activity_at": datetime.now(UTC)})  # still going
    lesson = plants.lessons["Roots and Stems"]
    url = f"/learning/courses/{plants.course.slug}/tutor/panel?lesson_id={lesson.id}"
    count, sent = measure(client, statements, url, HX)
    assert count <= BUDGET, sent
    response = client.get(url, headers=HX)
    assert response.get_data(as_text=True).count('class="tutor-bubble ') == 6


def test_the_lesson_page_spends_nothing_on_its_panel(client, login_as, statements, plants):
    student = login_as("student")
    enroll(plants.course, student)
    lesson = plants.lessons["Roots and Stems"]
    url = f"/learning/courses/{plants.course.slug}/lessons/{lesson.id}"
    before, _ = measure(client, statements, url)
    asked(student, plants.course, 30, one_session=True)
    after, sent = measure(client, statements, url)
    assert after == before <= BUDGET, sent


def test_history_with_many_questions(client, login_as, statements, plants):
    student = login_as("student")
    enroll(plants.course, student)
    asked(student, plants.course, 5)
    queries = [{}, {"q": "chlorophyll"}, {"q": "chloro"}, {"show": "unanswered"}, {"course": str(plants.course.id)}]
    small = [measure(client, statements, "/learning/tutor/history?" + "&".join(f"{k}={v}" for k, v in q.items()))[0]
             for q in queries]
    asked(student, plants.course, 300)
    for query, before in zip(queries, small, strict=True):
        url = "/learning/tutor/history?" + "&".join(f"{k}={v}" for k, v in query.items())
        count, sent = measure(client, statements, url)
        assert count <= BUDGET and count == before, sent
        count, sent = measure(client, statements, url, HX)
        assert count <= BUDGET, sent


def test_course_report_with_many_questions(client, login_as, statements, plants):
    teacher = login_as("faculty")
    add_staff(plants.course, teacher, ManagementRole.INSTRUCTOR)
    students = []
    for _ in range(3):
        from tests.factories import create_user

        student = create_user("student")
        enroll(plants.course, student)
        students.append(student)
    url = f"/learning/courses/{plants.course.slug}/tutor/report?period=all"
    asked(students[0], plants.course, 3, topic=plants.modules["Plant biology"])
    before, _ = measure(client, statements, url)
    for student in students:
        asked(student, plants.course, 120, topic=plants.modules["Plant biology"])
    count, sent = measure(client, statements, url)
    assert count <= BUDGET and count == before, sent
    count, sent = measure(client, statements, url, HX)
    assert count <= BUDGET, sent
