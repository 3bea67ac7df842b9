"""The JSON API, version 1: a user's own data, read and (with the ``write`` scope) changed
through the same services the pages use. Each view is declared once with ``spec.operation``,
which gives its route, its access and its part of the OpenAPI document.

Amounts are exact decimals written as strings; times are ISO 8601 in UTC; lists that grow
without bound (transactions, notifications) are keyset pages: ``next_cursor`` is passed back as
``cursor``. Nothing answers with another user's rows: every read is of the token's user, and a
notification of someone else is "not found", as one that does not exist.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from flask import g, request
from flask_login import current_user

from blueprints.api import bp
from blueprints.api.gateway import ApiProblem, json_body
from blueprints.api.spec import Param, operation
from portal.db import db
from portal.learning.education import queries as education
from portal.money.currency import CURRENCIES
from portal.money.wallets import ledger
from portal.money.wallets import queries as wallets
from portal.money.wallets import services as transfers
from portal.platform.notifications import queries as notification_queries
from portal.platform.notifications import services as notifications
from portal.security.permissions import Permission

_CURSOR = Param("cursor", "query", {"type": "string", "maxLength": 200}, "The `next_cursor` of the previous page.")
#: The keys ``ledger.once`` accepts (a test keeps the two in step); checked here first so the
#: answer names the header.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,100}")
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}, "Rows per page (default 25).")


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value, code: str | None = None) -> str | None:
    """An exact decimal as text; with ``code``, at that currency's scale (``"12.30"``)."""
    if value is None:
        return None
    if code is not None and code in CURRENCIES:
        value = Decimal(value).quantize(CURRENCIES[code].quantum)
    return format(value, "f")


