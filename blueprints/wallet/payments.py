"""Money from outside, the student's side: top up the wallet by card or mobile money, follow a
payment until it ends, the list of one's payments, saved payment methods, buying a paid course
(from the wallet or with a payment method), asking for a course refund, and receipts.

Thin views over ``portal.money.payments`` (``services`` writes, ``queries`` reads): read the
form, call the service, commit once.

- Every form that can charge carries an idempotency key made when the form is shown; the
  service makes one payment per (payer, key), so a double click, a second tab or a resubmit
  after the back button lands on the same payment.
- A payment by a new card or mobile money starts at the provider's hosted page: the portal
  never sees the card number. The view sends the payer there (an external redirect, only to an
  ``http(s)`` address) and the provider sends them back to ``/wallet/payments/return/<key>``:
  the return address is fixed before the payment exists, so it names the checkout form's key
  (random, and looked up among the payer's own payments only). Its query string (the provider's
  ``payment_ref``) is never believed: the service asks the provider itself.
- A payment's page polls its state fragment every 2 seconds while the payment is open; the
  answer ``286`` (htmx's "stop polling") ends it once the payment is final. Without JavaScript
  the page has a reload link.
- The course checkout lives here, not in the learning blueprint: it is a payment form (wallet
  balance, saved methods, a new card), one of the wallet's "payments" in DESIGN's map; the
  course page only links to it.
"""

from __future__ import annotations

import uuid

from flask import abort, current_app, flash, make_response, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import Length

from blueprints.wallet import bp
from blueprints.web import attach_error, is_htmx, redirect_to, refusal, render, wants_fragment
from portal.db import db
from portal.errors import DomainError
from portal.money.currency import CURRENCIES, format_amount
from portal.money.payments import pages, queries, receipt_pdf, services
from portal.money.payments.models import EventSource, PayWith, Purpose
from portal.money.payments.providers.base import PaymentState, ProviderError
from portal.money.payments.states import FINAL_PAYMENT_STATES
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission

#: What else on the page should refresh after money came in or went out.
MONEY_MOVED = "balance-changed, notifications-changed"
#: htmx stops polling when an answer has this status (and still swaps its content).
STOP_POLLING = 286
#: How the form names a new card and new mobile money; a saved method is ``method:<id>``.
NEW_CARD = PayWith.CARD.value
SAVED_PREFIX = "method:"


def _fmt(amount, code, **kwargs) -> str:
    return format_amount(amount, code, **kwargs)


class PayForm(FlaskForm):
    """How to pay: ``pay_with`` is ``card``, ``mobile_money``, ``method:<id>`` (a saved one) or
    ``wallet`` (course checkout only). The service checks everything; the form carries it."""

    class Meta:
        csrf = False  # CSRFProtect guards every POST of the app already

    pay_with = StringField("Pay with")
    save_method = BooleanField("Save it for later payments")
    idempotency_key = HiddenField()

    def choice(self) -> tuple[str, uuid.UUID | str | None]:
        """(method kind, saved method id) from ``pay_with``. A saved method's kind is its own;
        one that is not the user's gives an empty kind, which the service refuses."""
        raw = (self.pay_with.data or "").strip()[:60]
        if not raw.startswith(SAVED_PREFIX):
            return raw, None
        try:
            method = pages.method_for(current_user, raw[len(SAVED_PREFIX):])
        except DomainError:
            return "", None
        return method.kind.value, method.id

    def key(self) -> str:
        return (self.idempotency_key.data or "").strip()


class TopUpForm(PayForm):
    amount = StringField("Amount")
    currency = SelectField("Currency", validate_choice=False)


class RefundForm(FlaskForm):
    class Meta:
        csrf = False

    reason = TextAreaField("Why do you want a refund?", validators=[
        Length(max=services.MAX_REASON, message=f"At most {services.MAX_REASON} characters.")],
        render_kw={"rows": 3, "maxlength": services.MAX_REASON})


