"""All SQL of the referrals service."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Boolean, Column, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from pmtct_events.referrals import ReferralService, ReferralStatus

from .models import Referral, art_wait, feed_counter, feed_entry, referral, referral_action, subject_state
from .rules import OPEN

_OPEN_CODES = sorted(s.value for s in OPEN)
_OPEN_PREDICATE = "status IN (" + ", ".join(f"'{c}'" for c in _OPEN_CODES) + ")"


# --- referrals -----------------------------------------------------------------------------------


async def insert_open(session: AsyncSession, r: Referral) -> bool:
    """Insert a new open referral; False (and nothing written) when its need already has one open."""
    stmt = (
        insert(referral)
        .values(r.values())
        .on_conflict_do_nothing(
            index_elements=[referral.c.subject_id, referral.c.referral_service],
            # literal, so that PostgreSQL matches it to the partial index's predicate
            index_where=text(_OPEN_PREDICATE),
        )
        .returning(referral.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def open_for_need(session: AsyncSession, subject_id: UUID, service: ReferralService) -> Referral | None:
    stmt = select(referral).where(
        referral.c.subject_id == subject_id,
        referral.c.referral_service == service.value,
        referral.c.status.in_(_OPEN_CODES),
    )
    row = (await session.execute(stmt)).first()
    return Referral.from_row(row) if row else None


async def get(session: AsyncSession, referral_id: UUID, *, lock: bool = False) -> Referral | None:
    """One referral; with `lock`, its row stays locked until the transaction ends, so that its
    events reach the outbox (and the wire) in the order of its changes."""
    stmt = select(referral).where(referral.c.id == referral_id)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).first()
    return Referral.from_row(row) if row else None


async def lock_open_for_subject(
    session: AsyncSession, subject_id: UUID, services: Collection[ReferralService] | None = None
) -> list[Referral]:
    stmt = select(referral).where(referral.c.subject_id == subject_id, referral.c.status.in_(_OPEN_CODES))
    if services is not None:
        stmt = stmt.where(referral.c.referral_service.in_([s.value for s in services]))
    rows = (await session.execute(stmt.order_by(referral.c.id).with_for_update())).all()
    return [Referral.from_row(row) for row in rows]


_LOCK_OPEN_FOR_NEEDS = text(
    "SELECT referral.* FROM referral"
    " JOIN unnest(CAST(:subjects AS uuid[]), CAST(:services AS text[])) AS need(subject_id, service)"
    " ON referral.subject_id = need.subject_id"
    " AND (need.service IS NULL OR referral.referral_service = need.service)"
    f" WHERE referral.{_OPEN_PREDICATE} ORDER BY referral.id FOR UPDATE OF referral"
).columns(*referral.c)


async def lock_open_for_needs(
    session: AsyncSession, needs: dict[UUID, Collection[ReferralService] | None]
) -> list[Referral]:
    """`lock_open_for_subject` for many subjects in one statement: each subject's open referrals
    of its services (None: of every service), locked in id order."""
    subjects: list[UUID] = []
    services: list[str | None] = []
    for subject_id, wanted in needs.items():
        for service in [None] if wanted is None else wanted:
            subjects.append(subject_id)
            services.append(None if service is None else service.value)
    if not subjects:
        return []
    rows = (await session.execute(_LOCK_OPEN_FOR_NEEDS, {"subjects": subjects, "services": services})).all()
    return [Referral.from_row(row) for row in rows]


async def lock_past_due(session: AsyncSession, today: date, limit: int) -> list[Referral]:
    """Open referrals whose due-by date has passed. SKIP LOCKED: a replica (or a person acting on
    the referral right now) that holds one keeps it; the status condition is re-checked on the
    locked row, so each referral expires at most once."""
    stmt = (
        select(referral)
        .where(referral.c.status.in_(_OPEN_CODES), referral.c.due_by < today)
        .order_by(referral.c.due_by, referral.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Referral.from_row(row) for row in (await session.execute(stmt)).all()]


async def save(session: AsyncSession, r: Referral) -> None:
    values = {**r.values(), "updated_at": func.now()}
    del values["id"]
    await session.execute(update(referral).where(referral.c.id == r.id).values(values))


def _visible_to(facilities: Collection[str]) -> Any:
    return or_(referral.c.from_facility_id.in_(list(facilities)), referral.c.to_facility_id.in_(list(facilities)))


async def search(
    session: AsyncSession,
    *,
    facilities: Collection[str] | None,
    facility_id: str | None = None,
    receiving_facility_id: str | None = None,
    statuses: Collection[ReferralStatus] | None = None,
    subject_id: UUID | None = None,
    referral_ids: Collection[UUID] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Referral]:
    """Referrals newest first. `facilities` None = every facility (a national reader); otherwise
    only referrals from or to one of them. `facility_id` narrows to referrals from or to it."""
    stmt = select(referral)
    if facilities is not None:
        stmt = stmt.where(_visible_to(facilities))
    if facility_id is not None:
        stmt = stmt.where(_visible_to([facility_id]))
    if receiving_facility_id is not None:
        stmt = stmt.where(
            or_(
                referral.c.to_facility_id == receiving_facility_id,
                and_(referral.c.to_facility_id.is_(None), referral.c.from_facility_id == receiving_facility_id),
            )
        )
    if statuses is not None:
        stmt = stmt.where(referral.c.status.in_([s.value for s in statuses]))
    if subject_id is not None:
        stmt = stmt.where(referral.c.subject_id == subject_id)
    if referral_ids is not None:
        stmt = stmt.where(referral.c.id.in_(list(referral_ids)))
    stmt = stmt.order_by(referral.c.requested_at.desc(), referral.c.id).limit(limit).offset(offset)
    return [Referral.from_row(row) for row in (await session.execute(stmt)).all()]


async def add_action(
    session: AsyncSession,
    r: Referral,
    *,
    action: str,
    at: datetime,
    actor: str,
    note: str | None,
) -> None:
    await session.execute(
        insert(referral_action).values(
            referral_id=r.id,
            version=r.version,
            action=action,
            status=r.status.value,
            at=at,
            outcome_code=r.outcome_code,
            note=note,
            actor=actor,
        )
    )


async def actions(session: AsyncSession, referral_id: UUID) -> list[dict[str, Any]]:
    stmt = (
        select(
            referral_action.c.version,
            referral_action.c.action,
            referral_action.c.status,
            referral_action.c.at,
            referral_action.c.outcome_code,
            referral_action.c.note,
            referral_action.c.actor,
        )
        .where(referral_action.c.referral_id == referral_id)
        .order_by(referral_action.c.version)
    )
    return [dict(row._mapping) for row in (await session.execute(stmt)).all()]


# --- the feed (see feed.py for why positions are assigned this way) -------------------------------

_TAKE_POSITIONS = text("UPDATE feed_counter SET position = position + :n RETURNING position")


def append_feed(session: Session, entries: list[dict[str, Any]]) -> None:
    """Runs in `before_commit`, on the synchronous face of the session: the counter row stays
    locked from here to COMMIT, which orders positions by commit."""
    last = session.execute(_TAKE_POSITIONS, {"n": len(entries)}).scalar_one()
    first = last - len(entries) + 1
    session.execute(insert(feed_entry), [{**e, "position": first + i} for i, e in enumerate(entries)])


async def feed_horizon(session: AsyncSession) -> int:
    """The last committed position: every position up to it is visible and none will appear below it."""
    return (await session.execute(select(feed_counter.c.position))).scalar_one()


async def feed_page(
    session: AsyncSession, *, after: int, horizon: int, facilities: Collection[str] | None, limit: int
) -> list[dict[str, Any]]:
    stmt = select(feed_entry).where(feed_entry.c.position > after, feed_entry.c.position <= horizon)
    if facilities is not None:
        stmt = stmt.where(
            or_(
                feed_entry.c.from_facility_id.in_(list(facilities)),
                feed_entry.c.to_facility_id.in_(list(facilities)),
            )
        )
    stmt = stmt.order_by(feed_entry.c.position).limit(limit)
    return [dict(row._mapping) for row in (await session.execute(stmt)).all()]


# --- ART-initiation waits --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtWait:
    client_id: UUID
    facility_id: str
    diagnosed_at: datetime
    due_at: datetime
    reason_code: str
    cause_event_id: UUID | None
    correlation_id: str | None


async def schedule_art_wait(session: AsyncSession, wait: ArtWait) -> None:
    """Keep the first diagnosis: a repeat positive test does not push the referral further out."""
    values = {name: getattr(wait, name) for name in wait.__slots__}
    await session.execute(insert(art_wait).values(values).on_conflict_do_nothing(index_elements=[art_wait.c.client_id]))


_SCHEDULE_ART_WAITS = text(
    "INSERT INTO art_wait (client_id, facility_id, diagnosed_at, due_at, reason_code, cause_event_id, correlation_id)"
    " SELECT * FROM unnest(CAST(:client_id AS uuid[]), CAST(:facility_id AS text[]),"
    " CAST(:diagnosed_at AS timestamptz[]), CAST(:due_at AS timestamptz[]), CAST(:reason_code AS text[]),"
    " CAST(:cause_event_id AS uuid[]), CAST(:correlation_id AS text[]))"
    " ON CONFLICT (client_id) DO NOTHING"
)


def schedule_art_waits(session: Session, waits: list[ArtWait]) -> None:
    """`schedule_art_wait` for many clients in one statement. Runs in `before_commit`, on the
    synchronous face of the session (see service.KnownSubjects)."""
    session.execute(_SCHEDULE_ART_WAITS, {name: [getattr(w, name) for w in waits] for name in ArtWait.__slots__})


async def drop_art_wait(session: AsyncSession, client_id: UUID) -> bool:
    """False when there was no wait (or the timer took it while we waited for its row)."""
    stmt = delete(art_wait).where(art_wait.c.client_id == client_id).returning(art_wait.c.client_id)
    return (await session.execute(stmt)).first() is not None


async def lock_due_art_waits(session: AsyncSession, now: datetime, limit: int) -> list[ArtWait]:
    """Waits that are over; SKIP LOCKED so that replicas share them and an ART start being
    recorded for one of them right now wins."""
    stmt = (
        select(art_wait)
        .where(art_wait.c.due_at <= now)
        .order_by(art_wait.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ArtWait(**row._mapping) for row in (await session.execute(stmt)).all()]


# --- subject state -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectState:
    on_art_since: datetime | None
    ended: str | None


async def subject_state_of(session: AsyncSession, subject_id: UUID) -> SubjectState:
    stmt = select(subject_state.c.on_art_since, subject_state.c.ended).where(subject_state.c.subject_id == subject_id)
    row = (await session.execute(stmt)).first()
    return SubjectState(row.on_art_since, row.ended) if row else SubjectState(None, None)


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    """A subject's state and whether an ART-initiation wait is running for her."""

    state: SubjectState
    waiting_for_art: bool


