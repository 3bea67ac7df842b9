"""The tutor's pages (blueprints/learning/tutor.py): every route with and without htmx, each
role, CSRF, bad input (kept in its form with a clear message), ids of other students' rows,
markup always escaped, and the links from the course, lesson, menu and staff pages."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.learning.lms.models import ManagementRole
from portal.learning.tutoring import services
from portal.learning.tutoring.models import TutoringSession, TutorQuestion
from tests.factories import PASSWORD, create_user
from tests.learning.factories.assign import add_staff, enroll
from tests.learning.tutoring.factories.chat import (
    VOLCANOES,
    open_attempt,
    record_question,
    student_in,
    tutor_course,
)

HX = {"HX-Request": "true"}
SCRIPT = "<script>alert('owned')</script>"


def committed():
    """Keep what the test made: a refused request rolls its transaction back (in the tests,
    back to the last commit), which would take the test's own rows with it."""
    db.session.commit()


@pytest.fixture
def plants():
    return tutor_course()


@pytest.fixture
def student(plants, login_as):
    user = login_as("student")
    enroll(plants.course, user)
    committed()
    return user


def base(plants) -> str:
    return f"/learning/courses/{plants.course.slug}/tutor"


def question_count(user) -> int:
    return db.session.scalar(select(func.count()).select_from(TutorQuestion).where(TutorQuestion.user_id == user.id))


def session_of(user) -> TutoringSession:
    return db.session.scalars(select(TutoringSession).where(TutoringSession.user_id == user.id)
                              .order_by(TutoringSession.last_activity_at.desc())).first()


def textarea(body: str, form_id: str = "tutor-form-page") -> str:
    found = re.search(rf'<textarea id="{form_id}-question"[^>]*>(.*?)</textarea>', body, re.S)
    assert found, body[:2000]
    return found.group(1)


# ------------------------------------------------------------------ the chat page


