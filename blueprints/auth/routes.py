"""Registration, e-mail verification, login and logout, passwords, staff invitations, and the
user's own login sessions (see and end them)."""

from __future__ import annotations

import uuid

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user

from blueprints.auth import bp
from blueprints.auth.forms import (
    ChangePasswordForm,
    EmailOnlyForm,
    LoginForm,
    NewPasswordForm,
    RegisterForm,
)
from blueprints.web import (
    UrlLinks,
    attach_error,
    blocked_response,
    client_ip,
    is_htmx,
    redirect_to,
    render,
    safe_next,
)
from portal.accounts import services as accounts
from portal.compliance.security import blocks
from portal.compliance.security import services as sessions
from portal.compliance.security.services import session_policy
from portal.db import db
from portal.db.context import Actor, acting_as, set_actor
from portal.errors import DomainError
from portal.security.access import anonymous_only, login_required, public


@bp.route("/register", methods=["GET", "POST"])
@anonymous_only
def register():
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            accounts.register_student(form.email.data, form.full_name.data, form.password.data, UrlLinks())
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            session["pending_email"] = accounts.normalise_email(form.email.data)
            return redirect_to("auth.check_inbox")
    status = 422 if form.is_submitted() else 200
    return render("auth/register.html", "form", form=form, status=status)


@bp.get("/check-inbox")
@public
def check_inbox():
    return render("auth/check_inbox.html", email=session.get("pending_email"), form=EmailOnlyForm(
        email=session.get("pending_email")))


@bp.post("/resend-verification")
@public
def resend_verification():
    form = EmailOnlyForm()
    if form.validate_on_submit():
        accounts.resend_verification(form.email.data, UrlLinks())
        db.session.commit()
    flash("If that address has an account waiting for confirmation, a new link is on its way.", "info")
    return redirect_to("auth.check_inbox")


@bp.get("/verify/<token>")
@public
def verify_email(token: str):
    try:
        accounts.verify_email(token)
    except DomainError as exc:
        db.session.rollback()
        return render("auth/message.html", title="Cannot confirm this address", message=exc.message,
                      status=400)
    db.session.commit()
    flash("Your e-mail address is confirmed. You can log in now.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
@anonymous_only
def login():
    form = LoginForm(next=request.args.get("next", ""))
    reason = None
    if form.validate_on_submit():
        result = accounts.authenticate(form.email.data, form.password.data, ip=client_ip(),
                                       user_agent=request.user_agent.string, policy=session_policy(current_app),
                                       device=request.cookies.get(DEVICE_COOKIE))
        if result.user is not None and (block := blocks.block_on_user(result.user.id)) is not None:
            # The password was right, but the account is blocked: no session, and the same page
            # every other request of a blocked user gets.
            db.session.rollback()
            blocks.note_blocked_request(block, ip=client_ip(), user_id=result.user.id)
            db.session.commit()
            return blocked_response(block, refresh=False)
        if result.user is not None:
            # A new session id at login: the old cookie (and its CSRF token) is thrown away.
            session.clear()
            session["sid"] = result.token
            set_actor(Actor.for_user(result.user.id, result.user.role.value), db.session)
            db.session.commit()
            flash(f"Welcome back, {result.user.first_name}.", "success")
            response = redirect_to(url=safe_next(form.next.data), reload=True)
            _keep_device(response, result.device)
            return response
        db.session.commit()  # the failed attempt counts toward throttling
        form.form_errors.append(result.error)
        reason = result.reason
    status = 429 if reason == "throttled" else 422 if form.is_submitted() else 200
    response = render("auth/login.html", "form", form=form, reason=reason, resend=EmailOnlyForm(email=form.email.data),
                      status=status)
    if reason == "throttled" and result.retry_after:
        response.headers["Retry-After"] = str(result.retry_after)
    return response


#: The device cookie (OWASP's "device cookie"): proof that this browser has logged in to the
#: account before, so attempts from it are not slowed down when others guess at the account.
#: Sent only to the login page.
DEVICE_COOKIE = "azora_device"


def _keep_device(response, token: str | None) -> None:
    if not token:
        return
    response.set_cookie(DEVICE_COOKIE, token, max_age=current_app.config["LOGIN_DEVICE_DAYS"] * 24 * 3600,
                        path=url_for("auth.login"), secure=current_app.config["SESSION_COOKIE_SECURE"],
                        httponly=True, samesite="Lax")


@bp.post("/logout")
@login_required
def logout():
    # CSRFProtect has checked the token: a logout cannot be forced by another site.
    accounts.logout(session.get("sid"))
    db.session.commit()
    session.clear()
    flash("You are logged out.", "info")
    return redirect_to("auth.login", reload=True)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.new_password.data,
                                     keep_token=session.get("sid"))
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Your password is changed. Every other session has been logged out.", "success")
            return redirect_to("home.dashboard")
    return render("auth/change_password.html", "form", form=form, status=422 if form.is_submitted() else 200)


