"""The learning path page and its forms, with and without HX-Request: who may see it, CSRF,
double submits, the statement budget."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.learning.education import services as education
from portal.learning.tutoring import paths
from portal.learning.tutoring.insights import refresh_insights
from portal.learning.tutoring.models import LearningPath, PathStatus, PathStep, StepKind, StepStatus
from tests.learning.tutoring.factories.paths import build_course, complete_lessons, enrol, take_quiz

HX = {"HX-Request": "true"}
BUDGET = 12


def text(response) -> str:
    return response.get_data(as_text=True)


def path_url(built) -> str:
    return f"/learning/courses/{built.course.slug}/path"


def active_paths(student) -> int:
    return db.session.scalar(select(func.count()).select_from(LearningPath).where(
        LearningPath.user_id == student.id, LearningPath.status == PathStatus.ACTIVE))


@pytest.fixture
def student(login_as):
    return login_as("student")


@pytest.fixture
def studying(student):
    """A course where the student has a weak topic (Loops) and the next module to do."""
    built = build_course(questions=4, lessons=2, estimated_hours=6)
    enrol(student, built)
    complete_lessons(student, built.topic("Loops").lessons)
    take_quiz(student, built.topic("Loops").quiz, correct=1)
    return built


# ------------------------------------------------------------------ the page


def test_the_course_page_of_an_enrolled_student_links_to_the_path_and_the_tutor(client, student, studying):
    slug = studying.course.slug
    body = text(client.get(f"/learning/courses/{slug}"))
    assert f'href="/learning/courses/{slug}/path">Your learning path</a>' in body
    assert f'href="/learning/courses/{slug}/tutor">Tutor: ask Elara</a>' in body


def test_first_visit_creates_the_path_and_shows_it(client, student, studying):
    assert active_paths(student) == 0
    response = client.get(path_url(studying))
    assert response.status_code == 200
    body = text(response)
    assert active_paths(student) == 1
    assert "Your learning path" in body and "<html" in body
    # Steps with links, difficulty badges, the progress bar.
    lesson = studying.topic("Loops").lessons[0]
    assert f'href="/learning/courses/{studying.course.slug}/lessons/{lesson.id}"' in body
    assert f'href="/learning/quizzes/{studying.topic("Loops").quiz.id}"' in body
    assert f'href="/learning/assignments/{studying.topic("Loops").assignment.id}"' in body
    assert 'class="difficulty difficulty-introductory"' in body and 'class="difficulty difficulty-challenge"' in body
    assert re.search(r'<progress value="0" max="\d+" aria-label="Steps done">', body)
    # The insights with what they rest on.
    assert "Loops needs more work: you answered 1 of 4 questions correctly (mastery 25%)." in body
    assert "Based on 4 quiz answers, 2 of 2 lessons." in body
    assert response.headers["Vary"] and "HX-Request" in response.headers["Vary"]
    client.get(path_url(studying))
    assert active_paths(student) == 1  # a second visit shows the same path


def test_done_steps_are_ticked(client, student, studying):
    client.get(path_url(studying))
    education.complete_lesson(student, studying.topic("Functions").lessons[0].id)
    body = text(client.get(path_url(studying)))
    assert 'class="path-step is-done"' not in body  # Functions is not on the path yet
    path = paths.current_path(student.id, studying.course.id)
    review = db.session.scalar(select(PathStep).where(PathStep.path_id == path.id,
                                                      PathStep.kind == StepKind.REVIEW_LESSON).limit(1))
    paths.mark_reviewed(student.id, studying.course.id, review.id)
    body = text(client.get(path_url(studying)))
    assert body.count('class="path-step is-done"') == 1 and "Done " in body
    assert re.search(r'<progress value="1" max="\d+"', body)


def test_the_page_for_htmx_is_the_fragment(client, student, studying):
    response = client.get(path_url(studying), headers=HX)
    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body and 'id="learning-path"' in body
    assert "HX-Request" in response.headers["Vary"]


def test_an_empty_path_says_all_caught_up(client, student):
    built = build_course(titles=("Only",), questions=1, lessons=1, assignments=False)
    enrol(student, built)
    complete_lessons(student, built.topic("Only").lessons)
    take_quiz(student, built.topic("Only").quiz, correct=1)
    body = text(client.get(path_url(built)))
    assert "You are all caught up" in body


def test_the_page_stays_within_budget_whatever_the_path(client, student, statements):
    small = build_course(titles=("A",), questions=1, lessons=1, assignments=False)
    large = build_course(titles=tuple(f"T{n}" for n in range(6)), questions=5, lessons=5)
    counts = []
    for built in (small, large):
        enrol(student, built)
        for topic in built.topics:
            complete_lessons(student, topic.lessons[:3])
            take_quiz(student, topic.quiz, correct=0)
        refresh_insights(student.id, built.course.id)
        client.get(path_url(built))  # creates the path
        with statements() as counted:
            response = client.get(path_url(built))
        assert response.status_code == 200
        counts.append(counted.count)
    assert counts[0] == counts[1] <= BUDGET, counts
    assert text(response).count('<li class="path-step') == paths.MAX_STEPS


def test_the_first_visit_generates_with_a_fixed_number_of_statements(client, student, statements):
    """The first visit writes the path: more than a plain page, but as many statements for a
    large course as for a small one."""
    small = build_course(titles=("A",), questions=1, lessons=1)
    large = build_course(titles=tuple(f"T{n}" for n in range(6)), questions=5, lessons=5)
    counts = []
    for built in (small, large):
        enrol(student, built)
        complete_lessons(student, built.topics[0].lessons)
        take_quiz(student, built.topics[0].quiz, correct=0)
        url = path_url(built)
        with statements() as counted:
            assert client.get(url).status_code == 200
        counts.append(counted.count)
    assert counts[0] == counts[1] <= BUDGET + 8, counts


# ------------------------------------------------------------------ who may see it


def test_not_enrolled_is_forbidden_and_unknown_is_not_found(client, student):
    built = build_course(questions=1)
    db.session.commit()  # an error page rolls the request's transaction back: keep the course
    response = client.get(path_url(built))
    assert response.status_code == 403 and "Enrol in" in text(response)
    assert client.get("/learning/courses/no-such-course/path").status_code == 404
    assert client.post(f"{path_url(built)}/regenerate").status_code == 403
    fragment = client.get(path_url(built), headers=HX)
    assert fragment.status_code == 403 and "<html" not in text(fragment)


def test_a_student_who_left_is_forbidden(client, student, studying):
    education.leave(student, studying.course.id)
    assert client.get(path_url(studying)).status_code == 403


def test_a_draft_course_is_not_found(client, student, studying):
    from portal.learning.education.models import CourseStatus

    studying.course.status = CourseStatus.DRAFT
    db.session.flush()
    assert client.get(path_url(studying)).status_code == 404


@pytest.mark.parametrize("role", ["faculty", "compliance", "admin"])
def test_other_roles_are_refused(client, login_as, role):
    built = build_course(questions=1)
    login_as(role)
    assert client.get(path_url(built)).status_code == 403
    assert client.post(f"{path_url(built)}/regenerate").status_code == 403
    assert client.get(path_url(built), headers=HX).status_code == 403


def test_anonymous_is_sent_to_login(client):
    built = build_course(questions=1)
    response = client.get(path_url(built))
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert client.get(path_url(built), headers=HX).status_code == 401


# ------------------------------------------------------------------ regenerate


def test_regenerate_without_javascript_redirects_back(client, student, studying):
    client.get(path_url(studying))
    old = paths.current_path(student.id, studying.course.id)
    response = client.post(f"{path_url(studying)}/regenerate")
    assert response.status_code == 302 and response.headers["Location"].endswith(path_url(studying))
    db.session.refresh(old)
    assert old.status == PathStatus.REPLACED and active_paths(student) == 1
    assert "A new path is ready" in text(client.get(path_url(studying)))


def test_regenerate_with_htmx_swaps_the_path(client, student, studying):
    client.get(path_url(studying))
    response = client.post(f"{path_url(studying)}/regenerate", headers=HX)
    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body and body.lstrip().startswith('<section id="learning-path"')
    assert "A new path is ready" in body and "Regenerate my path" in body


def test_a_double_submit_of_regenerate_leaves_one_active_path(client, student, studying):
    client.get(path_url(studying))
    first = client.post(f"{path_url(studying)}/regenerate", headers=HX)
    second = client.post(f"{path_url(studying)}/regenerate", headers=HX)
    assert first.status_code == second.status_code == 200
    assert active_paths(student) == 1
    statuses = db.session.scalars(select(LearningPath.status).where(LearningPath.user_id == student.id)).all()
    assert sorted(s.value for s in statuses) == ["active", "replaced", "replaced"]


def test_regenerate_needs_a_csrf_token(client, student, studying):
    response = client.post(f"{path_url(studying)}/regenerate", csrf=False)
    assert response.status_code == 400
    assert client.post(f"{path_url(studying)}/regenerate", headers=HX, csrf=False).status_code == 400
    assert active_paths(student) == 0


def test_regenerate_with_the_pages_csrf_token(client, student, studying):
    page = text(client.get(path_url(studying)))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(f"{path_url(studying)}/regenerate", data={"csrf_token": token}, csrf=False)
    assert response.status_code == 302
    hx = client.post(f"{path_url(studying)}/regenerate", headers={**HX, "X-CSRFToken": token}, csrf=False)
    assert hx.status_code == 200


# ------------------------------------------------------------------ "I have reviewed it"


def review_step(student, built) -> PathStep:
    path = paths.current_path(student.id, built.course.id)
    return db.session.scalar(select(PathStep).where(PathStep.path_id == path.id,
                                                    PathStep.kind == StepKind.REVIEW_LESSON).limit(1))


def test_mark_reviewed_with_and_without_htmx(client, student, studying):
    client.get(path_url(studying))
    step = review_step(student, studying)
    url = f"{path_url(studying)}/steps/{step.id}/reviewed"
    response = client.post(url, headers=HX)
    assert response.status_code == 200 and "Marked as reviewed." in text(response)
    assert "<html" not in text(response)
    db.session.refresh(step)
    assert step.status == StepStatus.DONE
    again = client.post(url)  # a double submit changes nothing more
    assert again.status_code == 302
    assert paths.current_path(student.id, studying.course.id).steps_done == 1


def test_mark_reviewed_refuses_other_steps(client, student, studying, make_user):
    client.get(path_url(studying))
    path = paths.current_path(student.id, studying.course.id)
    retry = db.session.scalar(select(PathStep).where(PathStep.path_id == path.id,
                                                     PathStep.kind == StepKind.RETRY_QUIZ).limit(1))
    assert client.post(f"{path_url(studying)}/steps/{retry.id}/reviewed").status_code == 404
    other = make_user("student")
    enrol(other, studying)
    paths.generate_path(other.id, studying.course.id)
    theirs = db.session.scalar(select(PathStep).where(PathStep.user_id == other.id).limit(1))
    assert client.post(f"{path_url(studying)}/steps/{theirs.id}/reviewed").status_code == 404
    assert client.post(f"{path_url(studying)}/steps/not-a-uuid/reviewed").status_code == 404
