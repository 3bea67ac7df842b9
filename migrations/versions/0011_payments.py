"""Payments from outside (spec service 7, Payment Gateway): payments, saved payment methods,
refunds, each payment's timeline, the webhook log and payers' customer ids at providers; a price
on courses; the ledger's new transaction types and system wallets

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 20:20:00.000000

- ``payments``, ``payment_methods``, ``refunds``, ``payment_events`` and ``payment_customers``
  are private to the payer: a student reaches their own rows; admins, compliance officers,
  system actors (jobs, commands, webhooks) and the ledger reach all of them (as the money
  tables of 0003 do). ``webhook_events`` carry other people's payments: only admins,
  compliance officers and system actors.
- Every new table gets the audit trigger.
- ``courses.price`` / ``priceCurrency``: NULL (or 0) is free, the default.
- The string enums of the ledger are CHECK constraints: ``transactions.type`` and
  ``transaction_fees.transactionType`` gain ``top_up``, ``purchase`` and ``refund``;
  ``wallets.systemName`` gains a clearing wallet per provider (``clearing_sandbox``,
  ``clearing_stripe``), ``sales`` and ``provider_fees``; ``security_events.kind`` gains ``webhook_rejected``.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import Policy, audit_table, disable_rls, drop_audit, enable_rls, own_rows, roles_may

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TABLES = ("payment_customers", "payment_methods", "payments", "refunds", "payment_events", "webhook_events")
PAYER_PRIVATE = ("payment_customers", "payment_methods", "payments", "refunds", "payment_events")
STAFF = ("admin", "compliance", "system", "ledger")

OLD_TRANSACTION_TYPES = ("deposit", "transfer", "fee", "conversion", "reward", "withdrawal", "reversal")
NEW_TRANSACTION_TYPES = OLD_TRANSACTION_TYPES + ("top_up", "purchase", "refund")
OLD_SYSTEM_WALLETS = ("deposits", "withdrawals", "rewards", "fees", "exchange", "card_float", "loan_book")
NEW_SYSTEM_WALLETS = OLD_SYSTEM_WALLETS + ("clearing_sandbox", "clearing_stripe", "sales", "provider_fees")
OLD_SECURITY_KINDS = ("login_failed", "login_throttled", "request_blocked", "permission_denied", "session_new_ip",
                      "account_action", "block_added", "block_lifted", "sessions_ended")
NEW_SECURITY_KINDS = OLD_SECURITY_KINDS + ("webhook_rejected",)

#: (table, constraint, column, old values, new values)
ENUM_CHECKS = (
    ("transactions", "ck_transactions_type", "type", OLD_TRANSACTION_TYPES, NEW_TRANSACTION_TYPES),
    ("transaction_fees", "ck_transaction_fees_transaction_type", "transactionType", OLD_TRANSACTION_TYPES,
     NEW_TRANSACTION_TYPES),
    ("wallets", "ck_wallets_system_name", "systemName", OLD_SYSTEM_WALLETS, NEW_SYSTEM_WALLETS),
    ("security_events", "ck_security_events_kind", "kind", OLD_SECURITY_KINDS, NEW_SECURITY_KINDS),
)

COURSE_CHECKS = (
    ("ck_courses_price_has_currency", '(price IS NULL) = ("priceCurrency" IS NULL)'),
    ("ck_courses_price_not_negative", "price IS NULL OR price >= 0"),
    ("ck_courses_price_currency_code", '"priceCurrency" IS NULL OR "priceCurrency" ~ \'^[A-Z]{3,8}$\''),
)


def _enum_check(table, name, column, values):
    listed = ", ".join(f"'{v}'" for v in values)
    op.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS {name}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} CHECK ("{column}" IN ({listed}))')


def upgrade():

    op.create_table('payment_customers',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('customerRef', sa.String(length=200), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("provider IN ('sandbox', 'stripe')", name=op.f('ck_payment_customers_provider_known')),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_payment_customers_userId_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_customers')),
    sa.UniqueConstraint('provider', 'customerRef', name=op.f('uq_payment_customers_provider_customerRef')),
    sa.UniqueConstraint('userId', 'provider', name=op.f('uq_payment_customers_userId_provider'))
    )
    op.create_index(op.f('ix_payment_customers_userId'), 'payment_customers', ['userId'], unique=False)
    op.create_table('payment_methods',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('providerRef', sa.String(length=200), nullable=False),
    sa.Column('customerRef', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.Enum('card', 'mobile_money', 'wallet', name='kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('brand', sa.String(length=30), server_default='', nullable=False),
    sa.Column('last4', sa.String(length=4), server_default='', nullable=False),
    sa.Column('expMonth', sa.SmallInteger(), nullable=True),
    sa.Column('expYear', sa.SmallInteger(), nullable=True),
    sa.Column('isDefault', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('removedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind <> 'wallet'", name=op.f('ck_payment_methods_kind_from_provider')),
    sa.CheckConstraint("last4 ~ '^[0-9]{0,4}$'", name=op.f('ck_payment_methods_last4_digits')),
    sa.CheckConstraint("provider IN ('sandbox', 'stripe')", name=op.f('ck_payment_methods_provider_known')),
    sa.CheckConstraint('"expMonth" IS NULL OR "expMonth" BETWEEN 1 AND 12', name=op.f('ck_payment_methods_exp_month_range')),
    sa.CheckConstraint('"expYear" IS NULL OR "expYear" BETWEEN 2000 AND 2200', name=op.f('ck_payment_methods_exp_year_range')),
    sa.CheckConstraint('NOT ("isDefault" AND "removedAt" IS NOT NULL)', name=op.f('ck_payment_methods_removed_not_default')),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_payment_methods_userId_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_methods')),
    sa.UniqueConstraint('provider', 'providerRef', name=op.f('uq_payment_methods_provider_providerRef'))
    )
    op.create_index(op.f('ix_payment_methods_userId'), 'payment_methods', ['userId'], unique=False)
    op.create_index('uq_payment_methods_one_default', 'payment_methods', ['userId'], unique=True, postgresql_where=sa.text('"isDefault" AND "removedAt" IS NULL'))
    op.create_table('payments',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.Enum('top_up', 'course_purchase', name='purpose', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('courseId', sa.Uuid(), nullable=True),
    sa.Column('walletCurrency', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('state', sa.Enum('requires_payment_method', 'requires_action', 'processing', 'succeeded', 'canceled', 'failed', name='state', native_enum=False, create_constraint=True, length=30), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('providerRef', sa.String(length=200), nullable=True),
    sa.Column('methodKind', sa.Enum('card', 'mobile_money', 'wallet', name='method_kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('methodId', sa.Uuid(), nullable=True),
    sa.Column('methodBrand', sa.String(length=30), server_default='', nullable=False),
    sa.Column('methodLast4', sa.String(length=4), server_default='', nullable=False),
    sa.Column('saveMethod', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('idempotencyKey', sa.String(length=100), nullable=False),
    sa.Column('fee', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('amountRefunded', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('failureCode', sa.String(length=60), nullable=True),
    sa.Column('failureMessage', sa.String(length=300), nullable=True),
    sa.Column('nextActionUrl', sa.String(length=1000), nullable=True),
    sa.Column('returnUrl', sa.String(length=1000), server_default='', nullable=False),
    sa.Column('description', sa.String(length=300), server_default='', nullable=False),
    sa.Column('creditedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ledgerGroupId', sa.Uuid(), nullable=True),
    sa.Column('providerSeenAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('needsReconcile', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("provider IN ('sandbox', 'stripe', 'wallet')", name=op.f('ck_payments_provider_known')),
    sa.CheckConstraint('"amountRefunded" >= 0 AND "amountRefunded" <= amount', name=op.f('ck_payments_refunded_range')),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_payments_currency_known')),
    sa.CheckConstraint('"walletCurrency" = currency', name=op.f('ck_payments_wallet_currency_matches')),
    sa.CheckConstraint('(provider = \'wallet\') = ("methodKind" = \'wallet\')', name=op.f('ck_payments_wallet_paid_from_wallet')),
    sa.CheckConstraint('(purpose = \'course_purchase\') = ("courseId" IS NOT NULL)', name=op.f('ck_payments_course_for_purchases')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payments_amount_positive')),
    sa.CheckConstraint('fee IS NULL OR (fee >= 0 AND fee <= amount)', name=op.f('ck_payments_fee_range')),
    sa.CheckConstraint('purpose = \'course_purchase\' OR "methodKind" <> \'wallet\'', name=op.f('ck_payments_top_up_from_outside')),
    sa.CheckConstraint('state <> \'succeeded\' OR "creditedAt" IS NOT NULL', name=op.f('ck_payments_succeeded_is_credited')),
    sa.ForeignKeyConstraint(['courseId'], ['courses.id'], name=op.f('fk_payments_courseId_courses'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['methodId'], ['payment_methods.id'], name=op.f('fk_payments_methodId_payment_methods'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_payments_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('userId', 'idempotencyKey', name=op.f('uq_payments_userId_idempotencyKey'))
    )
    op.create_index(op.f('ix_payments_courseId'), 'payments', ['courseId'], unique=False)
    op.create_index('ix_payments_created', 'payments', [sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index(op.f('ix_payments_ledgerGroupId'), 'payments', ['ledgerGroupId'], unique=False)
    op.create_index(op.f('ix_payments_methodId'), 'payments', ['methodId'], unique=False)
    op.create_index(op.f('ix_payments_methodKind'), 'payments', ['methodKind'], unique=False)
    op.create_index(op.f('ix_payments_provider'), 'payments', ['provider'], unique=False)
    op.create_index(op.f('ix_payments_purpose'), 'payments', ['purpose'], unique=False)
    op.create_index(op.f('ix_payments_state'), 'payments', ['state'], unique=False)
    op.create_index('ix_payments_state_updated', 'payments', ['state', sa.literal_column('"updatedAt"')], unique=False)
    op.create_index(op.f('ix_payments_userId'), 'payments', ['userId'], unique=False)
    op.create_index('ix_payments_user_created', 'payments', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('uq_payments_provider_ref', 'payments', ['provider', 'providerRef'], unique=True, postgresql_where=sa.text('"providerRef" IS NOT NULL'))
    op.create_table('refunds',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('paymentId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=500), server_default='', nullable=False),
    sa.Column('state', sa.Enum('requested', 'pending', 'succeeded', 'failed', 'canceled', 'rejected', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('providerRef', sa.String(length=200), nullable=True),
    sa.Column('requestedById', sa.Uuid(), nullable=True),
    sa.Column('decidedById', sa.Uuid(), nullable=True),
    sa.Column('decidedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decisionNote', sa.String(length=500), server_default='', nullable=False),
    sa.Column('automatic', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('holdTransactionIds', postgresql.ARRAY(postgresql.UUID(as_uuid=True)), server_default=sa.text("'{}'::uuid[]"), nullable=False),
    sa.Column('ledgerGroupId', sa.Uuid(), nullable=True),
    sa.Column('idempotencyKey', sa.String(length=100), nullable=False),
    sa.Column('failureReason', sa.String(length=300), nullable=True),
    sa.Column('settledAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')', name=op.f('ck_refunds_currency_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.CheckConstraint('state IN (\'requested\', \'rejected\') OR "decidedAt" IS NOT NULL', name=op.f('ck_refunds_decided_unless_requested')),
    sa.CheckConstraint('state IN (\'succeeded\', \'failed\', \'canceled\') = ("settledAt" IS NOT NULL)', name=op.f('ck_refunds_settled_when_final')),
    sa.ForeignKeyConstraint(['decidedById'], ['users.id'], name=op.f('fk_refunds_decidedById_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['paymentId'], ['payments.id'], name=op.f('fk_refunds_paymentId_payments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['requestedById'], ['users.id'], name=op.f('fk_refunds_requestedById_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_refunds_userId_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('idempotencyKey', name=op.f('uq_refunds_idempotencyKey'))
    )
    op.create_index(op.f('ix_refunds_decidedById'), 'refunds', ['decidedById'], unique=False)
    op.create_index(op.f('ix_refunds_ledgerGroupId'), 'refunds', ['ledgerGroupId'], unique=False)
    op.create_index(op.f('ix_refunds_paymentId'), 'refunds', ['paymentId'], unique=False)
    op.create_index(op.f('ix_refunds_requestedById'), 'refunds', ['requestedById'], unique=False)
    op.create_index(op.f('ix_refunds_state'), 'refunds', ['state'], unique=False)
    op.create_index('ix_refunds_state_created', 'refunds', ['state', sa.literal_column('"createdAt"'), 'id'], unique=False)
    op.create_index(op.f('ix_refunds_userId'), 'refunds', ['userId'], unique=False)
    op.create_index('ix_refunds_user_created', 'refunds', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('uq_refunds_provider_ref', 'refunds', ['providerRef'], unique=True, postgresql_where=sa.text('"providerRef" IS NOT NULL'))
    op.create_table('webhook_events',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('eventId', sa.String(length=200), nullable=False),
    sa.Column('eventType', sa.String(length=60), nullable=False),
    sa.Column('receivedAt', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verified', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('appliedAt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Enum('received', 'applied', 'ignored', 'failed', name='outcome', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('detail', sa.String(length=500), server_default='', nullable=False),
    sa.Column('paymentId', sa.Uuid(), nullable=True),
    sa.Column('attempts', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("provider IN ('sandbox', 'stripe')", name=op.f('ck_webhook_events_provider_known')),
    sa.ForeignKeyConstraint(['paymentId'], ['payments.id'], name=op.f('fk_webhook_events_paymentId_payments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('provider', 'eventId', name=op.f('uq_webhook_events_provider_eventId'))
    )
    op.create_index(op.f('ix_webhook_events_outcome'), 'webhook_events', ['outcome'], unique=False)
    op.create_index(op.f('ix_webhook_events_paymentId'), 'webhook_events', ['paymentId'], unique=False)
    op.create_index('ix_webhook_events_received', 'webhook_events', [sa.literal_column('"receivedAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_table('payment_events',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('paymentId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('refundId', sa.Uuid(), nullable=True),
    sa.Column('source', sa.Enum('portal', 'provider', 'webhook', 'poll', 'return', 'replay', 'admin', name='source', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('fromState', sa.String(length=30), nullable=True),
    sa.Column('toState', sa.String(length=30), nullable=True),
    sa.Column('providerEventId', sa.String(length=200), nullable=True),
    sa.Column('summary', sa.String(length=300), server_default='', nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['paymentId'], ['payments.id'], name=op.f('fk_payment_events_paymentId_payments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['refundId'], ['refunds.id'], name=op.f('fk_payment_events_refundId_refunds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_payment_events_userId_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_events'))
    )
    op.create_index('ix_payment_events_payment_created', 'payment_events', ['paymentId', sa.literal_column('"createdAt"'), 'id'], unique=False)
    op.create_index(op.f('ix_payment_events_refundId'), 'payment_events', ['refundId'], unique=False)
    op.create_index(op.f('ix_payment_events_userId'), 'payment_events', ['userId'], unique=False)
    

    op.add_column('courses', sa.Column('price', sa.Numeric(precision=38, scale=18), nullable=True))
    op.add_column('courses', sa.Column('priceCurrency', sa.String(length=8), nullable=True))
    for name, condition in COURSE_CHECKS:
        op.create_check_constraint(name, 'courses', condition)

    for table, name, column, _old, new in ENUM_CHECKS:
        _enum_check(table, name, column, new)

    for table in TABLES:
        audit_table(table)
    for table in PAYER_PRIVATE:
        enable_rls(table, own_rows(), roles_may(*STAFF, name="money_staff"))
    enable_rls("webhook_events", roles_may("admin", "compliance", "system", name="payment_staff"))


def downgrade():
    for table in PAYER_PRIVATE:
        disable_rls(table, "own_rows", "money_staff")
    disable_rls("webhook_events", "payment_staff")
    for table in TABLES:
        drop_audit(table)
    # Rows that use the new values stop the downgrade (the constraint refuses them): the
    # ledger is append-only, so they cannot be rewritten here.
    for table, name, column, old, _new in ENUM_CHECKS:
        _enum_check(table, name, column, old)
    for name, _condition in COURSE_CHECKS:
        op.drop_constraint(name, 'courses', type_='check')
    op.drop_column('courses', 'priceCurrency')
    op.drop_column('courses', 'price')

    op.drop_index(op.f('ix_payment_events_userId'), table_name='payment_events')
    op.drop_index(op.f('ix_payment_events_refundId'), table_name='payment_events')
    op.drop_index('ix_payment_events_payment_created', table_name='payment_events')
    op.drop_table('payment_events')
    op.drop_index('ix_webhook_events_received', table_name='webhook_events')
    op.drop_index(op.f('ix_webhook_events_paymentId'), table_name='webhook_events')
    op.drop_index(op.f('ix_webhook_events_outcome'), table_name='webhook_events')
    op.drop_table('webhook_events')
    op.drop_index('uq_refunds_provider_ref', table_name='refunds', postgresql_where=sa.text('"providerRef" IS NOT NULL'))
    op.drop_index('ix_refunds_user_created', table_name='refunds')
    op.drop_index(op.f('ix_refunds_userId'), table_name='refunds')
    op.drop_index('ix_refunds_state_created', table_name='refunds')
    op.drop_index(op.f('ix_refunds_state'), table_name='refunds')
    op.drop_index(op.f('ix_refunds_requestedById'), table_name='refunds')
    op.drop_index(op.f('ix_refunds_paymentId'), table_name='refunds')
    op.drop_index(op.f('ix_refunds_ledgerGroupId'), table_name='refunds')
    op.drop_index(op.f('ix_refunds_decidedById'), table_name='refunds')
    op.drop_table('refunds')
    op.drop_index('uq_payments_provider_ref', table_name='payments', postgresql_where=sa.text('"providerRef" IS NOT NULL'))
    op.drop_index('ix_payments_user_created', table_name='payments')
    op.drop_index(op.f('ix_payments_userId'), table_name='payments')
    op.drop_index('ix_payments_state_updated', table_name='payments')
    op.drop_index(op.f('ix_payments_state'), table_name='payments')
    op.drop_index(op.f('ix_payments_purpose'), table_name='payments')
    op.drop_index(op.f('ix_payments_provider'), table_name='payments')
    op.drop_index(op.f('ix_payments_methodKind'), table_name='payments')
    op.drop_index(op.f('ix_payments_methodId'), table_name='payments')
    op.drop_index(op.f('ix_payments_ledgerGroupId'), table_name='payments')
    op.drop_index('ix_payments_created', table_name='payments')
    op.drop_index(op.f('ix_payments_courseId'), table_name='payments')
    op.drop_table('payments')
    op.drop_index('uq_payment_methods_one_default', table_name='payment_methods', postgresql_where=sa.text('"isDefault" AND "removedAt" IS NULL'))
    op.drop_index(op.f('ix_payment_methods_userId'), table_name='payment_methods')
    op.drop_table('payment_methods')
    op.drop_index(op.f('ix_payment_customers_userId'), table_name='payment_customers')
    op.drop_table('payment_customers')
    
