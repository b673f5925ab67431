"""The Mentor Mothers' programme facts: one row per record of her work, every caseload assignment.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "programme_records",
        sa.Column("record_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("staff_id", sa.Text, nullable=False),
        sa.Column("client_id", UUID(as_uuid=True)),
        sa.Column("subject_id", UUID(as_uuid=True)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text),
        sa.Column("attendance", sa.Integer),
        sa.Column("client_ids", ARRAY(UUID(as_uuid=True))),
        sa.Column("flag", sa.Boolean, nullable=False, server_default="false"),
    )
    op.create_index("programme_records_scope", "programme_records", ["facility_id", "day"])
    op.create_table(
        "programme_assignments",
        sa.Column("ce_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("staff_id", sa.Text),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
    )
    op.create_index("programme_assignments_client", "programme_assignments", ["client_id", "assigned_at"])


def downgrade() -> None:
    op.drop_table("programme_assignments")
    op.drop_table("programme_records")
