"""Course analytics for the course's staff: the enrolment funnel, drop-off per lesson, time to
complete, and a quiz's item analysis (facility, discrimination, choice shares) with the
questions that discriminate poorly marked."""

from __future__ import annotations

import uuid

from flask import request
from flask_login import current_user

from blueprints.learning import bp
from blueprints.web import render, wants_fragment
from portal.errors import DomainError, NotFound
from portal.learning.assessment import item_analysis
from portal.learning.education import analytics_queries, authoring
from portal.learning.lms import access
from portal.security.access import requires
from portal.security.permissions import Permission


class BadQuizChoice(DomainError):
    status_code = 400


def _chosen_quiz(choices) -> uuid.UUID | None:
    given = request.args.get("quiz", "").strip()
    if not given:
        rated = [c for c in choices if c.attempts]
        return (rated or choices)[0].id if choices else None
    try:
        chosen = uuid.UUID(given[:40])
    except ValueError:
        raise BadQuizChoice("Choose a quiz from the list: that quiz reference is not valid.", field="quiz") from None
    if chosen not in {c.id for c in choices}:
        raise NotFound("That quiz is not one of this course's.")
    return chosen


@bp.get("/manage/<uuid:course_id>/analytics")
@requires(Permission.TEACH)
def course_analytics(course_id: uuid.UUID):
    course = authoring.course_for(current_user, course_id, access.CAN_GRADE, "see this course's analytics")
    choices = analytics_queries.quizzes(course.id)
    quiz_id = _chosen_quiz(choices)
    items = item_analysis.quiz_items(quiz_id) if quiz_id else None
    context = {"course": course, "choices": choices, "quiz_id": quiz_id, "items": items,
               "weak_below": item_analysis.WEAK_DISCRIMINATION}
    if wants_fragment():  # the quiz picker swaps the item analysis only
        return render("learning/analytics/course.html", "items", **context)
    return render("learning/analytics/course.html", None, funnel=analytics_queries.funnel(course.id),
                  lessons=analytics_queries.drop_off(course.id),
                  timing=analytics_queries.time_to_complete(course.id), **context)
