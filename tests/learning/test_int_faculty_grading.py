"""The gradebook's scheme on the course settings page: weights, drop-lowest and the letter
scale are validated, saved in ``course.grading``, and every student's gradebook row is
recomputed when the scheme changes."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, select

from portal.accounts.models import Role
from portal.db import db
from portal.learning.assessment import gradebook
from portal.learning.assessment.models import Gradebook
from portal.learning.education.models import Course
from portal.learning.lms.models import ManagementRole
from tests.learning.factories import assign as fa
from tests.learning.factories.manage import form_data


def _settings(course: Course, **grading) -> dict:
    """The settings form as posted, with the course's own fields and the given scheme."""
    fields = {"title": course.title, "slug": course.slug, "summary": "", "description": "",
              "category": course.category, "level": course.level.value, "estimated_hours": "",
              "requires_all_lessons": True, "requires_quizzes_passed": True}
    data = form_data(fields)
    data.update({"weight_assignments": "50", "weight_quizzes": "50", "drop_assignments": "0", "drop_quizzes": "0",
                 "letter_name": ["A", "B", "F", ""], "letter_min": ["90", "75", "0", ""]})
    data.update(grading)
    return data


def _row(course, student) -> Gradebook:
    db.session.expire_all()
    return db.session.scalar(select(Gradebook).where(Gradebook.course_id == course.id,
                                                     Gradebook.user_id == student.id))


def _graded_course(owner, make_user):
    """Two students: one at 100% on the assignment and 40% on the quiz, one at 60% and 100%."""
    course = fa.make_course(owner)
    assignment = fa.make_assignment(course, points=Decimal(10))
    quiz = fa.make_quiz(course)
    first, second = make_user(role=Role.STUDENT), make_user(role=Role.STUDENT)
    for student, score, percent in ((first, 10, 40), (second, 6, 100)):
        fa.enroll(course, student)
        fa.release_grade(assignment, student, score)
        fa.graded_attempt(quiz, student, percent)
        gradebook.recompute(course.id, student.id)
    db.session.commit()  # a refused save rolls back to here
    return course, first, second


def test_the_settings_page_shows_the_current_scheme(client, login_as):
    owner = login_as(Role.FACULTY)
    course = fa.make_course(owner, grading={"weights": {"assignments": 70, "quizzes": 30},
                                            "drop_lowest": {"assignments": 1, "quizzes": 2},
                                            "letters": [["P", 50], ["F", 0]]})
    html = client.get(f"/learning/manage/{course.id}/settings").get_data(as_text=True)
    assert 'name="weight_assignments"' in html and 'value="70"' in html and 'value="30"' in html
    assert 'id="drop_quizzes"' in html and 'value="2"' in html
    assert 'name="letter_name" value="P"' in html and 'name="letter_min" value="50"' in html


def test_changing_the_weights_saves_them_and_recomputes_every_student(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, first, second = _graded_course(owner, make_user)
    assert _row(course, first).percent == Decimal("70.00")
    assert _row(course, second).percent == Decimal("80.00")

    response = client.post(f"/learning/manage/{course.id}/settings",
                           data=_settings(course, weight_assignments="80", weight_quizzes="20"))
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Course, course.id).grading
    assert saved["weights"] == {"assignments": 80.0, "quizzes": 20.0}
    assert saved["letters"] == [["A", 90.0], ["B", 75.0], ["F", 0.0]]
    first_row, second_row = _row(course, first), _row(course, second)
    assert first_row.percent == Decimal("88.00") and first_row.letter == "B"
    assert second_row.percent == Decimal("68.00") and second_row.letter == "F"


