"""API models of the Mentor Mothers' work: staff, caseloads, her worklist, and the records her
app posts to `POST /v1/contacts` (strict, like EMR events: `servicekit.intake`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pmtct_events.followup import InfantTest, ScheduleKind, SubjectType, TestResult
from pmtct_events.mentoring import (
    AssignmentReason,
    ContactKind,
    ContactRelationship,
    DisclosureStatus,
    DisclosureTarget,
    GroupKind,
    TracingOutcome,
)
from servicekit import intake
from servicekit.intake import PostedEvent, Strict
from servicekit.staff import StaffRole

from ..schemas import Worklist

STAFF_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
CODE = r"^[a-z0-9_]{1,64}$"

# --- staff and caseloads -------------------------------------------------------------------------


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: StaffRole
    facility_id: str = Field(min_length=1, max_length=64)
    active: bool = True


class StaffPublic(BaseModel):
    staff_id: str
    role: StaffRole
    facility_id: str
    active: bool


class StaffChange(StaffPublic):
    #: how many of her clients went to other Mentor Mothers because she left (inactive or moved)
    clients_reassigned: int = 0


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    staff_id: str | None = Field(pattern=STAFF_ID, description="The Mentor Mother; null: nobody's caseload.")


class AssignmentPublic(BaseModel):
    client_id: UUID
    facility_id: str
    staff_id: str | None
    reason: AssignmentReason
    assigned_at: datetime


class CaseloadClient(BaseModel):
    client_id: UUID
    assigned_at: datetime
    reason: AssignmentReason
    lost_since: date | None


class Caseload(BaseModel):
    staff_id: str
    facility_id: str
    count: int
    clients: list[CaseloadClient]


# --- her worklist --------------------------------------------------------------------------------


class TracingTask(BaseModel):
    """A mother or infant lost to follow-up, to be traced (names and locator: enrolment's
    audited caseload read)."""

    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    lost_since: date
    last_seen_on: date | None
    attempts: int
    failed_attempts: int


class NextContact(BaseModel):
    """A client's next planned item, whose window has not opened yet."""

    client_id: UUID
    subject_type: SubjectType
    subject_id: UUID
    action: ScheduleKind
    label: str
    test: InfantTest | None
    window_start: date
    window_end: date


class MentorWorklist(Worklist):
    """A staff member's worklist: her caseload's due and overdue items (most urgent first), the
    tracing list (a Community Mentor Mother's: every lost client of her facility), and each
    client's next contact. Rows name clients by platform id: her app reads whom they are about
    with one audited read from enrolment (`POST /v1/caseload/personal-data` there)."""

    staff_id: str
    role: StaffRole
    client_ids: list[UUID] = Field(description="Every client the rows are about (for the one personal-data read).")
    tracing: list[TracingTask]
    next_contacts: list[NextContact]


# --- disclosure and index contacts (reads) ----------------------------------------------------------


class DisclosureEntry(BaseModel):
    on: date
    to: DisclosureTarget
    status: DisclosureStatus
    staff_id: str


class Disclosure(BaseModel):
    client_id: UUID
    #: the latest status to each, and its history in date order
    partner: DisclosureStatus | None
    family: DisclosureStatus | None
    history: list[DisclosureEntry]


class IndexContactPublic(BaseModel):
    contact_id: UUID
    relationship: ContactRelationship
    elicited_on: date | None
    invited_on: date | None
    tested_on: date | None
    result: TestResult | None
    known_positive: bool
    linked_on: date | None


# --- POST /v1/contacts -----------------------------------------------------------------------------

Topic = Annotated[str, Field(pattern=CODE)]
ContactRef = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class RecordBase(PostedEvent):
    """Every record the app posts: its own `event_id` (the idempotency key), the facility she
    works at, when it happened, and the client by platform `client_id` (as her worklist names her)."""

    client_id: UUID


class ContactData(Strict):
    kind: ContactKind
    topics: list[Topic] = Field(default_factory=list, max_length=20)
    #: the infant the contact was about, if any (one of hers)
    infant_id: UUID | None = None


class ContactIn(RecordBase):
    type: Literal["ContactRecorded"]
    data: ContactData


class GroupData(Strict):
    kind: GroupKind
    topic: Topic
    attendance: int = Field(ge=1, le=500)
    client_ids: list[UUID] = Field(default_factory=list, max_length=500)


class GroupIn(PostedEvent):
    """A group session or support group: not about one client, so no `client_id`."""

    type: Literal["GroupSessionHeld"]
    data: GroupData


class TracingData(Strict):
    outcome: TracingOutcome
    #: found and back in care: the day she came back (default: the day of the attempt)
    returned_on: date | None = None
    #: the lost infant traced (default: the mother)
    infant_id: UUID | None = None


class TracingIn(RecordBase):
    type: Literal["TracingAttemptRecorded"]
    data: TracingData


class DisclosureData(Strict):
    to: DisclosureTarget
    status: DisclosureStatus


class DisclosureIn(RecordBase):
    type: Literal["DisclosureRecorded"]
    data: DisclosureData


class ElicitedData(Strict):
    contact_ref: ContactRef
    relationship: ContactRelationship


class ContactRefData(Strict):
    contact_ref: ContactRef


class TestedData(Strict):
    contact_ref: ContactRef
    result: TestResult
    known_positive: bool = False


class ElicitedIn(RecordBase):
    type: Literal["IndexContactElicited"]
    data: ElicitedData


class InvitedIn(RecordBase):
    type: Literal["IndexContactInvited"]
    data: ContactRefData


class TestedIn(RecordBase):
    type: Literal["IndexContactTested"]
    data: TestedData


class LinkedIn(RecordBase):
    type: Literal["IndexContactLinked"]
    data: ContactRefData


RecordIn = Annotated[
    ContactIn | GroupIn | TracingIn | DisclosureIn | ElicitedIn | InvitedIn | TestedIn | LinkedIn,
    Field(discriminator="type"),
]
RECORD: TypeAdapter[RecordIn] = TypeAdapter(RecordIn)
RECORD_TYPES: tuple[str, ...] = (
    "ContactRecorded",
    "GroupSessionHeld",
    "TracingAttemptRecorded",
    "DisclosureRecorded",
    "IndexContactElicited",
    "IndexContactInvited",
    "IndexContactTested",
    "IndexContactLinked",
)


class RecordBatch(intake.EventBatch):
    """The body of `POST /v1/contacts`: 1 to 1000 records, each validated on its own."""


class RecordResult(intake.EventResult):
    client_id: UUID | None = None
    contact_id: UUID | None = Field(default=None, description="The platform id of an index contact.")


class RecordReply(intake.BatchReply[RecordResult]):
    pass
