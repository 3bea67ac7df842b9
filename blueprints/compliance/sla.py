"""The compliance service levels: time to review identity verifications over a date range,
and the ageing of what waits now (verifications, open cases)."""

from __future__ import annotations

from flask import request

from blueprints.compliance import bp
from blueprints.web import render
from portal.compliance import sla_queries
from portal.db.base import utcnow
from portal.platform.analytics.queries import BadRange, parse_range
from portal.security.access import requires
from portal.security.permissions import Permission


@bp.get("/sla")
@requires(Permission.REVIEW_COMPLIANCE)
def sla():
    given = {"start": request.args.get("from", "")[:20], "end": request.args.get("to", "")[:20]}
    now = utcnow()
    context = {"given": given, "buckets": sla_queries.AGE_BUCKETS, "waiting": sla_queries.kyc_waiting(now),
               "cases": sla_queries.cases_open(now)}
    try:
        period = parse_range(given["start"], given["end"], now.date())
    except BadRange as exc:
        return render("compliance/sla.html", "decisions", status=400, error=exc, period=None, decisions=[],
                      **context)
    return render("compliance/sla.html", "decisions", error=None, period=period,
                  decisions=sla_queries.kyc_decisions(period), **context)
