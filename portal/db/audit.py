"""The audit trail: one row per INSERT, UPDATE and DELETE on every domain table.

Rows are written by a database trigger (``audit_row_change``), not by the application, so no
code path can forget them. The trigger reads the acting identity from the transaction-local
``app.actor`` setting (see ``portal.db.context``) and refuses the write when none is set. It
runs as the table owner (SECURITY DEFINER), so the app role needs no right to write
``audit_log`` itself: it may only read it. A second trigger makes the table append-only even
for roles that hold the privileges.

Deliberate deviation from the table conventions: ``audit_log`` has ``createdAt`` but no
``updatedAt``, because its rows never change.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Model


class AuditLog(Model):
    __tablename__ = "audit_log"
    __audited__ = False

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=text("gen_random_uuid()"))
    #: The order the changes were made in (rows of one transaction share ``createdAt``).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    #: ``user:<uuid>``, ``system:<name>`` or ``anonymous:web``.
    actor: Mapped[str] = mapped_column(String(80))
    #: The role the actor acted in (student, admin, system, ...).
    actor_role: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(6))
    table_name: Mapped[str] = mapped_column(String(63))
    row_id: Mapped[str | None] = mapped_column(Text)
    #: The row before the change, secret columns left out (UPDATE, DELETE).
    old_values: Mapped[dict | None] = mapped_column(JSONB)
    #: The row after the change, secret columns left out (INSERT, UPDATE).
    new_values: Mapped[dict | None] = mapped_column(JSONB)
    #: The PostgreSQL transaction id: rows of one request share it.
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("action IN ('INSERT', 'UPDATE', 'DELETE')", name="action"),
        Index(None, "table_name", "row_id"),
        Index(None, "created_at"),
        Index(None, "actor"),
    )


#: Installed by the first migration; later migrations only call ``audit_table``.
AUDIT_FUNCTIONS_SQL = r"""
CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_actor text := nullif(current_setting('app.actor', true), '');
    -- TG_ARGV is NULL, not empty, for a trigger without arguments; jsonb - NULL is NULL.
    v_secret text[] := coalesce(TG_ARGV, '{}');
    v_old jsonb;
    v_new jsonb;
    v_row record;
BEGIN
    IF v_actor IS NULL THEN
        RAISE EXCEPTION 'audit: write to % without an actor', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Set app.actor for the transaction (portal.db.context).';
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN v_old := to_jsonb(OLD) - v_secret; END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN v_new := to_jsonb(NEW) - v_secret; END IF;
    IF TG_OP = 'UPDATE' AND v_old = v_new THEN
        RETURN NULL;  -- nothing visible changed (e.g. only a secret column)
    END IF;
    IF TG_OP = 'DELETE' THEN v_row := OLD; ELSE v_row := NEW; END IF;
    INSERT INTO audit_log (actor, "actorRole", action, "tableName", "rowId", "oldValues", "newValues",
                           "transactionId")
    VALUES (v_actor, nullif(current_setting('app.role', true), ''), TG_OP, TG_TABLE_NAME,
            coalesce(v_new, v_old) ->> 'id', v_old, v_new, txid_current());
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

AUDIT_LOG_GUARD_SQL = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
-- Default privileges may already have granted writes to the app role: take them back from
-- every role but the owner (the trigger function writes as the owner).
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
             WHERE table_schema = current_schema() AND table_name = 'audit_log'
               AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_log FROM %I', r.grantee);
    END LOOP;
END $$;
"""
