"""API models: the infant events EMRs post, the per-event results, the infant record, the worklist."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from pmtct_events.followup import (
    DischargeReason,
    FeedingMethod,
    FinalOutcome,
    HighRiskReason,
    InfantTest,
    ProphylaxisDrug,
    ProphylaxisPlan,
    ScheduleKind,
    SubjectType,
    TestResult,
)
from servicekit import intake
from servicekit.corrections import EVENT_VOIDED, EventVoidedIn
from servicekit.intake import PostedEvent, Strict

from .models import ScheduleItemBase

# --- POST /v1/events -----------------------------------------------------------------------------


class ProphylaxisData(Strict):
    """What was given: a drug of the vocabulary, for how long, and (if known) when it started and
    stopped; without `started_on` it started on the event's day."""

    drug: ProphylaxisDrug
    duration_weeks: int = Field(ge=1, le=52)
    started_on: date | None = None
    stopped_on: date | None = None

    @model_validator(mode="after")
    def _stopped_after_start(self) -> ProphylaxisData:
        if self.started_on and self.stopped_on and self.stopped_on < self.started_on:
            raise ValueError("stopped_on is before started_on")
        return self


class FeedingData(Strict):
    method: FeedingMethod


class TestResultData(Strict):
    test: InfantTest
    result: TestResult
    confirmatory: bool


class NoData(Strict):
    pass


class CotrimoxazoleData(Strict):
    """Cotrimoxazole prophylaxis given: when it started (without `started_on`, on the event's day)
    and, if known, when it stopped."""

    started_on: date | None = None
    stopped_on: date | None = None

    @model_validator(mode="after")
    def _stopped_after_start(self) -> CotrimoxazoleData:
        if self.started_on and self.stopped_on and self.stopped_on < self.started_on:
            raise ValueError("stopped_on is before started_on")
        return self


class OutcomeData(Strict):
    """`died`, `transferred_out` (she leaves this facility's care), `transferred_in` (she is
    back in care, at the facility posting it: its worklist has her from then on), or `discharged`
    (the facility ends her HEI follow-up; `reason` says why, and is given only with it)."""

    outcome: Literal["died", "transferred_out", "transferred_in", "discharged"]
    reason: DischargeReason | None = None

    @model_validator(mode="after")
    def _reason_with_discharge(self) -> OutcomeData:
        if self.outcome == "discharged" and self.reason is None:
            raise ValueError("a discharge needs its reason (reason)")
        if self.outcome != "discharged" and self.reason is not None:
            raise ValueError("reason is given only with outcome 'discharged'")
        return self


class InfantEventBase(PostedEvent):
    """Every posted infant event: the EMR's `event_id` (its idempotency key), the facility, when it
    happened (visit, sample, start), and the infant by platform `infant_id` or by the EMR's
    `infant_ref` at that facility (the reference given when the delivery was posted)."""

    infant_id: UUID | None = None
    infant_ref: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")


class ProphylaxisIn(InfantEventBase):
    type: Literal["InfantProphylaxisRecorded"]
    data: ProphylaxisData


class FeedingIn(InfantEventBase):
    type: Literal["InfantFeedingRecorded"]
    data: FeedingData


class TestResultIn(InfantEventBase):
    type: Literal["InfantTestResulted"]
    data: TestResultData


class ArtInitiatedIn(InfantEventBase):
    type: Literal["InfantArtInitiated"]
    data: NoData = NoData()


class VisitIn(InfantEventBase):
    type: Literal["InfantVisitRecorded"]
    data: NoData = NoData()


class CotrimoxazoleIn(InfantEventBase):
    type: Literal["InfantCotrimoxazoleRecorded"]
    data: CotrimoxazoleData = CotrimoxazoleData()


class OutcomeIn(InfantEventBase):
    type: Literal["InfantOutcomeRecorded"]
    data: OutcomeData


