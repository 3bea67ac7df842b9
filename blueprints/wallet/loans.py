"""The student's "Loans" pages: what they could borrow and why (the assessment's lines), the
offer before applying (rate, fee, schedule, total cost, APR), their loans with the schedule
(paid, due, overdue), repaying (an instalment, early payoff or a part) after a confirmation page,
the auto-repay switch, collateral with its loan-to-value and margin-call notice, and taking an
application back or accepting an officer's counter-offer.

Every POST carries the CSRF token and an idempotency key: applying and repaying run once per key
(lending's ``ledger.once``), so a double click or a second tab gives the first outcome. The rules
and messages are lending's (portal.money.lending.services); ``DomainError.field`` names the form
field beside which the message shows.
"""

from __future__ import annotations

import uuid

from flask import current_app, flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import redirect_to, refusal, render
from portal.db import db
from portal.errors import DomainError
from portal.money.currency import format_amount, parse_amount
from portal.money.lending import queries, services
from portal.money.wallets import ledger
from portal.security.access import requires
from portal.security.permissions import Permission

APPLY_FIELDS = ("product", "amount", "term", "purpose", "collateral_currency", "collateral_amount")


def _form(*names: str) -> dict[str, str]:
    return {name: (request.form.get(name) or "").strip()[:300] for name in names}


def _key() -> str:
    return (request.form.get("idempotency_key") or "").strip()[:100]


def _status(exc: DomainError) -> int:
    return exc.status_code if 400 <= exc.status_code < 500 else 422


def plain_number(value) -> str:
    """A Decimal without trailing zeros or an exponent: 12, 12.5, 1000."""
    return f"{value.normalize():f}"


def _context(**extra) -> dict:
    return {"money": format_amount, "num": plain_number,
            "margin_call_ltv": current_app.config.get("LENDING_MARGIN_CALL_LTV"),
            "liquidation_ltv": current_app.config.get("LENDING_LIQUIDATION_LTV"), **extra}


def _index(*, status: int = 200, values: dict | None = None, errors: dict | None = None):
    return render("wallet/loans/index.html", status=status, **_context(
        choices=queries.borrowing_overview(current_user), loans=queries.my_loans(current_user),
        values=values or {}, errors=errors or {}, collateral_currencies=services.COLLATERAL_CURRENCIES))


def _refused_form(exc: DomainError, values: dict):
    refusal(exc)
    return _index(status=_status(exc), values=values, errors={exc.field or "form": exc.message})


@bp.get("/loans")
@requires(Permission.USE_WALLET)
def loans():
    return _index()


@bp.post("/loans/offer")
@requires(Permission.USE_WALLET)
def loan_offer():
    """The offer for the form's amount and term, before anything is saved: accept or go back."""
    values = _form(*APPLY_FIELDS)
    try:
        offer = services.offer(current_user, values["product"], values["amount"], values["term"])
        if not " ".join(values["purpose"].split()):
            raise services.LendingError("Say what the loan is for.", field="purpose")
        if (values["collateral_currency"] or values["collateral_amount"]) \
                and values["collateral_currency"].upper() not in services.COLLATERAL_CURRENCIES:
            raise services.LendingError("Collateral comes from your BTC or ETH wallet.", field="collateral_currency")
    except DomainError as exc:
        return _refused_form(exc, values)
    return render("wallet/loans/offer.html", **_context(offer=offer, values=values, key=ledger.new_key()))


@bp.post("/loans/apply")
@requires(Permission.USE_WALLET)
def loan_apply():
    values = _form(*APPLY_FIELDS)
    try:
        loan = services.apply(current_user, values["product"], values["amount"], values["term"], values["purpose"],
                              _key() or None, collateral_currency=values["collateral_currency"] or None,
                              raw_collateral=values["collateral_amount"] or None)
    except DomainError as exc:
        return _refused_form(exc, values)
    db.session.commit()
    flash("Your application is in: a loan officer decides on it, usually within a working day.", "success")
    return redirect_to("wallet.loan", loan_id=loan.id)


