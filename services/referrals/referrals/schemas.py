"""Request and response models of the referrals API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

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
    """A referral as the API shows it: the fields of `models.ReferralBase`, declared there once,
    and under the names the feed and Kafka use (`referral_id`, `facility_id`, the same values as
    `id` and `from_facility_id`), so that one referral reads the same everywhere."""

    @computed_field(description="the same as `id`: the name the feed, Kafka and push use")  # type: ignore[prop-decorator]
    @property
    def referral_id(self) -> UUID:
        return self.id

    @computed_field(description="the same as `from_facility_id`: the name the feed, Kafka and push use")  # type: ignore[prop-decorator]
    @property
    def facility_id(self) -> str:
        return self.from_facility_id

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


# --- push subscriptions (referrals/subscriptions.py, referrals/push.py) ---------------------------


class SubscriptionCreate(Sane):
    """A webhook that receives every referral change of the feed, in feed order per referral."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https URL the changes are POSTed to")
    facility_ids: list[Annotated[str, Field(pattern=FACILITY)]] | None = Field(
        default=None,
        min_length=1,
        description="only referrals from or to these facilities; default: the caller's facilities (all for `*`)",
    )
    event_types: list[str] | None = Field(
        default=None, min_length=1, description="only these changes, e.g. ReferralCreated; default: every one"
    )
    after: str | None = Field(
        default=None, description='a feed cursor to start after ("0": the whole feed); default: the feed\'s end now'
    )


class SubscriptionPublic(BaseModel):
    id: UUID
    url: str
    facility_ids: list[str] | None = Field(description="null: every facility")
    event_types: list[str] | None = Field(description="null: every change")
    status: str = Field(description="active, or paused (after repeated failure, or by hand)")
    paused_reason: str | None
    cursor: str = Field(description="the feed position delivered up to (its entries are acknowledged)")
    failures: int = Field(description="failed attempts in a row at the next entry")
    next_attempt_at: datetime
    created_by: str
    created_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="the signing secret (Standard Webhooks `whsec_...`); shown only here")


class SubscriptionList(BaseModel):
    items: list[SubscriptionPublic]


class ResendRequest(Sane):
    model_config = ConfigDict(extra="forbid")

    after: str = Field(description='deliver again every entry after this feed cursor ("0": from the start)')


class DeliveryPublic(BaseModel):
    """One attempt to deliver one feed entry."""

    id: int
    cursor: str
    event_id: UUID = Field(description="the `webhook-id` header: the idempotency key")
    attempt: int
    at: datetime
    outcome: str = Field(description="delivered (a 2xx answer) or failed")
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryLog(BaseModel):
    items: list[DeliveryPublic]
