"""Milestone rules: who may define which milestones, and the validation of each kind."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.errors import Conflict, Forbidden, NotFound
from portal.learning.lms.models import ManagementRole
from portal.money.earnings import services
from portal.money.earnings.models import MilestoneKind
from portal.money.earnings.services import MilestoneInput, MilestoneInvalid
from tests.factories import create_user
from tests.learning.factories.quiz import add_staff, make_course, make_quiz
from tests.money.factories import make_milestone


def data(**fields) -> MilestoneInput:
    values = {"title": "Finish it", "kind": "course_completed", "reward_amount": "5", "reward_currency": "AZR"}
    values.update(fields)
    return MilestoneInput(**values)


@pytest.fixture
def admin():
    return create_user("admin")


@pytest.fixture
def teacher_course():
    teacher = create_user("faculty")
    return teacher, make_course(teacher)


class TestKinds:
    def test_course_completed_for_one_course_or_any(self, admin, teacher_course):
        _, course = teacher_course
        one = services.create_milestone(admin, data(course_id=str(course.id)))
        every = services.create_milestone(admin, data(title="Any course"))
        assert one.course_id == course.id and one.kind == MilestoneKind.COURSE_COMPLETED
        assert every.course_id is None and every.reward_amount == Decimal("5") and every.created_by_id == admin.id

    def test_quiz_passed_for_a_quiz_takes_its_course_and_keeps_the_minimum(self, admin, teacher_course):
        _, course = teacher_course
        quiz = make_quiz(course)
        milestone = services.create_milestone(admin, data(kind="quiz_passed", quiz_id=str(quiz.id),
                                                          min_score="80.5"))
        assert milestone.quiz_id == quiz.id and milestone.course_id == course.id
        assert milestone.min_score == Decimal("80.50")

    def test_quiz_passed_for_a_course_or_any_quiz(self, admin, teacher_course):
        _, course = teacher_course
        of_course = services.create_milestone(admin, data(kind="quiz_passed", course_id=str(course.id)))
        anywhere = services.create_milestone(admin, data(kind="quiz_passed", min_score="%"))
        assert of_course.course_id == course.id and of_course.quiz_id is None and of_course.min_score is None
        assert anywhere.course_id is None and anywhere.quiz_id is None

    def test_streak_needs_its_days(self, admin):
        milestone = services.create_milestone(admin, data(kind="streak", streak_days="7"))
        assert milestone.streak_days == 7 and milestone.min_score is None

    def test_fields_of_other_kinds_are_ignored(self, admin, teacher_course):
        _, course = teacher_course
        quiz = make_quiz(course)
        milestone = services.create_milestone(admin, data(kind="course_completed", quiz_id=str(quiz.id),
                                                          min_score="50", streak_days="3"))
        assert milestone.quiz_id is None and milestone.min_score is None and milestone.streak_days is None

    @pytest.mark.parametrize(("fields", "field", "message"), [
        ({"title": "  "}, "title", "title"),
        ({"title": "x" * 161}, "title", "160"),
        ({"description": "x" * 501}, "description", "500"),
        ({"kind": "attendance"}, "kind", "Choose what"),
        ({"course_id": "not-a-uuid"}, "course_id", "Choose a course"),
        ({"course_id": "00000000-0000-0000-0000-000000000001"}, "course_id", "does not exist"),
        ({"kind": "quiz_passed", "quiz_id": "00000000-0000-0000-0000-000000000001"}, "quiz_id", "does not exist"),
        ({"kind": "quiz_passed", "min_score": "101"}, "min_score", "between 0 and 100"),
        ({"kind": "quiz_passed", "min_score": "-1"}, "min_score", "between 0 and 100"),
        ({"kind": "quiz_passed", "min_score": "eighty"}, "min_score", "percentage"),
        ({"kind": "quiz_passed", "min_score": "80.123"}, "min_score", "two decimals"),
        ({"kind": "quiz_passed", "min_score": "NaN"}, "min_score", "between 0 and 100"),
        ({"kind": "streak"}, "streak_days", "How many days"),
        ({"kind": "streak", "streak_days": "1"}, "streak_days", "2 to 365"),
        ({"kind": "streak", "streak_days": "366"}, "streak_days", "2 to 365"),
        ({"kind": "streak", "streak_days": "7.5"}, "streak_days", "whole number"),
        ({"reward_amount": "0"}, "reward_amount", "more than zero"),
        ({"reward_amount": "-5"}, "reward_amount", "positive"),
        ({"reward_amount": "1,5"}, "reward_amount", "commas"),
        ({"reward_amount": "0.123456789"}, "reward_amount", "8 decimal places"),
        ({"reward_amount": "1.005", "reward_currency": "USD"}, "reward_amount", "2 decimal places"),
        ({"reward_currency": "EUR"}, "reward_currency", "Unknown currency"),
    ])
    def test_bad_input_is_refused_next_to_its_field(self, admin, fields, field, message):
        with pytest.raises(MilestoneInvalid) as caught:
            services.create_milestone(admin, data(**fields))
        assert caught.value.field == field
        assert message in caught.value.message

    def test_every_problem_is_reported_at_once(self, admin):
        with pytest.raises(MilestoneInvalid) as caught:
            services.create_milestone(admin, data(title="", kind="streak", streak_days="1", reward_amount="1,5"))
        assert caught.value.field == "title"
        assert set(caught.value.errors) == {"title", "streak_days", "reward_amount"}

    def test_a_quiz_of_another_course_is_refused(self, admin, teacher_course):
        _, course = teacher_course
        other_quiz = make_quiz(make_course())
        with pytest.raises(MilestoneInvalid, match="another course") as caught:
            services.create_milestone(admin, data(kind="quiz_passed", course_id=str(course.id),
                                                  quiz_id=str(other_quiz.id)))
        assert caught.value.field == "quiz_id"


class TestWhoMay:
    def test_faculty_only_for_courses_they_edit(self, teacher_course):
        teacher, course = teacher_course
        milestone = services.create_milestone(teacher, data(course_id=str(course.id)))
        assert milestone.course_id == course.id
        with pytest.raises(Forbidden):
            services.create_milestone(teacher, data(course_id=str(make_course().id)))

    def test_faculty_never_global(self, teacher_course):
        teacher, _ = teacher_course
        with pytest.raises(MilestoneInvalid, match="administrators") as caught:
            services.create_milestone(teacher, data())
        assert caught.value.field == "course_id"
        with pytest.raises(MilestoneInvalid):
            services.create_milestone(teacher, data(kind="quiz_passed"))

    def test_an_assistant_may_not(self, teacher_course):
        _, course = teacher_course
        assistant = create_user("faculty")
        add_staff(course, assistant, ManagementRole.ASSISTANT)
        with pytest.raises(Forbidden):
            services.create_milestone(assistant, data(course_id=str(course.id)))

    def test_faculty_rewards_are_capped_and_admins_are_not(self, admin, teacher_course):
        teacher, course = teacher_course
        with pytest.raises(MilestoneInvalid, match="at most 1,000.00 AZR") as caught:
            services.create_milestone(teacher, data(course_id=str(course.id), reward_amount="1000.00000001"))
        assert caught.value.field == "reward_amount"
        assert services.create_milestone(teacher, data(course_id=str(course.id), reward_amount="1000"))
        assert services.create_milestone(admin, data(reward_amount="50000")).reward_amount == Decimal(50000)

    @pytest.mark.parametrize("role", ["student", "compliance"])
    def test_other_roles_may_not(self, role):
        with pytest.raises(Forbidden):
            services.create_milestone(create_user(role), data())

    def test_faculty_edit_only_their_courses_milestones(self, admin, teacher_course):
        teacher, course = teacher_course
        mine = make_milestone(course_id=course.id)
        global_one = make_milestone()
        elsewhere = make_milestone(course_id=make_course().id)
        assert services.update_milestone(teacher, mine.id, data(course_id=str(course.id), title="Renamed")).title \
            == "Renamed"
        for other in (global_one, elsewhere):
            with pytest.raises(NotFound):
                services.update_milestone(teacher, other.id, data(course_id=str(course.id)))
            with pytest.raises(NotFound):
                services.set_active(teacher, other.id, False)
        # Moving one of theirs to a course they do not teach is refused too.
        with pytest.raises(Forbidden):
            services.update_milestone(teacher, mine.id, data(course_id=str(elsewhere.course_id)))
        assert services.update_milestone(admin, global_one.id, data(title="Admin's")).title == "Admin's"


class TestChanges:
    def test_activate_and_deactivate(self, admin):
        milestone = make_milestone()
        assert services.set_active(admin, milestone.id, False).active is False
        assert services.set_active(admin, milestone.id, True).active is True

    def test_the_rule_is_fixed_once_earned_but_the_reward_may_change(self, admin, teacher_course):
        from portal.money.earnings.models import Earning, EarningStatus

        _, course = teacher_course
        milestone = make_milestone(course_id=course.id)
        student = create_user("student")
        from portal.db import db

        db.session.add(Earning(user_id=student.id, milestone_id=milestone.id, amount=Decimal(5), currency="AZR",
                               source="course_completed", status=EarningStatus.PENDING))
        db.session.flush()
        changed = services.update_milestone(admin, milestone.id, data(course_id=str(course.id), title="New title",
                                                                      reward_amount="7"))
        assert changed.title == "New title" and changed.reward_amount == Decimal(7)
        with pytest.raises(Conflict, match="cannot change"):
            services.update_milestone(admin, milestone.id, data(title="Any course now"))

    def test_unknown_milestone(self, admin):
        import uuid

        with pytest.raises(NotFound):
            services.set_active(admin, uuid.uuid4(), False)
