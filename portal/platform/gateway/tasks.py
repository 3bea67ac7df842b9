"""The request log's clean-up job."""

from __future__ import annotations

from flask import current_app

from portal.platform.gateway import logs
from portal.platform.jobs import periodic


@periodic(cron="23 * * * *", queue="maintenance")
def drop_old_api_logs(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every hour: delete the request log rows older than ``API_LOG_RETENTION_DAYS``."""
    return logs.drop_older_than(current_app.config["API_LOG_RETENTION_DAYS"])