class TestChatPage:
    def test_a_new_conversation(self, client, plants, student):
        response = client.get(base(plants))
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "HX-Request" in response.headers.get("Vary", "")
        assert "New conversation" in body and "Hello, I'm Elara." in body
        assert 'for="tutor-form-page-question"' in body and 'name="session_id"' not in body
        assert "No conversations yet" in body

    def test_asking_without_javascript_redirects_to_the_conversation_at_the_answer(self, client, plants, student):
        response = client.post(base(plants) + "/ask", data={"question": "What does chlorophyll do?"})
        session = session_of(student)
        record = db.session.scalar(select(TutorQuestion).where(TutorQuestion.user_id == student.id))
        assert response.status_code == 302
        assert response.headers["Location"] == f"{base(plants)}/sessions/{session.id}#m-{record.reply_message_id}"
        page = client.get(f"{base(plants)}/sessions/{session.id}").get_data(as_text=True)
        lesson = plants.lessons["How Plants Make Food"]
        assert "What does chlorophyll do?" in page and "tutor-bubble-student" in page and "tutor-bubble-tutor" in page
        assert (f'href="/learning/courses/{plants.course.slug}/lessons/{lesson.id}#s-chlorophyll-and-sunlight">'
                f"How Plants Make Food — Chlorophyll and sunlight</a>") in page
        assert 'tutor-kind-answer">Answer<' in page and "Answered by the course text." in page
        assert f'id="mark-{record.id}"' in page and ">Helpful<" in page and ">Not helpful<" in page
        assert f'name="session_id" value="{session.id}"' in page  # the next question goes on here
        assert 'aria-current="page">What does chlorophyll do?</a>' in page  # listed beside, as current

    def test_the_first_question_with_htmx_swaps_in_the_new_conversation(self, client, plants, student):
        response = client.post(base(plants) + "/ask", data={"question": "What does chlorophyll do?"}, headers=HX)
        body = response.get_data(as_text=True)
        session = session_of(student)
        assert response.status_code == 200 and "<html" not in body
        assert response.headers["HX-Retarget"] == "#tutor-conversation"
        assert response.headers["HX-Reswap"] == "outerHTML"
        assert response.headers["HX-Push-Url"] == f"{base(plants)}/sessions/{session.id}"
        assert body.count('class="tutor-bubble ') == 2 and 'id="tutor-conversation"' in body
        # The log is a live region of messages (articles), not a list with a role that breaks it.
        assert '<div id="tutor-messages" class="tutor-messages" role="log"' in body
        assert '<article id="m-' in body and "<li id=\"m-" not in body
        assert 'id="tutor-sessions" class="tutor-sessions" aria-labelledby="tutor-sessions-head" hx-swap-oob="true"' \
            in body
        assert f'name="session_id" value="{session.id}"' in body and textarea(body) == ""

    def test_a_next_question_with_htmx_appends_two_bubbles(self, client, plants, student):
        client.post(base(plants) + "/ask", data={"question": "What does chlorophyll do?"}, headers=HX)
        session = session_of(student)
        response = client.post(base(plants) + "/ask", headers=HX,
                               data={"question": "How do stems carry water?", "session_id": str(session.id)})
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "HX-Retarget" not in response.headers
        assert body.lstrip().startswith('<article id="m-') and body.count('class="tutor-bubble ') == 2
        assert "How do stems carry water?" in body and "Roots and Stems — How stems carry water" in body
        assert 'id="tutor-form-page" class="tutor-form"' in body and 'hx-swap-oob="true"' in body
        assert textarea(body) == "" and f'value="{session.id}"' in body
        db.session.refresh(session)
        assert session.message_count == 4

    def test_older_conversations_are_paged(self, client, plants, student):
        for i in range(18):
            record_question(student, plants.course, f"Old question {i}?", at=utcnow() - timedelta(hours=40 - i))
        committed()
        page = client.get(base(plants)).get_data(as_text=True)
        assert page.count("Old question") == 15
        older = re.search(r'href="([^"]+\?older=[^"]+)">Older conversations', page).group(1)
        rest = client.get(older).get_data(as_text=True)
        assert rest.count("Old question") == 3 and "Old question 0?" in rest and "Latest conversations" in rest

    def test_a_student_not_enrolled_is_refused_and_unknown_courses_are_404(self, client, plants, login_as):
        login_as("student")
        response = client.get(base(plants))
        assert response.status_code == 403 and "enrolled" in response.get_data(as_text=True)
        assert plants.course.title not in response.get_data(as_text=True)
        refused = client.post(base(plants) + "/ask", data={"question": "What does chlorophyll do?"}, headers=HX)
        assert refused.status_code == 403 and "<html" not in refused.get_data(as_text=True)
        assert client.get("/learning/courses/no-such-course/tutor").status_code == 404

    @pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
    def test_staff_roles_do_not_chat(self, client, plants, login_as, role):
        login_as(role)
        assert client.get(base(plants)).status_code == 403
        assert client.post(base(plants) + "/ask", data={"question": "Hi?"}).status_code == 403
        assert client.get("/learning/tutor/history").status_code == 403

    def test_anonymous_visitors_are_sent_to_log_in(self, client, plants):
        assert client.get(base(plants)).headers["Location"].startswith("/auth/login")
        assert client.post(base(plants) + "/ask", data={"question": "Hi?"}, headers=HX).status_code == 401


# ------------------------------------------------------------------ bad input


