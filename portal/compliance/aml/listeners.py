"""Connects transaction monitoring to the ledger. ``create_app`` connects the receiver
(``portal.app._connect_listeners``), so every process that moves money is monitored.

The ledger sends ``transaction_committed`` after a commit with the ids of the rows it added;
the receiver defers the monitoring job for them at once (the commit is already done, so there
is nothing to wait for), in batches of ``tasks.BATCH``. A queue that cannot take the job must
not fail the request that moved the money: the failure is logged.
"""

from __future__ import annotations

import logging

from portal import events
from portal.compliance.aml import tasks
from portal.platform import jobs

log = logging.getLogger(__name__)


def defer_monitoring(transaction_ids) -> int:
    """Defer the monitoring job for ``transaction_ids``; returns the number of jobs deferred."""
    ids = [str(tx_id) for tx_id in transaction_ids or ()]
    deferred = 0
    for start in range(0, len(ids), tasks.BATCH):
        try:
            jobs.defer_now(tasks.monitor_transactions, transaction_ids=ids[start:start + tasks.BATCH])
            deferred += 1
        except Exception:
            log.exception("could not defer transaction monitoring for %d transaction(s)",
                          len(ids[start:start + tasks.BATCH]))
    return deferred


@events.transaction_committed.connect
def _on_transaction_committed(_sender=None, *, transaction_ids, **_) -> None:
    defer_monitoring(transaction_ids)
