"""Jobs of the cards: the release of authorization holds not captured in time, and the card
monitoring rules run over the authorizations as they arrive.

Every hour the worker releases the holds whose ``holdExpiresAt`` has passed
(``network.expire_holds``, ``CARD_HOLD_DAYS`` after the authorization). A run that finds more
than one batch leaves the rest to the next; runs after downtime catch up, and two at once
release nothing twice.

Monitoring: an authorization's answer must reach the network within its budget, so nothing of
the rules runs on that path, not even the deferral of a job (a second transaction on the job
queue's connection after every commit). Instead, every ``MONITOR_SLICE_SECONDS`` the worker
judges the authorizations, approved and declined, made in one past slice of time
(``MONITOR_DELAY_SECONDS`` back, far longer than an authorization's transaction lasts, so each
is committed by then): consecutive runs cover consecutive slices, so each authorization is
judged by one run, about a minute after it was decided. Judging twice adds nothing (the alert is
unique per authorization), and the rules look at each authorization's own time, not the run's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)

#: The card monitoring sweep's period and the slice of time each run judges (seconds).
MONITOR_SLICE_SECONDS = 10
#: How far behind the present the judged slice ends.
MONITOR_DELAY_SECONDS = 60


@periodic(cron="7 * * * *", queue="money")
def expire_card_holds(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    from portal.db import db
    from portal.db.context import acting_as
    from portal.money.cards.network import NETWORK_ACTOR, expire_holds

    with acting_as(NETWORK_ACTOR, db.session):
        released = expire_holds()
    if released:
        log.info("released %d expired card hold(s)", released)
    return released


def monitor_slice(end: datetime) -> int:
    """Run the card rules on the authorizations made in the slice that ends at ``end``; returns
    the alerts raised."""
    from portal.compliance.aml import monitoring
    from portal.money.cards.queries import authorizations_between

    ids = authorizations_between(end - timedelta(seconds=MONITOR_SLICE_SECONDS), end)
    alerts = monitoring.monitor_card(ids) if ids else []
    if alerts:
        log.info("card monitoring raised %d alert(s) on %d authorization(s)", len(alerts), len(ids))
    return len(alerts)


@periodic(cron=f"* * * * * */{MONITOR_SLICE_SECONDS}", queue="monitoring")
def monitor_card_activity(timestamp: int) -> int:
    return monitor_slice(datetime.fromtimestamp(timestamp, UTC) - timedelta(seconds=MONITOR_DELAY_SECONDS))
