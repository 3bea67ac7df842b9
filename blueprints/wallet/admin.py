"""Money administration: the ledger at a glance (system wallets, what users hold, the last
verification and "Verify now"), fee rules (list, create, inline edit, delete, with examples of
what a rule charges), and a user's wallets and history with freezing and unfreezing.

Every action is a plain form that works without JavaScript (post, then redirect back); with
htmx the same post answers with the part of the page it changed.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from flask import flash, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from blueprints.wallet import bp
from blueprints.web import attach_error, redirect_to, refusal, render, wants_fragment
from portal.accounts.models import User
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.currency import CURRENCIES, currency, format_amount
from portal.money.payments import admin_queries as payment_queries
from portal.money.wallets import admin_queries as queries
from portal.money.wallets import admin_services as services
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import SystemWallet, TransactionFee, TransactionType, Wallet
from portal.security.access import requires
from portal.security.permissions import Permission

#: The amounts each fee rule is shown charging: small (where a minimum bites), typical, large
#: (where a maximum bites).
EXAMPLE_AMOUNTS = {"AZR": ("1", "100", "10000"), "USD": ("1", "100", "10000"),
                   "BTC": ("0.0001", "0.01", "1"), "ETH": ("0.001", "0.5", "20")}
MINUS = "\u2212"
#: Pages of the money administration served by other modules of this blueprint (by path: a
#: blueprint module does not import another's views).
WITHDRAWALS_PATH = "/wallet/admin/withdrawals"
EXCHANGE_PATH = "/wallet/admin/exchange"
PAYMENTS_PATH = "/wallet/admin/payments"
REFUNDS_PATH = "/wallet/admin/refunds"


def money(amount, code: str) -> str:
    """An amount for people (``portal.money.currency.format_amount``)."""
    return format_amount(amount, code)


def _context(**extra) -> dict:
    return {"money": money, "plain": _plain, **extra}


# ---------------------------------------------------------------- forms


class FeeFiguresForm(FlaskForm):
    """A rule's figures. Parsing and every rule about them is the fee service's; the form only
    carries the text, so each message comes from one place and shows beside its field."""

    fixed_amount = StringField("Fixed amount")
    percent = StringField("Percent")
    minimum = StringField("Minimum")
    maximum = StringField("Maximum (empty: no cap)")
    active = BooleanField("Active", default=True)


class NewFeeRuleForm(FeeFiguresForm):
    transaction_type = SelectField("Transaction type", validate_choice=False,
                                   choices=[SelectChoice(t.value, t.label) for t in fees.CHARGEABLE])
    currency = SelectField("Currency", validate_choice=False,
                           choices=[SelectChoice(code, f"{code} \u2013 {c.name}") for code, c in CURRENCIES.items()])


class StatusForm(FlaskForm):
    reason = TextAreaField("Reason (the owner is told)")


def _ids(form: FlaskForm, prefix: str) -> FlaskForm:
    """Give the fields of one of several forms on a page their own element ids (the names stay,
    so the post and its CSRF token are the same)."""
    for f in form:
        f.id = f"{prefix}-{f.name}"
    return form


def _figures(form: FeeFiguresForm) -> dict:
    return {"fixed": form.fixed_amount.data, "percent": form.percent.data, "minimum": form.minimum.data,
            "maximum": form.maximum.data, "active": bool(form.active.data)}


def _edit_form(rule: TransactionFee, formdata=None) -> FeeFiguresForm:
    if formdata is None:
        form = FeeFiguresForm(formdata=None, data={
            "fixed_amount": _plain(rule.fixed_amount, rule.currency), "percent": _plain(rule.percent, None),
            "minimum": _plain(rule.minimum, rule.currency),
            "maximum": _plain(rule.maximum, rule.currency) if rule.maximum is not None else "",
            "active": rule.active})
    else:
        form = FeeFiguresForm()
    return _ids(form, f"rule-{rule.id.hex[:12]}")


def _plain(value: Decimal, code: str | None) -> str:
    """A stored figure as an admin would type it (no trailing zeros, no grouping)."""
    if code:
        value = value.quantize(currency(code).quantum)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------- the dashboard


def _dashboard(*, search: str = "", matches: list | None = None, search_error: str | None = None,
               block: str | None = None, status: int = 200):
    return render("wallet/admin/dashboard.html", block, status=status, **_context(
        positions=queries.positions(), positions_seconds=queries.POSITIONS_SECONDS, verification=queries.last_verification(),
        pending_withdrawals=queries.pending_withdrawals(), system_wallets=list(SystemWallet),
        withdrawals_url=WITHDRAWALS_PATH, exchange_url=EXCHANGE_PATH, payments_url=PAYMENTS_PATH,
        refunds_url=REFUNDS_PATH, refund_requests=payment_queries.refund_requests_waiting(),
        search=search, matches=matches, search_error=search_error))


@bp.get("/admin")
@requires(Permission.MANAGE_MONEY)
def admin_dashboard():
    return _dashboard()


@bp.post("/admin/verify")
@requires(Permission.MANAGE_MONEY)
def admin_verify():
    recorded = services.verify_and_record(current_user.email)
    db.session.commit()
    if wants_fragment():
        return render("wallet/admin/dashboard.html", "verification", **_context(
            verification=queries.last_verification(), just_ran=True))
    if recorded.ok:
        flash("The ledger verifies: every balance is the replay of its transactions.", "success")
    else:
        flash(f"The ledger does not verify: {len(recorded.report.problems)} difference(s), listed below.", "error")
    return redirect_to("wallet.admin_dashboard")


@bp.get("/admin/users")
@requires(Permission.MANAGE_MONEY)
def admin_user_search():
    """Find a user by e-mail: one match goes straight to their wallets, several are listed."""
    email = request.args.get("email", "").strip()[:254]
    if not email:
        return _dashboard(search_error="Type an e-mail address, or its beginning.", block="search", status=422)
    matches = queries.find_users(email)
    if len(matches) == 1 and not wants_fragment():
        return redirect_to("wallet.admin_user", user_id=matches[0].id)
    error = None if matches else f"No account's e-mail starts with \u201c{email}\u201d."
    return _dashboard(search=email, matches=matches, search_error=error, block="search",
                      status=200 if matches else 404)


# ---------------------------------------------------------------- a user's wallets


def _user_or_404(user_id: uuid.UUID) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("That user does not exist.")
    return user


@bp.get("/admin/users/<uuid:user_id>")
@requires(Permission.MANAGE_MONEY)
def admin_user(user_id: uuid.UUID):
    user = _user_or_404(user_id)
    if wants_fragment() and request.args.get("part") == "changes":
        wallet_ids = [w.id for w in queries.user_wallets(user.id)]
        return render("wallet/admin/user.html", "changes", **_context(user=user,
                                                                       changes=queries.status_changes(wallet_ids)))
    page = queries.user_history(user.id, request.args.get("after"))
    if wants_fragment() and request.args.get("after"):
        return render("wallet/admin/user.html", "history_rows", **_context(user=user, page=page))
    wallets = queries.user_wallets(user.id)
    return render("wallet/admin/user.html", **_context(
        user=user, page=page, wallets=wallets, changes=queries.status_changes([w.id for w in wallets]),
        forms={w.id: _ids(StatusForm(formdata=None), f"w-{w.id.hex[:12]}") for w in wallets}))


@bp.post("/admin/wallets/<uuid:wallet_id>/status")
@requires(Permission.MANAGE_MONEY)
def admin_wallet_status(wallet_id: uuid.UUID):
    """Freeze or unfreeze: the card again (htmx) or back to the user's page; a refusal (no
    reason, already frozen, a system wallet) shows on the wallet's card."""
    form = StatusForm()
    action = request.form.get("action")
    if action not in ("freeze", "unfreeze"):
        raise DomainError("Choose to freeze or unfreeze the wallet.")
    frozen = action == "freeze"
    try:
        wallet = services.set_wallet_frozen(current_user, wallet_id, frozen, form.reason.data)
    except DomainError as exc:
        refusal(exc)
        with ledger.as_ledger():
            wallet = db.session.get(Wallet, wallet_id)
        if wallet is None or wallet.user_id is None:
            raise
        attach_error(_ids(form, f"w-{wallet.id.hex[:12]}"), exc)
        if wants_fragment():
            return render("wallet/admin/_wallet.html", status=exc.status_code, **_context(wallet=wallet, form=form))
        user = _user_or_404(wallet.user_id)
        wallets = queries.user_wallets(user.id)
        forms = {w.id: _ids(StatusForm(formdata=None), f"w-{w.id.hex[:12]}") for w in wallets}
        forms[wallet.id] = form
        return render("wallet/admin/user.html", status=exc.status_code, **_context(
            user=user, page=queries.user_history(user.id), wallets=wallets,
            changes=queries.status_changes([w.id for w in wallets]), forms=forms))
    db.session.commit()
    message = f"The {wallet.currency} wallet is {'frozen' if frozen else 'active again'}; its owner was told."
    if wants_fragment():
        return render("wallet/admin/_wallet.html", trigger="wallet-status-changed", **_context(
            wallet=wallet, form=_ids(StatusForm(formdata=None), f"w-{wallet.id.hex[:12]}"), message=message))
    flash(message, "success")
    return redirect_to("wallet.admin_user", user_id=wallet.user_id)


