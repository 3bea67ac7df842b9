"""Course authoring and course staff services: every rule."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, Forbidden, NotFound
from portal.learning.education import authoring
from portal.learning.education.authoring import InvalidInput, InvalidTransition
from portal.learning.education.models import Course, CourseStatus, Lesson, Module, Progress
from portal.learning.lms import queries, staff
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.platform.notifications.models import Notification
from tests.learning.factories.manage import add_member, course_fields, make_course


def _check_deferred_constraints():
    """The unique (course, position) constraints are deferred to the commit, which the test's
    rolled-back transaction never reaches: make PostgreSQL check them now."""
    db.session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    db.session.execute(text("SET CONSTRAINTS ALL DEFERRED"))


def _module_positions(course_id):
    return [tuple(row) for row in db.session.execute(
        select(Module.title, Module.position).where(Module.course_id == course_id).order_by(Module.position))]


def _lesson_positions(module_id):
    return [tuple(row) for row in db.session.execute(
        select(Lesson.title, Lesson.position).where(Lesson.module_id == module_id).order_by(Lesson.position))]


# ---------------------------------------------------------------- creating and editing courses


def test_creator_becomes_owner_and_instructor(make_user):
    faculty = make_user("faculty")
    course = authoring.create_course(faculty, **course_fields(title="Ledger Basics  for   Everyone"))
    assert course.status == CourseStatus.DRAFT
    assert course.title == "Ledger Basics for Everyone"
    assert course.slug == "ledger-basics-for-everyone"
    assert course.instructor_id == faculty.id
    assert course.estimated_hours == 4
    role = db.session.scalar(select(CourseManagement.role).where(CourseManagement.course_id == course.id,
                                                                 CourseManagement.user_id == faculty.id))
    assert role == ManagementRole.OWNER


def test_admin_creates_courses_students_do_not(make_user):
    admin = make_user("admin")
    assert authoring.create_course(admin, **course_fields()).instructor_id == admin.id
    with pytest.raises(Forbidden):
        authoring.create_course(make_user("student"), **course_fields())
    with pytest.raises(Forbidden):
        authoring.create_course(make_user("compliance"), **course_fields())


@pytest.mark.parametrize(("title", "slug"), [
    ("Café à la Crème: Part 2!", "cafe-a-la-creme-part-2"),
    ("  --Hello__World--  ", "hello-world"),
    ("x" * 100, "x" * 80),
    ("!!!", ""),
])
def test_suggest_slug(title, slug):
    assert authoring.suggest_slug(title) == slug


def test_empty_slug_is_made_from_the_title_and_kept_free(make_user):
    faculty = make_user("faculty")
    first = authoring.create_course(faculty, **course_fields(title="Same Title"))
    second = authoring.create_course(faculty, **course_fields(title="Same Title"))
    third = authoring.create_course(faculty, **course_fields(title="Same Title"))
    assert [first.slug, second.slug, third.slug] == ["same-title", "same-title-2", "same-title-3"]


def test_slug_taken_is_refused_with_a_free_suggestion(make_user):
    faculty = make_user("faculty")
    authoring.create_course(faculty, **course_fields(slug="unique-course"))
    with pytest.raises(InvalidInput) as caught:
        authoring.create_course(faculty, **course_fields(slug="unique-course"))
    assert caught.value.field == "slug"
    assert "unique-course-2" in caught.value.message


@pytest.mark.parametrize("slug", ["Upper", "two--hyphens", "-leading", "trailing-", "spa ce", "under_score",
                                  "é", "a" * 81])
def test_bad_slugs_are_refused_before_the_database(make_user, slug):
    with pytest.raises(InvalidInput) as caught:
        authoring.create_course(make_user("faculty"), **course_fields(slug=slug))
    assert caught.value.field == "slug"


@pytest.mark.parametrize(("field", "value"), [
    ("title", ""), ("title", "ab"), ("title", "t" * 161), ("summary", "s" * 501), ("category", ""),
    ("category", "c" * 61), ("level", "expert"), ("estimated_hours", 0), ("estimated_hours", 1001),
    ("estimated_hours", "ten"), ("description", "d" * (authoring.TEXT_MAX + 1)),
])
def test_course_fields_are_validated(make_user, field, value):
    with pytest.raises(InvalidInput) as caught:
        authoring.create_course(make_user("faculty"), **course_fields(**{field: value}))
    assert caught.value.field == field
    assert caught.value.status_code == 422


def test_hours_bounds_and_nul_characters_are_accepted_cleanly(make_user):
    faculty = make_user("faculty")
    course = authoring.create_course(faculty, **course_fields(estimated_hours=1000, summary="a\x00b",
                                                              description="x\x00y"))
    assert course.estimated_hours == 1000 and course.summary == "ab" and course.description == "xy"
    assert authoring.create_course(faculty, **course_fields(estimated_hours=None)).estimated_hours is None


def test_update_course_keeps_its_own_slug_and_refuses_anothers(make_user):
    faculty = make_user("faculty")
    course = authoring.create_course(faculty, **course_fields(slug="mine"))
    authoring.create_course(faculty, **course_fields(slug="theirs"))
    updated = authoring.update_course(faculty, course.id, **course_fields(slug="mine", title="New Title",
                                                                          requires_quizzes_passed=False))
    assert updated.slug == "mine" and updated.title == "New Title" and updated.requires_quizzes_passed is False
    with pytest.raises(InvalidInput) as caught:
        authoring.update_course(faculty, course.id, **course_fields(slug="theirs"))
    assert caught.value.field == "slug"


def test_who_may_edit_a_course(make_user):
    owner, instructor, assistant, stranger = (make_user("faculty") for _ in range(4))
    course = make_course(owner)
    add_member(course, instructor, ManagementRole.INSTRUCTOR)
    add_member(course, assistant, ManagementRole.ASSISTANT)
    assert authoring.update_course(instructor, course.id, **course_fields(title="By instructor")).title == \
        "By instructor"
    assert authoring.update_course(make_user("admin"), course.id, **course_fields(title="By admin")).title == \
        "By admin"
    for user in (assistant, stranger, make_user("student")):
        with pytest.raises(Forbidden):
            authoring.update_course(user, course.id, **course_fields(title="Not allowed"))
        with pytest.raises(Forbidden):
            authoring.add_module(user, course.id, title="Not allowed")
    assert db.session.get(Course, course.id).title == "By admin"


def test_unknown_course_is_not_found(make_user):
    with pytest.raises(NotFound):
        authoring.update_course(make_user("admin"), uuid.uuid4(), **course_fields())
    with pytest.raises(NotFound):
        authoring.move_module(make_user("admin"), uuid.uuid4(), "up")
    with pytest.raises(NotFound):
        authoring.update_lesson(make_user("admin"), uuid.uuid4(), title="Nothing")


# ---------------------------------------------------------------- modules and lessons


def test_modules_are_added_in_order_and_validated(make_user):
    owner = make_user("faculty")
    course = make_course(owner)
    for title in ("First", "Second", "Third"):
        authoring.add_module(owner, course.id, title=title, summary="")
    assert _module_positions(course.id) == [("First", 1), ("Second", 2), ("Third", 3)]
    with pytest.raises(InvalidInput) as caught:
        authoring.add_module(owner, course.id, title="  ")
    assert caught.value.field == "title"
    with pytest.raises(InvalidInput):
        authoring.add_module(owner, course.id, title="Fine", summary="s" * 501)


def test_module_limit(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=authoring.MAX_MODULES)
    with pytest.raises(InvalidInput):
        authoring.add_module(owner, course.id, title="One too many")


def test_the_constraint_check_catches_duplicate_positions(make_user):
    course = make_course(make_user("faculty"), modules=2)
    db.session.execute(update(Module).where(Module.course_id == course.id).values(position=1))
    with pytest.raises(IntegrityError), db.session.begin_nested():
        _check_deferred_constraints()


def test_moving_modules_swaps_neighbours_and_keeps_positions_dense(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=4)
    modules = {title: module_id for module_id, title in db.session.execute(
        select(Module.id, Module.title).where(Module.course_id == course.id))}
    authoring.move_module(owner, modules["Module 3"], "up")
    _check_deferred_constraints()
    assert _module_positions(course.id) == [("Module 1", 1), ("Module 3", 2), ("Module 2", 3), ("Module 4", 4)]
    authoring.move_module(owner, modules["Module 1"], "down")
    authoring.move_module(owner, modules["Module 4"], "down")  # already last: nothing changes
    authoring.move_module(owner, modules["Module 3"], "up")
    authoring.move_module(owner, modules["Module 3"], "up")  # already first
    _check_deferred_constraints()
    assert _module_positions(course.id) == [("Module 3", 1), ("Module 1", 2), ("Module 2", 3), ("Module 4", 4)]
    with pytest.raises(InvalidInput):
        authoring.move_module(owner, modules["Module 1"], "sideways")


def test_deleting_a_module_closes_the_gap_and_takes_its_lessons(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=3, lessons=2)
    second = db.session.scalar(select(Module.id).where(Module.course_id == course.id, Module.position == 2))
    authoring.delete_module(owner, second)
    _check_deferred_constraints()
    assert _module_positions(course.id) == [("Module 1", 1), ("Module 3", 2)]
    assert db.session.scalar(select(func.count()).select_from(Lesson).where(Lesson.course_id == course.id)) == 4


def test_lessons_add_move_delete_keep_positions_dense(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=1)
    module_id = db.session.scalar(select(Module.id).where(Module.course_id == course.id))
    lessons = [authoring.add_lesson(owner, module_id, title=f"Step {n}", body="**x**", estimated_minutes=10)
               for n in range(1, 5)]
    assert _lesson_positions(module_id) == [("Step 1", 1), ("Step 2", 2), ("Step 3", 3), ("Step 4", 4)]
    assert lessons[0].course_id == course.id
    authoring.move_lesson(owner, lessons[0].id, "down")
    authoring.move_lesson(owner, lessons[3].id, "up")
    authoring.move_lesson(owner, lessons[3].id, "down")  # back again
    authoring.move_lesson(owner, lessons[1].id, "up")  # Step 2 is first already after the first move
    _check_deferred_constraints()
    assert _lesson_positions(module_id) == [("Step 2", 1), ("Step 1", 2), ("Step 3", 3), ("Step 4", 4)]
    authoring.delete_lesson(owner, lessons[0].id)
    _check_deferred_constraints()
    assert _lesson_positions(module_id) == [("Step 2", 1), ("Step 3", 2), ("Step 4", 3)]


@pytest.mark.parametrize(("field", "value"), [
    ("title", ""), ("title", "x" * 161), ("estimated_minutes", 0), ("estimated_minutes", 601),
    ("body", "b" * (authoring.TEXT_MAX + 1)),
])
def test_lesson_fields_are_validated(make_user, field, value):
    owner = make_user("faculty")
    course = make_course(owner, modules=1)
    module_id = db.session.scalar(select(Module.id).where(Module.course_id == course.id))
    fields = {"title": "A lesson", "body": "", "estimated_minutes": 5, field: value}
    with pytest.raises(InvalidInput) as caught:
        authoring.add_lesson(owner, module_id, **fields)
    assert caught.value.field == field


def test_update_lesson_and_module(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=2, lessons=1)
    module_id = db.session.scalar(select(Module.id).where(Module.course_id == course.id, Module.position == 2))
    lesson_id = db.session.scalar(select(Lesson.id).where(Lesson.module_id == module_id))
    module = authoring.update_module(owner, module_id, title="Renamed", summary="Now with a summary",
                                     requires_previous=True)
    assert (module.title, module.summary, module.requires_previous) == ("Renamed", "Now with a summary", True)
    assert authoring.set_requires_previous(owner, module_id, False).requires_previous is False
    lesson = authoring.update_lesson(owner, lesson_id, title="Edited", body="New *text*", estimated_minutes=None)
    assert (lesson.title, lesson.body, lesson.estimated_minutes) == ("Edited", "New *text*", None)


def test_assistant_cannot_change_the_outline(make_user):
    owner, assistant = make_user("faculty"), make_user("faculty")
    course = make_course(owner, modules=2, lessons=2)
    add_member(course, assistant, ManagementRole.ASSISTANT)
    module_id = db.session.scalar(select(Module.id).where(Module.course_id == course.id, Module.position == 1))
    lesson_id = db.session.scalar(select(Lesson.id).where(Lesson.module_id == module_id, Lesson.position == 1))
    attempts = [
        lambda: authoring.add_module(assistant, course.id, title="Sneaky"),
        lambda: authoring.update_module(assistant, module_id, title="Sneaky"),
        lambda: authoring.move_module(assistant, module_id, "down"),
        lambda: authoring.delete_module(assistant, module_id),
        lambda: authoring.add_lesson(assistant, module_id, title="Sneaky"),
        lambda: authoring.update_lesson(assistant, lesson_id, title="Sneaky"),
        lambda: authoring.move_lesson(assistant, lesson_id, "down"),
        lambda: authoring.delete_lesson(assistant, lesson_id),
        lambda: authoring.change_status(assistant, course.id, "published"),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            attempt()
    assert _module_positions(course.id) == [("Module 1", 1), ("Module 2", 2)]
    assert db.session.get(Course, course.id).status == CourseStatus.DRAFT


def test_a_lesson_students_worked_on_is_not_deleted(make_user):
    owner, student = make_user("faculty"), make_user("student")
    course = make_course(owner, modules=1, lessons=1)
    lesson = db.session.scalar(select(Lesson).where(Lesson.course_id == course.id))
    db.session.add(Progress(user_id=student.id, lesson_id=lesson.id, course_id=course.id, first_viewed_at=utcnow()))
    db.session.flush()
    with pytest.raises(Conflict):
        authoring.delete_lesson(owner, lesson.id)
    with pytest.raises(Conflict):
        authoring.delete_module(owner, lesson.module_id)
    assert db.session.get(Lesson, lesson.id) is not None


# ---------------------------------------------------------------- publishing


def test_publishing_needs_a_lesson(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=1)
    with pytest.raises(InvalidTransition) as caught:
        authoring.change_status(owner, course.id, "published")
    assert "lesson" in caught.value.message
    assert db.session.get(Course, course.id).status == CourseStatus.DRAFT


def test_publish_unpublish_archive_follow_the_transitions(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=1, lessons=1)
    published = authoring.change_status(owner, course.id, CourseStatus.PUBLISHED)
    first_published_at = published.published_at
    assert published.status == CourseStatus.PUBLISHED and first_published_at is not None
    assert authoring.change_status(owner, course.id, "draft").status == CourseStatus.DRAFT
    assert authoring.change_status(owner, course.id, "published").published_at == first_published_at
    assert authoring.change_status(owner, course.id, "archived").status == CourseStatus.ARCHIVED
    with pytest.raises(InvalidTransition):
        authoring.change_status(owner, course.id, "published")  # archived -> published is not allowed
    assert authoring.change_status(owner, course.id, "draft").status == CourseStatus.DRAFT
    with pytest.raises(InvalidInput):
        authoring.change_status(owner, course.id, "deleted")


def test_instructor_and_admin_publish(make_user):
    owner, instructor = make_user("faculty"), make_user("faculty")
    course = make_course(owner, modules=1, lessons=1)
    add_member(course, instructor, ManagementRole.INSTRUCTOR)
    assert authoring.change_status(instructor, course.id, "published").status == CourseStatus.PUBLISHED
    assert authoring.change_status(make_user("admin"), course.id, "archived").status == CourseStatus.ARCHIVED
    with pytest.raises(Forbidden):
        authoring.change_status(make_user("faculty"), course.id, "draft")


# ---------------------------------------------------------------- staff


def test_owner_adds_co_instructor_and_assistant(make_user):
    owner = make_user("faculty", full_name="Olive Owner")
    colleague, helper = make_user("faculty"), make_user("faculty")
    course = make_course(owner)
    membership = staff.add_staff(owner, course.id, colleague.email.upper(), "instructor")
    assert membership.role == ManagementRole.INSTRUCTOR
    staff.add_staff(owner, course.id, helper.email, ManagementRole.ASSISTANT)
    names = [(m.role, u.id) for m, u in staff.list_staff(course.id)]
    assert names == [(ManagementRole.OWNER, owner.id), *sorted(
        [(ManagementRole.INSTRUCTOR, colleague.id), (ManagementRole.ASSISTANT, helper.id)],
        key=lambda row: row[0] != ManagementRole.INSTRUCTOR)]
    note = db.session.scalar(select(Notification).where(Notification.user_id == colleague.id))
    assert note is not None and course.title in note.title and "Olive Owner" in note.body


@pytest.mark.parametrize("case", ["student", "unknown", "inactive", "duplicate", "bad_role", "owner_role", "empty"])
def test_adding_staff_is_refused_with_a_reason(make_user, case):
    owner = make_user("faculty")
    course = make_course(owner)
    email, role = make_user("faculty").email, "assistant"
    if case == "student":
        email = make_user("student").email
    elif case == "unknown":
        email = "nobody@tests.example"
    elif case == "inactive":
        email = make_user("faculty", status=UserStatus.DEACTIVATED).email
    elif case == "duplicate":
        email = owner.email
    elif case == "bad_role":
        role = "dean"
    elif case == "owner_role":
        role = "owner"
    elif case == "empty":
        email = "  "
    with pytest.raises((InvalidInput, staff.InvalidInput, Conflict)) as caught:
        staff.add_staff(owner, course.id, email, role)
    assert caught.value.field == ("role" if case in ("bad_role", "owner_role") else "email")
    assert len(staff.list_staff(course.id)) == 1


def test_only_owners_and_admins_manage_staff(make_user):
    owner, instructor, assistant = make_user("faculty"), make_user("faculty"), make_user("faculty")
    course = make_course(owner)
    instructor_row = add_member(course, instructor, ManagementRole.INSTRUCTOR)
    add_member(course, assistant, ManagementRole.ASSISTANT)
    newcomer = make_user("faculty")
    for user in (instructor, assistant, make_user("faculty"), make_user("student")):
        with pytest.raises(Forbidden):
            staff.add_staff(user, course.id, newcomer.email, "assistant")
        with pytest.raises(Forbidden):
            staff.change_role(user, course.id, instructor_row.id, "owner")
        with pytest.raises(Forbidden):
            staff.remove_staff(user, course.id, instructor_row.id)
    admin = make_user("admin")
    staff.add_staff(admin, course.id, newcomer.email, "instructor")
    assert staff.change_role(admin, course.id, instructor_row.id, "assistant").role == ManagementRole.ASSISTANT
    staff.remove_staff(admin, course.id, instructor_row.id)
    assert {u.id for _, u in staff.list_staff(course.id)} == {owner.id, assistant.id, newcomer.id}


def test_last_owner_is_protected(make_user):
    owner, colleague = make_user("faculty"), make_user("faculty")
    course = make_course(owner)
    owner_row = db.session.scalar(select(CourseManagement).where(CourseManagement.course_id == course.id))
    with pytest.raises(Conflict):
        staff.change_role(owner, course.id, owner_row.id, "instructor")
    with pytest.raises(Conflict):
        staff.remove_staff(owner, course.id, owner_row.id)
    with pytest.raises(Conflict):
        staff.remove_staff(make_user("admin"), course.id, owner_row.id)
    assert db.session.get(CourseManagement, owner_row.id).role == ManagementRole.OWNER
    # With a second owner, the first may step down; the catalog's instructor follows.
    colleague_row = add_member(course, colleague, ManagementRole.INSTRUCTOR)
    staff.change_role(owner, course.id, colleague_row.id, "owner")
    staff.change_role(owner, course.id, owner_row.id, "assistant")
    assert db.session.get(Course, course.id).instructor_id == colleague.id
    with pytest.raises(Conflict):
        staff.remove_staff(colleague, course.id, colleague_row.id)
    staff.remove_staff(colleague, course.id, owner_row.id)
    assert [u.id for _, u in staff.list_staff(course.id)] == [colleague.id]


def test_staff_rows_of_another_course_are_not_found(make_user):
    owner = make_user("faculty")
    mine, theirs = make_course(owner), make_course(make_user("faculty"))
    their_row = db.session.scalar(select(CourseManagement).where(CourseManagement.course_id == theirs.id))
    with pytest.raises(NotFound):
        staff.remove_staff(owner, mine.id, their_row.id)
    with pytest.raises(NotFound):
        staff.change_role(owner, mine.id, their_row.id, "assistant")


# ---------------------------------------------------------------- queries


def test_managed_courses_for_faculty_and_admin(make_user):
    faculty, other = make_user("faculty"), make_user("faculty")
    mine = make_course(faculty, modules=2, lessons=3)
    helping = make_course(other)
    add_member(helping, faculty, ManagementRole.ASSISTANT)
    make_course(other)
    page = queries.managed_courses(faculty)
    rows = {item.course.id: item for item in page.items}
    assert set(rows) == {mine.id, helping.id}
    assert (rows[mine.id].role, rows[mine.id].modules, rows[mine.id].lessons) == (ManagementRole.OWNER, 2, 6)
    assert rows[helping.id].role == ManagementRole.ASSISTANT
    assert {item.course.id for item in queries.managed_courses(faculty, status="published").items} == set()
    admin_ids = {item.course.id for item in queries.managed_courses(make_user("admin"), size=1000).items}
    assert {mine.id, helping.id} <= admin_ids


def test_managed_courses_paginate(make_user):
    faculty = make_user("faculty")
    created = {make_course(faculty).id for _ in range(5)}
    first = queries.managed_courses(faculty, size=3)
    second = queries.managed_courses(faculty, size=3, cursor=first.next_cursor)
    assert len(first.items) == 3 and first.has_next and not second.has_next
    assert {i.course.id for i in first.items} | {i.course.id for i in second.items} == created


def test_faculty_dashboard_lists_courses_with_sizes(make_user):
    faculty = make_user("faculty")
    course = make_course(faculty, modules=1, lessons=2)
    data = queries.faculty_dashboard(faculty)
    assert data["managed_courses"] == [(course, ManagementRole.OWNER)]
    assert data["course_stats"][course.id].lessons == 2
    assert data["more_courses"] is False


def test_outline_groups_lessons_in_order(make_user):
    owner = make_user("faculty")
    course = make_course(owner, modules=2, lessons=3)
    outline = queries.outline(course.id)
    assert [item.module.position for item in outline] == [1, 2]
    assert [lesson.title for lesson in outline[1].lessons] == ["Lesson 2.1", "Lesson 2.2", "Lesson 2.3"]
