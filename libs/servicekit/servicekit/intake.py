"""Batch ingestion of EMR events (`POST /v1/events`): what every service answers the same way.

DESIGN.md: a batch holds at most 1000 events and gets one result per event, in the order posted:
`accepted`, `duplicate` (this event_id was recorded before with the same content: nothing happens
a second time) or `rejected` with a machine-readable `code` and a `reason`. The same event_id with
different content is rejected as `conflict`: a correction needs a new event_id.

What an event is, how it is validated, and which rules it must satisfy stay in each service; a
service extends `EventResult` with what it answers (enrolment: the woman's and infants' ids).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, Self, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, Field

from .problems import Problem

MAX_BATCH = 1000

CONFLICT_REASON = "This event_id is already recorded with different content; a correction needs a new event_id."


class EventStatus(StrEnum):
    accepted = "accepted"
    duplicate = "duplicate"
    rejected = "rejected"


class EventResult(BaseModel):
    """The answer for one posted event."""

    index: int = Field(description="Position of the event in the posted batch.")
    event_id: str | None = Field(description="The event's event_id as posted, if it had one.")
    status: EventStatus
    code: str | None = Field(default=None, description="Why it was rejected (machine-readable).")
    reason: str | None = Field(default=None, description="Why it was rejected (for people).")

    @classmethod
    def rejection(cls, index: int, event_id: UUID | str | None, code: str, reason: str, **extra: Any) -> Self:
        return cls(
            index=index,
            event_id=str(event_id) if event_id is not None else None,
            status=EventStatus.rejected,
            code=code,
            reason=reason,
            **extra,
        )

    @classmethod
    def conflict(cls, index: int, event_id: UUID | str) -> Self:
        return cls.rejection(index, event_id, "conflict", CONFLICT_REASON)


ResultT = TypeVar("ResultT", bound=EventResult)


class BatchReply(BaseModel, Generic[ResultT]):
    """The answer for a batch: its id, how many events ended each way, and every event's result."""

    batch_id: UUID = Field(description="Correlation id of the events this batch caused.")
    accepted: int
    duplicate: int
    rejected: int
    results: list[ResultT]

    @classmethod
    def of(cls, batch_id: UUID, results: Sequence[ResultT]) -> Self:
        counts = Counter(r.status for r in results)
        return cls(
            batch_id=batch_id,
            accepted=counts[EventStatus.accepted],
            duplicate=counts[EventStatus.duplicate],
            rejected=counts[EventStatus.rejected],
            results=list(results),
        )


def check_batch_size(count: int, limit: int = MAX_BATCH) -> None:
    """Refuse a batch too large to answer event by event within one request (413 `batch_too_large`)."""
    if count > limit:
        raise Problem(413, "batch_too_large", f"A batch holds at most {limit} events; this one has {count}.")


class PostedEvent(Protocol):
    """A posted event once validated by its service's model (a pydantic model)."""

    @property
    def occurred_at(self) -> datetime: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def fingerprint(key: str, event: PostedEvent) -> str:
    """The content fingerprint of a posted event, kept to tell a duplicate from a conflict.

    Canonical form: every field of the validated event as JSON (event_id, type, facility_id, the
    subject's ref or id, data; optional fields the EMR left out count as their default), keys
    sorted, with occurred_at as the instant in UTC, so an EMR that re-sends an event with another
    offset sends the same event. Keyed (HMAC-SHA256 with `PMTCT_HMAC_KEY`), so the fingerprint of
    an event with a name or a record number in it reveals nothing.
    """
    body = event.model_dump(mode="json")
    body["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat()
    return hmac.new(key.encode(), orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()


def is_conflict(fingerprint: str, recorded_fingerprint: str) -> bool:
    """Whether an event whose event_id is recorded already differs from the recorded one: a
    conflict (rejected); otherwise it is a duplicate, answered as the first time."""
    return not hmac.compare_digest(fingerprint, recorded_fingerprint)
