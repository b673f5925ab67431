"""Request and response models of the referrals API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pmtct_events.followup import SubjectType
from pmtct_events.referrals import ReferralService, ReferralStatus, Urgency
from servicekit.intake import Sane

from .models import Referral, ReferralBase

CODE = r"^[a-z0-9_]+$"
FACILITY = r"^[A-Za-z0-9_\-]{1,40}$"


class ReferralCreate(Sane):
    """A referral of a mother (`client`) or an infant to a facility and/or a service."""

    model_config = ConfigDict(extra="forbid")

    subject_type: SubjectType
    subject_id: UUID = Field(description="the platform's client_id or infant_id")
    client_id: UUID | None = Field(default=None, description="the mother, for an infant referral")
    from_facility_id: str = Field(pattern=FACILITY, description="the referring facility")
    to_facility_id: str | None = Field(
        default=None, pattern=FACILITY, description="the facility referred to; none = the referring facility's service"
    )
    referral_service: ReferralService = Field(description="the service the subject is referred to")
    reason_code: str = Field(max_length=64, pattern=CODE)
    urgency: Urgency = Urgency.routine
    due_by: date
    requested_at: AwareDatetime | None = Field(default=None, description="default: now")
    note: str | None = Field(default=None, max_length=2000, description="kept in the referrals service only")


class ManualAction(StrEnum):
    """What a person may do to a referral (expiry is the platform's)."""

    accept = "accept"
    complete = "complete"
    decline = "decline"
    cancel = "cancel"


class ReferralActionRequest(Sane):
    """Accept, complete, decline or cancel. `outcome_code` is required to decline or cancel."""

    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = Field(default=None, description="when it happened; default: now")
    outcome_code: str | None = Field(default=None, max_length=64, pattern=CODE)
    note: str | None = Field(default=None, max_length=2000, description="kept in the referrals service only")


class ReferralPublic(ReferralBase):
    """A referral as the API shows it: the fields of `models.ReferralBase`, declared there once."""

    @classmethod
    def of(cls, r: Referral) -> ReferralPublic:
        return cls.model_validate({name: getattr(r, name) for name in cls.model_fields})


class ReferralActionPublic(BaseModel):
    version: int
    action: str
    status: ReferralStatus
    at: datetime
    outcome_code: str | None
    note: str | None
    actor: str


class ReferralDetail(ReferralPublic):
    history: list[ReferralActionPublic]


class ReferralList(BaseModel):
    items: list[ReferralPublic]
    limit: int
    offset: int


class FeedEntry(BaseModel):
    """One referral change: the same CloudEvent as on `pmtct.referrals.v1` (id, type, time, data)."""

    cursor: str = Field(description="pass as `after` to continue after this entry")
    event_id: UUID = Field(description="the CloudEvents id (`ce_id` on Kafka)")
    type: str = Field(description="the CloudEvents type, e.g. org.pmtct.referrals.ReferralCreated.v1")
    time: datetime
    referral_id: UUID
    version: int
    data: dict[str, Any] = Field(description="the event payload, identical to the Kafka record value")


class FeedPage(BaseModel):
    entries: list[FeedEntry]
    next_cursor: str = Field(description="the `after` of the next request")
    has_more: bool = Field(description="true when more entries are ready right now")
