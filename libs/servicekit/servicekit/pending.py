"""Held EMR events: what the intake pipeline (`servicekit.intake`) keeps of an event it answered
`pending`, in the service's own schema (table `intake_pending`, created by each service's migration
with `DDL`).

An event is held when its subject is not known yet (a mother event for a `client_ref` not enrolled
at that facility yet, an infant event for an infant follow-up has not heard of yet), or when a fact
it depends on is not recorded yet (an ART start before the positive test it follows). A held row
names what it waits for by `subject_keys` (strings the service makes, e.g. `client:<uuid>`); when a
unit of work makes one of them known, the pipeline loads the rows that wait for it and decides them
through the service's ordinary decide/write path, in the order they happened (`occurred_at`).

Each row keeps what became of the event: `pending` while held; `accepted` (with the ids answered),
`rejected` (with its code) once decided; `voided` when the EMR voided it while it was held (it is
never applied; `result` names the void, `servicekit.intake`); `expired` (`pending_expired`) when it was held longer than
`PMTCT_INTAKE_PENDING_TTL_DAYS`. `expires_at` is the row's durable timer: `run` claims due rows with
`FOR UPDATE SKIP LOCKED` (any number of replicas), so an expiry happens once, in its own commit.
`GET /v1/events/{event_id}` reads this table (`state_of`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .metrics import INTAKE_PENDING, INTAKE_PENDING_EXPIRED
from .problems import Problem

log = logging.getLogger(__name__)

DDL: tuple[str, ...] = (
    """CREATE TABLE intake_pending (
        event_id uuid PRIMARY KEY,
        facility_id text NOT NULL,
        type text NOT NULL,
        occurred_at timestamptz NOT NULL,
        subject_keys text[] NOT NULL,
        body jsonb NOT NULL,
        fingerprint text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        code text,
        reason text,
        result jsonb,
        posted_by text NOT NULL,
        batch_id uuid NOT NULL,
        held_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        settled_at timestamptz
    )""",
    "CREATE INDEX intake_pending_keys ON intake_pending USING gin (subject_keys) WHERE status = 'pending'",
    "CREATE INDEX intake_pending_expiry ON intake_pending (expires_at) WHERE status = 'pending'",
)
DROP_DDL: tuple[str, ...] = ("DROP TABLE IF EXISTS intake_pending",)

#: the statuses a row can have (`status`)
PENDING, ACCEPTED, REJECTED, EXPIRED, VOIDED = "pending", "accepted", "rejected", "expired", "voided"


@dataclass(frozen=True, slots=True)
class Held:
    """One row of `intake_pending`."""

    event_id: UUID
    facility_id: str
    type: str
    occurred_at: datetime
    subject_keys: tuple[str, ...]
    body: dict[str, Any]
    fingerprint: str
    status: str
    code: str | None
    reason: str | None
    result: dict[str, Any] | None
    posted_by: str
    batch_id: UUID
    held_at: datetime
    expires_at: datetime
    settled_at: datetime | None


_COLUMNS = (
    "event_id, facility_id, type, occurred_at, subject_keys, body, fingerprint, status, code, reason, result,"
    " posted_by, batch_id, held_at, expires_at, settled_at"
)


def _held(row: Any) -> Held:
    m = row._mapping
    return Held(**{**m, "subject_keys": tuple(m["subject_keys"])})


async def lock_keys(session: AsyncSession, keys: Iterable[str]) -> None:
    """Take the transaction's lock on each of `keys` (a PostgreSQL advisory lock per key, in one
    order): the intake takes them before it looks its subjects up, and a unit that makes a key
    known takes them before it looks for the rows waiting for it. So an event is never held after
    the look-up that would release it: one of the two waits for the other's commit, and reads it."""
    wanted = sorted(set(keys))
    if wanted:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"),
            {"keys": wanted},
        )


