"""Events published by the follow-up service on `pmtct.followup.v1`.

Infant events are keyed by `infant_id`; mother follow-up events (ClientViralLoadDue,
ClientViralLoadOverdue) by `client_id`. Every infant event also names the mother's `client_id` so
a consumer can link mother and baby.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from .base import Contract, Event

SERVICE = "followup"


class InfantTest(StrEnum):
    NAT = "NAT"
    antibody = "antibody"


class TestResult(StrEnum):
    positive = "positive"
    negative = "negative"
    indeterminate = "indeterminate"


class ScheduleKind(StrEnum):
    """What a schedule item is for: a test or visit of the infant schedule (WHO 2021 infant HIV
    diagnosis algorithm) or the mother's viral-load monitoring."""

    nat_birth = "nat_birth"
    nat_6_weeks = "nat_6_weeks"
    nat_9_months = "nat_9_months"
    final_test = "final_test"
    confirmatory_nat = "confirmatory_nat"
    repeat_test = "repeat_test"
    mother_viral_load = "mother_viral_load"
    #: a confirmed-positive infant needs ART: an action, not a test, so it never rides an InfantTestDue
    infant_art_start = "infant_art_start"


class HighRiskReason(StrEnum):
    """Why an infant is high risk: the mother's situation at delivery (WHO 2025 updated
    recommendations on HIV clinical management)."""

    art_under_4_weeks = "art_under_4_weeks"
    no_art = "no_art"
    viral_load_above_threshold = "viral_load_above_threshold"
    no_viral_load = "no_viral_load"
    diagnosed_in_labour_or_postpartum = "diagnosed_in_labour_or_postpartum"


class ProphylaxisDrug(StrEnum):
    NVP = "NVP"
    AZT = "AZT"
    AZT_NVP = "AZT+NVP"


class FeedingMethod(StrEnum):
    exclusive_breastfeeding = "exclusive_breastfeeding"
    replacement_feeding = "replacement_feeding"
    mixed_feeding = "mixed_feeding"
    breastfeeding_stopped = "breastfeeding_stopped"


class FinalOutcome(StrEnum):
    infected = "infected"
    uninfected = "uninfected"
    died = "died"
    lost_to_follow_up = "lost_to_follow_up"
    transferred_out = "transferred_out"
    unknown = "unknown"


class SubjectType(StrEnum):
    client = "client"
    infant = "infant"


class ScheduleItem(Contract):
    item_id: UUID
    kind: ScheduleKind
    test: InfantTest | None = None
    window_start: date
    window_end: date
    overdue_on: date


class ProphylaxisPlan(Contract):
    drug: ProphylaxisDrug
    duration_weeks: int = Field(ge=1, le=52)


class InfantEvent(Event):
    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "infant_id"
    infant_id: UUID
    client_id: UUID


class InfantFollowUpStarted(InfantEvent):
    """An HIV-exposed infant enters follow-up with its prophylaxis and test plan."""

    event_name: ClassVar[str] = "InfantFollowUpStarted"
    birth_date: date
    high_risk: bool
    prophylaxis: list[ProphylaxisPlan] = Field(default_factory=list)
    plan: list[ScheduleItem] = Field(default_factory=list)
    high_risk_reasons: list[HighRiskReason] = Field(default_factory=list)
    #: the day follow-up starts: the birth date, or the mother's diagnosis while breastfeeding
    follow_up_from: date | None = None


class InfantProphylaxisRecorded(InfantEvent):
    event_name: ClassVar[str] = "InfantProphylaxisRecorded"
    drug: ProphylaxisDrug
    duration_weeks: int = Field(ge=1, le=52)


class InfantFeedingRecorded(InfantEvent):
    event_name: ClassVar[str] = "InfantFeedingRecorded"
    method: FeedingMethod


class InfantTestDue(InfantEvent):
    event_name: ClassVar[str] = "InfantTestDue"
    item_id: UUID
    kind: ScheduleKind
    test: InfantTest
    window_start: date
    window_end: date


class InfantTestOverdue(InfantEvent):
    event_name: ClassVar[str] = "InfantTestOverdue"
    item_id: UUID
    kind: ScheduleKind
    test: InfantTest
    window_end: date
    overdue_on: date


class InfantTestResulted(InfantEvent):
    """A result for a sample taken at `occurred_at`; `age_days` is the infant's age at sampling."""

    event_name: ClassVar[str] = "InfantTestResulted"
    test: InfantTest
    result: TestResult
    confirmatory: bool
    age_days: int = Field(ge=0)
    first_virologic: bool = False


class InfantArtInitiated(InfantEvent):
    event_name: ClassVar[str] = "InfantArtInitiated"


class InfantVisitRecorded(InfantEvent):
    event_name: ClassVar[str] = "InfantVisitRecorded"


class InfantFinalOutcomeRecorded(InfantEvent):
    event_name: ClassVar[str] = "InfantFinalOutcomeRecorded"
    outcome: FinalOutcome
    birth_date: date
    age_days: int = Field(ge=0)


class ClientLostToFollowUp(Event):
    """A mother or infant silent for longer than the configured period; keyed by `subject_id`."""

    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "subject_id"
    event_name: ClassVar[str] = "ClientLostToFollowUp"
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    last_seen_on: date


class ClientEvent(Event):
    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "client_id"
    client_id: UUID


class ClientViralLoadDue(ClientEvent):
    """A mother living with HIV is due a viral load (late pregnancy, or every few months while
    breastfeeding); `kind` is always `mother_viral_load`."""

    event_name: ClassVar[str] = "ClientViralLoadDue"
    item_id: UUID
    kind: ScheduleKind
    window_start: date
    window_end: date


class ClientViralLoadOverdue(ClientEvent):
    event_name: ClassVar[str] = "ClientViralLoadOverdue"
    item_id: UUID
    kind: ScheduleKind
    window_end: date
    overdue_on: date


EVENTS: tuple[type[Event], ...] = (
    InfantFollowUpStarted,
    InfantProphylaxisRecorded,
    InfantFeedingRecorded,
    InfantTestDue,
    InfantTestOverdue,
    InfantTestResulted,
    InfantArtInitiated,
    InfantVisitRecorded,
    InfantFinalOutcomeRecorded,
    ClientLostToFollowUp,
    ClientViralLoadDue,
    ClientViralLoadOverdue,
)
