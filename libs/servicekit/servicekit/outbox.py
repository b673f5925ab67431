"""The transactional outbox: a state change and its events commit in one transaction.

Call `add` inside the unit of work that changes state. Per-key order on the wire is outbox id
order, so a writer must lock its aggregate (e.g. `SELECT ... FOR UPDATE`) before it adds events
for it; two transactions on the same aggregate then get increasing ids in commit order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event

from .telemetry import current_traceparent

DDL: tuple[str, ...] = (
    """CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        topic text NOT NULL,
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        event_type text NOT NULL,
        payload jsonb NOT NULL,
        headers jsonb NOT NULL,
        traceparent text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        published_at timestamptz
    )""",
    "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
    "CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL",
    """CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
    """CREATE TABLE inbox (
        consumer text NOT NULL,
        event_id uuid NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    )""",
)

DROP_DDL: tuple[str, ...] = (
    "DROP TABLE IF EXISTS inbox",
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    "DROP FUNCTION IF EXISTS outbox_notify()",
    "DROP TABLE IF EXISTS outbox",
)

#: A transaction's events in one statement (one row per parameter set was a statement per event for
#: PostgreSQL to run); ids are drawn in the order of the arrays, so per-key order is the order given.
_INSERT = text(
    "INSERT INTO outbox (event_id, topic, aggregate_type, aggregate_id, event_type, payload, headers, traceparent)"
    " SELECT event_id, topic, aggregate_type, aggregate_id, event_type, CAST(payload AS jsonb),"
    " CAST(headers AS jsonb), traceparent"
    " FROM unnest(CAST(:event_id AS uuid[]), CAST(:topic AS text[]), CAST(:aggregate_type AS text[]),"
    " CAST(:aggregate_id AS text[]), CAST(:event_type AS text[]), CAST(:payload AS text[]), CAST(:headers AS text[]),"
    " CAST(:traceparent AS text[])) WITH ORDINALITY"
    " AS e(event_id, topic, aggregate_type, aggregate_id, event_type, payload, headers, traceparent, n)"
    " ORDER BY n"
)
_COLUMNS = ("event_id", "topic", "aggregate_type", "aggregate_id", "event_type", "payload", "headers", "traceparent")


def envelope(
    event: Event,
    *,
    event_id: UUID | None = None,
    correlation_id: str | UUID | None = None,
    causation_id: str | UUID | None = None,
    traceparent: str | None = None,
) -> CloudEvent:
    """The envelope of an event; its trace is the caller's span unless `traceparent` names one."""
    return _envelope(event, event_id, correlation_id, causation_id, traceparent or current_traceparent())


def _envelope(
    event: Event,
    event_id: UUID | None,
    correlation_id: str | UUID | None,
    causation_id: str | UUID | None,
    traceparent: str | None,
) -> CloudEvent:
    return CloudEvent.from_event(
        event,
        event_id=event_id,
        correlation_id=str(correlation_id) if correlation_id else None,
        causation_id=str(causation_id) if causation_id else None,
        traceparent=traceparent,
    )


def _row(ce: CloudEvent, topic: str, aggregate_type: str) -> dict:
    return {
        "event_id": ce.id,
        "topic": topic,
        "aggregate_type": aggregate_type,
        "aggregate_id": ce.subject,
        "event_type": ce.type,
        "payload": orjson.dumps(ce.data).decode(),
        "headers": orjson.dumps({k: v.decode() for k, v in ce.headers()}).decode(),
        "traceparent": ce.traceparent,
    }


async def add(
    session: AsyncSession,
    events: Event | Iterable[Event],
    *,
    correlation_id: str | UUID | None = None,
    causation_id: str | UUID | None = None,
) -> list[CloudEvent]:
    """Write events to the outbox in the caller's transaction; returns their envelopes."""
    items = [events] if isinstance(events, Event) else list(events)
    tp = current_traceparent()
    return await add_each(session, [(e, correlation_id, causation_id, tp) for e in items])


Raised = tuple[Event, str | UUID | None, str | UUID | None, str | None]


async def add_each(
    session: AsyncSession, items: Sequence[Raised], ids: Mapping[int, UUID] | None = None
) -> list[CloudEvent]:
    """Write (event, correlation id, causation id, traceparent) to the outbox in one statement, in
    order; returns their envelopes (a unit of work's `commit` writes the events it collected so).
    `ids`: CloudEvent ids drawn before, by `id()` of the event (`UnitOfWork.envelope_id`); the others
    are drawn here."""
    if not items:
        return []
    # what `envelope` falls back to for an event raised outside any span: the caller's span, the same
    # for the whole call, so asked once (asked per event: an eighth of the outbox's time, profiled)
    here = current_traceparent() if any(tp is None for *_, tp in items) else None
    drawn = ids or {}
    envelopes = [_envelope(e, drawn.get(id(e)), corr, cause, tp or here) for e, corr, cause, tp in items]
    rows = [_row(ce, e.topic(), e.key_field.removesuffix("_id")) for ce, (e, *_) in zip(envelopes, items, strict=True)]
    await session.execute(_INSERT, {c: [r[c] for r in rows] for c in _COLUMNS})
    return envelopes