InfantEventIn = Annotated[
    ProphylaxisIn | FeedingIn | TestResultIn | ArtInitiatedIn | VisitIn | CotrimoxazoleIn | OutcomeIn | EventVoidedIn,
    Field(discriminator="type"),
]
INFANT_EVENT = TypeAdapter(InfantEventIn)
INFANT_EVENT_TYPES: tuple[str, ...] = (
    "InfantProphylaxisRecorded",
    "InfantFeedingRecorded",
    "InfantTestResulted",
    "InfantArtInitiated",
    "InfantVisitRecorded",
    "InfantCotrimoxazoleRecorded",
    "InfantOutcomeRecorded",
)
#: what follow-up's intake takes: the infant events and the void of one (servicekit.corrections;
#: the front door routes a void by where the event it names is recorded)
POSTED_TYPES: tuple[str, ...] = (*INFANT_EVENT_TYPES, EVENT_VOIDED)


class EventBatch(intake.EventBatch):
    """A batch of 1 to 1000 infant events (`PMTCT_INTAKE_MAX_BATCH`). Each is validated on its
    own (see `InfantEvent`): one bad event is rejected with its reason and does not affect the others."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "5d0c1a52-7f7e-4a0e-8d0b-2f9b1c3e4a77",
                            "type": "InfantTestResulted",
                            "facility_id": "FAC-ZA-001",
                            "occurred_at": "2026-04-13T10:00:00+02:00",
                            "infant_ref": "HEI-2026-00017-1",
                            "data": {"test": "NAT", "result": "negative", "confirmatory": False},
                        }
                    ]
                }
            ]
        },
    )

    events: list[Any] = Field(description="1 to 1000 infant events (docs/emr-intake.md).")


class EventResult(intake.EventResult):
    infant_id: UUID | None = None


class IngestReply(intake.BatchReply[EventResult]):
    """The answer to a batch of infant events (servicekit.intake)."""


# --- GET /v1/infants/{id} ------------------------------------------------------------------------


class ScheduleItemPublic(ScheduleItemBase):
    """An item of the infant's plan: the fields of `models.ScheduleItemBase`, declared there once."""


class TestResultPublic(BaseModel):
    event_id: UUID
    sampled_at: datetime
    age_days: int
    test: InfantTest
    result: TestResult
    confirmatory: bool


class InfantRecordPublic(BaseModel):
    """Another fact on the infant's record: prophylaxis given, feeding, visit, ART start, outcome."""

    event_id: UUID
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class FinalOutcomePublic(BaseModel):
    outcome: FinalOutcome
    on: date


class InfantPublic(BaseModel):
    infant_id: UUID
    client_id: UUID
    facility_id: str
    birth_date: date
    sex: str
    in_follow_up: bool
    follow_up_from: date | None
    status: str = Field(
        description="not_in_follow_up, active, lost_to_follow_up, final_test_pending_feeding_status, or the"
        " clinical outcome (infected, uninfected, died, discharged, transferred_out); the age snapshot's"
        " lost_to_follow_up or"
        " unknown is in final_outcome, and a later clinical fact replaces it"
    )
    high_risk: bool
    high_risk_reasons: list[HighRiskReason]
    prophylaxis_plan: list[ProphylaxisPlan]
    breastfeeding_stopped_on: date | None
    art_needed: bool
    art_started_on: date | None
    final_outcome: FinalOutcomePublic | None
    last_seen_on: date | None
    lost_since: date | None
    plan: list[ScheduleItemPublic]
    results: list[TestResultPublic]
    records: list[InfantRecordPublic]


# --- GET /v1/worklist ----------------------------------------------------------------------------


class Urgency(StrEnum):
    overdue = "overdue"
    due = "due"


class WorklistEntry(BaseModel):
    """One thing to do: the subject (mother or infant, by platform id: names are in enrolment), what
    is needed, its window, and how urgent it is on the day asked about."""

    item_id: UUID
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    action: ScheduleKind
    #: what it is, as the clinical preset names it ("NAT at 6 months", "Entry NAT")
    label: str
    test: InfantTest | None
    window_start: date
    window_end: date
    overdue_on: date
    urgency: Urgency
    days_overdue: int
    days_left_in_window: int


class Worklist(BaseModel):
    facility_id: str
    as_of: date
    count: int
    truncated: bool
    items: list[WorklistEntry]
