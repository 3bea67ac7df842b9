"""Assignment pages, submitting, downloading, the grading screen and the gradebook over HTTP."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.learning.lms import assignments as service
from portal.learning.lms.models import Assignment, Grade, ManagementRole, Submission, SubmissionStatus
from tests.factories import PASSWORD
from tests.learning.factories.assign import (
    RUBRIC,
    add_staff,
    enroll,
    graded_attempt,
    make_assignment,
    make_course,
    make_quiz,
    make_submission,
    release_grade,
)

PDF = b"%PDF-1.4\nhello\n"


@pytest.fixture
def client_for(app):
    def make(user):
        client = app.test_client()
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code in (302, 204)
        return client

    return make


@pytest.fixture
def world(make_user):
    owner = make_user(role="faculty")
    student = make_user(role="student")
    course = make_course(owner)
    enroll(course, student)
    assignment = make_assignment(course, points=Decimal(10))
    return owner, student, course, assignment


def test_student_submits_a_file_and_downloads_it(world, client_for):
    owner, student, course, assignment = world
    client = client_for(student)
    page = client.get(f"/learning/assignments/{assignment.id}")
    assert page.status_code == 200 and assignment.title in page.get_data(as_text=True)
    response = client.post(f"/learning/assignments/{assignment.id}/submit",
                           data={"text_answer": "see file", "file": (io.BytesIO(PDF), "Report <1>.pdf")},
                           content_type="multipart/form-data")
    assert response.status_code == 302
    submission = db.session.scalar(select(Submission).where(Submission.assignment_id == assignment.id))
    download = client.get(f"/learning/submissions/{submission.id}/file")
    assert download.status_code == 200 and download.data == PDF
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and 'filename="Report_1.pdf"' in disposition and "<" not in disposition
    assert "sandbox" in download.headers["Content-Security-Policy"]


def test_refused_upload_shows_the_reason_and_stores_nothing(world, client_for):
    _, student, _, assignment = world
    client = client_for(student)
    response = client.post(f"/learning/assignments/{assignment.id}/submit",
                           data={"file": (io.BytesIO(b"<html>hi</html>"), "trick.pdf")},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "not really a .pdf" in response.get_data(as_text=True)
    big = client.post(f"/learning/assignments/{assignment.id}/submit",
                      data={"file": (io.BytesIO(b"%PDF-" + b"0" * 5000), "big.pdf")},
                      content_type="multipart/form-data")
    assert big.status_code == 422 and "larger than" in big.get_data(as_text=True)
    assert db.session.scalar(select(Submission).where(Submission.assignment_id == assignment.id)) is None


@pytest.mark.parametrize(("who", "allowed"), [
    ("submitter", True), ("owner", True), ("assistant", True), ("admin", True),
    ("classmate", False), ("other_faculty", False), ("compliance", False),
])
def test_download_access_for_every_role(world, make_user, client_for, who, allowed):
    owner, student, course, assignment = world
    submission = service.submit(student, assignment.id, upload=service.Upload("work.txt", b"plain words"))
    users = {"submitter": student, "owner": owner}
    if who == "assistant":
        users[who] = make_user(role="faculty")
        add_staff(course, users[who], ManagementRole.ASSISTANT)
    elif who == "classmate":
        users[who] = make_user(role="student")
        enroll(course, users[who])
    elif who not in users:
        users[who] = make_user(role={"other_faculty": "faculty"}.get(who, who))
    response = client_for(users[who]).get(f"/learning/submissions/{submission.id}/file")
    if allowed:
        assert response.status_code == 200 and response.data == b"plain words"
    else:
        assert response.status_code == 404 and b"plain words" not in response.data


def test_anonymous_download_goes_to_login(world, client):
    _, student, _, assignment = world
    submission = service.submit(student, assignment.id, upload=service.Upload("work.txt", b"plain words"))
    response = client.get(f"/learning/submissions/{submission.id}/file")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_students_see_released_grades_only(world, client_for):
    owner, student, course, assignment = world
    submission = make_submission(assignment, student)
    db.session.add(Grade(submission_id=submission.id, assignment_id=assignment.id, user_id=student.id,
                         raw_score=Decimal(7), penalty=Decimal(0), score=Decimal(7), feedback="Secret draft note"))
    submission.status = SubmissionStatus.GRADED
    db.session.flush()
    client = client_for(student)
    body = client.get(f"/learning/assignments/{assignment.id}").get_data(as_text=True)
    assert "Secret draft note" not in body and "Your grade" not in body
    release = client_for(owner).post(f"/learning/assignments/{assignment.id}/release")
    assert release.status_code == 302
    body = client.get(f"/learning/assignments/{assignment.id}").get_data(as_text=True)
    assert "Secret draft note" in body and "Your grade" in body


def test_grading_screen_clicks_levels_with_htmx(world, client_for):
    owner, student, course, _ = world
    from portal.learning.lms.assignments import validate_rubric

    assignment = make_assignment(course, rubric=validate_rubric(RUBRIC, Decimal(10)))
    first = make_submission(assignment, student, text="First answer")
    client = client_for(owner)
    page = client.get(f"/learning/assignments/{assignment.id}/grade")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "First answer" in body and "Argument" in body
    argument, style = assignment.rubric
    response = client.post(f"/learning/submissions/{first.id}/grade", headers={"HX-Request": "true",
                                                                              "HX-Target": "grade-panel"},
                           data={"criterion": argument["id"], "level": argument["levels"][0]["id"]})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in fragment and 'id="grade-panel"' in fragment
    assert "Incomplete" in fragment and 'aria-pressed="true"' in fragment
    client.post(f"/learning/submissions/{first.id}/grade", headers={"HX-Request": "true"},
                data={"criterion": style["id"], "level": style["levels"][1]["id"], "feedback": "Tidy up."})
    grade = db.session.scalar(select(Grade).where(Grade.submission_id == first.id))
    assert grade.score == Decimal("7.00") and grade.feedback == "Tidy up."
    # A level that is not in the rubric: refused in place, nothing changes.
    bad = client.post(f"/learning/submissions/{first.id}/grade", headers={"HX-Request": "true"},
                      data={"criterion": style["id"], "level": "forged"})
    assert bad.status_code == 422 and "not part of this assignment" in bad.get_data(as_text=True)
    db.session.refresh(grade)
    assert grade.score == Decimal("7.00")


def test_direct_score_above_points_is_refused_over_http(world, client_for):
    owner, student, course, assignment = world
    submission = make_submission(assignment, student)
    client = client_for(owner)
    response = client.post(f"/learning/submissions/{submission.id}/grade", headers={"HX-Request": "true"},
                           data={"raw_score": "10.5", "feedback": ""})
    assert response.status_code == 422 and "cannot be above" in response.get_data(as_text=True)
    assert db.session.scalar(select(Grade).where(Grade.submission_id == submission.id)) is None
    ok = client.post(f"/learning/submissions/{submission.id}/grade", data={"raw_score": "9.5"})
    assert ok.status_code == 302
    assert db.session.scalar(select(Grade.score).where(Grade.submission_id == submission.id)) == Decimal("9.50")


def test_next_and_previous_ungraded(world, make_user, client_for):
    from datetime import timedelta

    from portal.db.base import utcnow

    owner, student, course, assignment = world
    others = [make_user(role="student") for _ in range(2)]
    for other in others:
        enroll(course, other)
    base = utcnow() - timedelta(hours=3)
    subs = [make_submission(assignment, s, submitted_at=base + timedelta(minutes=i))
            for i, s in enumerate([student, *others])]
    client = client_for(owner)
    body = client.get(f"/learning/assignments/{assignment.id}/grade?s={subs[1].id}").get_data(as_text=True)
    assert f"s={subs[0].id}" in body and f"s={subs[2].id}" in body
    body = client.get(f"/learning/assignments/{assignment.id}/grade").get_data(as_text=True)
    assert "Previous ungraded" not in body and f"s={subs[1].id}" in body


def test_authoring_through_the_form(world, client_for):
    owner, _, course, _ = world
    client = client_for(owner)
    assert client.get(f"/learning/courses/{course.id}/assignments/new").status_code == 200
    data = {"title": "Lab report", "instructions": "Write **it**.", "points": "10", "allow_text": "y",
            "allow_files": "y", "max_file_mb": "2", "allowed_extensions": "pdf, .TXT",
            "late_penalty_percent_per_day": "5", "late_penalty_floor_percent": "50",
            "c0_title": "Method", "c0_l0_title": "Sound", "c0_l0_points": "6", "c0_l1_title": "Shaky", "c0_l1_points": "2",
            "c1_title": "Writing", "c1_l0_title": "Clear", "c1_l0_points": "3", "op": "save"}
    refused = client.post(f"/learning/courses/{course.id}/assignments/new", data=data)
    assert refused.status_code == 422 and "add up to 9" in refused.get_data(as_text=True)
    more = client.post(f"/learning/courses/{course.id}/assignments/new", data={**data, "op": "add_criterion"})
    assert more.status_code == 200 and 'name="c2_title"' in more.get_data(as_text=True)
    saved = client.post(f"/learning/courses/{course.id}/assignments/new", data={**data, "c1_l0_points": "4"})
    assert saved.status_code == 302
    made = db.session.scalar(select(Assignment).where(Assignment.course_id == course.id, Assignment.title == "Lab report"))
    assert made.allowed_extensions == ["pdf", "txt"] and made.max_file_bytes == 2_000_000
    assert [c["title"] for c in made.rubric] == ["Method", "Writing"] and made.published is False
    edit = client.get(f"/learning/assignments/{made.id}/edit").get_data(as_text=True)
    assert 'value="Method"' in edit
    # Each level's boxes are named by their level, not all "Points".
    assert not re.search(r'for="c\d+_l\d+_points">Points</label>', edit)
    assert '<label class="visually-hidden" for="c0_l1_points">Points for level 2 of criterion 1</label>' in edit
    assert '<label class="visually-hidden" for="c1_l0_description">Description of level 1 of criterion 2</label>' in edit
    client.post(f"/learning/assignments/{made.id}/publish", data={"published": "1"})
    db.session.refresh(made)
    assert made.published


def test_students_cannot_author_or_grade(world, client_for):
    _, student, course, assignment = world
    client = client_for(student)
    assert client.get(f"/learning/courses/{course.id}/assignments/new").status_code == 403
    assert client.get(f"/learning/assignments/{assignment.id}/grade").status_code == 403
    assert client.get(f"/learning/courses/{course.id}/gradebook").status_code == 403


def test_faculty_off_the_course_get_nothing(world, make_user, client_for):
    _, student, course, assignment = world
    submission = make_submission(assignment, student)
    client = client_for(make_user(role="faculty"))
    assert client.get(f"/learning/assignments/{assignment.id}/grade").status_code == 403
    assert client.post(f"/learning/submissions/{submission.id}/grade", data={"raw_score": "1"}).status_code == 403
    assert client.post(f"/learning/assignments/{assignment.id}/release").status_code == 403
    assert client.get(f"/learning/courses/{course.id}/gradebook.csv").status_code == 403


def test_gradebook_page_csv_and_override(world, client_for):
    owner, student, course, assignment = world
    release_grade(assignment, student, 9)
    client = client_for(owner)
    page = client.get(f"/learning/courses/{course.id}/gradebook")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and student.full_name in body and "90.0%" in body
    export = client.get(f"/learning/courses/{course.id}/gradebook.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv" and export.is_streamed
    assert student.email in export.get_data(as_text=True)
    override = client.post(f"/learning/courses/{course.id}/gradebook/{student.id}/override",
                           data={"percent": "55", "reason": "Academic misconduct"})
    assert override.status_code == 302
    body = client.get(f"/learning/courses/{course.id}/gradebook").get_data(as_text=True)
    assert "55.0%" in body and "overridden" in body
    no_reason = client.post(f"/learning/courses/{course.id}/gradebook/{student.id}/override",
                            data={"percent": "60", "reason": ""}, follow_redirects=True)
    assert "reason" in no_reason.get_data(as_text=True)


def test_gradebook_cells_show_scores_drops_and_gaps(world, client_for):
    owner, student, course, assignment = world
    course.grading = {"drop_lowest": {"assignments": 1}}
    second = make_assignment(course, points=Decimal(10))
    make_assignment(course, points=Decimal(10))  # no grade yet: a dash
    quiz = make_quiz(course)
    release_grade(assignment, student, 9)
    release_grade(second, student, Decimal("4.5"))
    graded_attempt(quiz, student, Decimal("66.67"))
    course_id, student_id = course.id, student.id
    body = client_for(owner).get(f"/learning/courses/{course_id}/gradebook").get_data(as_text=True)
    assert '<td class="num">9.0</td>' in body
    assert '<td class="num dropped" title="Dropped (lowest)">4.5</td>' in body
    assert '<td class="num"><span class="muted">–</span></td>' in body
    assert '<td class="num">66.67%</td>' in body
    assert f'action="/learning/courses/{course_id}/gradebook/{student_id}/override"' in body
    assert f'id="pct-{student_id}"' in body


def test_to_grade_card(world, client_for):
    owner, student, course, assignment = world
    make_submission(assignment, student)
    client = client_for(owner)
    fragment = client.get("/learning/grading", headers={"HX-Request": "true", "HX-Target": "to-grade-card"})
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and assignment.title in text and "1 waiting" in text
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'hx-get="/learning/grading"', dashboard)


def test_course_assignment_list_for_student_and_staff(world, client_for):
    owner, student, course, assignment = world
    hidden = make_assignment(course, published=False, title="Hidden draft")
    body = client_for(student).get(f"/learning/courses/{course.id}/assignments").get_data(as_text=True)
    assert assignment.title in body and hidden.title not in body
    body = client_for(owner).get(f"/learning/courses/{course.id}/assignments").get_data(as_text=True)
    assert hidden.title in body and "New assignment" in body


def test_to_grade_lists_quiz_essays_for_the_courses_one_grades(client_for, make_user):
    from portal.learning.assessment import services as quizzes
    from tests.learning.factories import quiz as factories_quiz

    teacher, student, course, quiz, questions = factories_quiz.setup(title="Essay check")
    attempt = quizzes.start_attempt(student, quiz.id)
    quizzes.save_answer(student, attempt.id, questions["essay"].id, quizzes.AnswerInput(text="Because tides."))
    quizzes.submit_attempt(student, attempt.id)  # the essay waits for a person
    db.session.commit()
    body = client_for(teacher).get("/learning/grading").get_data(as_text=True)
    assert "Essay check" in body and "1 attempt with essays" in body
    assert f"/learning/quizzes/{quiz.id}/grading" in body
    stranger = make_user(role="faculty")
    assert "Essay check" not in client_for(stranger).get("/learning/grading").get_data(as_text=True)


def _three_waiting(world, make_user):
    from datetime import timedelta

    from portal.db.base import utcnow

    owner, student, course, assignment = world
    others = [make_user(role="student") for _ in range(2)]
    for other in others:
        enroll(course, other)
    base = utcnow() - timedelta(hours=3)
    return [make_submission(assignment, s, text=f"Answer {i}", submitted_at=base + timedelta(minutes=i))
            for i, s in enumerate([student, *others])]


def test_save_and_next_goes_to_the_next_waiting_submission(world, make_user, client_for):
    owner, _, _, assignment = world
    subs = _three_waiting(world, make_user)
    client = client_for(owner)
    screen = client.get(f"/learning/assignments/{assignment.id}/grade?s={subs[1].id}").get_data(as_text=True)
    assert 'name="then" value="next"' in screen and "Save and next" in screen

    # without JavaScript: saved, then redirected to the next one waiting after it
    response = client.post(f"/learning/submissions/{subs[1].id}/grade", data={"raw_score": "8", "then": "next"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/learning/assignments/{assignment.id}/grade?s={subs[2].id}")
    assert db.session.scalar(select(Grade.score).where(Grade.submission_id == subs[1].id)) == Decimal("8.00")

    # with htmx: the next panel in place, the address bar moved to it; past the last it wraps to
    # the one skipped at the start
    response = client.post(f"/learning/submissions/{subs[2].id}/grade", headers={"HX-Request": "true"},
                           data={"raw_score": "7", "then": "next"})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in fragment and 'id="grade-panel"' in fragment
    assert "Answer 0" in fragment and "Answer 2" not in fragment
    assert response.headers["HX-Push-Url"] == f"/learning/assignments/{assignment.id}/grade?s={subs[0].id}"

    # the last one: nothing is left, and the panel says so
    response = client.post(f"/learning/submissions/{subs[0].id}/grade", headers={"HX-Request": "true"},
                           data={"raw_score": "9", "then": "next"})
    fragment = response.get_data(as_text=True)
    assert "Nothing else is waiting to be graded" in fragment and "Nothing is waiting to be graded" in fragment
    assert response.headers["HX-Push-Url"] == f"/learning/assignments/{assignment.id}/grade"


def test_save_and_next_stays_put_when_the_grade_is_refused(world, make_user, client_for):
    owner, _, _, _ = world
    subs = _three_waiting(world, make_user)
    client = client_for(owner)
    response = client.post(f"/learning/submissions/{subs[0].id}/grade", headers={"HX-Request": "true"},
                           data={"raw_score": "11", "then": "next"})
    assert response.status_code == 422 and "cannot be above" in response.get_data(as_text=True)
    assert "Answer 0" in response.get_data(as_text=True) and "HX-Push-Url" not in response.headers


def test_release_from_the_grading_screen(world, make_user, client_for):
    owner, _, _, assignment = world
    subs = _three_waiting(world, make_user)
    client = client_for(owner)
    client.post(f"/learning/submissions/{subs[0].id}/grade", data={"raw_score": "8"})
    screen = client.get(f"/learning/assignments/{assignment.id}/grade?s={subs[1].id}").get_data(as_text=True)
    assert "Release 1 graded" in screen and 'name="from" value="grader"' in screen

    # with htmx: released, the same submission's panel comes back with the message
    response = client.post(f"/learning/assignments/{assignment.id}/release", headers={"HX-Request": "true"},
                           data={"from": "grader", "s": str(subs[1].id)})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in fragment and 'id="grade-panel"' in fragment
    assert "1 grade released to students." in fragment and "Answer 1" in fragment
    assert "Release 1 graded" not in fragment  # nothing graded is left unreleased
    db.session.refresh(subs[0])
    assert subs[0].status == SubmissionStatus.RELEASED

    # without JavaScript: back to the grading screen at that submission, with the message flashed
    client.post(f"/learning/submissions/{subs[1].id}/grade", data={"raw_score": "6"})
    response = client.post(f"/learning/assignments/{assignment.id}/release", data={"from": "grader", "s": str(subs[1].id)})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/learning/assignments/{assignment.id}/grade?s={subs[1].id}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 grade released to students." in page
    # a forged submission id is ignored, not an error
    response = client.post(f"/learning/assignments/{assignment.id}/release", data={"from": "grader", "s": "nope"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/assignments/{assignment.id}/grade")


def test_graders_who_may_not_release_see_no_release_button(world, make_user, client_for):
    owner, _, course, assignment = world
    subs = _three_waiting(world, make_user)
    grader = make_user(role="faculty")
    add_staff(course, grader, ManagementRole.ASSISTANT)
    client_for(owner).post(f"/learning/submissions/{subs[0].id}/grade", data={"raw_score": "8"})
    client = client_for(grader)
    screen = client.get(f"/learning/assignments/{assignment.id}/grade").get_data(as_text=True)
    assert "Save and next" in screen and "Release 1 graded" not in screen
    refused = client.post(f"/learning/assignments/{assignment.id}/release", data={"from": "grader"})
    assert refused.status_code == 403