def test_a_new_letter_scale_changes_letters_but_keeps_overrides(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, first, second = _graded_course(owner, make_user)
    gradebook.set_override(owner, course.id, second.id, Decimal("95"), "Re-marked by hand")
    response = client.post(f"/learning/manage/{course.id}/settings",
                           data=_settings(course, letter_name=["Pass", "Fail"], letter_min=["65", "0"]))
    assert response.status_code == 302
    assert _row(course, first).letter == "Pass"
    overridden = _row(course, second)
    assert overridden.override_percent == Decimal("95.00") and overridden.letter == "Pass"


def test_drop_lowest_is_applied_on_recompute(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course = fa.make_course(owner)
    student = make_user(role=Role.STUDENT)
    fa.enroll(course, student)
    for score in (2, 10):
        fa.release_grade(fa.make_assignment(course, points=Decimal(10)), student, score)
    gradebook.recompute(course.id, student.id)
    assert _row(course, student).percent == Decimal("60.00")
    client.post(f"/learning/manage/{course.id}/settings", data=_settings(course, drop_assignments="1"))
    assert _row(course, student).percent == Decimal("100.00")


def test_weights_not_adding_to_100_are_refused_on_the_form(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, first, _ = _graded_course(owner, make_user)
    response = client.post(f"/learning/manage/{course.id}/settings",
                           data=_settings(course, weight_assignments="60", weight_quizzes="60", title="Renamed course"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="grading-error"' in html and "add up to 100" in html
    db.session.expire_all()
    assert db.session.get(Course, course.id).title != "Renamed course"  # nothing saved
    assert db.session.get(Course, course.id).grading == {}
    assert _row(course, first).percent == Decimal("70.00")


def test_bad_letters_are_refused(client, login_as):
    owner = login_as(Role.FACULTY)
    course = fa.make_course(owner)
    db.session.commit()
    for letters, mins, message in ((["A", "F"], ["high", "0"], "must be numbers"),
                                   (["A", ""], ["90", "0"], "needs a name"),
                                   (["A", "F"], ["120", "0"], "from 0 to 100"),
                                   ([""], [""], "at least one letter")):
        response = client.post(f"/learning/manage/{course.id}/settings",
                               data=_settings(course, letter_name=letters, letter_min=mins))
        assert response.status_code == 422, letters
        assert message in response.get_data(as_text=True), letters


def test_out_of_range_drop_lowest_is_refused_on_its_field(client, login_as):
    owner = login_as(Role.FACULTY)
    course = fa.make_course(owner)
    response = client.post(f"/learning/manage/{course.id}/settings", data=_settings(course, drop_quizzes="11"))
    assert response.status_code == 422
    assert 'id="drop_quizzes-error"' in response.get_data(as_text=True)


def test_an_unchanged_scheme_does_not_rewrite_gradebooks(client, login_as, make_user, statements):
    owner = login_as(Role.FACULTY)
    course, first, _ = _graded_course(owner, make_user)
    changed = _settings(course, weight_assignments="60", weight_quizzes="40")
    with statements() as first_save:
        client.post(f"/learning/manage/{course.id}/settings", data=changed)
    with statements() as second_save:
        client.post(f"/learning/manage/{course.id}/settings", data=changed)
    assert any("insert into gradebooks" in sql.lower() for sql in first_save.statements)
    assert not any("gradebooks" in sql.lower() for sql in second_save.statements)
    assert _row(course, first).percent == Decimal("76.00")


def test_assistants_cannot_change_the_scheme(client, login_as, make_user):
    owner = make_user(role=Role.FACULTY)
    course = fa.make_course(owner)
    assistant = login_as(Role.FACULTY)
    fa.add_staff(course, assistant, ManagementRole.ASSISTANT)
    response = client.post(f"/learning/manage/{course.id}/settings", data=_settings(course, weight_assignments="100",
                                                                                   weight_quizzes="0"))
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Course, course.id).grading == {}


def test_recompute_course_writes_a_row_per_enrolled_student(make_user):
    owner = make_user(role=Role.FACULTY)
    course, first, second = _graded_course(owner, make_user)
    db.session.execute(delete(Gradebook).where(Gradebook.course_id == course.id))
    assert gradebook.recompute_course(course.id, batch=1) == 2
    assert _row(course, first).percent == Decimal("70.00")
    assert _row(course, second).status.value == "passing"


def test_a_post_without_the_gradebook_fields_keeps_the_scheme(client, login_as):
    owner = login_as(Role.FACULTY)
    scheme = {"weights": {"assignments": 70.0, "quizzes": 30.0}, "drop_lowest": {"assignments": 0, "quizzes": 0},
              "letters": [["P", 50.0], ["F", 0.0]]}
    course = fa.make_course(owner, grading=scheme)
    data = {key: value for key, value in _settings(course, title="Renamed course").items()
            if not key.startswith(("weight_", "drop_", "letter_"))}
    assert client.post(f"/learning/manage/{course.id}/settings", data=data).status_code == 302
    db.session.expire_all()
    saved = db.session.get(Course, course.id)
    assert saved.title == "Renamed course" and saved.grading == scheme