def _detail_page(loan_id: uuid.UUID, *, status: int = 200, error: str | None = None, error_field: str | None = None):
    detail = queries.loan_detail(current_user, loan_id)
    return render("wallet/loans/loan.html", status=status, **_context(
        d=detail, key=ledger.new_key(), error=error, error_field=error_field))


def _refused_detail(exc: DomainError, loan_id: uuid.UUID):
    refusal(exc)
    return _detail_page(loan_id, status=_status(exc), error=exc.message, error_field=exc.field)


@bp.get("/loans/<uuid:loan_id>")
@requires(Permission.USE_WALLET)
def loan(loan_id: uuid.UUID):
    return _detail_page(loan_id)


@bp.post("/loans/<uuid:loan_id>/repay")
@requires(Permission.USE_WALLET)
def loan_repay(loan_id: uuid.UUID):
    """``kind``: ``due`` (what is due now, or the next instalment), ``payoff`` (everything, interest
    to today) or ``part`` (the amount typed). Without ``confirmed``: the confirmation page."""
    detail = queries.loan_detail(current_user, loan_id)  # NotFound for another's loan
    kind = request.form.get("kind", "")
    try:
        if detail.payoff is None:
            raise services.LendingError("This loan has nothing to repay.", field="amount")
        if kind == "payoff":
            amount = str(detail.payoff)
        elif kind == "due":
            nxt = next((x for x in detail.schedule if x.outstanding > 0), None)
            amount = str(detail.due_now if detail.due_now > 0 else (nxt.outstanding if nxt else 0))
        elif kind == "part":
            amount = (request.form.get("amount") or "").strip()[:40]
        else:
            raise services.LendingError("Choose what to repay.", field="amount")
        if request.form.get("confirmed") != "1":
            parsed = parse_amount(amount, detail.loan.currency)
            if parsed > detail.payoff:
                raise services.LendingError(
                    f"That is more than is owed: {detail.payoff} {detail.loan.currency} closes the loan today.",
                    field="amount")
            return render("wallet/loans/confirm_repay.html", **_context(
                d=detail, amount=parsed, kind=kind, key=_key() or ledger.new_key()))
        done = services.repay(current_user, loan_id, amount, _key() or None)
    except DomainError as exc:
        return _refused_detail(exc, loan_id)
    db.session.commit()
    flash(f"Thank you: {format_amount(done.amount, done.currency)} was repaid "
          f"({format_amount(done.principal, done.currency)} principal, "
          f"{format_amount(done.interest, done.currency)} interest).", "success")
    return redirect_to("wallet.loan", loan_id=loan_id)


@bp.post("/loans/<uuid:loan_id>/auto-repay")
@requires(Permission.USE_WALLET)
def loan_auto_repay(loan_id: uuid.UUID):
    on = request.form.get("enabled") == "1"
    try:
        services.set_auto_repay(current_user, loan_id, on)
    except DomainError as exc:
        return _refused_detail(exc, loan_id)
    db.session.commit()
    flash("Instalments are now paid from your wallet on their due dates." if on
          else "Automatic repayment is off: repay each instalment yourself.", "success")
    return redirect_to("wallet.loan", loan_id=loan_id)


@bp.post("/loans/<uuid:loan_id>/withdraw")
@requires(Permission.USE_WALLET)
def loan_withdraw(loan_id: uuid.UUID):
    try:
        services.withdraw(current_user, loan_id)
    except DomainError as exc:
        return _refused_detail(exc, loan_id)
    db.session.commit()
    flash("The application is withdrawn; any collateral is free again.", "success")
    return redirect_to("wallet.loan", loan_id=loan_id)


@bp.post("/loans/<uuid:loan_id>/accept")
@requires(Permission.USE_WALLET)
def loan_accept(loan_id: uuid.UUID):
    try:
        services.accept_offer(current_user, loan_id)
    except DomainError as exc:
        return _refused_detail(exc, loan_id)
    db.session.commit()
    flash("You accepted the offer: the loan is paid out once an officer releases it.", "success")
    return redirect_to("wallet.loan", loan_id=loan_id)
