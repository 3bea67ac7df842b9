"""The officers' KYC review: the queue (filters by level, status, age and assignment; keyset
pages), "assign to me", the review page with the decrypted data beside the documents and the
latest screening, and the decisions (approve, reject, request a revision).

Thin views over ``portal.compliance.kyc``. With htmx, "assign to me" swaps its queue row and a
decision swaps the decision panel; without JavaScript every form posts and redirects back.
"""

from __future__ import annotations

import uuid

from flask import Response, flash, request
from flask_login import current_user

from blueprints.compliance import bp
from blueprints.web import redirect_to, render, wants_fragment
from portal.compliance.kyc import documents, levels, personal_data, queries, services
from portal.compliance.kyc.models import KycStatus
from portal.db import db
from portal.errors import DomainError
from portal.security.access import requires
from portal.security.permissions import Permission

#: Tells other parts of the page (counts, the queue) to refresh after a change.
KYC_CHANGED = "kyc-changed"
STATUS_LABELS = {"open": "Open", "submitted": "Submitted", "awaiting_second": "Awaiting second approval",
                 "approved": "Approved", "rejected": "Rejected", "revision_requested": "Revision requested",
                 "all": "All"}


def _context() -> dict:
    return {"status_labels": STATUS_LABELS, "country_name": personal_data.country_name,
            "document_types": services.DOCUMENT_TYPES, "levels": levels.LEVELS,
            "kind_labels": documents.KIND_LABELS}


@bp.get("/kyc")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_queue():
    filters = queries.QueueFilters.parse(request.args)
    after = request.args.get("after")
    block = None
    if wants_fragment():
        block = "rows" if after else "results"
    # The counts head the whole page only; they come with the queue's statement.
    page = queries.queue(current_user, filters, after, counted=block is None)
    return render("compliance/kyc/queue.html", block, page=page, filters=filters, counts=page.counts,
                  **_context())


@bp.post("/kyc/<uuid:verification_id>/assign")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_assign(verification_id: uuid.UUID):
    in_row = wants_fragment() and request.form.get("from") == "queue"
    try:
        services.assign_to_me(current_user, verification_id)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        if in_row:
            return render("compliance/kyc/_queue_row.html", row=queries.queue_row(verification_id), error=exc.message,
                          status=exc.status_code, **_context())
        flash(exc.message, "error")
        return redirect_to("compliance.kyc_review", verification_id=verification_id)
    db.session.commit()
    if in_row:
        return render("compliance/kyc/_queue_row.html", row=queries.queue_row(verification_id), trigger=KYC_CHANGED,
                      **_context())
    flash("The verification is assigned to you.", "success")
    if request.form.get("from") == "queue":
        return redirect_to("compliance.kyc_queue", **queries.QueueFilters.parse(request.form).as_args())
    return redirect_to("compliance.kyc_review", verification_id=verification_id)


def _review_page(verification_id: uuid.UUID, *, error: str | None = None, reason: str = "",
                 status: int = 200):
    review = queries.review(current_user, verification_id)
    return render("compliance/kyc/review.html", "decision", status=status, review=review, error=error,
                  reason=reason, me=current_user, **_context())


@bp.get("/kyc/<uuid:verification_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_review(verification_id: uuid.UUID):
    return _review_page(verification_id)


def _decide(verification_id: uuid.UUID, action, *args):
    reason = request.form.get("reason", "")
    try:
        verification = action(current_user, verification_id, *args)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        return _review_page(verification_id, error=exc.message, reason=reason, status=exc.status_code)
    db.session.commit()
    messages = {
        KycStatus.AWAITING_SECOND: "First approval recorded. A second officer must approve this level 3 "
                                   "verification (four eyes).",
        KycStatus.APPROVED: f"Level {verification.level} approved. The student was notified.",
        KycStatus.REJECTED: "Verification rejected. The student was notified with your reason.",
        KycStatus.REVISION_REQUESTED: "Revision requested. The student was notified with your reason.",
    }
    # The whole page changes (its status, the assignment, the history): htmx loads it again.
    flash(messages[verification.status], "success")
    response = redirect_to("compliance.kyc_review", verification_id=verification_id)
    response.headers["HX-Trigger"] = KYC_CHANGED
    return response


@bp.post("/kyc/<uuid:verification_id>/approve")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_approve(verification_id: uuid.UUID):
    return _decide(verification_id, services.approve, request.form.get("note", ""))


@bp.post("/kyc/<uuid:verification_id>/reject")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_reject(verification_id: uuid.UUID):
    return _decide(verification_id, services.reject, request.form.get("reason", ""))


@bp.post("/kyc/<uuid:verification_id>/revision")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_request_revision(verification_id: uuid.UUID):
    return _decide(verification_id, services.request_revision, request.form.get("reason", ""))


@bp.get("/kyc/documents/<uuid:document_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def kyc_document(document_id: uuid.UUID):
    doc, data = queries.officer_document(current_user, document_id)
    response = Response(data, mimetype=doc.content_type)
    response.headers.update(documents.response_headers(doc.original_name))
    return response