async def waiting_for(session: AsyncSession, keys: Iterable[str], exclude: Iterable[UUID] = ()) -> list[Held]:
    """The pending rows that wait for any of `keys`, locked, in the order they happened."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM intake_pending WHERE status = 'pending'"
            " AND subject_keys && CAST(:keys AS text[]) AND NOT event_id = ANY(CAST(:exclude AS uuid[]))"
            " ORDER BY occurred_at, event_id FOR UPDATE"
        ),
        {"keys": wanted, "exclude": sorted(set(exclude))},
    )
    return [_held(r) for r in rows]


async def held_here(session: AsyncSession, event_ids: Iterable[UUID]) -> set[UUID]:
    """Which of these event_ids this service holds or held (any status; not locked)."""
    ids = sorted(set(event_ids))
    if not ids:
        return set()
    rows = await session.execute(
        text("SELECT event_id FROM intake_pending WHERE event_id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids}
    )
    return {row[0] for row in rows}


async def of_events(session: AsyncSession, event_ids: Iterable[UUID]) -> dict[UUID, Held]:
    """The rows of these event_ids, whatever their status, locked (a resend of a held event)."""
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text(f"SELECT {_COLUMNS} FROM intake_pending WHERE event_id = ANY(CAST(:ids AS uuid[])) FOR UPDATE"),
        {"ids": ids},
    )
    return {h.event_id: h for h in map(_held, rows)}


@dataclass(frozen=True, slots=True)
class Hold:
    """A row to hold (new, or held again with what it waits for now)."""

    event_id: UUID
    facility_id: str
    type: str
    occurred_at: datetime
    subject_keys: tuple[str, ...]
    body: Mapping[str, Any]
    fingerprint: str
    code: str
    reason: str
    posted_by: str
    batch_id: UUID


async def hold(session: AsyncSession, rows: Sequence[Hold], now: datetime, ttl: timedelta) -> None:
    """Hold events: a new row expires `ttl` from `now`; a row already pending keeps its clock and
    gets what it waits for now; an expired or rejected one held again starts afresh."""
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO intake_pending (event_id, facility_id, type, occurred_at, subject_keys, body, fingerprint,"
            " status, code, reason, posted_by, batch_id, held_at, expires_at)"
            " VALUES (:event_id, :facility_id, :type, :occurred_at, CAST(:subject_keys AS text[]),"
            " CAST(:body AS jsonb), :fingerprint, 'pending', :code, :reason, :posted_by, :batch_id,"
            " :now, :expires)"
            " ON CONFLICT (event_id) DO UPDATE SET subject_keys = EXCLUDED.subject_keys, code = EXCLUDED.code,"
            " reason = EXCLUDED.reason, result = NULL, settled_at = NULL,"
            " body = EXCLUDED.body, fingerprint = EXCLUDED.fingerprint,"
            " posted_by = EXCLUDED.posted_by, batch_id = EXCLUDED.batch_id,"
            " held_at = CASE WHEN intake_pending.status = 'pending' THEN intake_pending.held_at"
            " ELSE EXCLUDED.held_at END,"
            " expires_at = CASE WHEN intake_pending.status = 'pending' THEN intake_pending.expires_at"
            " ELSE EXCLUDED.expires_at END, status = 'pending'"
        ),
        [
            {
                "event_id": r.event_id,
                "facility_id": r.facility_id,
                "type": r.type,
                "occurred_at": r.occurred_at,
                "subject_keys": list(r.subject_keys),
                "body": orjson.dumps(dict(r.body)).decode(),
                "fingerprint": r.fingerprint,
                "code": r.code,
                "reason": r.reason,
                "posted_by": r.posted_by,
                "batch_id": r.batch_id,
                "now": now,
                "expires": now + ttl,
            }
            for r in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of a held event once decided: accepted (with its answer), rejected, or voided
    while held (its `result` names the void: `voided_by`, and the void's fingerprint)."""

    event_id: UUID
    status: str
    code: str | None
    reason: str | None
    result: Mapping[str, Any] | None


async def settle(session: AsyncSession, rows: Sequence[Settled], now: datetime) -> None:
    if not rows:
        return
    await session.execute(
        text(
            "UPDATE intake_pending p SET status = u.status, code = u.code, reason = u.reason,"
            " result = CAST(u.result AS jsonb), settled_at = CAST(:now AS timestamptz)"
            " FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]),"
            " CAST(:reasons AS text[]), CAST(:results AS text[])) AS u(event_id, status, code, reason, result)"
            " WHERE p.event_id = u.event_id"
        ),
        {
            "ids": [r.event_id for r in rows],
            "statuses": [r.status for r in rows],
            "codes": [r.code for r in rows],
            "reasons": [r.reason for r in rows],
            "results": [orjson.dumps(dict(r.result)).decode() if r.result is not None else None for r in rows],
            "now": now,
        },
    )


EXPIRED_REASON = (
    "Held for {days} days (since {held}) and what it waited for never came; it was not recorded: {why}"
    " Post what it depends on, then post this event again."
)


async def expire_due(session: AsyncSession, now: datetime, limit: int = 500) -> list[Held]:
    """Expire the held events whose time is up (`expires_at` reached), at most `limit`; rows
    another replica is expiring are skipped."""
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM intake_pending"
            " WHERE status = 'pending' AND expires_at <= CAST(:now AS timestamptz)"
            " ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"now": now, "limit": limit},
    )
    due = [_held(r) for r in rows]
    await settle(
        session,
        [
            Settled(
                h.event_id,
                EXPIRED,
                "pending_expired",
                EXPIRED_REASON.format(
                    days=round((h.expires_at - h.held_at) / timedelta(days=1)),
                    held=h.held_at.date().isoformat(),
                    why=h.reason or "",
                ),
                None,
            )
            for h in due
        ],
        now,
    )
    return due


