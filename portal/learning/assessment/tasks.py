"""Jobs of the quizzes: close attempts nobody came back to once their deadline has passed."""

from __future__ import annotations

from portal.learning.assessment import services
from portal.platform.jobs import periodic


@periodic(cron="* * * * *", queue="learning")
def close_expired_attempts(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every minute: close and grade every attempt past its deadline (``auto_submitted``), as
    if the student had pressed submit at that moment with the answers saved until then."""
    return services.close_due_attempts()
