"""The loan officers' pages (admins decide; compliance officers read): the application queue with
each assessment, approve / reject / counter-offer with a reason (above
``LENDING_FOUR_EYES_ABOVE`` a second officer confirms an approval), disburse, the loan book with
PAR 1/30/90 and the arrears aging buckets, the collections list, a loan's page with restructure
(the old schedule kept in its history) and write-off (after a confirmation), and the book as CSV.

Plain forms that work without JavaScript (post, then redirect back); the rules and messages are
lending's (portal.money.lending.services).
"""

from __future__ import annotations

import uuid

from flask import Response, flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.wallet.loans import plain_number
from blueprints.web import redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError
from portal.money.currency import format_amount
from portal.money.lending import admin_queries, services
from portal.money.lending.models import LoanState
from portal.security.access import requires
from portal.security.permissions import Permission, has_permission


def _context(**extra) -> dict:
    return {"money": format_amount, "num": plain_number,
            "can_decide": has_permission(current_user.role, Permission.MANAGE_MONEY), **extra}


def _text(name: str, most: int = 600) -> str:
    return (request.form.get(name) or "").strip()[:most]


def _status(exc: DomainError) -> int:
    return exc.status_code if 400 <= exc.status_code < 500 else 422


@bp.get("/admin/loans")
@requires(Permission.REVIEW_COMPLIANCE)
def loans_admin():
    return render("wallet/loans_admin/queue.html", **_context(
        rows=admin_queries.queue(current_user), portfolio=admin_queries.portfolio(current_user),
        four_eyes_above=services.four_eyes_above(), current_tab="queue"))


@bp.get("/admin/loans/book")
@requires(Permission.REVIEW_COMPLIANCE)
def loans_admin_book():
    return render("wallet/loans_admin/book.html", **_context(
        rows=admin_queries.loan_book(current_user), portfolio=admin_queries.portfolio(current_user),
        current_tab="book"))


@bp.get("/admin/loans/collections")
@requires(Permission.REVIEW_COMPLIANCE)
def loans_admin_collections():
    return render("wallet/loans_admin/collections.html", **_context(
        rows=admin_queries.collections(current_user), current_tab="collections"))


@bp.get("/admin/loans/book.csv")
@requires(Permission.REVIEW_COMPLIANCE)
def loans_admin_book_csv():
    response = Response(admin_queries.book_csv(current_user), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="loan-book-{services.today().isoformat()}.csv"'
    return response


def _loan_page(loan_id: uuid.UUID, *, status: int = 200, error: str | None = None, error_field: str | None = None,
               form: dict | None = None):
    view = admin_queries.loan_view(current_user, loan_id)
    return render("wallet/loans_admin/loan.html", status=status, **_context(
        v=view, d=view.detail, error=error, error_field=error_field, form=form or {},
        acted=request.endpoint if error else None))


@bp.get("/admin/loans/<uuid:loan_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def loans_admin_loan(loan_id: uuid.UUID):
    return _loan_page(loan_id)


def _act(loan_id: uuid.UUID, perform, done: str):
    """Run an officer's action; its refusal shows on the loan's page beside the field."""
    form = {name: _text(name) for name in ("reason", "amount", "term", "rate", "grace")}
    try:
        message = perform(form) or done
    except DomainError as exc:
        refusal(exc)
        return _loan_page(loan_id, status=_status(exc), error=exc.message, error_field=exc.field or "form", form=form)
    db.session.commit()
    flash(message, "success")
    return redirect_to("wallet.loans_admin_loan", loan_id=loan_id)


@bp.post("/admin/loans/<uuid:loan_id>/approve")
@requires(Permission.MANAGE_MONEY)
def loans_admin_approve(loan_id: uuid.UUID):
    def perform(form):
        loan = services.approve(current_user, loan_id, form["reason"])
        if loan.state == LoanState.SUBMITTED:
            return "Your approval is recorded: a second officer must confirm it (four eyes)."
        return None
    return _act(loan_id, perform, "Approved: the loan can be paid out.")


@bp.post("/admin/loans/<uuid:loan_id>/reject")
@requires(Permission.MANAGE_MONEY)
def loans_admin_reject(loan_id: uuid.UUID):
    return _act(loan_id, lambda form: services.reject(current_user, loan_id, form["reason"]) and None,
                "Rejected: the student was told why and any collateral is free.")


@bp.post("/admin/loans/<uuid:loan_id>/counter-offer")
@requires(Permission.MANAGE_MONEY)
def loans_admin_counter(loan_id: uuid.UUID):
    return _act(loan_id, lambda form: services.counter_offer(current_user, loan_id, form["amount"], form["term"],
                                                             form["rate"], form["reason"]) and None,
                "The counter-offer was sent: the student accepts or declines it.")


@bp.post("/admin/loans/<uuid:loan_id>/disburse")
@requires(Permission.MANAGE_MONEY)
def loans_admin_disburse(loan_id: uuid.UUID):
    return _act(loan_id, lambda _form: services.disburse(current_user, loan_id) and None,
                "Paid out: the schedule starts today.")


@bp.post("/admin/loans/<uuid:loan_id>/restructure")
@requires(Permission.MANAGE_MONEY)
def loans_admin_restructure(loan_id: uuid.UUID):
    def perform(form):
        grace = form["grace"] or "0"
        if not grace.isdigit():
            raise services.LendingError("The grace period is a whole number of instalments.", field="grace")
        services.restructure(current_user, loan_id, form["term"], form["rate"], form["reason"], grace=int(grace))
    return _act(loan_id, perform, "Restructured: the new schedule is below, the old one is kept in the history.")


@bp.post("/admin/loans/<uuid:loan_id>/write-off")
@requires(Permission.MANAGE_MONEY)
def loans_admin_write_off(loan_id: uuid.UUID):
    """Without ``confirmed``: the confirmation page with what is written off."""
    if request.form.get("confirmed") != "1":
        view = admin_queries.loan_view(current_user, loan_id)
        reason = _text("reason")
        if not reason:
            return _loan_page(loan_id, status=422, error="Give a reason: the student reads it.",
                              error_field="write_off_reason")
        return render("wallet/loans_admin/confirm_write_off.html", **_context(v=view, d=view.detail, reason=reason))
    return _act(loan_id, lambda form: services.write_off(current_user, loan_id, form["reason"]) and None,
                "Written off: what was owed is booked as a loss and collection stops.")