async def count_pending(session: AsyncSession) -> int:
    return int(
        (await session.execute(text("SELECT count(*) FROM intake_pending WHERE status = 'pending'"))).scalar_one()
    )


async def state_of(session: AsyncSession, event_id: UUID) -> Held | None:
    rows = await session.execute(
        text(f"SELECT {_COLUMNS} FROM intake_pending WHERE event_id = CAST(:id AS uuid)"), {"id": event_id}
    )
    row = rows.first()
    return _held(row) if row is not None else None


async def run(rt: Any) -> None:
    """The background loop of a service that holds events (`create_app(background=...)`): expire
    what is due, then keep the gauge of held events current; a pause unless work remains."""
    settings = rt.settings
    service = settings.service_name
    while True:
        async with rt.sessions() as session, session.begin():
            expired = await expire_due(session, settings.clock.now(), settings.intake_pending_batch)
            held = await count_pending(session)
        INTAKE_PENDING.labels(service).set(held)
        if expired:
            INTAKE_PENDING_EXPIRED.labels(service).inc(len(expired))
            log.info("intake: %d held events expired, %d still held", len(expired), held)
        if len(expired) < settings.intake_pending_batch:
            await asyncio.sleep(settings.intake_pending_check_s)


# --- GET /v1/events/{event_id} -----------------------------------------------------------------


class EventState(BaseModel):
    """What became of an event an EMR posted: recorded (`accepted`, with the ids the platform gave),
    still held (`pending`), `expired` (held too long, `pending_expired`), or `rejected` when it was
    decided after being held (an event rejected when posted is not kept: it is not found); an
    accepted event voided since (`EventVoided`, or replaced by a corrected one) is `voided`, and so
    is a held event voided while it was held (it was never applied: `held_since`, no `ids`)."""

    event_id: UUID
    type: str
    facility_id: str
    occurred_at: datetime
    status: Literal["accepted", "pending", "expired", "rejected", "voided"]
    code: str | None = Field(default=None, description="What it waits for, or why it expired or was rejected.")
    reason: str | None = None
    held_since: datetime | None = Field(default=None, description="When it was first held, if it was.")
    expires_at: datetime | None = Field(default=None, description="When a held event expires.")
    decided_at: datetime | None = Field(default=None, description="When a held event was decided or expired.")
    ids: dict[str, Any] = Field(
        default_factory=dict, description="The platform's ids, as in the answer to the post (client_id, infant_id…)."
    )
    voided_at: datetime | None = Field(default=None, description="When a voided event was voided.")
    voided_by: UUID | None = Field(
        default=None, description="The event_id of the EventVoided, or of the corrected event, that voided it."
    )


#: finds an accepted event in the service's own records (None: not there)
AcceptedLookup = Callable[[AsyncSession, UUID], Awaitable[EventState | None]]


async def event_state(
    session: AsyncSession, event_id: UUID, principal: Any, accepted: AcceptedLookup, store: Any = None
) -> EventState:
    """The state of a posted event for a caller who may act for its facility; 404 `unknown_event`
    otherwise (an event of another facility is not found either). `store`: the service's
    `corrections.EventStore`, which says whether an accepted event was voided since."""
    found = await accepted(session, event_id)
    if found is not None and store is not None:
        voiding = await store.voiding_of(session, event_id)
        if voiding is not None:
            found = found.model_copy(update={"status": "voided", "voided_at": voiding[0], "voided_by": voiding[1]})
    row = await state_of(session, event_id)
    if found is not None and row is not None:
        found = found.model_copy(update={"held_since": row.held_at, "decided_at": row.settled_at})
    elif found is None and row is not None and row.status == VOIDED:
        voided_by = (row.result or {}).get("voided_by")
        found = EventState(
            event_id=row.event_id,
            type=row.type,
            facility_id=row.facility_id,
            occurred_at=row.occurred_at,
            status="voided",
            code=row.code,
            reason=row.reason,
            held_since=row.held_at,
            decided_at=row.settled_at,
            voided_at=row.settled_at,
            voided_by=UUID(voided_by) if voided_by else None,
        )
    elif found is None and row is not None:
        found = EventState(
            event_id=row.event_id,
            type=row.type,
            facility_id=row.facility_id,
            occurred_at=row.occurred_at,
            status=row.status,  # type: ignore[arg-type]
            code=row.code,
            reason=row.reason,
            held_since=row.held_at,
            expires_at=row.expires_at if row.status == PENDING else None,
            decided_at=row.settled_at,
            ids=row.result or {},
        )
    if found is None or not principal.may_act_for(found.facility_id):
        raise Problem(
            404, "unknown_event", f"No event {event_id} was recorded or held for a facility this client acts for."
        )
    return found
