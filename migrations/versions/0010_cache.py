"""The shared cache: ``cache_entries``, an UNLOGGED table of JSON values by key

Revision ID: 0010
Revises: 0009

- UNLOGGED: a crash empties it (a cold cache, nothing lost that cannot be computed again) and
  its writes skip the write-ahead log. The key is the primary key, ``text COLLATE "C"``, so a
  hit is one index lookup and a prefix invalidation a range of the same index. No audit
  trigger: entries are derived data, rewritten on every miss, and some are users' private
  values, which the trail would copy (``portal.platform.cache.models``).
- Row-level security, and who passes it. The table is not private per row in the RLS sense:
  a private entry's key carries its user's id (``services.private_key``), and the cache must
  work for every actor, anonymous pages included, and let a receiver acting as one user drop
  what another user's pages cached. So one permissive policy for every command: any
  identified actor (a user, ``anonymous`` web request or ``system`` actor, as ``identified()``
  in 0008 for ``users``), or the cache's own connections, which say so with the
  connection-level setting ``app.cache=on`` (as the job queue's connections say
  ``app.job_queue=on`` in 0008). The cache runs its statements on a small pool of its own,
  outside the request's transaction, so those connections carry no identity. A connection
  that set neither, such as code that forgot the context, reads no entry. Like every setting,
  ``app.cache`` can be claimed by any statement of the app role (README, "Row-level security
  and its limits"): the policy guards against forgetting, not against injection.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import CURRENT_ROLE, Policy, disable_rls, enable_rls

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CACHE_CONNECTION = "current_setting('app.cache', true) = 'on'"


def upgrade():
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.Text(collation="C"), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("staleUntil", sa.DateTime(timezone=True), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("char_length(key) BETWEEN 1 AND 512", name=op.f("ck_cache_entries_key_length")),
        sa.CheckConstraint('"staleUntil" >= "expiresAt"', name=op.f("ck_cache_entries_stale_after_expiry")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cache_entries")),
        prefixes=["UNLOGGED"],
    )
    enable_rls("cache_entries",
               Policy("identified_or_cache", f"coalesce({CURRENT_ROLE}, '') <> '' OR {CACHE_CONNECTION}"))


def downgrade():
    disable_rls("cache_entries", "identified_or_cache")
    op.drop_table("cache_entries")
