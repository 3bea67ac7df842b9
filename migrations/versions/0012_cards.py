"""Virtual cards (spec service 4): virtual_cards, card_transactions, card_network_messages; the
ledger's card transaction types; security events of cards; card activity in monitoring alerts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 20:40:00.000000

- ``virtual_cards`` and ``card_transactions`` are private to the card holder: a student reaches
  their own rows; admins, compliance officers, system actors (the card network endpoint acts as
  ``system:card-network``, jobs and commands as theirs) and the ledger reach all of them.
  ``card_network_messages`` belong to no user: only admins, compliance officers and system actors.
- Every new table gets the audit trigger; the card number's ciphertext and lookup hash never
  reach the audit trail.
- ``transactions.type`` and ``transaction_fees.transactionType`` gain ``card_purchase`` and
  ``card_refund``; ``security_events.kind`` gains ``card_cvv_lockout`` and ``card_network_rejected``.
- ``monitoring_alerts`` may judge a card transaction (a declined authorization moves no money, so
  it has no ledger row): ``cardTransactionId``, with exactly one of the two set.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import audit_table, disable_rls, drop_audit, enable_rls, own_rows, roles_may

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ("virtual_cards", "card_transactions", "card_network_messages")
HOLDER_PRIVATE = ("virtual_cards", "card_transactions")
STAFF = ("admin", "compliance", "system", "ledger")
SECRET_COLUMNS = {"virtual_cards": ("panEncrypted", "panLookup")}

OLD_TRANSACTION_TYPES = ("deposit", "transfer", "fee", "conversion", "reward", "withdrawal", "reversal", "top_up",
                         "purchase", "refund")
NEW_TRANSACTION_TYPES = OLD_TRANSACTION_TYPES + ("card_purchase", "card_refund")
OLD_SECURITY_KINDS = ("login_failed", "login_throttled", "request_blocked", "permission_denied", "session_new_ip",
                      "account_action", "block_added", "block_lifted", "sessions_ended", "webhook_rejected")
NEW_SECURITY_KINDS = OLD_SECURITY_KINDS + ("card_cvv_lockout", "card_network_rejected")

ENUM_CHECKS = (
    ("transactions", "ck_transactions_type", "type", OLD_TRANSACTION_TYPES, NEW_TRANSACTION_TYPES),
    ("transaction_fees", "ck_transaction_fees_transaction_type", "transactionType", OLD_TRANSACTION_TYPES,
     NEW_TRANSACTION_TYPES),
    ("security_events", "ck_security_events_kind", "kind", OLD_SECURITY_KINDS, NEW_SECURITY_KINDS),
)
CURRENCY_KNOWN = '"currency" IN (\'AZR\', \'USD\', \'BTC\', \'ETH\')'
KINDS = ('authorization', 'capture', 'reversal', 'refund', 'expiry')


def _enum_check(table, name, column, values):
    listed = ", ".join(f"'{v}'" for v in values)
    op.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS {name}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} CHECK ("{column}" IN ({listed}))')


def _timestamps():
    return [sa.Column('createdAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
            sa.Column('updatedAt', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)]


def upgrade():
    op.create_table('virtual_cards',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('walletId', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('state', sa.Enum('active', 'frozen', 'canceled', 'replaced', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('frozenReason', sa.String(length=300), nullable=True),
    sa.Column('frozenById', sa.Uuid(), nullable=True),
    sa.Column('frozenByStaff', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('brand', sa.String(length=20), nullable=False),
    sa.Column('bin', sa.String(length=8), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('expMonth', sa.SmallInteger(), nullable=False),
    sa.Column('expYear', sa.SmallInteger(), nullable=False),
    sa.Column('panEncrypted', sa.LargeBinary(), nullable=False),
    sa.Column('panKeyId', sa.String(length=32), nullable=False),
    sa.Column('panLookup', sa.String(length=64), nullable=False),
    sa.Column('perPurchaseLimit', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('dailyLimit', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('monthlyLimit', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('blockedMccGroups', postgresql.ARRAY(sa.String(length=30)), server_default=sa.text("'{}'::varchar[]"), nullable=False),
    sa.Column('blockedCountries', postgresql.ARRAY(sa.String(length=2)), server_default=sa.text("'{}'::varchar[]"), nullable=False),
    sa.Column('wrongCvvCount', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('nickname', sa.String(length=60), server_default='', nullable=False),
    sa.Column('replacedById', sa.Uuid(), nullable=True),
    sa.Column('canceledAt', sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    sa.CheckConstraint(CURRENCY_KNOWN, name=op.f('ck_virtual_cards_currency_known')),
    sa.CheckConstraint('"expMonth" BETWEEN 1 AND 12', name=op.f('ck_virtual_cards_exp_month_range')),
    sa.CheckConstraint('"expYear" BETWEEN 2000 AND 2200', name=op.f('ck_virtual_cards_exp_year_range')),
    sa.CheckConstraint("bin ~ '^[0-9]{6,8}$' AND last4 ~ '^[0-9]{4}$'", name=op.f('ck_virtual_cards_bin_last4_digits')),
    sa.CheckConstraint('"panLookup" ~ \'^[0-9a-f]{64}$\'', name=op.f('ck_virtual_cards_lookup_is_hmac')),
    sa.CheckConstraint('"wrongCvvCount" >= 0', name=op.f('ck_virtual_cards_wrong_cvv_not_negative')),
    sa.CheckConstraint('("perPurchaseLimit" IS NULL OR "perPurchaseLimit" > 0) AND ("dailyLimit" IS NULL OR "dailyLimit" > 0) AND ("monthlyLimit" IS NULL OR "monthlyLimit" > 0)', name=op.f('ck_virtual_cards_limits_positive')),
    sa.CheckConstraint('(state = \'frozen\') = ("frozenReason" IS NOT NULL)', name=op.f('ck_virtual_cards_frozen_has_reason')),
    sa.CheckConstraint('state NOT IN (\'canceled\', \'replaced\') OR "canceledAt" IS NOT NULL', name=op.f('ck_virtual_cards_ended_has_time')),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_virtual_cards_userId_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['walletId'], ['wallets.id'], name=op.f('fk_virtual_cards_walletId_wallets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['frozenById'], ['users.id'], name=op.f('fk_virtual_cards_frozenById_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['replacedById'], ['virtual_cards.id'], name=op.f('fk_virtual_cards_replacedById_virtual_cards'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_virtual_cards')),
    sa.UniqueConstraint('panLookup', name=op.f('uq_virtual_cards_panLookup')),
    )
    op.create_index(op.f('ix_virtual_cards_userId'), 'virtual_cards', ['userId'], unique=False)
    op.create_index(op.f('ix_virtual_cards_walletId'), 'virtual_cards', ['walletId'], unique=False)
    op.create_index(op.f('ix_virtual_cards_state'), 'virtual_cards', ['state'], unique=False)
    op.create_index(op.f('ix_virtual_cards_frozenById'), 'virtual_cards', ['frozenById'], unique=False)
    op.create_index('ix_virtual_cards_user_created', 'virtual_cards', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_virtual_cards_created', 'virtual_cards', [sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)

    op.create_table('card_transactions',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('cardId', sa.Uuid(), nullable=False),
    sa.Column('userId', sa.Uuid(), nullable=False),
    sa.Column('walletId', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum(*KINDS, name='kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('state', sa.Enum('pending', 'captured', 'reversed', 'expired', 'declined', 'refunded', name='state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('networkId', sa.String(length=100), nullable=False),
    sa.Column('authorizationId', sa.Uuid(), nullable=True),
    sa.Column('merchantName', sa.String(length=100), server_default='', nullable=False),
    sa.Column('mcc', sa.String(length=4), server_default='', nullable=False),
    sa.Column('merchantCountry', sa.String(length=2), server_default='', nullable=False),
    sa.Column('merchantAmount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('merchantCurrency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('rate', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('capturedAmount', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('refundedAmount', sa.Numeric(precision=38, scale=18), server_default='0', nullable=False),
    sa.Column('responseCode', sa.String(length=2), nullable=False),
    sa.Column('declineReason', sa.String(length=200), server_default='', nullable=False),
    sa.Column('holdTransactionId', sa.Uuid(), nullable=True),
    sa.Column('ledgerTransactionIds', postgresql.ARRAY(postgresql.UUID(as_uuid=True)), server_default=sa.text("'{}'::uuid[]"), nullable=False),
    sa.Column('holdExpiresAt', sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    sa.CheckConstraint(CURRENCY_KNOWN, name=op.f('ck_card_transactions_currency_known')),
    sa.CheckConstraint('"merchantCurrency" ~ \'^[A-Z]{3}$\'', name=op.f('ck_card_transactions_merchant_currency_code')),
    sa.CheckConstraint('amount >= 0 AND "merchantAmount" >= 0', name=op.f('ck_card_transactions_amounts_not_negative')),
    sa.CheckConstraint('"capturedAmount" >= 0 AND "refundedAmount" >= 0 AND "refundedAmount" <= "capturedAmount"', name=op.f('ck_card_transactions_captured_refunded_range')),
    sa.CheckConstraint('"responseCode" ~ \'^[0-9A-Z]{2}$\'', name=op.f('ck_card_transactions_response_code_format')),
    sa.CheckConstraint('(state = \'declined\') = ("responseCode" <> \'00\')', name=op.f('ck_card_transactions_declined_has_code')),
    sa.CheckConstraint("""(kind = 'authorization' AND "authorizationId" IS NULL)
                           OR (kind IN ('capture', 'reversal', 'expiry') AND "authorizationId" IS NOT NULL)
                           OR kind = 'refund'""", name=op.f('ck_card_transactions_follows_an_authorization')),
    sa.CheckConstraint('kind <> \'authorization\' OR state <> \'pending\' OR ("holdTransactionId" IS NOT NULL AND "holdExpiresAt" IS NOT NULL)', name=op.f('ck_card_transactions_pending_has_hold')),
    sa.CheckConstraint("mcc = '' OR mcc ~ '^[0-9]{4}$'", name=op.f('ck_card_transactions_mcc_digits')),
    sa.ForeignKeyConstraint(['cardId'], ['virtual_cards.id'], name=op.f('fk_card_transactions_cardId_virtual_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['userId'], ['users.id'], name=op.f('fk_card_transactions_userId_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['walletId'], ['wallets.id'], name=op.f('fk_card_transactions_walletId_wallets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['authorizationId'], ['card_transactions.id'], name=op.f('fk_card_transactions_authorizationId_card_transactions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['holdTransactionId'], ['transactions.id'], name=op.f('fk_card_transactions_holdTransactionId_transactions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_transactions')),
    sa.UniqueConstraint('networkId', name=op.f('uq_card_transactions_networkId')),
    )
    op.create_index(op.f('ix_card_transactions_cardId'), 'card_transactions', ['cardId'], unique=False)
    op.create_index(op.f('ix_card_transactions_walletId'), 'card_transactions', ['walletId'], unique=False)
    op.create_index(op.f('ix_card_transactions_state'), 'card_transactions', ['state'], unique=False)
    op.create_index(op.f('ix_card_transactions_authorizationId'), 'card_transactions', ['authorizationId'], unique=False)
    op.create_index(op.f('ix_card_transactions_holdTransactionId'), 'card_transactions', ['holdTransactionId'], unique=False)
    op.create_index('ix_card_transactions_user_created', 'card_transactions', ['userId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_card_transactions_card_created', 'card_transactions', ['cardId', sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_card_transactions_created', 'card_transactions', [sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_card_transactions_open_holds', 'card_transactions', ['holdExpiresAt'], unique=False, postgresql_where=sa.text("kind = 'authorization' AND state = 'pending'"))

    op.create_table('card_network_messages',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('networkId', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum(*KINDS, name='kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('originalNetworkId', sa.String(length=100), nullable=True),
    sa.Column('outcome', sa.Enum('rejected', 'parked', name='outcome', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('responseCode', sa.String(length=2), nullable=False),
    sa.Column('detail', sa.String(length=300), server_default='', nullable=False),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    *_timestamps(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_network_messages')),
    )
    op.create_index(op.f('ix_card_network_messages_networkId'), 'card_network_messages', ['networkId'], unique=False)
    op.create_index(op.f('ix_card_network_messages_originalNetworkId'), 'card_network_messages', ['originalNetworkId'], unique=False)
    op.create_index('ix_card_network_messages_created', 'card_network_messages', [sa.literal_column('"createdAt" DESC'), sa.literal_column('id DESC')], unique=False)

    op.add_column('monitoring_alerts', sa.Column('cardTransactionId', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_monitoring_alerts_cardTransactionId_card_transactions'), 'monitoring_alerts',
                          'card_transactions', ['cardTransactionId'], ['id'], ondelete='RESTRICT')
    op.alter_column('monitoring_alerts', 'transactionId', nullable=True)
    op.create_check_constraint('ck_monitoring_alerts_one_subject', 'monitoring_alerts',
                               '("transactionId" IS NULL) <> ("cardTransactionId" IS NULL)')
    op.create_index('uq_monitoring_alerts_card_transaction_user', 'monitoring_alerts', ['cardTransactionId', 'userId'],
                    unique=True, postgresql_where=sa.text('"cardTransactionId" IS NOT NULL'))

    for table, name, column, _old, new in ENUM_CHECKS:
        _enum_check(table, name, column, new)

    for table in TABLES:
        audit_table(table, SECRET_COLUMNS.get(table, ()))
    for table in HOLDER_PRIVATE:
        enable_rls(table, own_rows(), roles_may(*STAFF, name="money_staff"))
    enable_rls("card_network_messages", roles_may("admin", "compliance", "system", name="card_network_staff"))


def downgrade():
    disable_rls("card_network_messages", "card_network_staff")
    for table in HOLDER_PRIVATE:
        disable_rls(table, "own_rows", "money_staff")
    for table in TABLES:
        drop_audit(table)
    # Rows that use the new values stop the downgrade (the ledger is append-only).
    for table, name, column, old, _new in ENUM_CHECKS:
        _enum_check(table, name, column, old)
    op.drop_index('uq_monitoring_alerts_card_transaction_user', table_name='monitoring_alerts')
    op.drop_constraint('ck_monitoring_alerts_one_subject', 'monitoring_alerts', type_='check')
    op.execute('DELETE FROM monitoring_alerts WHERE "transactionId" IS NULL')
    op.alter_column('monitoring_alerts', 'transactionId', nullable=False)
    op.drop_constraint(op.f('fk_monitoring_alerts_cardTransactionId_card_transactions'), 'monitoring_alerts',
                       type_='foreignkey')
    op.drop_column('monitoring_alerts', 'cardTransactionId')
    op.drop_table('card_network_messages')
    op.drop_table('card_transactions')
    op.drop_table('virtual_cards')
