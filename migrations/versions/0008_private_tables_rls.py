"""Row-level security on the tables that had none: the audit trail, users, students, the e-mail
outbox and the job queue; the password hash readable only through a function that checks who asks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 15:20:00.000000

- ``audit_log`` copies private rows (tutor messages, transfer notes, answers, notifications,
  idempotency keys): only admins, compliance officers and system actors read it. The audit
  trigger inserts as the owner, which FORCE subjects to the policies too, hence the INSERT
  policy; the app role still holds no INSERT privilege on the table.
- ``users``: readable by any identified actor (login, registration and the session lookup run
  as ``anonymous`` before anyone is known; names and addresses show on many pages), by nobody
  without an identity. ``passwordHash`` is taken out of every role's SELECT but the owner's and
  read through ``user_password_hash(id)``: a user's own hash, and any hash only for the login
  and invitation steps (``anonymous``) and system actors. ``user_has_password(id)`` tells any
  identified actor whether a password is set (reactivating an account asks it).
- ``students``: a student's own profile; admins and system actors all; compliance officers read;
  a profile is added by its user, an admin, a system actor, or at registration (``anonymous``).
- ``emails`` (bodies carry one-time links): only admins and system actors (the e-mail worker)
  read or change them; any identified actor queues one.
- ``procrastinate_*``: reached by system actors, and by the job queue's own connections, which
  say so with the connection-level setting ``app.job_queue`` (portal.platform.jobs).
- No role but the owner may create temporary tables or functions in the database: a temporary
  table shadows the table of its name for the rest of the connection's life, so an injected
  statement could plant one on a pooled connection and catch the rows of later requests.
"""
from alembic import op

from portal.db.migration_helpers import (
    CURRENT_ROLE,
    CURRENT_USER_ID,
    Policy,
    anyone_may_insert,
    disable_rls,
    enable_rls,
    hide_columns,
    identified,
    own_rows,
    roles_may,
    show_columns,
)

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

QUEUE_TABLES = ("procrastinate_jobs", "procrastinate_periodic_defers", "procrastinate_events",
                "procrastinate_workers")
JOB_QUEUE = "current_setting('app.job_queue', true) = 'on'"

PASSWORD_HASH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION user_password_hash(user_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    -- Runs as the owner, whom FORCE keeps under the policies of users: no identity, no row.
    SELECT u."passwordHash" FROM users AS u
     WHERE u.id = user_id
       AND (u.id = {CURRENT_USER_ID} OR {CURRENT_ROLE} IN ('anonymous', 'system'))
$$;

CREATE OR REPLACE FUNCTION user_has_password(user_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT u."passwordHash" IS NOT NULL FROM users AS u WHERE u.id = user_id
$$;
"""


NO_TEMPORARY = """
DO $$
DECLARE r record;
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    FOR r IN SELECT pg_get_userbyid(a.grantee) AS grantee
               FROM pg_database d, aclexplode(d.datacl) AS a
              WHERE d.datname = current_database() AND a.privilege_type = 'TEMPORARY'
                AND a.grantee <> 0 AND a.grantee <> d.datdba
    LOOP
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM %I', current_database(), r.grantee);
    END LOOP;
END $$
"""


def upgrade():
    op.execute(NO_TEMPORARY)
    enable_rls("audit_log", roles_may("admin", "compliance", "system", name="auditors"),
               Policy("trigger_inserts", None, "true", "INSERT"))

    enable_rls("users", identified())
    hide_columns("users", "passwordHash")
    op.execute(PASSWORD_HASH_FUNCTION)

    enable_rls("students", own_rows(), roles_may("admin", "system", name="admins"),
               Policy("officers_read", f"{CURRENT_ROLE} = 'compliance'", command="SELECT"),
               Policy("registration", None, f"{CURRENT_ROLE} = 'anonymous'", command="INSERT"))

    enable_rls("emails", roles_may("admin", "system", name="admins"), anyone_may_insert())

    for table in QUEUE_TABLES:
        enable_rls(table, Policy("job_queue", f"{JOB_QUEUE} OR {CURRENT_ROLE} = 'system'"))


def downgrade():
    for table in QUEUE_TABLES:
        disable_rls(table, "job_queue")
    disable_rls("emails", "admins", "anyone_inserts")
    disable_rls("students", "own_rows", "admins", "officers_read", "registration")
    op.execute("DROP FUNCTION IF EXISTS user_password_hash(uuid)")
    op.execute("DROP FUNCTION IF EXISTS user_has_password(uuid)")
    show_columns("users")
    disable_rls("users", "identified")
    disable_rls("audit_log", "auditors", "trigger_inserts")
    op.execute("DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$")
