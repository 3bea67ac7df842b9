"""Billing's job: renewals at each period boundary, then charges and dunning retries.

Every five minutes the worker renews the subscriptions whose period has ended (each period's
invoice once: the subscription row is locked with ``SKIP LOCKED`` so two workers take different
ones, and ``UNIQUE (subscriptionId, periodStart)`` refuses a second invoice whatever happens),
catching up every boundary missed while no worker ran, then charges the open invoices that are
due (first charges and retries on the ``BILLING_RETRY_DAYS`` schedule). Each subscription and
each invoice runs in its own savepoint, so one failure does not stop the others, and running it
again changes nothing that is done.
"""

from __future__ import annotations

from portal.platform.jobs import periodic


@periodic(cron="*/5 * * * *", queue="money")
def run_billing(timestamp: int) -> dict:  # noqa: ARG001 - procrastinate passes the schedule time
    """Renew, then charge and retry; returns the counts."""
    from portal.money.billing import services

    return services.run_due()
