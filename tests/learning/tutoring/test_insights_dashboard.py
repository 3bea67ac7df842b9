"""The student dashboard's Insights card: weak and strong topics and pace per active course with
what each rests on, links to the paths, and one statement for all of it."""

from __future__ import annotations

from portal.learning.education import services as education
from portal.learning.tutoring.insights import refresh_insights
from tests.learning.tutoring.factories.paths import build_course, complete_lessons, enrol, take_quiz

BUDGET = 12


def text(response) -> str:
    return response.get_data(as_text=True)


def insights_card(response) -> str:
    body = text(response)
    start = body.index('id="insights"')
    return body[start:body.index("</article>", start)]


def studied(student, title: str, correct: dict[str, int]):
    built = build_course(title=title, estimated_hours=5, questions=3)
    enrol(student, built)
    for topic in built.topics:
        complete_lessons(student, topic.lessons[:1])
        if topic.module.title in correct:
            take_quiz(student, topic.quiz, correct=correct[topic.module.title])
    refresh_insights(student.id, built.course.id)
    return built


def test_the_card_shows_insights_with_their_basis_and_the_path_link(client, login_as):
    student = login_as("student")
    built = studied(student, "Programming", {"Loops": 0, "Functions": 3})
    card = insights_card(client.get("/dashboard"))
    assert "Programming" in card
    assert "Loops needs more work: you answered 0 of 3 questions correctly (mastery 0%)." in card
    assert "Functions is a strength" in card
    assert "Based on 3 quiz answers, 1 of 2 lessons." in card
    assert "You are " in card and "based on 3 of 6 lessons and the course&#39;s estimated hours" in card.lower()
    assert f'href="/learning/courses/{built.course.slug}/path"' in card


def test_a_course_without_insights_still_links_its_path(client, login_as):
    student = login_as("student")
    built = build_course(title="Fresh start", questions=1)
    enrol(student, built)
    card = insights_card(client.get("/dashboard"))
    assert "Nothing to say yet" in card and f"/learning/courses/{built.course.slug}/path" in card


def test_courses_left_or_completed_are_not_in_the_card(client, login_as):
    student = login_as("student")
    built = studied(student, "Gone away", {"Loops": 0})
    education.leave(student, built.course.id)
    card = insights_card(client.get("/dashboard"))
    assert "Gone away" not in card and "Enrol in a course" in card


def test_the_dashboard_stays_within_budget_with_insights(client, login_as, statements):
    """One statement for every insight of every active course: a dashboard with five courses
    full of insights costs what one with a single course does."""
    student = login_as("student")
    studied(student, "Course 0", {"Loops": 0})
    client.get("/dashboard")
    with statements() as one:
        assert client.get("/dashboard").status_code == 200
    for n in range(1, 5):
        studied(student, f"Course {n}", {"Loops": 0, "Functions": 3, "Classes": 1})
    client.get("/dashboard")
    with statements() as many:
        response = client.get("/dashboard")
    assert response.status_code == 200
    assert text(response).count("needs more work") >= 9
    assert one.count == many.count <= BUDGET, many.statements
    assert sum("learning_insights" in s for s in many.statements) == 1
