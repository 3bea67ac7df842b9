"""The earnings pages for every role, with and without htmx: the student's earnings and
progress, the milestones list and form, and the admins' review with pay and reverse; and the
statement budget of each list page."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select

from portal import events
from portal.db import db
from portal.db.base import utcnow
from portal.learning.education.models import EnrollmentStatus, Progress
from portal.money.earnings.models import Earning, EarningStatus, Milestone, MilestoneKind
from portal.money.wallets import ledger
from portal.money.wallets.models import TransactionType, WalletStatus
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.factories import catalog as catalog
from tests.learning.factories.assign import graded_attempt
from tests.learning.factories.quiz import enroll, make_course, make_quiz
from tests.money.factories import make_milestone

BUDGET = 12
HX = {"HX-Request": "true"}


def earn(student, course):
    with as_user(student):
        events.course_completed.send(user=student, course=course)


def text(response) -> str:
    return response.get_data(as_text=True)


# ------------------------------------------------------------------------------ student page


class TestStudentPage:
    def test_earnings_totals_and_progress(self, client, login_as):
        student = login_as("student")
        course = make_course(create_user("faculty"), title="Saving Money")
        enroll(student, course)
        quiz = make_quiz(course, title="Budgets quiz")
        graded_attempt(quiz, student, 72)
        make_milestone(course_id=course.id, title="Finish Saving Money", reward="5")
        make_milestone(MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id, course_id=course.id, min_score=Decimal(80),
                       title="Budget master", reward="3")
        make_milestone(MilestoneKind.STREAK, streak_days=7, title="A week of learning")
        make_milestone(course_id=make_course().id, title="Not my course")
        first = make_milestone(title="First course", reward="1.5", currency="USD")
        earn(student, course)
        response = client.get("/wallet/earnings")
        body = text(response)
        assert response.status_code == 200
        assert "My earnings" in body and "<html" in body
        # What was earned, and why.
        assert "Finish Saving Money" in body and "Course completed: Saving Money" in body
        assert "5.00\u00a0AZR" in body and "1.50\u00a0USD" in body and "Paid" in body
        # Progress toward the others: best score against the minimum, the streak.
        assert "Budget master" in body and "Best passing score 72% of 80% needed" in body
        assert "A week of learning" in body and "Current streak: 0 of 7 days" in body
        assert "Not my course" not in body
        assert first.title in body

    def test_pending_and_reversed_are_explained(self, client, login_as):
        student = login_as("student")
        course = make_course()
        ledger.open_user_wallet(student.id, "AZR").status = WalletStatus.FROZEN
        db.session.flush()
        make_milestone(course_id=course.id, title="Waiting one")
        earn(student, course)
        body = text(client.get("/wallet/earnings"))
        assert "Pending" in body and "Paid as soon as your AZR wallet can receive money." in body
        assert "5.00\u00a0AZR waiting to be paid" in body

    def test_an_empty_page_says_what_to_do(self, client, login_as):
        login_as("student")
        body = text(client.get("/wallet/earnings"))
        assert "Nothing earned yet" in body and "No milestones are open to you yet" in body

    def test_more_rows_as_a_fragment(self, client, login_as):
        student = login_as("student")
        bulk_earnings(student, 30)
        page = text(client.get("/wallet/earnings"))
        assert "Show more" in page
        cursor = page.split("/wallet/earnings?after=")[1].split('"')[0]
        fragment = client.get(f"/wallet/earnings?after={cursor}", headers=HX)
        assert fragment.status_code == 200
        body = text(fragment)
        assert "<html" not in body and "<tr" in body and "My earnings" not in body
        assert body.count("<tr") == 5  # 30 rows, 25 on the first page

    @pytest.mark.parametrize("role", ["faculty", "admin", "compliance"])
    def test_other_roles_have_no_earnings_page(self, client, login_as, role):
        login_as(role)
        assert client.get("/wallet/earnings").status_code == 403
        assert client.get("/wallet/earnings", headers=HX).status_code == 403


def bulk_earnings(student, count: int) -> list[uuid.UUID]:
    now = utcnow()
    milestone_ids = [uuid.uuid4() for _ in range(count)]
    db.session.execute(insert(Milestone), [
        {"id": mid, "title": f"Bulk milestone {i}", "kind": MilestoneKind.COURSE_COMPLETED,
         "reward_amount": Decimal(1), "reward_currency": "AZR", "active": True, "created_at": now,
         "updated_at": now} for i, mid in enumerate(milestone_ids)])
    db.session.execute(insert(Earning), [
        {"user_id": student.id, "milestone_id": mid, "amount": Decimal(1), "currency": "AZR",
         "source": "course_completed", "source_ref": f"Course {i}", "status": EarningStatus.PENDING,
         "created_at": now - timedelta(seconds=i), "updated_at": now} for i, mid in enumerate(milestone_ids)])
    return milestone_ids


# ------------------------------------------------------------------------------ milestones


def form(**fields) -> dict:
    values = {"title": "Finish the course", "kind": "course_completed", "course_id": "", "quiz_id": "",
              "min_score": "", "streak_days": "", "reward_amount": "5", "reward_currency": "AZR", "active": "y",
              "op": "save"}
    values.update(fields)
    return values


class TestMilestonesPage:
    def test_faculty_see_and_manage_their_courses_milestones(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher, title="My Course")
        mine = make_milestone(course_id=course.id, title="Mine to edit")
        make_milestone(course_id=make_course().id, title="Someone else's")
        make_milestone(title="Global one")
        response = client.get("/wallet/milestones")
        body = text(response)
        assert response.status_code == 200
        assert "Mine to edit" in body and "Someone else" not in body and "Global one" not in body
        assert "Create a milestone" in body and "My Course" in body and "Choose one of your courses" in body
        assert "At most 1,000.00 AZR" in body
        assert f"/wallet/milestones/{mine.id}/active" in body

    def test_admin_sees_every_milestone_and_the_review_link(self, client, login_as):
        login_as("admin")
        make_milestone(course_id=make_course().id, title="Course one")
        make_milestone(title="Global one")
        body = text(client.get("/wallet/milestones"))
        assert "Course one" in body and "Global one" in body and "Review earnings" in body
        assert "Any course" in body

    @pytest.mark.parametrize("role", ["student", "compliance"])
    def test_refused_to_others(self, client, login_as, role):
        login_as(role)
        assert client.get("/wallet/milestones").status_code == 403
        assert client.post("/wallet/milestones", data=form()).status_code == 403

    def test_create_without_javascript(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher)
        response = client.post("/wallet/milestones", data=form(course_id=str(course.id)))
        assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/milestones")
        created = db.session.scalar(select(Milestone).where(Milestone.course_id == course.id))
        assert created.title == "Finish the course" and created.created_by_id == teacher.id
        page = text(client.get("/wallet/milestones"))
        assert "\u201cFinish the course\u201d created." in page

    def test_create_with_htmx_goes_to_the_list(self, client, login_as):
        login_as("admin")
        response = client.post("/wallet/milestones", data=form(title="Via htmx"), headers=HX)
        assert response.status_code == 204 and response.headers["HX-Location"].endswith("/wallet/milestones")
        assert db.session.scalar(select(Milestone).where(Milestone.title == "Via htmx")) is not None

    def test_bad_input_shows_the_form_again_with_the_message(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher)
        db.session.commit()  # each refusal below rolls its request back
        fragment = client.post("/wallet/milestones", data=form(course_id=str(course.id), reward_amount="-1"),
                               headers=HX)
        assert fragment.status_code == 422
        body = text(fragment)
        assert "<html" not in body and 'id="milestone-form"' in body and "The amount must be positive." in body
        page = client.post("/wallet/milestones", data=form(course_id=str(course.id), kind="streak", title=""))
        assert page.status_code == 422 and "<html" in text(page) and "How many days in a row?" in text(page)
        assert "Give the milestone a title" in text(page)
        global_try = client.post("/wallet/milestones", data=form())
        assert global_try.status_code == 422 and "set by administrators" in text(global_try)
        assert db.session.scalar(select(Milestone).where(Milestone.course_id == course.id)) is None

    def test_choosing_a_course_lists_its_quizzes_and_saves_nothing(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher)
        make_quiz(course, title="Quiz on budgets")
        fragment = client.post("/wallet/milestones", data=form(course_id=str(course.id), kind="quiz_passed",
                                                               op="refresh"), headers=HX)
        assert fragment.status_code == 200 and "Quiz on budgets" in text(fragment) and "<html" not in text(fragment)
        assert db.session.scalar(select(Milestone).where(Milestone.course_id == course.id)) is None
        # Without JavaScript the same button re-renders the page.
        page = client.post("/wallet/milestones", data=form(course_id=str(course.id), op="refresh"))
        assert page.status_code == 200 and "Quiz on budgets" in text(page) and "<html" in text(page)

    def test_edit_form_and_update(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher)
        milestone = make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id, min_score=Decimal("82.5"),
                                   reward="12.5", title="Old title")
        db.session.commit()
        fragment = client.get(f"/wallet/milestones?edit={milestone.id}", headers={**HX, "HX-Target": "milestone-form"})
        body = text(fragment)
        assert fragment.status_code == 200 and "<html" not in body
        assert 'value="82.5"' in body and 'value="12.5"' in body and "Edit \u201cOld title\u201d" in body
        response = client.post(f"/wallet/milestones/{milestone.id}",
                               data=form(title="New title", kind="quiz_passed", course_id=str(course.id),
                                         min_score="82.5", reward_amount="15"))
        assert response.status_code == 302
        db.session.refresh(milestone)
        assert milestone.title == "New title" and milestone.reward_amount == Decimal(15)

    def test_others_milestones_are_not_found(self, client, login_as):
        login_as("faculty")
        other = make_milestone(course_id=make_course().id)
        db.session.commit()  # each refusal below rolls its request back
        assert client.get(f"/wallet/milestones?edit={other.id}").status_code == 404
        assert client.post(f"/wallet/milestones/{other.id}", data=form()).status_code == 404
        assert client.post(f"/wallet/milestones/{other.id}/active", data={"active": "0"}).status_code == 404
        assert client.post(f"/wallet/milestones/{other.id}/active", data={"active": "0"}, headers=HX).status_code \
            == 404
        db.session.refresh(other)
        assert other.active

    def test_activate_and_deactivate_inline_and_without_javascript(self, client, login_as):
        teacher = login_as("faculty")
        course = make_course(teacher)
        milestone = make_milestone(course_id=course.id, title="Toggle me")
        fragment = client.post(f"/wallet/milestones/{milestone.id}/active", data={"active": "0"}, headers=HX)
        body = text(fragment)
        assert fragment.status_code == 200 and body.lstrip().startswith("<tr") or f'id="milestone-{milestone.id}"' \
            in body
        assert "Inactive" in body and ">Activate<" in body and "<html" not in body
        db.session.refresh(milestone)
        assert milestone.active is False
        response = client.post(f"/wallet/milestones/{milestone.id}/active", data={"active": "1"})
        assert response.status_code == 302
        db.session.refresh(milestone)
        assert milestone.active is True


# ------------------------------------------------------------------------------ admins' review


@pytest.fixture
def credited(make_user):
    student = make_user("student", full_name="Ada Student")
    course = make_course()
    milestone = make_milestone(course_id=course.id, title="Reviewable", reward="5")
    earn(student, course)
    earning = db.session.scalar(select(Earning).where(Earning.milestone_id == milestone.id))
    db.session.commit()  # a refused action rolls its request back
    return student, earning


class TestReview:
    def test_the_list_and_its_filter(self, client, login_as, credited):
        login_as("admin")
        student, earning = credited
        body = text(client.get("/wallet/earnings/review"))
        assert "Ada Student" in body and "Reviewable" in body and "Take the reward back" in body
        fragment = client.get("/wallet/earnings/review?status=pending", headers=HX)
        assert fragment.status_code == 200 and "<html" not in text(fragment)
        assert f"earning-{earning.id}" not in text(fragment)
        fragment = client.get("/wallet/earnings/review?status=credited", headers=HX)
        assert f"earning-{earning.id}" in text(fragment)

    @pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
    def test_admins_only(self, client, login_as, credited, role):
        login_as(role)
        _, earning = credited
        assert client.get("/wallet/earnings/review").status_code == 403
        assert client.post(f"/wallet/earnings/{earning.id}/reverse",
                           data={"reason": "Nope nope", "idempotency_key": ledger.new_key()}).status_code == 403
        assert client.post("/wallet/earnings/pay-pending", data={"idempotency_key": ledger.new_key()}).status_code \
            == 403

    def test_reverse_inline(self, client, login_as, credited):
        login_as("admin")
        student, earning = credited
        key = ledger.new_key()
        fragment = client.post(f"/wallet/earnings/{earning.id}/reverse",
                               data={"reason": "Completed by mistake", "idempotency_key": key}, headers=HX)
        body = text(fragment)
        assert fragment.status_code == 200 and "<html" not in body
        assert "Reversed" in body and "Reward reversed: Completed by mistake" in body
        # The same form again (a double click): nothing more moves.
        again = client.post(f"/wallet/earnings/{earning.id}/reverse",
                            data={"reason": "Completed by mistake", "idempotency_key": key})
        assert again.status_code == 302
        assert ledger.user_wallet(student.id, "AZR").balance == 0
        assert ledger.verify().ok

    def test_reverse_refused_when_spent_shows_in_the_row(self, client, login_as, credited):
        login_as("admin")
        student, earning = credited
        ledger.post([ledger.Leg(ledger.user_wallet(student.id, "AZR"),
                                ledger.open_user_wallet(create_user("student").id, "AZR"), Decimal(4),
                                TransactionType.TRANSFER)])
        db.session.commit()
        fragment = client.post(f"/wallet/earnings/{earning.id}/reverse",
                               data={"reason": "Taken back", "idempotency_key": ledger.new_key()}, headers=HX)
        assert fragment.status_code == 409
        assert "no longer has the funds" in text(fragment) and f"earning-{earning.id}" in text(fragment)
        page = client.post(f"/wallet/earnings/{earning.id}/reverse",
                           data={"reason": "Taken back", "idempotency_key": ledger.new_key()})
        assert page.status_code == 302
        assert "no longer has the funds" in text(client.get("/wallet/earnings/review"))
        assert db.session.get(Earning, earning.id).status == EarningStatus.CREDITED

    def test_a_missing_reason_is_refused(self, client, login_as, credited):
        login_as("admin")
        _, earning = credited
        fragment = client.post(f"/wallet/earnings/{earning.id}/reverse",
                               data={"reason": "", "idempotency_key": ledger.new_key()}, headers=HX)
        assert fragment.status_code == 422 and "Say why" in text(fragment)

    def test_pay_one_and_pay_pending(self, client, login_as):
        login_as("admin")
        student = create_user("student")
        course = make_course()
        wallet = ledger.open_user_wallet(student.id, "AZR")
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
        first, second = make_milestone(course_id=course.id), make_milestone(course_id=course.id)
        earn(student, course)
        earnings = {e.milestone_id: e for e in db.session.scalars(select(Earning).where(Earning.user_id == student.id))}
        db.session.commit()  # the refusal below rolls its request back
        refused = client.post(f"/wallet/earnings/{earnings[first.id].id}/pay",
                              data={"idempotency_key": ledger.new_key()}, headers=HX)
        assert refused.status_code == 409 and "frozen" in text(refused) and "Pay now" in text(refused)
        wallet.status = WalletStatus.ACTIVE
        db.session.flush()
        paid = client.post(f"/wallet/earnings/{earnings[first.id].id}/pay",
                           data={"idempotency_key": ledger.new_key()}, headers=HX)
        assert paid.status_code == 200 and "Paid" in text(paid) and "Take the reward back" in text(paid)
        response = client.post("/wallet/earnings/pay-pending", data={"idempotency_key": ledger.new_key()})
        assert response.status_code == 302
        db.session.refresh(earnings[second.id])
        assert earnings[second.id].status == EarningStatus.CREDITED
        assert ledger.user_wallet(student.id, "AZR").balance == Decimal(10)
        assert "pending reward(s) paid" in text(client.get("/wallet/earnings/review"))

    def test_unknown_earning_is_not_found(self, client, login_as):
        login_as("admin")
        missing = uuid.uuid4()
        for action in ("pay", "reverse"):
            response = client.post(f"/wallet/earnings/{missing}/{action}",
                                   data={"reason": "Because", "idempotency_key": ledger.new_key()})
            assert response.status_code == 404


# ------------------------------------------------------------------------------ budgets


#: The student's page: the request's session lookup, the page of earnings with the totals, and
#: the milestones with what their progress is measured from.
STUDENT_PAGE_STATEMENTS = 3


def test_student_page_within_budget_and_flat(client, login_as, statements):
    student = login_as("student")
    courses = [make_course(title=f"Course {i}") for i in range(3)]
    for course in courses:
        enroll(student, course, EnrollmentStatus.COMPLETED if course is courses[0] else EnrollmentStatus.ACTIVE)

    def add_data(n: int) -> None:
        for course in courses:
            quiz = make_quiz(course)
            graded_attempt(quiz, student, 70 + n % 20, number=1)
            make_milestone(MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id, course_id=course.id, min_score=Decimal(80))
            make_milestone(MilestoneKind.QUIZ_PASSED, course_id=course.id)
            make_milestone(course_id=course.id)
            make_milestone(MilestoneKind.STREAK, streak_days=3 + n % 5, course_id=course.id)
        bulk_earnings(student, 10)

    def measure() -> int:
        client.get("/wallet/earnings")
        with statements() as counted:
            response = client.get("/wallet/earnings")
        assert response.status_code == 200
        assert counted.count <= STUDENT_PAGE_STATEMENTS, counted.statements
        return counted.count

    add_data(1)
    lesson_course = catalog.make_course(modules=1, lessons_per_module=2)
    for lesson in catalog.lessons_of(lesson_course):
        db.session.add(Progress(user_id=student.id, lesson_id=lesson.id, course_id=lesson_course.id,
                                first_viewed_at=utcnow(), completed_at=utcnow()))
    db.session.flush()
    small = measure()
    for n in range(2, 6):
        add_data(n)
    assert measure() == small


#: The milestones page: the request's session lookup and the milestones with the courses; for
#: faculty, also how many earned each, read as the ledger role (its switch there and back).
MILESTONES_PAGE_STATEMENTS = {"admin": 2, "faculty": 5}


def test_milestones_and_review_pages_within_budget_and_flat(client, login_as, statements):
    login_as("admin")
    student = create_user("student")

    def measure(url: str) -> int:
        client.get(url)
        with statements() as counted:
            response = client.get(url)
        assert response.status_code == 200
        assert counted.count <= BUDGET, (url, counted.statements)
        return counted.count

    bulk_earnings(student, 5)
    small = {url: measure(url) for url in ("/wallet/milestones", "/wallet/earnings/review")}
    for _ in range(5):
        make_course()
    bulk_earnings(student, 60)
    for url, count in small.items():
        assert measure(url) == count
    assert small["/wallet/milestones"] <= MILESTONES_PAGE_STATEMENTS["admin"]


def test_faculty_milestones_page_within_budget_and_flat(client, login_as, statements):
    teacher = login_as("faculty")

    def add(n: int) -> None:
        for _ in range(n):
            course = make_course(teacher)
            make_quiz(course)
            make_milestone(course_id=course.id)

    def measure() -> int:
        client.get("/wallet/milestones")
        with statements() as counted:
            assert client.get("/wallet/milestones").status_code == 200
        assert counted.count <= MILESTONES_PAGE_STATEMENTS["faculty"], counted.statements
        return counted.count

    add(2)
    small = measure()
    add(30)
    assert measure() == small


def test_the_course_field_is_the_shared_field_macros_select(app):
    """The milestone form writes its course options itself (an admin's list holds every course);
    the markup stays the one ``macros/forms.html`` gives every select."""
    from wtforms.fields.choices import SelectChoice

    from blueprints.wallet.earnings import MilestoneForm

    choices = [("", "Any course"), ("a", "Alpha & <b>"), ("b", "Beta")]
    with app.test_request_context("/"):
        for data, errors, hint in [("", [], None), ("b", ["Not one of yours."], "A hint"), ("a", [], "Any")]:
            form = MilestoneForm(formdata=None)
            form.course_id.data, form.course_id.errors = data, errors
            form.course_id.choices = [SelectChoice(value, label) for value, label in choices]
            shared = app.jinja_env.from_string('{% from "macros/forms.html" import field %}{{ field(f, hint=hint) }}')
            ours = app.jinja_env.from_string(
                '{% from "wallet/earnings/_macros.html" import course_field %}{{ course_field(f, choices, hint=hint) }}')
            assert " ".join(ours.render(f=form.course_id, choices=choices, hint=hint).split()) == " ".join(
                shared.render(f=form.course_id, hint=hint).split())
