"""The dashboard (one per role) and the user's notifications."""

from __future__ import annotations

import uuid

from flask import abort, redirect, request, url_for
from flask_login import current_user

from blueprints.home import bp
from blueprints.web import is_htmx, redirect_to, render
from portal.accounts.models import Role
from portal.db import db
from portal.platform.notifications import queries as notification_queries
from portal.platform.notifications import services as notifications
from portal.security.access import login_required, public

DASHBOARDS = {
    Role.STUDENT: "home/dashboard_student.html",
    Role.FACULTY: "home/dashboard_faculty.html",
    Role.COMPLIANCE: "home/dashboard_compliance.html",
    Role.ADMIN: "home/dashboard_admin.html",
}


@bp.get("/")
@public
def index():
    if current_user.is_authenticated:
        return redirect(url_for("home.dashboard"))
    return render("home/landing.html")


@bp.get("/dashboard")
@login_required
def dashboard():
    context = {}
    if current_user.role == Role.ADMIN:
        from portal.accounts.queries import counts_by_role

        context["counts"] = counts_by_role()
    elif current_user.role == Role.STUDENT:
        from portal.learning.education.queries import student_dashboard
        from portal.money.billing.queries import past_due_invoice
        from portal.money.currency import format_amount
        from portal.money.wallets.queries import overview as wallet_overview

        context.update(student_dashboard(current_user))
        context["wallet"] = wallet_overview(current_user)
        context["unpaid"] = unpaid = past_due_invoice(current_user)
        context["unpaid_amount"] = format_amount(unpaid.total, unpaid.currency) if unpaid else None
        context.update(_insights_card(context["enrollments"]))
    elif current_user.role == Role.FACULTY:
        from portal.learning.lms.queries import faculty_dashboard

        context.update(faculty_dashboard(current_user))
    elif current_user.role == Role.COMPLIANCE:
        from portal.compliance.cases.queries import summary as case_summary

        context["case_summary"] = case_summary(current_user)
    recent = notification_queries.page_for(current_user.id, None, size=5).items
    return render(DASHBOARDS[current_user.role], recent_notifications=recent, **context)


def _insights_card(enrollments) -> dict:
    """The student's insights for their active courses on the dashboard: one statement."""
    from portal.learning.education.models import EnrollmentStatus
    from portal.learning.tutoring.insights import basis_text, course_insights

    active = [e for e in enrollments if e.status == EnrollmentStatus.ACTIVE]
    found = course_insights(current_user.id, [e.course_id for e in active])
    return {"insight_courses": active, "insights_by_course": {c.course_id: c for c in found},
            "basis_text": basis_text}


@bp.get("/healthz")
@public
def healthz():
    """Liveness for load balancers (and the benchmark's trivial baseline): no database."""
    return {"status": "ok"}


@bp.get("/notifications")
@login_required
def notification_list():
    unread_only = request.args.get("show") == "unread"
    page = notification_queries.page_for(current_user.id, request.args.get("after"), unread_only=unread_only)
    block = "items" if is_htmx() and request.args.get("after") else "list"
    return render("home/notifications.html", block, page=page, unread_only=unread_only)


@bp.get("/notifications/count")
@login_required
def notification_count():
    return render("home/_bell.html", count=notifications.unread_count(current_user.id))


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


@bp.post("/notifications/<note_id>/read")
@login_required
def notification_read(note_id: str):
    note = notifications.mark_read(current_user, _uuid(note_id))
    db.session.commit()
    if is_htmx():
        return render("home/_notification.html", note=note, trigger="notifications-changed")
    return redirect(note.link or url_for("home.notification_list"))


@bp.post("/notifications/read-all")
@login_required
def notification_read_all():
    notifications.mark_all_read(current_user)
    db.session.commit()
    if is_htmx():
        page = notification_queries.page_for(current_user.id, None)
        return render("home/notifications.html", "list", page=page, unread_only=False,
                      trigger="notifications-changed")
    return redirect_to("home.notification_list")
