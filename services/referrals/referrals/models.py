"""Tables of the referrals schema (created by migrations/versions/0002_referrals.py), the
`Referral` record the service works with (its transitions and the event each one raises), and an
ART-initiation wait. A referral's fields are declared once, as SQLModel models (`ReferralBase`,
`ReferralFields`), from which its table, its record and its API schema are made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel
from sqlmodel.main import SQLModelConfig

from pmtct_events.followup import SubjectType
from pmtct_events.referrals import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralCreated,
    ReferralDeclined,
    ReferralEvent,
    ReferralExpired,
    ReferralOrigin,
    ReferralReopened,
    ReferralService,
    ReferralStatus,
    Urgency,
)

from . import rules
from .rules import Action

metadata = MetaData()

#: column types as the migrations create them (SQLModel's defaults would be VARCHAR for str, a PG
#: ENUM for an enum, a naive DateTime for datetime): enums are stored as their codes, in text
_UUID = PgUUID(as_uuid=True)
_TIME = DateTime(timezone=True)


class _Table(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's table models: their tables join `metadata` (the other tables of the
    referrals schema), not SQLModel's global one, which every service would share."""


# A referral's fields are declared once, here: `ReferralBase` (what the API shows), `ReferralFields`
# (what the service stores besides), the table `ReferralRow`, the record `Referral` (below) and the
# API's `schemas.ReferralPublic`. Its event (pmtct_events.referrals) declares them again on
# purpose: partners install the event contracts (pmtct-events) alone, so they depend on no
# service's tables; `Referral.event` maps one onto the other.


class ReferralBase(SQLModel):
    """A referral as anyone who may read it sees it (the API, the FHIR view)."""

    id: UUID = Field(primary_key=True, sa_type=_UUID)
    subject_type: SubjectType = Field(sa_type=Text)
    subject_id: UUID = Field(sa_type=_UUID)
    client_id: UUID | None = Field(sa_type=_UUID)
    from_facility_id: str = Field(sa_type=Text)
    to_facility_id: str | None = Field(sa_type=Text)
    referral_service: ReferralService = Field(sa_type=Text)
    reason_code: str = Field(sa_type=Text)
    urgency: Urgency = Field(sa_type=Text)
    due_by: date = Field(sa_type=Date)
    status: ReferralStatus = Field(sa_type=Text)
    origin: ReferralOrigin = Field(sa_type=Text)
    outcome_code: str | None = Field(sa_type=Text)
    #: counts its changes, starting at 1 when it is requested
    version: int = Field(sa_type=Integer)
    requested_at: datetime = Field(sa_type=_TIME)
    accepted_at: datetime | None = Field(sa_type=_TIME)
    closed_at: datetime | None = Field(sa_type=_TIME)


class ReferralFields(ReferralBase):
    """A referral as stored: who created it and the event that caused it are the service's own."""

    created_by: str = Field(sa_type=Text)
    cause_event_id: UUID | None = Field(sa_type=_UUID)
    updated_at: datetime = Field(sa_type=_TIME, sa_column_kwargs={"server_default": func.now()})
    #: the clinical day of the need an automatic referral was opened for (the overdue day of the
    #: item, the day she became lost): a fact dated before it does not complete it (`rules.closes_on`;
    #: migration 0007)
    need_on: date | None = Field(default=None, sa_type=Date)
    #: the CloudEvent that closed it, when an event did (an ART start completing it, a death
    #: cancelling it): a void naming it reopens the referral (migration 0008)
    closed_by_event_id: UUID | None = Field(default=None, sa_type=_UUID)


class ReferralRow(ReferralFields, _Table, table=True):
    """The `referral` table. Only its Core table is used (`referral`): the repository reads and
    writes referrals in sets, with SQLAlchemy Core, never one ORM object at a time."""

    __tablename__ = "referral"


#: the table itself, for the repository's Core statements
referral: Table = metadata.tables[ReferralRow.__tablename__]

