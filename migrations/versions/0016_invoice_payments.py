"""Invoices paid with a saved payment method: payments of purpose ``invoice`` and the
subscription's automatic payment method

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:05:00.000000

- ``payments.purpose`` gains ``invoice``; ``payments.invoiceId`` names the invoice such a payment
  pays (set exactly for that purpose). ``uq_payments_one_live_per_invoice`` lets one payment per
  invoice be pending or succeeded at a time: an invoice is never paid twice by card, whatever
  the tabs, jobs and retries do (a failed or canceled one leaves room for the next attempt).
- ``subscriptions.paymentMethodId``: the saved method the subscription's invoices are charged
  to automatically (NULL: the wallet).
"""
from alembic import op
import sqlalchemy as sa

from portal.db.migration_helpers import enum_check

# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

OLD_PURPOSES = ("top_up", "course_purchase")
NEW_PURPOSES = OLD_PURPOSES + ("invoice",)


def upgrade():
    enum_check("payments", "ck_payments_purpose", "purpose", NEW_PURPOSES)
    op.add_column('payments', sa.Column('invoiceId', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_payments_invoiceId_invoices'), 'payments', 'invoices', ['invoiceId'], ['id'],
                          ondelete='RESTRICT')
    op.create_index(op.f('ix_payments_invoiceId'), 'payments', ['invoiceId'], unique=False)
    op.create_index('uq_payments_one_live_per_invoice', 'payments', ['invoiceId'], unique=True,
                    postgresql_where=sa.text("\"invoiceId\" IS NOT NULL AND state NOT IN ('failed', 'canceled')"))
    op.create_check_constraint('ck_payments_invoice_for_invoice_payments', 'payments',
                               """(purpose = 'invoice') = ("invoiceId" IS NOT NULL)""")

    op.add_column('subscriptions', sa.Column('paymentMethodId', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_subscriptions_paymentMethodId_payment_methods'), 'subscriptions',
                          'payment_methods', ['paymentMethodId'], ['id'], ondelete='SET NULL')
    op.create_index(op.f('ix_subscriptions_paymentMethodId'), 'subscriptions', ['paymentMethodId'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_subscriptions_paymentMethodId'), table_name='subscriptions')
    op.drop_constraint(op.f('fk_subscriptions_paymentMethodId_payment_methods'), 'subscriptions', type_='foreignkey')
    op.drop_column('subscriptions', 'paymentMethodId')

    # Invoice payments cannot be carried back: with any stored, the purpose CHECK below refuses.
    op.drop_constraint('ck_payments_invoice_for_invoice_payments', 'payments', type_='check')
    op.drop_index('uq_payments_one_live_per_invoice', table_name='payments')
    op.drop_index(op.f('ix_payments_invoiceId'), table_name='payments')
    op.drop_constraint(op.f('fk_payments_invoiceId_invoices'), 'payments', type_='foreignkey')
    op.drop_column('payments', 'invoiceId')
    enum_check("payments", "ck_payments_purpose", "purpose", OLD_PURPOSES)
