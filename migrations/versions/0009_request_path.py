"""The per-request session lookup plans for one row: ``session_by_token`` is declared to
return at most one row (``tokenHash`` is unique), so the planner joins its user by primary key
instead of reading every user into a hash table (PostgreSQL assumes 1000 rows from a set-returning
function unless told).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER FUNCTION session_by_token(text) ROWS 1")


def downgrade():
    op.execute("ALTER FUNCTION session_by_token(text) ROWS 1000")
