"""Quiz item analysis (Moodle's quiz statistics) against a worked example, through the query
and through the teacher's page."""

from __future__ import annotations

import re
from decimal import Decimal

from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment.item_analysis import quiz_items, statistics
from portal.learning.assessment.models import Answer, AttemptStatus, QuestionKind, QuizAttempt
from tests.factories import create_user
from tests.learning.factories.quiz import add_question, enroll, make_course, make_quiz, options_of

D = Decimal

#: Points awarded (each question is worth 1), one row per student's first attempt.
#:          Q1 Q2 Q3
MATRIX = [[1, 1, 1],   # S1
          [1, 0, 1],   # S2
          [0, 1, 0],   # S3
          [0, 0, 0]]   # S4
#: Worked by hand. Facility = mean score / points: every question was answered right by 2 of 4,
#: so F = 50 for each. Discrimination = 100 x r(question, rest of the quiz):
#: Q1: x = 1,1,0,0; rest (Q2+Q3) = 2,1,1,0; means 0.5 and 1; cov = (0.5*1 + 0.5*0 - 0.5*0 - 0.5*-1)/4
#:     = 0.25; var x = 0.25; var rest = (1+0+0+1)/4 = 0.5; r = 0.25 / sqrt(0.25*0.5) = 0.70711 -> 70.71.
#: Q2: x = 1,0,1,0; rest (Q1+Q3) = 2,2,0,0; cov = (0.5*1 - 0.5*1 + 0.5*-1 - 0.5*-1)/4 = 0 -> 0.
#: Q3: x = 1,1,0,0; rest (Q1+Q2) = 2,1,1,0: as Q1 -> 70.71.
EXPECTED = [(D("50"), D("70.71")), (D("50"), D("0")), (D("50"), D("70.71"))]


def test_the_figures_of_the_worked_example():
    figures = statistics([[D(v) for v in row] for row in MATRIX], [D(1)] * 3)
    assert [(f.facility, f.discrimination) for f in figures] == EXPECTED


def test_a_question_everyone_answers_alike_has_no_discrimination():
    figures = statistics([[D(1), D(1)], [D(1), D(0)]], [D(1), D(1)])
    assert figures[0].facility == D(100)
    assert figures[0].discrimination is None


def test_partial_points_count_as_a_share_of_the_question():
    figures = statistics([[D(2), D(1)], [D(1), D(0)]], [D(4), D(1)])
    assert figures[0].facility == D("37.5")  # (2 + 1) / (2 x 4)


def _quiz_of_the_example():
    teacher = create_user("faculty")
    course = make_course(teacher)
    quiz = make_quiz(course)
    questions = [add_question(quiz, QuestionKind.SINGLE, prompt=f"Question {n}?",
                              options=[("Right", True), ("Wrong", False)]) for n in (1, 2, 3)]
    now = utcnow()
    for row in MATRIX:
        student = create_user("student")
        enroll(student, course)
        attempts = []
        for number in (1, 2):  # a second attempt, all right: only the first counts
            attempt = QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=number, status=AttemptStatus.GRADED,
                                  started_at=now, submitted_at=now, score=D(sum(row)), max_score=D(3),
                                  percent=D(100 * sum(row)) / 3, passed=sum(row) >= 2)
            db.session.add(attempt)
            attempts.append(attempt)
        db.session.flush()
        for question, points in zip(questions, row, strict=True):
            options = options_of(question)
            chosen = options["Right"] if points else options["Wrong"]
            db.session.add(Answer(attempt_id=attempts[0].id, question_id=question.id, selected_option_ids=[chosen],
                                  saved_at=now, points_awarded=D(points), is_correct=bool(points)))
            db.session.add(Answer(attempt_id=attempts[1].id, question_id=question.id,
                                  selected_option_ids=[options["Right"]], saved_at=now, points_awarded=D(1),
                                  is_correct=True))
    db.session.flush()
    return teacher, course, quiz


def test_the_query_reads_first_attempts_and_gives_the_worked_figures_and_choice_shares():
    _, _, quiz = _quiz_of_the_example()
    analysis = quiz_items(quiz.id)
    assert analysis.attempts == 4
    assert [(i.figures.facility, i.figures.discrimination) for i in analysis.items] == EXPECTED
    assert [(o.text, o.share) for o in analysis.items[1].options] == [("Right", D("50.0")), ("Wrong", D("50.0"))]
    assert analysis.weakest.position == 2
    assert [i.weak for i in analysis.items] == [False, True, False]


def test_the_teacher_sees_the_weakest_question_marked(client, statements):
    teacher, course, quiz = _quiz_of_the_example()
    from tests.factories import PASSWORD

    client.post("/auth/login", data={"email": teacher.email, "password": PASSWORD})
    url = f"/learning/manage/{course.id}/analytics"
    client.get(url)  # warm up
    with statements() as counted:
        response = client.get(url)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r"Weakest question: <strong>Q2</strong>", page)
    assert page.count('data-weak="true"') == 1
    assert counted.count <= 12, counted.statements
    # The quiz picker's htmx request gets the item analysis alone.
    fragment = client.get(f"{url}?quiz={quiz.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="items">') and "<html" not in fragment


def test_a_bad_quiz_reference_gets_a_message_not_an_error(client, login_as):
    teacher = login_as("faculty")
    course = make_course(teacher)
    make_quiz(course)
    response = client.get(f"/learning/manage/{course.id}/analytics?quiz=not-a-quiz")
    assert response.status_code == 400
    assert "that quiz reference is not valid" in response.get_data(as_text=True)


def test_a_teacher_of_another_course_is_refused(client, login_as):
    login_as("faculty")
    course = make_course(create_user("faculty"))
    assert client.get(f"/learning/manage/{course.id}/analytics").status_code == 403
