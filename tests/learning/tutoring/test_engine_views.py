"""Pages the tutor's engine touches: the course's lesson language on the course form (new and
settings, with and without htmx, a bad value refused), and the lesson page carrying the
anchors the tutor's citations link to."""

from __future__ import annotations

from portal.db import db
from portal.learning.education import services as education
from portal.learning.education.models import Course
from tests.learning.factories.manage import course_fields, form_data, make_course
from tests.learning.tutoring.factories.engine import course_with_lessons, passages_of

HX = {"HX-Request": "true"}


def fields(**overrides) -> dict:
    return form_data(course_fields(**overrides))


def test_the_settings_page_has_a_labelled_language_select_showing_the_course_language(client, login_as):
    me = login_as("faculty")
    course = make_course(me)
    course.language = "german"
    db.session.commit()
    page = client.get(f"/learning/manage/{course.id}/settings").get_data(as_text=True)
    assert '<label for="language">Lesson language' in page
    assert '<option selected value="german">German</option>' in page
    assert 'aria-describedby="language-hint"' in page


def test_changing_the_language_saves_and_reindexes_without_and_with_htmx(client, login_as):
    me = login_as("faculty")
    course, _module, lessons = course_with_lessons({"Épargne": "# Épargner\n\nIl faut épargner."}, instructor=me)
    db.session.commit()
    lesson = lessons["Épargne"]
    saved = client.post(f"/learning/manage/{course.id}/settings",
                        data=fields(title=course.title, slug=course.slug, language="french"))
    assert saved.status_code == 302
    assert db.session.get(Course, course.id).language == "french"
    assert {p.language for p in passages_of(lesson.id)} == {"french"}
    saved = client.post(f"/learning/manage/{course.id}/settings", headers=HX,
                        data=fields(title=course.title, slug=course.slug, language="spanish"))
    assert saved.status_code == 204 and saved.headers["HX-Location"].endswith(f"/learning/manage/{course.id}")
    assert {p.language for p in passages_of(lesson.id)} == {"spanish"}


def test_an_unknown_language_is_refused_with_a_message_and_nothing_changes(client, login_as):
    me = login_as("faculty")
    course, _module, lessons = course_with_lessons({"One": "# A\n\nText."}, instructor=me)
    db.session.commit()
    for headers in ({}, HX):
        bad = client.post(f"/learning/manage/{course.id}/settings", headers=headers,
                          data=fields(title="Kept Title Here", slug=course.slug, language="klingon"))
        body = bad.get_data(as_text=True)
        assert bad.status_code == 422
        assert "Choose the language the lessons are written in." in body
        assert ("<html" in body) == (not headers)
        assert 'value="Kept Title Here"' in body  # what was typed is kept
    db.session.expire_all()
    assert db.session.get(Course, course.id).language == "english"
    assert {p.language for p in passages_of(lessons["One"].id)} == {"english"}


def test_a_new_course_takes_the_chosen_language(client, login_as):
    login_as("faculty")
    created = client.post("/learning/manage/new", data=fields(title="Cours de cuisine", language="french"))
    assert created.status_code == 302
    course = db.session.scalar(db.select(Course).where(Course.title == "Cours de cuisine"))
    assert course.language == "french"


def test_a_post_without_a_language_keeps_the_course_language(client, login_as):
    me = login_as("faculty")
    course = make_course(me)
    course.language = "italian"
    db.session.commit()
    saved = client.post(f"/learning/manage/{course.id}/settings", data=fields(title=course.title, slug=course.slug))
    assert saved.status_code == 302
    assert db.session.get(Course, course.id).language == "italian"


def test_the_lesson_page_has_every_anchor_the_passages_cite(client, login_as):
    student = login_as("student")
    body = "Intro.\n\n# Watering plants\n\nWater.\n\n## Watering plants\n\nAgain.\n\n# Ça pousse !\n\nYes."
    course, _module, lessons = course_with_lessons({"Garden": body})
    education.enrol(student, course.id)
    db.session.commit()
    lesson = lessons["Garden"]
    page = client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}").get_data(as_text=True)
    anchors = [p.anchor for p in passages_of(lesson.id) if p.anchor]
    assert anchors == ["s-watering-plants", "s-watering-plants-2", "s-ca-pousse"]
    for anchor in anchors:
        assert f'id="{anchor}"' in page
