"""Earnings: a student's rewards and their progress toward each milestone; the milestones
admins and faculty define; and, for admins, every earning with "Pay", "Pay pending" and
"Reverse".

Thin views: read the form, call portal.money.earnings.services, commit once. With htmx the
milestone form, a milestone's row and an earning's row swap in place; without JavaScript every
form posts and redirects back.
"""

from __future__ import annotations

import uuid

from flask import flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from blueprints.wallet import bp
from blueprints.web import attach_error, is_htmx, redirect_to, render
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, NotFound
from portal.money.currency import CURRENCIES
from portal.money.earnings import queries
from portal.money.earnings import services as service
from portal.money.earnings.models import EarningStatus, MilestoneKind
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission

#: Form fields the service checks; their messages are shown next to them.
MILESTONE_FIELDS = ("title", "description", "kind", "course_id", "quiz_id", "min_score", "streak_days",
                    "reward_amount", "reward_currency")


class MilestoneForm(FlaskForm):
    # The service checks every value and names the field it refuses; the form only carries text.
    title = StringField("Title")
    description = TextAreaField("Description for students (optional)")
    kind = SelectField("What the student does", choices=[SelectChoice(k.value, k.label) for k in MilestoneKind],
                       validate_choice=False)
    course_id = SelectField("Course", validate_choice=False)
    quiz_id = SelectField("Quiz (for \u201cPass a quiz\u201d)", validate_choice=False)
    min_score = StringField("Minimum score in % (for \u201cPass a quiz\u201d, optional)")
    streak_days = StringField("Days in a row (for \u201cLearning streak\u201d)")
    reward_amount = StringField("Reward")
    reward_currency = SelectField("Currency", choices=[SelectChoice(c, c) for c in CURRENCIES], validate_choice=False)
    active = BooleanField("Active (pays from now on)", default=True)


def _amount(value, code: str) -> str:
    """An amount for a table cell: kept on one line (a no-break space before the currency)."""
    return service.display_amount(value, code).replace(" ", "\u00a0")


def _uuid_arg(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.args.get(name, "").strip())
    except ValueError:
        return None


def _input(form: MilestoneForm) -> service.MilestoneInput:
    return service.MilestoneInput(
        title=form.title.data or "", description=form.description.data or "", kind=form.kind.data or "",
        course_id=form.course_id.data or None, quiz_id=form.quiz_id.data or None, min_score=form.min_score.data,
        streak_days=form.streak_days.data, reward_amount=form.reward_amount.data or "",
        reward_currency=form.reward_currency.data or "", active=form.active.data)


