"""Building blocks shared by every event contract.

Events are facts in the past tense. They carry platform UUIDs, facility ids, dates and coded
clinical facts only: never names, phone numbers, national ids, addresses or EMR record numbers.
Within `.v1` a contract may only gain optional fields; `tests/test_event_schemas.py` enforces it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Contract(BaseModel):
    """Strict, immutable, closed: a producer cannot smuggle an unknown field onto the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, use_enum_values=False)


class Event(Contract):
    """A catalog event. Subclasses name their type, the service that owns them and their key."""

    event_name: ClassVar[str]
    service: ClassVar[str]
    #: name of the field whose value is the Kafka key and CloudEvents subject (the aggregate id)
    key_field: ClassVar[str]

    facility_id: str
    occurred_at: AwareDatetime

    @classmethod
    def ce_type(cls) -> str:
        return f"org.pmtct.{cls.service}.{cls.event_name}.v1"

    @classmethod
    def topic(cls) -> str:
        return f"pmtct.{cls.service}.v1"

    def key(self) -> str:
        value = getattr(self, self.key_field)
        return str(value)


def utc_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


__all__ = ["Contract", "Event", "UUID", "utc_iso"]
