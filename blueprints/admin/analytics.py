"""The analytics dashboard: the daily rollups of a date range beside the period before it,
a chart per figure (SVG drawn on the server) with its table and CSV, a label filter
(``label=currency:USD``: only the figures split by that label, at that value; each chart's CSV
link is then the filtered figure's), and a button that brings the daily figures up to date
without waiting for the worker.

Drawing the charts is most of a page's cost (a range of 30 days is some 20 charts of 30 bars
and their tables), so the results are drawn once per range and label and kept in the shared
cache beside the rollups they show (under the same name, so a rollup run that writes daily rows
drops them too, ``rollups.forget_figures``): the figures are the same whoever asks, and only
admins see the page."""

from __future__ import annotations

import csv
import io
import re

from flask import render_template, request
from markupsafe import Markup
from werkzeug.wrappers import Response

from blueprints.admin import bp
from blueprints.web import redirect_to, render, wants_fragment
from portal.db import db
from portal.db.base import utcnow
from portal.platform.analytics import queries, rollups
from portal.platform.cache import services as cache
from portal.security.access import requires
from portal.security.permissions import Permission


def _given() -> dict:
    return {"start": request.values.get("from", "")[:20], "end": request.values.get("to", "")[:20],
            "label": request.values.get("label", "")[:60]}


def _results(period: queries.DateRange, label: queries.LabelFilter | None, given: dict) -> dict:
    """The drawn results of ``period`` and ``label`` (HTML) and the label choices of the range:
    from the shared cache, or drawn once."""
    key = cache.shared_key(rollups.DAILY_CACHE, "page", period.start, period.end, label.param if label else "",
                           given["start"], given["end"])

    def draw() -> dict:
        view = queries.dashboard(period, label, cached=False)  # inside this entry's lock: read once
        html = render_template("admin/analytics/_results.html", error=None, given=given, period=period,
                               panels=view.panels, label=label)
        return {"html": html, "choices": [choice.param for choice in view.choices]}

    return cache.get_or_compute(key, draw, queries.DAILY_SECONDS)


@bp.get("/analytics")
@requires(Permission.VIEW_SYSTEM)
def analytics():
    given = _given()
    try:
        period = queries.parse_range(given["start"], given["end"], utcnow().date())
        label = queries.parse_label(given["label"])
    except (queries.BadRange, queries.BadLabel) as exc:
        html = render_template("admin/analytics/_results.html", error=exc, given=given, period=None, panels=[],
                               label=None)
        return render("admin/analytics/dashboard.html", "results", status=400, error=exc, given=given,
                      period=None, label=None, choices=[], results_html=Markup(html),  # noqa: S704 - our own template, escaped
                      label_oob=False)
    results = _results(period, label, given)
    # An htmx request swaps the results only: the label choices of the new range go with them
    # out of band (``label_oob``), or the filter would offer the previous range's values.
    return render("admin/analytics/dashboard.html", "results", error=None, given=given, period=period,
                  label=label, choices=[queries.parse_label(choice) for choice in results["choices"]],
                  results_html=Markup(results["html"]),  # noqa: S704 - our own template, escaped
                  label_oob=wants_fragment())


@bp.get("/analytics/<key>.csv")
@requires(Permission.VIEW_SYSTEM)
def analytics_csv(key: str):
    given = _given()
    period = queries.parse_range(given["start"], given["end"], utcnow().date())
    panel = queries.panel(key, period)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day", panel.figure.name, "previous_day", "previous_value"])
    for label, value, previous_label, previous in panel.chart.rows:
        writer.writerow([label, value, previous_label or "", "" if previous is None else previous])
    name = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}-{period.start}-{period.end}.csv"'})


@bp.post("/analytics/refresh")
@requires(Permission.VIEW_SYSTEM)
def analytics_refresh():
    rollups.bring_days_up_to_date()
    db.session.commit()
    values = {k: v for k, v in (("from", request.form.get("from", "")[:20]), ("to", request.form.get("to", "")[:20]),
                                ("label", request.form.get("label", "")[:60])) if v}
    return redirect_to("admin.analytics", **values)
