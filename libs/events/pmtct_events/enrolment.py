"""Events published by the enrolment service on `pmtct.enrolment.v1`, keyed by `client_id`."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from .base import Contract, Event, Voiding

SERVICE = "enrolment"


class StatusAtEnrolment(StrEnum):
    pregnant = "pregnant"
    postnatal = "postnatal"


class HivStatus(StrEnum):
    positive = "positive"
    negative = "negative"
    unknown = "unknown"


class HivTestResult(StrEnum):
    positive = "positive"
    negative = "negative"
    indeterminate = "indeterminate"


class TestSetting(StrEnum):
    anc = "anc"
    labour_delivery = "labour_delivery"
    postnatal = "postnatal"
    other = "other"


class DeliveryPlace(StrEnum):
    facility = "facility"
    home = "home"
    in_transit = "in_transit"


class MaternalOutcome(StrEnum):
    alive = "alive"
    died = "died"


class InfantSex(StrEnum):
    female = "female"
    male = "male"
    unknown = "unknown"


class BirthOutcome(StrEnum):
    live_birth = "live_birth"
    stillbirth = "stillbirth"


class PregnancyLossOutcome(StrEnum):
    """How a pregnancy ended without a delivery (a loss from 28 weeks on is a stillbirth: a delivery)."""

    miscarriage = "miscarriage"
    abortion = "abortion"
    ectopic = "ectopic"


class CarePeriod(StrEnum):
    """Where in her care a fact happened, as the platform knew it when it was recorded: in a
    pregnancy, after a delivery (postnatal and breastfeeding), or in neither (after a pregnancy
    loss, before a new pregnancy)."""

    pregnancy = "pregnancy"
    postnatal = "postnatal"
    not_pregnant = "not_pregnant"


class ClientEvent(Event):
    """A fact about one woman. `episode_id` and `pregnancy_number` name the pregnancy episode it
    belongs to (her n-th pregnancy on the platform, across facilities): an episode opens with the
    enrolment or the ANC1 visit of a new pregnancy and goes on through the delivery and the
    postnatal period, or ends with a pregnancy loss, until the next pregnancy. The number is as
    known when the fact was recorded (a pregnancy posted later, dated earlier, renumbers the later
    ones); `episode_id` does not change with it."""

    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "client_id"
    client_id: UUID
    episode_id: UUID | None = None
    pregnancy_number: int | None = Field(default=None, ge=1)


class ClientEnrolled(ClientEvent):
    """A woman enrolled at ANC1 (pregnant) or postnatally. `transfer_in` marks a woman already known
    to the platform (matched by keyed national-id hash) enrolling at another facility, as known at
    arrival (a transfer-in enrolment posted before her first one is not marked); the platform's own
    consumers derive it from her events in the order they happened."""

    event_name: ClassVar[str] = "ClientEnrolled"
    status_at_enrolment: StatusAtEnrolment
    age_years: int = Field(ge=9, le=60)
    hiv_status: HivStatus
    hiv_status_known_since: date | None = None
    on_art: bool
    art_start_date: date | None = None
    gestation_weeks: int | None = Field(default=None, ge=4, le=45)
    edd: date | None = None
    transfer_in: bool = False


class AncVisitRecorded(ClientEvent):
    """An antenatal visit. `opens_episode`: this ANC1 (`visit_number` 1) opened a new pregnancy
    episode, after a delivery or a pregnancy loss, without a new enrolment, as known at arrival."""

    event_name: ClassVar[str] = "AncVisitRecorded"
    visit_number: int = Field(ge=1, le=20)
    gestation_weeks: int | None = Field(default=None, ge=4, le=45)
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)
    opens_episode: bool = Field(
        default=False,
        description="This ANC1 opened a new pregnancy episode without a new enrolment, "
        + "as known at arrival: decided against the events enrolment had recorded when this one arrived"
        + " (a delivery posted after it is not counted), so a backlog posted in another order carries"
        + " another value; the platform's own consumers do not rely on it and derive it from her facts"
        + " in the order they happened.",
    )


class HivTestRecorded(ClientEvent):
    """An HIV test of the mother. `status_before`, `anc_visit_number` and `period` are hints as
    known at arrival (decided against the events enrolment had recorded when the test arrived): a
    consumer that must end the same whatever order a backlog arrived in derives them from the facts,
    as the platform's own consumers do."""

    event_name: ClassVar[str] = "HivTestRecorded"
    result: HivTestResult
    setting: TestSetting
    status_before: HivStatus = Field(
        default=HivStatus.unknown,
        description="Her HIV status from the facts dated before this test, as known at arrival: an"
        + " earlier positive test posted after this one is not counted, so a backlog posted in another"
        + " order carries another value; the platform's own consumers do not rely on it (referrals and"
        + " reporting keep her facts and derive it).",
    )
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)
    anc_visit_number: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description="The ANC visit of that day in this pregnancy (1 = a test at ANC1), as known at arrival:"
        + " a visit posted after the test is not counted; the platform's own consumers do not rely on it.",
    )
    period: CarePeriod | None = Field(
        default=None,
        description="Where in her care the test was, as known at arrival (a delivery or loss posted after"
        + " it is not counted); the platform's own consumers do not rely on it.",
    )


