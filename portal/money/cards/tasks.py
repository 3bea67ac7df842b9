"""Jobs of the cards: the release of authorization holds not captured in time.

Every hour the worker releases the holds whose ``holdExpiresAt`` has passed
(``network.expire_holds``, ``CARD_HOLD_DAYS`` after the authorization). A run that finds more
than one batch leaves the rest to the next; runs after downtime catch up, and two at once
release nothing twice.
"""

from __future__ import annotations

import logging

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)


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
