"""Elara, the course tutor, for people: the chat page of a course with the student's past
conversations, the "Ask Elara" panel beside each lesson, the student's Q&A history, and the
course report its staff read to see where the course should improve.

Asking is a plain form. With htmx the two new messages are appended to the conversation (and
the form comes back empty, out of band); the first question of a conversation swaps in the
whole new conversation and pushes its address. Without JavaScript the post redirects to the
conversation's page, at the answer. A refused question (empty, too long, the tutor closed
during a quiz attempt) comes back in its form with the message and the text as typed.

With a language model configured, the reply is drafted from the lessons first and the read-only
transaction ended before the model is asked, so a slow model holds no database connection.

The lesson panel is loaded by htmx once the lesson is shown, so the lesson page itself spends
no statement on it; without JavaScript the panel is a plain form that posts to the chat.
"""

from __future__ import annotations

import uuid

from flask import flash, request, url_for
from flask_login import current_user

from blueprints.learning import bp
from blueprints.web import redirect_to, refusal, render, safe_next, wants_fragment
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.learning.tutoring import answers, queries, services
from portal.learning.tutoring.models import MessageRole
from portal.learning.tutoring.queries import Conversation, MessageView
from portal.security.access import requires
from portal.security.permissions import Permission

CHAT = "learning/tutor/chat.html"
#: Where each kind of ask form sits (its id), so a refused question can come back in place.
FORM_IDS = {"page": "tutor-form-page", "panel": "tutor-form-panel"}


