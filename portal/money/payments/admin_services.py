"""Finance's writes about payments that are not a payment's own: running reconciliation from the
admin page ("Run now") over a chosen period. The run is recorded as every run is
(``reconcile.reconcile_and_record``), so the page shows the last one whoever ran it: this
page, ``flask payments reconcile`` or the nightly job.
"""

from __future__ import annotations

from portal.accounts.models import User
from portal.errors import DomainError, Forbidden
from portal.money.payments import reconcile
from portal.money.payments.providers.base import ProviderError
from portal.security.permissions import Permission, has_permission

#: The periods finance may reconcile from the page (days; None: every payment).
PERIODS = {"7": 7, "30": 30, "90": 90, "all": None}
DEFAULT_PERIOD = "30"


class InvalidRun(DomainError):
    status_code = 422


class ProviderNotReached(DomainError):
    """A provider error the run could not get past (a provider that cannot be set up is listed
    per payment instead): the run stopped and recorded nothing."""

    status_code = 503


def reconcile_and_record(actor: User, period: str = DEFAULT_PERIOD, *, fix: bool = False) -> reconcile.Report:
    """Reconcile the payments of ``period`` (a key of ``PERIODS``) with their providers and the
    ledger, after applying what the providers say when ``fix``; record the run. The caller
    commits."""
    if actor is None or not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only finance staff can run reconciliation.")
    if period not in PERIODS:
        raise InvalidRun("Choose the payments of the last 7, 30 or 90 days, or all of them.", field="period")
    try:
        return reconcile.reconcile_and_record(actor.email, days=PERIODS[period], fix=fix)
    except ProviderError as exc:
        raise ProviderNotReached(f"Reconciliation could not run: {exc}") from exc