class TestRefusedQuestions:
    @pytest.mark.parametrize("question", ["", "   \n  ", "\x01\x02"])
    def test_an_empty_question_comes_back_with_a_message(self, client, plants, student, question):
        response = client.post(base(plants) + "/ask", data={"question": question}, headers=HX)
        body = response.get_data(as_text=True)
        assert response.status_code == 422
        assert response.headers["HX-Retarget"] == "#tutor-form-page" and response.headers["HX-Reswap"] == "outerHTML"
        assert "the box is empty" in body and 'aria-invalid="true"' in body and "<html" not in body
        assert question_count(student) == 0

    def test_a_huge_question_is_kept_in_the_form_with_and_without_htmx(self, client, plants, student):
        typed = ("Why is chlorophyll green? " * 60) + SCRIPT
        for headers in ({}, HX):
            response = client.post(base(plants) + "/ask", data={"question": typed}, headers=headers)
            body = response.get_data(as_text=True)
            assert response.status_code == 422, body
            assert f"{len(typed.strip()):,} characters long" in body and "at most 1,000" in body
            kept = textarea(body)
            assert kept.startswith("Why is chlorophyll green?") and "&lt;script&gt;" in kept
            assert SCRIPT not in body
            assert ("<html" in body) == (not headers)
        assert question_count(student) == 0

    def test_an_absurdly_large_post_never_fails(self, client, plants, student):
        response = client.post(base(plants) + "/ask", data={"question": "x" * 300_000})
        assert response.status_code == 422
        assert len(textarea(response.get_data(as_text=True))) == services.MAX_KEPT_CHARS

    def test_the_panel_form_is_refused_in_place(self, client, plants, student):
        lesson = plants.lessons["Roots and Stems"]
        response = client.post(base(plants) + "/ask", headers=HX,
                               data={"question": " ", "place": "panel", "lesson_id": str(lesson.id)})
        body = response.get_data(as_text=True)
        assert response.status_code == 422 and response.headers["HX-Retarget"] == "#tutor-form-panel"
        assert f'name="lesson_id" value="{lesson.id}"' in body and 'name="place" value="panel"' in body

    def test_markup_is_always_shown_escaped(self, client, plants, student):
        question = f"{SCRIPT} what does chlorophyll do?"
        fragment = client.post(base(plants) + "/ask", data={"question": question}, headers=HX).get_data(as_text=True)
        session = session_of(student)
        page = client.get(f"{base(plants)}/sessions/{session.id}").get_data(as_text=True)
        history = client.get("/learning/tutor/history").get_data(as_text=True)
        panel = client.get(f"{base(plants)}/panel", headers=HX).get_data(as_text=True)
        for body in (fragment, page, history, panel):
            assert SCRIPT not in body and "<script>alert" not in body
            assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in body
        assert db.session.scalar(select(TutorQuestion.question).where(TutorQuestion.user_id == student.id)) == question

    def test_closed_during_a_quiz_attempt(self, client, plants, student):
        attempt = open_attempt(plants.course, student, deadline=utcnow() + timedelta(minutes=15), title="Leaves quiz")
        committed()
        page = client.get(base(plants)).get_data(as_text=True)
        assert "Elara is closed while your attempt at the quiz “Leaves quiz” is open" in page
        assert f'href="/learning/attempts/{attempt.id}">Back to your attempt' in page
        assert re.search(r'<textarea id="tutor-form-page-question"[^>]*disabled', page)
        for headers in (HX, {}):
            response = client.post(base(plants) + "/ask", data={"question": "What is chlorophyll?"}, headers=headers)
            body = response.get_data(as_text=True)
            assert response.status_code == 409
            assert "“Leaves quiz”" in body and "Your question was not sent" in body
            assert textarea(body) == "What is chlorophyll?"
        panel = client.get(f"{base(plants)}/panel", headers=HX).get_data(as_text=True)
        assert "Elara is closed" in panel
        assert question_count(student) == 0


# ------------------------------------------------------------------ other students' rows


class TestGuessedIds:
    @pytest.fixture
    def theirs(self, plants):
        classmate = student_in(plants.course)
        row = record_question(classmate, plants.course, "A classmate's question?")
        committed()
        return row

    def test_another_students_conversation_is_not_found(self, client, plants, student, theirs):
        response = client.get(f"{base(plants)}/sessions/{theirs.session_id}")
        assert response.status_code == 404 and "A classmate's question?" not in response.get_data(as_text=True)
        assert client.get(f"{base(plants)}/sessions/{uuid.uuid4()}").status_code == 404
        assert client.post(f"{base(plants)}/sessions/{theirs.session_id}/end").status_code == 404
        assert client.post(f"{base(plants)}/sessions/{theirs.session_id}/end", headers=HX).status_code == 404
        assert db.session.get(TutoringSession, theirs.session_id).ended_at is None

    def test_asking_in_another_students_conversation(self, client, plants, student, theirs):
        data = {"question": "Let me in?", "session_id": str(theirs.session_id)}
        plain = client.post(base(plants) + "/ask", data=data)
        assert plain.status_code == 404
        fragment = client.post(base(plants) + "/ask", data=data, headers=HX)
        body = fragment.get_data(as_text=True)
        assert fragment.status_code == 404 and fragment.headers["HX-Retarget"] == "#tutor-form-page"
        assert "There is no such conversation" in body and textarea(body) == "Let me in?"
        assert question_count(student) == 0
        for bad in ("not-a-uuid", "1 OR 1=1"):
            assert client.post(base(plants) + "/ask", data={**data, "session_id": bad}).status_code == 404

    def test_my_conversation_under_another_course_is_not_found(self, client, plants, student):
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        enroll(volcanoes.course, student)
        mine = record_question(student, plants.course, "Mine?")
        committed()
        assert client.get(f"/learning/courses/{volcanoes.course.slug}/tutor/sessions/{mine.session_id}"
                          ).status_code == 404

    def test_another_students_question_cannot_be_marked(self, client, plants, student, theirs):
        for headers in ({}, HX):
            assert client.post(f"/learning/tutor/questions/{theirs.id}/mark", data={"helpful": "1"},
                               headers=headers).status_code == 404
        db.session.refresh(theirs)
        assert theirs.helpful is None