# ---------------------------------------------------------------- fee rules


def _examples(rule) -> list[tuple[str, str]]:
    """(amount, fee) for the rule's example amounts."""
    out = []
    for raw in EXAMPLE_AMOUNTS[rule.currency]:
        amount = Decimal(raw)
        out.append((money(amount, rule.currency), money(fees.compute(rule, amount, rule.currency), rule.currency)))
    return out


def _fees_page(*, new_form: NewFeeRuleForm | None = None, editing: uuid.UUID | None = None,
               edit_form: FeeFiguresForm | None = None, block: str | None = None, status: int = 200,
               notice: str | None = None):
    rules = fees.rules()
    return render("wallet/admin/fees.html", block, status=status, **_context(
        rules=rules, examples={r.id: _examples(r) for r in rules}, editing=editing, edit_form=edit_form,
        new_form=new_form or _ids(NewFeeRuleForm(formdata=None), "new"), notice=notice,
        preview=_preview_from(new_form) if new_form else None))


def _preview_from(form) -> dict | None:
    """What a rule typed into ``form`` would charge, or None while its figures are not valid."""
    data = getattr(form, "data", None) or {}
    kind = data.get("transaction_type") or TransactionType.TRANSFER.value
    try:
        rule = services.draft_fee_rule(kind, data.get("currency") or "USD", fixed=data.get("fixed_amount"),
                                       percent=data.get("percent"), minimum=data.get("minimum"),
                                       maximum=data.get("maximum"))
    except DomainError:
        return None
    return {"kind": rule.transaction_type.label.lower(), "examples": _examples(rule)}


