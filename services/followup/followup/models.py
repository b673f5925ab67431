"""Tables of the followup schema (created by migration 0002). No names or record numbers here:
an infant is known by its platform id and the keyed hash of its EMR reference."""

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()


def _attendance_and_timer() -> list[Column]:
    return [
        Column("last_seen_on", Date),
        Column("lost_since", Date),
        Column("lost_last_seen_on", Date),
        # the earliest day a timer has work for this subject; the timer scan's index
        Column("next_timer_on", Date),
        # a subject's timers wait until its last input has settled (Settings.timer_settle_s)
        Column("settle_until", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


mothers = Table(
    "mothers",
    metadata,
    Column("client_id", UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("hiv_status", Text, nullable=False, server_default="unknown"),
    Column("positive_since", Date),
    Column("art_start_date", Date),
    Column("edd", Date),
    Column("delivered_on", Date),
    Column("breastfeeding_until", Date),
    # [{"on": "2026-01-02", "copies": 40}], in date order
    Column("viral_loads", JSONB, nullable=False, server_default="[]"),
    Column("died_on", Date),
    Column("transferred_out_on", Date),
    *_attendance_and_timer(),
)

infants = Table(
    "infants",
    metadata,
    Column("infant_id", UUID(as_uuid=True), primary_key=True),
    Column("client_id", UUID(as_uuid=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("ref_hash", Text),
    Column("birth_date", Date, nullable=False),
    Column("sex", Text, nullable=False),
    Column("birth_weight_g", Integer),
    Column("in_follow_up", Boolean, nullable=False, server_default="false"),
    Column("follow_up_from", Date),
    Column("high_risk", Boolean, nullable=False, server_default="false"),
    Column("high_risk_reasons", JSONB, nullable=False, server_default="[]"),
    Column("prophylaxis", JSONB, nullable=False, server_default="[]"),
    Column("mother_died_on", Date),
    # derived from the infant's events, kept for reads
    Column("died_on", Date),
    Column("transferred_out_on", Date),
    Column("art_started_on", Date),
    Column("breastfeeding_stopped_on", Date),
    Column("art_needed", Boolean, nullable=False, server_default="false"),
    Column("final_outcome", Text),
    Column("final_outcome_on", Date),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *_attendance_and_timer(),
)

schedule_items = Table(
    "schedule_items",
    metadata,
    Column("item_id", UUID(as_uuid=True), primary_key=True),
    Column("subject_type", Text, nullable=False),
    Column("subject_id", UUID(as_uuid=True), nullable=False),
    Column("client_id", UUID(as_uuid=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("test", Text),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("overdue_on", Date, nullable=False),
    Column("status", Text, nullable=False),
    Column("satisfied_on", Date),
    Column("cancel_reason", Text),
    Column("due_announced_at", DateTime(timezone=True)),
    Column("overdue_announced_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# every infant event an EMR posted and the platform accepted: the infant's history and the
# idempotency record of POST /v1/events (same event_id and content = duplicate)
infant_events = Table(
    "infant_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("content_hash", Text, nullable=False),
    Column("infant_id", UUID(as_uuid=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
