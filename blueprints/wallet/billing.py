"""The student's "Plan & billing" pages: compare plans and subscribe, the current plan with its
dates and next invoice, changing plan (an upgrade shows its proration lines on a confirmation
page first), canceling at the period end or now (the credit shown before confirming), resuming,
and invoices (list, page, PDF) with "Pay now" for an unpaid one.

Every POST carries the CSRF token and an idempotency key: the action runs once per key
(``ledger.once``), so a double click or a second tab gives the first outcome, not a second
charge. The rules are billing's (portal.money.billing.services); the views pass the form on and
show the answer.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Response, flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError
from portal.money.billing import entitlements, periods, queries, services
from portal.money.billing.invoice_pdf import invoice_pdf
from portal.money.currency import format_amount
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission


def money(amount, code: str) -> str:
    return format_amount(amount, code)


def features_in_words(raw: dict | None) -> list[str]:
    """What a plan's entitlements give, as sentences (missing keys take the defaults)."""
    try:
        values = {**entitlements.DEFAULTS, **entitlements.clean(raw)}
    except ValueError:
        values = dict(entitlements.DEFAULTS)
    words = []
    per_day = values["tutor_questions_per_day"]
    words.append("Unlimited questions to the tutor" if per_day is None
                 else f"{per_day} question{'s' if per_day != 1 else ''} to the tutor a day")
    words.append("The tutor's language model rewords its answers" if values["tutor_model"]
                 else "Tutor answers without the language model")
    reward = Decimal(str(values["reward_multiplier"]))
    if reward != 1:
        words.append(f"Earnings rewards \u00d7{reward.normalize():f}")
    transfer = Decimal(str(values["transfer_limit_multiplier"]))
    if transfer != 1:
        words.append(f"Daily transfer limit \u00d7{transfer.normalize():f}")
    return words


def _context(**extra) -> dict:
    return {"money": money, "features_in_words": features_in_words, **extra}


def _key() -> str:
    return (request.form.get("idempotency_key") or "").strip()[:100]


def _once(scope: str, details: dict, perform) -> bool:
    """Run ``perform`` once per idempotency key of the form; True when it had run already."""
    _result, replayed = ledger.once(current_user.id, _key(), scope, details, perform)
    return replayed


def _page(*, status: int = 200, error: str | None = None, error_plan: str | None = None):
    current = queries.current(current_user)
    invoices, more = queries.invoices(current_user)
    return render("wallet/billing/index.html", status=status, **_context(
        current=current, plans=queries.offered_plans(), invoices=invoices, more_invoices=more,
        methods=queries.saved_methods(current_user), error=error, error_plan=error_plan, key=ledger.new_key(),
        now=periods.now()))


def _refused(exc: DomainError, plan_id: str | None = None):
    """A refusal shown on the billing page with its status (4xx), nothing changed."""
    refusal(exc)
    status = exc.status_code if 400 <= exc.status_code < 500 else 422
    return _page(status=status, error=exc.message, error_plan=plan_id)


@bp.get("/billing")
@requires(Permission.USE_WALLET)
def billing():
    return _page()


@bp.post("/billing/subscribe")
@requires(Permission.USE_WALLET)
def billing_subscribe():
    plan_id = (request.form.get("plan") or "").strip()[:100]
    method_id = (request.form.get("method") or "").strip()[:100]
    try:
        replayed = _once("billing-subscribe", {"plan": plan_id, "method": method_id},
                         lambda: {"subscription": str(services.subscribe(
                             current_user, plan_id, method_id=method_id or None,
                             idempotency_key=f"subscribe-{_key()}"[:100]).id)})
    except DomainError as exc:
        return _refused(exc, plan_id)
    db.session.commit()
    current = queries.current(current_user)
    if replayed:
        flash("You had subscribed already; nothing was charged again.", "info")
    elif current is not None and current.subscription.status.value == "trialing":
        flash(f"Your {current.plan.name} trial has started: it ends on "
              f"{current.subscription.trial_end:%d %B %Y}.", "success")
    elif current is not None:
        flash(f"You are subscribed to {current.plan.name}.", "success")
    return redirect_to("wallet.billing")


@bp.post("/billing/change")
@requires(Permission.USE_WALLET)
def billing_change():
    """Without ``confirmed``: the confirmation page with what the change does (proration lines
    for an upgrade). With it: the change, once per key."""
    plan_id = (request.form.get("plan") or "").strip()[:100]
    if request.form.get("confirmed") != "1":
        try:
            preview = services.preview_change(current_user, plan_id)
        except DomainError as exc:
            return _refused(exc, plan_id)
        return render("wallet/billing/confirm_change.html", **_context(
            preview=preview, plan_id=plan_id, key=_key() or ledger.new_key()))
    try:
        done = {}

        def perform() -> dict:
            done["preview"] = services.change_plan(current_user, plan_id)
            return {"when": done["preview"].when}

        replayed = _once("billing-change", {"plan": plan_id}, perform)
    except DomainError as exc:
        return _refused(exc, plan_id)
    db.session.commit()
    if replayed:
        flash("This change was made already; nothing was charged again.", "info")
    else:
        preview = done["preview"]
        if preview.when == "now":
            flash(f"You are now on {preview.plan.name}"
                  + (f"; {money(preview.total, preview.currency)} was paid from your wallet." if preview.total else "."),
                  "success")
        else:
            flash(f"You keep {preview.current_plan.name} until {preview.effective_at:%d %B %Y}, "
                  f"then move to {preview.plan.name}.", "success")
    return redirect_to("wallet.billing")


