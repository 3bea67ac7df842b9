"""Jobs of the ledger: the nightly verification.

The worker runs it at 03:15 UTC every night (a quiet hour), records the result like
``flask ledger verify`` does, and logs an error when the ledger does not verify; the admin
money dashboard shows the last result either way.
"""

from __future__ import annotations

import logging

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)


@periodic(cron="15 3 * * *", queue="money")
def verify_ledger_nightly(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Verify the ledger and record the result; returns the number of problems."""
    from portal.money.wallets.admin_services import verify_and_record

    recorded = verify_and_record("the nightly job")
    if not recorded.ok:
        log.error("ledger verification found %d problem(s), e.g. %s", len(recorded.report.problems),
                  recorded.report.problems[0])
    return len(recorded.report.problems)
