"""Migration 0006 (monitoring alerts per side of a transaction), on a database of its own with
alerts in it: downgrading keeps one alert per transaction (the higher-scoring side) so the old
unique index can be built again, and upgrading brings the per-side index back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, pool, select, text

from tests.conftest import TEST_DB

pytestmark = pytest.mark.no_db_rollback


def _unique_indexes(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {ix["name"]: ix["column_names"] for ix in inspect(conn).get_indexes("monitoring_alerts")
                if ix["unique"]}


def test_downgrade_keeps_the_higher_side_and_upgrade_restores_the_index():
    from flask_migrate import downgrade, upgrade

    from portal.compliance.aml import monitoring
    from portal.compliance.aml.models import MonitoringAlert
    from portal.db import db
    from portal.db.base import utcnow
    from portal.db.context import Actor, acting_as
    from tests.compliance.helpers import transfer
    from tests.db import separate_app
    from tests.factories import create_user
    from tests.money.factories import fund

    with separate_app(f"{TEST_DB}_alerts_mig") as (application, owner_url, _app_url):
        application.config["MONITORING_LARGE_AMOUNTS"] = {"USD": "10000"}
        with application.app_context(), acting_as(Actor.system("tests")):
            sender = create_user("student", created_at=utcnow() - timedelta(days=365))
            newcomer = create_user("student")  # the new-account rule adds to the recipient's side
            fund(sender, "20000")
            tx = transfer(sender, newcomer, "11000")
            db.session.flush()
            alerts = {alert.user_id: alert.risk_score for alert in monitoring.monitor([tx.id])}
            assert set(alerts) == {sender.id, newcomer.id} and alerts[newcomer.id] > alerts[sender.id]
            db.session.commit()
            tx_id, newcomer_id = tx.id, newcomer.id
            db.session.remove()
        engine = create_engine(owner_url, poolclass=pool.NullPool)
        try:
            assert _unique_indexes(engine)["uq_monitoring_alerts_transaction_user"] == ["transactionId", "userId"]
            with application.app_context():
                downgrade(revision="0005")
            indexes = _unique_indexes(engine)
            assert indexes.get("uq_monitoring_alerts_transaction") == ["transactionId"]
            assert "uq_monitoring_alerts_transaction_user" not in indexes
            with engine.begin() as conn:
                conn.execute(text("SELECT set_config('app.role', 'system', true)"))
                kept = conn.execute(select(MonitoringAlert.user_id).where(MonitoringAlert.transaction_id == tx_id)).all()
            assert kept == [(newcomer_id,)]
            with application.app_context():
                upgrade()
            indexes = _unique_indexes(engine)
            assert indexes.get("uq_monitoring_alerts_transaction_user") == ["transactionId", "userId"]
            assert "uq_monitoring_alerts_transaction" not in indexes
        finally:
            engine.dispose()
