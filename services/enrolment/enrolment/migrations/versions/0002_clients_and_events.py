"""Clients, their facility registrations, accepted EMR events, infants and the personal-data audit.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "clients",
        sa.Column("client_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("national_id_hash", sa.Text, unique=True),
        sa.Column("birth_date", sa.Date),
        sa.Column("birth_date_estimated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("given_name", sa.LargeBinary),
        sa.Column("family_name", sa.LargeBinary),
        sa.Column("phone", sa.LargeBinary),
        sa.Column("national_id", sa.LargeBinary),
        sa.Column("personal_as_of", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    )
    op.create_table(
        "registrations",
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("client_ref", sa.Text, nullable=False),
        sa.Column("client_id", UUID(as_uuid=True), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("facility_id", "client_ref"),
    )
    op.create_index("registrations_client", "registrations", ["client_id"])
    op.create_table(
        "client_events",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("batch_id", UUID(as_uuid=True), nullable=False),
        sa.Column("client_id", UUID(as_uuid=True), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("result", JSONB, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    )
    op.create_index("client_events_history", "client_events", ["client_id", "occurred_at"])
    op.create_table(
        "infants",
        sa.Column("infant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("client_id", UUID(as_uuid=True), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("ref_hash", sa.Text, nullable=False),
        sa.Column("delivery_event_id", UUID(as_uuid=True), sa.ForeignKey("client_events.event_id"), nullable=False),
        sa.Column("born_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.UniqueConstraint("facility_id", "ref_hash", name="infants_facility_ref"),
    )
    op.create_index("infants_client", "infants", ["client_id"])
    op.create_table(
        "personal_data_reads",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("client_id", UUID(as_uuid=True), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("access", sa.Text, nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
    )
    op.create_index("personal_data_reads_client", "personal_data_reads", ["client_id", "read_at"])
    op.create_index("personal_data_reads_caller", "personal_data_reads", ["caller", "read_at"])


def downgrade() -> None:
    for table in ("personal_data_reads", "infants", "client_events", "registrations", "clients"):
        op.drop_table(table)