def _uuid(value: str | None, what: str) -> uuid.UUID | None:
    """An optional id from a form or query: empty is None, anything else must be a UUID."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"There is no such {what}.") from None


def _form(place: str = "page", *, session_id=None, lesson_id=None, typed: str = "", error: str | None = None,
          closed=None) -> dict:
    return {"place": place, "form_id": FORM_IDS[place], "session_id": session_id, "lesson_id": lesson_id,
            "typed": typed, "error": error, "closed": closed}


#: ``_chat``'s ``closed`` when the caller has not read it.
_UNREAD = object()


def _chat(course, session=None, *, form: dict | None = None, status: int = 200, block: str | None = None,
          conversation: Conversation | None = None, notice: str | None = None, headers: dict | None = None,
          sessions_oob: bool = False, closed=_UNREAD):
    """The chat page (or its conversation block, with the conversations list out of band when
    ``sessions_oob``): the conversations at the side, the open one (or a new one) in the
    middle, the ask form under it. ``closed`` is the open attempt that closes the tutor when
    the caller read it with the course (``queries.chat_course``)."""
    if closed is _UNREAD:
        closed = services.open_attempt(current_user.id, course.id)
    if conversation is None and session is not None:
        conversation = queries.conversation(current_user, session.id)
    form = form or _form(session_id=session.id if session else None)
    form["closed"] = closed
    older = request.args.get("older")
    response = render(CHAT, block, status=status, course=course, session=session, conversation=conversation,
                      sessions=queries.sessions_page(current_user, course.id, older), older=older, form=form,
                      closed=closed, notice=notice, max_chars=services.MAX_QUESTION_CHARS, sessions_oob=sessions_oob)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@bp.get("/courses/<slug>/tutor")
@requires(Permission.LEARN)
def tutor_chat(slug: str):
    course, closed = queries.chat_course(current_user, slug)
    return _chat(course, closed=closed)


@bp.get("/courses/<slug>/tutor/sessions/<uuid:session_id>")
@requires(Permission.LEARN)
def tutor_session(slug: str, session_id: uuid.UUID):
    course, closed = queries.chat_course(current_user, slug)
    session = queries.own_session(current_user, course.id, session_id)
    return _chat(course, session, closed=closed)


@bp.get("/courses/<slug>/tutor/panel")
@requires(Permission.LEARN)
def tutor_panel(slug: str):
    """The lesson's "Ask Elara" panel with the conversation still going, or the closed notice.
    Asked for by htmx from the lesson page; a plain visit goes to the chat page."""
    course, closed = queries.chat_course(current_user, slug)
    lesson_id = _uuid(request.args.get("lesson_id"), "lesson")
    if not wants_fragment():
        return redirect_to("learning.tutor_chat", slug=course.slug)
    panel = queries.current_conversation(current_user, course.id)
    return render("learning/tutor/_panel.html", course=course, panel=panel, closed=closed,
                  form=_form("panel", session_id=panel.session_id, lesson_id=lesson_id, closed=closed),
                  max_chars=services.MAX_QUESTION_CHARS)


def _views(exchange: services.Exchange) -> list[MessageView]:
    asked, reply, record = exchange.question, exchange.reply, exchange.record
    return [
        MessageView(asked.id, asked.session_id, MessageRole.STUDENT, asked.body, asked.created_at),
        MessageView(reply.id, reply.session_id, MessageRole.TUTOR, reply.body, reply.created_at, reply.kind,
                    reply.source.value if reply.source else None, list(reply.citations or []),
                    reply.fallback_reason, record.id, record.helpful),
    ]


def _refused(course, place: str, exc: DomainError, typed: str, session_id, lesson_id):
    """A question the service refused: back in its form with the message and the text kept."""
    if wants_fragment():
        form = _form(place, session_id=session_id, lesson_id=lesson_id, typed=typed, error=exc.message)
        response = render("learning/tutor/_form.html", status=exc.status_code, course=course, form=form,
                          max_chars=services.MAX_QUESTION_CHARS)
        response.headers["HX-Retarget"] = "#" + FORM_IDS[place]
        response.headers["HX-Reswap"] = "outerHTML"
        return response
    refusal(exc)  # the page itself refused: its 403 or 404 page
    session = None
    if session_id is not None:
        try:
            session = queries.own_session(current_user, course.id, session_id)
        except NotFound:
            session = None
    form = _form(session_id=session.id if session else None, lesson_id=lesson_id, typed=typed, error=exc.message)
    return _chat(course, session, form=form, status=exc.status_code)


@bp.post("/courses/<slug>/tutor/ask")
@requires(Permission.LEARN)
def tutor_ask(slug: str):
    course = queries.student_course(current_user, slug)
    place = "panel" if request.form.get("place") == "panel" else "page"
    question = request.form.get("question", "")
    typed = question[:services.MAX_KEPT_CHARS]
    session_id = _uuid(request.form.get("session_id"), "conversation with Elara")
    lesson_id = _uuid(request.form.get("lesson_id"), "lesson in this course")
    reply = None
    draft = services.draft_for_the_model(current_user, course, question)
    if draft is not None:
        # The model may take up to TUTOR_MODEL_TIMEOUT_SECONDS: end the read-only transaction
        # first, so no pooled connection (nor lock) waits on it; ``ask`` starts the writing one.
        db.session.rollback()
        reply = answers.finish_reply(draft)
    try:
        exchange = services.ask(current_user, course, question, session_id=session_id, lesson_id=lesson_id,
                                reply=reply)
    except DomainError as exc:
        db.session.rollback()
        return _refused(course, place, exc, typed, session_id, lesson_id)

    session_url = url_for("learning.tutor_session", slug=course.slug, session_id=exchange.session.id)
    if not wants_fragment():
        db.session.commit()
        return redirect_to(url=f"{session_url}#m-{exchange.reply.id}")

    views = _views(exchange)
    form = _form(place, session_id=exchange.session.id, lesson_id=lesson_id)
    if place == "page" and exchange.started:
        # A new conversation (the first question, or one continuing an ended conversation):
        # the whole conversation is swapped in and its address pushed.
        session = queries.own_session(current_user, course.id, exchange.session.id)
        notice = (f"“{exchange.continued_from.title}” had ended, so this is a new conversation."
                  if exchange.continued_from else None)
        response = _chat(course, session, form=form, block="conversation", conversation=Conversation(views),
                         notice=notice, sessions_oob=True,
                         headers={"HX-Retarget": "#tutor-conversation", "HX-Reswap": "outerHTML",
                                  "HX-Push-Url": session_url})
    else:
        response = render("learning/tutor/_exchange.html", course=course, messages=[] if exchange.repeated else views,
                          repeated=exchange.repeated, form=form, place=place,
                          sessions=queries.sessions_page(current_user, course.id) if place == "page" else None,
                          session=exchange.session, max_chars=services.MAX_QUESTION_CHARS)
    db.session.commit()
    return response


@bp.post("/courses/<slug>/tutor/sessions/<uuid:session_id>/end")
@requires(Permission.LEARN)
def tutor_end(slug: str, session_id: uuid.UUID):
    course = queries.student_course(current_user, slug)
    queries.own_session(current_user, course.id, session_id)  # someone else's or another course's: 404
    services.end_session(current_user, session_id)
    if not wants_fragment():
        db.session.commit()
        flash("Conversation ended. You can read it here any time; asking again starts a new one.", "success")
        return redirect_to("learning.tutor_session", slug=course.slug, session_id=session_id)
    session = queries.own_session(current_user, course.id, session_id)
    response = _chat(course, session, block="conversation", sessions_oob=True,
                     notice="Conversation ended. Asking again starts a new one.")
    db.session.commit()
    return response


@bp.post("/tutor/questions/<uuid:question_id>/mark")
@requires(Permission.LEARN)
def tutor_mark(question_id: uuid.UUID):
    value = request.form.get("helpful", "")
    if value not in ("1", "0"):
        raise services.TutorError("Choose “Helpful” or “Not helpful”.")
    record = services.mark(current_user, question_id, value == "1")
    if not wants_fragment():
        db.session.commit()
        flash("Thank you: your mark is saved.", "success")
        return redirect_to(url=safe_next(request.form.get("next"), "learning.tutor_history"))
    response = render("learning/tutor/_mark.html", question_id=record.id, helpful=record.helpful, just_marked=True,
                      next_url=request.form.get("next"))
    db.session.commit()
    return response


@bp.get("/tutor/history")
@requires(Permission.LEARN)
def tutor_history():
    filters = queries.HistoryFilters.clean(request.args.get("q"), request.args.get("course"),
                                           request.args.get("show"))
    page = queries.history(current_user, filters, request.args.get("after"))
    # The course choices sit outside the results block: a live-search request skips them.
    courses = [] if wants_fragment() else queries.history_courses(current_user)
    return render("learning/tutor/history.html", "results", filters=filters, page=page, courses=courses,
                  shows=queries.HISTORY_SHOWS, after=request.args.get("after"))


@bp.get("/courses/<slug>/tutor/report")
@requires(Permission.TEACH)
def tutor_report(slug: str):
    course = queries.staff_course(current_user, slug)
    report = queries.course_report(course, request.args.get("period", "90"))
    return render("learning/tutor/report.html", "report", course=course, report=report,
                  periods=queries.REPORT_PERIODS)
