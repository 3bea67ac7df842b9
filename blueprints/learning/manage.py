"""Course authoring for faculty: my courses, new course, the course editor (settings, modules,
lessons, order, publishing), the lesson editor with a live Markdown preview, and course staff.

Every route needs ``Permission.TEACH``; the services check what this user may do to this
course (``portal.learning.lms.access``). Row actions are small forms posting to their own URL:
with htmx they swap the changed part of the page (the outline, the status bar, a staff row);
without JavaScript the same post redirects back to the page.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from flask import flash, g, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    EmailField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp

from blueprints.learning import bp
from blueprints.web import attach_error, is_htmx, redirect_to, refusal, render
from portal.accounts.models import Role
from portal.db import db
from portal.errors import DomainError
from portal.learning.assessment import gradebook
from portal.learning.education import authoring
from portal.learning.education.models import COURSE_LANGUAGES, COURSE_TRANSITIONS, CourseLevel, CourseStatus
from portal.learning.lms import access, staff
from portal.learning.lms import queries as lms_queries
from portal.learning.lms.models import ManagementRole
from portal.learning.markdown import render_markdown
from portal.money.currency import CURRENCIES, format_amount
from portal.money.payments import pages as payment_pages
from portal.money.payments import services as payments
from portal.security.access import requires
from portal.security.permissions import Permission

TEACH = requires(Permission.TEACH)

# ---------------------------------------------------------------- forms

LEVEL_CHOICES = [SelectChoice(level.value, level.value.capitalize()) for level in CourseLevel]
LANGUAGE_CHOICES = [SelectChoice(value, label) for value, label in COURSE_LANGUAGES.items()]
PRICE_CURRENCY_CHOICES = [SelectChoice(code, f"{code} · {unit.name}") for code, unit in CURRENCIES.items()]
SLUG_MESSAGE = "Use lowercase letters, digits and single hyphens between words, like \"intro-to-finance\"."


class CourseForm(FlaskForm):
    title = StringField("Title", validators=[
        DataRequired("Enter the title."),
        Length(min=authoring.TITLE_MIN, max=authoring.TITLE_MAX,
               message=f"The title must be {authoring.TITLE_MIN} to {authoring.TITLE_MAX} characters long.")])
    slug = StringField("Web address", validators=[
        Optional(), Length(max=authoring.SLUG_MAX, message=f"At most {authoring.SLUG_MAX} characters."),
        Regexp(authoring.SLUG_PATTERN, message=SLUG_MESSAGE)])
    #: The last suggestion the page showed: while the slug still equals it, a new title replaces it.
    slug_suggested = HiddenField()
    summary = TextAreaField("Summary", validators=[
        Length(max=authoring.SUMMARY_MAX, message=f"At most {authoring.SUMMARY_MAX} characters.")],
        render_kw={"rows": 2, "maxlength": authoring.SUMMARY_MAX})
    description = TextAreaField("Description (Markdown)", validators=[
        Length(max=authoring.TEXT_MAX, message=f"At most {authoring.TEXT_MAX:,} characters.")],
        render_kw={"rows": 8})
    category = StringField("Category", validators=[
        DataRequired("Enter a category."),
        Length(min=2, max=authoring.CATEGORY_MAX, message=f"2 to {authoring.CATEGORY_MAX} characters.")],
        render_kw={"list": "category-options", "maxlength": authoring.CATEGORY_MAX})
    level = SelectField("Level", choices=LEVEL_CHOICES, validators=[DataRequired("Choose a level.")])
    # Checked by the service (a post without it keeps the course's language).
    language = SelectField("Lesson language", choices=LANGUAGE_CHOICES, validate_choice=False, default=None)
    estimated_hours = IntegerField("Estimated hours", validators=[
        Optional(), NumberRange(authoring.HOURS_MIN, authoring.HOURS_MAX,
                                message=f"Between {authoring.HOURS_MIN} and {authoring.HOURS_MAX:,} hours.")],
        render_kw={"min": authoring.HOURS_MIN, "max": authoring.HOURS_MAX, "inputmode": "numeric"})
    requires_all_lessons = BooleanField("Every lesson completed", default=True)
    requires_quizzes_passed = BooleanField("Every quiz passed", default=True)
    requires_assignments_submitted = BooleanField("Every assignment submitted", default=False)

    # The gradebook's scheme (settings page only; a new course starts with the defaults).
    weight_assignments = DecimalField("Assignments weight (%)", places=None, validators=[
        Optional(), NumberRange(0, 100, message="0 to 100.")], render_kw={"min": 0, "max": 100, "inputmode": "decimal"})
    weight_quizzes = DecimalField("Quizzes weight (%)", places=None, validators=[
        Optional(), NumberRange(0, 100, message="0 to 100.")], render_kw={"min": 0, "max": 100, "inputmode": "decimal"})
    drop_assignments = IntegerField("Drop lowest assignments", validators=[
        Optional(), NumberRange(0, 10, message="0 to 10.")], render_kw={"min": 0, "max": 10, "inputmode": "numeric"})
    # The price (owners and admins only; see ``_may_price``). Text, checked by the payments
    # service against the currency's scale, so "12.345" USD is refused rather than rounded.
    price = StringField("Amount", validators=[Length(max=40, message="That price is too long.")],
                        render_kw={"inputmode": "decimal", "autocomplete": "off", "placeholder": "Free"})
    price_currency = SelectField("Currency", choices=PRICE_CURRENCY_CHOICES, validate_choice=False)
    drop_quizzes = IntegerField("Drop lowest quizzes", validators=[
        Optional(), NumberRange(0, 10, message="0 to 10.")], render_kw={"min": 0, "max": 10, "inputmode": "numeric"})

    FIELDS = ("title", "slug", "summary", "description", "category", "level", "estimated_hours",
              "requires_all_lessons", "requires_quizzes_passed", "requires_assignments_submitted")

    def values(self) -> dict:
        values = {name: getattr(self, name).data for name in self.FIELDS}
        if self.language.data:
            values["language"] = self.language.data
        return values

    def load_grading(self, grading: dict | None) -> list[list]:
        """Show a course's scheme; returns its letter scale (best first) for the letter rows."""
        scheme = gradebook.Scheme.from_course(grading)
        self.weight_assignments.data = _plain(scheme.weights[gradebook.ASSIGNMENTS])
        self.weight_quizzes.data = _plain(scheme.weights[gradebook.QUIZZES])
        self.drop_assignments.data = scheme.drop_lowest[gradebook.ASSIGNMENTS]
        self.drop_quizzes.data = scheme.drop_lowest[gradebook.QUIZZES]
        return [[name, f"{_plain(threshold)}"] for name, threshold in scheme.letters]

    def grading(self, letters: list[list]) -> dict:
        def number(field):
            return str(field.data) if field.data is not None else "0"
        return {"weights": {gradebook.ASSIGNMENTS: number(self.weight_assignments),
                            gradebook.QUIZZES: number(self.weight_quizzes)},
                "drop_lowest": {gradebook.ASSIGNMENTS: self.drop_assignments.data or 0,
                                gradebook.QUIZZES: self.drop_quizzes.data or 0},
                "letters": letters}


