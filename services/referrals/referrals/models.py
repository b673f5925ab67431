"""Tables of the referrals schema (created by migrations/versions/0002_referrals.py), the
`Referral` record the service works with (its transitions and the event each one raises), and an
ART-initiation wait."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID

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
    ReferralService,
    ReferralStatus,
    Urgency,
)

from . import rules
from .rules import Action

metadata = MetaData()

referral = Table(
    "referral",
    metadata,
    Column("id", PgUUID(as_uuid=True), primary_key=True),
    Column("subject_type", Text, nullable=False),
    Column("subject_id", PgUUID(as_uuid=True), nullable=False),
    Column("client_id", PgUUID(as_uuid=True)),
    Column("from_facility_id", Text, nullable=False),
    Column("to_facility_id", Text),
    Column("referral_service", Text, nullable=False),
    Column("reason_code", Text, nullable=False),
    Column("urgency", Text, nullable=False),
    Column("due_by", Date, nullable=False),
    Column("status", Text, nullable=False),
    Column("origin", Text, nullable=False),
    Column("outcome_code", Text),
    Column("version", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("created_by", Text, nullable=False),
    Column("cause_event_id", PgUUID(as_uuid=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

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
)

subject_state = Table(
    "subject_state",
    metadata,
    Column("subject_id", PgUUID(as_uuid=True), primary_key=True),
    Column("on_art_since", DateTime(timezone=True)),
    Column("ended", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Referral:
    """One referral as stored: `version` counts its changes, starting at 1 when it is requested."""

    id: UUID
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID | None
    from_facility_id: str
    to_facility_id: str | None
    referral_service: ReferralService
    reason_code: str
    urgency: Urgency
    due_by: date
    status: ReferralStatus
    origin: ReferralOrigin
    outcome_code: str | None
    version: int
    requested_at: datetime
    accepted_at: datetime | None
    closed_at: datetime | None
    created_by: str
    cause_event_id: UUID | None
    updated_at: datetime

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
        m = row._mapping
        return cls(
            **{
                **m,
                "subject_type": SubjectType(m["subject_type"]),
                "referral_service": ReferralService(m["referral_service"]),
                "urgency": Urgency(m["urgency"]),
                "status": ReferralStatus(m["status"]),
                "origin": ReferralOrigin(m["origin"]),
            }
        )

    def values(self) -> dict[str, Any]:
        """Column values, enums as their codes."""
        return {name: getattr(getattr(self, name), "value", getattr(self, name)) for name in self.__slots__}

    @property
    def receiving_facility_id(self) -> str:
        """Who fulfils it: the facility referred to, or the referring facility's own service."""
        return self.to_facility_id or self.from_facility_id

    def changed(self, **changes: Any) -> Referral:
        return replace(self, version=self.version + 1, **changes)

    @property
    def is_open(self) -> bool:
        return self.status in rules.OPEN

    def transitioned(self, action: Action, at: datetime, outcome_code: str | None) -> Referral:
        """Its next version after `action` at `at`; rules.InvalidTransition if its status forbids it."""
        status = rules.next_status(self.status, action)
        if status is ReferralStatus.accepted:
            return self.changed(status=status, accepted_at=at, outcome_code=outcome_code)
        return self.changed(status=status, closed_at=at, outcome_code=outcome_code or self.outcome_code)

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
        )


EVENT_OF: dict[Action | None, type[ReferralEvent]] = {
    None: ReferralCreated,
    Action.accept: ReferralAccepted,
    Action.complete: ReferralCompleted,
    Action.decline: ReferralDeclined,
    Action.cancel: ReferralCancelled,
    Action.expire: ReferralExpired,
}


@dataclass(frozen=True, slots=True)
class ArtWait:
    """A positive mother not on ART: an ART-initiation referral opens at `due_at` unless ART starts
    first. Keeps the event that started it, as the cause of the referral the timer opens."""

    client_id: UUID
    facility_id: str
    diagnosed_at: datetime
    due_at: datetime
    reason_code: str
    cause_event_id: UUID | None
    correlation_id: str | None
