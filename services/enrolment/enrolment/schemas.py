"""HTTP models of the enrolment API: the EMR event batch, its per-event results, client records.

Incoming events are validated strictly (`servicekit.intake.Strict`: JSON types as declared, no
unknown fields, no NaN) one by one, so that one malformed event is a `rejected` result and not a
failed batch. Ranges that carry a
clinical meaning (gestation, age, birth weight, viral load) are domain rules with their own codes,
not field constraints here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pmtct_events.enrolment import (
    BirthOutcome,
    DeliveryPlace,
    HivStatus,
    HivTestResult,
    InfantSex,
    MaternalOutcome,
    PregnancyLossOutcome,
    StatusAtEnrolment,
    TestSetting,
)
from servicekit import intake
from servicekit.corrections import EVENT_VOIDED, EventVoidedIn
from servicekit.intake import PostedEvent, Strict

#: an EMR record number: printable ASCII, no leading or trailing blanks
REF_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
#: stored free text: no control characters (PostgreSQL text cannot hold NUL)
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Ref = Annotated[str, Field(min_length=1, max_length=64, pattern=REF_PATTERN)]
FacilityId = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=TEXT_PATTERN)]


class ClientEnrolledData(Strict):
    given_name: Name | None = None
    family_name: Name | None = None
    birth_date: date | None = None
    age_years: int | None = None
    phone: Annotated[str, Field(max_length=32, pattern=r"^\+?[0-9][0-9 \-]{3,30}$")] | None = None
    national_id: Annotated[str, Field(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9 \-/]+$")] | None = None
    status_at_enrolment: StatusAtEnrolment
    hiv_status: HivStatus
    hiv_status_known_since: date | None = None
    on_art: bool
    art_start_date: date | None = None
    gestation_weeks: int | None = None
    edd: date | None = None


class AncVisitRecordedData(Strict):
    visit_number: int = Field(ge=1, le=20)
    gestation_weeks: int | None = None


class HivTestRecordedData(Strict):
    result: HivTestResult
    setting: TestSetting


class ArtInitiatedData(Strict):
    regimen: Annotated[str, Field(max_length=40, pattern=r"^[A-Za-z0-9/+\-]+$")] | None = None


class ViralLoadRecordedData(Strict):
    copies_per_ml: int


class InfantBorn(Strict):
    infant_ref: Ref
    sex: InfantSex
    birth_weight_g: int | None = None
    outcome: BirthOutcome


class DeliveryRecordedData(Strict):
    place: DeliveryPlace
    skilled_attendant: bool
    maternal_outcome: MaternalOutcome
    infants: list[InfantBorn] = Field(max_length=6)


class PregnancyEndedData(Strict):
    outcome: PregnancyLossOutcome
    gestation_weeks: int | None = None


class ClientTransferredOutData(Strict):
    to_facility_id: FacilityId | None = None


class ClientDiedData(Strict):
    pass


class EmrEventBase(PostedEvent):
    client_ref: Ref | None = Field(default=None, description="The EMR's record number for the woman.")
    client_id: UUID | None = Field(default=None, description="The platform's id for the woman.")


class ClientEnrolledIn(EmrEventBase):
    type: Literal["ClientEnrolled"]
    data: ClientEnrolledData


class AncVisitRecordedIn(EmrEventBase):
    type: Literal["AncVisitRecorded"]
    data: AncVisitRecordedData


class HivTestRecordedIn(EmrEventBase):
    type: Literal["HivTestRecorded"]
    data: HivTestRecordedData


class ArtInitiatedIn(EmrEventBase):
    type: Literal["ArtInitiated"]
    data: ArtInitiatedData


class ViralLoadRecordedIn(EmrEventBase):
    type: Literal["ViralLoadRecorded"]
    data: ViralLoadRecordedData


class DeliveryRecordedIn(EmrEventBase):
    type: Literal["DeliveryRecorded"]
    data: DeliveryRecordedData


class PregnancyEndedIn(EmrEventBase):
    type: Literal["PregnancyEnded"]
    data: PregnancyEndedData


class ClientTransferredOutIn(EmrEventBase):
    type: Literal["ClientTransferredOut"]
    data: ClientTransferredOutData


class ClientDiedIn(EmrEventBase):
    type: Literal["ClientDied"]
    data: ClientDiedData = Field(default_factory=ClientDiedData)


EmrEvent = Annotated[
    ClientEnrolledIn
    | AncVisitRecordedIn
    | HivTestRecordedIn
    | ArtInitiatedIn
    | ViralLoadRecordedIn
    | DeliveryRecordedIn
    | PregnancyEndedIn
    | ClientTransferredOutIn
    | ClientDiedIn
    | EventVoidedIn,
    Field(discriminator="type"),
]
EMR_EVENT = TypeAdapter(EmrEvent)
EVENT_TYPES: tuple[str, ...] = (
    "ClientEnrolled",
    "AncVisitRecorded",
    "HivTestRecorded",
    "ArtInitiated",
    "ViralLoadRecorded",
    "DeliveryRecorded",
    "PregnancyEnded",
    "ClientTransferredOut",
    "ClientDied",
)
#: what enrolment's intake takes: her facts, and the void of one (servicekit.corrections)
INTAKE_TYPES: tuple[str, ...] = (*EVENT_TYPES, EVENT_VOIDED)


class EventBatch(intake.EventBatch):
    """Each event is validated on its own (see `EmrEvent`), so one bad event cannot fail the batch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "0b8f3f5e-8a51-4c8e-9a43-6f1c2f7d9a10",
                            "type": "ClientEnrolled",
                            "facility_id": "FAC-ZA-001",
                            "occurred_at": "2026-03-02T09:15:00+02:00",
                            "client_ref": "ANC-2026-00017",
                            "data": {
                                "given_name": "Thandi",
                                "family_name": "Mokoena",
                                "birth_date": "1998-07-14",
                                "national_id": "9807140000000",
                                "status_at_enrolment": "pregnant",
                                "hiv_status": "positive",
                                "hiv_status_known_since": "2024-05-03",
                                "on_art": True,
                                "art_start_date": "2024-05-10",
                                "gestation_weeks": 14,
                            },
                        }
                    ]
                }
            ]
        },
    )

    events: list[Any] = Field(description="1 to 1000 mother and infant events (docs/emr-intake.md).")


