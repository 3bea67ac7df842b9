"""Sending money to another student, in three steps that each work without JavaScript:

1. ``GET /wallet/send``: the form, with a fresh idempotency key. With htmx, typing posts the
   form to ``/wallet/send/preview`` (after a short pause) and the summary beside it shows the
   recipient, fee, total and any problem; without it, the same preview is a full page.
2. ``POST /wallet/send`` (Review): the confirmation page with fee and total, carrying the same
   fields and key as hidden inputs and a hidden ``confirmed`` step.
3. ``POST /wallet/send`` with ``confirmed``: the service recomputes everything, sends once per
   key (a double submit shows the first receipt) and the receipt page answers with
   ``HX-Trigger: balance-changed``.

Nothing in the hidden fields is trusted: the fee carried from the confirmation page is only
compared with the fee the rule gives now, so a changed rule stops the transfer instead of
charging a fee nobody saw.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from flask import request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from blueprints.wallet import bp
from blueprints.web import attach_error, refusal, render
from portal.db import db
from portal.errors import DomainError
from portal.money.currency import CURRENCIES
from portal.money.wallets import ledger, queries, services
from portal.platform.notifications.services import remember_unread_count, unread_count
from portal.security.access import requires
from portal.security.permissions import Permission

FORM_FIELDS = ("recipient", "amount", "currency", "note")


class TransferForm(FlaskForm):
    """The transfer's fields. The service validates them (its messages are attached to the
    fields); the form only carries and redisplays them."""

    class Meta:
        csrf = False  # CSRFProtect guards every POST of the app already

    recipient = StringField("Recipient's e-mail")
    amount = StringField("Amount")
    currency = SelectField("Currency", choices=[SelectChoice(code, f"{code} · {unit.name}") for code, unit in CURRENCIES.items()],
                           validate_choice=False)
    note = StringField("Note")
    idempotency_key = HiddenField()


def _form() -> TransferForm:
    form = TransferForm()
    for name in FORM_FIELDS:
        value = getattr(form, name).data
        getattr(form, name).data = (value or "").strip()[:1000]
    if not form.idempotency_key.data:
        form.idempotency_key.data = ledger.new_key()
    return form


def _context(**extra):
    return {"show": queries.show_amount, "currencies": CURRENCIES, "max_note": services.MAX_NOTE, **extra}


def _send_page(form: TransferForm, preview: services.TransferPreview | None, *, status: int = 200,
               block: str | None = None, balances: list[queries.Balance] | None = None):
    if preview is not None:
        for problem in preview.errors:
            if problem.field in FORM_FIELDS:
                attach_error(form, DomainError(problem.message, field=problem.field))
    return render("wallet/transfers/send.html", block, status=status,
                  **_context(form=form, preview=preview, balances=balances or queries.overview(current_user)))


def _preview(form: TransferForm) -> services.TransferPreview:
    return services.preview_transfer(current_user, form.recipient.data, form.amount.data, form.currency.data)


def _commit_for_receipt(unread: int) -> None:
    """Commit the transfer, keeping loaded what the receipt page reads: the signed-in user (the
    page's header) and their ``unread`` count (the bell; the transfer notified the recipient, not
    them). The page so sends no statement after the commit: no new transaction, no identity
    statement, no reload of the user."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    remember_unread_count(current_user.id, unread)


def _default_currency(balances: list[queries.Balance]) -> str:
    """The first currency the student has money in, else the first one."""
    for balance in balances:
        if balance.available > 0:
            return balance.code
    return next(iter(CURRENCIES))


@bp.get("/send")
@requires(Permission.USE_WALLET)
def send():
    balances = queries.overview(current_user)
    form = TransferForm(formdata=None)
    form.currency.data = _default_currency(balances)
    form.idempotency_key.data = ledger.new_key()
    return _send_page(form, None, balances=balances)


@bp.post("/send/preview")
@requires(Permission.USE_WALLET)
def send_preview():
    """The live summary (htmx: the ``preview`` block only) or, without JavaScript, the form
    again with the summary filled in."""
    form = _form()
    preview = _preview(form)
    return _send_page(form, preview, block="preview")


@bp.post("/send")
@requires(Permission.USE_WALLET)
def send_post():
    form = _form()
    if request.form.get("confirmed") != "1":
        preview = _preview(form)
        if not preview.ok:
            return _send_page(form, preview, status=422)
        return render("wallet/transfers/confirm.html", **_context(form=form, preview=preview))
    # The bell's count, known from the session lookup, taken before the service's savepoint
    # (whose release empties the request's cache) for the receipt after the commit.
    unread = unread_count(current_user.id)
    try:
        receipt, replayed = services.send_money(current_user, form.recipient.data, form.amount.data,
                                                form.currency.data, form.note.data, form.idempotency_key.data,
                                                expected_fee=request.form.get("fee"))
    except ledger.IdempotencyMismatch as exc:
        db.session.rollback()
        form.idempotency_key.data = ledger.new_key()
        form.form_errors.append(exc.message)
        return _send_page(form, _preview(form), status=409)
    except DomainError as exc:
        refusal(exc)
        preview = _preview(form)
        if exc.field not in FORM_FIELDS or not any(p.message == exc.message for p in preview.errors):
            form.form_errors.append(exc.message)
        return _send_page(form, preview, status=exc.status_code if exc.status_code >= 400 else 422)
    _commit_for_receipt(unread)
    shown = dict(receipt)
    for name in ("amount", "fee", "total"):
        shown[name] = Decimal(shown[name])
    return render("wallet/transfers/receipt.html", trigger="balance-changed",
                  **_context(receipt=shown, replayed=replayed, sent_at=datetime.fromisoformat(receipt["created_at"])))
