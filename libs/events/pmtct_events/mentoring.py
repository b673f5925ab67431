"""Events of the Mentor Mothers' own work, published by the follow-up service on `pmtct.followup.v1`:
staff changes, caseload assignments, the contacts a Mentor Mother records, tracing attempts,
disclosure and partner / family (index) testing.

Ids and codes only, like every event: a staff member is her staff id (the token subject of her
app), a client her platform `client_id`, an index contact a platform `contact_id` (derived from
the keyed hash of the app's reference for the contact, never the reference itself).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from .base import Event
from .followup import SERVICE, SubjectType, TestResult


class StaffRole(StrEnum):
    """What a staff member does (the roles of the Mentor Mother model)."""

    #: a peer health worker at a facility, with a caseload of mothers and their infants
    mentor_mother = "mentor_mother"
    #: goes door to door in the facility's catchment area; traces clients who missed care
    community_mentor_mother = "community_mentor_mother"
    #: supervises the Mentor Mothers of a site; reads their worklists, assigns caseloads
    site_coordinator = "site_coordinator"


class AssignmentReason(StrEnum):
    """Why a client is (re)assigned to a Mentor Mother, or left without one (`staff_id` null)."""

    #: the configured rule chose her when the client enrolled (PMTCT_CASELOAD_RULE)
    rule = "rule"
    #: a site coordinator (or an admin) assigned the client through the API
    explicit = "explicit"
    #: her Mentor Mother left (made inactive, or moved to another facility): the rule chose anew
    staff_left = "staff_left"
    #: the client transferred to another facility
    transferred = "transferred"


class ContactKind(StrEnum):
    """What a Mentor Mother did with a client (one client interaction each)."""

    one_to_one_education = "one_to_one_education"
    couples_session = "couples_session"
    home_visit = "home_visit"
    phone_follow_up = "phone_follow_up"
    adherence_counselling = "adherence_counselling"
    infant_feeding_counselling = "infant_feeding_counselling"
    family_planning_counselling = "family_planning_counselling"
    disclosure_support = "disclosure_support"


class GroupKind(StrEnum):
    group_session = "group_session"
    support_group = "support_group"


class TracingOutcome(StrEnum):
    """What a Community Mentor Mother found when she went to trace a client."""

    found_back_in_care = "found_back_in_care"
    found_refused = "found_refused"
    moved = "moved"
    died = "died"
    not_found = "not_found"


class DisclosureTarget(StrEnum):
    partner = "partner"
    family = "family"


class DisclosureStatus(StrEnum):
    disclosed = "disclosed"
    not_disclosed = "not_disclosed"


class ContactRelationship(StrEnum):
    """Who an index contact is to the HIV-positive client who named them."""

    partner = "partner"
    child = "child"
    other = "other"


class MentoringEvent(Event):
    service: ClassVar[str] = SERVICE


class StaffMemberChanged(MentoringEvent):
    """A staff member as she now is (added, role, facility or active flag changed); keyed by staff_id."""

    key_field: ClassVar[str] = "staff_id"
    event_name: ClassVar[str] = "StaffMemberChanged"
    staff_id: str
    role: StaffRole
    active: bool


class CaseloadAssigned(MentoringEvent):
    """A mother (and her infants with her) is now in `staff_id`'s caseload; `staff_id` null: in none."""

    key_field: ClassVar[str] = "client_id"
    event_name: ClassVar[str] = "CaseloadAssigned"
    client_id: UUID
    staff_id: str | None
    previous_staff_id: str | None = None
    reason: AssignmentReason


class ContactRecorded(MentoringEvent):
    """One client interaction of a Mentor Mother with a client (the programme's headline count)."""

    key_field: ClassVar[str] = "client_id"
    event_name: ClassVar[str] = "ContactRecorded"
    #: the app's event_id of the contact
    contact_event_id: UUID
    client_id: UUID
    infant_id: UUID | None = None
    staff_id: str
    kind: ContactKind
    topics: list[str] = Field(default_factory=list)


class GroupSessionHeld(MentoringEvent):
    """A group session or support group on `topic_code`: `attendance` people came, of whom `client_ids` are enrolled."""

    key_field: ClassVar[str] = "session_id"
    event_name: ClassVar[str] = "GroupSessionHeld"
    session_id: UUID
    staff_id: str
    kind: GroupKind
    topic_code: str
    attendance: int = Field(ge=1)
    client_ids: list[UUID] = Field(default_factory=list)


class TracingAttemptRecorded(MentoringEvent):
    """A tracing attempt and its outcome; `confirmed_lost` on the attempt that reached the
    configured number of failed attempts (PMTCT_TRACING_ATTEMPTS)."""

    key_field: ClassVar[str] = "subject_id"
    event_name: ClassVar[str] = "TracingAttemptRecorded"
    attempt_event_id: UUID
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    staff_id: str
    outcome: TracingOutcome
    #: the attempt's number among this subject's attempts since she was last lost
    attempt: int = Field(ge=1)
    returned_on: date | None = None
    confirmed_lost: bool = False


class DisclosureRecorded(MentoringEvent):
    """Her disclosure of her HIV status to her partner or family, as of `occurred_at`."""

    key_field: ClassVar[str] = "client_id"
    event_name: ClassVar[str] = "DisclosureRecorded"
    disclosure_event_id: UUID
    client_id: UUID
    staff_id: str
    to: DisclosureTarget
    status: DisclosureStatus


class IndexContactEvent(MentoringEvent):
    key_field: ClassVar[str] = "contact_id"
    contact_id: UUID
    #: the index client: the HIV-positive woman who named this contact
    client_id: UUID
    relationship: ContactRelationship
    staff_id: str


class IndexContactElicited(IndexContactEvent):
    event_name: ClassVar[str] = "IndexContactElicited"


class IndexContactInvited(IndexContactEvent):
    event_name: ClassVar[str] = "IndexContactInvited"


class IndexContactTested(IndexContactEvent):
    event_name: ClassVar[str] = "IndexContactTested"
    result: TestResult
    #: the contact knew already that they were HIV-positive (not a new diagnosis: no yield)
    known_positive: bool = False


class IndexContactLinked(IndexContactEvent):
    """A positive contact started ART (linked to care)."""

    event_name: ClassVar[str] = "IndexContactLinked"


EVENTS: tuple[type[Event], ...] = (
    StaffMemberChanged,
    CaseloadAssigned,
    ContactRecorded,
    GroupSessionHeld,
    TracingAttemptRecorded,
    DisclosureRecorded,
    IndexContactElicited,
    IndexContactInvited,
    IndexContactTested,
    IndexContactLinked,
)
