"""Corrections (issue 17): the mother events follow-up applied, each with the CloudEvent id it came
in with (`mother_events`), so that a ClientEventVoided naming those ids recomputes her case from
the events that stand; the delivery that registered each infant, and the void that ended an infant
its voided delivery had registered (`infants.delivery_event_id`, `voided_at`, `voided_by`).

Mothers whose facts were kept before this migration have no events to recompute from
(`mothers.facts_from_events` false): a void of one of their earlier events cannot take its facts
back (the stream logs it); every mother first seen from now on has it true.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mother_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False, unique=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("data", JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("voided_by", UUID(as_uuid=True)),
        sa.Column("voided_at", sa.DateTime(timezone=True)),
    )
    op.create_index("mother_events_client", "mother_events", ["client_id", "seq"])
    op.add_column("mothers", sa.Column("facts_from_events", sa.Boolean(), nullable=False, server_default="false"))
    op.alter_column("mothers", "facts_from_events", server_default="true")
    op.add_column("infants", sa.Column("delivery_event_id", UUID(as_uuid=True)))
    op.add_column("infants", sa.Column("voided_at", sa.DateTime(timezone=True)))
    op.add_column("infants", sa.Column("voided_by", UUID(as_uuid=True)))


def downgrade() -> None:
    for name in ("voided_by", "voided_at", "delivery_event_id"):
        op.drop_column("infants", name)
    op.drop_column("mothers", "facts_from_events")
    op.drop_index("mother_events_client", "mother_events")
    op.drop_table("mother_events")