def _int_arg(name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lowest <= value <= highest:
        raise ApiProblem(422, f"'{name}' must be a whole number from {lowest} to {highest}.",
                         errors=[{"field": name, "message": f"A whole number from {lowest} to {highest}."}])
    return value


def _cursor_arg() -> str | None:
    cursor = request.args.get("cursor") or None
    if cursor is not None and len(cursor) > 200:
        raise ApiProblem(422, "The cursor is not one this API gave.", errors=[{"field": "cursor", "message": "Unknown cursor."}])
    return cursor


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ApiProblem(404, f"There is no such {what}.") from exc


# -- me and the catalog ---------------------------------------------------------------------------


@operation(bp, "GET", "/me", summary="The token's user, and the token itself", response="Me")
def me():
    token = g.api_token
    return {"id": str(current_user.id), "email": current_user.email, "full_name": current_user.full_name,
            "role": current_user.role.value,
            "token": {"id": str(token.id), "name": token.name, "scopes": list(token.scopes),
                      "expires_at": _time(token.expires_at)}}


@operation(bp, "GET", "/courses", summary="The course catalog (published courses)", response="CoursePage",
           params=(Param("q", "query", {"type": "string", "maxLength": 200}, "Search words."),
                   Param("page", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page number.")),
           errors=(422,))
def courses():
    page_number = _int_arg("page", 1, 1, 1000)
    filters = education.CatalogFilters.clean(request.args.get("q"), request.args.get("category"),
                                              request.args.get("level"))
    page = education.catalog_page(current_user, filters, page_number)
    items = [{"id": str(e.course.id), "slug": e.course.slug, "title": e.course.title, "summary": e.course.summary,
              "category": e.course.category, "level": str(e.course.level) if e.course.level else None,
              "estimated_hours": e.course.estimated_hours, "price": _money(e.course.price, e.course.price_currency),
              "price_currency": e.course.price_currency, "instructor_name": e.instructor_name}
             for e in page.entries]
    return {"items": items, "page": page.page, "pages": page.pages, "total": page.total}


# -- learning -------------------------------------------------------------------------------------


@operation(bp, "GET", "/enrolments", summary="My enrolments and progress", response="EnrolmentList",
           permission=Permission.LEARN)
def enrolments():
    rows = education.my_enrollments(current_user)
    return {"items": [{"id": str(r.id), "course_id": str(r.course_id), "slug": r.slug, "title": r.title,
                       "status": r.status.value, "progress_percent": r.progress_percent} for r in rows]}


@operation(bp, "GET", "/grades", summary="My released grades and course totals", response="Grades",
           permission=Permission.LEARN,
           params=(Param("page", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page number."),),
           errors=(422,))
def grades():
    view = education.my_grades(current_user, page=_int_arg("page", 1, 1, 1000))
    totals = [{"course_id": str(t.course_id), "course": t.course_title, "course_slug": t.course_slug,
               "percent": _money(t.override_percent if t.override_percent is not None else t.percent),
               "letter": t.letter, "status": t.status.value} for t in view.totals]
    items = [{"id": str(r.id), "assignment_id": str(r.assignment_id), "assignment": r.title,
              "course": r.course_title, "course_slug": r.course_slug, "score": _money(r.score),
              "points": _money(r.points), "released_at": _time(r.released_at)} for r in view.grades.items]
    return {"totals": totals, "items": items, "page": view.grades.page, "has_next": view.grades.has_next}


# -- money ----------------------------------------------------------------------------------------


@operation(bp, "GET", "/wallets", summary="My wallets and balances, one per currency", response="WalletList",
           permission=Permission.USE_WALLET)
def wallet_list():
    return {"items": [{"currency": b.code, "name": b.name, "balance": _money(b.balance, b.code),
                       "locked": _money(b.locked, b.code), "available": _money(b.available, b.code), "status": b.status.value if b.status else None}
                      for b in wallets.overview(current_user)]}


@operation(bp, "GET", "/transactions", summary="My transactions, newest first (keyset pages)",
           response="TransactionPage", permission=Permission.USE_WALLET, params=(_CURSOR, _LIMIT), errors=(422,))
def transactions():
    limit = _int_arg("limit", wallets.PAGE_SIZE, 1, 100)
    page = wallets.history(current_user, after=_cursor_arg(), limit=limit)
    items = [{"id": str(r.id), "created_at": _time(r.created_at), "type": r.type.value, "currency": r.currency,
              "direction": r.direction, "amount": _money(r.amount, r.currency), "counterparty": r.counterparty,
              "description": r.description, "note": r.note, "status": r.status} for r in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@operation(bp, "POST", "/transfers", summary="Send money to another student", response="Transfer", status=201,
           scope="write", permission=Permission.USE_WALLET, body="TransferRequest", errors=(409,), also=(200,),
           params=(Param("Idempotency-Key", "header", {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,100}$"},
                         "Required. A fresh random key per transfer (16 to 100 letters, digits, - or _): "
                         "a retry with the same key and body returns the first transfer and pays nothing "
                         "more; the same key with another body is refused with 409.", required=True),))
def send_money():
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiProblem(422, "Send an Idempotency-Key header: a fresh random key per transfer.",
                         errors=[{"field": "Idempotency-Key", "message": "Required."}])
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiProblem(422, "The Idempotency-Key must have 16 to 100 letters, digits, - or _.",
                         errors=[{"field": "Idempotency-Key", "message": "16 to 100 letters, digits, - or _."}])
    body = json_body("TransferRequest")
    try:
        receipt, replayed = transfers.send_money(current_user, body["recipient"], body["amount"], body["currency"],
                                                 body.get("note"), key)
    except ledger.IdempotencyMismatch as exc:
        db.session.rollback()
        raise ApiProblem(409, "This Idempotency-Key was already used for a different transfer. Nothing was "
                              "sent: use a fresh key.", kind="idempotency-mismatch") from exc
    db.session.commit()
    shown = {"transaction_id": receipt["transaction_id"], "recipient_name": receipt["recipient_name"],
             "amount": receipt["amount"], "fee": receipt["fee"], "total": receipt["total"],
             "currency": receipt["currency"], "created_at": receipt["created_at"], "replayed": replayed}
    return shown, 200 if replayed else 201


# -- notifications --------------------------------------------------------------------------------


def _note(n) -> dict:
    return {"id": str(n.id), "kind": n.kind, "title": n.title, "body": n.body, "link": n.link,
            "created_at": _time(n.created_at), "read_at": _time(n.read_at)}


@operation(bp, "GET", "/notifications", summary="My notifications, newest first (keyset pages)",
           response="NotificationPage", errors=(422,),
           params=(_CURSOR, Param("unread", "query", {"type": "string", "enum": ["true", "false"]},
                                  "Only unread ones.")))
def notification_list():
    unread = request.args.get("unread", "false")
    if unread not in ("true", "false"):
        raise ApiProblem(422, "'unread' is true or false.", errors=[{"field": "unread", "message": "true or false."}])
    page = notification_queries.page_for(current_user.id, _cursor_arg(), unread_only=unread == "true")
    return {"items": [_note(n) for n in page.items], "next_cursor": page.next_cursor}


@operation(bp, "POST", "/notifications/{note_id}/read", summary="Mark one notification read",
           response="Notification", scope="write", errors=(404,),
           params=(Param("note_id", "path", {"type": "string", "format": "uuid"}),))
def notification_read(note_id: str):
    note = notifications.mark_read(current_user, _uuid(note_id, "notification"))
    db.session.commit()
    return _note(note)


@operation(bp, "POST", "/notifications/read-all", summary="Mark all my notifications read", response="MarkedRead",
           scope="write")
def notification_read_all():
    marked = notifications.mark_all_read(current_user)
    db.session.commit()
    return {"marked": marked}
