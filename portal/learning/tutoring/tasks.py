"""Jobs of the tutor: end conversations nobody came back to."""

from __future__ import annotations

from portal.learning.tutoring import services
from portal.platform.jobs import periodic


@periodic(cron="*/5 * * * *", queue="learning")
def end_idle_tutoring_sessions(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every five minutes: end each conversation idle for ``TUTOR_SESSION_IDLE_MINUTES`` at its
    last message, so its duration is the time actually spent in it."""
    return services.end_idle_sessions()
