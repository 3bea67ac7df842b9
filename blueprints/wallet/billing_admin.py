"""Billing administration: the figures (MRR per currency, subscriptions by state, churn per
month), the plans (create, a new price as a new version, move an old version's subscribers at
their next renewal with notice, archive), and every invoice with filters and keyset pages, an
invoice's page with void.

Plain forms that work without JavaScript (post, then redirect back); the rules and their
messages are billing's (portal.money.billing.services).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Response, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from blueprints.wallet import bp
from blueprints.web import attach_error, redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.billing import admin_queries, entitlements, queries, services
from portal.money.billing.invoice_pdf import invoice_pdf
from portal.money.billing.models import InvoiceStatus, Plan, Subscription, SubscriptionStatus
from portal.money.currency import CURRENCIES, currency, format_amount
from portal.security.access import requires
from portal.security.permissions import Permission

LIVE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


def _context(**extra) -> dict:
    return {"money": format_amount, **extra}


class PlanForm(FlaskForm):
    """A plan's fields as typed; billing checks them (``services._checked_plan``) and its
    messages show beside the fields."""

    class Meta:
        csrf = False  # CSRFProtect guards every POST of the app already

    name = StringField("Name")
    code = StringField("Code")
    price = StringField("Price")
    currency = SelectField("Currency", choices=[SelectChoice(code, code) for code in CURRENCIES], validate_choice=False)
    interval = SelectField("Interval", choices=[SelectChoice("monthly", "Monthly"), SelectChoice("yearly", "Yearly")],
                           validate_choice=False)
    trial_days = StringField("Trial days", default="0")
    description = TextAreaField("Description")
    position = StringField("Position", default="0")
    tutor_model = BooleanField("The tutor's language model")
    tutor_questions_per_day = StringField("Tutor questions a day")
    reward_multiplier = StringField("Reward multiplier", default="1")
    transfer_limit_multiplier = StringField("Transfer limit multiplier", default="1")


FEATURE_FIELDS = ("tutor_questions_per_day", "reward_multiplier", "transfer_limit_multiplier")


def _features(form: PlanForm) -> dict:
    """The entitlements as billing takes them (blank questions a day: unlimited)."""
    raw = {"tutor_model": bool(form.tutor_model.data)}
    for name in FEATURE_FIELDS:
        value = (getattr(form, name).data or "").strip()[:40]
        if name == "tutor_questions_per_day":
            if not value:
                raw[name] = None
                continue
            if not value.isdigit():
                raise services.PlanInvalid("Tutor questions a day are a whole number, or blank for unlimited.",
                                           field=name)
            raw[name] = int(value)
        else:
            raw[name] = value or "1"
    return raw


def _input(form: PlanForm) -> services.PlanInput:
    return services.PlanInput(name=(form.name.data or "")[:200], price=(form.price.data or "")[:40],
                              currency=(form.currency.data or "")[:10], interval=(form.interval.data or "")[:20],
                              trial_days=(form.trial_days.data or "")[:10], entitlements=_features(form),
                              description=(form.description.data or "")[:1000],
                              position=(form.position.data or "")[:10])


def _fill(form: PlanForm, plan: Plan) -> None:
    features = {**entitlements.DEFAULTS, **entitlements.clean(plan.entitlements)}
    form.name.data, form.code.data, form.price.data = plan.name, plan.code, str(
        plan.price.quantize(currency(plan.currency).quantum))
    form.currency.data, form.interval.data = plan.currency, plan.interval.value
    form.trial_days.data, form.description.data, form.position.data = str(plan.trial_days), plan.description, str(plan.position)
    form.tutor_model.data = bool(features["tutor_model"])
    per_day = features["tutor_questions_per_day"]
    form.tutor_questions_per_day.data = "" if per_day is None else str(per_day)
    form.reward_multiplier.data = str(features["reward_multiplier"])
    form.transfer_limit_multiplier.data = str(features["transfer_limit_multiplier"])


def _plans_with_counts() -> list[tuple[Plan, int]]:
    counts = (select(Subscription.plan_id, func.count().label("n")).where(Subscription.status.in_(LIVE))
              .group_by(Subscription.plan_id).subquery())
    rows = db.session.execute(select(Plan, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.plan_id == Plan.id)
                              .order_by(Plan.status, Plan.position, Plan.code, Plan.version.desc())).all()
    return [(plan, count) for plan, count in rows]


@bp.get("/admin/billing")
@requires(Permission.MANAGE_MONEY)
def billing_admin():
    return render("wallet/billing_admin/index.html", **_context(
        counts=admin_queries.counts_by_status(), mrr=admin_queries.mrr(), churn=admin_queries.churn(),
        plans=_plans_with_counts()))


def _plan_form_page(form: PlanForm, *, code: str | None = None, current: Plan | None = None, status: int = 200,
                    subscribers: int = 0):
    return render("wallet/billing_admin/plan_form.html", status=status,
                  **_context(form=form, code=code, current=current, subscribers=subscribers))


@bp.route("/admin/billing/plans/new", methods=["GET", "POST"])
@requires(Permission.MANAGE_MONEY)
def billing_admin_new_plan():
    form = PlanForm() if request.method == "POST" else PlanForm(formdata=None)
    if request.method == "GET":
        return _plan_form_page(form)
    try:
        plan = services.create_plan(current_user, (form.code.data or "")[:100], _input(form))
    except DomainError as exc:
        attach_error(form, refusal(exc))
        return _plan_form_page(form, status=422)
    db.session.commit()
    flash(f"The {plan.name} plan is offered now.", "success")
    return redirect_to("wallet.billing_admin")


def _active(code: str) -> Plan:
    plan = services.active_plan(code[:40])
    if plan is None:
        raise NotFound("There is no active plan with this code.")
    return plan


def _subscribers(plan_code: str) -> int:
    return db.session.scalar(select(func.count()).select_from(Subscription).join(Plan, Plan.id == Subscription.plan_id)
                             .where(Plan.code == plan_code, Subscription.status.in_(LIVE))) or 0


@bp.route("/admin/billing/plans/<code>/version", methods=["GET", "POST"])
@requires(Permission.MANAGE_MONEY)
def billing_admin_plan_version(code: str):
    """A new price (or other terms) as a new version: existing subscribers keep theirs."""
    current = _active(code)
    if request.method == "GET":
        form = PlanForm(formdata=None)
        _fill(form, current)
        return _plan_form_page(form, code=current.code, current=current, subscribers=_subscribers(current.code))
    form = PlanForm()
    form.code.data = current.code
    try:
        plan = services.new_plan_version(current_user, current.code, _input(form))
    except DomainError as exc:
        attach_error(form, refusal(exc))
        return _plan_form_page(form, code=current.code, current=current, status=422,
                               subscribers=_subscribers(current.code))
    db.session.commit()
    flash(f"{plan.name} version {plan.version} is offered now at {format_amount(plan.price, plan.currency)}. "
          "Existing subscribers keep their price until you move them.", "success")
    return redirect_to("wallet.billing_admin")


@bp.post("/admin/billing/plans/<code>/move")
@requires(Permission.MANAGE_MONEY)
def billing_admin_move(code: str):
    try:
        moved = services.move_to_latest_version(current_user, code[:40])
    except DomainError as exc:
        flash(refusal(exc).message, "error")
        return redirect_to("wallet.billing_admin")
    db.session.commit()
    flash(f"{moved} subscriber{'s' if moved != 1 else ''} will move to the new price at their next renewal; "
          "each has been told by e-mail." if moved else "No subscriber of an older version was left to move.",
          "success" if moved else "info")
    return redirect_to("wallet.billing_admin")


@bp.post("/admin/billing/plans/<plan_id>/archive")
@requires(Permission.MANAGE_MONEY)
def billing_admin_archive(plan_id: str):
    try:
        plan = services.archive_plan(current_user, plan_id[:100])
    except DomainError as exc:
        flash(refusal(exc).message, "error")
        return redirect_to("wallet.billing_admin")
    db.session.commit()
    flash(f"{plan.name} is archived: no one new may subscribe; its subscribers keep it.", "success")
    return redirect_to("wallet.billing_admin")


def _date(raw: str, field: str, errors: dict) -> datetime | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return datetime.strptime(raw[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        errors[field] = "Use a date such as 2026-01-31."
        return None


@bp.get("/admin/billing/invoices")
@requires(Permission.MANAGE_MONEY)
def billing_admin_invoices():
    args = request.args
    errors: dict[str, str] = {}
    since = _date(args.get("from", ""), "from", errors)
    until = _date(args.get("to", ""), "to", errors)
    filters = admin_queries.InvoiceFilters(
        status=(args.get("status") or "").strip()[:20], number=(args.get("number") or "")[:40],
        email=(args.get("student") or "")[:200], plan=(args.get("plan") or "")[:40], since=since,
        until=until + timedelta(days=1) if until else None)
    rows, more = [], False
    if not errors:
        try:
            rows, more = admin_queries.invoices(filters, after=(args.get("after") or "")[:200] or None)
        except DomainError as exc:
            errors[exc.field or "status"] = exc.message
    query = {k: v for k, v in args.items() if k != "after" and v}
    next_url = None
    if more and rows:
        next_url = url_for("wallet.billing_admin_invoices", **query, after=admin_queries.cursor(rows[-1][0]))
    codes = sorted({plan.code for plan in db.session.scalars(select(Plan))})
    return render("wallet/billing_admin/invoices.html", "results", status=422 if errors else 200, **_context(
        rows=rows, next_url=next_url, errors=errors, raw=args, statuses=list(InvoiceStatus), codes=codes,
        paged=bool(args.get("after"))))


@bp.get("/admin/billing/invoices/<invoice_id>")
@requires(Permission.MANAGE_MONEY)
def billing_admin_invoice(invoice_id: str):
    return render("wallet/billing/invoice.html", **_context(view=queries.invoice(current_user, invoice_id), admin=True))


@bp.get("/admin/billing/invoices/<invoice_id>.pdf")
@requires(Permission.MANAGE_MONEY)
def billing_admin_invoice_pdf(invoice_id: str):
    view = queries.invoice(current_user, invoice_id)
    response = Response(invoice_pdf(current_user, view.invoice.id), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{view.invoice.number}.pdf"'
    return response


@bp.post("/admin/billing/invoices/<invoice_id>/void")
@requires(Permission.MANAGE_MONEY)
def billing_admin_void(invoice_id: str):
    view = queries.invoice(current_user, invoice_id)
    try:
        services.void_invoice(current_user, view.invoice.id)
    except DomainError as exc:
        flash(refusal(exc).message, "error")
        return redirect_to("wallet.billing_admin_invoice", invoice_id=view.invoice.id)
    db.session.commit()
    flash(f"Invoice {view.invoice.number} is void; its number stays used.", "success")
    return redirect_to("wallet.billing_admin_invoice", invoice_id=view.invoice.id)



