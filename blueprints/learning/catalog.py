"""The catalog and studying: browse and search courses, a course's page with its outline,
enrol and leave, lessons, mark complete.

Browsing is open to every signed-in user (faculty see what students see); enrolling, leaving
and completing lessons need ``Permission.LEARN``; lessons open to enrolled students and, as a
preview, to the course's staff and admins (the services decide, per course).

Enrol, leave and "mark complete" are small forms: with htmx they swap their part of the page
in place (and "mark complete" fires ``course-progress`` so the progress bar refreshes itself);
without JavaScript they redirect back to the page they came from.
"""

from __future__ import annotations

import uuid

from flask import flash, request, url_for
from flask_login import current_user

from blueprints.learning import bp
from blueprints.web import is_htmx, redirect_to, render, wants_fragment
from portal.db import db
from portal.errors import DomainError
from portal.learning.education import queries
from portal.learning.education import services as education
from portal.learning.education.models import EnrollmentStatus
from portal.learning.lms import access
from portal.learning.markdown import render_markdown
from portal.money.currency import format_amount
from portal.money.payments import pages as payment_pages
from portal.security.access import login_required, requires
from portal.security.permissions import Permission

#: The event "mark complete" fires so that the progress bar reloads itself.
PROGRESS_EVENT = "course-progress"


def _page_number() -> int:
    try:
        return int(request.args.get("page", 1))
    except ValueError:
        return 1


@bp.get("/courses")
@login_required
def catalog():
    filters = queries.CatalogFilters.clean(
        request.args.get("q"), request.args.get("category"), request.args.get("level"),
        request.args.get("instructor"),
    )
    page = queries.catalog_page(current_user, filters, _page_number())
    # The filters' choices sit outside the results block: a live-search request skips them.
    facets = {} if wants_fragment() else queries.catalog_facets()
    return render("learning/catalog/catalog.html", "results", page=page, filters=filters, fmt=format_amount, **facets)


def _course_context(outline: queries.Outline) -> dict:
    completed = outline.is_enrolled and outline.enrollment.status == EnrollmentStatus.COMPLETED
    return {
        "outline": outline,
        "course": outline.course,
        "description": render_markdown(outline.course.description),
        "continue_lesson": outline.continue_lesson() if outline.is_enrolled else None,
        "certificate_code": queries.certificate_code(current_user, outline.course.id) if completed else None,
        "staff_links": _staff_links(outline),
        # A paid course shows its price, and "Buy" instead of "Enrol" until the student owns it.
        "purchase": (payment_pages.course_purchase(current_user, outline.course)
                     if not outline.is_enrolled else None),
    }


def _staff_links(outline: queries.Outline) -> dict:
    """Where the course's staff go from its page: the editor (those who may edit it) and the
    gradebook (those who may see grades)."""
    if not outline.is_staff:
        return {}
    return {
        "edit": outline.is_admin or outline.staff_role in access.CAN_EDIT,
        "grade": outline.is_admin or outline.staff_role in access.CAN_GRADE,
    }


@bp.get("/courses/<slug>")
@login_required
def course(slug: str):
    outline = queries.load_outline(current_user, slug=slug)
    return render("learning/catalog/course.html", "study", **_course_context(outline))


def _enrolment_action(slug: str, action, done: str):
    """Run enrol or leave; answer with the course's study panel (htmx) or back to the page."""
    outline = queries.load_outline(current_user, slug=slug)
    try:
        action(current_user, outline.course.id)
    except DomainError as exc:
        db.session.rollback()
        if not is_htmx():
            flash(exc.message, "error")
            return redirect_to("learning.course", slug=slug)
        outline = queries.load_outline(current_user, slug=slug)
        return render("learning/catalog/course.html", "study", status=exc.status_code, error=exc.message,
                      **_course_context(outline))
    db.session.commit()
    if not is_htmx():
        flash(done, "success")
        return redirect_to("learning.course", slug=slug)
    outline = queries.load_outline(current_user, slug=slug)
    return render("learning/catalog/course.html", "study", notice=done, **_course_context(outline))


@bp.post("/courses/<slug>/enrol")
@requires(Permission.LEARN)
def enrol(slug: str):
    return _enrolment_action(slug, education.enrol, "You are enrolled. Welcome to the course!")


@bp.post("/courses/<slug>/leave")
@requires(Permission.LEARN)
def leave(slug: str):
    return _enrolment_action(slug, education.leave, "You left the course. Your progress is kept if you come back.")


@bp.get("/courses/<slug>/progress")
@login_required
def progress(slug: str):
    """The course's progress bar alone: what the lesson page reloads after "mark complete"."""
    outline = queries.load_outline(current_user, slug=slug)
    return render("learning/catalog/_progress.html", outline=outline)


@bp.get("/courses/<slug>/lessons/<uuid:lesson_id>")
@login_required
def lesson(slug: str, lesson_id: uuid.UUID):
    outline = queries.load_outline(current_user, slug=slug, body_of=lesson_id)
    access = education.view_lesson(current_user, lesson_id, outline)
    previous, following = outline.neighbours(lesson_id)
    # Rendered before the commit, which would expire every loaded row and read them again.
    response = render("learning/catalog/lesson.html", outline=outline, course=outline.course, lesson=access.lesson,
                      module=access.module, preview=access.preview, previous=previous, following=following,
                      body=render_markdown(outline.body))
    db.session.commit()
    return response


@bp.post("/courses/<slug>/lessons/<uuid:lesson_id>/complete")
@requires(Permission.LEARN)
def complete(slug: str, lesson_id: uuid.UUID):
    outline = queries.load_outline(current_user, slug=slug)
    result = education.complete_lesson(current_user, lesson_id, outline)
    if result.course_completed:
        message = f"Lesson complete, and with it the whole course: well done, you completed {outline.course.title}!"
    elif result.newly_completed:
        message = "Lesson marked complete."
    else:
        message = "You had already completed this lesson."
    if not is_htmx():
        db.session.commit()
        flash(message, "success")
        return redirect_to(url=url_for("learning.lesson", slug=slug, lesson_id=lesson_id))
    found = outline.find(lesson_id)
    previous, following = outline.neighbours(lesson_id)
    # The side outline's tick and the lesson links (a module may have opened) are swapped in
    # out of band.
    outline.refresh_locks()
    response = render("learning/catalog/_complete.html", trigger=PROGRESS_EVENT, outline=outline,
                      course=outline.course, lesson=found[0], previous=previous, following=following,
                      notice=message, preview=False,
                      outline_oob=True)
    db.session.commit()
    return response


@bp.get("/grades")
@requires(Permission.LEARN)
def my_grades():
    """The student's released grades and course totals, all courses or one (``?course=<id>``)."""
    try:
        course_id = uuid.UUID(request.args["course"]) if request.args.get("course") else None
    except ValueError:
        course_id = None
    view = queries.my_grades(current_user, course_id, _page_number())
    return render("learning/catalog/grades.html", view=view)


@bp.get("/achievements")
@requires(Permission.LEARN)
def my_achievements():
    page = queries.my_achievements(current_user, _page_number())
    return render("learning/catalog/achievements.html", page=page)