@bp.route("/admin/fees", methods=["GET", "POST"])
@requires(Permission.MANAGE_MONEY)
def admin_fees():
    if request.method == "GET":
        return _fees_page()
    form = _ids(NewFeeRuleForm(), "new")
    try:
        rule = services.create_fee_rule(current_user, form.transaction_type.data, form.currency.data,
                                        **_figures(form))
    except DomainError as exc:
        attach_error(form, refusal(exc))
        return _fees_page(new_form=form, block="rules", status=422)
    db.session.commit()
    message = f"Fee rule for {rule.transaction_type.label.lower()}s in {rule.currency} created."
    if wants_fragment():
        return _fees_page(block="rules", notice=message)
    flash(message, "success")
    return redirect_to("wallet.admin_fees")


@bp.get("/admin/fees/preview")
@requires(Permission.MANAGE_MONEY)
def admin_fee_preview():
    """The live example beside the new-rule form (htmx, as the admin types)."""
    form = NewFeeRuleForm(formdata=request.args, meta={"csrf": False})
    if not wants_fragment():
        return redirect_to("wallet.admin_fees")
    return render("wallet/admin/fees.html", "preview", **_context(preview=_preview_from(form)))


def _rule_or_404(rule_id: uuid.UUID) -> TransactionFee:
    rule = db.session.get(TransactionFee, rule_id)
    if rule is None:
        raise NotFound("That fee rule does not exist.")
    return rule


@bp.route("/admin/fees/<uuid:rule_id>", methods=["GET", "POST"])
@requires(Permission.MANAGE_MONEY)
def admin_fee_edit(rule_id: uuid.UUID):
    """GET: the rule's row as a form (a fragment for htmx, the list with that row open without
    JavaScript). POST: save it. ``?cancel=1`` gives the row back as it is."""
    rule = _rule_or_404(rule_id)
    fragment = wants_fragment()
    if request.method == "GET":
        if request.args.get("cancel"):
            if fragment:
                return render("wallet/admin/_fee_row.html", **_context(rule=rule, examples=_examples(rule)))
            return redirect_to("wallet.admin_fees")
        form = _edit_form(rule)
        if fragment:
            return render("wallet/admin/_fee_row.html", **_context(rule=rule, form=form, editing=True))
        return _fees_page(editing=rule.id, edit_form=form)
    form = _edit_form(rule, formdata=request.form)
    try:
        rule = services.update_fee_rule(current_user, rule.id, **_figures(form))
    except DomainError as exc:
        attach_error(form, refusal(exc))
        rule = _rule_or_404(rule_id)
        if fragment:
            return render("wallet/admin/_fee_row.html", status=422, **_context(rule=rule, form=form, editing=True))
        return _fees_page(editing=rule.id, edit_form=form, status=422)
    db.session.commit()
    message = f"Fee rule for {rule.transaction_type.label.lower()}s in {rule.currency} saved."
    if fragment:
        return render("wallet/admin/_fee_row.html", trigger="fee-rules-changed",
                      **_context(rule=rule, examples=_examples(rule), saved=True))
    flash(message, "success")
    return redirect_to("wallet.admin_fees")


@bp.post("/admin/fees/<uuid:rule_id>/delete")
@requires(Permission.MANAGE_MONEY)
def admin_fee_delete(rule_id: uuid.UUID):
    rule = _rule_or_404(rule_id)
    label = f"{rule.transaction_type.label.lower()}s in {rule.currency}"
    services.delete_fee_rule(current_user, rule.id)
    db.session.commit()
    if wants_fragment():
        response = render("wallet/admin/fees.html", "deleted", **_context(label=label))
        response.headers["HX-Trigger"] = "fee-rules-changed"
        return response
    flash(f"Fee rule for {label} deleted: these movements are now free.", "success")
    return redirect_to("wallet.admin_fees")