def _default_choice(methods) -> str:
    """The saved default method (when not expired), else a new card."""
    for method in methods:
        if method.is_default and not method.expired:
            return SAVED_PREFIX + str(method.id)
    return NEW_CARD


def _go_to_provider(url: str):
    """Send the payer to the provider's page. htmx cannot load another site into the body, so an
    htmx request gets ``HX-Redirect`` (a full navigation) instead of ``HX-Location``."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect_to(url=url)


def _with_trigger(response, payment):
    if payment.state == PaymentState.SUCCEEDED:
        response.headers["HX-Trigger"] = MONEY_MOVED
    return response


def _after_start(payment, course_message: str | None = None):
    """Where a started payment goes: the provider's page when the payer must act there, the
    course for a course bought at once, else the payment's own page."""
    if payment.state == PaymentState.REQUIRES_ACTION and pages.safe_external(payment.next_action_url):
        return _go_to_provider(payment.next_action_url)
    if payment.purpose == Purpose.COURSE_PURCHASE and payment.state == PaymentState.SUCCEEDED:
        return _to_course(payment, course_message)
    return _with_trigger(redirect_to("wallet.payment", payment_id=payment.id), payment)


def _to_course(payment, message: str | None = None):
    view = pages.payment_view(current_user, payment.id)
    flash(message or f"Payment received: you are enrolled in {view.course.title}. Enjoy the course!", "success")
    return _with_trigger(redirect_to("learning.course", slug=view.course.slug), payment)


def _return_url(key: str) -> str:
    """The absolute address the provider sends the payer back to."""
    path = url_for("wallet.payment_return", key=key)
    base = current_app.config.get("BASE_URL")
    return base.rstrip("/") + path if base else url_for("wallet.payment_return", key=key, _external=True)


def _pay(form: PayForm, start, *, course_message: str | None = None):
    """Run ``start`` (a service call that makes or finds the payment for the form's key) and
    answer: the provider's page, the payment or the course; or None and the form's errors.

    - A key already used for a payment the provider never answered about is tried again at the
      provider (the same provider key: never two charges).
    - No answer from the provider: the payment is kept (committed) for the reconciliation job,
      and the form says so, with its values and key, so sending it again resumes that payment.
    - A declined saved method: the failed payment is kept on record, the form shows why and
      gets a fresh key for the next attempt.
    """
    key = form.key()
    try:
        earlier = pages.payment_by_key(current_user, key) if key else None
    except DomainError:
        earlier = None
    try:
        # The service checks a reused key's details against its payment first (a different
        # amount is refused), then returns that payment without asking the provider again.
        payment = start(key)
        if (earlier is not None and payment.id == earlier.id and payment.needs_reconcile
                and payment.provider_ref is None):
            payment = services.resume_payment(current_user, payment, source=EventSource.PORTAL)
    except services.PaymentDeclined as exc:
        db.session.commit()
        form.idempotency_key.data = ledger.new_key()
        form.form_errors.append(exc.message)
        return None, 422
    except services.PayerBlocked as exc:
        # Said beside the form (not as an error page), so the payer reads why and keeps the page.
        db.session.rollback()
        form.form_errors.append(exc.message)
        return None, 403
    except services.IdempotencyMismatch as exc:
        db.session.rollback()
        form.idempotency_key.data = ledger.new_key()
        form.form_errors.append(exc.message)
        return None, 409
    except DomainError as exc:
        exc = refusal(exc)
        if exc.field == "method":
            form.pay_with.errors = [exc.message]
        else:
            attach_error(form, exc)
        return None, exc.status_code if exc.status_code in (402, 409, 422, 503) else 422
    except ProviderError:
        # No adapter could even be reached (not configured, or down before the payment was
        # kept): nothing was made or charged. The details are for the logs, not the payer.
        db.session.rollback()
        current_app.logger.exception("Payment provider unavailable before the payment was kept")
        form.form_errors.append("The payment service cannot be reached right now. Nothing was charged: "
                                "send the form again in a moment.")
        return None, 503
    db.session.commit()
    try:
        services.raise_if_unreachable(payment)
    except services.ProviderDown as exc:
        form.form_errors.append(exc.message)
        return None, 503
    return _after_start(payment, course_message), 200


