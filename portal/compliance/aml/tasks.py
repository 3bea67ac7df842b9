"""The transaction-monitoring job: runs the rules on the transactions one ledger commit added.

``listeners`` defers it after each commit that posted ledger rows; it runs in the worker as
``system:worker`` (whose role reads every transaction and writes alerts and cases) and commits
once. Running it again for the same ids adds nothing (``monitoring.monitor``). A periodic sweep
catches the movements whose job could not be deferred; it keeps a watermark in the database
(``portal.compliance.aml.cursors``), so runs missed while the worker was down are caught up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from portal.compliance.aml import cursors, monitoring
from portal.platform.jobs import periodic, task

log = logging.getLogger(__name__)

#: The largest batch one job takes: a commit that posted more (a bulk import) is split.
BATCH = 200


@task(queue="monitoring", retry=3)
def monitor_transactions(transaction_ids: list[str]) -> int:
    """Judge the transactions; returns how many alerts were raised."""
    alerts = monitoring.monitor(transaction_ids)
    if alerts:
        log.info("monitoring raised %d alert(s) on %d transaction(s)", len(alerts), len(transaction_ids))
    return len(alerts)


#: The sweep's period, and how long after its commit a movement is judged by it at the earliest
#: (its job has judged it by then, unless the job was never deferred).
SWEEP_MINUTES = 15
SWEEP_DELAY_MINUTES = 5
#: Movements judged per batch, and batches per run (what one run catches up at most).
SWEEP_BATCH = 5000
SWEEP_BATCHES = 4
#: The sweep's row in ``monitoring_cursors``.
CURSOR = "ledger_movements"


def sweep_backlog(now: datetime | None = None) -> int | None:
    """Judge the movements without an alert committed since the sweep's watermark, up to
    ``SWEEP_DELAY_MINUTES`` before ``now``: those whose job was never deferred (the queue was
    down at their commit) are caught here. Movements judged before raise nothing new
    (``monitor`` is idempotent). Returns the alerts raised, or ``None`` when another worker is
    running the sweep."""
    run = cursors.sweep(CURSOR, find=monitoring.unjudged_between, judge=monitoring.monitor,
                        settle=timedelta(minutes=SWEEP_DELAY_MINUTES), batch=SWEEP_BATCH, batches=SWEEP_BATCHES,
                        now=now)
    if run is None:
        return None
    if run.alerts:
        log.warning("the monitoring sweep raised %d alert(s) missed at commit time", run.alerts)
    return run.alerts


@periodic(cron=f"*/{SWEEP_MINUTES} * * * *", queue="monitoring")
def sweep_unjudged(timestamp: int) -> int | None:  # noqa: ARG001 - the watermark, not the schedule, says what is due
    return sweep_backlog()