def _plain(number: Decimal) -> Decimal:
    """70.0 as 70, 12.50 as 12.5 (never 7E+1)."""
    return Decimal(f"{number.normalize():f}")


GRADING_FIELDS = ("weight_assignments", "weight_quizzes", "drop_assignments", "drop_quizzes", "letter_name",
                  "letter_min")
#: Letter rows on the settings page: the scale's and two blank ones, at most this many.
LETTER_ROWS = 10


def _posted_letters() -> list[list]:
    """The letter rows as posted (name, threshold), blank rows left out."""
    names, thresholds = request.form.getlist("letter_name"), request.form.getlist("letter_min")
    rows = [[name.strip(), threshold.strip()] for name, threshold in zip(names, thresholds, strict=False)]
    return [row for row in rows[:LETTER_ROWS] if row[0] or row[1]]


def _letter_rows(letters: list[list]) -> list[list]:
    return (letters + [["", ""]] * 2)[:max(LETTER_ROWS, len(letters))]


class ModuleForm(FlaskForm):
    title = StringField("Module title", validators=[
        DataRequired("Enter the module's title."),
        Length(min=authoring.TITLE_MIN, max=authoring.TITLE_MAX,
               message=f"{authoring.TITLE_MIN} to {authoring.TITLE_MAX} characters.")])
    summary = StringField("Summary", validators=[
        Length(max=authoring.SUMMARY_MAX, message=f"At most {authoring.SUMMARY_MAX} characters.")])
    requires_previous = BooleanField("Opens only when the previous module is passed")

    def values(self) -> dict:
        return {"title": self.title.data, "summary": self.summary.data,
                "requires_previous": self.requires_previous.data}


