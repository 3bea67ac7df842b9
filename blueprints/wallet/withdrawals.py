"""Withdrawals: a student asks (form, review with the fee, confirm), follows and cancels; money
administrators work the queue, review one withdrawal with its full destination, approve or reject.

Thin views over ``portal.money.earnings.withdrawals``: read the form, call the service, commit
once. With htmx the request panel, the fee preview and the rows of both lists swap in place;
without JavaScript every form posts and redirects back.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from flask import flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from blueprints.wallet import bp
from blueprints.web import attach_error, redirect_to, refusal, render, wants_fragment
from portal.compliance.kyc.levels import WITHDRAWAL_LEVEL
from portal.compliance.kyc.queries import effective_level
from portal.db import db
from portal.errors import DomainError
from portal.money.currency import CURRENCIES, format_amount
from portal.money.earnings import destinations
from portal.money.earnings import withdrawals as service
from portal.money.earnings.models import WithdrawalMethod, WithdrawalStatus
from portal.money.wallets import ledger
from portal.money.wallets.models import Wallet
from portal.security.access import requires
from portal.security.permissions import Permission

#: Tells the wallet's other parts (balances, activity) to refresh after money is held or freed.
BALANCE_CHANGED = "balance-changed"


class WithdrawalForm(FlaskForm):
    currency = SelectField("Currency", choices=[SelectChoice(code, f"{code} · {CURRENCIES[code].name}")
                                                for code in destinations.withdrawable_currencies()])
    method = SelectField("Paid to", choices=[SelectChoice(m.value, m.label) for m in WithdrawalMethod])
    destination = StringField("Destination")
    amount = StringField("Amount")
    idempotency_key = HiddenField()
    quoted_fee = HiddenField()


def _available() -> dict[str, Decimal]:
    """What the student can withdraw now, per withdrawable currency (one query)."""
    wallets = {w.currency: w for w in db.session.scalars(select(Wallet).where(Wallet.user_id == current_user.id))}
    return {code: wallets[code].available if code in wallets else Decimal(0)
            for code in destinations.withdrawable_currencies()}


def _request_page(form: WithdrawalForm, *, offer=None, status: int = 200):
    if not form.idempotency_key.data:
        form.idempotency_key.data = ledger.new_key()
    return render("wallet/withdrawals/new.html", "panel", status=status, form=form, offer=offer,
                  available=_available(), methods_by_currency=destinations.METHODS_BY_CURRENCY,
                  not_withdrawable=destinations.NOT_WITHDRAWABLE, fmt=format_amount,
                  kyc_level=effective_level(current_user.id), needed_level=WITHDRAWAL_LEVEL)


# ---------------------------------------------------------------------------------- students


@bp.get("/withdrawals")
@requires(Permission.USE_WALLET)
def withdrawals():
    page = service.withdrawals_of(current_user, request.args.get("after"))
    block = None
    if wants_fragment():
        block = "rows" if request.args.get("after") else "results"
    return render("wallet/withdrawals/list.html", block, page=page, fmt=format_amount)


@bp.route("/withdrawals/new", methods=["GET", "POST"])
@requires(Permission.USE_WALLET)
def new_withdrawal():
    form = WithdrawalForm()
    if request.method == "GET":
        if request.args.get("currency") in destinations.withdrawable_currencies():
            form.currency.data = request.args["currency"]
        return _request_page(form)
    op = request.form.get("op", "review")
    if op == "edit":
        form.quoted_fee.data = ""
        return _request_page(form)
    args = (form.currency.data, form.method.data, form.destination.data, form.amount.data)
    try:
        if op == "confirm":
            withdrawal, replayed = service.request_withdrawal(current_user, form.idempotency_key.data, *args,
                                                              quoted_fee=form.quoted_fee.data)
        else:
            offer = service.quote(current_user, *args)
    except DomainError as exc:
        db.session.rollback()
        form.quoted_fee.data = ""
        attach_error(form, exc)
        return _request_page(form, status=exc.status_code if exc.status_code in (409, 422) else 422)
    if op != "confirm":
        form.quoted_fee.data = str(offer.fee)
        form.destination.data = offer.destination.value
        return _request_page(form, offer=offer)
    db.session.commit()
    if replayed:
        flash("This withdrawal was already requested; it was not held twice.", "info")
    else:
        flash(f"Withdrawal requested: {format_amount(withdrawal.amount + withdrawal.fee_amount, withdrawal.currency)} is held until "
              "an administrator pays it out.", "success")
    response = redirect_to("wallet.withdrawals")
    response.headers["HX-Trigger"] = BALANCE_CHANGED
    return response


@bp.get("/withdrawals/fee")
@requires(Permission.USE_WALLET)
def withdrawal_fee():
    """The live fee preview beside the amount (no state change). Without htmx: the form."""
    if not wants_fragment():
        return redirect_to("wallet.new_withdrawal", currency=request.args.get("currency") or None)
    code = request.args.get("currency", "")
    raw = request.args.get("amount", "")
    amount = fee = None
    error = None
    if raw.strip():
        try:
            amount, fee = service.fee_preview(code, raw)
        except DomainError as exc:
            error = exc.message
    return render("wallet/withdrawals/new.html", "fee", amount=amount, fee=fee, code=code, error=error,
                  fmt=format_amount)


@bp.post("/withdrawals/<uuid:withdrawal_id>/cancel")
@requires(Permission.USE_WALLET)
def cancel_withdrawal(withdrawal_id: uuid.UUID):
    try:
        withdrawal = service.cancel(current_user, withdrawal_id)
    except DomainError as exc:
        refusal(exc)
        if wants_fragment():
            return render("wallet/withdrawals/_row.html", withdrawal=service.withdrawal_for(current_user, withdrawal_id),
                          error=exc.message, status=exc.status_code, fmt=format_amount)
        flash(exc.message, "error")
        return redirect_to("wallet.withdrawals")
    db.session.commit()
    if wants_fragment():
        return render("wallet/withdrawals/_row.html", withdrawal=withdrawal, trigger=BALANCE_CHANGED,
                      fmt=format_amount)
    flash(f"Withdrawal cancelled: {format_amount(withdrawal.amount + withdrawal.fee_amount, withdrawal.currency)} is available again.",
          "success")
    response = redirect_to("wallet.withdrawals")
    response.headers["HX-Trigger"] = BALANCE_CHANGED
    return response


# ---------------------------------------------------------------------------------- admins


def _status_filter() -> str:
    status = request.args.get("status", "pending")
    return status if status in WithdrawalStatus._value2member_map_ or status == "all" else "pending"


@bp.get("/admin/withdrawals")
@requires(Permission.MANAGE_MONEY)
def withdrawal_queue():
    status = _status_filter()
    page = service.queue(current_user, None if status == "all" else status, request.args.get("after"))
    block = None
    if wants_fragment():
        block = "rows" if request.args.get("after") else "results"
    return render("wallet/withdrawals/queue.html", block, page=page, current=status,
                  statuses=list(WithdrawalStatus), fmt=format_amount)


def _review_page(withdrawal_id: uuid.UUID, *, errors: dict | None = None, values: dict | None = None,
                 status: int = 200):
    return render("wallet/withdrawals/review.html", "decision", status=status,
                  review=service.review(current_user, withdrawal_id), errors=errors or {}, values=values or {},
                  fmt=format_amount)


@bp.get("/admin/withdrawals/<uuid:withdrawal_id>")
@requires(Permission.MANAGE_MONEY)
def review_withdrawal(withdrawal_id: uuid.UUID):
    return _review_page(withdrawal_id)


def _decide(withdrawal_id: uuid.UUID, action, text_field: str, done: str):
    """Approve or reject; answer with the queue row (htmx in the queue) or the review page."""
    text = request.form.get(text_field, "")
    in_row = wants_fragment() and request.form.get("from") == "queue"
    link = url_for("wallet.withdrawals")
    try:
        withdrawal = action(current_user, withdrawal_id, text, link=link)
    except DomainError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            raise
        if in_row:
            row = service.queue_row(current_user, withdrawal_id)
            return render("wallet/withdrawals/_queue_row.html", row=row, error=exc.message,
                          values={text_field: text}, status=exc.status_code, fmt=format_amount)
        if exc.field in ("reason", "note"):
            return _review_page(withdrawal_id, errors={exc.field: exc.message}, values={text_field: text},
                                status=exc.status_code)
        flash(exc.message, "error")
        return redirect_to("wallet.review_withdrawal", withdrawal_id=withdrawal_id)
    db.session.commit()
    if in_row:
        return render("wallet/withdrawals/_queue_row.html", row=service.queue_row(current_user, withdrawal.id),
                      trigger="withdrawals-changed", fmt=format_amount)
    flash(f"Withdrawal {done}: {format_amount(withdrawal.amount, withdrawal.currency)} for "
          f"{withdrawal.destination_masked}. The student was notified.", "success")
    return redirect_to("wallet.review_withdrawal", withdrawal_id=withdrawal.id)


@bp.post("/admin/withdrawals/<uuid:withdrawal_id>/approve")
@requires(Permission.MANAGE_MONEY)
def approve_withdrawal(withdrawal_id: uuid.UUID):
    return _decide(withdrawal_id, service.approve, "note", "approved")


@bp.post("/admin/withdrawals/<uuid:withdrawal_id>/reject")
@requires(Permission.MANAGE_MONEY)
def reject_withdrawal(withdrawal_id: uuid.UUID):
    return _decide(withdrawal_id, service.reject, "reason", "rejected")
