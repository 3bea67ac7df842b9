"""The API gateway: personal access tokens (``api_tokens``) and the request log (``api_logs``)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 23:20:00.000000

- ``api_tokens`` are private to their owner, as the payer's tables of 0011 are: a user reaches
  their own tokens (list, create, revoke); admins and system actors reach all of them. The API's
  authentication step runs as ``anonymous`` before anyone is known (as the login step reads a
  password hash through ``user_password_hash`` in 0008), so ``anonymous`` may read tokens (only
  SELECT): a row holds a keyed hash of the token, never the token, and the key lives in process
  memory. The audit trigger is installed with ``tokenHash`` kept out of the trail.
- ``api_logs``: any actor (a token's user, an anonymous request, the log writer's own connection,
  which carries no identity) may add rows; only admins and system actors (the Traffic page, the
  clean-up job) read or delete them. No audit trigger: one row per request, history already.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import (
    CURRENT_ROLE,
    Policy,
    anyone_may_insert,
    audit_table,
    disable_rls,
    drop_audit,
    enable_rls,
    own_rows,
    roles_may,
)

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("userId", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("tokenHash", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=10)), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revokedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lastUsedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("scopes <@ ARRAY['read', 'write']::varchar(10)[] AND cardinality(scopes) > 0",
                           name=op.f("ck_api_tokens_scopes_known")),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 80", name=op.f("ck_api_tokens_name_length")),
        sa.ForeignKeyConstraint(["userId"], ["users.id"], name=op.f("fk_api_tokens_userId_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("tokenHash", name=op.f("uq_api_tokens_tokenHash")),
    )
    op.create_index(op.f("ix_api_tokens_userId"), "api_tokens", ["userId"], unique=False)

    op.create_table(
        "api_logs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("durationMs", sa.Integer(), nullable=False),
        sa.Column("userId", sa.Uuid(), nullable=True),
        sa.Column("tokenId", sa.Uuid(), nullable=True),
        sa.Column("ipAddress", sa.String(length=45), nullable=True),
        sa.Column("requestId", sa.String(length=64), nullable=False),
        sa.CheckConstraint("kind IN ('api', 'page')", name=op.f("ck_api_logs_kind_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_logs")),
    )
    op.create_index("ix_api_logs_createdAt", "api_logs", ["createdAt"], unique=False)

    audit_table("api_tokens", ("tokenHash",))
    enable_rls("api_tokens", own_rows(), roles_may("admin", "system", name="admins"),
               Policy("authentication", f"{CURRENT_ROLE} = 'anonymous'", command="SELECT"))
    enable_rls("api_logs", roles_may("admin", "system", name="admins"), anyone_may_insert())


def downgrade():
    disable_rls("api_logs", "admins", "anyone_inserts")
    disable_rls("api_tokens", "own_rows", "admins", "authentication")
    drop_audit("api_tokens")
    op.drop_index("ix_api_logs_createdAt", table_name="api_logs")
    op.drop_table("api_logs")
    op.drop_index(op.f("ix_api_tokens_userId"), table_name="api_tokens")
    op.drop_table("api_tokens")
