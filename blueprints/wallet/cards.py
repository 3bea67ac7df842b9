"""Virtual cards for their holder: the list with "create a card", a card's page (reveal after the
password, freeze and unfreeze, cancel, replace, spending controls, spending against the limits)
and its transactions, live.

Thin views over ``portal.money.cards``: read the form, call the service, commit once. With htmx
a new card joins the list, the state panel and the controls swap in place and the transactions
poll for what is new (``newer_than``) every few seconds, putting new rows on top; without
JavaScript every form posts and redirects back.

A reveal answers once, with ``Cache-Control: no-store``: the number and the security code are
in that response and nowhere else (not in a log, the session, a flash or another page).
"""

from __future__ import annotations

import uuid

from flask import flash, request
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import redirect_to, refusal, render, wants_fragment
from portal.compliance.kyc.queries import effective_level
from portal.db import db
from portal.errors import DomainError, Throttled
from portal.money.cards import codes, queries, services
from portal.money.currency import format_amount, quantize
from portal.money.wallets import queries as wallet_queries
from portal.pagination import decode_cursor, encode_cursor
from portal.security.access import requires
from portal.security.permissions import Permission

#: Tells a card page's other parts (state, spending, transactions) to refresh.
CARD_CHANGED = "card-changed"
#: How long a revealed number stays on the page, in seconds.
REVEAL_SECONDS = 60
#: How often the transactions ask for new ones, in seconds.
POLL_SECONDS = 2
CONTROL_FIELDS = ("per_purchase_limit", "daily_limit", "monthly_limit", "blocked_countries")


def _list_context(error: str | None = None, chosen: str | None = None, new_id: uuid.UUID | None = None) -> dict:
    overview = queries.my_cards(current_user)
    balances = wallet_queries.overview(current_user)
    level = effective_level(current_user.id)
    held = {b.code for b in balances if b.status is not None}
    return {"overview": overview, "wallets": [b for b in balances if b.code in held] or balances[:1],
            "level": level, "needed_level": services.CARD_LEVEL, "error": error, "chosen": chosen,
            "new_id": new_id, "fmt": format_amount}


@bp.get("/cards")
@requires(Permission.USE_WALLET)
def cards():
    return render("wallet/cards/list.html", "cards_panel", **_list_context())


@bp.post("/cards")
@requires(Permission.USE_WALLET)
def create_card():
    code = (request.form.get("currency") or "").strip().upper()[:10]
    try:
        card = services.issue_card(current_user, code, nickname=request.form.get("nickname", "")[:60])
    except DomainError as exc:
        refusal(exc)
        return render("wallet/cards/list.html", "cards_panel", status=exc.status_code,
                      **_list_context(exc.message, code))
    db.session.commit()
    if wants_fragment():
        return render("wallet/cards/list.html", "cards_panel", trigger=CARD_CHANGED,
                      **_list_context(chosen=code, new_id=card.id))
    flash(f"Your new {card.brand} card ending {card.last4} is ready to use.", "success")
    return redirect_to("wallet.card", card_id=card.id)


@bp.app_template_global("category_of")
def category_of(mcc: str) -> str:
    return codes.category(mcc)


# ---------------------------------------------------------------------------------- one card


def _transactions_context(card, cursor: str | None = None) -> dict:
    page = queries.transactions(current_user.id, card_id=card.id, cursor=cursor)
    return {"page": page, "since": _since(page.items, None), "reason": queries.decline_reason}


def _since(rows, fallback: str | None) -> str | None:
    """The cursor of the newest row shown, for the poll's next question."""
    if not rows:
        return fallback
    newest = max(rows, key=lambda r: (r.created_at, r.id))
    return encode_cursor(newest.created_at, newest.id)


def _card_context(card, *, errors: dict | None = None, values: dict | None = None, message: str | None = None,
                  reveal_error: str | None = None, cursor: str | None = None) -> dict:
    return {"card": card, "spending": queries.spending(card), "groups": queries.mcc_group_choices(),
            "errors": errors or {}, "values": values, "message": message, "reveal_error": reveal_error,
            "fmt": format_amount, "plain": lambda value: _plain(value, card.currency), "poll_seconds": POLL_SECONDS, "replaced_by": card.replaced_by_id,
            **_transactions_context(card, cursor)}


def _plain(value, code: str) -> str:
    """A limit as a form shows it: the currency's digits, no symbol (``50.00``)."""
    return "" if value is None else str(quantize(value, code))


@bp.get("/cards/<uuid:card_id>")
@requires(Permission.USE_WALLET)
def card(card_id: uuid.UUID):
    card = queries.my_card(current_user, card_id)
    return render("wallet/cards/card.html", **_card_context(card))


@bp.post("/cards/<uuid:card_id>/reveal")
@requires(Permission.USE_WALLET)
def reveal_card(card_id: uuid.UUID):
    """The number and the security code, once, after the password. Nothing of it is stored."""
    exc_seen = None
    try:
        revealed = services.reveal(current_user, card_id, request.form.get("password"))
    except DomainError as exc:
        refusal(exc)
        exc_seen = exc
        if exc.field == "password" and exc.status_code == 422:
            services.count_wrong_reveal(current_user)  # kept: the next tries are counted against it
            db.session.commit()
        card = queries.my_card(current_user, card_id)
        response = render("wallet/cards/card.html", "reveal", status=exc.status_code,
                          **_card_context(card, reveal_error=exc.message))
    else:
        card = queries.my_card(current_user, card_id)
        response = render("wallet/cards/card.html", "reveal", revealed=revealed, reveal_seconds=REVEAL_SECONDS,
                          **_card_context(card))
    if isinstance(exc_seen, Throttled):
        response.headers["Retry-After"] = str(exc_seen.retry_after)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.vary.add("HX-Request")
    return response