class LessonForm(FlaskForm):
    title = StringField("Lesson title", validators=[
        DataRequired("Enter the lesson's title."),
        Length(min=authoring.TITLE_MIN, max=authoring.TITLE_MAX,
               message=f"{authoring.TITLE_MIN} to {authoring.TITLE_MAX} characters.")])
    body = TextAreaField("Lesson text (Markdown)", validators=[
        Length(max=authoring.TEXT_MAX, message=f"At most {authoring.TEXT_MAX:,} characters.")],
        render_kw={"rows": 18, "spellcheck": "true"})
    estimated_minutes = IntegerField("Estimated minutes", validators=[
        Optional(), NumberRange(authoring.MINUTES_MIN, authoring.MINUTES_MAX,
                                message=f"Between {authoring.MINUTES_MIN} and {authoring.MINUTES_MAX} minutes.")],
        render_kw={"min": authoring.MINUTES_MIN, "max": authoring.MINUTES_MAX, "inputmode": "numeric"})

    def values(self) -> dict:
        return {"title": self.title.data, "body": self.body.data, "estimated_minutes": self.estimated_minutes.data}


STAFF_ROLE_CHOICES = [SelectChoice(role.value, staff.ROLE_LABELS[role]) for role in staff.ADDABLE_ROLES]
ALL_ROLE_CHOICES = [SelectChoice(role.value, staff.ROLE_LABELS[role]) for role in ManagementRole]
#: (value, label) pairs for the role menus of the staff rows.
ROLE_MENU = [(role.value, staff.ROLE_LABELS[role]) for role in ManagementRole]


class StaffForm(FlaskForm):
    email = EmailField("Faculty member's e-mail", validators=[
        DataRequired("Enter the e-mail address of a faculty member."),
        Length(max=254, message="That address is too long.")])
    role = SelectField("Role", choices=STAFF_ROLE_CHOICES, validators=[DataRequired("Choose a role.")])


class StaffRoleForm(FlaskForm):
    role = SelectField("Role", choices=ALL_ROLE_CHOICES, validators=[DataRequired("Choose a role.")])


# ---------------------------------------------------------------- helpers


def _fail(exc: DomainError, endpoint: str, **values):
    """A row action refused without JavaScript: the message as a flash, back to the page."""
    db.session.rollback()
    flash(exc.message, "error")
    return redirect_to(endpoint, **values)


def _editor_context(course, *, module_form: ModuleForm | None = None, status_error: str | None = None) -> dict:
    """What the course editor shows; four queries (course, role, modules, lessons) whatever the
    course's size (the rights below read the role the request has already looked up)."""
    return {
        "course": course,
        "role": access.management_role(current_user, course.id),
        "can_edit": access.may(current_user, course.id, access.CAN_EDIT),
        "can_manage_staff": access.may(current_user, course.id, access.CAN_MANAGE_STAFF),
        "outline": lms_queries.outline(course.id),
        "transitions": sorted(COURSE_TRANSITIONS[course.status], key=list(CourseStatus).index),
        "verbs": authoring.TRANSITION_VERBS,
        "module_form": module_form or ModuleForm(formdata=None),
        "status_error": status_error,
        "max_modules": authoring.MAX_MODULES,
        "max_lessons": authoring.MAX_LESSONS,
    }


def _viewable_course(course_id: uuid.UUID):
    """The course, for any member of its staff (assistants see the outline, read only)."""
    return authoring.course_for(current_user, course_id, access.CAN_GRADE, "open this course's editor")


def _outline_response(course_id: uuid.UUID, *, anchor: str | None = None):
    """After a change to the outline: the outline (htmx) or the editor page."""
    if is_htmx():
        course = authoring.get_course(course_id)
        return render("learning/manage/course.html", "outline", **_editor_context(course))
    url = url_for("learning.manage_course", course_id=course_id) + (f"#{anchor}" if anchor else "")
    return redirect_to(url=url)


