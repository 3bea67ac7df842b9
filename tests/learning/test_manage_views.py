"""Course authoring pages: with and without htmx, access for every kind of visitor, the live
preview that writes nothing, and the course editor's statement budget."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.learning.education.models import Course, CourseStatus, Lesson, Module
from portal.learning.lms.models import CourseManagement, ManagementRole
from tests.learning.factories.manage import add_member, form_data, make_course
from tests.learning.factories.manage import course_fields as _course_fields


def course_fields(**overrides) -> dict:
    return form_data(_course_fields(**overrides))

HX = {"HX-Request": "true"}


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _module_ids(course):
    return list(db.session.scalars(select(Module.id).where(Module.course_id == course.id).order_by(Module.position)))


def _lesson_ids(course):
    return list(db.session.scalars(select(Lesson.id).where(Lesson.course_id == course.id)
                                   .order_by(Lesson.module_id, Lesson.position)))


# ---------------------------------------------------------------- my courses


def test_my_courses_lists_only_mine(client, login_as, make_user):
    me = login_as("faculty")
    mine = make_course(me, title="Mine To Teach")
    make_course(make_user("faculty"), title="Someone Elses Course")
    response = client.get("/learning/manage/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Mine To Teach" in body and "Someone Elses Course" not in body
    assert f"/learning/manage/{mine.id}" in body


def test_admin_sees_all_courses(client, login_as, make_user):
    login_as("admin")
    make_course(make_user("faculty"), title="Faculty Course For Admin")
    body = client.get("/learning/manage/?status=draft").get_data(as_text=True)
    assert "All courses" in body and "Faculty Course For Admin" in body


def test_my_courses_status_filter_and_htmx_results(client, login_as):
    me = login_as("faculty")
    make_course(me, title="Draft One")
    make_course(me, title="Live One", status=CourseStatus.PUBLISHED)
    response = client.get("/learning/manage/?status=published", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Live One" in body and "Draft One" not in body
    assert "<html" not in body and 'id="results"' in body


def test_students_and_compliance_get_403(client, login_as, make_user):
    course = make_course(make_user("faculty"))
    login_as("student")
    for url in ("/learning/manage/", f"/learning/manage/{course.id}", "/learning/manage/new"):
        assert client.get(url).status_code == 403
    assert client.post("/learning/manage/preview", data={"body": "x"}).status_code == 403
    assert client.post(f"/learning/manage/{course.id}/status", data={"to": "published"}).status_code == 403


# ---------------------------------------------------------------- new course


def test_new_course_form_and_create_without_js(client, login_as):
    me = login_as("faculty")
    page = client.get("/learning/manage/new")
    assert page.status_code == 200 and 'name="title"' in page.get_data(as_text=True)
    response = client.post("/learning/manage/new", data=course_fields(title="Brand New Course", slug="",
                                                                      requires_quizzes_passed=False))
    assert response.status_code == 302
    course = db.session.scalar(select(Course).where(Course.title == "Brand New Course"))
    assert response.headers["Location"].endswith(f"/learning/manage/{course.id}")
    assert course.slug == "brand-new-course" and course.instructor_id == me.id
    assert course.requires_all_lessons is True and course.requires_quizzes_passed is False
    assert _count(CourseManagement, CourseManagement.course_id == course.id,
                  CourseManagement.role == ManagementRole.OWNER) == 1


def test_new_course_with_htmx_goes_to_the_editor(client, login_as):
    login_as("faculty")
    response = client.post("/learning/manage/new", data=course_fields(title="Htmx Course"), headers=HX)
    course = db.session.scalar(select(Course).where(Course.title == "Htmx Course"))
    assert response.status_code == 204
    assert response.headers["HX-Location"].endswith(f"/learning/manage/{course.id}")


def test_new_course_errors_sit_next_to_fields(client, login_as, make_user):
    make_course(make_user("faculty")).slug = "taken-slug"
    db.session.commit()
    login_as("faculty")
    response = client.post("/learning/manage/new", data=course_fields(slug="Bad Slug", estimated_hours="5000"),
                           headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<html" not in body and 'id="course-form"' in body
    assert 'id="slug-error"' in body and "lowercase letters" in body
    assert 'id="estimated_hours-error"' in body and "Between 1 and 1,000" in body
    taken = client.post("/learning/manage/new", data=course_fields(slug="taken-slug"))
    assert taken.status_code == 422
    assert "already uses" in taken.get_data(as_text=True) and "<html" in taken.get_data(as_text=True)
    assert _count(Course, Course.title == "Introduction to Testing") == 0


def test_slug_suggestion_follows_the_title_until_edited(client, login_as, make_user):
    make_course(make_user("faculty")).slug = "money-matters"
    db.session.commit()
    login_as("faculty")
    body = client.get("/learning/manage/slug", query_string={"title": "Money Matters", "slug": "",
                                                              "slug_suggested": ""}, headers=HX).get_data(as_text=True)
    assert 'value="money-matters-2"' in body and "<html" not in body
    kept = client.get("/learning/manage/slug", query_string={"title": "Other", "slug": "my-own",
                                                              "slug_suggested": "money-matters-2"}).get_data(as_text=True)
    assert 'value="my-own"' in kept
    taken = client.get("/learning/manage/slug", query_string={"title": "Other", "slug": "money-matters",
                                                               "slug_suggested": ""}).get_data(as_text=True)
    assert "already uses" in taken


# ---------------------------------------------------------------- the course editor


def test_editor_shows_the_outline(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=2, lessons=2, title="Outlined Course")
    body = client.get(f"/learning/manage/{course.id}").get_data(as_text=True)
    assert "Outlined Course" in body and "Lesson 2.2" in body and "Add a module" in body
    assert "Publish" in body


def test_another_faculty_member_cannot_see_or_edit(client, login_as, make_user):
    course = make_course(make_user("faculty"), modules=1, lessons=1)
    module_id, lesson_id = _module_ids(course)[0], _lesson_ids(course)[0]
    login_as("faculty")
    assert client.get(f"/learning/manage/{course.id}").status_code == 403
    assert client.get(f"/learning/manage/{course.id}/settings").status_code == 403
    assert client.get(f"/learning/manage/{course.id}/staff").status_code == 403
    assert client.get(f"/learning/manage/lessons/{lesson_id}/edit").status_code == 403
    posts = [
        (f"/learning/manage/{course.id}/settings", course_fields(title="Hijacked")),
        (f"/learning/manage/{course.id}/status", {"to": "published"}),
        (f"/learning/manage/{course.id}/modules", {"title": "Hijacked"}),
        (f"/learning/manage/modules/{module_id}/move", {"direction": "down"}),
        (f"/learning/manage/modules/{module_id}/delete", {}),
        (f"/learning/manage/lessons/{lesson_id}/delete", {}),
        (f"/learning/manage/lessons/{lesson_id}/edit", {"title": "Hijacked"}),
        (f"/learning/manage/{course.id}/staff", {"email": "x@tests.example", "role": "assistant"}),
    ]
    for url, data in posts:
        assert client.post(url, data=data).status_code == 403, url
        assert client.post(url, data=data, headers=HX).status_code == 403, url
    assert db.session.get(Course, course.id).title != "Hijacked"
    assert db.session.get(Course, course.id).status == CourseStatus.DRAFT
    assert _count(Module, Module.course_id == course.id) == 1
    assert _count(Lesson, Lesson.course_id == course.id) == 1
    assert client.get(f"/learning/manage/{uuid.uuid4()}").status_code == 404


def test_assistant_sees_the_outline_read_only(client, login_as, make_user):
    course = make_course(make_user("faculty"), modules=1, lessons=1, title="Assisted Course")
    me = login_as("faculty")
    add_member(course, me, ManagementRole.ASSISTANT)
    body = client.get(f"/learning/manage/{course.id}").get_data(as_text=True)
    assert "Assisted Course" in body and "Read only" in body
    assert "Add a module" not in body and "Publish" not in body
    assert client.get(f"/learning/manage/{course.id}/settings").status_code == 403
    assert client.post(f"/learning/manage/modules/{_module_ids(course)[0]}/delete").status_code == 403


def test_settings_edit_without_and_with_htmx(client, login_as):
    me = login_as("faculty")
    course = make_course(me)
    page = client.get(f"/learning/manage/{course.id}/settings").get_data(as_text=True)
    assert f'value="{course.slug}"' in page
    saved = client.post(f"/learning/manage/{course.id}/settings",
                        data=course_fields(title="Renamed Course", slug="renamed-course"))
    assert saved.status_code == 302
    assert db.session.get(Course, course.id).slug == "renamed-course"
    bad = client.post(f"/learning/manage/{course.id}/settings", data=course_fields(title="x"), headers=HX)
    assert bad.status_code == 422 and "<html" not in bad.get_data(as_text=True)
    assert 'id="title-error"' in bad.get_data(as_text=True)
    assert db.session.get(Course, course.id).title == "Renamed Course"


def test_add_module_inline_and_without_js(client, login_as):
    me = login_as("faculty")
    course = make_course(me)
    fragment = client.post(f"/learning/manage/{course.id}/modules", data={"title": "Getting Started"}, headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and 'id="outline"' in body and "<html" not in body
    assert "Getting Started" in body
    plain = client.post(f"/learning/manage/{course.id}/modules", data={"title": "Second Steps",
                                                                        "requires_previous": "y"})
    assert plain.status_code == 302 and f"/learning/manage/{course.id}#module-" in plain.headers["Location"]
    second = db.session.scalar(select(Module).where(Module.course_id == course.id, Module.position == 2))
    assert second.title == "Second Steps" and second.requires_previous is True
    invalid = client.post(f"/learning/manage/{course.id}/modules", data={"title": ""}, headers=HX)
    assert invalid.status_code == 422 and "Enter the module" in invalid.get_data(as_text=True)


def test_move_module_with_htmx_returns_the_outline(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=2)
    first, second = _module_ids(course)
    response = client.post(f"/learning/manage/modules/{second}/move", data={"direction": "up"}, headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="outline"' in body
    assert body.index("Module 2</h3>") < body.index("Module 1</h3>")
    assert _module_ids(course) == [second, first]
    plain = client.post(f"/learning/manage/modules/{second}/move", data={"direction": "down"})
    assert plain.status_code == 302
    assert _module_ids(course) == [first, second]


def test_toggle_requires_previous_and_delete_module(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=2, lessons=1)
    first, second = _module_ids(course)
    client.post(f"/learning/manage/modules/{second}/requires-previous", data={"value": "1"}, headers=HX)
    assert db.session.get(Module, second).requires_previous is True
    client.post(f"/learning/manage/modules/{second}/requires-previous", data={"value": "0"})
    assert db.session.get(Module, second).requires_previous is False
    response = client.post(f"/learning/manage/modules/{first}/delete", headers=HX)
    assert response.status_code == 200
    assert _module_ids(course) == [second]
    assert db.session.get(Module, second).position == 1


def test_edit_module_page(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=1)
    module_id = _module_ids(course)[0]
    assert client.get(f"/learning/manage/modules/{module_id}/edit").status_code == 200
    response = client.post(f"/learning/manage/modules/{module_id}/edit", data={"title": "Better Title",
                                                                               "summary": "Short"})
    assert response.status_code == 302
    assert db.session.get(Module, module_id).title == "Better Title"


def test_lesson_editor_create_edit_move_delete(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=1)
    module_id = _module_ids(course)[0]
    page = client.get(f"/learning/manage/modules/{module_id}/lessons/new").get_data(as_text=True)
    assert 'hx-post="/learning/manage/preview"' in page and 'hx-trigger="input changed delay:400ms"' in page
    created = client.post(f"/learning/manage/modules/{module_id}/lessons/new",
                          data={"title": "First Lesson", "body": "# Hello", "estimated_minutes": "15"}, headers=HX)
    assert created.status_code == 204 and "HX-Location" in created.headers
    client.post(f"/learning/manage/modules/{module_id}/lessons/new", data={"title": "Second Lesson", "body": ""})
    first, second = _lesson_ids(course)
    edited = client.post(f"/learning/manage/lessons/{first}/edit", data={"title": "First, Revised", "body": "New"})
    assert edited.status_code == 302
    assert db.session.get(Lesson, first).title == "First, Revised"
    moved = client.post(f"/learning/manage/lessons/{second}/move", data={"direction": "up"}, headers=HX)
    assert moved.status_code == 200 and 'id="outline"' in moved.get_data(as_text=True)
    assert _lesson_ids(course) == [second, first]
    client.post(f"/learning/manage/lessons/{second}/delete")
    assert _lesson_ids(course) == [first]
    assert db.session.get(Lesson, first).position == 1


def test_lesson_errors_and_no_js_preview_button(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=1)
    module_id = _module_ids(course)[0]
    bad = client.post(f"/learning/manage/modules/{module_id}/lessons/new",
                      data={"title": "OK title", "estimated_minutes": "900"}, headers=HX)
    assert bad.status_code == 422 and "Between 1 and 600 minutes" in bad.get_data(as_text=True)
    preview = client.post(f"/learning/manage/modules/{module_id}/lessons/new",
                          data={"title": "Draft", "body": "**bold** <script>alert(1)</script>", "action": "preview"})
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "<strong>bold</strong>" in body and "<script>alert" not in body
    assert _count(Lesson, Lesson.course_id == course.id) == 0


def test_preview_renders_safely_and_writes_nothing(client, login_as, statements):
    me = login_as("faculty")
    course = make_course(me, modules=1, lessons=1)
    before = (_count(Lesson), _count(Course), _count(Module))
    with statements() as counter:
        response = client.post("/learning/manage/preview", headers=HX,
                               data={"title": "t", "body": "## Part\n\n*x* <img src=x onerror=alert(1)>"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert "<h3 id=\"s-part\">Part</h3>" in body and "<em>x</em>" in body and "<img" not in body
    writes = [s for s in counter.statements if s.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert (_count(Lesson), _count(Course), _count(Module)) == before
    assert db.session.get(Course, course.id).updated_at == course.updated_at
    too_long = client.post("/learning/manage/preview", data={"body": "x" * 200_001}, headers=HX)
    assert too_long.status_code == 200 and "too long" in too_long.get_data(as_text=True)


def test_publish_with_and_without_htmx(client, login_as):
    me = login_as("faculty")
    empty = make_course(me, modules=1)
    refused = client.post(f"/learning/manage/{empty.id}/status", data={"to": "published"}, headers=HX)
    assert refused.status_code == 409
    assert 'id="status-bar"' in refused.get_data(as_text=True) and "at least one module" in \
        refused.get_data(as_text=True)
    plain_refused = client.post(f"/learning/manage/{empty.id}/status", data={"to": "published"})
    assert plain_refused.status_code == 302
    assert db.session.get(Course, empty.id).status == CourseStatus.DRAFT
    ready = make_course(me, modules=1, lessons=1)
    done = client.post(f"/learning/manage/{ready.id}/status", data={"to": "published"}, headers=HX)
    assert done.status_code == 200 and "Unpublish" in done.get_data(as_text=True)
    assert db.session.get(Course, ready.id).published_at is not None
    client.post(f"/learning/manage/{ready.id}/status", data={"to": "archived"})
    assert db.session.get(Course, ready.id).status == CourseStatus.ARCHIVED


# ---------------------------------------------------------------- staff


def test_staff_page_add_change_remove(client, login_as, make_user):
    me = login_as("faculty")
    course = make_course(me)
    colleague = make_user("faculty", full_name="Cora Colleague")
    page = client.get(f"/learning/manage/{course.id}/staff").get_data(as_text=True)
    assert "Add someone" in page
    added = client.post(f"/learning/manage/{course.id}/staff", data={"email": colleague.email,
                                                                       "role": "instructor"}, headers=HX)
    assert added.status_code == 200 and "Cora Colleague" in added.get_data(as_text=True)
    row = db.session.scalar(select(CourseManagement).where(CourseManagement.user_id == colleague.id))
    changed = client.post(f"/learning/manage/{course.id}/staff/{row.id}/role", data={"role": "assistant"}, headers=HX)
    assert changed.status_code == 200 and 'id="staff"' in changed.get_data(as_text=True)
    db.session.refresh(row)
    assert row.role == ManagementRole.ASSISTANT
    row_id = row.id
    removed = client.post(f"/learning/manage/{course.id}/staff/{row_id}/remove")
    assert removed.status_code == 302
    assert db.session.get(CourseManagement, row_id) is None


def test_staff_errors(client, login_as, make_user):
    me = login_as("faculty")
    course = make_course(me)
    student = make_user("student")
    bad = client.post(f"/learning/manage/{course.id}/staff", data={"email": student.email, "role": "assistant"},
                      headers=HX)
    assert bad.status_code == 422 and "No faculty member" in bad.get_data(as_text=True)
    mine = db.session.scalar(select(CourseManagement).where(CourseManagement.user_id == me.id))
    last = client.post(f"/learning/manage/{course.id}/staff/{mine.id}/remove", headers=HX)
    body = last.get_data(as_text=True)
    assert last.status_code == 409 and "last owner" in body and 'id="staff"' in body
    plain = client.post(f"/learning/manage/{course.id}/staff/{mine.id}/role", data={"role": "assistant"})
    assert plain.status_code == 302
    assert db.session.get(CourseManagement, mine.id).role == ManagementRole.OWNER


def test_instructor_cannot_manage_staff(client, login_as, make_user):
    owner = make_user("faculty")
    course = make_course(owner)
    me = login_as("faculty")
    add_member(course, me, ManagementRole.INSTRUCTOR)
    page = client.get(f"/learning/manage/{course.id}/staff").get_data(as_text=True)
    assert "Add someone" not in page and owner.full_name in page
    owner_row = db.session.scalar(select(CourseManagement).where(CourseManagement.user_id == owner.id))
    assert client.post(f"/learning/manage/{course.id}/staff/{owner_row.id}/remove").status_code == 403
    assert client.post(f"/learning/manage/{course.id}/staff",
                       data={"email": make_user("faculty").email, "role": "assistant"}).status_code == 403


# ---------------------------------------------------------------- dashboard and budget


def test_faculty_dashboard_card_links_to_the_editor(client, login_as):
    me = login_as("faculty")
    course = make_course(me, modules=1, lessons=3, title="Dashboard Course")
    body = client.get("/dashboard").get_data(as_text=True)
    assert "Courses I teach" in body and "Dashboard Course" in body
    assert f"/learning/manage/{course.id}" in body and "3 lessons" in body


@pytest.mark.parametrize("path", ["", "/staff"])
def test_editor_statement_budget_does_not_grow(client, login_as, statements, make_user, path):
    me = login_as("faculty")
    small = make_course(me, modules=1, lessons=1)
    big = make_course(me, modules=10, lessons=10)
    for _ in range(5):
        add_member(big, make_user("faculty"), ManagementRole.ASSISTANT)
    counts = []
    for course in (small, big):
        client.get(f"/learning/manage/{course.id}{path}")  # warm the session
        with statements() as counter:
            response = client.get(f"/learning/manage/{course.id}{path}")
        assert response.status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1], counts
    assert counts[1] <= 12, counts


def test_my_courses_statement_budget(client, login_as, statements):
    me = login_as("faculty")
    make_course(me, modules=1, lessons=1)
    with statements() as small:
        client.get("/learning/manage/")
    for _ in range(15):
        make_course(me, modules=2, lessons=2)
    with statements() as big:
        assert client.get("/learning/manage/").status_code == 200
    assert small.count == big.count <= 12


def test_the_editor_and_staff_pages_take_their_rights_from_the_access_rules(client, login_as, monkeypatch):
    """The pages ask ``access.may`` what the user may do: when the rules say the owner may neither
    edit nor manage staff, the pages show no control for it, whatever the owner's role."""
    from portal.learning.lms import access

    real_may = access.may

    def may(user, course_id, allowed):
        return False if allowed in (access.CAN_EDIT, access.CAN_MANAGE_STAFF) else real_may(user, course_id, allowed)

    me = login_as("faculty")
    course = make_course(me, modules=1, lessons=1, title="Ruled Course")
    monkeypatch.setattr(access, "may", may)
    body = client.get(f"/learning/manage/{course.id}").get_data(as_text=True)
    assert "Ruled Course" in body and "Read only" in body
    assert "Add a module" not in body and "Publish" not in body
    staff_page = client.get(f"/learning/manage/{course.id}/staff").get_data(as_text=True)
    assert me.full_name in staff_page and "Add someone" not in staff_page
