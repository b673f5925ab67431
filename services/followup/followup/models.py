"""Tables of the followup schema (created by migration 0002). No names or record numbers here:
an infant is known by its platform id and the keyed hash of its EMR reference."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from pmtct_events.followup import InfantTest, ScheduleKind, SubjectType

from .schedule import Status

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
    Column("client_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("hiv_status", Text, nullable=False, server_default="unknown"),
    Column("positive_since", Date),
    Column("positive_seen_on", Date),
    Column("art_start_date", Date),
    Column("edd", Date),
    Column("delivered_on", Date),
    Column("breastfeeding_until", Date),
    # [{"on": "2026-01-02", "copies": 40}], in date order
    Column("viral_loads", JSONB, nullable=False, server_default="[]"),
    # [{"on": "2026-01-02", "result": "negative"}], in date order
    Column("hiv_tests", JSONB, nullable=False, server_default="[]"),
    # {episode_id: {"seen_from", "edd", "edd_from", "lost_on"}}
    Column("pregnancies", JSONB, nullable=False, server_default="{}"),
    Column("died_on", Date),
    Column("enrolled_on", Date),
    Column("transferred_out_on", Date),
    # her facts are a fold of `mother_events` (false: kept before corrections, migration 0009)
    Column("facts_from_events", Boolean, nullable=False, server_default="true"),
    *_attendance_and_timer(),
)

# every mother event follow-up applied, with the CloudEvent id it came in with: what her case is
# recomputed from when an event is voided (ClientEventVoided names the ids), in arrival order (`seq`)
mother_events = Table(
    "mother_events",
    metadata,
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("event_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("client_id", PG_UUID(as_uuid=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # the ClientEventVoided that voided it, and when
    Column("voided_by", PG_UUID(as_uuid=True)),
    Column("voided_at", DateTime(timezone=True)),
)

infants = Table(
    "infants",
    metadata,
    Column("infant_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("client_id", PG_UUID(as_uuid=True), nullable=False),
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
    Column("transferred_in_on", Date),
    Column("art_started_on", Date),
    Column("breastfeeding_stopped_on", Date),
    Column("art_needed", Boolean, nullable=False, server_default="false"),
    Column("pending_feeding_status", Boolean, nullable=False, server_default="false"),
    Column("final_outcome", Text),
    Column("final_outcome_on", Date),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # the DeliveryRecorded (CloudEvent id) that registered it; set when that delivery was voided:
    # the infant was never born on the platform (its events are refused `unknown_infant`)
    Column("delivery_event_id", PG_UUID(as_uuid=True)),
    Column("voided_at", DateTime(timezone=True)),
    Column("voided_by", PG_UUID(as_uuid=True)),
    *_attendance_and_timer(),
)


class _Table(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's table models: their tables join `metadata` (the other tables of the
    followup schema), not SQLModel's global one, which every service would share."""


# A schedule item's fields are declared once, here: `ScheduleItemBase` (what the API shows), the
# table `ScheduleItemRow` and the API's `schemas.ScheduleItemPublic`. The rules' record of it,
# `schedule.Item`, stays a slots dataclass (tests/followup/test_schedule_item_declared_once.py holds
# its fields to these): every infant and mother recompute builds and changes items, and a pydantic
# Item made an 8-item recompute 1.7-1.9 times slower (~+60 µs, a fifth of what followup spends on an
# event). The event (pmtct_events.followup.ScheduleItem) declares them again on purpose: partners
# install the event contracts (pmtct-events) alone, so they depend on no service's tables.
#
# Types as the migrations create them (SQLModel's defaults would be VARCHAR for str, a PG ENUM for
# an enum, a naive DateTime for datetime): enums are stored as their codes, in text.


class ScheduleItemBase(SQLModel):
    """A planned test or visit of an infant or a mother, and where it stands."""

    item_id: UUID = Field(primary_key=True, sa_type=PG_UUID(as_uuid=True))
    kind: ScheduleKind = Field(sa_type=Text)
    test: InfantTest | None = Field(sa_type=Text)
    window_start: date = Field(sa_type=Date)
    window_end: date = Field(sa_type=Date)
    overdue_on: date = Field(sa_type=Date)
    status: Status = Field(sa_type=Text)
    satisfied_on: date | None = Field(sa_type=Date)
    cancel_reason: str | None = Field(sa_type=Text)
    #: its name on the worklist: the clinical preset's label of a test point ("NAT at 6 months")
    label: str | None = Field(sa_type=Text)
    #: when its due and overdue transitions were committed, with their events
    due_announced_at: datetime | None = Field(sa_type=DateTime(timezone=True))
    overdue_announced_at: datetime | None = Field(sa_type=DateTime(timezone=True))


class ScheduleItemRow(ScheduleItemBase, _Table, table=True):
    """The `schedule_items` table. Only its Core table is used (`schedule_items`): the repository
    writes items in sets, with SQLAlchemy Core."""

    __tablename__ = "schedule_items"

    subject_type: SubjectType = Field(sa_type=Text)
    subject_id: UUID = Field(sa_type=PG_UUID(as_uuid=True))
    client_id: UUID = Field(sa_type=PG_UUID(as_uuid=True))
    facility_id: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()})
    updated_at: datetime = Field(sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()})


#: the table itself, for the repository's Core statements
schedule_items: Table = metadata.tables[ScheduleItemRow.__tablename__]

# every infant event an EMR posted and the platform accepted: the infant's history and the
# idempotency record of POST /v1/events (same event_id and content = duplicate)
infant_events = Table(
    "infant_events",
    metadata,
    Column("event_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("content_hash", Text, nullable=False),
    Column("infant_id", PG_UUID(as_uuid=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: corrections (servicekit.corrections, migration 0008): the CloudEvent ids its acceptance
    #: published; when and by which event it was voided
    Column("published_ids", ARRAY(PG_UUID(as_uuid=True))),
    Column("voided_at", DateTime(timezone=True)),
    Column("voided_by", PG_UUID(as_uuid=True)),
)


#: the columns of a schedule item a worklist shows
SHOWN_ITEM_COLUMNS = (
    "item_id, subject_type, subject_id, client_id, kind, test, label, window_start, window_end, overdue_on, status"
)
#: the at-once actions; the same list as the partial index `schedule_items_urgent` (migration 0006)
URGENT_ITEMS = (
    "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test', 'entry_nat', 'nat_after_antibody',"
    " 'mother_art_start', 'mother_hiv_test_delivery', 'mother_adherence_support')"
)
