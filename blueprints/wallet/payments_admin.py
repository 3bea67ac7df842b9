"""Finance's pages of payments: the payments list with filters, a payment's page (its ledger
rows, full timeline and refunds) with the refund form, the refunds queue (course refund requests
waiting for a decision, and every refund by state), reconciliation with "Run now", and the
webhook log with replay.

Who: money administrators (``MANAGE_MONEY``), as every page of the money administration.
Compliance officers do not see these pages: no permission of theirs is about money (theirs are
identity checks, screening, cases and security events), the pages carry refund, decision,
reconciliation and replay actions that are finance's and link to finance's other pages, and
what an officer needs of a payment reaches the case already (a top-up and a refund are ledger
movements that transaction monitoring judges). Row-level security would let them read payment
rows; giving them a read-only view is a new permission, not a reuse of one of these.

Thin views over ``portal.money.payments``: ``admin_queries`` for the reads, ``services``
(refunds, decisions), ``webhooks`` (replay) and ``admin_services`` (reconciliation) for the
writes. Every form works without JavaScript (GET filters, post then redirect); with htmx the
list's results, the refund panel, a queue row and the reconciliation report swap in place.

The refund form has two steps: "Review" checks the amount and reason as the service will and
shows what will happen; "Confirm" makes the refund once per form key, so a double click or a
resubmit after "back" finds the first refund instead of making a second.
"""

from __future__ import annotations

import json
import uuid

from flask import flash, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField

