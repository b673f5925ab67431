"""Caseloads and staff as follow-up announces them: what limits a Mentor Mother's personal-data
read to her own clients.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "caseload",
        sa.Column("client_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("staff_id", sa.Text),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("caseload_staff", "caseload", ["staff_id"])
    op.create_table(
        "staff",
        sa.Column("staff_id", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("staff")
    op.drop_table("caseload")
