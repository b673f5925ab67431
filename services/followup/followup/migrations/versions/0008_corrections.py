"""Corrections (servicekit.corrections): per accepted infant event, the CloudEvent ids its
acceptance published (`published_ids`, what a void publishes as `voided_ids`) and whether it was
voided (`voided_at`, `voided_by`).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from servicekit.migrations import add_correction_columns, drop_correction_columns

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_correction_columns(op, "infant_events")


def downgrade() -> None:
    drop_correction_columns(op, "infant_events")
