"""The tutor's conversation rules (portal/learning/tutoring/services.py): what a question may
be, who may ask, the tutor closed during a quiz attempt, conversations started, continued and
ended, the idle sweep, the Q&A rows, marks, and an engine that fails."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.errors import Forbidden, NotFound
from portal.learning.assessment.models import AttemptStatus
from portal.learning.education.models import EnrollmentStatus
from portal.learning.tutoring import answers, services, tasks
from portal.learning.tutoring.models import (
    Message,
    MessageRole,
    ReplyKind,
    ReplySource,
    TutoringSession,
    TutorQuestion,
)
from tests.factories import create_user
from tests.learning.tutoring.factories.chat import (
    VOLCANOES,
    open_attempt,
    student_in,
    tutor_course,
    unpublish,
)


@pytest.fixture
def plants():
    return tutor_course()


@pytest.fixture
def student(plants):
    return student_in(plants.course)


def messages_of(session) -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.session_id == session.id)
                                   .order_by(Message.created_at)))


def questions_of(user) -> list[TutorQuestion]:
    return list(db.session.scalars(select(TutorQuestion).where(TutorQuestion.user_id == user.id)
                                   .order_by(TutorQuestion.created_at)))


def refreshed(row):
    db.session.refresh(row)
    return row


# ------------------------------------------------------------------ the question itself


class TestQuestionText:
    def test_trimmed_and_control_characters_removed_line_breaks_kept(self):
        raw = "  What\x00 is\x07 chloro\u202ephyll?\r\n\r\n\r\n\r\nAnd\tthe stomata?\x1b[31m  "
        assert services.clean_question(raw) == "What is chlorophyll?\n\nAnd the stomata?[31m"

    @pytest.mark.parametrize("raw", ["", "   ", "\n\t\r\n", "\x00\x01", None])
    def test_empty_is_refused_with_a_clear_message(self, raw):
        with pytest.raises(services.TutorError) as refused:
            services.clean_question(raw)
        assert refused.value.message == "Write your question first: the box is empty."
        assert refused.value.field == "question" and refused.value.status_code == 422

    def test_at_most_1000_characters(self):
        assert len(services.clean_question("a" * 1000)) == 1000
        with pytest.raises(services.TutorError) as refused:
            services.clean_question("a" * 1001)
        assert "1,001 characters" in refused.value.message and "at most 1,000" in refused.value.message

    def test_a_question_without_any_word_is_refused(self):
        with pytest.raises(services.TutorError, match="no letters or numbers"):
            services.clean_question("?!? ... ---")

    def test_markup_is_kept_as_typed(self):
        assert services.clean_question("<script>alert('x')</script> why?") == "<script>alert('x')</script> why?"

    def test_normalised_words_count_repeats(self):
        assert services.normalise("What's   CHLOROPHYLL, really?!") == "what s chlorophyll really"
        assert services.normalise("what's chlorophyll really") == services.normalise("What's Chlorophyll... Really")


# ------------------------------------------------------------------ asking


class TestAsking:
    def test_an_answer_is_stored_with_its_citations_topic_and_history_row(self, plants, student):
        exchange = services.ask(student, plants.course, "  What does chlorophyll do?  ")
        session = refreshed(exchange.session)
        assert exchange.started and not exchange.repeated and exchange.continued_from is None
        assert (session.user_id, session.course_id, session.title) == (student.id, plants.course.id,
                                                                        "What does chlorophyll do?")
        assert session.message_count == 2 and session.ended_at is None
        asked, reply = messages_of(session)
        assert (asked.role, asked.body, asked.kind) == (MessageRole.STUDENT, "What does chlorophyll do?", None)
        assert (reply.role, reply.kind, reply.source) == (MessageRole.TUTOR, ReplyKind.ANSWER, ReplySource.RETRIEVAL)
        assert "Chlorophyll" in reply.body and reply.created_at > asked.created_at
        lesson = plants.lessons["How Plants Make Food"]
        assert reply.citations[0]["lesson_id"] == str(lesson.id)
        assert reply.citations[0]["anchor"] == "s-chlorophyll-and-sunlight"
        assert session.last_activity_at == reply.created_at
        (record,) = questions_of(student)
        assert (record.question, record.normalized, record.reply_kind, record.answered, record.helpful) == (
            "What does chlorophyll do?", "what does chlorophyll do", ReplyKind.ANSWER, True, None)
        assert record.topic_module_id == plants.modules["Plant biology"].id
        assert (record.session_id, record.question_message_id, record.reply_message_id) == (
            session.id, asked.id, reply.id)

    def test_a_question_the_lessons_do_not_cover_is_not_answered(self, plants, student):
        exchange = services.ask(student, plants.course, "Who won the football world cup?")
        assert exchange.reply.kind == ReplyKind.NOT_FOUND and exchange.reply.citations == []
        assert (exchange.record.answered, exchange.record.topic_module_id) == (False, None)

    def test_markup_is_stored_as_typed(self, plants, student):
        exchange = services.ask(student, plants.course, "<script>alert(1)</script> chlorophyll?")
        assert exchange.question.body == "<script>alert(1)</script> chlorophyll?"
        assert exchange.record.question == "<script>alert(1)</script> chlorophyll?"

    def test_the_tutor_only_searches_the_course_asked_about(self, plants, student):
        """Words found only in another course's lesson (one the student is enrolled in too) give
        NOT_FOUND here, and no citation to that course."""
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        from tests.learning.factories.assign import enroll

        enroll(volcanoes.course, student)
        exchange = services.ask(student, plants.course, "What is inside the magma chamber of a volcano?")
        assert exchange.reply.kind == ReplyKind.NOT_FOUND
        assert exchange.reply.citations == []
        there = services.ask(student, volcanoes.course, "What is inside the magma chamber of a volcano?")
        assert there.reply.kind == ReplyKind.ANSWER  # the same words do find it in its own course
        assert {c["lesson_id"] for c in there.reply.citations} == {str(volcanoes.lessons["Inside a Volcano"].id)}

    def test_a_lesson_of_another_course_is_refused(self, plants, student):
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        with pytest.raises(NotFound):
            services.ask(student, plants.course, "What is chlorophyll?",
                         lesson_id=volcanoes.lessons["Inside a Volcano"].id)
        lesson = plants.lessons["Roots and Stems"]
        exchange = services.ask(student, plants.course, "What is chlorophyll?", lesson_id=lesson.id)
        assert exchange.session.lesson_id == lesson.id

    def test_a_long_question_titles_its_conversation_shortened(self, plants, student):
        words = "why does chlorophyll absorb sunlight " * 10
        exchange = services.ask(student, plants.course, words)
        assert len(exchange.session.title) <= services.TITLE_CHARS and exchange.session.title.endswith("…")

    def test_the_same_question_twice_at_once_is_answered_once(self, plants, student):
        first = services.ask(student, plants.course, "What does chlorophyll do?")
        again = services.ask(student, plants.course, "what does chlorophyll do", session_id=first.session.id)
        fresh = services.ask(student, plants.course, "What does chlorophyll do?")  # a double submit, no session
        assert again.repeated and fresh.repeated
        assert again.reply.id == first.reply.id == fresh.reply.id
        assert len(questions_of(student)) == 1 and refreshed(first.session).message_count == 2

    def test_the_same_question_later_is_a_new_question(self, plants, student, clock):
        first = services.ask(student, plants.course, "What does chlorophyll do?")
        clock.advance(seconds=services.REPEAT_SECONDS + 1)
        later = services.ask(student, plants.course, "What does chlorophyll do?", session_id=first.session.id)
        assert not later.repeated and len(questions_of(student)) == 2
        assert refreshed(first.session).message_count == 4


class TestWhoMayAsk:
    @pytest.mark.parametrize("status", [EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED])
    def test_enrolled_students_ask(self, plants, status):
        student = student_in(plants.course, status)
        assert services.ask(student, plants.course, "What is chlorophyll?").reply.kind == ReplyKind.ANSWER

    def test_not_enrolled_or_left_is_refused_without_the_course_content(self, plants):
        stranger = create_user("student")
        gone = student_in(plants.course, EnrollmentStatus.LEFT)
        for user in (stranger, gone):
            with pytest.raises(Forbidden) as refused:
                services.ask(user, plants.course, "What is chlorophyll?")
            assert "enrolled" in refused.value.message
            assert plants.course.title not in refused.value.message and "hlorophyll" not in refused.value.message
        assert db.session.scalar(select(func.count()).select_from(TutoringSession)
                                 .where(TutoringSession.course_id == plants.course.id)) == 0

    @pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
    def test_staff_do_not_ask(self, plants, role):
        with pytest.raises(Forbidden):
            services.ask(create_user(role), plants.course, "What is chlorophyll?")

    def test_a_course_no_longer_published_is_refused(self, plants, student):
        unpublish(plants.course)
        with pytest.raises(Forbidden):
            services.ask(student, plants.course, "What is chlorophyll?")

    def test_validation_comes_before_anything_is_stored(self, plants, student):
        with pytest.raises(services.TutorError):
            services.ask(student, plants.course, " \n ")
        assert questions_of(student) == []


class TestClosedDuringAQuizAttempt:
    def test_an_open_attempt_closes_the_tutor_and_says_until_when(self, plants, student, clock):
        deadline = clock.now + timedelta(minutes=20)
        open_attempt(plants.course, student, deadline=deadline, title="Leaves quiz")
        with pytest.raises(services.TutorClosed) as refused:
            services.ask(student, plants.course, "What is chlorophyll?")
        message = refused.value.message
        assert "“Leaves quiz”" in message and "when you submit it" in message
        assert deadline.strftime("%H:%M UTC on %d %b %Y") in message
        assert refused.value.status_code == 409 and questions_of(student) == []

    def test_an_untimed_attempt_closes_it_until_submitted(self, plants, student):
        open_attempt(plants.course, student, deadline=None)
        with pytest.raises(services.TutorClosed) as refused:
            services.ask(student, plants.course, "What is chlorophyll?")
        assert "It opens again when you submit it." in refused.value.message

    def test_the_tutor_opens_again_when_the_deadline_passes(self, plants, student, clock):
        open_attempt(plants.course, student, deadline=clock.now + timedelta(minutes=1))
        with pytest.raises(services.TutorClosed):
            services.ask(student, plants.course, "What is chlorophyll?")
        clock.advance(minutes=2)  # the attempt is still in progress in the table, but its time is over
        assert services.ask(student, plants.course, "What is chlorophyll?").reply.kind == ReplyKind.ANSWER

    @pytest.mark.parametrize("status", [AttemptStatus.SUBMITTED, AttemptStatus.GRADED])
    def test_a_finished_attempt_does_not_close_it(self, plants, student, status):
        open_attempt(plants.course, student, deadline=None, status=status)
        assert services.open_attempt(student.id, plants.course.id) is None
        services.ask(student, plants.course, "What is chlorophyll?")

    def test_only_the_attempts_own_course_and_student_are_closed(self, plants, student):
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        from tests.learning.factories.assign import enroll

        enroll(volcanoes.course, student)
        classmate = student_in(plants.course)
        open_attempt(volcanoes.course, student, deadline=None)
        services.ask(student, plants.course, "What is chlorophyll?")  # another course's quiz
        open_attempt(plants.course, classmate, deadline=None)
        services.ask(student, plants.course, "What are stomata?")  # a classmate's attempt
        with pytest.raises(services.TutorClosed):
            services.ask(classmate, plants.course, "What are stomata?")

    def test_the_latest_deadline_is_the_one_given(self, plants, student, clock):
        open_attempt(plants.course, student, deadline=clock.now + timedelta(minutes=5), title="Short")
        open_attempt(plants.course, student, deadline=clock.now + timedelta(minutes=50), title="Long")
        assert services.open_attempt(student.id, plants.course.id).quiz_title == "Long"


# ------------------------------------------------------------------ conversations


class TestConversations:
    def test_a_second_question_goes_into_the_same_conversation(self, plants, student):
        first = services.ask(student, plants.course, "What is chlorophyll?")
        second = services.ask(student, plants.course, "What do roots do?", session_id=first.session.id)
        assert second.session.id == first.session.id and not second.started
        assert refreshed(first.session).message_count == 4
        assert [m.role for m in messages_of(first.session)] == [MessageRole.STUDENT, MessageRole.TUTOR] * 2
        assert refreshed(first.session).title == "What is chlorophyll?"  # the first question names it

    def test_someone_elses_or_another_courses_conversation_is_not_found(self, plants, student):
        classmate = student_in(plants.course)
        theirs = services.ask(classmate, plants.course, "What is chlorophyll?").session
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        from tests.learning.factories.assign import enroll

        enroll(volcanoes.course, student)
        elsewhere = services.ask(student, volcanoes.course, "What is basalt?").session
        for session_id in (theirs.id, elsewhere.id, uuid.uuid4()):
            with pytest.raises(NotFound):
                services.ask(student, plants.course, "What is chlorophyll?", session_id=session_id)
        assert refreshed(theirs).message_count == 2

    def test_an_ended_conversation_is_continued_in_a_new_one(self, plants, student, clock):
        first = services.ask(student, plants.course, "What is chlorophyll?",
                             lesson_id=plants.lessons["How Plants Make Food"].id)
        clock.advance(minutes=3)
        ended = services.end_session(student, first.session.id)
        clock.advance(minutes=1)
        later = services.ask(student, plants.course, "What do roots do?", session_id=ended.id)
        assert later.started and later.continued_from.id == ended.id and later.session.id != ended.id
        assert later.session.title == "Continued: What is chlorophyll?"
        assert later.session.lesson_id == plants.lessons["How Plants Make Food"].id
        assert refreshed(ended).message_count == 2  # the ended one is left as it was
        again = services.end_session(student, later.session.id)
        clock.advance(minutes=1)
        third = services.ask(student, plants.course, "What are stomata?", session_id=again.id)
        assert third.session.title == "Continued: What is chlorophyll?"  # not "Continued: Continued: ..."

    def test_an_idle_conversation_is_ended_at_its_last_message_and_continued(self, plants, student, clock):
        first = services.ask(student, plants.course, "What is chlorophyll?")
        last_message = refreshed(first.session).last_activity_at
        clock.advance(minutes=services.idle_minutes() + 1)
        later = services.ask(student, plants.course, "What do roots do?", session_id=first.session.id)
        old = refreshed(first.session)
        assert later.continued_from.id == old.id and old.ended_at == last_message
        assert old.duration_seconds == int((last_message - old.started_at).total_seconds())

    def test_ending_sets_the_end_and_duration_once(self, plants, student, clock):
        session = services.ask(student, plants.course, "What is chlorophyll?").session
        clock.advance(minutes=7)
        ended = services.end_session(student, session.id)
        assert ended.ended_at == clock.now
        assert ended.duration_seconds == int((clock.now - ended.started_at).total_seconds()) >= 7 * 60
        clock.advance(minutes=5)
        assert services.end_session(student, session.id).ended_at == ended.ended_at  # a double submit

    def test_only_the_owner_ends_a_conversation(self, plants, student):
        session = services.ask(student, plants.course, "What is chlorophyll?").session
        with pytest.raises(NotFound):
            services.end_session(student_in(plants.course), session.id)
        assert refreshed(session).ended_at is None


class TestIdleSweep:
    def test_idle_conversations_end_at_their_last_message(self, plants, student, clock, app, monkeypatch):
        monkeypatch.setitem(app.config, "TUTOR_SESSION_IDLE_MINUTES", 10)
        idle = services.ask(student, plants.course, "What is chlorophyll?").session
        idle_last = refreshed(idle).last_activity_at
        clock.advance(minutes=6)
        fresh = services.ask(student_in(plants.course), plants.course, "What are stomata?").session
        done = services.ask(student_in(plants.course), plants.course, "What do roots do?").session
        services.end_session(db.session.get(type(student), done.user_id), done.id)
        done_at = refreshed(done).ended_at
        clock.advance(minutes=5)  # idle: 11 minutes without a message; fresh: 5
        assert services.end_idle_sessions() >= 1  # (rows committed by browser journeys may be idle too)
        idle, fresh, done = refreshed(idle), refreshed(fresh), refreshed(done)
        assert idle.ended_at == idle_last
        assert idle.duration_seconds == int((idle_last - idle.started_at).total_seconds())
        assert fresh.ended_at is None and done.ended_at == done_at
        assert services.end_idle_sessions() == 0  # nothing twice

    def test_the_periodic_job_runs_the_sweep(self, plants, student, clock):
        from portal.platform import jobs

        name = "portal.learning.tutoring.tasks.end_idle_tutoring_sessions"
        assert name in jobs.job_app.tasks and "portal.learning.tutoring.tasks" in jobs.job_app.import_paths
        assert any(p.task.name == name for p in jobs.job_app.periodic_registry.periodic_tasks.values())
        session = services.ask(student, plants.course, "What is chlorophyll?").session
        clock.advance(minutes=services.idle_minutes() + 1)
        assert tasks.end_idle_tutoring_sessions(0) >= 1  # as the worker runs it, as system:worker
        assert refreshed(session).ended_at is not None


# ------------------------------------------------------------------ marks


class TestMarks:
    def test_the_student_marks_changes_and_double_submits(self, plants, student, clock):
        record = services.ask(student, plants.course, "What is chlorophyll?").record
        marked = services.mark(student, record.id, True)
        first_time = marked.marked_at
        assert (marked.helpful, first_time) == (True, clock.now)
        clock.advance(seconds=5)
        assert services.mark(student, record.id, True).marked_at == first_time  # the same again: no change
        changed = services.mark(student, record.id, False)
        assert (changed.helpful, changed.marked_at) == (False, clock.now)

    def test_only_ones_own_questions(self, plants, student):
        record = services.ask(student, plants.course, "What is chlorophyll?").record
        for other in (student_in(plants.course), create_user("faculty"), create_user("admin")):
            with pytest.raises(NotFound):
                services.mark(other, record.id, False)
        with pytest.raises(NotFound):
            services.mark(student, uuid.uuid4(), True)
        assert refreshed(record).helpful is None


# ------------------------------------------------------------------ the engine failing


class TestEngineFailures:
    def test_an_engine_error_keeps_the_question_with_an_apology(self, plants, student, monkeypatch):
        def broken(*args, **kwargs):
            raise RuntimeError("index corrupted")

        monkeypatch.setattr(answers, "compose_reply", broken)
        exchange = services.ask(student, plants.course, "What is chlorophyll?")
        assert exchange.reply.body == services.COULD_NOT_ANSWER
        assert (exchange.reply.kind, exchange.record.answered) == (ReplyKind.NOT_FOUND, False)
        assert exchange.reply.fallback_reason == "the tutor failed to compose a reply"
        assert [m.body for m in messages_of(exchange.session)][0] == "What is chlorophyll?"

    def test_a_model_fallback_is_stored_with_its_reason(self, plants, student, monkeypatch):
        def fell_back(course, question, *, searchable_course_ids=None):
            return answers.Reply(kind=ReplyKind.ANSWER, body="From the lesson: chlorophyll is green.",
                                 citations=[{"passage_id": str(uuid.uuid4()), "lesson_id": "not-an-id"}],
                                 topic_module_id=None, source=ReplySource.RETRIEVAL,
                                 fallback_reason="the model did not answer within 8 s")

        monkeypatch.setattr(answers, "compose_reply", fell_back)
        reply = services.ask(student, plants.course, "What is chlorophyll?").reply
        assert (reply.source, reply.fallback_reason) == (ReplySource.RETRIEVAL, "the model did not answer within 8 s")
        assert reply.citations == []  # a citation without a lesson id could not be linked: dropped

    def test_an_empty_reply_body_becomes_the_apology(self, plants, student, monkeypatch):
        monkeypatch.setattr(answers, "compose_reply", lambda *a, **k: answers.Reply(
            kind=ReplyKind.ANSWER, body="  ", citations=[], topic_module_id=None, source=ReplySource.MODEL))
        assert services.ask(student, plants.course, "What is chlorophyll?").reply.body == services.COULD_NOT_ANSWER