# ---------------------------------------------------------------------------------- top-up


def _top_up_page(form: TopUpForm, *, status: int = 200):
    if not form.idempotency_key.data:
        form.idempotency_key.data = ledger.new_key()
    facts = queries.top_up_form(current_user)
    methods = [pages.saved(method) for method in facts.methods]
    if not form.pay_with.data:
        form.pay_with.data = _default_choice(methods)
    limits = {limit.currency: (limit.minimum, limit.maximum) for limit in facts.limits}
    form.currency.choices = [(code, f"{code} · {CURRENCIES[code].name}") for code in limits]
    low_high = limits.get(form.currency.data)
    hint = (f"From {_fmt(low_high[0], form.currency.data)} to {_fmt(low_high[1], form.currency.data)} today."
            if low_high else None)
    return render("wallet/payments/top_up.html", "panel", status=status, form=form, methods=methods,
                  limits=limits, amount_hint=hint, fmt=_fmt)


@bp.get("/top-up")
@requires(Permission.USE_WALLET)
def top_up():
    form = TopUpForm(formdata=None)
    codes = queries.top_up_currencies()
    wanted = (request.args.get("currency") or "").upper()
    form.currency.data = wanted if wanted in codes else ("USD" if "USD" in codes else next(iter(codes), ""))
    return _top_up_page(form)


@bp.post("/top-up")
@requires(Permission.USE_WALLET)
def top_up_post():
    form = TopUpForm()
    form.amount.data = (form.amount.data or "").strip()[:60]
    form.currency.data = (form.currency.data or "").strip()[:10]
    kind, method_id = form.choice()

    def start(key):
        return services.start_top_up(current_user, form.amount.data, form.currency.data, kind, idempotency_key=key,
                                     return_url=_return_url(key), saved_method_id=method_id,
                                     save_method=bool(form.save_method.data))

    response, status = _pay(form, start)
    return response if response is not None else _top_up_page(form, status=status)


# ---------------------------------------------------------------------------------- one payment


@bp.get("/payments/return/<key>")
@requires(Permission.USE_WALLET)
def payment_return(key: str):
    """The payer is back from the provider. The provider's ``payment_ref`` in the query is
    ignored: the service asks the provider about the payment the portal has on record. This GET
    only brings the portal's copy up to date with the provider's (what a webhook or the
    reconciliation job would do, applied once), so reloading it changes nothing more."""
    payment = pages.payment_by_key(current_user, key)
    try:
        payment = services.resume_payment(current_user, payment, source=EventSource.RETURN)
    except (DomainError, ProviderError) as exc:
        if isinstance(exc, DomainError):
            refusal(exc)
        else:
            db.session.rollback()
        flash("The payment service has not confirmed your payment yet: this page shows it as soon as it does.",
              "info")
        return redirect_to("wallet.payment", payment_id=payment.id)
    db.session.commit()
    if payment.purpose == Purpose.COURSE_PURCHASE and payment.state == PaymentState.SUCCEEDED:
        return _to_course(payment)
    return _with_trigger(redirect_to("wallet.payment", payment_id=payment.id), payment)


def _payment_context(payment_id: uuid.UUID) -> dict:
    view = pages.payment_view(current_user, payment_id)
    return {"view": view, "payment": view.payment, "final": view.payment.state in FINAL_PAYMENT_STATES,
            "fmt": _fmt}


