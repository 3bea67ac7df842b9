"""Exchange: converting between currencies (students) and currency pairs and rates (admins).

Students: ``/wallet/convert`` takes a from/to currency and an amount and makes a quote
(``POST``), shown at ``/wallet/convert/<id>`` with its countdown; accepting posts the stored quote
through the ledger. Every pair's rate history has a chart at ``/wallet/rates/<pair id>``.

Admins: ``/wallet/admin/exchange`` lists the pairs with their current rate and takes new pairs,
manual rates, CSV files and "fetch now"; each pair's history is at
``/wallet/admin/exchange/pairs/<pair id>``.

With htmx the admin forms swap the workspace and the row actions swap their row; without
JavaScript every form posts and redirects back (or shows the page again with its errors).
The quote form is a plain post (``hx-boost="false"``): the quote page it leads to loads
``static/js/countdown.js``, which htmx would not run inside a swapped body.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from flask import current_app, flash, request
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import DateTimeLocalField, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from blueprints.wallet import bp
from blueprints.web import attach_error, is_htmx, redirect_to, render, wants_fragment
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, NotFound
from portal.money.currency import CURRENCIES, format_amount
from portal.money.exchange import queries
from portal.money.exchange import services as service
from portal.money.exchange.models import ConversionStatus, ExchangeRate, RateSource
from portal.money.exchange.sources import SourceError
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission

CURRENCY_CHOICES = [SelectChoice(code, f"{code} · {unit.name}") for code, unit in CURRENCIES.items()]
SOURCE_LABELS = {RateSource.HTTP: "HTTP feed", RateSource.CSV: "CSV import", RateSource.MANUAL: "Manual"}


# ---------------------------------------------------------------------------------- forms


class ConvertForm(FlaskForm):
    # Choices are checked by the service, whose messages name what is allowed.
    from_currency = SelectField("From", choices=CURRENCY_CHOICES, validate_choice=False)
    to_currency = SelectField("To", choices=CURRENCY_CHOICES, validate_choice=False, default="USD")
    amount = StringField("Amount to convert", render_kw={"inputmode": "decimal", "autocomplete": "off",
                                                          "maxlength": 60})


class AcceptForm(FlaskForm):
    idempotency_key = HiddenField()


class PairForm(FlaskForm):
    base_currency = SelectField("Base currency", choices=CURRENCY_CHOICES, validate_choice=False)
    quote_currency = SelectField("Quote currency", choices=CURRENCY_CHOICES, validate_choice=False, default="USD")


class ManualRateForm(FlaskForm):
    pair = SelectField("Pair", choices=[], validate_choice=False)
    rate = StringField("Rate (units of quote per 1 base)", render_kw={"inputmode": "decimal", "autocomplete": "off",
                                                                      "maxlength": 60})
    observed_at = DateTimeLocalField("Observed at (UTC, empty: now)", format="%Y-%m-%dT%H:%M",
                                     validators=[Optional()])
    note = StringField("Note (optional)", render_kw={"maxlength": service.MAX_NOTE})


class ImportForm(FlaskForm):
    file = FileField("CSV file", render_kw={"accept": ".csv,text/csv"})


class ActionForm(FlaskForm):
    """Forms with no fields but the CSRF token (fetch now, activate, deactivate)."""


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def _csrf_ok(form: FlaskForm) -> bool:
    """Validate ``form``; False when it fails (the CSRF token included)."""
    return form.validate_on_submit()


def _csrf_failed(form: FlaskForm) -> bool:
    """Validate ``form`` and say whether its CSRF token (when CSRF is on) was refused."""
    form.validate_on_submit()
    return "csrf_token" in form.errors


# ---------------------------------------------------------------------------------- template helpers


def _rate_text(value) -> str:
    """A rate in full, without trailing zeros (``12.500000000000000000`` -> ``12.5``)."""
    return f"{value.normalize():f}" if value is not None else ""


def _money(amount, code: str, exact: bool = False) -> str:
    return format_amount(Decimal(amount), code, exact=exact)


def _utc(value: datetime | None, fmt: str = "%d %b %Y %H:%M:%S UTC") -> str:
    return value.astimezone(UTC).strftime(fmt) if value else ""


def _common() -> dict:
    """Helpers and settings every exchange template uses (passed in, not registered as global
    filters, so no other part of the app is affected)."""
    return {"source_labels": SOURCE_LABELS, "money": _money, "rate_text": _rate_text, "utc": _utc,
            "short_rate": queries.short_rate, "inverse_of": service.inverse, "now": utcnow(),
            "max_age": service.describe_age(current_app.config["EXCHANGE_RATE_MAX_AGE_SECONDS"])}


# ---------------------------------------------------------------------------------- students: convert


def _convert_page(form: ConvertForm, *, status: int = 200, block: str | None = None):
    wallets, page = queries.convert_page(current_user.id,
                                         request.args.get("after") if request.method == "GET" else None)
    return render("wallet/exchange/convert.html", block, status=status, form=form, page=page,
                  pairs=queries.pair_statuses(active_only=True), wallets=wallets, currencies=CURRENCIES,
                  **_common())


@bp.get("/convert")
@requires(Permission.USE_WALLET)
def convert():
    form = ConvertForm(formdata=None)
    # A link may preselect the currencies (a pair's "convert" link); nothing is written on GET.
    for name in ("from_currency", "to_currency"):
        code = (request.args.get(name) or "").upper()
        if code in CURRENCIES:
            getattr(form, name).data = code
    if is_htmx() and request.args.get("after"):
        return _convert_page(form, block="conversion_rows")
    return _convert_page(form)


@bp.post("/convert")
@requires(Permission.USE_WALLET)
def create_quote():
    form = ConvertForm()
    if _csrf_ok(form):
        try:
            conversion = service.quote(current_user, form.from_currency.data, form.to_currency.data,
                                       form.amount.data)
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            return _convert_page(form, status=exc.status_code, block="convert_form")
        db.session.commit()
        return redirect_to("wallet.conversion", conversion_id=conversion.id)
    form.form_errors.append("The form expired: reload the page and try again.")
    return _convert_page(form, status=400, block="convert_form")


def _quote_page(conversion, *, status: int = 200, error: str | None = None, block: str | None = None):
    now = utcnow()
    expired = service.is_expired(conversion, now)
    rate_row = db.session.get(ExchangeRate, conversion.rate_id) if conversion.rate_id else None
    seconds_left = max(int((conversion.expires_at - now).total_seconds()), 0)
    again = ConvertForm(formdata=None, from_currency=conversion.from_currency, to_currency=conversion.to_currency,
                        amount=str(conversion.from_amount))
    return render("wallet/exchange/quote.html", block, status=status, conversion=conversion, rate_row=rate_row,
                  expired=expired, seconds_left=seconds_left, error=error, again=again,
                  form=AcceptForm(formdata=None, idempotency_key=ledger.new_key()),
                  inverse=service.inverse(conversion.rate), total=conversion.from_amount + conversion.fee_amount,
                  completed=conversion.status == ConversionStatus.COMPLETED, **_common())


@bp.get("/convert/<uuid:conversion_id>")
@requires(Permission.USE_WALLET)
def conversion(conversion_id: uuid.UUID):
    return _quote_page(service.conversion_of(current_user, conversion_id), block="quote")


@bp.post("/convert/<uuid:conversion_id>/accept")
@requires(Permission.USE_WALLET)
def accept_conversion(conversion_id: uuid.UUID):
    form = AcceptForm()
    if not _csrf_ok(form):
        return _quote_page(service.conversion_of(current_user, conversion_id), status=400, block="quote",
                           error="This form is out of date: reload the page and try again.")
    try:
        done, replayed = service.accept(current_user, conversion_id, form.idempotency_key.data)
    except service.QuoteExpired as exc:
        db.session.commit()  # keep the quote marked expired; nothing else was changed
        return _quote_page(exc.conversion, status=exc.status_code, error=exc.message, block="quote")
    except NotFound:
        raise
    except DomainError as exc:
        db.session.rollback()
        return _quote_page(service.conversion_of(current_user, conversion_id), status=exc.status_code,
                           error=exc.message, block="quote")
    db.session.commit()
    if replayed:
        flash("This conversion was already completed; it was made once and nothing more was moved.", "info")
    else:
        flash(f"Converted {format_amount(done.from_amount, done.from_currency)} into "
              f"{format_amount(done.to_amount, done.to_currency)}.", "success")
    response = redirect_to("wallet.conversion", conversion_id=done.id)
    if not replayed:
        response.headers["HX-Trigger"] = "balance-changed"
    return response


# ---------------------------------------------------------------------------------- rate history


def _history(pair_id: uuid.UUID, *, admin: bool):
    pair = service.get_pair(pair_id)
    after = request.args.get("after")
    page = queries.rate_page(pair.id, after)
    if after and wants_fragment():
        return render("wallet/exchange/history.html", "rate_rows", page=page, pair=pair, admin=admin,
                      **_common())
    chart = queries.build_chart(queries.chart_rows(pair.id))
    return render("wallet/exchange/history.html", "history", pair=pair, page=page, chart=chart, admin=admin,
                  current=queries.pair_status(pair), **_common())


@bp.get("/rates/<uuid:pair_id>")
@requires(Permission.USE_WALLET)
def rate_history(pair_id: uuid.UUID):
    return _history(pair_id, admin=False)


@bp.get("/admin/exchange/pairs/<uuid:pair_id>")
@requires(Permission.MANAGE_MONEY)
def exchange_pair_history(pair_id: uuid.UUID):
    return _history(pair_id, admin=True)


# ---------------------------------------------------------------------------------- admins


def _admin_page(*, status: int = 200, block: str | None = None, message: str | None = None,
                message_kind: str = "success", pair_form: PairForm | None = None,
                rate_form: ManualRateForm | None = None, import_form: ImportForm | None = None,
                import_errors: service.CsvRejected | None = None, fetch_error: str | None = None):
    statuses = queries.pair_statuses()
    rate_form = rate_form or ManualRateForm(formdata=None)
    rate_form.pair.choices = [SelectChoice("", "Choose a pair")] + [
        SelectChoice(str(s.pair.id), s.pair.symbol + ("" if s.pair.active else " (inactive)")) for s in statuses]
    url = current_app.config.get("EXCHANGE_RATE_URL") or ""
    return render("wallet/exchange/admin.html", block, status=status, statuses=statuses, message=message,
                  message_kind=message_kind, pair_form=pair_form or PairForm(formdata=None), rate_form=rate_form,
                  import_form=import_form or ImportForm(formdata=None), import_errors=import_errors,
                  fetch_form=ActionForm(formdata=None), fetch_error=fetch_error,
                  source_host=url.split("//", 1)[-1].split("/", 1)[0] if url else "",
                  timeout=current_app.config["EXCHANGE_RATE_TIMEOUT_SECONDS"],
                  quote_seconds=current_app.config["EXCHANGE_QUOTE_SECONDS"], csv_columns=service.CSV_COLUMNS,
                  max_csv_kb=service.MAX_CSV_BYTES // 1024, max_csv_rows=service.MAX_CSV_ROWS, **_common())


def _admin_done(message: str):
    """After a successful admin write: the workspace (htmx) or back to the page."""
    db.session.commit()
    if wants_fragment():
        return _admin_page(block="workspace", message=message)
    flash(message, "success")
    return redirect_to("wallet.exchange_admin")


def _admin_refused(message: str, status: int = 422, **forms):
    return _admin_page(status=status, block="workspace", message=message, message_kind="error", **forms)


@bp.get("/admin/exchange")
@requires(Permission.MANAGE_MONEY)
def exchange_admin():
    return _admin_page(block="workspace")


@bp.post("/admin/exchange/pairs")
@requires(Permission.MANAGE_MONEY)
def exchange_add_pair():
    form = PairForm()
    if not _csrf_ok(form):
        return _admin_refused("The form expired: reload the page and try again.", 400, pair_form=form)
    try:
        pair = service.add_pair(current_user, form.base_currency.data, form.quote_currency.data)
    except DomainError as exc:
        db.session.rollback()
        attach_error(form, exc)
        return _admin_page(status=exc.status_code, block="workspace", pair_form=form)
    return _admin_done(f"{pair.symbol} added and active. It quotes once it has a fresh rate.")


@bp.post("/admin/exchange/pairs/<uuid:pair_id>/active")
@requires(Permission.MANAGE_MONEY)
def exchange_pair_active(pair_id: uuid.UUID):
    form = ActionForm()
    active = request.form.get("active") == "1"
    error = None
    try:
        if not _csrf_ok(form):
            raise DomainError("The form expired: reload the page and try again.")
        pair = service.set_pair_active(current_user, pair_id, active)
    except NotFound:
        raise
    except DomainError as exc:
        db.session.rollback()
        error = exc.message
    else:
        db.session.commit()
    if wants_fragment():
        status_ = queries.pair_status(service.get_pair(pair_id))
        return render("wallet/exchange/_pair_row.html", status=422 if error else 200, row=status_, error=error,
                      **_common())
    if error:
        flash(error, "error")
    else:
        flash(f"{pair.symbol} is {'active: it quotes again' if active else 'inactive: no new quotes'}.", "success")
    return redirect_to("wallet.exchange_admin")


@bp.post("/admin/exchange/rates")
@requires(Permission.MANAGE_MONEY)
def exchange_manual_rate():
    form = ManualRateForm()
    if _csrf_failed(form):
        return _admin_refused("The form expired: reload the page and try again.", 400, rate_form=form)
    if form.observed_at.errors:
        return _admin_page(status=422, block="workspace", rate_form=form)
    observed = form.observed_at.data.replace(tzinfo=UTC) if form.observed_at.data else None
    try:
        row = service.record_manual_rate(current_user, _uuid(form.pair.data), form.rate.data,
                                         observed_at=observed, note=form.note.data or "")
    except DomainError as exc:
        db.session.rollback()
        attach_error(form, exc)
        return _admin_page(status=exc.status_code, block="workspace", rate_form=form)
    pair = service.get_pair(row.pair_id)
    return _admin_done(f"Rate {row.rate.normalize():f} recorded for {pair.symbol}.")


@bp.post("/admin/exchange/import")
@requires(Permission.MANAGE_MONEY)
def exchange_import():
    form = ImportForm()
    if _csrf_failed(form):
        return _admin_refused("The form expired: reload the page and try again.", 400, import_form=form)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        form.file.errors = ["Choose a CSV file to import."]
        return _admin_page(status=422, block="workspace", import_form=form)
    data = upload.stream.read(service.MAX_CSV_BYTES + 1)
    try:
        result = service.import_csv(current_user, upload.filename, data)
    except service.CsvRejected as exc:
        db.session.rollback()
        return _admin_page(status=422, block="workspace", import_form=form, import_errors=exc)
    except DomainError as exc:
        db.session.rollback()
        return _admin_refused(exc.message, exc.status_code, import_form=form)
    summary = ", ".join(f"{symbol}: {count}" for symbol, count in sorted(result.pairs.items()))
    return _admin_done(f"Imported {result.imported} rate{'s' if result.imported != 1 else ''} ({summary}).")


@bp.post("/admin/exchange/fetch")
@requires(Permission.MANAGE_MONEY)
def exchange_fetch():
    form = ActionForm()
    if not _csrf_ok(form):
        return _admin_refused("The form expired: reload the page and try again.", 400)
    try:
        result = service.refresh_from_http(current_user)
    except SourceError as exc:
        db.session.rollback()
        return _admin_page(status=exc.status_code, block="workspace", fetch_error=exc.message)
    except DomainError as exc:
        db.session.rollback()
        return _admin_page(status=exc.status_code, block="workspace", fetch_error=exc.message)
    parts = [f"Fetched {result.imported} new rate{'s' if result.imported != 1 else ''}"]
    if result.skipped:
        parts.append(f"{result.skipped} already known or for pairs not offered")
    if result.not_offered:
        parts.append(f"not offered here: {', '.join(result.not_offered[:10])}")
    return _admin_done("; ".join(parts) + ".")