# ------------------------------------------------------------------ marking, ending, the panel


class TestMarking:
    def test_with_htmx_the_buttons_swap(self, client, plants, student):
        record = record_question(student, plants.course, "What is chlorophyll?")
        url = f"/learning/tutor/questions/{record.id}/mark"
        committed()
        response = client.post(url, data={"helpful": "1", "next": "/learning/tutor/history"}, headers=HX)
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and body.lstrip().startswith(f'<div class="tutor-mark" id="mark-{record.id}"')
        assert re.search(r'value="1" class="small-button"\s+aria-pressed="true">Helpful', body)
        assert "Thanks: marked helpful." in body
        again = client.post(url, data={"helpful": "1"}, headers=HX)  # a double submit
        assert again.status_code == 200
        changed = client.post(url, data={"helpful": "0"}, headers=HX).get_data(as_text=True)
        assert re.search(r'value="0" class="small-button"\s+aria-pressed="true">Not helpful', changed)
        db.session.refresh(record)
        assert record.helpful is False

    def test_without_javascript_back_where_it_came_from(self, client, plants, student):
        record = record_question(student, plants.course, "What is chlorophyll?")
        url = f"/learning/tutor/questions/{record.id}/mark"
        here = f"{base(plants)}/sessions/{record.session_id}#m-{record.reply_message_id}"
        committed()
        assert client.post(url, data={"helpful": "1", "next": here}).headers["Location"] == here
        for evil in ("//evil.example/x", "https://evil.example/", "/\tevil"):
            assert client.post(url, data={"helpful": "0", "next": evil}).headers["Location"] == "/learning/tutor/history"

    @pytest.mark.parametrize("value", ["", "yes", "2"])
    def test_a_mark_must_be_helpful_or_not(self, client, plants, student, value):
        record = record_question(student, plants.course, "What is chlorophyll?")
        committed()
        response = client.post(f"/learning/tutor/questions/{record.id}/mark", data={"helpful": value}, headers=HX)
        assert response.status_code == 422 and "Helpful" in response.get_data(as_text=True)
        db.session.refresh(record)
        assert record.helpful is None


class TestEnding:
    def test_with_and_without_htmx(self, client, plants, student):
        first = record_question(student, plants.course, "First?")
        second = record_question(student, plants.course, "Second?")
        committed()
        response = client.post(f"{base(plants)}/sessions/{first.session_id}/end", headers=HX)
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and body.lstrip().startswith('<section id="tutor-conversation"')
        assert "Conversation ended." in body and "This conversation has ended." in body
        assert "End conversation" not in body and 'hx-swap-oob="true"' in body
        plain = client.post(f"{base(plants)}/sessions/{second.session_id}/end")
        assert plain.status_code == 302 and plain.headers["Location"].endswith(str(second.session_id))
        page = client.get(plain.headers["Location"]).get_data(as_text=True)
        assert "Conversation ended. You can read it here" in page and "Continued: Second?" in page

    def test_asking_in_an_ended_conversation_starts_a_continued_one(self, client, plants, student):
        old = record_question(student, plants.course, "What is chlorophyll?")
        services.end_session(student, old.session_id)
        committed()
        response = client.post(base(plants) + "/ask", headers=HX,
                               data={"question": "And the stomata?", "session_id": str(old.session_id)})
        body = response.get_data(as_text=True)
        new = session_of(student)
        assert new.id != old.session_id and new.title == "Continued: What is chlorophyll?"
        assert response.headers["HX-Push-Url"].endswith(str(new.id))
        assert "“What is chlorophyll?” had ended, so this is a new conversation." in body


