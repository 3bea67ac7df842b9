"""The transaction-monitoring job: runs the rules on the transactions one ledger commit added.

``listeners`` defers it after each commit that posted ledger rows; it runs in the worker as
``system:worker`` (whose role reads every transaction and writes alerts and cases) and commits
once. Running it again for the same ids adds nothing (``monitoring.monitor``). A periodic sweep
catches the movements whose job could not be deferred.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from portal.compliance.aml import monitoring
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


@task(queue="monitoring", retry=3)
def monitor_card_transactions(card_transaction_ids: list[str]) -> int:
    """Run the card rules on card authorizations (deferred by the card network's side after its
    commit); returns how many alerts were raised."""
    alerts = monitoring.monitor_card(card_transaction_ids)
    if alerts:
        log.info("card monitoring raised %d alert(s)", len(alerts))
    return len(alerts)


#: The sweep's schedule and the slice of time each run covers: consecutive runs cover consecutive
#: slices, so every movement is looked at by exactly one sweep, a few minutes after its commit.
SWEEP_MINUTES = 15
SWEEP_DELAY_MINUTES = 5


@periodic(cron=f"*/{SWEEP_MINUTES} * * * *", queue="monitoring")
def sweep_unjudged(timestamp: int) -> int:
    """Judge the movements of one past slice of time that have no alert: those whose job was
    never deferred (the queue was down at their commit) are caught here. Movements judged
    before raise nothing new (``monitor`` is idempotent); returns the alerts raised."""
    end = datetime.fromtimestamp(timestamp, UTC) - timedelta(minutes=SWEEP_DELAY_MINUTES)
    ids = monitoring.unjudged_between(end - timedelta(minutes=SWEEP_MINUTES), end)
    alerts = monitoring.monitor(ids)
    if alerts:
        log.warning("the monitoring sweep raised %d alert(s) missed at commit time", len(alerts))
    return len(alerts)
