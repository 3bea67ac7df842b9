"""The cache's clean-up job."""

from __future__ import annotations

from portal.platform.cache import services
from portal.platform.jobs import periodic


@periodic(cron="* * * * *", queue="cache")
def clear_expired_cache(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every minute: delete the entries past their grace (one statement; reads already skip
    them) and write the worker's own lookup counts to ``metrics``. Returns how many went."""
    removed = services.clear_expired()
    services.flush_metrics()
    return removed