@bp.get("/payments/<uuid:payment_id>")
@requires(Permission.USE_WALLET)
def payment(payment_id: uuid.UUID):
    """The payment's page. An htmx request (the 2-second poll) gets the state fragment, with
    ``286`` once the payment is final so the polling stops, and a succeeded one tells the
    balance and the notification count to refresh."""
    context = _payment_context(payment_id)
    if not wants_fragment():
        return render("wallet/payments/payment.html", **context)
    final = context["final"]
    succeeded = context["payment"].state == PaymentState.SUCCEEDED
    return render("wallet/payments/payment.html", "state", status=STOP_POLLING if final else 200,
                  trigger=MONEY_MOVED if succeeded else None, **context)


@bp.post("/payments/<uuid:payment_id>/cancel")
@requires(Permission.USE_WALLET)
def cancel_payment(payment_id: uuid.UUID):
    """Cancel a payment the payer has not paid yet (waiting on the provider's page): with htmx
    the state fragment is swapped, without it the payment's page is loaded again."""
    error = None
    try:
        services.cancel_payment(current_user, pages.own_payment(current_user, payment_id))
    except DomainError as exc:
        error = refusal(exc)
    else:
        db.session.commit()
    if wants_fragment():
        return render("wallet/payments/payment.html", "state", status=error.status_code if error else 200,
                      cancel_error=error.message if error else None, **_payment_context(payment_id))
    flash(error.message if error else "Payment canceled. Nothing was taken.", "error" if error else "success")
    return redirect_to("wallet.payment", payment_id=payment_id)


@bp.get("/payments")
@requires(Permission.USE_WALLET)
def payments():
    raw_state = request.args.get("state", "")
    state = PaymentState(raw_state) if raw_state in PaymentState._value2member_map_ else None
    page = pages.payments_of(current_user, state=state, cursor=request.args.get("after"))
    block = None
    if wants_fragment():
        block = "rows" if request.args.get("after") and request.headers.get("HX-Target") != "results" else "results"
    return render("wallet/payments/list.html", block, page=page, current=state.value if state else "",
                  paged=bool(request.args.get("after")), fmt=_fmt)


# ---------------------------------------------------------------------------------- receipts


def _receipt_context(payment_id: uuid.UUID) -> dict:
    context = _payment_context(payment_id)
    if context["payment"].state != PaymentState.SUCCEEDED:
        abort(404)
    context["lines"] = services.receipt_lines(context["payment"], context["view"].course)
    return context


@bp.get("/payments/<uuid:payment_id>/receipt")
@requires(Permission.USE_WALLET)
def payment_receipt(payment_id: uuid.UUID):
    return render("wallet/payments/receipt.html", **_receipt_context(payment_id))


@bp.get("/payments/<uuid:payment_id>/receipt.pdf")
@requires(Permission.USE_WALLET)
def payment_receipt_pdf(payment_id: uuid.UUID):
    context = _receipt_context(payment_id)
    payment = context["payment"]
    pdf = receipt_pdf.receipt_pdf(current_user, payment)
    response = make_response(pdf)
    response.headers["Content-Type"] = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="azora-receipt-{str(payment.id)[:8]}.pdf"'
    return response


# ---------------------------------------------------------------------------------- refunds


def _refund_page(payment_id: uuid.UUID, form: RefundForm, *, status: int = 200):
    context = _payment_context(payment_id)
    if context["payment"].purpose != Purpose.COURSE_PURCHASE:
        abort(404)
    return render("wallet/payments/refund.html", "panel", status=status, form=form, **context)


@bp.route("/payments/<uuid:payment_id>/refund", methods=["GET", "POST"])
@requires(Permission.USE_WALLET)
def request_refund(payment_id: uuid.UUID):
    """A refund of a bought course: approved at once when the course refund rule holds (money
    returned, the student leaves the course), otherwise queued for finance; the payment's page
    follows it."""
    form = RefundForm()
    if request.method == "GET":
        return _refund_page(payment_id, form)
    if not form.validate():
        return _refund_page(payment_id, form, status=422)
    try:
        payment = pages.own_payment(current_user, payment_id)
        refund = services.request_course_refund(current_user, payment, form.reason.data)
    except DomainError as exc:
        attach_error(form, refusal(exc))
        return _refund_page(payment_id, form, status=exc.status_code if exc.status_code in (409, 422) else 422)
    db.session.commit()
    amount = _fmt(refund.amount, refund.currency)
    if refund.automatic:
        flash(f"Refund approved: {amount} is on its way back and you left the course.", "success")
    else:
        flash(f"Refund of {amount} requested. Finance will decide and you will be notified.", "info")
    response = redirect_to("wallet.payment", payment_id=payment_id)
    response.headers["HX-Trigger"] = MONEY_MOVED
    return response


