"""The student's wallet: balances (available and locked) with recent activity, the history
with its filters and keyset pages, and the history as CSV.

Reads only (portal.money.wallets.queries): no GET creates a wallet or changes anything.
"""

from __future__ import annotations

from flask import Response, request, stream_with_context
from flask_login import current_user

from blueprints.wallet import bp
from blueprints.web import is_htmx, render, wants_fragment
from portal.db import context as db_context
from portal.db import db
from portal.money.billing import queries as billing_queries
from portal.money.currency import CURRENCIES, format_amount
from portal.money.wallets import queries
from portal.money.wallets.models import TransactionType
from portal.security.access import requires
from portal.security.permissions import Permission

#: The types a student may filter their history by (every type a movement can have).
FILTER_TYPES = list(TransactionType)


@bp.get("/")
@requires(Permission.USE_WALLET)
def overview():
    """Balances and recent activity, read together. An htmx request (the ``balance-changed``
    refresh) gets the balances block only, and reads only the balances."""
    if wants_fragment():
        return render("wallet/overview/index.html", "balances", balances=queries.overview(current_user), recent=[])
    balances, recent = queries.wallet_page(current_user)
    unpaid = billing_queries.past_due_invoice(current_user)
    return render("wallet/overview/index.html", "balances", balances=balances, recent=recent, unpaid=unpaid,
                  unpaid_amount=format_amount(unpaid.total, unpaid.currency) if unpaid else None)


def _history_context():
    filters, errors = queries.parse_filters(request.args)
    page = queries.history(current_user, filters, request.args.get("after"))
    return {"page": page, "filters": filters, "errors": errors, "raw": request.args,
            "types": FILTER_TYPES, "currencies": list(CURRENCIES), "paged": bool(request.args.get("after"))}


@bp.get("/history")
@requires(Permission.USE_WALLET)
def history():
    context = _history_context()
    status = 422 if context["errors"] else 200
    # "Show older" with htmx appends rows; the filter form swaps the results; a plain link or
    # form loads the page.
    block = "rows" if is_htmx() and context["paged"] and request.headers.get("HX-Target") != "results" else "results"
    return render("wallet/overview/history.html", block, status=status, **context)


@bp.get("/history.csv")
@requires(Permission.USE_WALLET)
def history_csv():
    filters, errors = queries.parse_filters(request.args)
    if errors:
        context = _history_context()
        return render("wallet/overview/history.html", "results", status=422, **context)
    lines = queries.export_csv(current_user, filters)
    actor = db_context.current_actor()

    def as_this_user():
        # The body is read after the request's transaction has ended: the export's queries run
        # in a new one, which must carry the same identity for row-level security.
        with db_context.acting_as(actor, db.session):
            yield from lines

    response = Response(stream_with_context(as_this_user()), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="wallet-history.csv"'
    return response
