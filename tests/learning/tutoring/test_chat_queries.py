"""Reads of the tutor's pages (portal/learning/tutoring/queries.py): the student's
conversations and the lesson panel's current one, the history search, and the course report
its staff read (counts right, nobody named, only their courses)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from portal.db import db
from portal.errors import Forbidden, NotFound
from portal.learning.education.models import EnrollmentStatus
from portal.learning.lms.models import ManagementRole
from portal.learning.tutoring import queries, services
from portal.learning.tutoring.queries import HistoryFilters
from tests.factories import create_user
from tests.learning.factories.assign import add_staff, enroll
from tests.learning.factories.catalog import make_module
from tests.learning.tutoring.factories.chat import (
    VOLCANOES,
    record_question,
    student_in,
    tutor_course,
    unpublish,
)

NOW = datetime.now(UTC)


@pytest.fixture
def plants():
    return tutor_course()


@pytest.fixture
def student(plants):
    return student_in(plants.course)


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


# ------------------------------------------------------------------ courses


class TestCourses:
    def test_a_student_reaches_the_courses_they_are_enrolled_in(self, plants, student):
        assert queries.student_course(student, plants.course.slug).id == plants.course.id
        done = student_in(plants.course, EnrollmentStatus.COMPLETED)
        assert queries.student_course(done, plants.course.slug).id == plants.course.id

    def test_others_get_a_403_and_unknown_or_unpublished_a_404(self, plants, student):
        for user in (create_user("student"), student_in(plants.course, EnrollmentStatus.LEFT), create_user("admin")):
            with pytest.raises(Forbidden):
                queries.student_course(user, plants.course.slug)
        with pytest.raises(NotFound):
            queries.student_course(student, "no-such-course")
        unpublish(plants.course)
        with pytest.raises(NotFound):
            queries.student_course(student, plants.course.slug)

    @pytest.mark.parametrize("role", list(ManagementRole))
    def test_the_report_is_for_the_courses_staff_and_admins(self, plants, role):
        staff = create_user("faculty")
        add_staff(plants.course, staff, role)
        assert queries.staff_course(staff, plants.course.slug).id == plants.course.id
        assert queries.staff_course(create_user("admin"), plants.course.slug).id == plants.course.id
        for outsider in (create_user("faculty"), create_user("student"), create_user("compliance")):
            with pytest.raises(NotFound):
                queries.staff_course(outsider, plants.course.slug)


# ------------------------------------------------------------------ conversations


class TestConversations:
    def test_the_students_conversations_latest_first_in_pages(self, plants, student):
        rows = [record_question(student, plants.course, f"Question number {i}?", at=ago(minutes=100 - i))
                for i in range(20)]
        record_question(student_in(plants.course), plants.course, "Someone else's?")  # not listed
        first = queries.sessions_page(student, plants.course.id, size=15)
        assert [item.id for item in first.items] == [row.session_id for row in reversed(rows)][:15]
        assert first.has_next
        second = queries.sessions_page(student, plants.course.id, first.next_cursor, size=15)
        assert [item.id for item in second.items] == [row.session_id for row in reversed(rows)][15:]
        assert not second.has_next
        assert queries.sessions_page(student, plants.course.id, "garbage!", size=15).items == first.items

    def test_open_means_not_ended_and_not_idle(self, plants, student):
        recent = record_question(student, plants.course, "Recent?", at=ago(minutes=1))
        idle = record_question(student, plants.course, "Idle?", at=ago(minutes=services.idle_minutes() + 5))
        ended = record_question(student, plants.course, "Ended?", at=ago(minutes=2))
        services.end_session(student, ended.session_id)
        states = {item.id: item.is_open for item in queries.sessions_page(student, plants.course.id).items}
        assert states == {recent.session_id: True, idle.session_id: False, ended.session_id: False}

    def test_a_conversation_in_order_with_the_marks_and_a_cap(self, plants, student):
        first = record_question(student, plants.course, "First?", at=ago(minutes=5), helpful=True)
        session = db.session.get(services.TutoringSession, first.session_id)
        record_question(student, plants.course, "Second?", at=ago(minutes=4), session=session)
        shown = queries.conversation(student, session.id)
        assert [m.body for m in shown.messages] == ["First?", "A reply.", "Second?", "A reply."]
        assert (shown.messages[1].question_id, shown.messages[1].helpful) == (first.id, True)
        assert shown.messages[0].question_id is None and not shown.earlier
        capped = queries.conversation(student, session.id, limit=3)
        assert capped.earlier and [m.body for m in capped.messages] == ["A reply.", "Second?", "A reply."]
        assert queries.conversation(student_in(plants.course), session.id).messages == []  # not theirs

    def test_someone_elses_conversation_is_not_found(self, plants, student):
        theirs = record_question(student_in(plants.course), plants.course, "Theirs?")
        with pytest.raises(NotFound):
            queries.own_session(student, plants.course.id, theirs.session_id)
        mine = record_question(student, plants.course, "Mine?")
        other = tutor_course(VOLCANOES, module_title="Volcanoes")
        with pytest.raises(NotFound):
            queries.own_session(student, other.course.id, mine.session_id)  # mine, but another course's

    def test_the_panel_shows_the_conversation_still_going(self, plants, student):
        assert queries.current_conversation(student, plants.course.id).session_id is None
        old = record_question(student, plants.course, "Old?", at=ago(minutes=services.idle_minutes() + 5))
        assert queries.current_conversation(student, plants.course.id).session_id is None  # idle: over
        going = record_question(student, plants.course, "Going?", at=ago(minutes=3))
        session = db.session.get(services.TutoringSession, going.session_id)
        for i in range(4):
            record_question(student, plants.course, f"More {i}?", at=ago(minutes=2, seconds=-i), session=session)
        panel = queries.current_conversation(student, plants.course.id)
        assert panel.session_id == going.session_id != old.session_id
        assert [m.body for m in panel.messages] == ["More 1?", "A reply.", "More 2?", "A reply.", "More 3?",
                                                    "A reply."]
        services.end_session(student, going.session_id)
        assert queries.current_conversation(student, plants.course.id).session_id is None


# ------------------------------------------------------------------ history


class TestHistory:
    @pytest.fixture
    def asked(self, plants, student):
        volcanoes = tutor_course(VOLCANOES, module_title="Volcanoes")
        enroll(volcanoes.course, student)
        topic = plants.modules["Plant biology"]
        rows = {
            "chlorophyll": record_question(student, plants.course, "What does chlorophyll do in leaves?",
                                           topic=topic, helpful=True, at=ago(minutes=50)),
            "stomata": record_question(student, plants.course, "Why do stomata close at night?", topic=topic,
                                       helpful=False, at=ago(minutes=40)),
            "football": record_question(student, plants.course, "Who won the football cup?", kind="not_found",
                                        at=ago(minutes=30)),
            "magma": record_question(student, volcanoes.course, "What is a magma chamber? 100% sure", at=ago(minutes=20)),
        }
        classmate = student_in(plants.course)
        record_question(classmate, plants.course, "What does chlorophyll look like?")  # never in the history
        return {"rows": rows, "volcanoes": volcanoes}

    def ids(self, student, **filters) -> list:
        return [item.id for item in queries.history(student, HistoryFilters.clean(**filters)).items]

    def test_all_own_questions_newest_first(self, plants, student, asked):
        rows = asked["rows"]
        assert self.ids(student) == [rows[k].id for k in ("magma", "football", "stomata", "chlorophyll")]
        item = queries.history(student, HistoryFilters()).items[-1]
        assert (item.course_title, item.course_slug, item.topic_title, item.helpful, item.answered) == (
            plants.course.title, plants.course.slug, "Plant biology", True, True)
        assert item.reply_message_id == rows["chlorophyll"].reply_message_id

    def test_full_text_and_partial_words(self, student, asked):
        rows = asked["rows"]
        assert self.ids(student, q="chlorophyll") == [rows["chlorophyll"].id]
        assert self.ids(student, q="leaves chlorophyll") == [rows["chlorophyll"].id]  # words in any order
        assert self.ids(student, q="chloro") == [rows["chlorophyll"].id]  # part of a word
        assert self.ids(student, q="STOMA") == [rows["stomata"].id]
        assert self.ids(student, q="100%") == [rows["magma"].id]  # a % is a character, not a wildcard
        assert self.ids(student, q="%") == [rows["magma"].id]
        assert self.ids(student, q="_") == []
        assert self.ids(student, q="nothing like this") == []

    def test_filters_by_course_and_mark(self, plants, student, asked):
        rows = asked["rows"]
        assert self.ids(student, course=str(asked["volcanoes"].course.id)) == [rows["magma"].id]
        assert self.ids(student, show="helpful") == [rows["chlorophyll"].id]
        assert self.ids(student, show="not_helpful") == [rows["stomata"].id]
        assert self.ids(student, show="unanswered") == [rows["football"].id]
        assert self.ids(student, q="what", course=str(plants.course.id)) == [rows["chlorophyll"].id]
        # Malformed filters are ignored rather than refused.
        assert HistoryFilters.clean("  a   b ", "not-a-uuid", "everything") == HistoryFilters("a b", None, "all")

    def test_courses_to_filter_by(self, plants, student, asked):
        assert {course_id for course_id, _ in queries.history_courses(student)} == {
            plants.course.id, asked["volcanoes"].course.id}
        assert queries.history_courses(create_user("student")) == []

    def test_pages_of_twenty(self, plants, student):
        rows = [record_question(student, plants.course, f"Question {i} about leaves?", at=ago(minutes=100 - i))
                for i in range(25)]
        first = queries.history(student, HistoryFilters(q="leaves"))
        assert [i.id for i in first.items] == [r.id for r in reversed(rows)][:20] and first.has_next
        second = queries.history(student, HistoryFilters(q="leaves"), first.next_cursor)
        assert [i.id for i in second.items] == [r.id for r in reversed(rows)][20:] and not second.has_next


# ------------------------------------------------------------------ the course report


class TestCourseReport:
    @pytest.fixture
    def report_data(self, plants):
        leaves = plants.modules["Plant biology"]
        roots = make_module(plants.course, title="Roots")
        ann, ben, cai = (student_in(plants.course, full_name=name) for name in ("Ann Quist", "Ben Rolle", "Cai Sun"))
        record_question(ann, plants.course, "What is chlorophyll?", topic=leaves, helpful=True, at=ago(days=1))
        record_question(ben, plants.course, "what is CHLOROPHYLL", topic=leaves, helpful=False, at=ago(days=2))
        record_question(ann, plants.course, "What is chlorophyll??", topic=leaves, at=ago(hours=1))
        record_question(cai, plants.course, "How do roots drink?", topic=roots, helpful=True, at=ago(days=3))
        record_question(cai, plants.course, "Who won the cup?", kind="not_found", at=ago(days=4))
        record_question(ben, plants.course, "who won the cup", kind="not_found", helpful=False, at=ago(hours=2))
        record_question(ann, plants.course, "Is a tomato a fruit?", kind="not_found", at=ago(days=200))  # old
        record_question(ann, tutor_course(VOLCANOES, module_title="Volcanoes").course, "What is basalt?")  # elsewhere
        return {"leaves": leaves, "roots": roots, "people": (ann, ben, cai)}

    def test_counts_of_the_period(self, plants, report_data):
        report = queries.course_report(plants.course, "90")
        assert (report.totals.questions, report.totals.answered, report.students) == (6, 4, 3)
        assert (report.totals.marked, report.totals.helpful, report.totals.helpful_percent) == (4, 2, 50)
        assert [(r.wording, r.times, r.students, r.answered) for r in report.most_asked] == [
            ("What is chlorophyll??", 3, 2, 3), ("who won the cup", 2, 2, 0), ("How do roots drink?", 1, 1, 1)]
        topics = {(r.title, r.questions, r.answered_percent, r.helpful_percent) for r in report.topics}
        assert topics == {("Plant biology", 3, 100, 50), ("Roots", 1, 100, 100), (None, 2, 0, 0)}
        assert report.topics[0].title == "Plant biology"  # most asked about first
        assert [(r.wording, r.times) for r in report.unanswered] == [("who won the cup", 2)]

    def test_a_longer_period_and_the_default(self, plants, report_data):
        everything = queries.course_report(plants.course, "all")
        assert everything.totals.questions == 7 and everything.period == "all"
        assert [r.wording for r in everything.unanswered] == ["who won the cup", "Is a tomato a fruit?"]
        assert queries.course_report(plants.course, "bogus").period == "90"

    def test_nobody_is_named(self, plants, report_data):
        text = repr(queries.course_report(plants.course, "all"))
        for person in report_data["people"]:
            assert person.full_name not in text and person.email not in text and str(person.id) not in text

    def test_an_empty_course(self, plants):
        report = queries.course_report(plants.course)
        assert (report.totals.questions, report.topics, report.most_asked, report.unanswered) == (0, [], [], [])


def test_unknown_ids_are_simply_absent(plants, student):
    assert queries.conversation(student, uuid.uuid4()).messages == []
