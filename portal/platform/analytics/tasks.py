"""The analytics jobs: hourly and daily rollups, and the upkeep of the events' partitions."""

from __future__ import annotations

import logging

from portal.platform.analytics import capture, partitions, rollups
from portal.platform.jobs import periodic

log = logging.getLogger(__name__)


@periodic(cron="5 * * * *", queue="analytics")
def roll_up_hours(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Five past every hour: roll up every finished hour not rolled up yet (catching up after
    downtime). Also writes the worker's own buffered events. Returns the hours computed."""
    capture.flush()
    return len(rollups.rollup("hour"))


@periodic(cron="20 0 * * *", queue="analytics")
def roll_up_days_and_partitions(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Daily: make the coming months' partitions, drop the expired ones, roll up every finished
    day not rolled up yet. Returns the days computed."""
    made = partitions.ensure_ahead()
    dropped = partitions.drop_expired()
    if made or dropped:
        log.info("events partitions: made %s, dropped %s", made, dropped)
    return len(rollups.rollup("day"))
