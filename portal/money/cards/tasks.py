"""Jobs of the cards: the release of authorization holds not captured in time, and the card
monitoring rules run over the authorizations as they arrive.

Every hour the worker releases the holds whose ``holdExpiresAt`` has passed
(``network.expire_holds``, ``CARD_HOLD_DAYS`` after the authorization). A run that finds more
than one batch leaves the rest to the next; runs after downtime catch up, and two at once
release nothing twice.

Monitoring: an authorization's answer must reach the network within its budget, so nothing of
the rules runs on that path, not even the deferral of a job (a second transaction on the job
queue's connection after every commit). Instead, every ``MONITOR_PERIOD_SECONDS`` the worker
judges the authorizations, approved and declined, made since the card sweep's watermark up to
``MONITOR_DELAY_SECONDS`` ago (far longer than an authorization's transaction lasts, so each is
committed by then), and moves the watermark in the same transaction as the alerts
(``portal.compliance.aml.cursors``). A worker down for hours loses nothing: the runs after it
catch up ``MONITOR_BATCH`` authorizations at a time; two workers never judge the same ones.
The rules look at each authorization's own time, not the run's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)

#: The card monitoring sweep's period (seconds).
MONITOR_PERIOD_SECONDS = 10
#: How far behind the present the sweep's watermark stays (seconds).
MONITOR_DELAY_SECONDS = 60
#: Authorizations judged per batch, and batches per run: a run catches up at most their product.
MONITOR_BATCH = 500
MONITOR_BATCHES = 10
#: The card sweep's row in ``monitoring_cursors``.
CURSOR = "card_authorizations"


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


def monitor_backlog(now: datetime | None = None) -> int | None:
    """Run the card rules on the authorizations the sweep has not judged yet, up to
    ``MONITOR_DELAY_SECONDS`` before ``now``; returns the alerts raised, or ``None`` when another
    worker is running the sweep."""
    from portal.compliance.aml import cursors, monitoring
    from portal.money.cards.queries import authorizations_between

    run = cursors.sweep(CURSOR, find=authorizations_between, judge=monitoring.monitor_card,
                        settle=timedelta(seconds=MONITOR_DELAY_SECONDS), batch=MONITOR_BATCH,
                        batches=MONITOR_BATCHES, now=now)
    if run is None:
        return None
    if run.alerts:
        log.info("card monitoring raised %d alert(s) on %d authorization(s)", run.alerts, run.judged)
    return run.alerts


@periodic(cron=f"* * * * * */{MONITOR_PERIOD_SECONDS}", queue="monitoring")
def monitor_card_activity(timestamp: int) -> int | None:  # noqa: ARG001 - the watermark, not the schedule, says what is due
    return monitor_backlog()