@bp.post("/billing/cancel")
@requires(Permission.USE_WALLET)
def billing_cancel():
    """``when=period_end`` cancels at the end of the period (undo with resume); ``when=now``
    first shows the confirmation page with the credit, then ends the subscription."""
    when = request.form.get("when", "period_end")
    if when not in ("now", "period_end"):
        return _refused(services.BillingError("Choose to cancel now or at the end of the period."))
    current = queries.current(current_user)
    if current is None:
        return _refused(services.NoSubscription("You have no subscription to cancel."))
    if when == "now" and request.form.get("confirmed") != "1":
        credit = services.unused_credit(current.subscription, periods.now())
        return render("wallet/billing/confirm_cancel.html", **_context(
            current=current, credit=credit, key=_key() or ledger.new_key()))
    try:
        replayed = _once("billing-cancel", {"when": when},
                         lambda: {"status": services.cancel(current_user, now=when == "now").status.value})
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    if replayed:
        flash("This was done already.", "info")
    elif when == "now":
        flash("Your subscription has ended. Any unused time was returned to your wallet.", "success")
    else:
        flash(f"Your {current.plan.name} plan ends on {current.subscription.current_period_end:%d %B %Y}; "
              "you can resume it until then.", "success")
    return redirect_to("wallet.billing")


@bp.post("/billing/resume")
@requires(Permission.USE_WALLET)
def billing_resume():
    try:
        replayed = _once("billing-resume", {}, lambda: {"status": services.resume(current_user).status.value})
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    flash("This was done already." if replayed else "Your subscription continues: it will renew as before.",
          "info" if replayed else "success")
    return redirect_to("wallet.billing")


@bp.get("/billing/invoices")
@requires(Permission.USE_WALLET)
def billing_invoices():
    try:
        page = max(1, min(int(request.args.get("page", "1")), 100000))
    except ValueError:
        page = 1
    invoices, more = queries.invoices(current_user, page)
    return render("wallet/billing/invoices.html", **_context(invoices=invoices, more=more, page=page))


@bp.get("/billing/invoices/<invoice_id>")
@requires(Permission.USE_WALLET)
def billing_invoice(invoice_id: str):
    view = queries.invoice(current_user, invoice_id)
    return render("wallet/billing/invoice.html", **_context(view=view, key=ledger.new_key(), admin=False))


@bp.get("/billing/invoices/<invoice_id>.pdf")
@requires(Permission.USE_WALLET)
def billing_invoice_pdf(invoice_id: str):
    view = queries.invoice(current_user, invoice_id)
    response = Response(invoice_pdf(current_user, view.invoice.id), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{view.invoice.number}.pdf"'
    return response


@bp.post("/billing/payment-method")
@requires(Permission.USE_WALLET)
def billing_payment_method():
    """Choose what pays the subscription's invoices automatically: a saved method, or the wallet."""
    method_id = (request.form.get("method") or "").strip()[:100]
    try:
        method = services.set_payment_method(current_user, method_id or None)
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    flash(f"Your invoices will be charged to your {method.brand.capitalize()} ending {method.last4}."
          if method is not None else "Your invoices will be paid from your wallet.", "success")
    return redirect_to("wallet.billing")


def _pay_with_method(view, method_id: str):
    """Pay the invoice with a saved method: the form's key is the payment's, so a double submit
    finds the same payment; the gateway may answer later."""
    from flask import url_for

    payment = services.pay_invoice_with_method(
        current_user, view.invoice.id, method_id, idempotency_key=_key(),
        return_url=url_for("wallet.billing_invoice", invoice_id=view.invoice.id, _external=True))
    db.session.commit()
    if payment.state.value == "succeeded":
        flash(f"Invoice {view.invoice.number} is paid with your card. Thank you.", "success")
    elif payment.next_action_url:
        flash("Your bank asks you to confirm this payment: follow the link on the invoice.", "info")
    else:
        flash(f"Your card payment of invoice {view.invoice.number} is being processed; the invoice is marked "
              "paid as soon as it goes through.", "info")
    return redirect_to("wallet.billing_invoice", invoice_id=view.invoice.id)


@bp.post("/billing/invoices/<invoice_id>/pay")
@requires(Permission.USE_WALLET)
def billing_pay(invoice_id: str):
    view = queries.invoice(current_user, invoice_id)  # NotFound for another's invoice
    method_id = (request.form.get("method") or "").strip()[:100]
    try:
        if method_id:
            return _pay_with_method(view, method_id)
        replayed = _once("billing-pay", {"invoice": str(view.invoice.id)},
                         lambda: {"status": services.pay_invoice(current_user, view.invoice.id).status.value})
    except DomainError as exc:
        refusal(exc)
        return render("wallet/billing/invoice.html", status=exc.status_code if 400 <= exc.status_code < 500 else 422,
                      **_context(view=queries.invoice(current_user, invoice_id), key=ledger.new_key(), admin=False,
                                 error=exc.message))
    db.session.commit()
    flash("This invoice was paid already; nothing was charged again." if replayed
          else f"Invoice {view.invoice.number} is paid. Thank you.", "info" if replayed else "success")
    return redirect_to("wallet.billing_invoice", invoice_id=view.invoice.id)
