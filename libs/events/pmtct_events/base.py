"""Building blocks shared by every event contract.

Events are facts in the past tense. They carry platform UUIDs, facility ids, dates and coded
clinical facts only: never names, phone numbers, national ids, addresses or EMR record numbers.
Within `.v1` a contract may only gain optional fields; `tests/test_event_schemas.py` enforces it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

#: the years a date of the platform may fall in (a birth, a test, a delivery; the EMR intake refuses
#: others): every later date calculation (a schedule, a period, a UTC offset) stays inside `datetime`
YEARS = range(1900, 3000)
#: the longest facility id (the registry's ids are far shorter)
FACILITY_ID_MAX = 64


def sane(value: Any) -> Any:
    """Refuse what every consumer should refuse the same way, whatever the field: a date outside
    `YEARS`, a NUL byte in text (PostgreSQL text cannot hold one). Lists and tuples are looked into."""
    if isinstance(value, date):  # datetime too
        if value.year not in YEARS:
            raise ValueError(f"a date must be between the years {YEARS.start} and {YEARS.stop - 1}")
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain a NUL byte")
    elif isinstance(value, list | tuple):
        for item in value:
            sane(item)
    return value


class Contract(BaseModel):
    """Strict, immutable, closed: a producer cannot smuggle an unknown field onto the wire; no
    field holds a date outside `YEARS` or a NUL byte (`sane`), so every consumer refuses the same
    records (to its dead-letter topic)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, use_enum_values=False)

    @field_validator("*", mode="after")
    @classmethod
    def _sane(cls, value: Any) -> Any:
        return sane(value)


class Event(Contract):
    """A catalog event. Subclasses name their type, the service that owns them and their key."""

    event_name: ClassVar[str]
    service: ClassVar[str]
    #: name of the field whose value is the Kafka key and CloudEvents subject (the aggregate id)
    key_field: ClassVar[str]

    facility_id: str
    occurred_at: AwareDatetime

    @field_validator("facility_id")
    @classmethod
    def _facility_id_length(cls, value: str) -> str:
        if not 1 <= len(value) <= FACILITY_ID_MAX:
            raise ValueError(f"facility_id must be 1 to {FACILITY_ID_MAX} characters")
        return value

    @classmethod
    def ce_type(cls) -> str:
        return f"org.pmtct.{cls.service}.{cls.event_name}.v1"

    @classmethod
    def topic(cls) -> str:
        return f"pmtct.{cls.service}.v1"

    def key(self) -> str:
        value = getattr(self, self.key_field)
        return str(value)


class VoidReason(StrEnum):
    """Why an accepted event was voided."""

    #: a data-entry error: the fact never happened as recorded (voided, or replaced by a corrected event)
    entered_in_error = "entered_in_error"


class Voiding(Contract):
    """What every "event voided" catalog event carries (`enrolment.ClientEventVoided`,
    `followup.InfantEventVoided`): the EMR's event that is voided, and the catalog events it had
    produced. A consumer recomputes from its facts without the facts of `voided_ids`, as if that
    event had never been posted; the history keeps both (the voided fact and this event)."""

    #: the EMR's `event_id` of the voided event
    voided_event_id: UUID
    #: its intake type (e.g. `HivTestRecorded`)
    voided_type: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")
    #: the CloudEvent ids of the catalog events its acceptance published (what consumers hold)
    voided_ids: tuple[UUID, ...] = Field(min_length=1, max_length=16)
    reason: VoidReason = VoidReason.entered_in_error
    #: the EMR's `event_id` of the corrected event that replaces it, if it was replaced (that event
    #: is published right after this one, on the same key)
    replaced_by_event_id: UUID | None = None


def utc_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


__all__ = ["FACILITY_ID_MAX", "YEARS", "Contract", "Event", "UUID", "sane", "utc_iso"]
