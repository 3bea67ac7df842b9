"""Analytics: ``events`` partitioned by month, the functions that add and drop its partitions,
and rollups in ``metrics`` (a period column and a unique key per name, period, start and labels)

Revision ID: 0018
Revises: 0017

- ``events`` is ``PARTITION BY RANGE ("occurredAt")``, one partition a month named
  ``events_YYYY_MM``. The app role owns nothing, and only the owner of a table may add or drop
  its partitions, so two SECURITY DEFINER functions do it for the jobs:
  ``analytics_add_month(day)`` creates the partition of ``day``'s month if it is missing, and
  ``analytics_drop_months_before(cutoff)`` drops every partition that ends on or before
  ``cutoff`` (the first of a month) and returns their names. Neither takes a table name, so
  neither can touch anything else. This migration adds the months from the previous one to two
  ahead; the daily job keeps adding ahead (``ANALYTICS_PARTITIONS_AHEAD``).
- Row-level security: the log is private. Admins and system actors read every row; a user reads
  only their own (never another's); any identified actor, and the after-commit writer, may add
  rows. Each partition has RLS enabled and forced with no policy, so the app role (which gets
  table rights on new tables by default privileges) reaches rows only through ``events``.
- No audit trigger on ``events`` (it is a log itself, written once, never changed).
- ``metrics.period``: NULL for a point (as before), ``hour`` or ``day`` for a rollup; the partial
  unique index ``uq_metrics_rollup`` makes the rollup job's upserts idempotent.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from portal.db.migration_helpers import CURRENT_ROLE, CURRENT_USER_ID, Policy, disable_rls, enable_rls

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

PARTITION_FUNCTIONS = r"""
CREATE FUNCTION analytics_add_month(day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    first date := date_trunc('month', day)::date;
    partition text := 'events_' || to_char(first, 'YYYY_MM');
BEGIN
    IF to_regclass('public.' || partition) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE public.%I PARTITION OF public.events FOR VALUES FROM (%L) TO (%L)', partition,
                   (first::timestamp AT TIME ZONE 'UTC'),
                   ((first + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', partition);
    EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', partition);
    RETURN true;
END $$;

CREATE FUNCTION analytics_drop_months_before(cutoff date) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'public.events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
             ORDER BY c.relname
    LOOP
        IF (to_date(substr(r.relname, 8), 'YYYY_MM') + interval '1 month')::date <= cutoff THEN
            EXECUTE format('DROP TABLE public.%I', r.relname);
            RETURN NEXT r.relname;
        END IF;
    END LOOP;
END $$;
"""


def upgrade():
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("occurredAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("userId", sa.Uuid(), nullable=True),
        sa.Column("sessionId", sa.String(length=64), nullable=True),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", "occurredAt", name=op.f("pk_events")),
        postgresql_partition_by='RANGE ("occurredAt")',
    )
    op.create_index("ix_events_name_occurred", "events", ["name", "occurredAt"], unique=False)
    op.create_index("ix_events_user_occurred", "events", ["userId", "occurredAt"], unique=False)
    op.execute(PARTITION_FUNCTIONS)
    op.execute("SELECT analytics_add_month((date_trunc('month', now() AT TIME ZONE 'UTC') "
               "+ make_interval(months => m))::date) FROM generate_series(-1, 2) AS m")
    enable_rls("events",
               Policy("staff_read", f"{CURRENT_ROLE} IN ('admin', 'system')", command="SELECT"),
               Policy("own_rows", f'"userId" = {CURRENT_USER_ID}', command="SELECT"),
               Policy("anyone_inserts", None, "true", "INSERT"),
               Policy("system_deletes", f"{CURRENT_ROLE} = 'system'", command="DELETE"))

    op.add_column("metrics", sa.Column("period", sa.String(length=8), nullable=True))
    op.create_check_constraint(op.f("ck_metrics_period"), "metrics", "period IS NULL OR period IN ('hour', 'day')")
    op.create_index("uq_metrics_rollup", "metrics", ["name", "period", "recordedAt", "labels"], unique=True,
                    postgresql_where=sa.text("period IS NOT NULL"))


def downgrade():
    op.drop_index("uq_metrics_rollup", table_name="metrics", postgresql_where=sa.text("period IS NOT NULL"))
    op.drop_constraint(op.f("ck_metrics_period"), "metrics", type_="check")
    op.drop_column("metrics", "period")
    disable_rls("events", "staff_read", "own_rows", "anyone_inserts", "system_deletes")
    op.execute("DROP FUNCTION analytics_drop_months_before(date)")
    op.execute("DROP FUNCTION analytics_add_month(date)")
    op.drop_table("events")