class TestLessonPanel:
    def test_the_lesson_page_carries_a_panel_that_loads_itself(self, client, plants, student):
        lesson = plants.lessons["Roots and Stems"]
        page = client.get(f"/learning/courses/{plants.course.slug}/lessons/{lesson.id}").get_data(as_text=True)
        assert 'id="tutor-panel"' in page and "Ask Elara" in page
        assert f'hx-get="{base(plants)}/panel?lesson_id={lesson.id}" hx-trigger="load"' in page
        assert f'name="lesson_id" value="{lesson.id}"' in page and 'name="place" value="panel"' in page
        assert f'action="{base(plants)}/ask"' in page  # works as a plain form without JavaScript

    def test_a_staff_preview_has_no_panel(self, client, plants, login_as):
        teacher = login_as("faculty")
        add_staff(plants.course, teacher, ManagementRole.OWNER)
        lesson = plants.lessons["Roots and Stems"]
        committed()
        page = client.get(f"/learning/courses/{plants.course.slug}/lessons/{lesson.id}").get_data(as_text=True)
        assert "Preview" in page and 'id="tutor-panel"' not in page

    def test_the_panel_shows_the_conversation_going_on(self, client, plants, student):
        lesson = plants.lessons["Roots and Stems"]
        empty = client.get(f"{base(plants)}/panel?lesson_id={lesson.id}", headers=HX).get_data(as_text=True)
        assert "tutor-bubble" not in empty and "Your conversations with Elara" in empty and "<html" not in empty
        asked = client.post(base(plants) + "/ask", headers=HX, data={
            "question": "How do stems carry water?", "place": "panel", "lesson_id": str(lesson.id)})
        body = asked.get_data(as_text=True)
        session = session_of(student)
        assert asked.status_code == 200 and "HX-Retarget" not in asked.headers
        assert body.count('class="tutor-bubble ') == 2
        assert 'id="tutor-form-panel"' in body and f'value="{session.id}"' in body
        assert 'id="tutor-panel-links"' in body and "Open the whole conversation" in body
        assert session.lesson_id == lesson.id
        panel = client.get(f"{base(plants)}/panel?lesson_id={lesson.id}", headers=HX).get_data(as_text=True)
        assert panel.count('class="tutor-bubble ') == 2 and f'name="session_id" value="{session.id}"' in panel

    def test_without_htmx_the_panel_address_goes_to_the_chat(self, client, plants, student):
        response = client.get(f"{base(plants)}/panel")
        assert response.status_code == 302 and response.headers["Location"] == base(plants)
        assert client.get(f"{base(plants)}/panel?lesson_id=nope", headers=HX).status_code == 404


# ------------------------------------------------------------------ history


class TestHistoryPage:
    def test_search_with_and_without_htmx(self, client, plants, student):
        record_question(student, plants.course, "What does chlorophyll do?", helpful=True)
        record_question(student, plants.course, "Who won the cup?", kind="not_found")
        committed()
        page = client.get("/learning/tutor/history")
        body = page.get_data(as_text=True)
        assert page.status_code == 200 and "What does chlorophyll do?" in body and "Who won the cup?" in body
        assert f'<option value="{plants.course.id}"' in body and 'tutor-kind-not_found">Not found<' in body
        fragment = client.get("/learning/tutor/history", query_string={"q": "chloro"}, headers=HX)
        text = fragment.get_data(as_text=True)
        assert fragment.status_code == 200 and "<html" not in text and 'id="history-course"' not in text
        assert "What does chlorophyll do?" in text and "Who won the cup?" not in text
        unanswered = client.get("/learning/tutor/history", query_string={"show": "unanswered"}).get_data(as_text=True)
        assert "Who won the cup?" in unanswered and "What does chlorophyll do?" not in unanswered

    def test_empty_and_nothing_found(self, client, plants, student):
        assert "You have not asked Elara anything yet" in client.get("/learning/tutor/history").get_data(as_text=True)
        record_question(student, plants.course, "What does chlorophyll do?")
        committed()
        body = client.get("/learning/tutor/history", query_string={"q": "zebra"}).get_data(as_text=True)
        assert "No question matches." in body

    def test_only_ones_own_questions(self, client, plants, student):
        record_question(student_in(plants.course), plants.course, "A classmate asked this?")
        committed()
        assert "A classmate asked this?" not in client.get("/learning/tutor/history").get_data(as_text=True)