def _course_choices(form: MilestoneForm, courses: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The course field's options, (value, label), and the quiz field's choices for the course
    chosen. The course options are written by the template (an admin's list holds every
    course: WTForms' widget cost about 25 µs an option)."""
    any_label = "Any course" if current_user.role.value == "admin" else "Choose one of your courses"
    try:
        course_id = uuid.UUID(form.course_id.data) if form.course_id.data else None
    except ValueError:
        course_id = None
    quizzes = queries.quiz_choices(course_id) if str(course_id) in {cid for cid, _ in courses} else []
    form.quiz_id.choices = [SelectChoice("", "Any quiz of the course" if course_id else
                                         "Any quiz (choose a course first to pick one)"),
                            *(SelectChoice(str(qid), title) for qid, title in quizzes)]
    return [("", any_label), *courses]


def _milestones_page(form: MilestoneForm, editing=None, *, status: int = 200, block: str | None = None):
    data = queries.manage_page(current_user, request.args.get("after"))
    course_choices = _course_choices(form, data.courses)
    action = (url_for("wallet.update_milestone", milestone_id=editing.id) if editing
              else url_for("wallet.create_milestone"))
    if block is None and is_htmx() and request.args.get("after"):
        block = "rows"
    return render("wallet/earnings/milestones.html", block, status=status, form=form, editing=editing,
                  action=action, page=data.rows, course_choices=course_choices,
                  limits=", ".join(service.display_amount(v, k) for k, v in service.FACULTY_REWARD_LIMITS.items()),
                  amount=_amount, is_admin=current_user.role.value == "admin")


def _form_for(milestone) -> MilestoneForm:
    form = MilestoneForm(formdata=None)
    form.title.data, form.description.data = milestone.title, milestone.description
    form.kind.data = milestone.kind.value
    form.course_id.data = str(milestone.course_id) if milestone.course_id else ""
    form.quiz_id.data = str(milestone.quiz_id) if milestone.quiz_id else ""
    form.min_score.data = f"{milestone.min_score.normalize():f}" if milestone.min_score is not None else ""
    form.streak_days.data = str(milestone.streak_days or "")
    form.reward_amount.data = f"{milestone.reward_amount.normalize():f}"
    form.reward_currency.data = milestone.reward_currency
    form.active.data = milestone.active
    return form


@bp.get("/milestones")
@requires(Permission.TEACH)
def milestones():
    editing_id = _uuid_arg("edit")
    if editing_id is not None:
        editing = service.get_milestone(current_user, editing_id)
        return _milestones_page(_form_for(editing), editing, block="form")
    return _milestones_page(MilestoneForm(formdata=None), block="form")


def _save(editing=None):
    form = MilestoneForm()
    if request.form.get("op") == "refresh" or not form.validate_on_submit():
        # Another course was chosen: the form again, with that course's quizzes; nothing saved.
        return _milestones_page(form, editing, block="form")
    try:
        if editing is None:
            milestone = service.create_milestone(current_user, _input(form))
        else:
            milestone = service.update_milestone(current_user, editing.id, _input(form))
    except DomainError as exc:
        db.session.rollback()
        if exc.field not in MILESTONE_FIELDS and exc.status_code == 404:
            raise
        for field, message in (getattr(exc, "errors", None) or {exc.field: exc.message}).items():
            attach_error(form, DomainError(message, field=field))
        return _milestones_page(form, editing, status=exc.status_code, block="form")
    db.session.commit()
    flash(f"\u201c{milestone.title}\u201d {'saved' if editing else 'created'}.", "success")
    return redirect_to("wallet.milestones")


@bp.post("/milestones")
@requires(Permission.TEACH)
def create_milestone():
    return _save()


@bp.post("/milestones/<uuid:milestone_id>")
@requires(Permission.TEACH)
def update_milestone(milestone_id: uuid.UUID):
    return _save(service.get_milestone(current_user, milestone_id))


@bp.post("/milestones/<uuid:milestone_id>/active")
@requires(Permission.TEACH)
def set_milestone_active(milestone_id: uuid.UUID):
    active = request.form.get("active") == "1"
    try:
        milestone = service.set_active(current_user, milestone_id, active)
    except DomainError as exc:
        db.session.rollback()
        if is_htmx() and exc.status_code != 404:
            milestone = service.get_milestone(current_user, milestone_id)
            return render("wallet/earnings/_milestone_row.html", status=exc.status_code,
                          row=queries.milestone_row(current_user, milestone), amount=_amount,
                          error=exc.message)
        raise
    db.session.commit()
    if is_htmx():
        return render("wallet/earnings/_milestone_row.html", row=queries.milestone_row(current_user, milestone),
                      amount=_amount)
    flash(f"\u201c{milestone.title}\u201d is {'active' if milestone.active else 'inactive'}.", "success")
    return redirect_to("wallet.milestones")


# ------------------------------------------------------------------------------ students


@bp.get("/earnings")
@requires(Permission.USE_WALLET)
def earnings():
    data = queries.student_earnings(current_user, utcnow().date(), request.args.get("after"))
    block = "rows" if is_htmx() and request.args.get("after") else None
    return render("wallet/earnings/index.html", block, data=data, amount=_amount,
                  percent=queries.percent_text)


# ------------------------------------------------------------------------------ admins


def _status_filter() -> str:
    status = request.args.get("status", "")
    return status if status in EarningStatus._value2member_map_ else ""


@bp.get("/earnings/review")
@requires(Permission.MANAGE_MONEY)
def review_earnings():
    status = _status_filter()
    page = queries.review_page(status, request.args.get("after"))
    block = None
    if is_htmx():
        block = "rows" if request.args.get("after") else "results"
    return render("wallet/earnings/review.html", block, page=page, status_filter=status, statuses=list(EarningStatus),
                  pending=queries.pending_count(), amount=_amount, new_key=ledger.new_key,
                  max_reason=service.MAX_REASON)


def _row_response(earning_id: uuid.UUID, *, error: str | None = None, status: int = 200):
    row = queries.review_row(earning_id)
    if row is None:
        raise NotFound("That reward does not exist.")
    return render("wallet/earnings/_review_row.html", status=status, row=row, amount=_amount,
                  new_key=ledger.new_key, max_reason=service.MAX_REASON, error=error)


def _earning_action(earning_id: uuid.UUID, action, done: str):
    """Run one admin action on an earning; answer with its row (htmx) or back to the list."""
    try:
        _, replayed = action()
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        if is_htmx():
            return _row_response(earning_id, error=exc.message, status=exc.status_code)
        flash(exc.message, "error")
        return redirect_to("wallet.review_earnings")
    db.session.commit()
    if is_htmx():
        return _row_response(earning_id)
    flash(done if not replayed else "That was already done; nothing changed.", "success")
    return redirect_to("wallet.review_earnings")


@bp.post("/earnings/<uuid:earning_id>/pay")
@requires(Permission.MANAGE_MONEY)
def pay_earning(earning_id: uuid.UUID):
    key = request.form.get("idempotency_key")
    return _earning_action(earning_id, lambda: service.pay_earning(current_user, earning_id, key),
                           "The reward was paid.")


@bp.post("/earnings/<uuid:earning_id>/reverse")
@requires(Permission.MANAGE_MONEY)
def reverse_earning(earning_id: uuid.UUID):
    key, reason = request.form.get("idempotency_key"), request.form.get("reason", "")[:1000]
    return _earning_action(earning_id, lambda: service.reverse_earning(current_user, earning_id, reason, key),
                           "The reward was reversed; the student was told why.")


@bp.post("/earnings/pay-pending")
@requires(Permission.MANAGE_MONEY)
def pay_pending_earnings():
    report, replayed = service.pay_all_pending(current_user, request.form.get("idempotency_key"))
    db.session.commit()
    if replayed:
        flash("Those rewards were already paid by the same request; nothing changed.", "info")
    elif report.still_pending:
        flash(f"{report.paid} reward(s) paid; {report.still_pending} still cannot be paid (for example a frozen "
              "wallet) and stay pending.", "error")
    else:
        flash(f"{report.paid} pending reward(s) paid.", "success")
    return redirect_to("wallet.review_earnings")