_SUBJECT_FACTS = text(
    "SELECT need.subject_id, s.on_art_since, s.ended, w.client_id IS NOT NULL AS waiting_for_art"
    " FROM unnest(CAST(:subjects AS uuid[])) AS need(subject_id)"
    " LEFT JOIN subject_state s ON s.subject_id = need.subject_id"
    " LEFT JOIN art_wait w ON w.client_id = need.subject_id"
).columns(
    subject_state.c.subject_id,
    subject_state.c.on_art_since,
    subject_state.c.ended,
    Column("waiting_for_art", Boolean),
)


async def subject_facts(session: AsyncSession, subject_ids: Collection[UUID]) -> dict[UUID, SubjectFacts]:
    """`subject_state_of` and the ART wait of many subjects in one statement. No locks: a subject's
    state and the start of her wait change only through her own partition's events (the timer
    may still end a wait: see `service._drop_art_wait`)."""
    if not subject_ids:
        return {}
    rows = (await session.execute(_SUBJECT_FACTS, {"subjects": list(subject_ids)})).all()
    return {
        row.subject_id: SubjectFacts(SubjectState(row.on_art_since, row.ended), row.waiting_for_art) for row in rows
    }


_SAVE_SUBJECT_STATES = text(
    "INSERT INTO subject_state (subject_id, on_art_since, ended, updated_at)"
    " SELECT s.subject_id, s.on_art_since, s.ended, now()"
    " FROM unnest(CAST(:subjects AS uuid[]), CAST(:on_art_since AS timestamptz[]), CAST(:ended AS text[]))"
    " AS s(subject_id, on_art_since, ended)"
    " ON CONFLICT (subject_id) DO UPDATE"
    " SET on_art_since = excluded.on_art_since, ended = excluded.ended, updated_at = excluded.updated_at"
)


def save_subject_states(session: Session, states: dict[UUID, SubjectState]) -> None:
    """Upsert whole states in one statement. Runs in `before_commit`, on the synchronous face of
    the session (see service.KnownSubjects)."""
    ids = list(states)
    session.execute(
        _SAVE_SUBJECT_STATES,
        {
            "subjects": ids,
            "on_art_since": [states[i].on_art_since for i in ids],
            "ended": [states[i].ended for i in ids],
        },
    )


async def set_subject_state(session: AsyncSession, subject_id: UUID, **values: Any) -> None:
    """Upsert `on_art_since` and/or `ended` (None clears `ended`: a client transferred back in)."""
    stmt = insert(subject_state).values(subject_id=subject_id, updated_at=func.now(), **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[subject_state.c.subject_id],
        set_={**{k: stmt.excluded[k] for k in values}, "updated_at": func.now()},
    )
    await session.execute(stmt)