@bp.route("/forgot", methods=["GET", "POST"])
@public
def forgot_password():
    form = EmailOnlyForm()
    if form.validate_on_submit():
        accounts.request_password_reset(form.email.data, UrlLinks())
        db.session.commit()
        return render("auth/message.html", title="Check your inbox",
                      message="If an account uses that address, we sent it a link to choose a new password. "
                              "The link works for one hour.", mail_sent=True)
    return render("auth/forgot.html", "form", form=form, status=422 if form.is_submitted() else 200)


def _token_form(token: str, check, apply, *, title: str, done: str):
    """The shared flow of the reset and invitation pages: check the link, take a new password."""
    try:
        user = check(token)
    except DomainError as exc:
        db.session.rollback()
        return render("auth/message.html", title="This link cannot be used", message=exc.message, status=400)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            # The link proves who this is: act as its user, so that ending their other sessions
            # passes the row-level policy on session_validations (an anonymous request reaches none).
            with acting_as(Actor.for_user(user.id, user.role.value), db.session):
                apply(token, form.new_password.data)
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(done, "success")
            return redirect_to("auth.login")
    return render("auth/new_password.html", "form", form=form, title=title, user=user,
                  status=422 if form.is_submitted() else 200)


@bp.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str):
    return _token_form(token, accounts.check_reset_token, accounts.reset_password,
                       title="Choose a new password", done="Your password is changed. Log in with it now.")


@bp.route("/invite/<token>", methods=["GET", "POST"])
@public
def accept_invite(token: str):
    return _token_form(token, accounts.check_invite, accounts.accept_invite,
                       title="Welcome: choose your password",
                       done="Your account is ready. Log in with your new password.")


# ---------------------------------------------------------------- the user's own sessions

def _session_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


def _sessions_page(status: int = 200, block: str | None = None, message: str | None = None):
    items = sessions.active_sessions(current_user.id, session_policy(current_app))
    current = g.get("session_record")
    return render("auth/sessions.html", block, status=status, items=items,
                  current_id=current.id if current is not None else None, describe=sessions.describe_user_agent,
                  message=message)


@bp.get("/sessions")
@login_required
def my_sessions():
    return _sessions_page()


@bp.post("/sessions/<session_id>/end")
@login_required
def end_my_session(session_id: str):
    identifier = _session_uuid(session_id)
    current = g.get("session_record")
    if not sessions.end_one(current_user, identifier):
        abort(404)  # not live, or not this user's: the same answer either way
    db.session.commit()
    if current is not None and current.id == identifier:
        session.clear()
        flash("This session is ended: you are logged out.", "info")
        return redirect_to("auth.login", reload=True)
    if is_htmx():
        return _sessions_page(block="list", message="The session is ended.")
    flash("The session is ended.", "success")
    return redirect_to("auth.my_sessions")


@bp.post("/sessions/end-others")
@login_required
def end_other_sessions():
    count = sessions.end_others(current_user, session.get("sid"))
    db.session.commit()
    message = (f"{count} other session{'s' if count != 1 else ''} ended." if count
               else "There was no other session to end.")
    if is_htmx():
        return _sessions_page(block="list", message=message)
    flash(message, "success")
    return redirect_to("auth.my_sessions")