def _outline_action(course_id: uuid.UUID, action, *, anchor=None):
    """Run a change to the outline and answer with the outline; a refusal shows above it."""
    try:
        result = action()
    except DomainError as exc:
        refusal(exc)
        if is_htmx():
            course = _viewable_course(course_id)
            return render("learning/manage/course.html", "outline", status=exc.status_code,
                          outline_error=exc.message, **_editor_context(course))
        return _fail(exc, "learning.manage_course", course_id=course_id)
    db.session.commit()
    return _outline_response(course_id, anchor=anchor(result) if anchor else None)


@bp.app_template_global()
def course_nav_rights(course_id: uuid.UUID) -> dict:
    """What the course's sub-navigation offers the current user (one query per course and
    request, none for an administrator)."""
    cache = g.setdefault("course_nav_rights", {})
    if course_id not in cache:
        cache[course_id] = {"edit": access.may(current_user, course_id, access.CAN_EDIT)}
    return cache[course_id]


# ---------------------------------------------------------------- my courses, new course


@bp.get("/manage/")
@TEACH
def manage_courses():
    status = request.args.get("status", "")
    if status not in CourseStatus._value2member_map_:
        status = ""
    page = lms_queries.managed_courses(current_user, status=status, cursor=request.args.get("after"))
    block = None
    if is_htmx():
        block = "rows" if request.args.get("after") else "results"
    return render("learning/manage/courses.html", block, page=page, status_filter=status, statuses=list(CourseStatus),
                  is_admin=current_user.role == Role.ADMIN)


@bp.route("/manage/new", methods=["GET", "POST"])
@TEACH
def manage_new_course():
    form = CourseForm()
    if form.validate_on_submit():
        try:
            course = authoring.create_course(current_user, **form.values())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"Course \"{course.title}\" created as a draft. Add its first module below.", "success")
            return redirect_to("learning.manage_course", course_id=course.id)
    return render("learning/manage/course_form.html", "form", form=form, course=None,
                  categories=lms_queries.categories(), status=422 if form.is_submitted() else 200)


@bp.get("/manage/slug")
@TEACH
def manage_slug():
    """The web-address field again for a changed title: while the address is empty or still the
    previous suggestion, a free one made from the new title replaces it; one the author typed
    stays. Reads only."""
    form = CourseForm(formdata=request.args, meta={"csrf": False})
    course_id = _optional_uuid(request.args.get("course"))
    slug = (form.slug.data or "").strip()
    if not slug or slug == (form.slug_suggested.data or ""):
        suggestion = authoring.suggest_slug(form.title.data)
        suggestion = authoring.free_slug(suggestion, except_course=course_id) if suggestion else ""
        form.slug.data = form.slug_suggested.data = suggestion
    elif authoring.SLUG_PATTERN.fullmatch(slug) and authoring.slug_taken(slug, except_course=course_id):
        form.slug.errors = [f"Another course already uses \"{slug}\"."]
    return render("learning/manage/course_form.html", "slug_field", form=form)


def _optional_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


# ---------------------------------------------------------------- the course editor


@bp.get("/manage/<uuid:course_id>")
@TEACH
def manage_course(course_id: uuid.UUID):
    course = _viewable_course(course_id)
    return render("learning/manage/course.html", None, **_editor_context(course))


