"""A committed transfer's monitoring job, on the database queue as production runs it: deferred
once, at the commit, through procrastinate's synchronous pool (no event loop per job)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType
from portal.platform import jobs
from tests.factories import create_user

MONITOR = "portal.compliance.aml.tasks.monitor_transactions"


@pytest.mark.no_db_rollback
def test_a_committed_post_defers_its_monitoring_once_through_the_synchronous_pool():
    from tests.db import separate_app

    with separate_app("azora_test_db_monitoring", JOB_QUEUE="postgres") as (application, _owner, _url), \
            application.app_context(), acting_as(Actor.system("tests")):
        try:
            user = create_user("student")
            deposits = ledger.system_wallet(SystemWallet.DEPOSITS, "USD")
            wallet = ledger.open_user_wallet(user.id, "USD")
            with db.session.begin_nested():
                (tx,) = ledger.post([ledger.Leg(deposits, wallet, Decimal("5"), TransactionType.DEPOSIT)])
            queued = "SELECT args->'transaction_ids' FROM procrastinate_jobs WHERE task_name = :task"
            # Released, not committed: nothing announced yet.
            assert db.session.execute(text(queued), {"task": MONITOR}).all() == []
            db.session.commit()
            assert db.session.execute(text(queued), {"task": MONITOR}).scalars().all() == [[str(tx.id)]]
            connector = jobs.job_app.connector
            assert connector._async_pool is None and connector._sync_connector._pool is not None
        finally:
            db.session.rollback()
            jobs.job_app.connector.get_sync_connector().close()
