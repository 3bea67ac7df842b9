"""AML screening for officers: the list of checks (pending review first), a check with each hit
explained beside the screened facts, the decision on its hits, screening a student on demand,
and (admins) the watchlist import.

Thin views over ``portal.compliance.aml.screening`` and ``portal.compliance.aml.watchlist``.
With htmx the filter tabs swap the results and the decision swaps its panel; without
JavaScript every form posts and redirects back.
"""

from __future__ import annotations

import uuid

from flask import current_app, flash, request
from flask_login import current_user

from blueprints.compliance import bp
from blueprints.web import redirect_to, refusal, render, wants_fragment
from portal.compliance.aml import screening, watchlist
from portal.compliance.aml.models import AmlStatus
from portal.db import db
from portal.errors import DomainError
from portal.security.access import requires
from portal.security.permissions import Permission, has_permission

#: Tells other parts of a page (counts, lists) that screening checks changed.
SCREENING_CHANGED = "screening-changed"
FILTERS = ("all", *(s.value for s in (AmlStatus.PENDING_REVIEW, AmlStatus.CLEAR, AmlStatus.CONFIRMED,
                                       AmlStatus.FALSE_POSITIVE)))
FILTER_LABELS = {"all": "All", **{s.value: label for s, label in screening.STATUS_LABELS.items()}}


def _context() -> dict:
    return {"status_labels": FILTER_LABELS, "can_import": has_permission(current_user.role, Permission.SUPERVISE_CASES)}


@bp.get("/screening")
@requires(Permission.REVIEW_COMPLIANCE)
def screening_list():
    status = request.args.get("status", "all")
    status = status if status in FILTERS else "all"
    after = request.args.get("after")
    page = screening.checks(current_user, None if status == "all" else status, after)
    block = None
    if wants_fragment():
        block = "rows" if after else "results"
    # The tabs' counts come with the first page; a fragment does not show them.
    counts = page.counts
    if counts is None and block is None:
        counts = screening.status_counts(current_user)
    return render("compliance/screening/list.html", block, page=page, current=status, filters=FILTERS,
                  counts=counts, **_context())


def _new_page(*, errors: dict | None = None, values: dict | None = None, status: int = 200):
    return render("compliance/screening/new.html", "form", status=status, errors=errors or {}, values=values or {},
                  default_threshold=current_app.config["AML_MATCH_THRESHOLD"],
                  min_threshold=screening.MIN_THRESHOLD, max_threshold=screening.MAX_THRESHOLD,
                  summary=watchlist.summary(), **_context())


@bp.route("/screening/new", methods=["GET", "POST"])
@requires(Permission.REVIEW_COMPLIANCE)
def screening_new():
    if request.method == "GET":
        return _new_page(values={"email": request.args.get("email", "")[:320]})
    values = {"email": request.form.get("email", "")[:320], "threshold": request.form.get("threshold", "")[:20]}
    try:
        check = screening.screen_on_demand(current_user, values["email"], values["threshold"] or None)
    except DomainError as exc:
        refusal(exc)
        return _new_page(errors={exc.field or "form": exc.message}, values=values, status=422)
    db.session.commit()
    if check.status == AmlStatus.CLEAR:
        flash(f"Screened {check.screened_name}: no watchlist entry scored {check.threshold:g} or more.", "success")
    else:
        count = len(check.hits)
        flash(f"Screened {check.screened_name}: {count} possible match{'es' if count != 1 else ''} "
              "to review.", "info")
    response = redirect_to("compliance.screening_check", check_id=check.id)
    response.headers["HX-Trigger"] = SCREENING_CHANGED
    return response


def _check_page(check_id: uuid.UUID, *, error: str | None = None, errors: dict | None = None,
                values: dict | None = None, notice: str | None = None, trigger: str | None = None,
                status: int = 200):
    detail = screening.check_detail(current_user, check_id)
    return render("compliance/screening/check.html", "decision", status=status, trigger=trigger, detail=detail,
                  error=error, errors=errors or {}, values=values or {}, notice=notice,
                  min_reason=screening.MIN_REASON, **_context())


@bp.get("/screening/<uuid:check_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def screening_check(check_id: uuid.UUID):
    return _check_page(check_id)


@bp.post("/screening/<uuid:check_id>/review")
@requires(Permission.REVIEW_COMPLIANCE)
def screening_review(check_id: uuid.UUID):
    values = {"decision": request.form.get("decision", "")[:40], "reason": request.form.get("reason", "")[:2000]}
    try:
        check = screening.review_check(current_user, check_id, values["decision"], values["reason"])
    except DomainError as exc:
        refusal(exc)
        if exc.field in ("decision", "reason"):
            return _check_page(check_id, errors={exc.field: exc.message}, values=values, status=exc.status_code)
        return _check_page(check_id, error=exc.message, status=exc.status_code)
    db.session.commit()
    message = ("Match confirmed. A compliance case was opened for the student, or the open one was updated."
               if check.status == AmlStatus.CONFIRMED else "Marked as a false positive.")
    if wants_fragment():
        return _check_page(check_id, notice=message, trigger=SCREENING_CHANGED)
    flash(message, "success")
    return redirect_to("compliance.screening_check", check_id=check_id)


# ---------------------------------------------------------------------------------- watchlist


def _import_page(*, error: str | None = None, problems=None, total: int = 0, result=None, status: int = 200):
    return render("compliance/screening/watchlist.html", "panel", status=status, summary=watchlist.summary(),
                  error=error, problems=problems or [], total=total, result=result, columns=watchlist.COLUMNS,
                  max_mb=watchlist.MAX_BYTES // (1024 * 1024), max_rows=watchlist.MAX_ROWS, **_context())


@bp.get("/screening/watchlist")
@requires(Permission.SUPERVISE_CASES)
def watchlist_page():
    return _import_page()


def _imported(result: watchlist.ImportResult, what: str):
    db.session.commit()
    flash(f"{what}: {result.imported} entries ({result.sanctions} sanctions, {result.peps} PEP) replaced "
          f"the previous {result.replaced}.", "success")
    return redirect_to("compliance.watchlist_page")


@bp.post("/screening/watchlist")
@requires(Permission.SUPERVISE_CASES)
def watchlist_import():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _import_page(error="Choose a CSV file to import.", status=422)
    content = upload.stream.read(watchlist.MAX_BYTES + 1)
    try:
        result = watchlist.import_csv(current_user, content)
    except watchlist.WatchlistInvalid as exc:
        db.session.rollback()
        return _import_page(error=exc.message, problems=exc.errors, total=exc.total, status=422)
    return _imported(result, f"Imported {upload.filename[:100]}")


@bp.post("/screening/watchlist/sample")
@requires(Permission.SUPERVISE_CASES)
def watchlist_sample():
    return _imported(watchlist.load_sample(current_user), "Loaded the sample list")
