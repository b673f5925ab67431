"""What each event adds to the read model, as rows of coded facts (pure: no I/O).

The live consumer and the rebuild both take an event's facts from here, so an event means the
same to both. Facts are keyed by the CloudEvent id, so one stored twice is stored once, and a void
(ClientEventVoided, InfantEventVoided: a `Table.voids` fact) names the ids whose facts it takes
out (reporting.repository). From the facts the repository derives one row per subject (a mother's
enrolment episodes, an infant, a referral) with rules that do not depend on the order the facts arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from pmtct_events import CloudEvent, Event
from pmtct_events import enrolment as en
from pmtct_events import followup as fu
from pmtct_events import referrals as rf
from servicekit.clock import Clock


class Table(StrEnum):
    mother_facts = "mother_facts"
    deliveries = "deliveries"
    infant_facts = "infant_facts"
    referral_facts = "referral_facts"
    #: a clinic's record of a contact (one per event), counted into the facility-month cells at once;
    #: kept so that a void can take it out again
    interactions = "interactions"
    #: a correction (ClientEventVoided, InfantEventVoided): the audit of what was voided, by whom, when
    voids = "voids"


#: the derived table each fact table feeds, and the column naming its subject
SUBJECTS: dict[Table, tuple[str, str]] = {
    Table.mother_facts: ("enrolments", "client_id"),
    Table.deliveries: ("deliveries", "client_id"),
    Table.infant_facts: ("infants", "infant_id"),
    Table.referral_facts: ("referrals", "referral_id"),
}

#: events a clinic records about a mother or an infant (CLINIC_EVENTS); the platform's own
#: schedule, alert, classification and loss-to-follow-up events are not contacts with a client
INTERACTIONS: frozenset[type[Event]] = frozenset(
    {
        *(e for e in en.EVENTS if e is not en.ClientEventVoided),
        fu.InfantProphylaxisRecorded,
        fu.InfantFeedingRecorded,
        fu.InfantTestResulted,
        fu.InfantArtInitiated,
        fu.InfantVisitRecorded,
    }
)

CONCLUSIVE = (en.HivTestResult.positive, en.HivTestResult.negative)


@dataclass(frozen=True, slots=True)
class Fact:
    table: Table
    row: dict[str, Any]

    @property
    def subject(self) -> tuple[str, UUID] | None:
        """(derived table, subject id) that this fact changes."""
        if self.table not in SUBJECTS:
            return None
        derived, column = SUBJECTS[self.table]
        return derived, self.row[column]


# Every row of a fact table has every column of that table: the rebuild copies rows as they are.
MOTHER_FACT_COLUMNS = (
    "event_id",
    "client_id",
    "kind",
    "occurred_at",
    "occurred_on",
    "facility_id",
    "status_at_enrolment",
    "hiv_status",
    "on_art",
    "transfer_in",
    "result",
    "setting",
    #: her age in whole years that day (the event's `age_years`; absent on events from before it existed)
    "age_years",
    #: ClientEnrolled: ART start and status dates, gestation and EDD (the beginning of this pregnancy)
    "art_start_date",
    "known_since",
    "gestation_weeks",
    "edd",
    #: AncVisitRecorded: the visit number (1 = ANC1)
    "visit_number",
    #: the four below are kept as enrolment published them, as known when each event arrived (so
    #: they depend on the order a backlog was posted in); the episodes do not read them, they derive
    #: each from her facts (reporting.episodes: known_positive_before, anc1_openers, anc_visit_on, Period)
    #: HivTestRecorded: her status as enrolment knew it just before the test
    "status_before",
    #: AncVisitRecorded: this ANC1 opened a new pregnancy without a new enrolment
    "opens_episode",
    #: HivTestRecorded: the ANC visit of that day in this pregnancy (1 = at ANC1), when enrolment knew one
    "anc_visit_number",
    #: HivTestRecorded, ArtInitiated: pregnancy, postnatal or not_pregnant, as enrolment knew it
    "period",
)
DELIVERY_COLUMNS = (
    "event_id",
    "client_id",
    "delivered_on",
    "facility_id",
    "skilled_attendant",
    "mother_hiv_status",
    "live_births",
    #: every infant it registered (live or stillborn): a void of the delivery drops them
    "infant_ids",
)
INFANT_FACT_COLUMNS = (
    "event_id",
    "infant_id",
    "kind",
    "occurred_at",
    "occurred_on",
    "recorded_at",
    "facility_id",
    "birth_date",
    "age_days",
    "result",
    "confirmatory",
    "outcome",
    #: NAT or antibody (kind = test)
    "test",
    #: InfantFeedingRecorded: the feeding method (kind = feeding)
    "method",
)
REFERRAL_FACT_COLUMNS = ("event_id", "referral_id", "version", "facility_id", "referral_service", "due_by", "status")
#: `infant_id` for an infant's event, so that a voided delivery takes its infants' contacts out too
INTERACTION_COLUMNS = ("event_id", "facility_id", "month", "infant_id")
VOID_COLUMNS = (
    #: the voiding event's CloudEvent id
    "event_id",
    "voided_event_id",
    "voided_type",
    #: the CloudEvent ids whose facts it takes out
    "voided_ids",
    "reason",
    "replaced_by_event_id",
    #: the voiding facility and day
    "facility_id",
    "occurred_at",
    "occurred_on",
    "client_id",
    "infant_id",
)
COLUMNS: dict[Table, tuple[str, ...]] = {
    Table.mother_facts: MOTHER_FACT_COLUMNS,
    Table.deliveries: DELIVERY_COLUMNS,
    Table.infant_facts: INFANT_FACT_COLUMNS,
    Table.referral_facts: REFERRAL_FACT_COLUMNS,
    Table.interactions: INTERACTION_COLUMNS,
    Table.voids: VOID_COLUMNS,
}


def _row(table: Table, **values: Any) -> Fact:
    row = dict.fromkeys(COLUMNS[table])
    row.update(values)
    return Fact(table, row)


def _mother(ce: CloudEvent, event: en.ClientEvent, clock: Clock, kind: str, **values: Any) -> Fact:
    return _row(
        Table.mother_facts,
        event_id=ce.id,
        client_id=event.client_id,
        kind=kind,
        occurred_at=event.occurred_at,
        occurred_on=clock.local_day(event.occurred_at),
        facility_id=event.facility_id,
        **values,
    )


def _infant(ce: CloudEvent, event: fu.InfantEvent, clock: Clock, kind: str, **values: Any) -> Fact:
    return _row(
        Table.infant_facts,
        event_id=ce.id,
        infant_id=event.infant_id,
        kind=kind,
        occurred_at=event.occurred_at,
        occurred_on=clock.local_day(event.occurred_at),
        recorded_at=ce.time,
        facility_id=event.facility_id,
        **values,
    )


def _on(fact: Fact, day: date | None) -> Fact:
    """The fact dated by the clinical day its event carries (when it does), not the day it was announced."""
    if day is not None:
        fact.row["occurred_on"] = day
    return fact


#: what an AnnouncementWithdrawn takes back, as the kind of the fact it adds: the announcement's fact
#: of the same subject and day (the overdue day, the lost day) no longer counts (`repository`, `infants`)
WITHDRAWN_KIND = {
    fu.WithdrawnAnnouncement.ClientLostToFollowUp: "lost_withdrawn",
    fu.WithdrawnAnnouncement.InfantTestOverdue: "overdue_withdrawn",
    fu.WithdrawnAnnouncement.ClientViralLoadOverdue: "vl_overdue_withdrawn",
    fu.WithdrawnAnnouncement.ClientHivTestOverdue: "hiv_test_overdue_withdrawn",
}


def _subject_facts(ce: CloudEvent, event: Event, clock: Clock) -> list[Fact]:
    match event:
        case en.ClientEnrolled():
            return [
                _mother(
                    ce,
                    event,
                    clock,
                    "enrolled",
                    status_at_enrolment=event.status_at_enrolment.value,
                    hiv_status=event.hiv_status.value,
                    on_art=event.on_art,
                    transfer_in=event.transfer_in,
                    age_years=event.age_years,
                    art_start_date=event.art_start_date,
                    known_since=event.hiv_status_known_since,
                    gestation_weeks=event.gestation_weeks,
                    edd=event.edd,
                )
            ]
        case en.AncVisitRecorded():
            return [
                _mother(
                    ce,
                    event,
                    clock,
                    "anc_visit",
                    visit_number=event.visit_number,
                    gestation_weeks=event.gestation_weeks,
                    age_years=event.age_years,
                    opens_episode=event.opens_episode,
                )
            ]
        case en.HivTestRecorded() if event.result in CONCLUSIVE:
            return [
                _mother(
                    ce,
                    event,
                    clock,
                    "hiv_test",
                    result=event.result.value,
                    setting=event.setting.value,
                    status_before=event.status_before.value,
                    age_years=event.age_years,
                    anc_visit_number=event.anc_visit_number,
                    period=event.period.value if event.period else None,
                )
            ]
        case en.ArtInitiated():
            period = event.period.value if event.period else None
            return [_mother(ce, event, clock, "art_start", age_years=event.age_years, period=period)]
        case en.PregnancyEnded():
            return [_mother(ce, event, clock, "pregnancy_ended")]
        case en.ViralLoadRecorded():
            return [_mother(ce, event, clock, "viral_load")]
        case en.ClientDied():
            return [_mother(ce, event, clock, "died")]
        case fu.ClientViralLoadOverdue():
            return [_on(_mother(ce, event, clock, "vl_overdue"), event.overdue_on)]
        case fu.ClientHivTestOverdue():
            return [_on(_mother(ce, event, clock, "hiv_test_overdue"), event.overdue_on)]
        case fu.InfantTestOverdue():
            return [_on(_infant(ce, event, clock, "overdue"), event.overdue_on)]
        case fu.AnnouncementWithdrawn() if event.announcement in WITHDRAWN_KIND:
            kind = WITHDRAWN_KIND[event.announcement]
            table = Table.mother_facts if event.subject_type is fu.SubjectType.client else Table.infant_facts
            key = {"client_id": event.client_id} if table is Table.mother_facts else {"infant_id": event.subject_id}
            extra = {} if table is Table.mother_facts else {"recorded_at": ce.time}
            return [
                _row(
                    table,
                    event_id=ce.id,
                    kind=kind,
                    occurred_at=event.occurred_at,
                    occurred_on=event.announced_for,
                    facility_id=event.facility_id,
                    **key,
                    **extra,
                )
            ]
        case en.DeliveryRecorded():
            live = sum(1 for i in event.infants if i.outcome is en.BirthOutcome.live_birth)
            delivered_on = clock.local_day(event.occurred_at)
            return [
                _row(
                    Table.deliveries,
                    event_id=ce.id,
                    client_id=event.client_id,
                    delivered_on=delivered_on,
                    facility_id=event.facility_id,
                    skilled_attendant=event.skilled_attendant,
                    mother_hiv_status=event.mother_hiv_status.value,
                    live_births=live,
                    infant_ids=[i.infant_id for i in event.infants],
                ),
                # the end of the pregnancy, for her episode: ART after it is postnatal ART
                _mother(ce, event, clock, "delivery", age_years=event.age_years),
            ]
        case fu.InfantFollowUpStarted():
            return [_infant(ce, event, clock, "hei", birth_date=event.birth_date)]
        case fu.InfantTestResulted():
            # the first virologic test is found from the sample dates, whatever `first_virologic` said on arrival
            return [
                _infant(
                    ce,
                    event,
                    clock,
                    "test",
                    test=event.test.value,
                    age_days=event.age_days,
                    result=event.result.value,
                    confirmatory=event.confirmatory,
                )
            ]
        case fu.InfantArtInitiated():
            return [_infant(ce, event, clock, "art_start")]
        case fu.InfantFeedingRecorded():
            return [_infant(ce, event, clock, "feeding", method=event.method.value)]
        case fu.InfantVisitRecorded() | fu.InfantProphylaxisRecorded():
            return [_infant(ce, event, clock, "contact")]
        case fu.InfantFollowUpResumed():
            # a transfer out or discharge before it no longer stands (reporting.infants.ended_standing)
            return [_infant(ce, event, clock, "resumed")]
        case fu.InfantFinalOutcomeRecorded():
            # kept as recorded; only a death or a transfer out is a fact PMTCT_FO uses (reporting.infants)
            return [_infant(ce, event, clock, "outcome", outcome=event.outcome.value, age_days=event.age_days)]
        case fu.ClientLostToFollowUp() if event.subject_type is fu.SubjectType.client:
            return [
                _row(
                    Table.mother_facts,
                    event_id=ce.id,
                    client_id=event.client_id,
                    kind="lost",
                    occurred_at=event.occurred_at,
                    occurred_on=event.lost_on or clock.local_day(event.occurred_at),
                    facility_id=event.facility_id,
                )
            ]
        case fu.ClientLostToFollowUp() if event.subject_type is fu.SubjectType.infant:
            return [
                _row(
                    Table.infant_facts,
                    event_id=ce.id,
                    infant_id=event.subject_id,
                    kind="lost",
                    occurred_at=event.occurred_at,
                    occurred_on=event.lost_on or clock.local_day(event.occurred_at),
                    recorded_at=ce.time,
                    facility_id=event.facility_id,
                )
            ]
        case en.ClientEventVoided() | fu.InfantEventVoided():
            return [
                _row(
                    Table.voids,
                    event_id=ce.id,
                    voided_event_id=event.voided_event_id,
                    voided_type=event.voided_type,
                    voided_ids=list(event.voided_ids),
                    reason=event.reason.value,
                    replaced_by_event_id=event.replaced_by_event_id,
                    facility_id=event.facility_id,
                    occurred_at=event.occurred_at,
                    occurred_on=clock.local_day(event.occurred_at),
                    client_id=event.client_id,
                    infant_id=getattr(event, "infant_id", None),
                )
            ]
        case rf.ReferralEvent():
            return [
                _row(
                    Table.referral_facts,
                    event_id=ce.id,
                    referral_id=event.referral_id,
                    version=event.version,
                    facility_id=event.facility_id,
                    referral_service=event.referral_service.value,
                    due_by=event.due_by,
                    status=event.status.value,
                )
            ]
    return []


def facts_of(ce: CloudEvent, event: Event, clock: Clock) -> list[Fact]:
    """The facts `event` adds; an empty list for an event the indicators do not use. Each is dated
    with the programme-local day of the instant it happened (`clock`), whatever offset it was posted
    with, so a month counts what happened in it there."""
    found = _subject_facts(ce, event, clock)
    if type(event) in INTERACTIONS:
        day = clock.local_day(event.occurred_at)
        infant = event.infant_id if isinstance(event, fu.InfantEvent) else None
        found.append(
            _row(
                Table.interactions, event_id=ce.id, facility_id=event.facility_id, month=month_of(day), infant_id=infant
            )
        )
    return found


def month_of(day: date) -> date:
    return date(day.year, day.month, 1)


#: the event types the reporting consumer applies (and claims in its inbox)
APPLIED: tuple[type[Event], ...] = (
    *en.EVENTS,
    fu.InfantFollowUpStarted,
    fu.InfantProphylaxisRecorded,
    fu.InfantFeedingRecorded,
    fu.InfantTestResulted,
    fu.InfantArtInitiated,
    fu.InfantVisitRecorded,
    fu.InfantFinalOutcomeRecorded,
    fu.InfantFollowUpResumed,
    fu.InfantTestOverdue,
    fu.ClientViralLoadOverdue,
    fu.ClientHivTestOverdue,
    fu.ClientLostToFollowUp,
    fu.AnnouncementWithdrawn,
    fu.InfantEventVoided,
    *rf.EVENTS,
)
