"""Assignments (authoring, submitting), the grading screen and the course gradebook.

Thin views: read the form, call portal.learning.lms.assignments / .grading or
portal.learning.assessment.gradebook, commit once. With htmx the grading panel and the gradebook
rows swap in place; without JavaScript every form posts and redirects back.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from flask import Response, abort, flash, request, stream_with_context, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select
from wtforms import BooleanField, DateTimeLocalField, DecimalField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from blueprints.learning import bp
from blueprints.web import attach_error, is_htmx, redirect_to, refusal, render
from portal.accounts.models import User
from portal.db import context as db_context
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.learning.assessment import gradebook
from portal.learning.education.models import Course
from portal.learning.lms import access, grading
from portal.learning.lms import assignments as service
from portal.learning.lms import queries as lms_queries
from portal.learning.lms.models import Assignment, Grade, Submission
from portal.learning.markdown import render_markdown
from portal.security.access import login_required, requires
from portal.security.permissions import Permission

DATE_FORMAT = "%Y-%m-%dT%H:%M"
SUBMISSIONS_PER_PAGE = 50


# ---------------------------------------------------------------------------------- forms


class AssignmentForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired("Give the assignment a title."), Length(max=160)])
    instructions = TextAreaField("Instructions (Markdown)", validators=[Length(max=100_000)])
    points = DecimalField("Points", places=2, validators=[InputRequired("How many points is it worth?"),
                                                           NumberRange(min=Decimal("0.01"), max=Decimal("9999.99"))])
    due_at = DateTimeLocalField("Due (UTC)", format=DATE_FORMAT, validators=[Optional()])
    cutoff_at = DateTimeLocalField("Cut-off (UTC)", format=DATE_FORMAT, validators=[Optional()])
    late_penalty_percent_per_day = DecimalField("Late penalty, % per day", places=2, default=Decimal(0),
                                                validators=[Optional(), NumberRange(min=0, max=100)])
    late_penalty_floor_percent = DecimalField("Penalty floor, % of the score", places=2, default=Decimal(0),
                                              validators=[Optional(), NumberRange(min=0, max=100)])
    allow_text = BooleanField("Text answers", default=True)
    allow_files = BooleanField("File uploads")
    max_file_mb = DecimalField("Largest file (MB)", places=1, default=Decimal(5),
                               validators=[Optional(), NumberRange(min=Decimal("0.1"), max=50)])
    allowed_extensions = StringField("Allowed file types", default="pdf",
                                     validators=[Length(max=200)])


class ExtensionForm(FlaskForm):
    student = StringField("Student e-mail", validators=[DataRequired("Whose deadline?"), Length(max=254)])
    until = DateTimeLocalField("New deadline (UTC)", format=DATE_FORMAT, validators=[Optional()])


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _local(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


_RUBRIC_KEY = re.compile(r"^c(\d{1,2})_(?:l(\d{1,2})_)?(id|title|description|points)$")


def _rubric_from_form(form) -> list[dict]:
    """``c<i>_title``, ``c<i>_l<j>_points``... into criteria with levels; blank rows dropped."""
    criteria: dict[int, dict] = {}
    for key, value in form.items():
        match = _RUBRIC_KEY.match(key)
        if not match:
            continue
        c, level, name = int(match[1]), match[2], match[3]
        criterion = criteria.setdefault(c, {"levels": {}})
        target = criterion["levels"].setdefault(int(level), {}) if level is not None else criterion
        target[name] = value.strip()[:1000]
    rubric = []
    for c in sorted(criteria):
        criterion = criteria[c]
        levels = [criterion["levels"][j] for j in sorted(criterion["levels"])]
        levels = [lv for lv in levels if lv.get("title") or lv.get("points") or lv.get("description")]
        if not criterion.get("title") and not levels:
            continue
        rubric.append({"id": criterion.get("id") or None, "title": criterion.get("title", ""),
                       "description": criterion.get("description", ""), "levels": levels})
    return rubric


def _rubric_for_editing(rubric: list[dict], op: str) -> list[dict]:
    """The rubric with the blank rows the editor offers (one new level per criterion, plus
    what the "add" buttons asked for)."""
    rows = [dict(c, levels=list(c.get("levels", []))) for c in rubric]
    if op == "add_criterion" or not rows:
        rows.append({"id": "", "title": "", "description": "", "levels": [{}, {}, {}]})
    match = re.match(r"^add_level_(\d{1,2})$", op or "")
    if match and int(match[1]) < len(rows):
        rows[int(match[1])]["levels"].append({})
    return rows


def _input_from(form: AssignmentForm, rubric: list[dict]) -> service.AssignmentInput:
    return service.AssignmentInput(
        title=form.title.data or "",
        instructions=form.instructions.data or "",
        points=form.points.data,
        due_at=_utc(form.due_at.data),
        cutoff_at=_utc(form.cutoff_at.data),
        late_penalty_percent_per_day=form.late_penalty_percent_per_day.data or Decimal(0),
        late_penalty_floor_percent=form.late_penalty_floor_percent.data or Decimal(0),
        allow_text=form.allow_text.data,
        allow_files=form.allow_files.data,
        max_file_bytes=int((form.max_file_mb.data or Decimal(5)) * 1_000_000),
        allowed_extensions=service.parse_extensions(form.allowed_extensions.data),
        rubric=rubric,
    )


def _course_or_404(course_id: uuid.UUID) -> Course:
    course = db.session.get(Course, course_id)
    if course is None:
        raise NotFound("That course does not exist.")
    return course


def _editor(form: AssignmentForm, course: Course, assignment: Assignment | None, rubric: list[dict], op: str,
            rubric_error: str | None = None):
    action = (url_for("learning.edit_assignment", assignment_id=assignment.id) if assignment
              else url_for("learning.new_assignment", course_id=course.id))
    status = 422 if (form.errors or form.form_errors or rubric_error) else 200
    return render("learning/assignments/edit.html", "editor", form=form, course=course, assignment=assignment,
                  rubric=_rubric_for_editing(rubric, op), action=action, rubric_error=rubric_error, status=status)


def _save(course: Course, assignment: Assignment | None):
    form = AssignmentForm()
    op = request.form.get("op", "save") if request.method == "POST" else ""
    if request.method == "GET":
        if assignment is not None:
            form = AssignmentForm(obj=assignment, formdata=None)
            form.due_at.data, form.cutoff_at.data = _local(assignment.due_at), _local(assignment.cutoff_at)
            form.max_file_mb.data = Decimal(assignment.max_file_bytes) / 1_000_000
            form.allowed_extensions.data = ", ".join(assignment.allowed_extensions or [])
        return _editor(form, course, assignment, assignment.rubric if assignment else [], op)
    rubric = _rubric_from_form(request.form)
    if op != "save" or not form.validate_on_submit():
        return _editor(form, course, assignment, rubric, op)
    try:
        if assignment is None:
            assignment = service.create_assignment(current_user, course.id, _input_from(form, rubric))
        else:
            service.update_assignment(current_user, assignment.id, _input_from(form, rubric))
    except DomainError as exc:
        db.session.rollback()
        if exc.field == "rubric":
            return _editor(form, course, assignment, rubric, op, rubric_error=exc.message)
        attach_error(form, exc)
        return _editor(form, course, assignment, rubric, op)
    db.session.commit()
    flash(f"\u201c{assignment.title}\u201d saved.", "success")
    return redirect_to("learning.assignment", assignment_id=assignment.id)


# ---------------------------------------------------------------------------------- authoring


@bp.get("/courses/<uuid:course_id>/assignments")
@login_required
def course_assignments(course_id: uuid.UUID):
    course, items, staff = service.course_assignments(current_user, course_id)
    mine = {}
    if not staff and items:
        mine = dict(db.session.execute(
            select(Submission.assignment_id, Submission.status)
            .where(Submission.user_id == current_user.id, Submission.assignment_id.in_([a.id for a in items]))
        ).all())
    return render("learning/assignments/list.html", course=course, assignments=items, staff=staff,
                  can_edit=staff and access.may(current_user, course_id, access.CAN_EDIT), mine=mine)


@bp.route("/courses/<uuid:course_id>/assignments/new", methods=["GET", "POST"])
@requires(Permission.TEACH)
def new_assignment(course_id: uuid.UUID):
    course = _course_or_404(course_id)
    access.require(current_user, course.id, access.CAN_EDIT, "add assignments to this course")
    return _save(course, None)


@bp.route("/assignments/<uuid:assignment_id>/edit", methods=["GET", "POST"])
@requires(Permission.TEACH)
def edit_assignment(assignment_id: uuid.UUID):
    assignment = service.get_assignment(assignment_id)
    access.require(current_user, assignment.course_id, access.CAN_EDIT, "edit this assignment")
    return _save(db.session.get(Course, assignment.course_id), assignment)


@bp.post("/assignments/<uuid:assignment_id>/publish")
@requires(Permission.TEACH)
def publish_assignment(assignment_id: uuid.UUID):
    publish = request.form.get("published") == "1"
    assignment = service.set_published(current_user, assignment_id, publish)
    db.session.commit()
    flash(f"\u201c{assignment.title}\u201d is {'published' if publish else 'hidden from students'}.", "success")
    return redirect_to("learning.assignment", assignment_id=assignment_id)


@bp.post("/assignments/<uuid:assignment_id>/extensions")
@requires(Permission.TEACH)
def assignment_extension(assignment_id: uuid.UUID):
    form = ExtensionForm()
    assignment = service.get_assignment(assignment_id)
    access.require(current_user, assignment.course_id, access.CAN_GRADE, "grant extensions on this assignment")
    if form.validate_on_submit():
        student = db.session.scalar(select(User).where(func.lower(User.email) == form.student.data.strip().lower()))
        try:
            if student is None:
                raise DomainError("No student has that e-mail address.", field="student")
            service.set_extension(current_user, assignment_id, student.id, _utc(form.until.data))
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(f"Extension for {student.full_name} {'saved' if form.until.data else 'removed'}.", "success")
    else:
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
    return redirect_to("learning.assignment", assignment_id=assignment_id)


# ---------------------------------------------------------------------------------- the assignment page


@bp.get("/assignments/<uuid:assignment_id>")
@login_required
def assignment(assignment_id: uuid.UUID):
    found = db.session.get(Assignment, assignment_id)
    if found is None:
        raise NotFound("That assignment does not exist.")
    if access.may(current_user, found.course_id, access.CAN_GRADE):
        return _staff_assignment(found)
    found = service.student_assignment(current_user, assignment_id)
    submission, grade = service.own_submission(current_user, assignment_id)
    return _student_page(found, submission, grade)


def _student_page(assignment: Assignment, submission, grade, error: str | None = None, status: int = 200):
    course = db.session.get(Course, assignment.course_id)
    cutoff = service.cutoff_for(assignment, current_user.id)
    return render("learning/assignments/student.html", "submission", assignment=assignment, course=course,
                  submission=submission, grade=grade, error=error, status=status,
                  due=service.due_for(assignment, current_user.id), cutoff=cutoff,
                  closed=cutoff is not None and datetime.now(UTC) > cutoff,
                  instructions=render_markdown(assignment.instructions),
                  feedback=render_markdown(grade.feedback) if grade and grade.feedback else None,
                  human_size=service.human_size)


def _staff_assignment(assignment: Assignment):
    course = db.session.get(Course, assignment.course_id)
    page = max(1, request.args.get("page", 1, type=int))
    rows = db.session.execute(
        select(Submission, User.full_name, Grade.score, Grade.released_at)
        .join(User, User.id == Submission.user_id)
        .outerjoin(Grade, Grade.submission_id == Submission.id)
        .where(Submission.assignment_id == assignment.id)
        .order_by(User.full_name, Submission.id)
        .offset((page - 1) * SUBMISSIONS_PER_PAGE).limit(SUBMISSIONS_PER_PAGE + 1)
    ).all()
    has_next = len(rows) > SUBMISSIONS_PER_PAGE
    return render("learning/assignments/staff.html", "submissions", assignment=assignment, course=course,
                  rows=rows[:SUBMISSIONS_PER_PAGE], page=page, has_next=has_next,
                  counts=grading.queue_counts(assignment.id),
                  can_edit=access.may(current_user, assignment.course_id, access.CAN_EDIT),
                  can_release=access.may(current_user, assignment.course_id, access.CAN_RELEASE),
                  instructions=render_markdown(assignment.instructions), extension_form=ExtensionForm(),
                  human_size=service.human_size)


@bp.post("/assignments/<uuid:assignment_id>/submit")
@requires(Permission.LEARN)
def submit_assignment(assignment_id: uuid.UUID):
    assignment = service.student_assignment(current_user, assignment_id)
    upload = None
    file = request.files.get("file")
    if file is not None and file.filename:
        # Read at most one byte over the limit: enough to refuse an oversized file.
        upload = service.Upload(filename=file.filename, data=file.stream.read(assignment.max_file_bytes + 1),
                                content_type=file.mimetype or "")
    try:
        service.submit(current_user, assignment_id, text=request.form.get("text_answer"), upload=upload)
    except DomainError as exc:
        db.session.rollback()
        assignment = service.student_assignment(current_user, assignment_id)
        submission, grade = service.own_submission(current_user, assignment_id)
        return _student_page(assignment, submission, grade, error=exc.message, status=exc.status_code)
    db.session.commit()
    flash("Your work has been submitted.", "success")
    return redirect_to("learning.assignment", assignment_id=assignment_id)


@bp.get("/submissions/<uuid:submission_id>/file")
@login_required
def submission_file(submission_id: uuid.UUID):
    name, content_type, data = service.submission_file(current_user, submission_id)
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "upload"
    response = Response(data, mimetype=content_type)
    response.headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------------------------- grading


def _next_waiting(assignment_id: uuid.UUID, current: Submission) -> grading.GradingPanel:
    """The panel of the submission to grade after ``current``: the next one waiting after it,
    else the first one waiting (those skipped earlier), else an empty panel when nothing waits."""
    around = grading.grading_panel(assignment_id, current.id)
    next_id = around.next_id
    if next_id is None and around.first_waiting_id != current.id:
        next_id = around.first_waiting_id
    return grading.grading_panel(assignment_id, next_id)


def _grader_panel(assignment: Assignment, panel: grading.GradingPanel, *, notice: str | None = None):
    """The grading panel for an htmx request, with the address bar moved to its submission."""
    response = render("learning/assignments/_grade_panel.html",
                      **_grading_context(assignment, panel, notice=notice))
    response.headers["HX-Push-Url"] = url_for("learning.grade_screen", assignment_id=assignment.id,
                                              **({"s": panel.submission.id} if panel.submission else {}))
    return response


def _grading_context(assignment: Assignment, panel: grading.GradingPanel, error: str | None = None,
                     notice: str | None = None) -> dict:
    grade = panel.grade
    return {"assignment": assignment, "submission": panel.submission, "grade": grade,
            "student_name": panel.student_name, "prev_id": panel.prev_id, "next_id": panel.next_id,
            "error": error, "notice": notice, "counts": panel.counts,
            "can_release": access.may(current_user, assignment.course_id, access.CAN_RELEASE),
            "complete": grading.is_complete(assignment, grade), "human_size": service.human_size,
            "feedback_html": render_markdown(grade.feedback) if grade and grade.feedback else None}


@bp.get("/assignments/<uuid:assignment_id>/grade")
@requires(Permission.TEACH)
def grade_screen(assignment_id: uuid.UUID):
    """The grading screen: three statements (the session, the assignment with its course and the
    grader's role, the panel: ``grading.grading_panel``)."""
    assignment, course = grading.assignment_to_grade(current_user, assignment_id)
    wanted = request.args.get("s")
    if wanted:
        try:
            panel = grading.grading_panel(assignment.id, uuid.UUID(wanted))
        except ValueError:
            abort(404)
        if panel.submission is None:
            raise NotFound("That submission is not part of this assignment.")
    else:
        panel = grading.grading_panel(assignment.id, first_waiting=True)
    return render("learning/assignments/grade.html", "panel", course=course, **_grading_context(assignment, panel))


@bp.post("/submissions/<uuid:submission_id>/grade")
@requires(Permission.TEACH)
def save_grade(submission_id: uuid.UUID):
    change = grading.GradeChange()
    criterion, level = request.form.get("criterion"), request.form.get("level")
    if criterion and level:
        change.rubric_levels = {criterion: level}
    if "feedback" in request.form:
        change.feedback = request.form.get("feedback", "")
    error = None
    try:
        if request.form.get("raw_score", "").strip():
            change.raw_score = grading.parse_score(request.form["raw_score"])
        grading.grade_submission(current_user, submission_id, change)
    except DomainError as exc:
        refusal(exc)
        error = exc.message
    else:
        db.session.commit()
    submission = db.session.get(Submission, submission_id)
    assignment = db.session.get(Assignment, submission.assignment_id)
    if request.form.get("then") == "next" and not error:
        # "Save and next": on to the next submission waiting for a grade.
        following = _next_waiting(assignment.id, submission)
        if is_htmx():
            return _grader_panel(assignment, following, notice=None if following.submission
                                 else "Saved. Nothing else is waiting to be graded.")
        if following.submission is None:
            flash("Saved. Nothing else is waiting to be graded.", "success")
            return redirect_to("learning.grade_screen", assignment_id=assignment.id)
        return redirect_to("learning.grade_screen", assignment_id=assignment.id, s=following.submission.id)
    if is_htmx():
        return render("learning/assignments/_grade_panel.html", status=422 if error else 200,
                      **_grading_context(assignment, grading.grading_panel(assignment.id, submission.id), error))
    if error:
        flash(error, "error")
    return redirect_to("learning.grade_screen", assignment_id=assignment.id, s=submission.id)


@bp.post("/assignments/<uuid:assignment_id>/release")
@requires(Permission.TEACH)
def release_grades(assignment_id: uuid.UUID):
    count = grading.release_grades(current_user, assignment_id,
                                   link_for=lambda a: url_for("learning.assignment", assignment_id=a.id))
    db.session.commit()
    message = (f"{count} grade{'s' if count != 1 else ''} released to students." if count
               else "No complete, unreleased grades to release.")
    if request.form.get("from") == "grader":
        # Released from the grading screen: stay on it, at the submission that was open.
        assignment = db.session.get(Assignment, assignment_id)
        submission = _submission_of(assignment, request.form.get("s"))
        if is_htmx():
            return _grader_panel(assignment, grading.grading_panel(assignment.id, submission.id if submission else None),
                                 notice=message)
        flash(message, "success" if count else "info")
        return redirect_to("learning.grade_screen", assignment_id=assignment_id,
                           **({"s": submission.id} if submission else {}))
    flash(message, "success" if count else "info")
    return redirect_to("learning.assignment", assignment_id=assignment_id)


def _submission_of(assignment: Assignment, raw: str | None) -> Submission | None:
    """The submission named by a form field, if it is one of ``assignment``'s; else None."""
    try:
        submission = db.session.get(Submission, uuid.UUID(raw)) if raw else None
    except ValueError:
        return None
    return submission if submission is not None and submission.assignment_id == assignment.id else None


@bp.get("/grading")
@requires(Permission.TEACH)
def to_grade():
    """Work waiting for a grade in the courses the user grades: submissions and quiz essays."""
    return render("learning/assignments/to_grade.html", "summary", **lms_queries.to_grade(current_user))


# ---------------------------------------------------------------------------------- gradebook


@bp.app_template_global()
def gradebook_score_cells(items: list[gradebook.Item], row: gradebook.StudentRow) -> Markup:
    """One gradebook row's score cells, one ``<td>`` per item, as HTML.

    A page has 50 students by some 30 items: 1,500 cells. Written as a Jinja loop, each cell
    costs an iteration, a few attribute lookups, filters and escapes (about 10 µs), which made
    the cells most of the page's time; joined here they cost well under a microsecond each.
    The text is a number we formatted (as ``value|float|round(2)`` does) or a dash: nothing
    to escape."""
    assignment_scores, quiz_percents, dropped = row.assignment_scores, row.quiz_percents, row.result.dropped
    cells = []
    for item in items:
        if item.category == gradebook.ASSIGNMENTS:
            value, unit = assignment_scores.get(item.key), ""
        else:
            value, unit = quiz_percents.get(item.key), "%"
        text = f"{round(float(value), 2)}{unit}" if value is not None else '<span class="muted">–</span>'
        if dropped and (item.category, item.id) in dropped:
            cells.append(f'<td class="num dropped" title="Dropped (lowest)">{text}</td>')
        else:
            cells.append(f'<td class="num">{text}</td>')
    return Markup("".join(cells))  # noqa: S704 - numbers we formatted and fixed tags, no user text


@bp.get("/courses/<uuid:course_id>/gradebook")
@requires(Permission.TEACH)
def gradebook_view(course_id: uuid.UUID):
    book = gradebook.gradebook_page(current_user, course_id, request.args.get("after"))
    block = "rows" if is_htmx() and request.args.get("after") else None
    return render("learning/assignments/gradebook.html", block, book=book)


@bp.get("/courses/<uuid:course_id>/gradebook.csv")
@requires(Permission.TEACH)
def gradebook_csv(course_id: uuid.UUID):
    export = gradebook.csv_export(current_user, course_id)  # checks access before streaming
    actor = db_context.current_actor()

    def as_this_user():
        # The body is read after the request's transaction and identity are gone: the export's
        # query runs in a new transaction, which must carry the same identity (row security).
        with db_context.acting_as(actor, db.session):
            yield from export.lines

    response = Response(stream_with_context(as_this_user()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="gradebook-{export.course.slug}.csv"'
    return response


@bp.post("/courses/<uuid:course_id>/gradebook/<uuid:user_id>/override")
@requires(Permission.TEACH)
def gradebook_override(course_id: uuid.UUID, user_id: uuid.UUID):
    raw = request.form.get("percent", "").strip()
    try:
        try:
            percent = Decimal(raw) if raw else None
        except InvalidOperation as exc:
            raise DomainError("The override must be a number.", field="percent") from exc
        if percent is not None and not percent.is_finite():
            raise DomainError("The override must be a number.", field="percent")
        gradebook.set_override(current_user, course_id, user_id, percent, request.form.get("reason"))
    except DomainError as exc:
        refusal(exc)
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash("Override saved." if percent is not None else "Override removed.", "success")
    return redirect_to("learning.gradebook_view", course_id=course_id)
