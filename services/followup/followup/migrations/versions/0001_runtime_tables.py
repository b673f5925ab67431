"""Outbox and inbox of the followup service.

Revision ID: 0001
Revises:
"""

from alembic import op

from servicekit.migrations import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables(op)


def downgrade() -> None:
    drop_runtime_tables(op)
