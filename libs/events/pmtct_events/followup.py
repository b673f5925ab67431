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

from .base import Contract, Event, Voiding

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
    diagnosis algorithm), or the mother's follow-up: HIV retesting while she is not known
    positive (WHO HTS 2019), ART start, viral-load monitoring and its response (WHO 2021)."""

    nat_birth = "nat_birth"
    nat_6_weeks = "nat_6_weeks"
    nat_9_months = "nat_9_months"
    final_test = "final_test"
    confirmatory_nat = "confirmatory_nat"
    repeat_test = "repeat_test"
    mother_viral_load = "mother_viral_load"
    #: the mother's HIV tests while she is not known positive: at ANC1, in the third trimester, at
    #: labour and delivery, postpartum while breastfeeding, 14 days after an inconclusive result
    mother_hiv_test_anc1 = "mother_hiv_test_anc1"
    mother_hiv_retest_third_trimester = "mother_hiv_retest_third_trimester"
    mother_hiv_test_delivery = "mother_hiv_test_delivery"
    mother_hiv_retest_postpartum = "mother_hiv_retest_postpartum"
    mother_hiv_retest_inconclusive = "mother_hiv_retest_inconclusive"
    #: a mother known positive and not on ART: an action, at once
    mother_art_start = "mother_art_start"
    #: enhanced adherence support after an unsuppressed viral load, and the repeat viral load after it
    mother_adherence_support = "mother_adherence_support"
    mother_repeat_viral_load = "mother_repeat_viral_load"
    #: an infant with a positive NAT needs ART: an action, not a test, so it never rides an InfantTestDue
    infant_art_start = "infant_art_start"
    #: a routine NAT at a test point of the clinical preset whose code is not one of the kinds above
    #: (e.g. Kenya's NAT at 6 months); the item's `label` says which
    routine_nat = "routine_nat"
    #: the one NAT of an infant who enters follow-up after the routine points have closed
    entry_nat = "entry_nat"
    #: a NAT called for by a positive antibody test before antibodies can diagnose (WHO 2021)
    nat_after_antibody = "nat_after_antibody"
    #: the final test is near and the infant's feeding is unknown or ongoing: record it
    record_feeding_status = "record_feeding_status"
    #: a step of the infant's prophylaxis regimen is to start (the item's `label` names the drug)
    infant_prophylaxis = "infant_prophylaxis"
    #: cotrimoxazole prophylaxis is to start (from 6 weeks until HIV is excluded: WHO 2021)
    infant_cotrimoxazole = "infant_cotrimoxazole"
    #: a clinic visit of the HEI visit schedule of the clinical preset (the `label` says which)
    hei_visit = "hei_visit"


class HighRiskReason(StrEnum):
    """Why an infant is high risk: the mother's situation at delivery (WHO 2025 updated
    recommendations on HIV clinical management)."""

    art_under_4_weeks = "art_under_4_weeks"
    no_art = "no_art"
    viral_load_above_threshold = "viral_load_above_threshold"
    #: only where a national preset counts a missing viral load as high risk (WHO 2025 does not)
    no_viral_load = "no_viral_load"
    diagnosed_in_labour_or_postpartum = "diagnosed_in_labour_or_postpartum"
    #: a positive test after a negative one during pregnancy or breastfeeding
    incident_infection = "incident_infection"


class ProphylaxisDrug(StrEnum):
    """An infant prophylaxis drug or combination, as the clinical presets name them."""

    NVP = "NVP"
    AZT = "AZT"
    AZT_NVP = "AZT+NVP"
    #: lamivudine, and the three-drug regimen of the WHO 2025 enhanced prophylaxis
    LAMIVUDINE = "3TC"
    AZT_3TC_NVP = "AZT+3TC+NVP"
    DTG = "DTG"


class ProphylaxisUntil(StrEnum):
    """When an extended step of a regimen stops (WHO 2025 enhanced prophylaxis)."""

    mother_suppressed_or_breastfeeding_ends = "mother_suppressed_or_breastfeeding_ends"


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
    #: the facility discharged the child from HEI follow-up (`discharge_reason` says why) with no
    #: final status the facts establish: for PMTCT_FO, final status unknown
    discharged = "discharged"


class DischargeReason(StrEnum):
    """Why a facility discharged a child from HEI follow-up (InfantOutcomeRecorded `discharged`)."""

    #: the clinic's final diagnosis: HIV excluded (the platform still counts only a test it knows)
    hiv_excluded = "hiv_excluded"
    #: infected, her care goes on in the ART clinic
    linked_to_art_care = "linked_to_art_care"
    #: the caregiver declined further follow-up
    caregiver_declined = "caregiver_declined"
    other = "other"


class ResumedBecause(StrEnum):
    """Why an infant whose follow-up had ended is followed again (InfantFollowUpResumed)."""

    #: a transfer in after her transfer out: the receiving facility follows her
    transferred_in = "transferred_in"
    #: seen again (a visit, a sample, a record) after the facility discharged her
    seen_after_discharge = "seen_after_discharge"
    #: the event that had ended her follow-up (a positive NAT, a death, a transfer out) was voided
    #: by the EMR (InfantEventVoided): she is followed as if it had never been posted
    entered_in_error = "entered_in_error"


class SubjectType(StrEnum):
    client = "client"
    infant = "infant"
    #: a partner or child an HIV-positive client named for testing (pmtct_events.mentoring)
    contact = "contact"


class ScheduleItem(Contract):
    item_id: UUID
    kind: ScheduleKind
    test: InfantTest | None = None
    window_start: date
    window_end: date
    overdue_on: date
    label: str | None = None


class ProphylaxisPlan(Contract):
    """One step of an infant's prophylaxis regimen: a drug for `duration_weeks` from `from_week` of
    age; with `until`, the step may stop earlier, when that happens."""

    drug: ProphylaxisDrug
    duration_weeks: int = Field(ge=1, le=52)
    from_week: int = Field(default=0, ge=0, le=104)
    until: ProphylaxisUntil | None = None


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
    """Prophylaxis given: the drug (the vocabulary of the clinical presets' regimens), for how long,
    and when it started and stopped if the EMR says (`occurred_at` is when it was recorded)."""

    event_name: ClassVar[str] = "InfantProphylaxisRecorded"
    drug: ProphylaxisDrug
    duration_weeks: int = Field(ge=1, le=52)
    started_on: date | None = None
    stopped_on: date | None = None


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
    #: what the item is called in the clinical preset ("NAT at 6 months")
    label: str | None = None


class InfantTestOverdue(InfantEvent):
    event_name: ClassVar[str] = "InfantTestOverdue"
    item_id: UUID
    kind: ScheduleKind
    test: InfantTest
    window_end: date
    overdue_on: date
    label: str | None = None


class InfantTestResulted(InfantEvent):
    """A result for a sample taken at `occurred_at`; `age_days` is the infant's age at sampling."""

    event_name: ClassVar[str] = "InfantTestResulted"
    test: InfantTest
    result: TestResult
    confirmatory: bool
    age_days: int = Field(ge=0)
    first_virologic: bool = False
    #: whether the result can diagnose HIV at this age (a NAT at any age; an antibody test only
    #: from the preset's antibody age, 18 months by WHO 2021); None from producers before it
    diagnostic: bool | None = None


class InfantArtInitiated(InfantEvent):
    event_name: ClassVar[str] = "InfantArtInitiated"


class InfantVisitRecorded(InfantEvent):
    """A clinic visit of the infant (it meets the HEI visit whose window holds it)."""

    event_name: ClassVar[str] = "InfantVisitRecorded"


class InfantCotrimoxazoleRecorded(InfantEvent):
    """Cotrimoxazole prophylaxis given: when it started (else the event's day) and, if the EMR
    says, when it stopped (`occurred_at` is when it was recorded)."""

    event_name: ClassVar[str] = "InfantCotrimoxazoleRecorded"
    started_on: date | None = None
    stopped_on: date | None = None


class InfantCareDue(InfantEvent):
    """An item of the infant's care that is not a test is due: an HEI clinic visit (`kind`
    `hei_visit`) or the cotrimoxazole start (`infant_cotrimoxazole`); `label` names it."""

    event_name: ClassVar[str] = "InfantCareDue"
    item_id: UUID
    kind: ScheduleKind
    window_start: date
    window_end: date
    label: str | None = None


class InfantCareOverdue(InfantEvent):
    """That item was not met by its window's end plus the grace (a missed HEI visit is traced)."""

    event_name: ClassVar[str] = "InfantCareOverdue"
    item_id: UUID
    kind: ScheduleKind
    window_end: date
    overdue_on: date
    label: str | None = None


class InfantFollowUpResumed(InfantEvent):
    """An infant whose follow-up had ended (transferred out, discharged) is followed again, at
    `facility_id`: her transfer in, or a contact after her discharge. The outcome recorded before
    no longer stands; automatic referrals apply to her again."""

    event_name: ClassVar[str] = "InfantFollowUpResumed"
    because: ResumedBecause


class InfantFinalOutcomeRecorded(InfantEvent):
    """The infant's outcome as it now stands. A clinical outcome (infected, uninfected, died,
    transferred out) may be revised by a later fact, and is then recorded again; `provisional`
    marks the age snapshot (lost_to_follow_up or unknown at 24 months, PEPFAR MER PMTCT_FO),
    which follow-up closes nothing for and a later clinical outcome replaces. The latest record
    of an infant is its outcome."""

    event_name: ClassVar[str] = "InfantFinalOutcomeRecorded"
    outcome: FinalOutcome
    birth_date: date
    age_days: int = Field(ge=0)
    provisional: bool | None = None
    #: with `discharged`: why the facility discharged her
    discharge_reason: DischargeReason | None = None


class ClientLostToFollowUp(Event):
    """A mother or infant silent for longer than the configured period; keyed by `subject_id`."""

    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "subject_id"
    event_name: ClassVar[str] = "ClientLostToFollowUp"
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    last_seen_on: date
    #: the clinical day she became lost (her last contact, or her first overdue item if later, plus
    #: the lost-to-follow-up period), whatever day the platform announced it; None from producers before it
    lost_on: date | None = None


class WithdrawnAnnouncement(StrEnum):
    """The announcements follow-up withdraws when later facts show they were not needed."""

    ClientHivTestOverdue = "ClientHivTestOverdue"
    ClientViralLoadOverdue = "ClientViralLoadOverdue"
    InfantTestOverdue = "InfantTestOverdue"
    ClientLostToFollowUp = "ClientLostToFollowUp"
    #: a missed HEI visit or cotrimoxazole start (withdrawn `entered_in_error` or
    #: `no_longer_required` only: the follow-up it was part of stood on a voided fact, or the facts
    #: no longer call for it)
    InfantCareOverdue = "InfantCareOverdue"
    #: the due announcements of items a correction cancels, or that the facts no longer call for
    #: while open (withdrawn `entered_in_error` or `no_longer_required` only: an item is announced due
    #: once, and met or not it was due, unless the fact it stood on was voided or never called for it)
    InfantTestDue = "InfantTestDue"
    InfantCareDue = "InfantCareDue"
    ClientHivTestDue = "ClientHivTestDue"
    ClientViralLoadDue = "ClientViralLoadDue"
    ClientAdherenceSupportDue = "ClientAdherenceSupportDue"


class WithdrawalReason(StrEnum):
    #: a fact dated before the item's overdue day met it (a back-dated test, arriving after the overdue)
    met_before_overdue = "met_before_overdue"
    #: a contact dated before the day she would have become lost (a back-dated visit)
    seen_before_lost = "seen_before_lost"
    #: the fact the item stood on was voided by the EMR (ClientEventVoided / InfantEventVoided): without
    #: it the item is not needed at all (her positive test was entered in error; the delivery was)
    entered_in_error = "entered_in_error"
    #: facts posted later show the item was never called for while it was still open (her positive
    #: status known before the ANC test fell due; her infant never breastfed, so no breastfeeding
    #: viral load): the item is cancelled `no_longer_required` and what was announced of it, due and
    #: overdue, is withdrawn; `met_on` is the day follow-up learnt it
    no_longer_required = "no_longer_required"


class AnnouncementWithdrawn(Event):
    """An announcement made by follow-up's timers (an overdue item, a loss to follow-up) that facts
    posted later show was not needed: the need was met before the day it was announced for. Keyed by
    `subject_id` (the infant, or the mother), like the announcement it withdraws. What a consumer
    opened for the announcement (the referrals service: its automatic referral) is withdrawn with it;
    an item met late (on or after its overdue day) or a client back in care after she was lost is
    not withdrawn: that announcement was needed. `entered_in_error`: the fact the need stood on was
    voided (a correction), so the item is not needed at all: every announcement of it is withdrawn,
    due (`InfantTestDue`, ...) as well as overdue, and `met_on` is the voiding's day.
    `no_longer_required`: facts posted later show an item still open was never called for (her
    positive status known from before): every announcement of it is withdrawn, due and overdue, and
    `met_on` is the day follow-up learnt it."""

    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "subject_id"
    event_name: ClassVar[str] = "AnnouncementWithdrawn"
    subject_type: SubjectType
    subject_id: UUID
    client_id: UUID
    announcement: WithdrawnAnnouncement
    reason: WithdrawalReason
    #: the overdue item withdrawn (None for a loss to follow-up)
    item_id: UUID | None = None
    kind: ScheduleKind | None = None
    #: the day the announcement was for: the item's overdue day (its window's first day for a due
    #: announcement), or the day she was to be lost
    announced_for: date
    #: the day of the fact that shows it was not needed (`entered_in_error`: the day it was voided)
    met_on: date


class ClientEvent(Event):
    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "client_id"
    client_id: UUID


class ClientViralLoadDue(ClientEvent):
    """A mother living with HIV is due a viral load (late pregnancy, or every few months while
    breastfeeding: `kind` `mother_viral_load`; after an unsuppressed one and the adherence period:
    `mother_repeat_viral_load`)."""

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


class ClientHivTestDue(ClientEvent):
    """A woman not known positive is due an HIV test; `kind` says which (`mother_hiv_test_anc1`,
    `mother_hiv_retest_third_trimester`, `mother_hiv_test_delivery`, `mother_hiv_retest_postpartum`,
    `mother_hiv_retest_inconclusive`)."""

    event_name: ClassVar[str] = "ClientHivTestDue"
    item_id: UUID
    kind: ScheduleKind
    window_start: date
    window_end: date


class ClientHivTestOverdue(ClientEvent):
    event_name: ClassVar[str] = "ClientHivTestOverdue"
    item_id: UUID
    kind: ScheduleKind
    window_end: date
    overdue_on: date


class ClientAdherenceSupportDue(ClientEvent):
    """A viral load at or above the unsuppressed threshold: she needs enhanced adherence support
    until the repeat viral load (`window_end`); `kind` is `mother_adherence_support`."""

    event_name: ClassVar[str] = "ClientAdherenceSupportDue"
    item_id: UUID
    kind: ScheduleKind
    window_start: date
    window_end: date
    copies_per_ml: int | None = Field(default=None, ge=0)


class InfantEventVoided(InfantEvent, Voiding):
    """An accepted infant event voided by the EMR that posted it (`EventVoided` at the intake, or a
    corrected event posted with `replaces`): the infant's schedule, outcome and referrals are
    recomputed without it. `facility_id` and `occurred_at` are the voiding's."""

    event_name: ClassVar[str] = "InfantEventVoided"


EVENTS: tuple[type[Event], ...] = (
    InfantFollowUpStarted,
    InfantProphylaxisRecorded,
    InfantFeedingRecorded,
    InfantTestDue,
    InfantTestOverdue,
    InfantTestResulted,
    InfantArtInitiated,
    InfantVisitRecorded,
    InfantCotrimoxazoleRecorded,
    InfantCareDue,
    InfantCareOverdue,
    InfantFollowUpResumed,
    InfantFinalOutcomeRecorded,
    ClientLostToFollowUp,
    ClientViralLoadDue,
    ClientViralLoadOverdue,
    ClientHivTestDue,
    ClientHivTestOverdue,
    ClientAdherenceSupportDue,
    AnnouncementWithdrawn,
    InfantEventVoided,
)
