"""Jobs of the exchange: refreshing rates from the configured HTTP source."""

from __future__ import annotations

import logging

from flask import current_app

from portal.money.exchange import services
from portal.money.exchange.sources import SourceError
from portal.platform.jobs import periodic

log = logging.getLogger(__name__)


@periodic(cron="*/5 * * * *", queue="money")
def refresh_rates(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every five minutes, when ``EXCHANGE_RATE_URL`` is set: store the source's new rates.

    A failing source is logged and the run ends cleanly (no retry storm): the next run tries
    again, and meanwhile conversions fall back to the next fresh source or are refused as stale.
    Returns how many rates were stored."""
    if not current_app.config.get("EXCHANGE_RATE_URL"):
        return 0
    try:
        result = services.refresh_from_http(None)
    except SourceError as exc:
        log.warning("exchange rate refresh failed: %s", exc.message)
        return 0
    if result.imported:
        log.info("exchange rate refresh stored %d rates (%d skipped)", result.imported, result.skipped)
    return result.imported