from blueprints.wallet import bp
from blueprints.web import attach_error, redirect_to, refusal, render, wants_fragment
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.currency import CURRENCIES, currency, format_amount
from portal.money.payments import admin_queries as queries
from portal.money.payments import admin_services, services, webhooks
from portal.money.payments.models import (
    PROVIDER_NAMES,
    EventSource,
    PayWith,
    Purpose,
    Refund,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission

#: How each source of a timeline entry reads on the page.
SOURCE_LABELS = {
    EventSource.PORTAL.value: "portal", EventSource.PROVIDER.value: "provider's answer",
    EventSource.WEBHOOK.value: "webhook", EventSource.POLL.value: "reconciliation",
    EventSource.RETURN.value: "payer returned", EventSource.REPLAY.value: "replayed webhook",
    EventSource.ADMIN.value: "finance",
}
#: The periods "Run now" offers.
PERIOD_LABELS = {"7": "the last 7 days", "30": "the last 30 days", "90": "the last 90 days", "all": "all time"}
#: The filters' names in the message about those that could not be used.
FILTER_LABELS = {"user": "Payer", "state": "State", "purpose": "Purpose", "provider": "Provider",
                 "method": "Paid with", "currency": "Currency", "min": "Amount from", "max": "Amount to",
                 "since": "Created from", "until": "Created to"}
#: The refunds queue's tabs: finance's decisions first, then every state, then all.
REFUND_TABS = [("requested", "Waiting for finance"), ("pending", "Pending at the provider"),
               ("succeeded", "Succeeded"), ("failed", "Failed"), ("rejected", "Rejected"),
               ("canceled", "Canceled"), ("all", "All")]


def money(amount, code: str, **options) -> str:
    return format_amount(amount, code, **options)


def pretty_json(value) -> str:
    """A payload for people: indented, keys sorted, as text (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _context(**extra) -> dict:
    return {"money": money, "pretty_json": pretty_json, **extra}


# ---------------------------------------------------------------- the payments list


#: The list's query arguments, as typed (shown again in the form), with their longest length.
FILTER_ARGS = {"user": 100, "state": 40, "purpose": 40, "provider": 20, "method": 20, "currency": 10,
               "min": 40, "max": 40, "since": 10, "until": 10}


@bp.get("/admin/payments")
@requires(Permission.MANAGE_MONEY)
def admin_payments():
    typed = {name: request.args.get(name, "").strip()[:size] for name, size in FILTER_ARGS.items()}
    filters, errors = queries.parse_payment_filters(typed)
    after = request.args.get("after")
    page = queries.payments(filters, after)
    block = None
    if wants_fragment():
        block = "rows" if after else "results"
    choices = {"states": list(PaymentState), "purposes": list(Purpose), "providers": PROVIDER_NAMES,
               "methods": list(PayWith), "currencies": list(CURRENCIES)}
    return render("wallet/payments_admin/list.html", block, status=422 if errors and block != "rows" else 200,
                  **_context(page=page, total=None if after else queries.payments_count(filters), filters=filters,
                             typed=typed, errors=errors, choices=choices, labels=FILTER_LABELS))


# ---------------------------------------------------------------- a payment and its refund form


class RefundForm(FlaskForm):
    """The refund's fields; the refund service checks them (its messages show beside them)."""

    class Meta:
        csrf = False  # CSRFProtect guards every POST of the app already

    amount = StringField("Amount to refund")
    reason = TextAreaField("Reason")
    idempotency_key = HiddenField()


def _payment_page(payment_id: uuid.UUID, form: RefundForm | None = None, *, step: str = "form",
                  confirm_amount=None, status: int = 200, block: str | None = None):
    detail = queries.payment_page(current_user, payment_id)
    if form is None:
        form = RefundForm(formdata=None)
        if detail.refundable > 0:
            form.amount.data = _plain(detail.refundable, detail.payment.currency)
    if not form.idempotency_key.data:
        form.idempotency_key.data = ledger.new_key()
    return render("wallet/payments_admin/payment.html", block, status=status, **_context(
        detail=detail, form=form, step=step, confirm_amount=confirm_amount, source_labels=SOURCE_LABELS,
        webhook_ids=detail.webhook_ids))


def _plain(amount, code: str) -> str:
    """An amount as finance would type it: the currency's places, no grouping (``40.00``)."""
    return f"{amount.quantize(currency(code).quantum):f}"


@bp.get("/admin/payments/<uuid:payment_id>")
@requires(Permission.MANAGE_MONEY)
def admin_payment(payment_id: uuid.UUID):
    return _payment_page(payment_id)


@bp.post("/admin/payments/<uuid:payment_id>/refund")
@requires(Permission.MANAGE_MONEY)
def admin_payment_refund(payment_id: uuid.UUID):
    """Three steps, each a post of the same form: ``review`` (checked, then the confirmation),
    ``edit`` (back to the form), ``confirm`` (the refund is made once per form key: a double
    submit finds the first refund). Refused input shows beside its field (422)."""
    form = RefundForm()
    form.amount.data = (form.amount.data or "").strip()[:60]
    form.reason.data = (form.reason.data or "").strip()[:500]
    op = request.form.get("op", "review")
    if op == "edit":
        return _payment_page(payment_id, form, block="refund")
    try:
        if op == "confirm":
            refund, replayed = services.refund_payment_once(
                current_user, services.own_payment(current_user, payment_id), form.amount.data, form.reason.data,
                idempotency_key=form.idempotency_key.data)
        else:
            amount = queries.check_refund(queries.payment_page(current_user, payment_id), form.amount.data,
                                          form.reason.data)
    except DomainError as exc:
        attach_error(form, refusal(exc))
        if op == "confirm":
            form.idempotency_key.data = ""  # a refused confirmation starts a new attempt
        return _payment_page(payment_id, form, status=exc.status_code if exc.status_code in (409, 422) else 422,
                             block="refund")
    if op != "confirm":
        return _payment_page(payment_id, form, step="confirm", confirm_amount=amount, block="refund")
    db.session.commit()
    shown = money(refund.amount, refund.currency, exact=True)
    if replayed:
        flash(f"This refund of {shown} was already made; nothing was refunded twice.", "info")
    elif refund.state == RefundState.SUCCEEDED:
        flash(f"Refunded {shown}. The payer was told.", "success")
    else:
        flash(f"Refund of {shown} sent to the provider: the payer's funds are held until it confirms.", "success")
    return redirect_to("wallet.admin_payment", payment_id=payment_id)


# ---------------------------------------------------------------- the refunds queue


@bp.get("/admin/refunds")
@requires(Permission.MANAGE_MONEY)
def admin_refunds():
    raw = request.args.get("state", "requested")[:20]
    known = {value for value, _ in REFUND_TABS}
    state = raw if raw in known else "requested"
    after = request.args.get("after")
    page = queries.refunds_queue(None if state == "all" else RefundState(state), after)
    block = None
    if wants_fragment():
        block = "tabs" if request.args.get("part") == "tabs" else "rows" if after else "results"
    error = None if raw in known else f"“{raw}” is not a refund state: showing the requests waiting for finance."
    counts = None if block == "rows" else queries.refund_counts()
    return render("wallet/payments_admin/refunds.html", block, status=422 if error and block != "rows" else 200,
                  **_context(page=page, current=state, tabs=REFUND_TABS, counts=counts, state_error=error))


def _refund_or_404(refund_id: uuid.UUID) -> Refund:
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise NotFound("There is no such refund.")
    return refund


def _decide(refund_id: uuid.UUID, approve: bool, text_field: str):
    """Approve or reject a refund request; the queue row again (htmx) or the queue."""
    text = (request.form.get(text_field) or "").strip()[:500]
    in_row = wants_fragment() and request.form.get("from") == "queue"
    try:
        refund = services.decide_refund(current_user, _refund_or_404(refund_id), approve=approve, note=text)
    except DomainError as exc:
        refusal(exc)
        if in_row:
            return render("wallet/payments_admin/_refund_row.html", status=exc.status_code, **_context(
                row=queries.refund_row(refund_id), error=exc.message, error_field=exc.field,
                values={text_field: text}))
        flash(exc.message, "error")
        return redirect_to("wallet.admin_refunds")
    db.session.commit()
    shown = money(refund.amount, refund.currency)
    if refund.state == RefundState.REJECTED:
        message = f"Refund of {shown} rejected. The student was told why."
    elif refund.state == RefundState.SUCCEEDED:
        message = f"Refund of {shown} approved and paid back. The student was notified."
    else:
        message = f"Refund of {shown} approved and sent to the provider; the student is told when it settles."
    if in_row:
        return render("wallet/payments_admin/_refund_row.html", trigger="refunds-changed",
                      **_context(row=queries.refund_row(refund.id), notice=message))
    flash(message, "success")
    return redirect_to("wallet.admin_refunds")


@bp.post("/admin/refunds/<uuid:refund_id>/approve")
@requires(Permission.MANAGE_MONEY)
def admin_refund_approve(refund_id: uuid.UUID):
    return _decide(refund_id, True, "note")


@bp.post("/admin/refunds/<uuid:refund_id>/reject")
@requires(Permission.MANAGE_MONEY)
def admin_refund_reject(refund_id: uuid.UUID):
    return _decide(refund_id, False, "reason")


# ---------------------------------------------------------------- reconciliation


def _reconciliation_page(*, period: str = admin_services.DEFAULT_PERIOD, fix: bool = False, error: str | None = None,
                         just_ran: bool = False, block: str | None = None, status: int = 200):
    return render("wallet/payments_admin/reconciliation.html", block, status=status, **_context(
        run=queries.last_reconciliation(), periods=PERIOD_LABELS, period=period, fix=fix, run_error=error,
        just_ran=just_ran))


@bp.get("/admin/payments/reconciliation")
@requires(Permission.MANAGE_MONEY)
def admin_reconciliation():
    return _reconciliation_page()


@bp.post("/admin/payments/reconciliation")
@requires(Permission.MANAGE_MONEY)
def admin_reconcile_run():
    """Run it now (over the chosen period; "apply first" brings open payments and pending
    refunds up to date from their providers, as the periodic job does) and show the run."""
    period = (request.form.get("period") or admin_services.DEFAULT_PERIOD)[:10]
    fix = request.form.get("fix") == "1"
    try:
        report = admin_services.reconcile_and_record(current_user, period, fix=fix)
    except DomainError as exc:
        refusal(exc)
        return _reconciliation_page(period=period, fix=fix, error=exc.message, block="report",
                                    status=exc.status_code)
    db.session.commit()
    if wants_fragment():
        return _reconciliation_page(period=period, fix=fix, just_ran=True, block="report")
    count = len(report.differences)
    flash("Reconciliation ran: every payment checked matches." if not count else
          f"Reconciliation ran: {count} difference{'s' if count != 1 else ''}, listed below.",
          "success" if not count else "error")
    return redirect_to("wallet.admin_reconciliation")


# ---------------------------------------------------------------- the webhook log


@bp.get("/admin/payments/webhooks")
@requires(Permission.MANAGE_MONEY)
def admin_webhooks():
    found, errors = queries.parse_webhook_filters(request.args)
    after = request.args.get("after")
    page = queries.webhook_log(**found, cursor=after)
    block = None
    if wants_fragment():
        block = "rows" if after else "results"
    typed = {name: request.args.get(name, "").strip()[:200] for name in ("provider", "outcome", "event")}
    kept = {name: value for name, value in typed.items() if value and name not in errors}
    return render("wallet/payments_admin/webhooks.html", block, status=422 if errors and block != "rows" else 200,
                  **_context(page=page, typed=typed, kept=kept, errors=errors,
                             providers=[p for p in PROVIDER_NAMES if p != "wallet"], outcomes=list(WebhookOutcome)))


def _webhook_or_404(event_id: uuid.UUID) -> WebhookEvent:
    hook = queries.webhook_event(event_id)
    if hook is None:
        raise NotFound("There is no such webhook.")
    return hook


def _webhook_page(event_id: uuid.UUID):
    hook = _webhook_or_404(event_id)
    return render("wallet/payments_admin/webhook.html", **_context(
        hook=hook, payload_text=pretty_json(hook.payload), headers_text=pretty_json(hook.headers)))


@bp.get("/admin/payments/webhooks/<uuid:event_id>")
@requires(Permission.MANAGE_MONEY)
def admin_webhook(event_id: uuid.UUID):
    return _webhook_page(event_id)


@bp.post("/admin/payments/webhooks/<uuid:event_id>/replay")
@requires(Permission.MANAGE_MONEY)
def admin_webhook_replay(event_id: uuid.UUID):
    """Apply the stored message again and say what happened (its outcome and detail)."""
    try:
        hook = webhooks.replay_webhook(current_user, _webhook_or_404(event_id))
    except DomainError as exc:
        refusal(exc)
        flash(f"Replay refused: {exc.message}", "error")
        return redirect_to("wallet.admin_webhook", event_id=event_id)
    db.session.commit()
    outcome = WebhookOutcome(hook.outcome)
    said = {WebhookOutcome.APPLIED: "Replayed: the message was applied.",
            WebhookOutcome.IGNORED: "Replayed: nothing to apply.",
            WebhookOutcome.FAILED: "Replayed: applying it failed again.",
            WebhookOutcome.RECEIVED: "Replayed: stored, not applied yet."}[outcome]
    detail = hook.detail.strip().rstrip(".")
    flash(f"{said} {detail}." if detail else said, "error" if outcome == WebhookOutcome.FAILED else "success")
    return redirect_to("wallet.admin_webhook", event_id=event_id)
