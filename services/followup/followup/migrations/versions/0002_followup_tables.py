"""Mothers, infants, schedule items and the infant events posted by EMRs.

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

OPEN = "status IN ('planned', 'due', 'overdue')"
NOT_NULL_TIMER = sa.text("next_timer_on IS NOT NULL")


def _attendance_and_timer() -> list[sa.Column]:
    return [
        sa.Column("last_seen_on", sa.Date),
        sa.Column("lost_since", sa.Date),
        sa.Column("lost_last_seen_on", sa.Date),
        sa.Column("next_timer_on", sa.Date),
        sa.Column("settle_until", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def upgrade() -> None:
    op.create_table(
        "mothers",
        sa.Column("client_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("hiv_status", sa.Text, nullable=False, server_default="unknown"),
        sa.Column("positive_since", sa.Date),
        sa.Column("art_start_date", sa.Date),
        sa.Column("edd", sa.Date),
        sa.Column("delivered_on", sa.Date),
        sa.Column("breastfeeding_until", sa.Date),
        sa.Column("viral_loads", JSONB, nullable=False, server_default="[]"),
        sa.Column("died_on", sa.Date),
        sa.Column("transferred_out_on", sa.Date),
        *_attendance_and_timer(),
    )
    op.create_index("mothers_timer", "mothers", ["next_timer_on"], postgresql_where=NOT_NULL_TIMER)

    op.create_table(
        "infants",
        sa.Column("infant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("ref_hash", sa.Text),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("sex", sa.Text, nullable=False),
        sa.Column("birth_weight_g", sa.Integer),
        sa.Column("in_follow_up", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("follow_up_from", sa.Date),
        sa.Column("high_risk", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("high_risk_reasons", JSONB, nullable=False, server_default="[]"),
        sa.Column("prophylaxis", JSONB, nullable=False, server_default="[]"),
        sa.Column("mother_died_on", sa.Date),
        sa.Column("died_on", sa.Date),
        sa.Column("transferred_out_on", sa.Date),
        sa.Column("art_started_on", sa.Date),
        sa.Column("breastfeeding_stopped_on", sa.Date),
        sa.Column("art_needed", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("final_outcome", sa.Text),
        sa.Column("final_outcome_on", sa.Date),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        *_attendance_and_timer(),
    )
    op.create_index("infants_client", "infants", ["client_id"])
    op.create_index(
        "infants_ref_hash", "infants", ["ref_hash"], unique=True, postgresql_where=sa.text("ref_hash IS NOT NULL")
    )
    op.create_index("infants_timer", "infants", ["next_timer_on"], postgresql_where=NOT_NULL_TIMER)

    op.create_table(
        "schedule_items",
        sa.Column("item_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("subject_type", sa.Text, nullable=False),
        sa.Column("subject_id", UUID(as_uuid=True), nullable=False),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("test", sa.Text),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("overdue_on", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("satisfied_on", sa.Date),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("due_announced_at", sa.DateTime(timezone=True)),
        sa.Column("overdue_announced_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('planned', 'due', 'overdue', 'satisfied', 'cancelled')", name="item_status"),
        sa.CheckConstraint("subject_type IN ('infant', 'client')", name="item_subject_type"),
    )
    op.create_index("schedule_items_subject", "schedule_items", ["subject_id"])
    # the worklist: a facility's open items whose window has opened by the day asked about
    op.create_index(
        "schedule_items_worklist",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(OPEN),
        postgresql_include=["overdue_on", "window_end", "kind"],
    )

    op.create_table(
        "infant_events",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("infant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("infant_events_infant", "infant_events", ["infant_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("infant_events")
    op.drop_table("schedule_items")
    op.drop_table("infants")
    op.drop_table("mothers")