# ------------------------------------------------------------------ the course report


class TestReportPage:
    @pytest.fixture
    def asked(self, plants):
        people = [student_in(plants.course, full_name=name) for name in ("Zora Kimani", "Yusuf Bello")]
        topic = plants.modules["Plant biology"]
        record_question(people[0], plants.course, "What is chlorophyll?", topic=topic, helpful=True)
        record_question(people[1], plants.course, "what is chlorophyll", topic=topic)
        record_question(people[1], plants.course, "Who won the cup?", kind="not_found")
        return people

    def test_the_courses_staff_see_where_the_course_should_improve(self, client, plants, login_as, asked):
        teacher = login_as("faculty")
        add_staff(plants.course, teacher, ManagementRole.ASSISTANT)
        committed()
        response = client.get(base(plants) + "/report")
        body = response.get_data(as_text=True)
        assert response.status_code == 200
        assert 'aria-current="page">Tutor questions</a>' in body
        assert "<strong>3</strong> questions" in body and "<strong>2</strong> students asking" in body
        assert re.search(r"what is chlorophyll</td><td class=\"num\">2</td>", body)
        assert "Plant biology" in body and "Who won the cup?" in body
        for person in asked:
            assert person.full_name not in body and person.email not in body
        fragment = client.get(base(plants) + "/report", query_string={"period": "all"}, headers=HX)
        text = fragment.get_data(as_text=True)
        assert fragment.status_code == 200 and text.lstrip().startswith('<div id="tutor-report"') and "<html" not in text

    def test_admins_see_it_and_other_faculty_do_not(self, client, plants, login_as, asked):
        login_as("admin")
        assert client.get(base(plants) + "/report").status_code == 200

    def test_faculty_of_other_courses_get_a_404(self, client, plants, login_as, asked):
        login_as("faculty")
        assert client.get(base(plants) + "/report").status_code == 404

    def test_students_cannot_open_it(self, client, plants, student):
        response = client.get(base(plants) + "/report")
        assert response.status_code == 403

    def test_the_tab_on_every_staff_page(self, client, plants, login_as):
        teacher = login_as("faculty")
        add_staff(plants.course, teacher, ManagementRole.OWNER)
        committed()
        page = client.get(f"/learning/manage/{plants.course.id}").get_data(as_text=True)
        assert f'href="{base(plants)}/report"' in page and ">Tutor questions</a>" in page


# ------------------------------------------------------------------ links


def test_links_to_the_tutor(client, plants, student):
    course_page = client.get(f"/learning/courses/{plants.course.slug}").get_data(as_text=True)
    assert f'href="{base(plants)}">Tutor: ask Elara</a>' in course_page
    assert 'href="/learning/tutor/history">Tutor history</a>' in course_page  # the student menu


def test_staff_menus_have_no_tutor_history(client, login_as):
    login_as("faculty")
    assert "Tutor history" not in client.get("/dashboard").get_data(as_text=True)


# ------------------------------------------------------------------ CSRF, as in production


def test_every_post_needs_the_csrf_token(client, plants):
    student = create_user("student")
    enroll(plants.course, student)
    committed()
    client.post("/auth/login", data={"email": student.email, "password": PASSWORD})
    page = client.get(base(plants)).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    header = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    assert client.post(base(plants) + "/ask", data={"question": "What is chlorophyll?"}, csrf=False).status_code == 400
    assert client.post(base(plants) + "/ask", data={"question": "What is chlorophyll?"}, headers=HX,
                       csrf=False).status_code == 400
    assert question_count(student) == 0
    assert client.post(base(plants) + "/ask", data={"question": "What is chlorophyll?", "csrf_token": token},
                       csrf=False).status_code == 302
    record = db.session.scalar(select(TutorQuestion).where(TutorQuestion.user_id == student.id))
    mark_url = f"/learning/tutor/questions/{record.id}/mark"
    assert client.post(mark_url, data={"helpful": "1"}, headers=HX, csrf=False).status_code == 400
    assert client.post(mark_url, data={"helpful": "1"}, headers={**HX, "X-CSRFToken": header}).status_code == 200
    end_url = f"{base(plants)}/sessions/{record.session_id}/end"
    assert client.post(end_url, csrf=False).status_code == 400
    assert client.post(end_url, data={"csrf_token": token}, csrf=False).status_code == 302