@bp.route("/manage/<uuid:course_id>/settings", methods=["GET", "POST"])
@TEACH
def manage_course_settings(course_id: uuid.UUID):
    course = authoring.course_for(current_user, course_id, what="edit this course's settings")
    form = CourseForm(obj=course if request.method == "GET" else None)
    may_price = _may_price(course)
    grading_error = None
    if request.method == "GET":
        form.level.data = course.level.value
        letters = form.load_grading(course.grading)
        form.price.data = f"{_plain(course.price)}" if course.price else ""
        form.price_currency.data = course.price_currency or "USD"
    else:
        letters = _posted_letters()
    if form.validate_on_submit():
        # A post without the gradebook's fields (an older form) leaves the scheme as it is.
        posts_grading = any(name in request.form for name in GRADING_FIELDS)
        try:
            if posts_grading and not letters:
                raise DomainError("Give at least one letter, e.g. \"A\" from 90 and \"F\" from 0.", field="grading")
            authoring.update_course(current_user, course.id, **form.values(),
                                    grading=form.grading(letters) if posts_grading else None)
            # A post without the price (an instructor's form, an older one) leaves it as it is.
            if may_price and "price" in request.form:
                _set_price(course, form)
        except DomainError as exc:
            db.session.rollback()
            if exc.field == "grading":
                grading_error = exc.message
            else:
                attach_error(form, exc)
            course = authoring.get_course(course_id)
        else:
            db.session.commit()
            flash("Settings saved.", "success")
            return redirect_to("learning.manage_course", course_id=course.id)
    return render("learning/manage/course_form.html", "form", form=form, course=course,
                  categories=lms_queries.categories(), letter_rows=_letter_rows(letters),
                  grading_error=grading_error, may_price=may_price, status=422 if form.is_submitted() else 200)


def _set_price(course, form: CourseForm) -> None:
    """The payments service checks the amount and currency; its errors name ``amount`` and
    ``currency``, which are this form's ``price`` and ``price_currency``."""
    try:
        payments.set_course_price(current_user, course, (form.price.data or "").strip(), form.price_currency.data or "")
    except DomainError as exc:
        exc.field = {"amount": "price", "currency": "price_currency"}.get(exc.field, exc.field)
        raise


def _may_price(course) -> bool:
    """Only the course's owner (and administrators, who manage every course) set its price:
    co-instructors edit content, not what students pay."""
    if current_user.role == Role.ADMIN:
        return True
    return access.management_role(current_user, course.id) == ManagementRole.OWNER


@bp.post("/manage/<uuid:course_id>/status")
@TEACH
def manage_course_status(course_id: uuid.UUID):
    target = request.form.get("to", "")
    try:
        course = authoring.change_status(current_user, course_id, target)
    except DomainError as exc:
        refusal(exc)
        if is_htmx():
            course = _viewable_course(course_id)
            return render("learning/manage/course.html", "status_bar", status=exc.status_code,
                          **_editor_context(course, status_error=exc.message))
        return _fail(exc, "learning.manage_course", course_id=course_id)
    db.session.commit()
    messages = {CourseStatus.PUBLISHED: "Published: students can find and enrol in the course.",
                CourseStatus.DRAFT: "Back to draft: the course is hidden from the catalog.",
                CourseStatus.ARCHIVED: "Archived: the course is closed to new students."}
    if is_htmx():
        return render("learning/manage/course.html", "status_bar", status_message=messages[course.status],
                      **_editor_context(course))
    flash(messages[course.status], "success")
    return redirect_to("learning.manage_course", course_id=course.id)


# ---------------------------------------------------------------- modules


@bp.post("/manage/<uuid:course_id>/modules")
@TEACH
def manage_add_module(course_id: uuid.UUID):
    authoring.course_for(current_user, course_id, what="add modules to this course")
    form = ModuleForm()
    if form.validate_on_submit():
        try:
            module = authoring.add_module(current_user, course_id, **form.values())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            return _outline_response(course_id, anchor=f"module-{module.id}")
    course = authoring.get_course(course_id)
    return render("learning/manage/course.html", "outline", status=422,
                  **_editor_context(course, module_form=form))


