"""Corrections at the intake: an EMR voids an event it posted (`EventVoided`), or replaces it with a
corrected one (the same type, a new `event_id`, and `"replaces": <old event_id>`). One implementation
for every service that records EMR events (enrolment's mother events, follow-up's infant events);
`servicekit.intake` runs it, docs/emr-intake.md is the integrators' account.

**What a service supplies** (its `IntakeBatch`):

- `store = EventStore("client_events", subject="client_id")`: the table where it records what it
  accepted (the idempotency record); it has the correction columns (`ADD_COLUMNS`, added by a
  migration with `servicekit.migrations.add_correction_columns`): `published_ids` (the CloudEvent ids
  the event's acceptance published), `voided_at`, `voided_by` (the event_id of the void or of the
  replacement). `result` names its column of the answer kept for a duplicate (None: the answer is
  `{subject: id}`).
- `EventVoidedIn` in its union of posted events (`schemas.py`), so it parses, is documented in its
  /openapi.json and named in `unknown_event_type` reasons. Every posted event has `replaces`
  (`intake.PostedEvent`).
- In `resolve`, lock the subjects of `self.targets` too (`self.target_subjects()`: the subjects of
  the events the batch's voids name, loaded and locked by the pipeline before `resolve` is called).
  Voids are NOT passed to `resolve`, `pending_keys` or `decide`; replacements are, as ordinary events.
- `void(v: Void) -> Accept | Reject`: decide the void in memory (refuse it with
  `Code.void_dependents_first` when later events stand on it; otherwise take the voided fact out of
  the subject's state and plan the catalog event `ClientEventVoided` / `InfantEventVoided` with
  `**v.voiding()`). For a plain void (`v.replaced_by is None`) the EventVoided is recorded in the
  store like any accepted event (its `result` answers a duplicate); for a replacement, only the
  voided event is published (before the replacement's own catalog events, on the same key), the
  replacement is recorded by `decide` as usual.
- `unvoid(v)`: undo `void` in memory when the replacement it was for is refused.
- In `write`, `self.published(event_id, *catalog_events)` for every accepted event (voids and
  replacements included): the pipeline remembers their CloudEvent ids at COMMIT (`published_ids`),
  which a later void publishes as `voided_ids`. Or, cheaper, write them in the row as it is
  inserted, drawn with `uow.envelope_id(event)` (enrolment does: one write of the row, not two).

**What the pipeline does** (`Intake._attempt`, in the batch's order of decision), before the
service is asked: a void of an event still held (`servicekit.pending`, for a facility the caller
acts for) voids it there, without the service: its row is `voided` (by the void, whose answer it
keeps for a resend), it is never applied and nothing is published. Otherwise the voided event must
be recorded in `store` for a facility the caller acts for
(else `unknown_voided_event`; also for a void of a void, and for one recorded by this very batch),
must not be voided already (`already_voided`, naming by what and when); a replacement must have the
type (`replacement_type_mismatch`) and the subject (`replacement_subject_mismatch`) of what it
replaces, and is decided at once (never held). Then `voided_at`/`voided_by` are set in the unit of
work; a dry run does all of it and rolls back. `GET /v1/events/{event_id}` answers `voided` with
`voided_at` and `voided_by` (`pending.event_state(..., store=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import Event
from pmtct_events.base import VoidReason

from .intake import PostedEvent, Strict

#: the posted type of a void
EVENT_VOIDED = "EventVoided"


class EventVoidedData(Strict):
    voided_event_id: UUID = Field(description="The event_id of the accepted event that is voided.")
    reason: VoidReason = Field(
        default=VoidReason.entered_in_error, description="Why: `entered_in_error` (a data-entry error)."
    )


class EventVoidedIn(PostedEvent):
    """Void an accepted event (entered in error): consumers recompute as if it had never been
    posted; the history keeps it, marked voided. `facility_id` and `occurred_at` are the voiding's."""

    type: Literal["EventVoided"]
    data: EventVoidedData


def is_void(event: Any) -> bool:
    return getattr(event, "type", None) == EVENT_VOIDED


