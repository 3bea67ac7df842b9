"""Migration 0007 (system wallet shards), on a database of its own: downgrading removes the
unused shards and brings the one-wallet-per-name index back, but refuses while a shard other
than 0 holds ledger rows (the append-only ledger cannot be moved onto one wallet)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import create_engine, inspect, pool, text

from tests.conftest import TEST_DB

pytestmark = pytest.mark.no_db_rollback


def _unique_constraints(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {uc["name"]: uc["column_names"] for uc in inspect(conn).get_unique_constraints("wallets")}


def _as_system(conn) -> None:
    """Wallets and transactions have row-level security forced, even for their owner."""
    conn.execute(text("SELECT set_config('app.role', 'system', true), set_config('app.actor', 'system:tests', true)"))


def _shards(engine) -> list[int]:
    with engine.begin() as conn:
        _as_system(conn)
        return sorted(conn.execute(text("SELECT shard FROM wallets WHERE kind = 'system'")).scalars())


def test_downgrade_refuses_while_a_shard_holds_rows_and_drops_unused_ones():
    from flask_migrate import downgrade

    from portal.db import db
    from portal.db.context import Actor, acting_as
    from portal.money.wallets import ledger
    from portal.money.wallets.models import SYSTEM_SHARDS, SystemWallet, TransactionType
    from tests.db import separate_app
    from tests.factories import create_user

    with separate_app(f"{TEST_DB}_shards_mig") as (application, owner_url, _app_url):
        with application.app_context(), acting_as(Actor.system("tests")):
            user = create_user("student")
            while user.id.int % SYSTEM_SHARDS[SystemWallet.FEES] == 0:  # a student on a shard other than 0
                user = create_user("student")
            wallet = ledger.open_user_wallet(user.id, "USD")
            ledger.post([ledger.Leg(ledger.system_wallet(SystemWallet.DEPOSITS, "USD"), wallet, Decimal("10"),
                                    TransactionType.DEPOSIT)])
            used = ledger.system_wallet(SystemWallet.FEES, "USD", spread_by=user.id)
            ledger.system_wallet(SystemWallet.REWARDS, "USD", spread_by=user.id)  # made, never used
            ledger.post([ledger.Leg(wallet, used, Decimal("1"), TransactionType.FEE)])
            db.session.commit()
            used_id = used.id
            db.session.remove()
        engine = create_engine(owner_url, poolclass=pool.NullPool)
        try:
            assert _unique_constraints(engine)["uq_wallets_systemName_currency_shard"] == [
                "systemName", "currency", "shard"]
            with application.app_context(), pytest.raises(Exception, match="cannot be undone"):
                downgrade(revision="0006")
            assert "uq_wallets_systemName_currency_shard" in _unique_constraints(engine)  # nothing changed
            assert len([s for s in _shards(engine) if s > 0]) == 2

            # Once the shard's rows are gone (a test may do what an operator may not), every shard
            # is unused: the downgrade removes them and the old constraint comes back.
            with engine.begin() as conn:
                _as_system(conn)
                conn.execute(text('DELETE FROM transactions WHERE "creditWalletId" = :id'), {"id": used_id})
            with application.app_context():
                downgrade(revision="0006")
            assert _unique_constraints(engine).get("uq_wallets_systemName_currency") == ["systemName", "currency"]
            with engine.begin() as conn:
                _as_system(conn)
                assert "shard" not in {c["name"] for c in inspect(conn).get_columns("wallets")}
                assert conn.execute(text("SELECT count(*) FROM wallets WHERE id = :id"), {"id": used_id}).scalar() == 0
                names = conn.execute(text("""SELECT "systemName" FROM wallets WHERE kind = 'system' """)).scalars().all()
            assert names == ["deposits"]  # the fees and rewards wallets are made again on first use
        finally:
            engine.dispose()
