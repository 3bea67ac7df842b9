"""Monitoring cursors: how far each monitoring sweep (card authorizations, ledger movements) has
judged, so a worker down for longer than the job queue catches up leaves no slice unjudged

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 23:55:00.000000

- ``monitoring_cursors`` holds one row per sweep: its name and ``checkedUntil``, moved forward
  by the worker in the transaction that records the sweep's alerts
  (``portal.compliance.aml.cursors``).
- Private to compliance, like the alerts it leads to: admins and system actors (the worker)
  reach every row; compliance officers read them; no one else sees the table has rows.
- The audit trigger records every move of a watermark.
"""
from alembic import op
import sqlalchemy as sa

from portal.db.migration_helpers import Policy, audit_table, disable_rls, drop_audit, enable_rls, roles_may

# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('monitoring_cursors',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('checkedUntil', sa.DateTime(timezone=True), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitoring_cursors')),
    sa.UniqueConstraint('name', name=op.f('uq_monitoring_cursors_name'))
    )
    audit_table("monitoring_cursors")
    enable_rls("monitoring_cursors", roles_may("admin", "system", name="admins"),
               Policy("officers_read", "current_setting('app.role', true) = 'compliance'", command="SELECT"))


def downgrade():
    disable_rls("monitoring_cursors", "admins", "officers_read")
    drop_audit("monitoring_cursors")
    op.drop_table('monitoring_cursors')