#: the correction columns of a store: (name, SQL type)
ADD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("published_ids", "uuid[]"),
    ("voided_at", "timestamptz"),
    ("voided_by", "uuid"),
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event the service recorded, as the pipeline needs it to decide a void or a replacement."""

    event_id: UUID
    type: str
    facility_id: str
    occurred_at: datetime
    subject_id: UUID
    fingerprint: str
    result: Mapping[str, Any]
    #: the CloudEvent ids its acceptance published (None: recorded before they were kept)
    published_ids: tuple[UUID, ...] | None
    voided_at: datetime | None
    voided_by: UUID | None


@dataclass(frozen=True)
class EventStore:
    """A service's table of accepted EMR events (event_id, content_hash, type, facility_id,
    occurred_at, its subject column, and the correction columns)."""

    table: str
    subject: str
    #: the column of the answer kept for a duplicate; None: the answer is `{subject: "<id>"}`
    result: str | None = "result"

    async def load(self, session: AsyncSession, event_ids: Iterable[UUID]) -> dict[UUID, StoredEvent]:
        """These events, if recorded, locked against a concurrent void (in event_id order)."""
        ids = sorted(set(event_ids))
        if not ids:
            return {}
        result = self.result or "NULL"
        rows = await session.execute(
            text(
                f"SELECT event_id, type, facility_id, occurred_at, {self.subject} AS subject_id, content_hash,"
                f" {result} AS result, published_ids, voided_at, voided_by FROM {self.table}"
                " WHERE event_id = ANY(CAST(:ids AS uuid[])) ORDER BY event_id FOR NO KEY UPDATE"
            ),
            {"ids": ids},
        )
        out: dict[UUID, StoredEvent] = {}
        for r in rows:
            m = r._mapping
            out[m["event_id"]] = StoredEvent(
                event_id=m["event_id"],
                type=m["type"],
                facility_id=m["facility_id"],
                occurred_at=m["occurred_at"],
                subject_id=m["subject_id"],
                fingerprint=m["content_hash"],
                result=m["result"] if m["result"] is not None else {self.subject: str(m["subject_id"])},
                published_ids=tuple(m["published_ids"]) if m["published_ids"] is not None else None,
                voided_at=m["voided_at"],
                voided_by=m["voided_by"],
            )
        return out

    async def remember_published(self, session: AsyncSession, published: Mapping[UUID, Sequence[UUID]]) -> None:
        """Keep, per accepted event, the CloudEvent ids its acceptance published."""
        if not published:
            return
        body = orjson.dumps({str(k): [str(i) for i in v] for k, v in published.items()}).decode()
        await session.execute(
            text(
                f"UPDATE {self.table} t SET published_ids = ARRAY(SELECT CAST(x AS uuid)"
                " FROM jsonb_array_elements_text(u.ids) AS x)"
                " FROM jsonb_each(CAST(:published AS jsonb)) AS u(k, ids) WHERE t.event_id = CAST(u.k AS uuid)"
            ),
            {"published": body},
        )

    async def mark_voided(self, session: AsyncSession, voided: Mapping[UUID, UUID], at: datetime) -> None:
        """Mark events voided (event_id -> the event_id of the void or replacement), as of `at`."""
        if not voided:
            return
        await session.execute(
            text(
                f"UPDATE {self.table} t SET voided_at = CAST(:at AS timestamptz), voided_by = u.by"
                " FROM unnest(CAST(:ids AS uuid[]), CAST(:bys AS uuid[])) AS u(id, by) WHERE t.event_id = u.id"
            ),
            {"ids": list(voided), "bys": list(voided.values()), "at": at},
        )

    async def voiding_of(self, session: AsyncSession, event_id: UUID) -> tuple[datetime, UUID] | None:
        """When and by which event this event was voided (None: it stands, or is not recorded)."""
        row = (
            await session.execute(
                text(f"SELECT voided_at, voided_by FROM {self.table} WHERE event_id = CAST(:id AS uuid)"),
                {"id": event_id},
            )
        ).first()
        if row is None or row.voided_at is None:
            return None
        return row.voided_at, row.voided_by


@dataclass(frozen=True, slots=True)
class Void:
    """A void the service is asked to decide: `target` is voided by `candidate` (an `EventVoidedIn`,
    or the replacement, then `replaced_by` is its event_id)."""

    candidate: Any  # servicekit.intake.Candidate
    target: StoredEvent
    reason: VoidReason = VoidReason.entered_in_error
    replaced_by: UUID | None = None

    @property
    def event(self) -> Any:
        return self.candidate.event

    def voiding(self) -> dict[str, Any]:
        """The fields of `pmtct_events.base.Voiding` for the catalog event that publishes it."""
        return {
            "voided_event_id": self.target.event_id,
            "voided_type": self.target.type,
            "voided_ids": self.target.published_ids or (),
            "reason": self.reason,
            "replaced_by_event_id": self.replaced_by,
        }


class Ledger:
    """Which catalog events each accepted event published (`IntakeBatch.published`)."""

    def __init__(self) -> None:
        self.by_event: dict[int, UUID] = {}
        self.events: list[Event] = []

    def produced(self, event_id: UUID, events: Iterable[Event]) -> None:
        for e in events:
            self.by_event[id(e)] = event_id
            self.events.append(e)  # keeps them alive, so their ids stay theirs

    def published(self, envelopes: Sequence[tuple[Any, Event]]) -> dict[UUID, list[UUID]]:
        out: dict[UUID, list[UUID]] = {}
        for ce, e in envelopes:
            eid = self.by_event.get(id(e))
            if eid is not None:
                out.setdefault(eid, []).append(ce.id)
        return out
