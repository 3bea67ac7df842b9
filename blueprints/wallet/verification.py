"""The student's identity verification: their level, what each level unlocks, their submissions
with the officers' reasons, the form for the next level, and their own uploaded documents.

Thin views over ``portal.compliance.kyc``: read the form, call the service, commit once. A
refused submission shows the page again with every field's message (422) and keeps what was
typed; with htmx only the form panel is swapped.
"""

from __future__ import annotations

import uuid

from flask import Response, flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import redirect_to, render
from portal.compliance.kyc import documents, levels, personal_data, queries, services
from portal.compliance.kyc.models import KycStatus
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.currency import format_amount
from portal.security.access import requires
from portal.security.permissions import Permission

TEMPLATE = "wallet/verification/index.html"


def _page(*, errors: dict | None = None, values: dict | None = None, form_error: str | None = None,
          status: int = 200, level: int | None = None):
    overview = queries.student_overview(current_user)
    form_level = level if errors else overview.next_level
    if not values and form_level:
        values = _revision_values(overview.latest.get(form_level))
    return render(TEMPLATE, "form_panel", status=status, overview=overview, levels=levels.LEVELS,
                  form_level=form_level, errors=errors or {}, values=values or {},
                  form_error=form_error, countries=personal_data.countries(), country_name=personal_data.country_name,
                  document_types=services.DOCUMENT_TYPES, max_upload=documents.human_size(
                      _max_upload()), accepted=documents.ACCEPTED, kind_labels=documents.KIND_LABELS, limits=_limits(), fmt=format_amount)


def _limits() -> dict[int, list]:
    from flask import current_app

    configured = current_app.config.get("TRANSFER_DAILY_LIMITS", {})
    return {lv.number: levels.transfer_limits(configured, lv.number) for lv in levels.LEVELS}


def _revision_values(latest) -> dict:
    """What the student sent last time, when an officer asked for a revision: the form starts
    from it (files are chosen again)."""
    if latest is None or latest.status != KycStatus.REVISION_REQUESTED:
        return {}
    data = personal_data.unseal(latest)
    if "error" in data:
        return {}
    return {**data, "country": latest.country or "", "document_type": latest.document_type or "",
            "expires_on": latest.document_expires_on.isoformat() if latest.document_expires_on else ""}


def _max_upload() -> int:
    from flask import current_app

    return current_app.config["KYC_MAX_UPLOAD_BYTES"]


def _upload(name: str) -> documents.Upload | None:
    file = request.files.get(name)
    if file is None or not file.filename:
        return None
    # One byte past the limit is enough to refuse an oversized file without reading it all.
    return documents.Upload(filename=file.filename, data=file.stream.read(_max_upload() + 1),
                            content_type=file.mimetype or "")


@bp.get("/verification")
@requires(Permission.USE_WALLET)
def verification():
    return _page()


@bp.post("/verification/level/<int:level>")
@requires(Permission.USE_WALLET)
def submit_verification(level: int):
    form = request.form
    values = {key: form.get(key, "") for key in ("legal_name", "birth_date", "country", "address",
                                                 "document_type", "document_number", "expires_on")}
    try:
        if level == 1:
            services.submit_level1(current_user, legal_name=form.get("legal_name"), birth_date=form.get("birth_date"),
                                   country=form.get("country"), address=form.get("address"))
        elif level == 2:
            services.submit_level2(current_user, document_type=form.get("document_type"),
                                   document_number=form.get("document_number"), expires_on=form.get("expires_on"),
                                   front=_upload("front"), back=_upload("back"))
        elif level == 3:
            services.submit_level3(current_user, proof=_upload("proof"), selfie=_upload("selfie"))
        else:
            raise NotFound("There is no such verification level.")
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        errors = getattr(exc, "errors", None) or ({exc.field: exc.message} if exc.field else {})
        return _page(errors=errors, values=values, form_error=None if errors else exc.message,
                     status=exc.status_code if exc.status_code in (403, 409, 422) else 422, level=level)
    db.session.commit()
    flash(f"Your level {level} verification was sent. A compliance officer will review it; you will get a "
          "notification with the decision.", "success")
    return redirect_to("wallet.verification")


@bp.get("/verification/documents/<uuid:document_id>")
@requires(Permission.USE_WALLET)
def own_document(document_id: uuid.UUID):
    doc, data = queries.own_document(current_user, document_id)
    return document_response(doc, data)


def document_response(doc, data: bytes) -> Response:
    response = Response(data, mimetype=doc.content_type)
    response.headers.update(documents.response_headers(doc.original_name))
    return response
