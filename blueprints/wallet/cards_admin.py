"""Virtual cards for staff (admins and compliance officers): every card with its holder (search
by e-mail), a card's page (freeze with a reason, unfreeze, its authorization log), the
authorization log across cards (filters, keyset pages) and the network messages that reached
no card. And for admins, the card terminal: a merchant's keypad that sends signed network
messages through ``portal.money.cards.simulator`` over HTTP to this portal's own endpoint, so
a demo can buy things with a card.

Staff see BIN and last four at most: nothing here reveals a number.
"""

from __future__ import annotations

import uuid

import requests
from flask import current_app, flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import redirect_to, refusal, render, wants_fragment
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.money.cards import admin_queries, codes, services
from portal.money.cards.models import CardTransactionKind
from portal.money.cards.simulator import MERCHANTS, Merchant, Simulator
from portal.money.currency import CURRENCIES, format_amount, parse_amount
from portal.security.access import requires
from portal.security.permissions import Permission, has_permission

#: The HTTP client the terminal sends with (tests put one that calls the app in its place).
http_session = requests.Session
TERMINAL_OPS = {"authorize": "Authorize a purchase", "capture": "Capture (clear) an authorization",
                "reverse": "Reverse an authorization", "refund": "Refund to the card"}


def _reason(row) -> str:
    return row.decline_reason or codes.reason(row.response_code)


# ---------------------------------------------------------------------------------- cards


@bp.get("/admin/cards")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_cards():
    email = request.args.get("email", "").strip()[:254]
    page = admin_queries.cards_page(email or None, request.args.get("after"))
    block = None
    if wants_fragment():
        block = "rows" if request.args.get("after") else "results"
    return render("wallet/cards_admin/cards.html", block, page=page, email=email)


def _card_page(card_id: uuid.UUID, *, error: str | None = None, reason: str = "", status: int = 200,
               block: str | None = None):
    found = admin_queries.card_with_holder(card_id)
    if found is None:
        raise NotFound("There is no such card.")
    card, holder = found
    log = admin_queries.authorization_log(admin_queries.LogFilters(card_id=card.id), request.args.get("after"))
    return render("wallet/cards_admin/card.html", block, status=status, card=card, holder=holder, log=log,
                  error=error, reason_value=reason, fmt=format_amount, reason=_reason,
                  may_terminal=has_permission(current_user.role, Permission.MANAGE_MONEY))


@bp.get("/admin/cards/<uuid:card_id>")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_card(card_id: uuid.UUID):
    block = "log_rows" if wants_fragment() and request.args.get("after") else None
    return _card_page(card_id, block=block)


def _staff_state(card_id: uuid.UUID, action, done: str):
    reason = request.form.get("reason", "")[:400]
    try:
        card = action(card_id, reason)
    except DomainError as exc:
        refusal(exc)
        return _card_page(card_id, error=exc.message, reason=reason, status=exc.status_code,
                          block="state" if wants_fragment() else None)
    db.session.commit()
    if wants_fragment():
        response = _card_page(card.id, block="state")
        response.headers["HX-Trigger"] = "card-changed"
        return response
    flash(done, "success")
    return redirect_to("wallet.admin_card", card_id=card.id)


@bp.post("/admin/cards/<uuid:card_id>/freeze")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_freeze_card(card_id: uuid.UUID):
    return _staff_state(card_id, lambda cid, reason: services.freeze(current_user, cid, reason),
                        "Card frozen. Only staff can unfreeze it; the holder sees the reason.")


@bp.post("/admin/cards/<uuid:card_id>/unfreeze")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_unfreeze_card(card_id: uuid.UUID):
    return _staff_state(card_id, lambda cid, _reason: services.unfreeze(current_user, cid), "Card unfrozen.")


# ---------------------------------------------------------------------------------- logs


def _log_filters() -> tuple[admin_queries.LogFilters, dict[str, str], dict[str, str]]:
    args = request.args
    errors: dict[str, str] = {}
    code = args.get("code", "").strip().upper()[:2]
    if code and code not in codes.REASONS:
        errors["code"] = f"{code!r} is not a response code the portal gives."
        code = ""
    kind = None
    if args.get("kind"):
        try:
            kind = CardTransactionKind(args["kind"])
        except ValueError:
            errors["kind"] = "Choose a kind from the list."
    card_id = user_id = None
    for name in ("card", "user"):
        raw = args.get(name, "").strip()
        if raw:
            try:
                value = uuid.UUID(raw[:40])
            except ValueError:
                errors[name] = f"That is not a {name} id."
                continue
            if name == "card":
                card_id = value
            else:
                user_id = value
    filters = admin_queries.LogFilters(declined=args.get("declined") in ("1", "on", "true"), code=code or None,
                                       card_id=card_id, user_id=user_id, kind=kind)
    shown = {"declined": "1" if filters.declined else "", "code": code, "kind": kind.value if kind else "",
             "card": str(card_id) if card_id else "", "user": str(user_id) if user_id else ""}
    return filters, errors, {k: v for k, v in shown.items() if v}


