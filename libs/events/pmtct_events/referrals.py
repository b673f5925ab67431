"""Events published by the referrals service on `pmtct.referrals.v1`, keyed by `referral_id`.

This topic is the ministry referral feed: every change of a referral is one event, and
`GET /v1/feed` on the referrals service serves the same entries over HTTP.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from .base import Event
from .followup import SubjectType

SERVICE = "referrals"


class ReferralService(StrEnum):
    art_initiation = "art_initiation"
    hiv_testing = "hiv_testing"
    eid_sample_collection = "eid_sample_collection"
    infant_art = "infant_art"
    family_planning = "family_planning"
    tb_screening = "tb_screening"
    partner_family_testing = "partner_family_testing"
    psychosocial_support = "psychosocial_support"
    community_tracing = "community_tracing"
    community_organisation = "community_organisation"


class Urgency(StrEnum):
    routine = "routine"
    urgent = "urgent"
    emergency = "emergency"


class ReferralStatus(StrEnum):
    requested = "requested"
    accepted = "accepted"
    completed = "completed"
    declined = "declined"
    cancelled = "cancelled"
    expired = "expired"


class ReferralOrigin(StrEnum):
    manual = "manual"
    automatic = "automatic"


class ReferralEvent(Event):
    """Every referral event carries the referral's whole current state (event-carried state
    transfer), so a ministry consumer needs no other source to keep its copy current."""

    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "referral_id"
    referral_id: UUID
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID | None = None
    to_facility_id: str | None = None
    referral_service: ReferralService
    urgency: Urgency
    due_by: date
    status: ReferralStatus
    origin: ReferralOrigin
    reason_code: str = Field(max_length=64, pattern=r"^[a-z0-9_]+$")
    outcome_code: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    #: when the referral was requested (the first version's time), so a consumer that starts
    #: mid-stream can still measure time to closure
    requested_at: AwareDatetime | None = None
    #: when the receiving side accepted it, once it has
    accepted_at: AwareDatetime | None = None
    #: the referring facility under the name the JSON API and FHIR mapping use (the same value as
    #: `facility_id`, which stays for the consumers of .v1); set on every event since it was added
    from_facility_id: str | None = None
    #: when it was closed (completed, declined, cancelled or expired), once it is
    closed_at: AwareDatetime | None = None


class ReferralCreated(ReferralEvent):
    event_name: ClassVar[str] = "ReferralCreated"


class ReferralAccepted(ReferralEvent):
    event_name: ClassVar[str] = "ReferralAccepted"


class ReferralCompleted(ReferralEvent):
    event_name: ClassVar[str] = "ReferralCompleted"


class ReferralDeclined(ReferralEvent):
    event_name: ClassVar[str] = "ReferralDeclined"


class ReferralCancelled(ReferralEvent):
    event_name: ClassVar[str] = "ReferralCancelled"


class ReferralExpired(ReferralEvent):
    event_name: ClassVar[str] = "ReferralExpired"


class ReferralReopened(ReferralEvent):
    """A referral closed by a fact that was later voided (entered in error: an ART start that did
    not happen) is open again, in the state it had before that fact closed it; `outcome_code` and
    `closed_at` are cleared."""

    event_name: ClassVar[str] = "ReferralReopened"


EVENTS: tuple[type[Event], ...] = (
    ReferralCreated,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralCancelled,
    ReferralExpired,
    ReferralReopened,
)
