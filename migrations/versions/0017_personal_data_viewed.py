"""Security events of the data browser: ``security_events.kind`` gains ``personal_data_viewed``

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 23:30:00.000000

An admin's view of personal rows in the data browser (Admin > Data) is recorded as a security
event of this kind; nothing else changes.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

OLD_SECURITY_KINDS = ("login_failed", "login_throttled", "request_blocked", "permission_denied", "session_new_ip",
                      "account_action", "block_added", "block_lifted", "sessions_ended", "webhook_rejected",
                      "card_cvv_lockout", "card_network_rejected")
NEW_SECURITY_KINDS = OLD_SECURITY_KINDS + ("personal_data_viewed",)


def _kind_check(values):
    listed = ", ".join(f"'{v}'" for v in values)
    op.execute('ALTER TABLE "security_events" DROP CONSTRAINT IF EXISTS ck_security_events_kind')
    op.execute(f'ALTER TABLE "security_events" ADD CONSTRAINT ck_security_events_kind CHECK ("kind" IN ({listed}))')


def upgrade():
    _kind_check(NEW_SECURITY_KINDS)


def downgrade():
    # Events of the new kind stop the downgrade: security events are kept, not deleted.
    _kind_check(OLD_SECURITY_KINDS)