class ArtInitiated(ClientEvent):
    """ART started. `period` tells ART started in pregnancy from postnatal ART, as known at arrival."""

    event_name: ClassVar[str] = "ArtInitiated"
    regimen: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9/+\-]+$")
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)
    period: CarePeriod | None = Field(
        default=None,
        description="Where in her care ART started (pregnancy, postnatal, not_pregnant), as known at arrival:"
        + " a delivery posted after it is not counted, so a backlog posted in another order carries another"
        + " value; the platform's own consumers do not rely on it (reporting derives it from her facts).",
    )


class ViralLoadRecorded(ClientEvent):
    event_name: ClassVar[str] = "ViralLoadRecorded"
    copies_per_ml: int = Field(ge=0)
    suppressed: bool
    period: CarePeriod | None = Field(
        default=None,
        description="Where in her care it was, as known at arrival; the platform's own consumers do not rely on it.",
    )


class DeliveredInfant(Contract):
    """`ref_hash` is the keyed hash of the EMR's infant_ref (servicekit.identifiers.ref_hash), so
    follow-up can resolve a later `infant_ref` without the record number ever being on the wire."""

    infant_id: UUID
    ref_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    sex: InfantSex
    birth_weight_g: int | None = Field(default=None, ge=200, le=7000)
    outcome: BirthOutcome


class ViralLoadResult(Contract):
    copies_per_ml: int = Field(ge=0)
    on: date


class DeliveryRecorded(ClientEvent):
    """A delivery with its infants (each with a new platform `infant_id`). It carries the mother's
    HIV context at delivery for a consumer that holds none of her events: the `mother_*` fields are
    as known at arrival (a positive test dated before the delivery and posted after it is not in
    them; a test voided later still is). The platform's own consumers derive her status, ART and
    viral load at the delivery from her events dated on or before it instead."""

    event_name: ClassVar[str] = "DeliveryRecorded"
    place: DeliveryPlace
    skilled_attendant: bool
    maternal_outcome: MaternalOutcome
    infants: list[DeliveredInfant] = Field(min_length=1, max_length=6)
    mother_hiv_status: HivStatus = HivStatus.unknown
    mother_diagnosed_on: date | None = None
    mother_art_start_date: date | None = None
    mother_latest_viral_load: ViralLoadResult | None = None
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)


class PregnancyEnded(ClientEvent):
    """A pregnancy that ended without a delivery: a miscarriage, an abortion or an ectopic
    pregnancy, before 28 weeks (a loss from 28 weeks on is a stillbirth, posted as a delivery).
    It closes the episode; her next pregnancy opens a new one."""

    event_name: ClassVar[str] = "PregnancyEnded"
    outcome: PregnancyLossOutcome
    gestation_weeks: int | None = Field(default=None, ge=4, le=27)


class ClientTransferredOut(ClientEvent):
    event_name: ClassVar[str] = "ClientTransferredOut"
    to_facility_id: str | None = None


class ClientDied(ClientEvent):
    event_name: ClassVar[str] = "ClientDied"


class ClientEventVoided(ClientEvent, Voiding):
    """An accepted mother event voided by the EMR that posted it (`EventVoided` at the intake, or a
    corrected event posted with `replaces`). `facility_id` and `occurred_at` are the voiding's: who
    voided it and when; `episode_id` is the voided event's. Voiding a delivery voids the infants it
    registered, and whatever follow-up holds for them: they were never born on the platform."""

    event_name: ClassVar[str] = "ClientEventVoided"


EVENTS: tuple[type[Event], ...] = (
    ClientEnrolled,
    AncVisitRecorded,
    HivTestRecorded,
    ArtInitiated,
    ViralLoadRecorded,
    DeliveryRecorded,
    ClientTransferredOut,
    ClientDied,
    PregnancyEnded,
    ClientEventVoided,
)
