"""Billing (spec service 1): plans, subscriptions, invoices, their lines, the per-year invoice
number counters and the dunning attempts; the ledger's new transaction type and system wallet

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 20:38:14.552672

- ``subscriptions``, ``invoices``, ``invoice_lines`` and ``dunning_attempts`` are private to the
  subscriber: a student reaches their own rows; admins, compliance officers, system actors
  (jobs, commands), the ledger and ``billing`` (the role billing acts with to read another
  user's entitlements and number invoices) reach all of them.
- ``plans`` are read by every identified actor (students compare them); only admins, system
  actors and ``billing`` change them.
- ``invoice_numbers`` hold counters, no one's data: only ``billing``, admins and system actors.
- Every new table gets the audit trigger.
- ``transactions.type`` and ``transaction_fees.transactionType`` gain ``subscription``;
  ``wallets.systemName`` gains ``billing`` (subscription revenue).
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import CURRENT_ROLE, Policy, audit_table, disable_rls, drop_audit, enable_rls, own_rows, roles_may

# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

TABLES = ("plans", "subscriptions", "invoices", "invoice_lines", "invoice_numbers", "dunning_attempts")
SUBSCRIBER_PRIVATE = ("subscriptions", "invoices", "invoice_lines", "dunning_attempts")
STAFF = ("admin", "compliance", "system", "ledger", "billing")

OLD_TRANSACTION_TYPES = ("deposit", "transfer", "fee", "conversion", "reward", "withdrawal", "reversal",
                         "top_up", "purchase", "refund", "card_purchase", "card_refund")
NEW_TRANSACTION_TYPES = OLD_TRANSACTION_TYPES + ("subscription",)
OLD_SYSTEM_WALLETS = ("deposits", "withdrawals", "rewards", "fees", "exchange", "card_float", "loan_book",
                      "clearing_sandbox", "clearing_stripe", "sales", "provider_fees")
NEW_SYSTEM_WALLETS = OLD_SYSTEM_WALLETS + ("billing",)

#: (table, constraint, column, old values, new values)
ENUM_CHECKS = (
    ("transactions", "ck_transactions_type", "type", OLD_TRANSACTION_TYPES, NEW_TRANSACTION_TYPES),
    ("transaction_fees", "ck_transaction_fees_transaction_type", "transactionType", OLD_TRANSACTION_TYPES,
     NEW_TRANSACTION_TYPES),
    ("wallets", "ck_wallets_system_name", "systemName", OLD_SYSTEM_WALLETS, NEW_SYSTEM_WALLETS),
)


def _enum_check(table, name, column, values):
    listed = ", ".join(f"'{v}'" for v in values)
    op.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS {name}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} CHECK ("{column}" IN ({listed}))')


def upgrade():
    op.create_table('invoice_numbers',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('lastNumber', sa.Integer(), server_default='0', nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('"lastNumber" >= 0', name=op.f('ck_invoice_numbers_last_number_not_negative')),
    sa.CheckConstraint('year BETWEEN 2000 AND 9999', name=op.f('ck_invoice_numbers_year_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_numbers')),
    sa.UniqueConstraint('year', name=op.f('uq_invoice_numbers_year'))
    )
    op.create_table('plans',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('description', sa.String(length=500), server_default='', nullable=False),
    sa.Column('price', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('interval', sa.Enum('monthly', 'yearly', name='interval', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('trialDays', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('entitlements', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.Enum('active', 'archived', name='status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('position', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('archivedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("code ~ '^[a-z0-9_-]{1,40}$'", name=op.f('ck_plans_code_format')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_plans_currency_known')),
    sa.CheckConstraint('"trialDays" BETWEEN 0 AND 365', name=op.f('ck_plans_trial_days_range')),
    sa.CheckConstraint('(status = \'archived\') = ("archivedAt" IS NOT NULL)', name=op.f('ck_plans_archived_when')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_plans_price_not_negative')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_plans_version_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plans')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_plans_code_version'))
    )
    op.create_index(op.f('ix_plans_status'), 'plans', ['status'], unique=False)
    op.create_index('uq_plans_one_active_version', 'plans', ['code'], unique=True, postgresql_where=sa.text("status = 'active'"))
    op.create_table('subscriptions',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('planId', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('trialing', 'active', 'past_due', 'canceled', name='status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('anchorAt', sa.DateTime(timezone=True), nullable=False),
    sa.Column('anchorDay', sa.SmallInteger(), nullable=False),
    sa.Column('periodIndex', sa.Integer(), server_default='0', nullable=False),
    sa.Column('currentPeriodStart', sa.DateTime(timezone=True), nullable=False),
    sa.Column('currentPeriodEnd', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trialEnd', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelAtPeriodEnd', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('scheduledPlanId', sa.Uuid(), nullable=True),
    sa.Column('canceledAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('endedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('endReason', sa.String(length=40), nullable=True),
    sa.Column('pastDueSince', sa.DateTime(timezone=True), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('"anchorDay" BETWEEN 1 AND 31', name=op.f('ck_subscriptions_anchor_day_range')),
    sa.CheckConstraint('"currentPeriodEnd" > "currentPeriodStart"', name=op.f('ck_subscriptions_period_forward')),
    sa.CheckConstraint('"periodIndex" >= 0', name=op.f('ck_subscriptions_period_index_not_negative')),
    sa.CheckConstraint('(status = \'canceled\') = ("endedAt" IS NOT NULL)', name=op.f('ck_subscriptions_ended_when_canceled')),
    sa.CheckConstraint('(status = \'past_due\') = ("pastDueSince" IS NOT NULL)', name=op.f('ck_subscriptions_past_due_since')),
    sa.CheckConstraint('status <> \'trialing\' OR "trialEnd" IS NOT NULL', name=op.f('ck_subscriptions_trial_has_end')),
    sa.ForeignKeyConstraint(['planId'], ['plans.id'], name=op.f('fk_subscriptions_planId_plans'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['scheduledPlanId'], ['plans.id'], name=op.f('fk_subscriptions_scheduledPlanId_plans'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_subscriptions_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    op.create_index('ix_subscriptions_due', 'subscriptions', ['status', 'currentPeriodEnd'], unique=False)
    op.create_index(op.f('ix_subscriptions_planId'), 'subscriptions', ['planId'], unique=False)
    op.create_index(op.f('ix_subscriptions_scheduledPlanId'), 'subscriptions', ['scheduledPlanId'], unique=False)
    op.create_index(op.f('ix_subscriptions_status'), 'subscriptions', ['status'], unique=False)
    op.create_index(op.f('ix_subscriptions_userId'), 'subscriptions', ['userId'], unique=False)
    op.create_index('ix_subscriptions_user_created', 'subscriptions', ['userId', sa.literal_column('"createdAt" DESC')], unique=False)
    op.create_index('uq_subscriptions_one_live', 'subscriptions', ['userId'], unique=True, postgresql_where=sa.text("status <> 'canceled'"))
    op.create_table('invoices',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('subscriptionId', sa.Uuid(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Enum('cycle', 'change', name='reason', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('status', sa.Enum('draft', 'open', 'paid', 'void', 'uncollectible', name='status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('total', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('periodStart', sa.DateTime(timezone=True), nullable=False),
    sa.Column('periodEnd', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dueAt', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paidAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voidedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attemptCount', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('nextAttemptAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ledgerGroupId', sa.Uuid(), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("number ~ '^INV-[0-9]{4}-[0-9]{6,}$'", name=op.f('ck_invoices_number_format')),
    sa.CheckConstraint('"attemptCount" >= 0', name=op.f('ck_invoices_attempt_count_not_negative')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_invoices_currency_known')),
    sa.CheckConstraint('"periodEnd" > "periodStart"', name=op.f('ck_invoices_period_forward')),
    sa.CheckConstraint('(status = \'paid\') = ("paidAt" IS NOT NULL)', name=op.f('ck_invoices_paid_when')),
    sa.CheckConstraint('(status = \'void\') = ("voidedAt" IS NOT NULL)', name=op.f('ck_invoices_voided_when')),
    sa.CheckConstraint('status = \'open\' OR "nextAttemptAt" IS NULL', name=op.f('ck_invoices_attempts_only_when_open')),
    sa.CheckConstraint('total >= 0', name=op.f('ck_invoices_total_not_negative')),
    sa.ForeignKeyConstraint(['subscriptionId'], ['subscriptions.id'], name=op.f('fk_invoices_subscriptionId_subscriptions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_invoices_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('subscriptionId', 'periodStart', name=op.f('uq_invoices_subscriptionId_periodStart'))
    )
    op.create_index('ix_invoices_charge_due', 'invoices', ['nextAttemptAt'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index('ix_invoices_created', 'invoices', [sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index(op.f('ix_invoices_ledgerGroupId'), 'invoices', ['ledgerGroupId'], unique=False)
    op.create_index(op.f('ix_invoices_status'), 'invoices', ['status'], unique=False)
    op.create_index(op.f('ix_invoices_userId'), 'invoices', ['userId'], unique=False)
    op.create_index('ix_invoices_user_created', 'invoices', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_table('dunning_attempts',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('invoiceId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('attempt', sa.SmallInteger(), nullable=False),
    sa.Column('attemptedAt', sa.DateTime(timezone=True), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('message', sa.String(length=300), server_default='', nullable=False),
    sa.Column('nextAttemptAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('attempt >= 1', name=op.f('ck_dunning_attempts_attempt_positive')),
    sa.ForeignKeyConstraint(['invoiceId'], ['invoices.id'], name=op.f('fk_dunning_attempts_invoiceId_invoices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_dunning_attempts_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dunning_attempts')),
    sa.UniqueConstraint('invoiceId', 'attempt', name=op.f('uq_dunning_attempts_invoiceId_attempt'))
    )
    op.create_index(op.f('ix_dunning_attempts_userId'), 'dunning_attempts', ['userId'], unique=False)
    op.create_table('invoice_lines',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('invoiceId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('kind', sa.Enum('plan', 'proration_credit', 'proration_debit', name='kind', native_enum=False, create_constraint=True, length=30), nullable=False),
    sa.Column('planId', sa.Uuid(), nullable=True),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(kind = 'proration_credit') = (amount < 0) OR amount = 0", name=op.f('ck_invoice_lines_credit_negative')),
    sa.ForeignKeyConstraint(['invoiceId'], ['invoices.id'], name=op.f('fk_invoice_lines_invoiceId_invoices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['planId'], ['plans.id'], name=op.f('fk_invoice_lines_planId_plans'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_invoice_lines_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_lines')),
    sa.UniqueConstraint('invoiceId', 'position', name=op.f('uq_invoice_lines_invoiceId_position'))
    )
    op.create_index(op.f('ix_invoice_lines_invoiceId'), 'invoice_lines', ['invoiceId'], unique=False)
    op.create_index(op.f('ix_invoice_lines_planId'), 'invoice_lines', ['planId'], unique=False)
    op.create_index(op.f('ix_invoice_lines_userId'), 'invoice_lines', ['userId'], unique=False)

    for table, name, column, _old, new in ENUM_CHECKS:
        _enum_check(table, name, column, new)
    for table in TABLES:
        audit_table(table)
    for table in SUBSCRIBER_PRIVATE:
        enable_rls(table, own_rows(), roles_may(*STAFF, name="billing_staff"))
    enable_rls("plans", Policy("plans_read", f"coalesce({CURRENT_ROLE}, '') <> ''", command="SELECT"),
               roles_may("admin", "system", "billing", name="plans_write"))
    enable_rls("invoice_numbers", roles_may("admin", "system", "billing", name="invoice_numbers_staff"))


def downgrade():
    disable_rls("invoice_numbers", "invoice_numbers_staff")
    disable_rls("plans", "plans_read", "plans_write")
    for table in SUBSCRIBER_PRIVATE:
        disable_rls(table, "own_rows", "billing_staff")
    for table in TABLES:
        drop_audit(table)
    # Rows that use the new values stop the downgrade (the constraint refuses them): the
    # ledger is append-only, so they cannot be rewritten here.
    for table, name, column, old, _new in ENUM_CHECKS:
        _enum_check(table, name, column, old)
    op.drop_index(op.f('ix_invoice_lines_userId'), table_name='invoice_lines')
    op.drop_index(op.f('ix_invoice_lines_planId'), table_name='invoice_lines')
    op.drop_index(op.f('ix_invoice_lines_invoiceId'), table_name='invoice_lines')
    op.drop_table('invoice_lines')
    op.drop_index(op.f('ix_dunning_attempts_userId'), table_name='dunning_attempts')
    op.drop_table('dunning_attempts')
    op.drop_index('ix_invoices_user_created', table_name='invoices')
    op.drop_index(op.f('ix_invoices_userId'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_status'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_ledgerGroupId'), table_name='invoices')
    op.drop_index('ix_invoices_created', table_name='invoices')
    op.drop_index('ix_invoices_charge_due', table_name='invoices', postgresql_where=sa.text("status = 'open'"))
    op.drop_table('invoices')
    op.drop_index('uq_subscriptions_one_live', table_name='subscriptions', postgresql_where=sa.text("status <> 'canceled'"))
    op.drop_index('ix_subscriptions_user_created', table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_userId'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_status'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_scheduledPlanId'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_planId'), table_name='subscriptions')
    op.drop_index('ix_subscriptions_due', table_name='subscriptions')
    op.drop_table('subscriptions')
    op.drop_index('uq_plans_one_active_version', table_name='plans', postgresql_where=sa.text("status = 'active'"))
    op.drop_index(op.f('ix_plans_status'), table_name='plans')
    op.drop_table('plans')
    op.drop_table('invoice_numbers')