@bp.get("/admin/cards/log")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_card_log():
    filters, errors, shown = _log_filters()
    page = admin_queries.authorization_log(filters, request.args.get("after"))
    block = None
    if wants_fragment():
        block = "rows" if request.args.get("after") else "results"
    return render("wallet/cards_admin/log.html", block, status=422 if errors else 200, page=page, errors=errors,
                  shown=shown, kinds=list(CardTransactionKind), reasons=codes.REASONS, fmt=format_amount,
                  reason=_reason)


@bp.get("/admin/cards/messages")
@requires(Permission.REVIEW_COMPLIANCE)
def admin_card_messages():
    page = admin_queries.network_messages(request.args.get("after"))
    block = "rows" if wants_fragment() and request.args.get("after") else None
    return render("wallet/cards_admin/messages.html", block, page=page, reason=codes.reason)


# ---------------------------------------------------------------------------------- terminal


def _terminal_base_url() -> str:
    return (current_app.config.get("BASE_URL") or request.host_url).rstrip("/")


def _terminal_page(values: dict | None = None, *, errors: dict | None = None, result=None, failure: str | None = None,
                   status: int = 200):
    return render("wallet/cards_admin/terminal.html", "panel", status=status, values=values or {"currency": "USD"},
                  errors=errors or {}, result=result, failure=failure, ops=TERMINAL_OPS, merchants=MERCHANTS,
                  currencies=list(CURRENCIES), base_url=_terminal_base_url(), reason=codes.reason)


@bp.get("/admin/cards/terminal")
@requires(Permission.MANAGE_MONEY)
def card_terminal():
    return _terminal_page()


def _terminal_input(form) -> tuple[dict, dict, dict]:
    """The form's values as typed, the messages of wrong ones, and the simulator's arguments."""
    fields = ("op", "number", "exp", "cvv", "amount", "currency", "merchant", "authorization_id")
    values = {name: (form.get(name) or "").strip()[:120] for name in fields}
    errors: dict[str, str] = {}
    op = values["op"]
    if op not in TERMINAL_OPS:
        errors["op"] = "Choose what to send."
        return values, errors, {}
    args: dict = {}
    needs_amount = op in ("authorize", "capture", "refund")
    if needs_amount:
        code = values["currency"].upper()
        if code not in CURRENCIES:
            errors["currency"] = "Choose a currency from the list."
        else:
            try:
                args["amount"] = parse_amount(values["amount"], code)
                args["currency"] = code
            except DomainError as exc:
                errors["amount"] = exc.message
    if op == "authorize" or (op == "refund" and not values["authorization_id"]):
        number = "".join(values["number"].split())
        if not (number.isdigit() and 12 <= len(number) <= 19):
            errors["number"] = "Type the card's number: 16 digits."
        args["number"] = number
    if op == "authorize":
        month, _, year = values["exp"].partition("/")
        if not (month.strip().isdigit() and year.strip().isdigit() and 1 <= int(month) <= 12):
            errors["exp"] = "Type the expiry as MM/YY."
        else:
            args["exp_month"] = int(month)
            args["exp_year"] = 2000 + int(year) % 100 if len(year.strip()) <= 2 else int(year)
        if not (values["cvv"].isdigit() and 3 <= len(values["cvv"]) <= 4):
            errors["cvv"] = "Type the 3-digit security code."
        args["cvv"] = values["cvv"]
        try:
            base = MERCHANTS[int(values["merchant"] or 0)]
        except (ValueError, IndexError):
            errors["merchant"] = "Choose a merchant from the list."
            base = MERCHANTS[0]
        args["merchant"] = Merchant(base.name, base.mcc, base.country)
    if op in ("capture", "reverse") and not values["authorization_id"]:
        errors["authorization_id"] = "Give the network id of the authorization (auth_…)."
    return values, errors, args


@bp.post("/admin/cards/terminal")
@requires(Permission.MANAGE_MONEY)
def card_terminal_send():
    values, errors, args = _terminal_input(request.form)
    if errors:
        return _terminal_page(values, errors=errors, status=422)
    simulator = Simulator(_terminal_base_url(), current_app.config.get("CARD_NETWORK_SECRET") or "",
                          http=http_session(), timeout=10)
    op, auth_id = values["op"], values["authorization_id"] or None
    try:
        if op == "authorize":
            result = simulator.authorize(args["number"], args["exp_month"], args["exp_year"], args["cvv"],
                                         args["amount"], args["currency"], merchant=args["merchant"])
        elif op == "capture":
            result = simulator.capture(auth_id, args["amount"], args["currency"])
        elif op == "reverse":
            result = simulator.reverse(auth_id)
        else:
            result = simulator.refund(args["amount"], args["currency"], authorization_id=auth_id,
                                      number=None if auth_id else args["number"])
    except requests.RequestException as exc:
        return _terminal_page(values, failure=f"The card endpoint at {_terminal_base_url()} could not be reached "
                                              f"({type(exc).__name__}).", status=502)
    if op == "authorize" and result.approved:
        values["authorization_id"] = result.network_id
    # The typed number and security code are not sent back: no page shows a whole number.
    values["number"] = values["cvv"] = ""
    return _terminal_page(values, result=result)
