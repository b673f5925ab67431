"""The Mentor Mothers' work: staff, caseloads, the records of POST /v1/contacts, tracing counts,
index contacts; and the index the Mentor Mother's worklist reads (her clients' open items).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("staff_id", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("staff_facility", "staff", ["facility_id", "role"])
    op.create_table(
        "caseload",
        sa.Column("client_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("staff_id", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("caseload_staff", "caseload", ["staff_id"], postgresql_where=sa.text("staff_id IS NOT NULL"))
    op.create_table(
        "mentoring_records",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("staff_id", sa.Text, nullable=False),
        sa.Column("client_id", UUID(as_uuid=True)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("result", JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("mentoring_records_client", "mentoring_records", ["client_id", "occurred_at"])
    op.create_table(
        "tracing",
        sa.Column("subject_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lost_since", sa.Date),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("confirmed_lost_on", sa.Date),
    )
    op.create_table(
        "index_contacts",
        sa.Column("contact_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("relationship", sa.Text, nullable=False),
        sa.Column("elicited_on", sa.Date),
        sa.Column("invited_on", sa.Date),
        sa.Column("tested_on", sa.Date),
        sa.Column("result", sa.Text),
        sa.Column("known_positive", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("linked_on", sa.Date),
    )
    op.create_index("index_contacts_client", "index_contacts", ["client_id"])
    op.create_index(
        "schedule_items_client_open",
        "schedule_items",
        ["client_id", "overdue_on"],
        postgresql_where=sa.text("status IN ('planned', 'due', 'overdue')"),
    )


def downgrade() -> None:
    op.drop_index("schedule_items_client_open", "schedule_items")
    for table in ("index_contacts", "tracing", "mentoring_records", "caseload", "staff"):
        op.drop_table(table)
