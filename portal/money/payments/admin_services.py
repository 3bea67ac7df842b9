"""Finance's writes about payments that are not a payment's own: running reconciliation from the
admin page and keeping its result, so the page shows the last run whoever ran it.

A run is kept as a ``payments.reconciliation`` metric (value: the number of differences), as
the ledger's verification is (``portal.money.wallets.admin_services``): the counts, who ran it,
and the first differences (the count is always exact; a page shows the first ones anyway).
"""

from __future__ import annotations

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden
from portal.money.payments import reconcile
from portal.platform.analytics.models import Metric
from portal.security.permissions import Permission, has_permission

RECONCILIATION_METRIC = "payments.reconciliation"
#: At most this many differences are kept with a run (the count is exact).
MAX_RECORDED_DIFFERENCES = 200
MAX_MESSAGE_LENGTH = 400
#: The periods finance may reconcile from the page (days; None: every payment).
PERIODS = {"7": 7, "30": 30, "90": 90, "all": None}
DEFAULT_PERIOD = "30"


class InvalidRun(DomainError):
    status_code = 422


def reconciliation_labels(report: reconcile.Report, ran_by: str, period: str, fixed: bool) -> dict:
    """What a run's metric keeps: its counts and settings, who ran it, the first differences."""
    kept = report.differences[:MAX_RECORDED_DIFFERENCES]
    return {
        "payments": report.payments,
        "refunds": report.refunds,
        "fixed": report.fixed if fixed else None,
        "period": period,
        "ran_by": ran_by[:100],
        "difference_count": len(report.differences),
        "differences": [{"kind": d.kind, "payment_id": str(d.payment_id),
                         "refund_id": str(d.refund_id) if d.refund_id else None,
                         "message": d.message[:MAX_MESSAGE_LENGTH]} for d in kept],
        "truncated": len(report.differences) > len(kept),
    }


def reconcile_and_record(actor: User, period: str = DEFAULT_PERIOD, *, fix: bool = False) -> Metric:
    """Reconcile the payments of ``period`` (a key of ``PERIODS``) with their providers and the
    ledger, after applying what the providers say when ``fix``; keep the result. The caller
    commits."""
    if actor is None or not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only finance staff can run reconciliation.")
    if period not in PERIODS:
        raise InvalidRun("Choose the payments of the last 7, 30 or 90 days, or all of them.", field="period")
    report = reconcile.reconcile(days=PERIODS[period], fix=fix)
    metric = Metric(name=RECONCILIATION_METRIC, value=len(report.differences),
                    labels=reconciliation_labels(report, actor.email, period, fix),
                    recorded_at=report.checked_at or utcnow())
    db.session.add(metric)
    db.session.flush()
    return metric
