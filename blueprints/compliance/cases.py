"""Suspicious-activity cases: the officers' dashboard, the queues, a case with its alerts and
timeline and the actions on it, the suspicious activity report, and the monitoring rules' settings.

Thin views over ``portal.compliance.cases.services`` (writes), ``queries`` (reads), ``reports``
and ``monitoring``. Every action posts a form: with htmx the case's working area swaps in place;
without JavaScript the form posts and redirects back to the case. A refused action answers with
the page (or fragment) and its message, and moves nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote

from flask import Response, flash, request, url_for
from flask_login import current_user

from blueprints.compliance import bp
from blueprints.web import redirect_to, render, wants_fragment
from portal.compliance.aml import monitoring
from portal.compliance.cases import queries as case_queries
from portal.compliance.cases import reports
from portal.compliance.cases import services as service
from portal.compliance.cases.models import CASE_TRANSITIONS, CaseStatus, Disposition
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.currency import CURRENCIES, format_amount
from portal.security.access import requires
from portal.security.permissions import Permission

#: Tells other parts of the page (the queue counts) that a case changed.
CASE_CHANGED = "case-changed"


def _ctx() -> dict:
    return {"fmt": format_amount, "status_labels": service.STATUS_LABELS,
            "disposition_labels": service.DISPOSITION_LABELS, "transitions": CASE_TRANSITIONS,
            "CaseStatus": CaseStatus, "Disposition": Disposition, "rules": monitoring.RULES}


# -- Dashboard and queues -------------------------------------------------------------------------


@bp.get("/")
@requires(Permission.REVIEW_COMPLIANCE)
def dashboard():
    data = case_queries.dashboard(current_user)
    return render("compliance/cases/dashboard.html", data=data, age_buckets=case_queries.AGE_BUCKETS,
                  kyc_buckets=case_queries.KYC_AGE_BUCKETS, queues=case_queries.queues_for(current_user),
                  **_ctx())


QUEUE_TITLES = {"unassigned": "Unassigned", "mine": "Assigned to me", "escalated": "Escalated", "all": "All cases"}


@bp.get("/cases")
@requires(Permission.REVIEW_COMPLIANCE)
def case_queue():
    allowed = case_queries.queues_for(current_user)
    name = request.args.get("queue") or case_queries.DEFAULT_QUEUE
    if name not in case_queries.QUEUES:
        name = case_queries.DEFAULT_QUEUE
    if name not in allowed:
        return render("compliance/cases/queue.html", "results", status=403, page=None, current=name,
                      queues=allowed, titles=QUEUE_TITLES, refused=True, **_ctx())
    cursor = request.args.get("after")
    page = case_queries.queue(current_user, name, cursor)
    block = None
    if wants_fragment():
        block = "rows" if cursor else "results"
    return render("compliance/cases/queue.html", block, page=page, current=name, queues=allowed, titles=QUEUE_TITLES,
                  refused=False, **_ctx())


# -- One case -------------------------------------------------------------------------------------


def _case_page(case_id: uuid.UUID, *, errors: dict | None = None, values: dict | None = None,
               message: str | None = None, status: int = 200, trigger: str | None = None):
    view = case_queries.case_view(current_user, case_id)
    return render("compliance/cases/case.html", "work", status=status, trigger=trigger, view=view,
                  errors=errors or {}, values=values or {}, message=message, **_ctx())


@bp.get("/cases/<uuid:case_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def case_detail(case_id: uuid.UUID):
    return _case_page(case_id)


def _act(case_id: uuid.UUID, form: str, action, done: str, values: dict):
    """Run one action on the case; answer with the working area (htmx) or redirect back. A
    refusal is shown beside the form that was sent (``form``)."""
    try:
        action()
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        return _case_page(case_id, errors={form: exc.message}, values=values, status=exc.status_code)
    db.session.commit()
    if wants_fragment():
        return _case_page(case_id, message=done, trigger=CASE_CHANGED)
    flash(done, "success")
    return redirect_to("compliance.case_detail", case_id=case_id)


def _assignee() -> uuid.UUID | None:
    raw = (request.form.get("assignee") or "").strip()
    if not raw or raw == "me":
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return uuid.UUID(int=0)  # no such officer: the service says so


@bp.post("/cases/<uuid:case_id>/assign")
@requires(Permission.REVIEW_COMPLIANCE)
def assign_case(case_id: uuid.UUID):
    assignee = _assignee()
    link = url_for("compliance.case_detail", case_id=case_id)
    return _act(case_id, "assign", lambda: service.assign(current_user, case_id, assignee, link=link),
                "The case is assigned to you." if assignee is None else "The case was assigned.",
                {"assignee": request.form.get("assignee", "")})


@bp.post("/cases/<uuid:case_id>/comment")
@requires(Permission.REVIEW_COMPLIANCE)
def comment_case(case_id: uuid.UUID):
    body = request.form.get("body", "")
    return _act(case_id, "comment", lambda: service.comment(current_user, case_id, body), "Comment added.", {"body": body})


@bp.post("/cases/<uuid:case_id>/attachments")
@requires(Permission.REVIEW_COMPLIANCE)
def attach_to_case(case_id: uuid.UUID):
    file = request.files.get("file")
    upload = None
    if file is not None and file.filename:
        # At most one byte over the limit: enough to refuse an oversized file without reading it all.
        upload = service.Upload(filename=file.filename, data=file.stream.read(service.max_attachment_bytes() + 1))
    note = request.form.get("note", "")
    return _act(case_id, "attach", lambda: service.attach(current_user, case_id, upload, note), "File attached.",
                {"attachment_note": note})


@bp.get("/cases/<uuid:case_id>/attachments/<uuid:event_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def case_attachment(case_id: uuid.UUID, event_id: uuid.UUID):
    name, content_type, data = service.attachment(current_user, case_id, event_id)
    return _download(data, content_type, name)


def _download(data: bytes, content_type: str, name: str) -> Response:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "download"
    response = Response(data, mimetype=content_type)
    response.headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/cases/<uuid:case_id>/status")
@requires(Permission.REVIEW_COMPLIANCE)
def change_case_status(case_id: uuid.UUID):
    status, note = request.form.get("status", ""), request.form.get("note", "")
    label = service.STATUS_LABELS.get(CaseStatus(status), status) if status in CaseStatus._value2member_map_ else status
    return _act(case_id, "status", lambda: service.change_status(current_user, case_id, status, note),
                f"The case is now {str(label).lower()}.", {"status": status, "status_note": note})


@bp.post("/cases/<uuid:case_id>/escalate")
@requires(Permission.REVIEW_COMPLIANCE)
def escalate_case(case_id: uuid.UUID):
    note = request.form.get("note", "")
    return _act(case_id, "escalate", lambda: service.escalate(current_user, case_id, note),
                "The case is escalated to the supervising officers.", {"escalate_note": note})


@bp.post("/cases/<uuid:case_id>/close")
@requires(Permission.REVIEW_COMPLIANCE)
def close_case(case_id: uuid.UUID):
    disposition, note = request.form.get("disposition", ""), request.form.get("note", "")
    return _act(case_id, "close", lambda: service.close(current_user, case_id, disposition, note), "The case is closed.",
                {"disposition": disposition, "close_note": note})


@bp.post("/cases/<uuid:case_id>/report")
@requires(Permission.REVIEW_COMPLIANCE)
def build_case_report(case_id: uuid.UUID):
    narrative = request.form.get("narrative", "")
    return _act(case_id, "report", lambda: service.build_report(current_user, case_id, narrative),
                "The suspicious activity report is built.", {"narrative": narrative})


def _report_of(case_id: uuid.UUID) -> dict:
    case = service.case_for(current_user, case_id)
    if case.report is None:
        raise NotFound("This case has no suspicious activity report yet.")
    return case.report


@bp.get("/cases/<uuid:case_id>/report.json")
@requires(Permission.REVIEW_COMPLIANCE)
def case_report_json(case_id: uuid.UUID):
    report = _report_of(case_id)
    body = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False)
    return _download(body.encode(), "application/json", f"{report.get('reference', 'report')}.json")


@bp.get("/cases/<uuid:case_id>/report.pdf")
@requires(Permission.REVIEW_COMPLIANCE)
def case_report_pdf(case_id: uuid.UUID):
    report = _report_of(case_id)
    return _download(reports.render_pdf(report), "application/pdf", f"{report.get('reference', 'report')}.pdf")


# -- Monitoring rules (supervisors) ---------------------------------------------------------------


def _rules_page(*, errors: dict | None = None, values: dict | None = None, rule: str | None = None,
                message: str | None = None, status: int = 200):
    settings = monitoring.load_settings()
    context = dict(settings=settings, specs=monitoring.RULES, currencies=list(CURRENCIES),
                   configured=monitoring.configured_large_amounts(), errors=errors or {}, values=values or {},
                   message=message, message_rule=rule, plain=monitoring.plain_amount, **_ctx())
    if rule and wants_fragment():
        return render("compliance/cases/_rule.html", status=status, name=rule, setting=settings.rules[rule],
                      **context)
    return render("compliance/cases/rules.html", status=status, **context)


@bp.get("/rules")
@requires(Permission.SUPERVISE_CASES)
def monitoring_rules():
    return _rules_page()


@bp.post("/rules/<name>")
@requires(Permission.SUPERVISE_CASES)
def save_monitoring_rule(name: str):
    if name not in monitoring.RULES:
        raise NotFound("There is no such monitoring rule.")
    raw = request.form.to_dict()
    try:
        monitoring.save_rule(current_user, name, enabled=request.form.get("enabled") == "on", raw=raw)
    except DomainError as exc:
        db.session.rollback()
        return _rules_page(errors={exc.field or "_form": exc.message}, values=raw, rule=name,
                           status=exc.status_code)
    db.session.commit()
    done = f"{monitoring.RULES[name].title}: settings saved."
    if wants_fragment():
        return _rules_page(rule=name, message=done)
    flash(done, "success")
    return redirect_to(url=url_for("compliance.monitoring_rules") + f"#rule-{name}")


@bp.post("/rules/<name>/reset")
@requires(Permission.SUPERVISE_CASES)
def reset_monitoring_rule(name: str):
    if name not in monitoring.RULES:
        raise NotFound("There is no such monitoring rule.")
    monitoring.reset_rule(current_user, name)
    db.session.commit()
    done = f"{monitoring.RULES[name].title}: back to the defaults."
    if wants_fragment():
        return _rules_page(rule=name, message=done)
    flash(done, "success")
    return redirect_to(url=url_for("compliance.monitoring_rules") + f"#rule-{name}")