class InfantCreated(BaseModel):
    infant_ref: str
    infant_id: UUID


class EventResult(intake.EventResult):
    """One event's answer at the front door: a mother event's (`client_id`, a delivery's `infants`)
    or an infant event's, as follow-up answered it (`infant_id`)."""

    client_id: UUID | None = None
    infants: list[InfantCreated] | None = Field(default=None, description="DeliveryRecorded: the new infant ids.")
    infant_id: UUID | None = Field(default=None, description="An infant event: the infant it is about.")


class BatchResult(intake.BatchReply[EventResult]):
    """The answer to a batch of mother and infant events (servicekit.intake, enrolment/frontdoor.py)."""


class Registration(BaseModel):
    facility_id: str
    client_ref: str
    registered_at: datetime


class PersonalData(BaseModel):
    given_name: str | None
    family_name: str | None
    phone: str | None
    national_id: str | None
    birth_date: date | None
    birth_date_estimated: bool


class ViralLoadPublic(BaseModel):
    copies_per_ml: int
    on: date


class EpisodePublic(BaseModel):
    """One pregnancy of hers and the postnatal period after it (enrolment.domain.episodes)."""

    episode_id: UUID
    pregnancy_number: int
    opened_on: date
    pregnant_at_entry: bool
    edd: date | None
    ended_on: date | None = Field(description="The day her pregnancy ended (delivery or loss).")
    ended_by: Literal["delivery", "pregnancy_loss"] | None


class ClinicalStatus(BaseModel):
    """Derived from her events by when they happened, as of the time of the request."""

    hiv_status: HivStatus
    diagnosed_on: date | None
    art_start_date: date | None
    latest_viral_load: ViralLoadPublic | None
    pregnancy: Literal["pregnant", "postnatal"] | None
    deliveries: int
    died_on: date | None
    episodes: list[EpisodePublic] = Field(default_factory=list, description="Her pregnancies, in order.")


class ClientPublic(BaseModel):
    client_id: UUID
    registrations: list[Registration] = Field(description="Only at facilities the caller may act for.")
    personal: PersonalData
    status: ClinicalStatus


class PersonalDataRead(BaseModel):
    client_id: UUID
    caller: str
    purpose: str
    access: str
    read_at: datetime


# --- POST /v1/caseload/personal-data -----------------------------------------------------------------


class CaseloadRead(BaseModel):
    """The platform ids of the clients a worklist names, and why they are read (audited)."""

    model_config = ConfigDict(extra="forbid")

    client_ids: list[UUID] = Field(min_length=1, max_length=1000)
    purpose: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)


class CaseloadPersonalData(BaseModel):
    """Whom a worklist row is about: her name, the facility's record number, her phone."""

    client_id: UUID
    client_ref: str | None
    given_name: str | None
    family_name: str | None
    phone: str | None
    birth_date: date | None


class CaseloadPersonalDataReply(BaseModel):
    staff_id: str
    facility_id: str
    clients: list[CaseloadPersonalData]
    not_in_caseload: list[UUID] = Field(description="Asked for, but not in the caller's caseload: not read.")
