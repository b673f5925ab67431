"""Events published by the enrolment service on `pmtct.enrolment.v1`, keyed by `client_id`."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from .base import Contract, Event

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


class ClientEvent(Event):
    service: ClassVar[str] = SERVICE
    key_field: ClassVar[str] = "client_id"
    client_id: UUID


class ClientEnrolled(ClientEvent):
    """A woman enrolled at ANC1 (pregnant) or postnatally. `transfer_in` marks a woman already known
    to the platform (matched by keyed national-id hash) enrolling at another facility."""

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
    event_name: ClassVar[str] = "AncVisitRecorded"
    visit_number: int = Field(ge=1, le=20)
    gestation_weeks: int | None = Field(default=None, ge=4, le=45)
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)


class HivTestRecorded(ClientEvent):
    """An HIV test of the mother. `status_before` is her status as the platform knew it just
    before this test, so consumers can tell a new diagnosis or a seroconversion without state."""

    event_name: ClassVar[str] = "HivTestRecorded"
    result: HivTestResult
    setting: TestSetting
    status_before: HivStatus = HivStatus.unknown
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)


class ArtInitiated(ClientEvent):
    event_name: ClassVar[str] = "ArtInitiated"
    regimen: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9/+\-]+$")
    #: her age in whole years on the day it happened (computed by enrolment from the birth date it
    #: keeps; the birth date itself never travels). Optional: events recorded before it was added lack it.
    age_years: int | None = Field(default=None, ge=0, le=120)


class ViralLoadRecorded(ClientEvent):
    event_name: ClassVar[str] = "ViralLoadRecorded"
    copies_per_ml: int = Field(ge=0)
    suppressed: bool


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
    HIV context at delivery so that follow-up can classify the infants without a lookup."""

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


class ClientTransferredOut(ClientEvent):
    event_name: ClassVar[str] = "ClientTransferredOut"
    to_facility_id: str | None = None


class ClientDied(ClientEvent):
    event_name: ClassVar[str] = "ClientDied"


EVENTS: tuple[type[Event], ...] = (
    ClientEnrolled,
    AncVisitRecorded,
    HivTestRecorded,
    ArtInitiated,
    ViralLoadRecorded,
    DeliveryRecorded,
    ClientTransferredOut,
    ClientDied,
)