# ---------------------------------------------------------------------------------- saved methods


def _methods_page(*, status: int = 200, error: str | None = None, notice: str | None = None,
                  trigger: str | None = None):
    return render("wallet/payments/methods.html", "methods", status=status, trigger=trigger,
                  methods=pages.methods_of(current_user), error=error, notice=notice)


@bp.get("/payment-methods")
@requires(Permission.USE_WALLET)
def payment_methods():
    return _methods_page()


def _method_action(method_id: uuid.UUID, action, done: str):
    try:
        action(current_user, method_id)
    except DomainError as exc:
        refusal(exc)
        if wants_fragment():
            return _methods_page(status=exc.status_code, error=exc.message)
        flash(exc.message, "error")
        return redirect_to("wallet.payment_methods")
    db.session.commit()
    if wants_fragment():
        return _methods_page(notice=done, trigger="payment-methods-changed")
    flash(done, "success")
    return redirect_to("wallet.payment_methods")


@bp.post("/payment-methods/<uuid:method_id>/default")
@requires(Permission.USE_WALLET)
def default_payment_method(method_id: uuid.UUID):
    return _method_action(method_id, services.set_default_method, "Default payment method changed.")


@bp.route("/payment-methods/<uuid:method_id>/remove", methods=["GET", "POST"])
@requires(Permission.USE_WALLET)
def remove_payment_method(method_id: uuid.UUID):
    """GET: the confirmation page (without JavaScript; with it, ``hx-confirm`` asks). POST: remove
    the method here and at the provider; payments made with it keep their receipt details."""
    if request.method == "GET":
        return render("wallet/payments/remove_method.html", method=pages.method_for(current_user, method_id))
    return _method_action(method_id, services.remove_method, "Payment method removed.")


# ---------------------------------------------------------------------------------- course checkout


def _checkout_page(course_id: uuid.UUID, form: PayForm, *, status: int = 200):
    if not form.idempotency_key.data:
        form.idempotency_key.data = ledger.new_key()
    offer = pages.checkout(current_user, course_id)
    if not form.pay_with.data:
        form.pay_with.data = PayWith.WALLET.value if offer.wallet_covers else _default_choice(offer.methods)
    return render("wallet/payments/checkout.html", "panel", status=status, form=form, offer=offer,
                  course=offer.course, fmt=_fmt)


@bp.get("/courses/<uuid:course_id>/buy")
@requires(Permission.USE_WALLET)
def buy_course(course_id: uuid.UUID):
    return _checkout_page(course_id, PayForm(formdata=None))


@bp.post("/courses/<uuid:course_id>/buy")
@requires(Permission.USE_WALLET)
def buy_course_post(course_id: uuid.UUID):
    form = PayForm()
    offer = pages.checkout(current_user, course_id)
    from_wallet = (form.pay_with.data or "").strip() == PayWith.WALLET.value
    kind, method_id = (None, None) if from_wallet else form.choice()

    def start(key):
        return services.pay_course(current_user, offer.course, idempotency_key=key, from_wallet=from_wallet,
                                   method_kind=kind, saved_method_id=method_id,
                                   save_method=bool(form.save_method.data), return_url=_return_url(key))

    welcome = (f"Welcome back to {offer.course.title}: you are enrolled again, at no charge."
               if offer.owned is not None else None)
    response, status = _pay(form, start, course_message=welcome)
    return response if response is not None else _checkout_page(course_id, form, status=status)
