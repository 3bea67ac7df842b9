"""Quiz pages: faculty authoring and grading, students taking a quiz, with and without htmx,
access for other students, outsiders and other courses' faculty, and statement budgets."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment import services as quizzes
from portal.learning.assessment.models import Answer, AttemptStatus, QuestionKind, QuizAttempt, QuizQuestion
from portal.learning.lms.models import ManagementRole
from tests.factories import create_user
from tests.learning.factories.quiz import (
    add_question,
    add_staff,
    enroll,
    full_quiz,
    make_course,
    make_quiz,
    options_of,
)

HX = {"HX-Request": "true"}


def committed():
    """End the test's own writes before requests: a view that rolls back (a refused form)
    would otherwise roll them back too. The whole test is still rolled back at its end."""
    db.session.commit()


@pytest.fixture
def other_client(app, make_user):
    """A second browser, logged in as a new user of ``role``."""
    from tests.factories import PASSWORD

    def login(role: str):
        second = app.test_client()
        user = make_user(role=role)
        assert second.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
        return second, user

    return login


def attempt_of(student, quiz):
    return db.session.scalar(select(QuizAttempt).where(QuizAttempt.user_id == student.id,
                                                       QuizAttempt.quiz_id == quiz.id))


@pytest.fixture
def student_setup(login_as):
    student = login_as("student")
    teacher = create_user("faculty")
    course = make_course(teacher)
    enroll(student, course)
    quiz, questions = full_quiz(course, time_limit_minutes=30)
    committed()
    return student, course, quiz, questions


# ------------------------------------------------------------------ students


def test_quiz_page_shows_rules_and_start(client, student_setup):
    _, _, quiz, _ = student_setup
    body = client.get(f"/learning/quizzes/{quiz.id}").get_data(as_text=True)
    assert quiz.title in body and "30 minutes" in body and "Start attempt" in body
    assert "10 points" in body


def test_start_take_and_submit_without_javascript(client, student_setup):
    student, _, quiz, questions = student_setup
    response = client.post(f"/learning/quizzes/{quiz.id}/start")
    attempt = attempt_of(student, quiz)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/learning/attempts/{attempt.id}")
    page = client.get(f"/learning/attempts/{attempt.id}").get_data(as_text=True)
    assert page.count('class="attempt-question"') == 6
    assert f'data-deadline="{attempt.deadline_at.isoformat()}"' in page
    assert 'src="/static/js/quiz.js"' in page and "<script>" not in page
    single = options_of(questions["single"])
    form = {f"q-{questions['single'].id}": single["Paris"], f"q-{questions['short'].id}": "ada lovelace",
            f"q-{questions['numeric'].id}": "3.14"}
    saved = client.post(f"/learning/attempts/{attempt.id}/save", data=form)
    assert saved.status_code == 302
    reloaded = client.get(f"/learning/attempts/{attempt.id}").get_data(as_text=True)
    assert re.search(rf'value="{single["Paris"]}"\s+checked', reloaded)  # survives a reload
    assert 'value="ada lovelace"' in reloaded and 'value="3.14"' in reloaded
    done = client.post(f"/learning/attempts/{attempt.id}/submit", data={f"q-{questions['essay'].id}": "My essay"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/result")
    db.session.refresh(attempt)
    assert attempt.status == AttemptStatus.SUBMITTED  # the essay waits
    result = client.get(f"/learning/attempts/{attempt.id}/result").get_data(as_text=True)
    assert "graded by hand" in result and "Your answers" in result and "correct answer" in result


def test_the_result_page_leads_back_to_the_course_and_its_quizzes(client, student_setup):
    student, course, quiz, _ = student_setup
    attempt = quizzes.start_attempt(student, quiz.id)
    quizzes.submit_attempt(student, attempt.id)
    committed()
    for headers in ({}, {"HX-Request": "true"}):  # boosted navigation gets the same links
        response = client.get(f"/learning/attempts/{attempt.id}/result", headers=headers)
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert f'href="/learning/courses/{course.slug}#outline-head" role="button">Back to the course</a>' in body
        assert f'<a href="/learning/courses/{course.id}/quizzes/available"' in body
        assert f"<li><a href=\"/learning/courses/{course.slug}\">{course.title}</a></li>" in body  # breadcrumb


def test_autosave_with_htmx_returns_the_saved_fragment(client, student_setup):
    student, _, quiz, questions = student_setup
    client.post(f"/learning/quizzes/{quiz.id}/start", headers=HX)
    attempt = attempt_of(student, quiz)
    q = questions["multiple"]
    opts = options_of(q)
    response = client.post(f"/learning/attempts/{attempt.id}/answers/{q.id}",
                           data={f"q-{q.id}": [opts["2"], opts["3"]]}, headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and f'id="saved-{q.id}"' in body and "Saved" in body
    assert "<html" not in body
    answer = db.session.scalar(select(Answer).where(Answer.attempt_id == attempt.id))
    assert sorted(answer.selected_option_ids) == sorted([opts["2"], opts["3"]])
    bad = client.post(f"/learning/attempts/{attempt.id}/answers/{questions['numeric'].id}",
                      data={f"q-{questions['numeric'].id}": "lots"}, headers=HX)
    assert bad.status_code == 422 and "Enter a number" in bad.get_data(as_text=True)
    plain = client.post(f"/learning/attempts/{attempt.id}/answers/{questions['numeric'].id}",
                        data={f"q-{questions['numeric'].id}": "3"})
    assert plain.status_code == 302  # without htmx: back to the page


def test_saving_after_the_deadline_is_refused_with_a_message(client, student_setup, monkeypatch):
    student, _, quiz, questions = student_setup
    client.post(f"/learning/quizzes/{quiz.id}/start")
    attempt = attempt_of(student, quiz)
    later = attempt.deadline_at + timedelta(seconds=1)
    monkeypatch.setattr("portal.db.base.utcnow", lambda: later)
    q = questions["short"]
    response = client.post(f"/learning/attempts/{attempt.id}/answers/{q.id}", data={f"q-{q.id}": "late"}, headers=HX)
    assert response.status_code == 204 and response.headers["HX-Location"].endswith(f"/attempts/{attempt.id}/result")
    db.session.refresh(attempt)
    assert attempt.status == AttemptStatus.GRADED and attempt.auto_submitted  # closed, nothing to grade by hand
    assert attempt.score == 0
    assert db.session.scalar(select(func.count()).select_from(Answer).where(Answer.attempt_id == attempt.id)) == 0
    result = client.get(f"/learning/attempts/{attempt.id}/result").get_data(as_text=True)
    assert "Time is up" in result and "handed in automatically" in result


def test_opening_an_expired_attempt_closes_it(client, student_setup, monkeypatch):
    student, _, quiz, _ = student_setup
    client.post(f"/learning/quizzes/{quiz.id}/start")
    attempt = attempt_of(student, quiz)
    later = attempt.deadline_at + timedelta(minutes=1)
    monkeypatch.setattr("portal.db.base.utcnow", lambda: later)
    response = client.get(f"/learning/attempts/{attempt.id}")
    assert response.status_code == 302 and response.headers["Location"].endswith("/result")
    db.session.refresh(attempt)
    assert attempt.auto_submitted and attempt.status != AttemptStatus.IN_PROGRESS


def test_refusals_are_shown_on_the_quiz_page(client, student_setup):
    _, _, quiz, _ = student_setup
    quiz.closes_at = utcnow() - timedelta(minutes=1)
    quiz.opens_at = utcnow() - timedelta(hours=1)
    db.session.flush()
    assert "This quiz has closed." in client.get(f"/learning/quizzes/{quiz.id}").get_data(as_text=True)
    response = client.post(f"/learning/quizzes/{quiz.id}/start", follow_redirects=True)
    assert "This quiz has closed." in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(QuizAttempt).where(QuizAttempt.quiz_id == quiz.id)) == 0


def test_another_students_attempt_is_404_and_unchanged(client, other_client, student_setup):
    owner, course, quiz, questions = student_setup
    client.post(f"/learning/quizzes/{quiz.id}/start")
    attempt = attempt_of(owner, quiz)
    client, intruder = other_client("student")
    enroll(intruder, course)
    committed()
    q = questions["essay"]
    for method, url in [("get", f"/learning/attempts/{attempt.id}"),
                        ("get", f"/learning/attempts/{attempt.id}/result"),
                        ("post", f"/learning/attempts/{attempt.id}/answers/{q.id}"),
                        ("post", f"/learning/attempts/{attempt.id}/save"),
                        ("post", f"/learning/attempts/{attempt.id}/submit")]:
        response = getattr(client, method)(url, data={f"q-{q.id}": "vandal"})
        assert response.status_code == 404, url
        assert getattr(client, method)(url, data={f"q-{q.id}": "v"}, headers=HX).status_code == 404
    db.session.refresh(attempt)
    assert attempt.status == AttemptStatus.IN_PROGRESS
    assert db.session.scalar(select(func.count()).select_from(Answer).where(Answer.attempt_id == attempt.id)) == 0


def test_a_question_of_another_quiz_is_404(client, student_setup):
    student, course, quiz, _ = student_setup
    other_quiz, other_questions = full_quiz(course)
    committed()
    client.post(f"/learning/quizzes/{quiz.id}/start")
    attempt = attempt_of(student, quiz)
    q = other_questions["essay"]
    response = client.post(f"/learning/attempts/{attempt.id}/answers/{q.id}", data={f"q-{q.id}": "x"}, headers=HX)
    assert response.status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Answer).where(Answer.attempt_id == attempt.id)) == 0


def test_not_enrolled_students_see_nothing(client, login_as):
    login_as("student")
    course = make_course(create_user("faculty"))
    quiz, _ = full_quiz(course)
    committed()
    assert client.get(f"/learning/quizzes/{quiz.id}").status_code == 404
    assert client.post(f"/learning/quizzes/{quiz.id}/start").status_code == 404
    assert client.get(f"/learning/courses/{course.id}/quizzes/available").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(QuizAttempt).where(QuizAttempt.quiz_id == quiz.id)) == 0


def test_available_quizzes_list_only_published_ones(client, student_setup):
    _, course, quiz, _ = student_setup
    draft, _ = full_quiz(course, published=False, title="Hidden draft")
    committed()
    body = client.get(f"/learning/courses/{course.id}/quizzes/available").get_data(as_text=True)
    assert quiz.title in body and "Hidden draft" not in body
    assert client.get(f"/learning/quizzes/{draft.id}").status_code == 404


KIND_CYCLE = [QuestionKind.SINGLE, QuestionKind.MULTIPLE, QuestionKind.SHORT, QuestionKind.NUMERIC, QuestionKind.ESSAY]


@pytest.mark.parametrize("count", [5, 40])
def test_attempt_page_statement_budget(client, login_as, statements, count):
    student = login_as("student")
    course = make_course(create_user("faculty"))
    enroll(student, course)
    quiz = make_quiz(course)
    for index in range(count):
        kind = KIND_CYCLE[index % len(KIND_CYCLE)]
        extra = {"options": [("A", True), ("B", kind == QuestionKind.MULTIPLE), ("C", False)]} if index % 5 < 2 else {}
        if kind == QuestionKind.SHORT:
            extra = {"accepted_answers": ["x"], "match": "exact"}
        if kind == QuestionKind.NUMERIC:
            extra = {"numeric_answer": Decimal(1), "numeric_tolerance": Decimal(0)}
        add_question(quiz, kind, **extra)
    attempt = quizzes.start_attempt(student, quiz.id)
    for question_id in db.session.scalars(select(QuizQuestion.id).where(QuizQuestion.quiz_id == quiz.id)):
        quizzes.save_answer(student, attempt.id, question_id, quizzes.AnswerInput(text="x", number="1"))
    client.get(f"/learning/attempts/{attempt.id}")  # warm
    with statements() as counted:
        response = client.get(f"/learning/attempts/{attempt.id}")
    assert response.status_code == 200
    assert response.get_data(as_text=True).count('class="attempt-question"') == count
    assert counted.count <= 12, counted.statements
    quizzes.submit_attempt(student, attempt.id)
    client.get(f"/learning/attempts/{attempt.id}/result")
    with statements() as counted:
        response = client.get(f"/learning/attempts/{attempt.id}/result")
    assert response.status_code == 200 and response.get_data(as_text=True).count("<article class=\"result-question") == count
    assert counted.count <= 12, counted.statements


def test_attempt_page_statements_do_not_grow(client, login_as, statements):
    student = login_as("student")
    course = make_course(create_user("faculty"))
    enroll(student, course)
    small_quiz, _ = full_quiz(course)
    big_quiz, _ = full_quiz(course)
    for _ in range(34):
        add_question(big_quiz, QuestionKind.MULTIPLE, options=[("A", True), ("B", True), ("C", False)])

    def measure(quiz, path="") -> int:
        attempt = quizzes.start_attempt(student, quiz.id)
        client.get(f"/learning/attempts/{attempt.id}{path}")
        with statements() as counted:
            assert client.get(f"/learning/attempts/{attempt.id}{path}").status_code == 200
        return counted.count

    assert measure(small_quiz) == measure(big_quiz) <= 12
    for quiz in (small_quiz, big_quiz):
        quizzes.submit_attempt(student, attempt_of(student, quiz).id)
    results = []
    for quiz in (small_quiz, big_quiz):
        attempt = attempt_of(student, quiz)
        client.get(f"/learning/attempts/{attempt.id}/result")
        with statements() as counted:
            assert client.get(f"/learning/attempts/{attempt.id}/result").status_code == 200
        results.append(counted.count)
    assert results[0] == results[1] <= 12


# ------------------------------------------------------------------ faculty


@pytest.fixture
def teacher_setup(login_as):
    teacher = login_as("faculty")
    course = make_course(teacher)
    committed()
    return teacher, course


def test_faculty_builds_and_publishes_a_quiz(client, teacher_setup):
    teacher, course = teacher_setup
    assert client.get(f"/learning/courses/{course.id}/quizzes/new").status_code == 200
    bad = client.post(f"/learning/courses/{course.id}/quizzes/new", data={"title": "", "scoring": "highest",
                                                                         "show_answers": "after_submit",
                                                                         "passing_percent": "60"})
    assert bad.status_code == 422 and "Give the quiz a title." in bad.get_data(as_text=True)
    created = client.post(f"/learning/courses/{course.id}/quizzes/new", data={
        "title": "Checkpoint", "scoring": "latest", "show_answers": "never", "passing_percent": "70",
        "time_limit_minutes": "15", "max_attempts": "2", "opens_at": "2031-01-01T09:00",
        "closes_at": "2031-01-02T09:00", "shuffle_questions": "y"})
    assert created.status_code == 302
    quiz = db.session.scalar(select(quizzes.Quiz).where(quizzes.Quiz.course_id == course.id))
    assert (quiz.title, quiz.time_limit_minutes, quiz.max_attempts, quiz.shuffle_questions, quiz.shuffle_options,
            quiz.opens_at.hour, quiz.opens_at.utcoffset()) == ("Checkpoint", 15, 2, True, False, 9, timedelta(0))
    edit = client.get(f"/learning/quizzes/{quiz.id}/edit").get_data(as_text=True)
    assert 'value="Checkpoint"' in edit and "No questions yet" in edit

    refused = client.post(f"/learning/quizzes/{quiz.id}/publish", data={"published": "1"}, headers=HX)
    assert refused.status_code == 422 and "at least one question" in refused.get_data(as_text=True)

    wrong = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data={
        "kind": "single", "prompt": "Capital of France?", "points": "2",
        "option_text": ["Paris", "Rome", ""], "option_feedback": ["", "", ""], "correct": ["0", "1"]})
    assert wrong.status_code == 422 and "exactly one" in wrong.get_data(as_text=True)
    assert 'value="Rome"' in wrong.get_data(as_text=True)  # what was typed is kept
    ok = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data={
        "kind": "single", "prompt": "Capital of France?", "points": "2",
        "option_text": ["Paris", "Rome", ""], "option_feedback": ["Yes", "", ""], "correct": ["0"]})
    assert ok.status_code == 302
    client.post(f"/learning/quizzes/{quiz.id}/questions/new", data={
        "kind": "short", "prompt": "Who?", "points": "1", "accepted_answers": "Ada\nAda Lovelace", "match": "exact"})
    client.post(f"/learning/quizzes/{quiz.id}/questions/new", data={
        "kind": "numeric", "prompt": "Pi?", "points": "1", "numeric_answer": "3.14", "numeric_tolerance": "0.01"})
    bad_pattern = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data={
        "kind": "short", "prompt": "P", "points": "1", "accepted_answers": "(a+)+", "match": "pattern"})
    assert bad_pattern.status_code == 422 and "repeats a group" in bad_pattern.get_data(as_text=True)
    prompts = db.session.scalars(select(QuizQuestion.prompt).where(QuizQuestion.quiz_id == quiz.id)
                                 .order_by(QuizQuestion.position)).all()
    assert prompts == ["Capital of France?", "Who?", "Pi?"]

    published = client.post(f"/learning/quizzes/{quiz.id}/publish", data={"published": "1"}, headers=HX)
    assert published.status_code == 200 and "Unpublish" in published.get_data(as_text=True)
    assert "<html" not in published.get_data(as_text=True)
    db.session.refresh(quiz)
    assert quiz.published


def test_faculty_edits_moves_and_deletes_questions(client, teacher_setup):
    _, course = teacher_setup
    quiz, questions = full_quiz(course)
    single = questions["single"]
    form = client.get(f"/learning/questions/{single.id}/edit").get_data(as_text=True)
    assert 'value="Paris"' in form and 'name="correct" value="0" checked' in form
    saved = client.post(f"/learning/questions/{single.id}/edit", data={
        "kind": "single", "prompt": "Capital?", "points": "1",
        "option_text": ["Paris", "Lyon"], "option_feedback": ["", ""], "correct": ["1"]})
    assert saved.status_code == 302
    db.session.refresh(single)
    assert single.prompt == "Capital?" and options_of(single).keys() == {"Paris", "Lyon"}

    moved = client.post(f"/learning/questions/{questions['essay'].id}/move", data={"direction": "up"}, headers=HX)
    body = moved.get_data(as_text=True)
    assert moved.status_code == 200 and 'id="question-list"' in body and "<html" not in body
    assert body.index(f"question-{questions['essay'].id}") < body.index(f"question-{questions['numeric'].id}")
    short_id = questions["short"].id
    deleted = client.post(f"/learning/questions/{short_id}/delete")
    assert deleted.status_code == 302
    assert db.session.get(QuizQuestion, short_id) is None


def test_settings_save_with_and_without_htmx(client, teacher_setup):
    _, course = teacher_setup
    quiz, _ = full_quiz(course)
    data = {"title": "Renamed", "scoring": "average", "show_answers": "after_close", "passing_percent": "55"}
    fragment = client.post(f"/learning/quizzes/{quiz.id}/edit", data=data, headers=HX)
    assert fragment.status_code == 200 and "Settings saved." in fragment.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    data["passing_percent"] = "150"
    refused = client.post(f"/learning/quizzes/{quiz.id}/edit", data=data)
    assert refused.status_code == 422 and "between 0 and 100" in refused.get_data(as_text=True)
    db.session.refresh(quiz)
    assert (quiz.title, quiz.passing_percent) == ("Renamed", Decimal("55.00"))


def test_faculty_of_another_course_sees_nothing(client, login_as):
    login_as("faculty")
    other_course = make_course(create_user("faculty"))
    quiz, questions = full_quiz(other_course)
    committed()
    for url in (f"/learning/courses/{other_course.id}/quizzes", f"/learning/quizzes/{quiz.id}/edit",
                f"/learning/quizzes/{quiz.id}/grading", f"/learning/quizzes/{quiz.id}/results",
                f"/learning/questions/{questions['single'].id}/edit"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/learning/questions/{questions['single'].id}/delete").status_code == 404
    assert client.post(f"/learning/quizzes/{quiz.id}/publish", data={"published": "0"}).status_code == 404
    assert client.post(f"/learning/courses/{other_course.id}/quizzes/new", data={"title": "X"}).status_code == 404
    assert db.session.get(QuizQuestion, questions["single"].id) is not None
    db.session.refresh(quiz)
    assert quiz.published


def test_an_assistant_grades_but_does_not_edit(client, login_as):
    assistant = login_as("faculty")
    course = make_course(create_user("faculty"))
    add_staff(course, assistant, ManagementRole.ASSISTANT)
    quiz, _ = full_quiz(course)
    committed()
    assert client.get(f"/learning/quizzes/{quiz.id}/grading").status_code == 200
    assert client.get(f"/learning/quizzes/{quiz.id}/edit").status_code == 403
    assert client.get(f"/learning/courses/{course.id}/quizzes/new").status_code == 403


def test_grading_queue_and_grade(client, teacher_setup):
    _, course = teacher_setup
    student = create_user("student")
    enroll(student, course)
    quiz, questions = full_quiz(course, passing_percent=10)
    attempt = quizzes.start_attempt(student, quiz.id)
    quizzes.save_answer(student, attempt.id, questions["essay"].id, quizzes.AnswerInput(text="Essay by the student"))
    quizzes.submit_attempt(student, attempt.id)
    essay = db.session.scalar(select(Answer).where(Answer.question_id == questions["essay"].id))
    committed()
    page = client.get(f"/learning/quizzes/{quiz.id}/grading").get_data(as_text=True)
    assert "Essay by the student" in page and student.full_name in page
    too_many = client.post(f"/learning/answers/{essay.id}/grade", data={"points": "5"}, headers=HX)
    assert too_many.status_code == 422 and "between 0 and 2" in too_many.get_data(as_text=True)
    db.session.refresh(essay)
    assert essay.points_awarded is None
    graded = client.post(f"/learning/answers/{essay.id}/grade", data={"points": "2", "feedback": "Well argued"},
                         headers=HX)
    assert graded.status_code == 200 and "attempt is complete" in graded.get_data(as_text=True)
    db.session.refresh(attempt)
    assert attempt.status == AttemptStatus.GRADED and attempt.score == Decimal("2.00") and attempt.passed
    assert "Nothing to grade" in client.get(f"/learning/quizzes/{quiz.id}/grading").get_data(as_text=True)
    results = client.get(f"/learning/quizzes/{quiz.id}/results").get_data(as_text=True)
    assert student.full_name in results and "20.0%" in results


def test_students_cannot_reach_faculty_pages(client, student_setup):
    _, course, quiz, questions = student_setup
    assert client.get(f"/learning/quizzes/{quiz.id}/edit").status_code == 403
    assert client.post(f"/learning/questions/{questions['single'].id}/delete").status_code == 403
    assert client.get(f"/learning/courses/{course.id}/quizzes").status_code == 403
