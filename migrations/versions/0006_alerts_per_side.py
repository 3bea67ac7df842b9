"""Monitoring alerts per side of a transaction: unique on (transaction, user) instead of on the
transaction, so the sender and the recipient of one transfer can each have an alert

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('uq_monitoring_alerts_transaction', table_name='monitoring_alerts')
    op.create_index('uq_monitoring_alerts_transaction_user', 'monitoring_alerts', ['transactionId', 'userId'],
                    unique=True)


def downgrade():
    # Back to one alert per transaction: of a transaction's alerts, the one with the highest risk
    # score stays (the sender's on a tie, as the single-alert rule chose), so the old index can
    # be built again. The others' cases keep their timeline; the alert rows go.
    op.execute("""
        DELETE FROM monitoring_alerts AS a
         USING monitoring_alerts AS b, transactions AS t
         WHERE a."transactionId" = b."transactionId" AND a.id <> b.id AND t.id = a."transactionId"
           AND (a."riskScore" < b."riskScore"
                OR (a."riskScore" = b."riskScore" AND a."userId" = t."creditUserId"
                    AND b."userId" = t."debitUserId"))
    """)
    op.drop_index('uq_monitoring_alerts_transaction_user', table_name='monitoring_alerts')
    op.create_index('uq_monitoring_alerts_transaction', 'monitoring_alerts', ['transactionId'], unique=True)
