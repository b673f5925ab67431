"""Held EMR events (servicekit.pending): an event answered `pending` waits here for what it
needs (its subject, an earlier event) and keeps what became of it (GET /v1/events/{event_id}).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from servicekit.migrations import create_pending_table, drop_pending_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_pending_table(op)


def downgrade() -> None:
    drop_pending_table(op)
