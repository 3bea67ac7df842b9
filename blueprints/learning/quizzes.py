"""Quizzes: faculty build and publish them and grade essays; students take them.

Every write is a plain form post that works without JavaScript and answers htmx with the
fragment it changed. The attempt page is one form (save, submit) whose questions also autosave
one by one through htmx as the student answers; the deadline is the server's on every request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import abort, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional

from blueprints.learning import bp
from blueprints.web import attach_error, is_htmx, redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.learning.assessment import queries
from portal.learning.assessment import services as quizzes
from portal.learning.assessment.models import (
    AttemptScoring,
    AttemptStatus,
    QuestionKind,
    ShortAnswerMatch,
    ShowAnswers,
)
from portal.learning.lms import access
from portal.learning.markdown import render_markdown
from portal.security.access import requires
from portal.security.permissions import Permission

KIND_LABELS = {
    QuestionKind.SINGLE: "Single choice",
    QuestionKind.MULTIPLE: "Multiple choice (partial credit)",
    QuestionKind.TRUE_FALSE: "True or false",
    QuestionKind.SHORT: "Short answer",
    QuestionKind.NUMERIC: "Numeric",
    QuestionKind.ESSAY: "Essay (graded by hand)",
}
SCORING_LABELS = {
    AttemptScoring.HIGHEST: "Highest attempt",
    AttemptScoring.LATEST: "Latest attempt",
    AttemptScoring.AVERAGE: "Average of attempts",
    AttemptScoring.FIRST: "First attempt",
}
SHOW_LABELS = {
    ShowAnswers.AFTER_SUBMIT: "Right after submitting",
    ShowAnswers.AFTER_CLOSE: "After the quiz closes",
    ShowAnswers.NEVER: "Never",
}
MATCH_LABELS = {
    ShortAnswerMatch.EXACT: "Exactly",
    ShortAnswerMatch.CASE_INSENSITIVE: "Ignoring upper and lower case",
    ShortAnswerMatch.PATTERN: "Regular expression (whole answer)",
}
#: Empty option rows offered on a new choice question.
BLANK_OPTIONS = 4


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 10_000))
    except ValueError:
        return 1


def _utc(value: datetime | None) -> datetime | None:
    """Form times are entered in UTC (the portal's clock)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class QuizForm(FlaskForm):
    title = StringField("Title")
    description = TextAreaField("Instructions (Markdown)")
    opens_at = DateTimeLocalField("Opens (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    closes_at = DateTimeLocalField("Closes (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    time_limit_minutes = IntegerField("Time limit in minutes", validators=[
        Optional(), NumberRange(1, 1440, "Between 1 and 1440 minutes.")])
    max_attempts = IntegerField("Attempts allowed", validators=[Optional(), NumberRange(1, 1000, "At least one.")])
    scoring = SelectField("Which attempt counts", choices=[SelectChoice(k.value, v) for k, v in SCORING_LABELS.items()])
    passing_percent = StringField("Passing score (%)", default="60")
    show_answers = SelectField("Show answers and feedback", choices=[SelectChoice(k.value, v) for k, v in SHOW_LABELS.items()])
    shuffle_questions = BooleanField("Shuffle questions for each attempt")
    shuffle_options = BooleanField("Shuffle options for each attempt")

    def settings(self) -> quizzes.QuizSettings:
        return quizzes.QuizSettings(
            title=self.title.data or "", description=self.description.data or "",
            opens_at=_utc(self.opens_at.data), closes_at=_utc(self.closes_at.data),
            time_limit_minutes=self.time_limit_minutes.data, max_attempts=self.max_attempts.data,
            scoring=self.scoring.data, passing_percent=self.passing_percent.data or "",
            shuffle_questions=self.shuffle_questions.data, shuffle_options=self.shuffle_options.data,
            show_answers=self.show_answers.data)


class GradeForm(FlaskForm):
    points = StringField("Points")
    feedback = TextAreaField("Feedback")


# ------------------------------------------------------------------ faculty: quizzes


def _course_or_404(course_id: uuid.UUID):
    course = queries.course_of(course_id)
    if course is None or not access.may(current_user, course.id, access.CAN_GRADE):
        raise NotFound("That course does not exist, or you are not on its staff.")
    return course


@bp.get("/courses/<uuid:course_id>/quizzes")
@requires(Permission.TEACH)
def quiz_list(course_id: uuid.UUID):
    course = _course_or_404(course_id)
    page = queries.course_quizzes(course.id, published_only=False, page=_page_number())
    return render("learning/quizzes/list.html", "results", course=course, page=page,
                  can_edit=access.may(current_user, course.id, access.CAN_EDIT))


@bp.route("/courses/<uuid:course_id>/quizzes/new", methods=["GET", "POST"])
@requires(Permission.TEACH)
def quiz_new(course_id: uuid.UUID):
    course = _course_or_404(course_id)
    access.require(current_user, course.id, access.CAN_EDIT, "add a quiz to this course")
    form = QuizForm()
    if form.validate_on_submit():
        try:
            quiz = quizzes.create_quiz(current_user, course.id, form.settings())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Quiz created. Add its questions, then publish it.", "success")
            return redirect_to("learning.quiz_edit", quiz_id=quiz.id)
    return render("learning/quizzes/settings.html", "form", form=form, course=course, quiz=None,
                  status=422 if form.is_submitted() else 200)


@bp.route("/quizzes/<uuid:quiz_id>/edit", methods=["GET", "POST"])
@requires(Permission.TEACH)
def quiz_edit(quiz_id: uuid.UUID):
    quiz = quizzes.get_quiz_for_staff(current_user, quiz_id)
    form = QuizForm(obj=quiz)
    if request.method == "GET":
        form.scoring.data, form.show_answers.data = quiz.scoring.value, quiz.show_answers.value
        form.passing_percent.data = f"{quiz.passing_percent.normalize():f}"
    saved = False
    if form.validate_on_submit():
        try:
            quizzes.update_quiz(current_user, quiz.id, form.settings())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            saved = True
            if not is_htmx():
                flash("Settings saved.", "success")
                return redirect_to("learning.quiz_edit", quiz_id=quiz.id)
    course = queries.course_of(quiz.course_id)
    status = 422 if form.is_submitted() and not saved else 200
    return render("learning/quizzes/edit.html", "form" if request.method == "POST" else None, quiz=quiz,
                  course=course, form=form, questions=queries.quiz_questions(quiz.id), saved=saved,
                  kinds=KIND_LABELS, status=status)


@bp.post("/quizzes/<uuid:quiz_id>/publish")
@requires(Permission.TEACH)
def quiz_publish(quiz_id: uuid.UUID):
    publish = request.form.get("published") == "1"
    try:
        quiz = quizzes.set_published(current_user, quiz_id, publish)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        quiz = quizzes.get_quiz_for_staff(current_user, quiz_id)
        if is_htmx():
            return render("learning/quizzes/_publish.html", quiz=quiz, error=exc.message, status=exc.status_code)
        flash(exc.message, "error")
        return redirect_to("learning.quiz_edit", quiz_id=quiz_id)
    db.session.commit()
    if is_htmx():
        return render("learning/quizzes/_publish.html", quiz=quiz)
    flash("Quiz published: enrolled students can take it." if publish else "Quiz unpublished.", "success")
    return redirect_to("learning.quiz_edit", quiz_id=quiz.id)


# ------------------------------------------------------------------ faculty: questions


def _question_input() -> quizzes.QuestionInput:
    form = request.form
    correct = set(form.getlist("correct"))
    texts = form.getlist("option_text")
    feedbacks = form.getlist("option_feedback")
    options = [quizzes.OptionInput(text=text, is_correct=str(i) in correct,
                                   feedback=feedbacks[i] if i < len(feedbacks) else "")
               for i, text in enumerate(texts[:quizzes.MAX_OPTIONS + 8])]
    accepted = [line for line in form.get("accepted_answers", "").splitlines() if line.strip()]
    return quizzes.QuestionInput(
        kind=form.get("kind", ""), prompt=form.get("prompt", ""), points=form.get("points", ""),
        options=options, accepted_answers=accepted, match=form.get("match") or None,
        numeric_answer=form.get("numeric_answer"), numeric_tolerance=form.get("numeric_tolerance"),
        feedback=form.get("feedback", ""))


def _form_op() -> str:
    """What a post of the question form asks: ``save`` (the default), ``add_option`` (the form
    again with one more option row) or ``preview`` (the form again with the prompt rendered)."""
    op = request.form.get("op", "save")
    return op if op in ("save", "add_option", "preview") else "save"


def _prompt_preview(source: str | None):
    try:
        return render_markdown(source or "") if (source or "").strip() else None
    except ValueError:
        return None


def _question_form_values(question=None, options=None, kind: QuestionKind | None = None,
                          add_option: bool = False) -> dict:
    """What the question form shows: the posted values after an error, else the question's.
    ``add_option``: the posted rows as they are (blank ones too) and one more blank row."""
    if request.method == "POST":
        data = _question_input()
        rows = [{"text": o.text, "correct": o.is_correct, "feedback": o.feedback} for o in data.options or []
                if add_option or (o.text or "").strip() or data.kind == QuestionKind.TRUE_FALSE.value]
        values = {"kind": data.kind, "prompt": data.prompt, "points": data.points,
                  "accepted_answers": "\n".join(data.accepted_answers or []), "match": data.match or "",
                  "numeric_answer": data.numeric_answer or "", "numeric_tolerance": data.numeric_tolerance or "",
                  "feedback": data.feedback, "options": rows}
    elif question is not None:
        values = {"kind": question.kind.value, "prompt": question.prompt, "points": f"{question.points.normalize():f}",
                  "accepted_answers": "\n".join(question.accepted_answers or []),
                  "match": question.match.value if question.match else "",
                  "numeric_answer": f"{question.numeric_answer.normalize():f}" if question.numeric_answer is not None
                  else "",
                  "numeric_tolerance": f"{question.numeric_tolerance.normalize():f}"
                  if question.numeric_tolerance is not None else "",
                  "feedback": question.feedback,
                  "options": [{"text": o.text, "correct": o.is_correct, "feedback": o.feedback} for o in options]}
    else:
        values = {"kind": kind.value, "prompt": "", "points": "1", "accepted_answers": "", "match": "exact",
                  "numeric_answer": "", "numeric_tolerance": "0", "feedback": "", "options": []}
        if kind == QuestionKind.TRUE_FALSE:
            values["options"] = [{"text": "True", "correct": True, "feedback": ""},
                                 {"text": "False", "correct": False, "feedback": ""}]
    if values["kind"] == QuestionKind.TRUE_FALSE.value:
        values["options"] = (values["options"] + [{"text": "", "correct": False, "feedback": ""}] * 2)[:2]
    elif add_option and values["kind"] in (QuestionKind.SINGLE.value, QuestionKind.MULTIPLE.value):
        values["options"] = (values["options"] + [{"text": "", "correct": False, "feedback": ""}])[:quizzes.MAX_OPTIONS]
    elif values["kind"] in (QuestionKind.SINGLE.value, QuestionKind.MULTIPLE.value):
        blanks = max(BLANK_OPTIONS - len(values["options"]), 2)
        values["options"] = values["options"] + [{"text": "", "correct": False, "feedback": ""}] * blanks
    return values


def _render_question_form(quiz, values: dict, question=None, error: str | None = None, field: str | None = None,
                          status: int = 200):
    return render("learning/quizzes/question.html", "form", quiz=quiz, question=question, values=values,
                  error=error, error_field=field, kinds=KIND_LABELS, matches=MATCH_LABELS, status=status,
                  course=queries.course_of(quiz.course_id), prompt_preview=_prompt_preview(values.get("prompt")),
                  max_options=quizzes.MAX_OPTIONS)


@bp.route("/quizzes/<uuid:quiz_id>/questions/new", methods=["GET", "POST"])
@requires(Permission.TEACH)
def question_new(quiz_id: uuid.UUID):
    quiz = quizzes.get_quiz_for_staff(current_user, quiz_id)
    try:
        kind = QuestionKind(request.values.get("kind", QuestionKind.SINGLE.value))
    except ValueError:
        kind = QuestionKind.SINGLE
    if request.method == "POST" and _form_op() != "save":
        return _render_question_form(quiz, _question_form_values(kind=kind, add_option=_form_op() == "add_option"))
    if request.method == "POST":
        try:
            quizzes.add_question(current_user, quiz.id, _question_input())
        except DomainError as exc:
            refusal(exc)
            return _render_question_form(quiz, _question_form_values(kind=kind), error=exc.message,
                                         field=exc.field, status=422)
        db.session.commit()
        flash("Question added.", "success")
        return redirect_to("learning.quiz_edit", quiz_id=quiz.id, _anchor="questions")
    return _render_question_form(quiz, _question_form_values(kind=kind))


@bp.route("/questions/<uuid:question_id>/edit", methods=["GET", "POST"])
@requires(Permission.TEACH)
def question_edit(question_id: uuid.UUID):
    question = db.session.get(quizzes.QuizQuestion, question_id)
    if question is None:
        abort(404)
    quiz = quizzes.get_quiz_for_staff(current_user, question.quiz_id)
    if request.method == "POST" and _form_op() != "save":
        return _render_question_form(quiz, _question_form_values(add_option=_form_op() == "add_option"),
                                     question=question)
    if request.method == "POST":
        try:
            quizzes.update_question(current_user, question.id, _question_input())
        except DomainError as exc:
            refusal(exc)
            return _render_question_form(quiz, _question_form_values(), question=question, error=exc.message,
                                         field=exc.field, status=422)
        db.session.commit()
        flash("Question saved.", "success")
        return redirect_to("learning.quiz_edit", quiz_id=quiz.id, _anchor="questions")
    options = next((v.options for v in queries.quiz_questions(quiz.id) if v.question.id == question.id), [])
    return _render_question_form(quiz, _question_form_values(question, options), question=question)


@bp.get("/quizzes/<uuid:quiz_id>/questions/option-row")
@requires(Permission.TEACH)
def question_option_row(quiz_id: uuid.UUID):
    """One more blank option row for the question form (htmx appends it), with the "Add an
    option" button for the row after it. Reads only."""
    quiz = quizzes.get_quiz_for_staff(current_user, quiz_id)
    kind = request.args.get("kind", "")
    if kind not in (QuestionKind.SINGLE.value, QuestionKind.MULTIPLE.value):
        abort(404)
    index = request.args.get("index", type=int)
    if index is None or not 0 <= index < quizzes.MAX_OPTIONS:
        abort(422)
    return render("learning/quizzes/_option_row_added.html", quiz=quiz, kind=kind, index=index,
                  option={"text": "", "correct": False, "feedback": ""}, max_options=quizzes.MAX_OPTIONS)


@bp.post("/questions/preview")
@requires(Permission.TEACH)
def question_preview():
    """The question's prompt as students will see it. Renders only: no row is read or written."""
    source = request.form.get("prompt", "")
    html = _prompt_preview(source)
    return render("learning/manage/preview.html", "preview", html=html, too_long=bool(source.strip()) and html is None)


def _questions_changed(quiz):
    db.session.commit()
    if is_htmx():
        return render("learning/quizzes/edit.html", "questions", quiz=quiz, questions=queries.quiz_questions(quiz.id),
                      kinds=KIND_LABELS)
    return redirect_to("learning.quiz_edit", quiz_id=quiz.id, _anchor="questions")


@bp.post("/questions/<uuid:question_id>/delete")
@requires(Permission.TEACH)
def question_delete(question_id: uuid.UUID):
    quiz = quizzes.delete_question(current_user, question_id)
    if not is_htmx():
        flash("Question deleted.", "success")
    return _questions_changed(quiz)


@bp.post("/questions/<uuid:question_id>/move")
@requires(Permission.TEACH)
def question_move(question_id: uuid.UUID):
    quiz = quizzes.move_question(current_user, question_id, request.form.get("direction", ""))
    return _questions_changed(quiz)


# ------------------------------------------------------------------ faculty: results and grading


@bp.get("/quizzes/<uuid:quiz_id>/results")
@requires(Permission.TEACH)
def quiz_results(quiz_id: uuid.UUID):
    quiz = quizzes.get_quiz_for_staff(current_user, quiz_id, access.CAN_GRADE)
    page = queries.quiz_attempts_for_staff(quiz.id, _page_number())
    return render("learning/quizzes/results.html", "results", quiz=quiz, page=page,
                  course=queries.course_of(quiz.course_id))


@bp.get("/quizzes/<uuid:quiz_id>/grading")
@requires(Permission.TEACH)
def quiz_grading(quiz_id: uuid.UUID):
    quiz = quizzes.get_quiz_for_staff(current_user, quiz_id, access.CAN_GRADE)
    page = queries.grading_queue(quiz.id, _page_number())
    return render("learning/quizzes/grading.html", "queue", quiz=quiz, page=page,
                  course=queries.course_of(quiz.course_id))


@bp.post("/answers/<uuid:answer_id>/grade")
@requires(Permission.TEACH)
def answer_grade(answer_id: uuid.UUID):
    form = GradeForm()
    try:
        answer = quizzes.grade_essay(current_user, answer_id, form.points.data, form.feedback.data or "")
    except DomainError as exc:
        refusal(exc)
        if is_htmx():
            return render("learning/quizzes/_grade_error.html", message=exc.message, answer_id=answer_id,
                          status=exc.status_code)
        flash(exc.message, "error")
        answer = db.session.get(quizzes.Answer, answer_id)
        attempt = db.session.get(quizzes.QuizAttempt, answer.attempt_id)
        return redirect_to("learning.quiz_grading", quiz_id=attempt.quiz_id)
    attempt = db.session.get(quizzes.QuizAttempt, answer.attempt_id)
    quiz_id = attempt.quiz_id
    final = attempt.status == AttemptStatus.GRADED
    db.session.commit()
    message = "Graded." + (" The attempt is complete." if final else "")
    if is_htmx():
        return render("learning/quizzes/_graded.html", message=message, answer_id=answer_id)
    flash(message, "success")
    return redirect_to("learning.quiz_grading", quiz_id=quiz_id)


# ------------------------------------------------------------------ students


@bp.get("/courses/<uuid:course_id>/quizzes/available")
@requires(Permission.LEARN)
def quiz_available(course_id: uuid.UUID):
    course = queries.course_of(course_id)
    if course is None or not quizzes.is_enrolled(current_user, course.id):
        raise NotFound("That course does not exist, or you are not enrolled in it.")
    page = queries.course_quizzes(course.id, published_only=True, page=_page_number())
    return render("learning/quizzes/available.html", "results", course=course, page=page)


@bp.get("/quizzes/<uuid:quiz_id>")
@requires(Permission.LEARN)
def quiz_page(quiz_id: uuid.UUID):
    quiz = quizzes.get_quiz_for_student(current_user, quiz_id)
    summary = queries.student_quiz_summary(current_user, quiz.id)
    attempts = queries.my_attempts(current_user, quiz.id, _page_number())
    at = quizzes.now()
    reason = None if summary["open_attempt_id"] else quizzes.why_cannot_start(quiz, summary["used"], at)
    if reason is None and not summary["questions"]:
        reason = "This quiz has no questions yet."
    counted = quizzes.quiz_score(current_user, quiz)
    return render("learning/quizzes/quiz.html", "attempts", quiz=quiz, summary=summary, attempts=attempts,
                  reason=reason, counted=counted, scoring=SCORING_LABELS, show=SHOW_LABELS,
                  description=render_markdown(quiz.description))


@bp.post("/quizzes/<uuid:quiz_id>/start")
@requires(Permission.LEARN)
def quiz_start(quiz_id: uuid.UUID):
    try:
        attempt = quizzes.start_attempt(current_user, quiz_id)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        flash(exc.message, "error")
        return redirect_to("learning.quiz_page", quiz_id=quiz_id)
    db.session.commit()
    return redirect_to("learning.attempt_page", attempt_id=attempt.id)


def _closed_by_deadline(exc: quizzes.DeadlinePassed):
    """The deadline closed the attempt during this request: keep that, say so, show the result."""
    db.session.commit()
    flash(exc.message, "error")
    return redirect_to("learning.attempt_result", attempt_id=exc.attempt.id)


@bp.get("/attempts/<uuid:attempt_id>")
@requires(Permission.LEARN)
def attempt_page(attempt_id: uuid.UUID):
    attempt, quiz = quizzes.get_attempt_with_quiz(current_user, attempt_id)
    if attempt.status != AttemptStatus.IN_PROGRESS:
        return redirect_to("learning.attempt_result", attempt_id=attempt.id)
    try:
        quizzes.enforce_deadline(attempt)
    except quizzes.DeadlinePassed as exc:
        return _closed_by_deadline(exc)
    return render("learning/quizzes/attempt.html", quiz=quiz, attempt=attempt,
                  questions=queries.attempt_questions(attempt))


def _answer_input(question_id: str) -> quizzes.AnswerInput:
    name = f"q-{question_id}"
    return quizzes.AnswerInput(selected_option_ids=request.form.getlist(name), text=request.form.get(name),
                               number=request.form.get(name))


@bp.post("/attempts/<uuid:attempt_id>/answers/<uuid:question_id>")
@requires(Permission.LEARN)
def attempt_answer(attempt_id: uuid.UUID, question_id: uuid.UUID):
    """Autosave of one answer. Without JavaScript the page's own form saves them all."""
    try:
        answer = quizzes.save_answer(current_user, attempt_id, question_id, _answer_input(str(question_id)))
    except quizzes.DeadlinePassed as exc:
        return _closed_by_deadline(exc)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404 or not is_htmx():
            raise
        return render("learning/quizzes/_saved.html", question_id=question_id, error=exc.message,
                      status=exc.status_code)
    db.session.commit()
    if is_htmx():
        return render("learning/quizzes/_saved.html", question_id=question_id, saved_at=answer.saved_at)
    return redirect_to("learning.attempt_page", attempt_id=attempt_id)


def _all_answers(attempt) -> dict:
    return {uuid.UUID(key): _answer_input(key) for key in attempt.layout.get("questions", [])
            if f"q-{key}" in request.form}


@bp.post("/attempts/<uuid:attempt_id>/save")
@requires(Permission.LEARN)
def attempt_save(attempt_id: uuid.UUID):
    attempt = quizzes.get_attempt(current_user, attempt_id)
    try:
        quizzes.save_answers(current_user, attempt.id, _all_answers(attempt))
    except quizzes.DeadlinePassed as exc:
        return _closed_by_deadline(exc)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        flash(exc.message, "error")
        return redirect_to("learning.attempt_page", attempt_id=attempt_id)
    db.session.commit()
    flash("Answers saved.", "success")
    return redirect_to("learning.attempt_page", attempt_id=attempt_id)


@bp.post("/attempts/<uuid:attempt_id>/submit")
@requires(Permission.LEARN)
def attempt_submit(attempt_id: uuid.UUID):
    attempt = quizzes.get_attempt(current_user, attempt_id)
    if attempt.status != AttemptStatus.IN_PROGRESS:
        return redirect_to("learning.attempt_result", attempt_id=attempt.id)
    try:
        # The answers on the page are saved first (they are the same as autosaved with JS).
        quizzes.save_answers(current_user, attempt.id, _all_answers(attempt))
    except quizzes.DeadlinePassed as exc:
        return _closed_by_deadline(exc)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        flash(exc.message, "error")
        return redirect_to("learning.attempt_page", attempt_id=attempt_id)
    quizzes.submit_attempt(current_user, attempt.id)
    db.session.commit()
    flash("Attempt submitted.", "success")
    return redirect_to("learning.attempt_result", attempt_id=attempt.id)


@bp.get("/attempts/<uuid:attempt_id>/result")
@requires(Permission.LEARN)
def attempt_result(attempt_id: uuid.UUID):
    attempt, quiz = quizzes.get_attempt_with_quiz(current_user, attempt_id)
    if attempt.status == AttemptStatus.IN_PROGRESS:
        try:
            quizzes.enforce_deadline(attempt)
        except quizzes.DeadlinePassed:
            db.session.commit()
        else:
            return redirect_to("learning.attempt_page", attempt_id=attempt.id)
    reveal = quizzes.answers_visible(quiz, attempt)
    course = queries.course_of(quiz.course_id)  # for the way back: the course and its quizzes
    return render("learning/quizzes/result.html", quiz=quiz, attempt=attempt, reveal=reveal, course=course,
                  questions=queries.attempt_questions(attempt),
                  url_for=url_for)
