"""System wallet shards: the fees, rewards and exchange wallets are split into shards so that
concurrent movements of different users do not queue on one row lock

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('wallets', sa.Column('shard', sa.SmallInteger(), server_default='0', nullable=False))
    op.create_check_constraint(op.f('ck_wallets_shard_range'), 'wallets',
                               "shard >= 0 AND shard < 64 AND (kind = 'system' OR shard = 0)")
    op.drop_constraint(op.f('uq_wallets_systemName_currency'), 'wallets', type_='unique')
    op.create_unique_constraint(op.f('uq_wallets_systemName_currency_shard'), 'wallets',
                                ['systemName', 'currency', 'shard'])


def downgrade():
    # The ledger is append-only, so rows booked on a shard other than 0 cannot be moved back onto
    # one wallet: the downgrade removes unused shards and refuses while a used one exists.
    op.execute("""
        DELETE FROM wallets AS w
         WHERE w.shard > 0
           AND NOT EXISTS (SELECT 1 FROM transactions AS t
                            WHERE t."debitWalletId" = w.id OR t."creditWalletId" = w.id)
    """)
    op.execute("""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM wallets WHERE shard > 0) THEN
            RAISE EXCEPTION 'system wallet shards other than 0 hold ledger rows; '
                            'this migration cannot be undone without rewriting the ledger';
          END IF;
        END $$
    """)
    op.drop_constraint(op.f('uq_wallets_systemName_currency_shard'), 'wallets', type_='unique')
    op.create_unique_constraint(op.f('uq_wallets_systemName_currency'), 'wallets', ['systemName', 'currency'])
    op.drop_constraint(op.f('ck_wallets_shard_range'), 'wallets', type_='check')
    op.drop_column('wallets', 'shard')
