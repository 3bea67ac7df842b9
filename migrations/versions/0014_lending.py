"""Lending (spec service 2): loan products, loans, their instalments, repayments, collaterals,
each loan's events, risk assessments and the daily penalty accruals; the ledger's new
transaction types and the loan-losses system wallet

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 20:49:21.455425

- ``loans``, ``loan_instalments``, ``repayments``, ``collaterals``, ``loan_events``,
  ``loan_assessments`` and ``loan_accruals`` are private to the borrower: a student reaches their
  own rows; admins (loan officers), system actors (jobs, commands) and the ledger reach all of
  them; compliance officers read all of them and change none.
- ``loan_products`` is the catalogue: every identified actor reads it; admins and system actors
  change it.
- Every new table gets the audit trigger.
- ``transactions.type`` and ``transaction_fees.transactionType`` gain ``loan_disbursement``,
  ``loan_repayment``, ``loan_collateral``, ``loan_liquidation`` and ``loan_write_off``;
  ``wallets.systemName`` gains ``loan_losses``.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import Policy, audit_table, disable_rls, drop_audit, enable_rls, identified, own_rows, roles_may

# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLES = ("loan_products", "loans", "loan_instalments", "repayments", "collaterals", "loan_events",
          "loan_assessments", "loan_accruals")
BORROWER_PRIVATE = TABLES[1:]
OFFICERS = ("admin", "system", "ledger")

OLD_TRANSACTION_TYPES = ("deposit", "transfer", "fee", "conversion", "reward", "withdrawal", "reversal",
                         "top_up", "purchase", "refund", "card_purchase", "card_refund", "subscription")
NEW_TRANSACTION_TYPES = OLD_TRANSACTION_TYPES + ("loan_disbursement", "loan_repayment", "loan_collateral",
                                                 "loan_liquidation", "loan_write_off")
OLD_SYSTEM_WALLETS = ("deposits", "withdrawals", "rewards", "fees", "exchange", "card_float", "loan_book",
                      "clearing_sandbox", "clearing_stripe", "sales", "provider_fees", "billing")
NEW_SYSTEM_WALLETS = OLD_SYSTEM_WALLETS + ("loan_losses",)

#: (table, constraint, column, old values, new values)
ENUM_CHECKS = (
    ("transactions", "ck_transactions_type", "type", OLD_TRANSACTION_TYPES, NEW_TRANSACTION_TYPES),
    ("transaction_fees", "ck_transaction_fees_transaction_type", "transactionType", OLD_TRANSACTION_TYPES,
     NEW_TRANSACTION_TYPES),
    ("wallets", "ck_wallets_system_name", "systemName", OLD_SYSTEM_WALLETS, NEW_SYSTEM_WALLETS),
)

COMPLIANCE_READS = Policy("compliance_reads", "current_setting('app.role', true) = 'compliance'", command="SELECT")
CATALOGUE_READ = Policy("catalogue_read", identified().using, command="SELECT")


def _enum_check(table, name, column, values):
    listed = ", ".join(f"'{v}'" for v in values)
    op.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS {name}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} CHECK ("{column}" IN ({listed}))')


def upgrade():
    op.create_table('loan_products',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('minAmount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('maxAmount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('minTerm', sa.SmallInteger(), nullable=False),
    sa.Column('maxTerm', sa.SmallInteger(), nullable=False),
    sa.Column('frequency', sa.String(length=10), nullable=False),
    sa.Column('interestMethod', sa.String(length=12), nullable=False),
    sa.Column('amortization', sa.String(length=20), nullable=False),
    sa.Column('annualRate', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('feePercent', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('feeFixed', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('grace', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('penaltyDailyPercent', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("amortization IN ('equal_instalments', 'equal_principal')", name=op.f('ck_loan_products_amortization_known')),
    sa.CheckConstraint("frequency IN ('monthly', 'weekly')", name=op.f('ck_loan_products_frequency_known')),
    sa.CheckConstraint('"annualRate" >= 0 AND "annualRate" <= 100', name=op.f('ck_loan_products_rate_range')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_loan_products_currency_known')),
    sa.CheckConstraint('"feePercent" >= 0 AND "feePercent" <= 20 AND "feeFixed" >= 0', name=op.f('ck_loan_products_fee_range')),
    sa.CheckConstraint('"interestMethod" IN (\'flat\', \'declining\')', name=op.f('ck_loan_products_interest_method_known')),
    sa.CheckConstraint('"minAmount" > 0 AND "maxAmount" >= "minAmount"', name=op.f('ck_loan_products_amount_range')),
    sa.CheckConstraint('"minTerm" >= 1 AND "maxTerm" >= "minTerm" AND "maxTerm" <= 520', name=op.f('ck_loan_products_term_range')),
    sa.CheckConstraint('"penaltyDailyPercent" >= 0 AND "penaltyDailyPercent" <= 1', name=op.f('ck_loan_products_penalty_range')),
    sa.CheckConstraint('grace >= 0 AND grace < "maxTerm"', name=op.f('ck_loan_products_grace_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_products')),
    sa.UniqueConstraint('name', name=op.f('uq_loan_products_name'))
    )
    op.create_table('loans',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('productId', sa.Uuid(), nullable=False),
    sa.Column('state', sa.Enum('submitted', 'approved', 'active', 'closed', 'written_off', 'restructured', 'rejected', 'withdrawn', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('principal', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('term', sa.SmallInteger(), nullable=False),
    sa.Column('annualRate', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('frequency', sa.String(length=10), nullable=False),
    sa.Column('interestMethod', sa.String(length=12), nullable=False),
    sa.Column('amortization', sa.String(length=20), nullable=False),
    sa.Column('grace', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('fee', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('penaltyDailyPercent', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('apr', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('totalCost', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('purpose', sa.String(length=300), server_default='', nullable=False),
    sa.Column('idempotencyKey', sa.String(length=100), nullable=False),
    sa.Column('counterOffered', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('acceptedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approvedById', sa.Uuid(), nullable=True),
    sa.Column('confirmedById', sa.Uuid(), nullable=True),
    sa.Column('decidedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decisionReason', sa.String(length=500), server_default='', nullable=False),
    sa.Column('disbursedOn', sa.Date(), nullable=True),
    sa.Column('closedOn', sa.Date(), nullable=True),
    sa.Column('autoRepay', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('disbursementGroupId', sa.Uuid(), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("amortization IN ('equal_instalments', 'equal_principal')", name=op.f('ck_loans_amortization_known')),
    sa.CheckConstraint("frequency IN ('monthly', 'weekly')", name=op.f('ck_loans_frequency_known')),
    sa.CheckConstraint('"annualRate" >= 0 AND "annualRate" <= 100', name=op.f('ck_loans_rate_range')),
    sa.CheckConstraint('"confirmedById" IS NULL OR "confirmedById" <> "approvedById"', name=op.f('ck_loans_four_eyes')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_loans_currency_known')),
    sa.CheckConstraint('"interestMethod" IN (\'flat\', \'declining\')', name=op.f('ck_loans_interest_method_known')),
    sa.CheckConstraint('fee >= 0 AND fee < principal', name=op.f('ck_loans_fee_range')),
    sa.CheckConstraint('grace >= 0 AND grace < term', name=op.f('ck_loans_grace_range')),
    sa.CheckConstraint('principal > 0', name=op.f('ck_loans_principal_positive')),
    sa.CheckConstraint('state NOT IN (\'active\', \'closed\', \'written_off\', \'restructured\')\n                           OR "disbursedOn" IS NOT NULL', name=op.f('ck_loans_disbursed_when_running')),
    sa.CheckConstraint('term >= 1', name=op.f('ck_loans_term_positive')),
    sa.ForeignKeyConstraint(['approvedById'], ['users.id'], name=op.f('fk_loans_approvedById_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['confirmedById'], ['users.id'], name=op.f('fk_loans_confirmedById_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['productId'], ['loan_products.id'], name=op.f('fk_loans_productId_loan_products'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_loans_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loans')),
    sa.UniqueConstraint('userId', 'idempotencyKey', name=op.f('uq_loans_userId_idempotencyKey'))
    )
    op.create_index(op.f('ix_loans_approvedById'), 'loans', ['approvedById'], unique=False)
    op.create_index(op.f('ix_loans_confirmedById'), 'loans', ['confirmedById'], unique=False)
    op.create_index(op.f('ix_loans_disbursementGroupId'), 'loans', ['disbursementGroupId'], unique=False)
    op.create_index(op.f('ix_loans_productId'), 'loans', ['productId'], unique=False)
    op.create_index(op.f('ix_loans_state'), 'loans', ['state'], unique=False)
    op.create_index('ix_loans_state_created', 'loans', ['state', sa.literal_column('"createdAt"'), sa.literal_column('id')], unique=False)
    op.create_index(op.f('ix_loans_userId'), 'loans', ['userId'], unique=False)
    op.create_index('ix_loans_user_created', 'loans', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('uq_loans_one_open_application', 'loans', ['userId'], unique=True, postgresql_where=sa.text("state IN ('submitted', 'approved')"))
    op.create_table('loan_accruals',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('overdueInstalments', sa.Integer(), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_loan_accruals_amount_not_negative')),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_loan_accruals_loanId_loans'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_loan_accruals_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_accruals')),
    sa.UniqueConstraint('loanId', 'day', name=op.f('uq_loan_accruals_loanId_day'))
    )
    op.create_index(op.f('ix_loan_accruals_userId'), 'loan_accruals', ['userId'], unique=False)
    op.create_table('loan_assessments',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=True),
    sa.Column('score', sa.SmallInteger(), nullable=False),
    sa.Column('limitAmount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('band', sa.String(length=2), nullable=False),
    sa.Column('rateMargin', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("band IN ('A', 'B', 'C', 'D', 'E')", name=op.f('ck_loan_assessments_band_known')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_loan_assessments_currency_known')),
    sa.CheckConstraint('"limitAmount" >= 0', name=op.f('ck_loan_assessments_limit_not_negative')),
    sa.CheckConstraint('score BETWEEN 0 AND 100', name=op.f('ck_loan_assessments_score_range')),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_loan_assessments_loanId_loans'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_loan_assessments_userId_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_assessments'))
    )
    op.create_index(op.f('ix_loan_assessments_loanId'), 'loan_assessments', ['loanId'], unique=False)
    op.create_index(op.f('ix_loan_assessments_userId'), 'loan_assessments', ['userId'], unique=False)
    op.create_table('loan_events',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('actorId', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('fromState', sa.String(length=20), nullable=True),
    sa.Column('toState', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=500), server_default='', nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actorId'], ['users.id'], name=op.f('fk_loan_events_actorId_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_loan_events_loanId_loans'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_loan_events_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_events'))
    )
    op.create_index(op.f('ix_loan_events_actorId'), 'loan_events', ['actorId'], unique=False)
    op.create_index('ix_loan_events_loan_created', 'loan_events', ['loanId', sa.literal_column('"createdAt"'), sa.literal_column('id')], unique=False)
    op.create_index(op.f('ix_loan_events_userId'), 'loan_events', ['userId'], unique=False)
    op.create_table('loan_instalments',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('number', sa.SmallInteger(), nullable=False),
    sa.Column('dueOn', sa.Date(), nullable=False),
    sa.Column('state', sa.Enum('due', 'partially_paid', 'paid', 'overdue', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('principal', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('interest', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('fee', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('penalty', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('principalPaid', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('interestPaid', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('feePaid', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('penaltyPaid', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('interestWaived', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('paidOn', sa.Date(), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('"feePaid" >= 0 AND "feePaid" <= fee', name=op.f('ck_loan_instalments_fee_paid_range')),
    sa.CheckConstraint('"interestPaid" >= 0 AND "interestWaived" >= 0 AND "interestPaid" + "interestWaived" <= interest', name=op.f('ck_loan_instalments_interest_paid_range')),
    sa.CheckConstraint('"penaltyPaid" >= 0 AND "penaltyPaid" <= penalty', name=op.f('ck_loan_instalments_penalty_paid_range')),
    sa.CheckConstraint('"principalPaid" >= 0 AND "principalPaid" <= principal', name=op.f('ck_loan_instalments_principal_paid_range')),
    sa.CheckConstraint('(state = \'paid\') = ("paidOn" IS NOT NULL)', name=op.f('ck_loan_instalments_paid_has_date')),
    sa.CheckConstraint('number >= 1', name=op.f('ck_loan_instalments_number_positive')),
    sa.CheckConstraint('principal >= 0 AND interest >= 0 AND fee >= 0 AND penalty >= 0', name=op.f('ck_loan_instalments_amounts_not_negative')),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_loan_instalments_loanId_loans'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_loan_instalments_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_instalments')),
    sa.UniqueConstraint('loanId', 'number', name=op.f('uq_loan_instalments_loanId_number'))
    )
    op.create_index(op.f('ix_loan_instalments_loanId'), 'loan_instalments', ['loanId'], unique=False)
    op.create_index(op.f('ix_loan_instalments_state'), 'loan_instalments', ['state'], unique=False)
    op.create_index('ix_loan_instalments_unpaid_due', 'loan_instalments', ['dueOn', 'loanId'], unique=False, postgresql_where=sa.text("state <> 'paid'"))
    op.create_index(op.f('ix_loan_instalments_userId'), 'loan_instalments', ['userId'], unique=False)
    op.create_table('repayments',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('source', sa.Enum('student', 'automatic', 'liquidation', name='source', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('principal', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('interest', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('fee', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('penalty', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('paidOn', sa.Date(), nullable=False),
    sa.Column('idempotencyKey', sa.String(length=100), nullable=False),
    sa.Column('ledgerGroupId', sa.Uuid(), nullable=True),
    sa.Column('allocation', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_repayments_currency_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_repayments_amount_positive')),
    sa.CheckConstraint('principal + interest + fee + penalty = amount', name=op.f('ck_repayments_allocation_adds_up')),
    sa.CheckConstraint('principal >= 0 AND interest >= 0 AND fee >= 0 AND penalty >= 0', name=op.f('ck_repayments_parts_not_negative')),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_repayments_loanId_loans'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_repayments_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repayments')),
    sa.UniqueConstraint('loanId', 'idempotencyKey', name=op.f('uq_repayments_loanId_idempotencyKey'))
    )
    op.create_index(op.f('ix_repayments_ledgerGroupId'), 'repayments', ['ledgerGroupId'], unique=False)
    op.create_index(op.f('ix_repayments_loanId'), 'repayments', ['loanId'], unique=False)
    op.create_index('ix_repayments_loan_paid', 'repayments', ['loanId', sa.literal_column('"paidOn" DESC'), sa.literal_column('"createdAt" DESC')], unique=False)
    op.create_index(op.f('ix_repayments_source'), 'repayments', ['source'], unique=False)
    op.create_index(op.f('ix_repayments_userId'), 'repayments', ['userId'], unique=False)
    op.create_table('collaterals',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('loanId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('state', sa.Enum('pledged', 'released', 'liquidated', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('holdTransactionId', sa.Uuid(), nullable=True),
    sa.Column('haircut', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('rate', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('value', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('valuedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ltv', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('marginCalledAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('liquidatedAmount', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("currency IN ('BTC', 'ETH')", name=op.f('ck_collaterals_crypto_only')),
    sa.CheckConstraint("state <> 'pledged' OR amount > 0", name=op.f('ck_collaterals_pledged_is_positive')),
    sa.CheckConstraint('amount >= 0 AND "liquidatedAmount" >= 0', name=op.f('ck_collaterals_amounts_not_negative')),
    sa.CheckConstraint('haircut >= 0 AND haircut < 1', name=op.f('ck_collaterals_haircut_range')),
    sa.ForeignKeyConstraint(['holdTransactionId'], ['transactions.id'], name=op.f('fk_collaterals_holdTransactionId_transactions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['loanId'], ['loans.id'], name=op.f('fk_collaterals_loanId_loans'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_collaterals_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collaterals'))
    )
    op.create_index(op.f('ix_collaterals_holdTransactionId'), 'collaterals', ['holdTransactionId'], unique=False)
    op.create_index(op.f('ix_collaterals_loanId'), 'collaterals', ['loanId'], unique=False)
    op.create_index(op.f('ix_collaterals_state'), 'collaterals', ['state'], unique=False)
    op.create_index(op.f('ix_collaterals_userId'), 'collaterals', ['userId'], unique=False)

    for table, name, column, _old, new in ENUM_CHECKS:
        _enum_check(table, name, column, new)
    for table in TABLES:
        audit_table(table)
    for table in BORROWER_PRIVATE:
        enable_rls(table, own_rows(), roles_may(*OFFICERS, name="loan_officers"), COMPLIANCE_READS)
    enable_rls("loan_products", CATALOGUE_READ, roles_may("admin", "system", name="catalogue_staff"))


def downgrade():
    for table in BORROWER_PRIVATE:
        disable_rls(table, "own_rows", "loan_officers", "compliance_reads")
    disable_rls("loan_products", "catalogue_read", "catalogue_staff")
    for table in TABLES:
        drop_audit(table)
    # Rows that use the new values stop the downgrade (the ledger is append-only).
    for table, name, column, old, _new in ENUM_CHECKS:
        _enum_check(table, name, column, old)
    op.drop_index(op.f('ix_collaterals_userId'), table_name='collaterals')
    op.drop_index(op.f('ix_collaterals_state'), table_name='collaterals')
    op.drop_index(op.f('ix_collaterals_loanId'), table_name='collaterals')
    op.drop_index(op.f('ix_collaterals_holdTransactionId'), table_name='collaterals')
    op.drop_table('collaterals')
    op.drop_index(op.f('ix_repayments_userId'), table_name='repayments')
    op.drop_index(op.f('ix_repayments_source'), table_name='repayments')
    op.drop_index('ix_repayments_loan_paid', table_name='repayments')
    op.drop_index(op.f('ix_repayments_loanId'), table_name='repayments')
    op.drop_index(op.f('ix_repayments_ledgerGroupId'), table_name='repayments')
    op.drop_table('repayments')
    op.drop_index(op.f('ix_loan_instalments_userId'), table_name='loan_instalments')
    op.drop_index('ix_loan_instalments_unpaid_due', table_name='loan_instalments', postgresql_where=sa.text("state <> 'paid'"))
    op.drop_index(op.f('ix_loan_instalments_state'), table_name='loan_instalments')
    op.drop_index(op.f('ix_loan_instalments_loanId'), table_name='loan_instalments')
    op.drop_table('loan_instalments')
    op.drop_index(op.f('ix_loan_events_userId'), table_name='loan_events')
    op.drop_index('ix_loan_events_loan_created', table_name='loan_events')
    op.drop_index(op.f('ix_loan_events_actorId'), table_name='loan_events')
    op.drop_table('loan_events')
    op.drop_index(op.f('ix_loan_assessments_userId'), table_name='loan_assessments')
    op.drop_index(op.f('ix_loan_assessments_loanId'), table_name='loan_assessments')
    op.drop_table('loan_assessments')
    op.drop_index(op.f('ix_loan_accruals_userId'), table_name='loan_accruals')
    op.drop_table('loan_accruals')
    op.drop_index('uq_loans_one_open_application', table_name='loans', postgresql_where=sa.text("state IN ('submitted', 'approved')"))
    op.drop_index('ix_loans_user_created', table_name='loans')
    op.drop_index(op.f('ix_loans_userId'), table_name='loans')
    op.drop_index('ix_loans_state_created', table_name='loans')
    op.drop_index(op.f('ix_loans_state'), table_name='loans')
    op.drop_index(op.f('ix_loans_productId'), table_name='loans')
    op.drop_index(op.f('ix_loans_disbursementGroupId'), table_name='loans')
    op.drop_index(op.f('ix_loans_confirmedById'), table_name='loans')
    op.drop_index(op.f('ix_loans_approvedById'), table_name='loans')
    op.drop_table('loans')
    op.drop_table('loan_products')
