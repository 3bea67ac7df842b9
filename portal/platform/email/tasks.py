"""Jobs that deliver the outbox."""

from __future__ import annotations

import uuid

from portal.platform.email import delivery
from portal.platform.jobs import periodic, task


@task(queue="email")
def deliver_email(email_id: str) -> bool:
    return delivery.deliver_one(uuid.UUID(email_id))


@periodic(cron="* * * * *", queue="email")
def sweep_outbox(timestamp: int) -> None:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every minute: retry what is due (failed attempts past their backoff, lost jobs)."""
    delivery.deliver_due()