@bp.route("/manage/modules/<uuid:module_id>/edit", methods=["GET", "POST"])
@TEACH
def manage_edit_module(module_id: uuid.UUID):
    module = authoring.get_module(current_user, module_id)
    form = ModuleForm(obj=module if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            authoring.update_module(current_user, module.id, **form.values())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            module = authoring.get_module(current_user, module_id)
        else:
            db.session.commit()
            flash("Module saved.", "success")
            return redirect_to(url=url_for("learning.manage_course", course_id=module.course_id)
                               + f"#module-{module.id}")
    course = authoring.get_course(module.course_id)
    return render("learning/manage/module_form.html", "form", form=form, module=module, course=course,
                  status=422 if form.is_submitted() else 200)


@bp.post("/manage/modules/<uuid:module_id>/delete")
@TEACH
def manage_delete_module(module_id: uuid.UUID):
    module = authoring.get_module(current_user, module_id)
    return _outline_action(module.course_id, lambda: authoring.delete_module(current_user, module_id))


@bp.post("/manage/modules/<uuid:module_id>/move")
@TEACH
def manage_move_module(module_id: uuid.UUID):
    module = authoring.get_module(current_user, module_id)
    direction = request.form.get("direction", "")
    return _outline_action(module.course_id, lambda: authoring.move_module(current_user, module_id, direction),
                           anchor=lambda moved: f"module-{moved.id}")


@bp.post("/manage/modules/<uuid:module_id>/requires-previous")
@TEACH
def manage_module_requires_previous(module_id: uuid.UUID):
    module = authoring.get_module(current_user, module_id)
    value = request.form.get("value") == "1"
    return _outline_action(module.course_id,
                           lambda: authoring.set_requires_previous(current_user, module_id, value),
                           anchor=lambda changed: f"module-{changed.id}")


# ---------------------------------------------------------------- lessons


def _lesson_page(form: LessonForm, *, module, course, lesson=None, preview=None, status: int = 200):
    return render("learning/manage/lesson_form.html", "form", form=form, module=module, course=course,
                  lesson=lesson, preview=preview, status=status)


def _preview_of(source: str | None):
    try:
        return render_markdown(source or "")
    except ValueError:
        return None


@bp.route("/manage/modules/<uuid:module_id>/lessons/new", methods=["GET", "POST"])
@TEACH
def manage_new_lesson(module_id: uuid.UUID):
    module = authoring.get_module(current_user, module_id)
    course = authoring.get_course(module.course_id)
    form = LessonForm()
    if request.method == "POST" and request.form.get("action") == "preview":
        return _lesson_page(form, module=module, course=course, preview=_preview_of(form.body.data))
    if form.validate_on_submit():
        try:
            lesson = authoring.add_lesson(current_user, module.id, **form.values())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            module = authoring.get_module(current_user, module_id)
            course = authoring.get_course(module.course_id)
        else:
            db.session.commit()
            flash(f"Lesson \"{lesson.title}\" added.", "success")
            return redirect_to(url=url_for("learning.manage_course", course_id=course.id) + f"#lesson-{lesson.id}")
    return _lesson_page(form, module=module, course=course, preview=_preview_of(form.body.data),
                        status=422 if form.is_submitted() else 200)


@bp.route("/manage/lessons/<uuid:lesson_id>/edit", methods=["GET", "POST"])
@TEACH
def manage_edit_lesson(lesson_id: uuid.UUID):
    lesson = authoring.get_lesson(current_user, lesson_id)
    form = LessonForm(obj=lesson if request.method == "GET" else None)
    module_id, course_id = lesson.module_id, lesson.course_id
    if request.method == "POST" and request.form.get("action") == "preview":
        return _lesson_page(form, module=authoring.get_module(current_user, module_id),
                            course=authoring.get_course(course_id), lesson=lesson, preview=_preview_of(form.body.data))
    if form.validate_on_submit():
        try:
            authoring.update_lesson(current_user, lesson.id, **form.values())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            lesson = authoring.get_lesson(current_user, lesson_id)
        else:
            db.session.commit()
            flash("Lesson saved.", "success")
            return redirect_to(url=url_for("learning.manage_course", course_id=course_id) + f"#lesson-{lesson_id}")
    module = authoring.get_module(current_user, module_id)
    return _lesson_page(form, module=module, course=authoring.get_course(course_id), lesson=lesson,
                        preview=_preview_of(form.body.data), status=422 if form.is_submitted() else 200)


@bp.post("/manage/lessons/<uuid:lesson_id>/delete")
@TEACH
def manage_delete_lesson(lesson_id: uuid.UUID):
    lesson = authoring.get_lesson(current_user, lesson_id)
    return _outline_action(lesson.course_id, lambda: authoring.delete_lesson(current_user, lesson_id),
                           anchor=lambda _course: f"module-{lesson.module_id}")


@bp.post("/manage/lessons/<uuid:lesson_id>/move")
@TEACH
def manage_move_lesson(lesson_id: uuid.UUID):
    lesson = authoring.get_lesson(current_user, lesson_id)
    direction = request.form.get("direction", "")
    return _outline_action(lesson.course_id, lambda: authoring.move_lesson(current_user, lesson_id, direction),
                           anchor=lambda moved: f"lesson-{moved.id}")


@bp.post("/manage/preview")
@TEACH
def manage_preview():
    """The lesson text as students will see it. Renders only: no row is read for it or written."""
    source = request.form.get("body", "")
    html = _preview_of(source)
    return render("learning/manage/preview.html", "preview", html=html, too_long=html is None)


# ---------------------------------------------------------------- staff


def _staff_context(course, *, form: StaffForm | None = None) -> dict:
    return {
        "course": course,
        "members": staff.list_staff(course.id),
        "can_manage": access.may(current_user, course.id, access.CAN_MANAGE_STAFF),
        "form": form or StaffForm(formdata=None),
        "role_choices": ROLE_MENU,
        "role_labels": staff.ROLE_LABELS,
    }


@bp.get("/manage/<uuid:course_id>/staff")
@TEACH
def manage_staff(course_id: uuid.UUID):
    course = authoring.course_for(current_user, course_id, access.CAN_GRADE, "see this course's staff")
    return render("learning/manage/staff.html", None, **_staff_context(course))


@bp.post("/manage/<uuid:course_id>/staff")
@TEACH
def manage_add_staff(course_id: uuid.UUID):
    authoring.course_for(current_user, course_id, access.CAN_MANAGE_STAFF, "manage this course's staff")
    form = StaffForm()
    if form.validate_on_submit():
        try:
            membership = staff.add_staff(current_user, course_id, form.email.data, form.role.data)
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            if not is_htmx():
                flash("Added to the staff.", "success")
                return redirect_to("learning.manage_staff", course_id=course_id)
            course = authoring.get_course(course_id)
            return render("learning/manage/staff.html", "staff", changed=membership.id, **_staff_context(course))
    course = authoring.get_course(course_id)
    return render("learning/manage/staff.html", "staff", status=422, **_staff_context(course, form=form))


def _staff_row_action(course_id: uuid.UUID, management_id: uuid.UUID, action, done: str):
    """Run a change to one staff member; answer with the staff list (htmx) or back to the page.
    A refusal shows on the row it concerns."""
    try:
        action()
    except DomainError as exc:
        refusal(exc)
        if not is_htmx():
            return _fail(exc, "learning.manage_staff", course_id=course_id)
        course = authoring.course_for(current_user, course_id, access.CAN_GRADE, "see this course's staff")
        return render("learning/manage/staff.html", "staff", status=exc.status_code, error_for=management_id,
                      error=exc.message, **_staff_context(course))
    db.session.commit()
    if not access.may(current_user, course_id, access.CAN_GRADE):  # took themselves off the staff
        flash("You are no longer on this course's staff.", "success")
        return redirect_to("learning.manage_courses")
    if not is_htmx():
        flash(done, "success")
        return redirect_to("learning.manage_staff", course_id=course_id)
    course = authoring.get_course(course_id)
    return render("learning/manage/staff.html", "staff", changed=management_id, **_staff_context(course))


@bp.post("/manage/<uuid:course_id>/staff/<uuid:management_id>/role")
@TEACH
def manage_staff_role(course_id: uuid.UUID, management_id: uuid.UUID):
    form = StaffRoleForm()
    role = form.role.data if form.validate() else ""
    return _staff_row_action(course_id, management_id,
                             lambda: staff.change_role(current_user, course_id, management_id, role), "Role changed.")


@bp.post("/manage/<uuid:course_id>/staff/<uuid:management_id>/remove")
@TEACH
def manage_remove_staff(course_id: uuid.UUID, management_id: uuid.UUID):
    return _staff_row_action(course_id, management_id,
                             lambda: staff.remove_staff(current_user, course_id, management_id),
                             "Removed from the staff.")


# ---------------------------------------------------------------- sales


@bp.get("/manage/sales")
@TEACH
def manage_sales():
    """Sales of the teacher's paid courses (an administrator's: every course): per course the
    number of sales, gross, refunds and net, and the latest sales."""
    return render("learning/manage/sales.html", report=payment_pages.sales_report(current_user),
                  is_admin=current_user.role == Role.ADMIN, fmt=format_amount)