def _state_answer(card_id: uuid.UUID, action, done: str):
    """Freeze, unfreeze or cancel; answer with the state panel (htmx) or the card's page."""
    try:
        card = action(current_user, card_id)
    except DomainError as exc:
        refusal(exc)
        if wants_fragment():
            card = queries.my_card(current_user, card_id)
            return render("wallet/cards/card.html", "state", status=exc.status_code,
                          **_card_context(card, message=exc.message))
        flash(exc.message, "error")
        return redirect_to("wallet.card", card_id=card_id)
    db.session.commit()
    if wants_fragment():
        return render("wallet/cards/card.html", "state", trigger=CARD_CHANGED, **_card_context(card, message=done))
    flash(done, "success")
    return redirect_to("wallet.card", card_id=card_id)


@bp.post("/cards/<uuid:card_id>/freeze")
@requires(Permission.USE_WALLET)
def freeze_card(card_id: uuid.UUID):
    return _state_answer(card_id, services.freeze, "Card frozen: every purchase is declined until you unfreeze it.")


@bp.post("/cards/<uuid:card_id>/unfreeze")
@requires(Permission.USE_WALLET)
def unfreeze_card(card_id: uuid.UUID):
    return _state_answer(card_id, services.unfreeze, "Card unfrozen: it can be used again.")


@bp.post("/cards/<uuid:card_id>/cancel")
@requires(Permission.USE_WALLET)
def cancel_card(card_id: uuid.UUID):
    return _state_answer(card_id, services.cancel, "Card canceled: its number is declined from now on.")


@bp.post("/cards/<uuid:card_id>/replace")
@requires(Permission.USE_WALLET)
def replace_card(card_id: uuid.UUID):
    try:
        new = services.replace(current_user, card_id)
    except DomainError as exc:
        refusal(exc)
        if wants_fragment():
            card = queries.my_card(current_user, card_id)
            return render("wallet/cards/card.html", "state", status=exc.status_code,
                          **_card_context(card, message=exc.message))
        flash(exc.message, "error")
        return redirect_to("wallet.card", card_id=card_id)
    db.session.commit()
    flash(f"Card replaced: the new card ends {new.last4}; the old number no longer works.", "success")
    return redirect_to("wallet.card", card_id=new.id)


@bp.post("/cards/<uuid:card_id>/controls")
@requires(Permission.USE_WALLET)
def card_controls(card_id: uuid.UUID):
    values = {name: request.form.get(name, "")[:200] for name in CONTROL_FIELDS}
    values["blocked_mcc_groups"] = [g[:40] for g in request.form.getlist("blocked_mcc_groups")[:20]]
    try:
        card = services.set_controls(current_user, card_id, **values)
    except services.InvalidControls as exc:
        db.session.rollback()
        card = queries.my_card(current_user, card_id)
        return render("wallet/cards/card.html", "controls", status=422,
                      **_card_context(card, errors=exc.errors, values=values))
    except DomainError as exc:
        refusal(exc)
        card = queries.my_card(current_user, card_id)
        return render("wallet/cards/card.html", "controls", status=exc.status_code,
                      **_card_context(card, errors={"form": exc.message}, values=values))
    db.session.commit()
    if wants_fragment():
        return render("wallet/cards/card.html", "controls", trigger=CARD_CHANGED,
                      **_card_context(card, message="Spending controls saved."))
    flash("Spending controls saved.", "success")
    return redirect_to("wallet.card", card_id=card_id)


@bp.get("/cards/<uuid:card_id>/spending")
@requires(Permission.USE_WALLET)
def card_spending(card_id: uuid.UUID):
    """The spending panel alone (refreshed after a purchase or a change of limits)."""
    card = queries.my_card(current_user, card_id)
    if not wants_fragment():
        return redirect_to("wallet.card", card_id=card_id)
    return render("wallet/cards/card.html", "spending", card=card, spending=queries.spending(card), fmt=format_amount)


@bp.get("/cards/<uuid:card_id>/transactions")
@requires(Permission.USE_WALLET)
def card_transactions(card_id: uuid.UUID):
    """Older transactions (``after``: the keyset cursor of the last row shown) or, with
    ``since``, the ones newer than the newest shown (the live poll): new rows and the next poll."""
    card = queries.my_card(current_user, card_id)
    if "since" in request.args:
        since = request.args.get("since") or None
        position = decode_cursor(since)
        rows = queries.newer_than(current_user.id, position, card_id=card.id)
        if not wants_fragment():
            return redirect_to("wallet.card", card_id=card_id)
        response = render("wallet/cards/card.html", "poll", card=card, rows=list(reversed(rows)),
                          since=_since(rows, since if position else None), reason=queries.decline_reason,
                          fmt=format_amount, poll_seconds=POLL_SECONDS,
                          trigger=CARD_CHANGED if rows else None)
        response.headers["Cache-Control"] = "no-store"
        return response
    after = request.args.get("after")
    if wants_fragment() and after:
        return render("wallet/cards/card.html", "rows", card=card, fmt=format_amount,
                      **_transactions_context(card, after))
    return render("wallet/cards/card.html", **_card_context(card, cursor=after))
