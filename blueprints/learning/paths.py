"""A student's personal learning path through a course, with their insights for it.

The path page creates the path on the first visit. "Regenerate" and "I have reviewed it" are
small forms: with htmx they swap the path in place, without JavaScript they redirect back to the
page. Only students enrolled in the course (active or completed) reach it; a course that does
not exist is a 404, one the student is not in a 403 (as lessons are).
"""

from __future__ import annotations

import uuid

from flask import flash
from flask_login import current_user

from blueprints.learning import bp
from blueprints.web import is_htmx, redirect_to, render
from portal.db import db
from portal.learning.tutoring import insights, paths
from portal.security.access import requires
from portal.security.permissions import Permission

#: The element the path's forms swap.
PATH_TARGET = "learning-path"


def _page(course, path, *, notice: str | None = None):
    context = {
        "course": course,
        "path": path,
        "steps": paths.steps_of(path),
        "notice": notice,
        "basis_text": insights.basis_text,
        "min_answers": insights.MIN_ANSWERS,
        "min_grades": insights.MIN_GRADES,
    }
    if not is_htmx():
        found = insights.course_insights(current_user.id, [course.id])
        context["course_insights"] = found[0] if found else None
    return render("learning/paths/path.html", "path", **context)


@bp.get("/courses/<slug>/path")
@requires(Permission.LEARN)
def learning_path(slug: str):
    course = paths.student_course(current_user.id, slug)
    path, created = paths.ensure_path(current_user.id, course.id)
    # Rendered before the commit, which would expire the rows just read.
    response = _page(course, path)
    if created:
        db.session.commit()
    return response


@bp.post("/courses/<slug>/path/regenerate")
@requires(Permission.LEARN)
def regenerate_path(slug: str):
    course = paths.student_course(current_user.id, slug)
    path = paths.generate_path(current_user.id, course.id)
    message = ("A new path is ready, built from where you stand now." if path.steps_total
               else "You are all caught up: there is nothing to add to your path right now.")
    if not is_htmx():
        db.session.commit()
        flash(message, "success")
        return redirect_to("learning.learning_path", slug=slug)
    response = _page(course, path, notice=message)
    db.session.commit()
    return response


@bp.post("/courses/<slug>/path/steps/<uuid:step_id>/reviewed")
@requires(Permission.LEARN)
def review_step_done(slug: str, step_id: uuid.UUID):
    course = paths.student_course(current_user.id, slug)
    path = paths.mark_reviewed(current_user.id, course.id, step_id)
    if not is_htmx():
        db.session.commit()
        return redirect_to("learning.learning_path", slug=slug)
    response = _page(course, path, notice="Marked as reviewed.")
    db.session.commit()
    return response