referral_action = Table(
    "referral_action",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("referral_id", PgUUID(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome_code", Text),
    Column("note", Text),
    Column("actor", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

feed_entry = Table(
    "feed_entry",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("event_id", PgUUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("referral_id", PgUUID(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_facility_id", Text, nullable=False),
    Column("to_facility_id", Text),
    Column("data", JSONB, nullable=False),
    Column("committed_at", DateTime(timezone=True), nullable=False),
)

feed_counter = Table(
    "feed_counter",
    metadata,
    Column("singleton", Boolean, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

art_wait = Table(
    "art_wait",
    metadata,
    Column("client_id", PgUUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("diagnosed_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("reason_code", Text, nullable=False),
    Column("cause_event_id", PgUUID(as_uuid=True)),
    Column("correlation_id", Text),
    #: a wait ended by an event (an ART start, a death) is kept, so that a void of that event lets it
    #: run again (migration 0009); running while `ended_at` is null
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by_event_id", PgUUID(as_uuid=True)),
)

#: the subjects the platform has heard of, by facility (migrations/versions/0003_known_subjects.py)
known_subject = Table(
    "known_subject",
    metadata,
    Column("subject_id", PgUUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, primary_key=True),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: every ART start the service heard of, by the CloudEvent that recorded it (an ArtInitiated, an
#: InfantArtInitiated, an enrolment on ART): a void of one leaves her on ART since the earliest that
#: stands (migrations/versions/0011_art_starts.py)
art_start = Table(
    "art_start",
    metadata,
    Column("subject_id", PgUUID(as_uuid=True), primary_key=True),
    Column("event_id", PgUUID(as_uuid=True), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
)

#: every fact of a subject's positive HIV status the service heard of (a positive test, an enrolment
#: as known positive), by the CloudEvent that recorded it: whether a test is a new diagnosis, and
#: the earliest diagnosis her ART wait counts from, follow from the ones that stand, whatever order
#: they arrived in (migrations/versions/0012_positive_status.py)
positive_status = Table(
    "positive_status",
    metadata,
    Column("subject_id", PgUUID(as_uuid=True), primary_key=True),
    Column("event_id", PgUUID(as_uuid=True), primary_key=True),
    Column("diagnosed_at", DateTime(timezone=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    #: the ART wait's reason it starts (None: she was on ART by it, it starts none)
    Column("reason_code", Text),
    Column("correlation_id", Text),
)

#: the infants each delivery registered (its DeliveryRecorded CloudEvent id): a void of the delivery
#: reaches their referrals (migrations/versions/0008_corrections.py)
delivered_infant = Table(
    "delivered_infant",
    metadata,
    Column("infant_id", PgUUID(as_uuid=True), primary_key=True),
    Column("delivery_event_id", PgUUID(as_uuid=True), nullable=False),
)

subject_state = Table(
    "subject_state",
    metadata,
    Column("subject_id", PgUUID(as_uuid=True), primary_key=True),
    Column("on_art_since", DateTime(timezone=True)),
    Column("ended", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    #: when her latest enrolment happened: a transfer out dated before it was followed by it (migration 0010)
    Column("enrolled_at", DateTime(timezone=True)),
    #: when the fact that ended her follow-up (`ended`) happened, and its CloudEvent (migration 0013)
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by_event_id", PgUUID(as_uuid=True)),
)


class Referral(ReferralFields):
    """One referral as the service works with it: immutable; each transition is a new version.

    A frozen pydantic model of `ReferralFields`, where it was a frozen dataclass declaring them
    again. Measured against that dataclass: opening one (`requested`) costs ~3 µs more, loading and
    changing one (`from_row`, `transitioned`) ~2 µs less; in the consumer's batches the record's work
    is under 2% of a batch either way (tests/referrals timed both), so nothing is lost by it."""

    model_config = SQLModelConfig(frozen=True)

    @classmethod
    def requested(cls, *, requested_at: datetime, **fields: Any) -> Referral:
        """A new referral, at its first version."""
        return cls(
            id=uuid4(),
            status=ReferralStatus.requested,
            outcome_code=None,
            version=1,
            requested_at=requested_at,
            accepted_at=None,
            closed_at=None,
            updated_at=requested_at,
            **fields,
        )

    @classmethod
    def from_row(cls, row: Any) -> Referral:
        """A row of `referral` (its codes become enums)."""
        return cls.model_validate(row._mapping)

    def values(self) -> dict[str, Any]:
        """Column values, enums as their codes."""
        return {name: getattr(getattr(self, name), "value", getattr(self, name)) for name in _FIELDS}

    @property
    def receiving_facility_id(self) -> str:
        """Who fulfils it: the facility referred to, or the referring facility's own service."""
        return self.to_facility_id or self.from_facility_id

    def changed(self, **changes: Any) -> Referral:
        """Its next version (`changes` are not validated: they come from the transitions below)."""
        return self.model_copy(update={"version": self.version + 1, **changes})

    @property
    def is_open(self) -> bool:
        return self.status in rules.OPEN

    def transitioned(
        self, action: Action, at: datetime, outcome_code: str | None, closed_by: UUID | None = None
    ) -> Referral:
        """Its next version after `action` at `at`; rules.InvalidTransition if its status forbids it.
        `closed_by`: the CloudEvent that closes it (kept, for a void of it: `reopened`)."""
        if action is Action.reopen:
            return self.reopened()
        status = rules.next_status(self.status, action)
        if status is ReferralStatus.accepted:
            return self.changed(status=status, accepted_at=at, outcome_code=outcome_code)
        return self.changed(
            status=status,
            closed_at=at,
            outcome_code=outcome_code or self.outcome_code,
            closed_by_event_id=closed_by,
        )

    def reopened(self) -> Referral:
        """Its next version open again, as it was before it was closed: outcome and closure cleared."""
        status = rules.reopened_status(self.status, accepted=self.accepted_at is not None)
        return self.changed(status=status, outcome_code=None, closed_at=None, closed_by_event_id=None)

    def event(self, action: Action | None, at: datetime) -> ReferralEvent:
        """The event this version raises (`action` None: it was requested), carrying its whole state."""
        return EVENT_OF[action](
            facility_id=self.from_facility_id,
            occurred_at=at,
            referral_id=self.id,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            client_id=self.client_id,
            to_facility_id=self.to_facility_id,
            referral_service=self.referral_service,
            urgency=self.urgency,
            due_by=self.due_by,
            status=self.status,
            origin=self.origin,
            reason_code=self.reason_code,
            outcome_code=self.outcome_code,
            version=self.version,
            requested_at=self.requested_at,
            accepted_at=self.accepted_at,
            from_facility_id=self.from_facility_id,
            closed_at=self.closed_at,
        )


EVENT_OF: dict[Action | None, type[ReferralEvent]] = {
    None: ReferralCreated,
    Action.accept: ReferralAccepted,
    Action.complete: ReferralCompleted,
    Action.decline: ReferralDeclined,
    Action.cancel: ReferralCancelled,
    Action.expire: ReferralExpired,
    Action.withdraw: ReferralCancelled,
    Action.reopen: ReferralReopened,
}
_FIELDS = tuple(ReferralFields.model_fields)


@dataclass(frozen=True, slots=True)
class ArtWait:
    """A positive mother not on ART: an ART-initiation referral opens at `due_at` unless ART starts
    first. Keeps the event that started it, as the cause of the referral the timer opens, and the
    one that ended it."""

    client_id: UUID
    facility_id: str
    diagnosed_at: datetime
    due_at: datetime
    reason_code: str
    cause_event_id: UUID | None
    correlation_id: str | None
    #: when, and by which event, it ended without a referral (ART started, she died or left): kept,
    #: should that event be voided (`repository.Subjects.resume_art_wait`)
    ended_at: datetime | None = None
    ended_by_event_id: UUID | None = None
