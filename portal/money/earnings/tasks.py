"""Jobs of the earnings: pay the rewards that could not be paid when they were earned."""

from __future__ import annotations

from portal.money.earnings import services
from portal.platform.jobs import periodic


@periodic(cron="17 * * * *", queue="money")
def pay_pending_earnings(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Every hour: pay pending earnings whose wallet can now receive money (a batch per run;
    those still refused stay pending for the next run or an admin)."""
    return services.pay_pending().paid
