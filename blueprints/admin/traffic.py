"""Admin > Traffic: what the request log (``api_logs``) says about the last quarter hour, hour,
six hours or day: requests per minute (a bar chart drawn here as SVG, with the same figures in a
table), and per route the requests, the 50th, 95th and 99th percentile of the duration, the
share of errors, and the slowest routes. Three statements: the page's identity and the two
reads of ``portal.platform.gateway.log_queries``."""

from __future__ import annotations

from flask import request

from blueprints.admin import bp
from blueprints.web import render
from portal.platform.gateway import log_queries
from portal.security.access import requires
from portal.security.permissions import Permission

#: The chart's drawing area, in SVG units.
CHART_WIDTH, CHART_HEIGHT = 720, 160


def _bars(traffic: log_queries.Traffic) -> list[dict]:
    """One bar per minute: its place and height in the chart, and the errors' share of it."""
    count = max(len(traffic.per_minute), 1)
    width = CHART_WIDTH / count
    peak = max(traffic.peak, 1)
    bars = []
    for n, minute in enumerate(traffic.per_minute):
        height = CHART_HEIGHT * minute.requests / peak
        errors = CHART_HEIGHT * minute.errors / peak
        bars.append({"x": round(n * width, 2), "width": round(max(width - 1, 0.5), 2),
                     "y": round(CHART_HEIGHT - height, 2), "height": round(height, 2),
                     "error_y": round(CHART_HEIGHT - errors, 2), "error_height": round(errors, 2),
                     "minute": minute})
    return bars


@bp.get("/traffic")
@requires(Permission.VIEW_SYSTEM)
def traffic():
    try:
        minutes = int(request.args.get("minutes", "60"))
    except ValueError:
        minutes = 60
    figures = log_queries.traffic(minutes)
    return render("admin/traffic.html", figures=figures, bars=_bars(figures), windows=log_queries.WINDOWS,
                  chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT)
