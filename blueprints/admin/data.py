"""Admin > Data: a read-only browser over every table (reads in ``portal.platform.databrowser``).

Three pages: the tables, one table's rows (filters per column type, sorting, pages), and one
row with links to the rows it refers to and to the rows that refer to it. Nothing here writes
data; the only write is the security event that records a view of personal data (a row of a
personal table, or a page of one), committed before the page is sent.

Why not Flask-Admin (2.2 supports Flask 3 and SQLAlchemy 2): its pages are its own Bootstrap 4
layout with jQuery, Select2 and inline scripts, which the portal's layout (Pico, htmx) and its
CSP (``script-src 'self'``, no nonces) would have to be bent around; its model views load whole
ORM rows, which selects every column (the app role may not select ``users.passwordHash`` at
all, and masking after loading would bring ciphertext into the process), count every row of a
table for its pager (a million ``transactions``), and know neither the portal's access
declarations (``requires``, the permission matrix), nor its htmx fragments, nor its security
events. Overriding all of that would leave little of the library, so this is a small module
over the same layout as every other admin page.

An htmx request of the list (the filter form, a column's sort link, the pager) gets only the
results block; the page itself works without JavaScript.
"""

from __future__ import annotations

from flask import request
from flask_login import current_user

from blueprints.admin import bp
from blueprints.web import render
from portal.compliance.security import events as security_events
from portal.db import db
from portal.platform.databrowser import catalog, queries
from portal.security.access import requires
from portal.security.permissions import Permission


@bp.get("/data")
@requires(Permission.VIEW_SYSTEM)
def data_tables():
    tables = list(catalog.catalog().values())
    areas: dict[str, list] = {}
    for info in tables:
        areas.setdefault(info.area, []).append(info)
    return render("admin/data/tables.html", areas=sorted(areas.items()), sizes=queries.size_estimates(),
                  count=len(tables))


@bp.get("/data/<table>")
@requires(Permission.VIEW_SYSTEM)
def data_list(table: str):
    info = queries.table_or_404(table)
    query = queries.parse_list_query(info, request.args)
    page = queries.list_page(query)
    if info.personal:
        security_events.personal_data_viewed(
            current_user, info.name,
            details={"view": "list", "page": query.page, "rows": len(page.rows),
                     "filters": {f.param: f.raw for f in query.filters}})
        db.session.commit()
    return render("admin/data/list.html", "results", info=info, page=page, query=query,
                  Kind=catalog.Kind, range_kinds=catalog.RANGE_KINDS, max_page=queries.MAX_PAGE)


@bp.get("/data/<table>/<path:row_id>")
@requires(Permission.VIEW_SYSTEM)
def data_row(table: str, row_id: str):
    info = queries.table_or_404(table)
    detail = queries.row_detail(info, row_id)
    if info.personal:
        security_events.personal_data_viewed(current_user, info.name, row=detail.key,
                                             subject_id=detail.subject_user_id, details={"view": "row"})
        db.session.commit()
    return render("admin/data/row.html", info=info, detail=detail)
