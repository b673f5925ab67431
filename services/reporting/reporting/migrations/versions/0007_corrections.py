"""Corrections (issue 17): the voids (ClientEventVoided, InfantEventVoided) with what they took out,
the infants a delivery registered, and the clinics' contacts kept per event so a void can take one out.

Events applied before this revision have no stored contact and no delivery infants: a void of one of
them takes out its facts but not its contact, nor its infants. `pmtct replay reporting` once after the
upgrade fills both from the topics.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("infant_ids", ARRAY(UUID(as_uuid=True))))
    op.create_table(
        "interactions",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("infant_id", UUID(as_uuid=True)),
    )
    op.create_index(
        "interactions_infant", "interactions", ["infant_id"], postgresql_where=sa.text("infant_id IS NOT NULL")
    )
    op.create_table(
        "voids",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("voided_event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("voided_type", sa.Text, nullable=False),
        sa.Column("voided_ids", ARRAY(UUID(as_uuid=True)), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("replaced_by_event_id", UUID(as_uuid=True)),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("infant_id", UUID(as_uuid=True)),
    )
    op.create_table(
        "voided_facts",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("voided_by", UUID(as_uuid=True), nullable=False),
    )
    op.create_table(
        "voided_infants",
        sa.Column("infant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("voided_by", UUID(as_uuid=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voided_infants")
    op.drop_table("voided_facts")
    op.drop_table("voids")
    op.drop_table("interactions")
    op.drop_column("deliveries", "infant_ids")
