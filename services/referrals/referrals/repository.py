"""All SQL of the referrals service, and its unit of work (`ReferralsUnit`): the subjects it holds
(`Subjects`, an identity map of `subjects.Subject`) and the ministry feed's positions.

Lock order, everywhere: a subject's open referrals in referral id order, then her ART wait, then
the feed counter (last, as the unit commits). A consumer batch locks every open referral of its
subjects in one statement; the ART timer holds waits (SKIP LOCKED) and reads its subjects without
locking them, because it only opens referrals; the expiry timer holds only the referrals it expires
(SKIP LOCKED). So no writer waits for a lock while it holds one that another writer needs first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Boolean, Column, and_, func, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from pmtct_events.referrals import ReferralEvent, ReferralOrigin, ReferralService, ReferralStatus
from servicekit.db import insert_rows
from servicekit.uow import Repository, UnitOfWork

from .models import (
    ArtWait,
    Referral,
    art_start,
    art_wait,
    delivered_infant,
    feed_counter,
    feed_entry,
    positive_status,
    referral,
    referral_action,
    subject_state,
)
from .rules import OPEN, OUTCOME_ENTERED_IN_ERROR
from .subjects import Subject

_OPEN_CODES = sorted(s.value for s in OPEN)
_OPEN_PREDICATE = "status IN (" + ", ".join(f"'{c}'" for c in _OPEN_CODES) + ")"


# --- referrals -----------------------------------------------------------------------------------


async def open_for_need(session: AsyncSession, subject_id: UUID, service: ReferralService) -> Referral | None:
    stmt = select(referral).where(
        referral.c.subject_id == subject_id,
        referral.c.referral_service == service.value,
        referral.c.status.in_(_OPEN_CODES),
    )
    row = (await session.execute(stmt)).first()
    return Referral.from_row(row) if row else None


async def get(session: AsyncSession, referral_id: UUID) -> Referral | None:
    """One referral, unlocked (a change goes through her subject: `Subjects`)."""
    row = (await session.execute(select(referral).where(referral.c.id == referral_id))).first()
    return Referral.from_row(row) if row else None


async def lock_open_for_subject(session: AsyncSession, subject_id: UUID) -> list[Referral]:
    stmt = select(referral).where(referral.c.subject_id == subject_id, referral.c.status.in_(_OPEN_CODES))
    rows = (await session.execute(stmt.order_by(referral.c.id).with_for_update())).all()
    return [Referral.from_row(row) for row in rows]


_OPEN_OF_SUBJECTS = (
    "SELECT referral.* FROM referral WHERE referral.subject_id = ANY(CAST(:subjects AS uuid[]))"
    f" AND referral.{_OPEN_PREDICATE} ORDER BY referral.id"
)
_LOCK_OPEN_OF_SUBJECTS = text(_OPEN_OF_SUBJECTS + " FOR UPDATE").columns(*referral.c)
_READ_OPEN_OF_SUBJECTS = text(_OPEN_OF_SUBJECTS).columns(*referral.c)


async def open_of_subjects(session: AsyncSession, subject_ids: list[UUID], *, lock: bool) -> list[Referral]:
    """The open referrals of many subjects in one statement; with `lock`, locked in id order."""
    statement = _LOCK_OPEN_OF_SUBJECTS if lock else _READ_OPEN_OF_SUBJECTS
    rows = (await session.execute(statement, {"subjects": subject_ids})).all()
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


def _unnest_columns(columns: Sequence[Column[Any]]) -> str:
    dialect = postgresql.dialect()
    return ", ".join(f"CAST(:{c.name} AS {c.type.compile(dialect=dialect)}[])" for c in columns)


_REFERRAL_COLUMNS = [c for c in referral.c if c.name != "updated_at"]
_NAMES = ", ".join(c.name for c in _REFERRAL_COLUMNS)
#: new referrals in one statement; one whose need is open already (another writer's, committed
#: since we loaded the subject) is not inserted, and its id is not returned
_INSERT_REFERRALS = text(
    f"INSERT INTO referral ({_NAMES}, updated_at) SELECT {_NAMES}, now()"
    f" FROM unnest({_unnest_columns(_REFERRAL_COLUMNS)}) WITH ORDINALITY AS u({_NAMES}, n) ORDER BY n"
    # literal, so that PostgreSQL matches it to the partial index's predicate
    f" ON CONFLICT (subject_id, referral_service) WHERE {_OPEN_PREDICATE} DO NOTHING RETURNING id"
)
#: what a transition changes, for many referrals in one statement
_CHANGING = [
    referral.c[n] for n in ("id", "status", "outcome_code", "version", "accepted_at", "closed_at", "closed_by_event_id")
]
_UPDATE_REFERRALS = text(
    "UPDATE referral SET status = u.status, outcome_code = u.outcome_code, version = u.version,"
    " accepted_at = u.accepted_at, closed_at = u.closed_at, closed_by_event_id = u.closed_by_event_id,"
    " updated_at = now()"
    f" FROM unnest({_unnest_columns(_CHANGING)}) AS u({', '.join(c.name for c in _CHANGING)})"
    " WHERE referral.id = u.id"
)


def _arrays(rows: Sequence[Referral], columns: Sequence[Column[Any]]) -> dict[str, list[Any]]:
    values = [r.values() for r in rows]
    return {c.name: [v[c.name] for v in values] for c in columns}


class NeedAlreadyOpen(Exception):
    """A referral this unit opened found its need open as it was written: another writer opened one
    after this unit loaded the subject. The unit must not commit; run again, it sees that one."""

    def __init__(self, referrals: list[Referral]) -> None:
        super().__init__(", ".join(f"{r.subject_id}/{r.referral_service.value}" for r in referrals))
        self.referrals = referrals


def _visible_to(facilities: Collection[str]) -> Any:
    return or_(referral.c.from_facility_id.in_(list(facilities)), referral.c.to_facility_id.in_(list(facilities)))


async def search(
    session: AsyncSession,
    *,
    facilities: Collection[str] | None,
    facility_id: str | None = None,
    receiving_facility_id: str | None = None,
    statuses: Collection[ReferralStatus] | None = None,
    cancelled_in_error: bool | None = None,
    subject_id: UUID | None = None,
    referral_ids: Collection[UUID] | None = None,
    requesters: Collection[str] | None = None,
    receivers: Collection[str] | None = None,
    updated: Sequence[tuple[str, datetime]] = (),
    after: tuple[datetime, UUID] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Referral]:
    """Referrals newest first (then by id, descending: a stable order, on fields that never
    change). `facilities` None = every facility (a national reader); otherwise only referrals from
    or to one of them. `facility_id` narrows to referrals from or to it; `requesters` to those from
    one of them, `receivers` to those one of them fulfils; `updated` are (">=" or "<", instant)
    bounds on the last change; `after` continues after that (requested_at, id)."""
    stmt = select(referral)
    if facilities is not None:
        stmt = stmt.where(_visible_to(facilities))
    if facility_id is not None:
        stmt = stmt.where(_visible_to([facility_id]))
    if receiving_facility_id is not None:
        receivers = (
            [receiving_facility_id] if receivers is None else [f for f in receivers if f == receiving_facility_id]
        )
    if receivers is not None:
        wanted = list(receivers)
        stmt = stmt.where(
            or_(
                referral.c.to_facility_id.in_(wanted),
                and_(referral.c.to_facility_id.is_(None), referral.c.from_facility_id.in_(wanted)),
            )
        )
    if requesters is not None:
        stmt = stmt.where(referral.c.from_facility_id.in_(list(requesters)))
    for op, at in updated:
        stmt = stmt.where(referral.c.updated_at >= at if op == ">=" else referral.c.updated_at < at)
    if after is not None:
        stmt = stmt.where(tuple_(referral.c.requested_at, referral.c.id) < tuple_(*after))
    if statuses is not None:
        stmt = stmt.where(referral.c.status.in_([s.value for s in statuses]))
    if cancelled_in_error is not None:
        in_error = func.coalesce(referral.c.outcome_code, "") == OUTCOME_ENTERED_IN_ERROR
        stmt = stmt.where(
            or_(referral.c.status != ReferralStatus.cancelled.value, in_error if cancelled_in_error else ~in_error)
        )
    if subject_id is not None:
        stmt = stmt.where(referral.c.subject_id == subject_id)
    if referral_ids is not None:
        stmt = stmt.where(referral.c.id.in_(list(referral_ids)))
    stmt = stmt.order_by(referral.c.requested_at.desc(), referral.c.id.desc()).limit(limit).offset(offset)
    return [Referral.from_row(row) for row in (await session.execute(stmt)).all()]


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


async def append_feed(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    """Take positions for `entries` and insert them. The counter row stays locked from here to
    COMMIT, which orders positions by commit: so this is the last write of a unit (`ReferralsUnit.finish`)."""
    if not entries:
        return
    last = (await session.execute(_TAKE_POSITIONS, {"n": len(entries)})).scalar_one()
    first = last - len(entries) + 1
    await insert_rows(session, feed_entry, [{**e, "position": first + i} for i, e in enumerate(entries)])


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


# --- the subjects the platform knows, by facility ---------------------------------------------------

_LEARN_SUBJECTS = text(
    "INSERT INTO known_subject (subject_id, facility_id)"
    " SELECT DISTINCT * FROM unnest(CAST(:subjects AS uuid[]), CAST(:facilities AS text[]))"
    " ON CONFLICT DO NOTHING"
)
_IS_KNOWN = text("SELECT 1 FROM known_subject WHERE subject_id = :subject_id AND facility_id = :facility_id")


async def learn_subjects(session: AsyncSession, seen: Iterable[tuple[UUID, str]]) -> None:
    """(subject, facility) pairs an event was about: the subject is known there from now on."""
    pairs = sorted(set(seen))
    if pairs:
        await session.execute(_LEARN_SUBJECTS, {"subjects": [s for s, _ in pairs], "facilities": [f for _, f in pairs]})


async def is_known(session: AsyncSession, subject_id: UUID, facility_id: str) -> bool:
    return (
        await session.execute(_IS_KNOWN, {"subject_id": subject_id, "facility_id": facility_id})
    ).first() is not None


# --- facts kept for corrections and for any order: ART starts, positive status, delivered infants ---

_INFANTS_OF = text(
    "SELECT infant_id FROM delivered_infant WHERE delivery_event_id = ANY(CAST(:events AS uuid[])) ORDER BY infant_id"
)
_VOID_ART_STARTS = text(
    "DELETE FROM art_start WHERE subject_id = :subject_id AND event_id = ANY(CAST(:events AS uuid[]))"
    " RETURNING event_id"
)
_EARLIEST_ART_START = text(
    "SELECT started_at, event_id FROM art_start WHERE subject_id = :subject_id ORDER BY started_at, event_id LIMIT 1"
)
_POSITIVES_OF = text(
    "SELECT subject_id, event_id, diagnosed_at FROM positive_status WHERE subject_id = ANY(CAST(:subjects AS uuid[]))"
)
_VOID_POSITIVE = text(
    "DELETE FROM positive_status WHERE subject_id = :subject_id AND event_id = ANY(CAST(:events AS uuid[]))"
)
_FIRST_DIAGNOSIS = text(
    "SELECT event_id, diagnosed_at, facility_id, reason_code, correlation_id FROM positive_status"
    " WHERE subject_id = :subject_id ORDER BY diagnosed_at, coalesce(reason_code, ''), event_id LIMIT 1"
)
_KEPT = "ON CONFLICT DO NOTHING"


class PositiveStatus(NamedTuple):
    """A fact of her positive status, as `positive_status` keeps it."""

    event_id: UUID
    diagnosed_at: datetime
    facility_id: str
    #: the ART wait's reason it starts; None: none (she was on ART by it)
    reason_code: str | None
    correlation_id: str | None


class Facts(Repository[UUID, dict[UUID, datetime]]):
    """The facts a unit of work keeps by the CloudEvent that recorded them, for a void of one and for
    facts that arrive in any order: ART starts (`art_start`), facts of a positive HIV status
    (`positive_status`) and the infants of a delivery (`delivered_infant`). What the unit records is
    held here and written as it commits, one statement per table whatever the number of events (one
    per event, each then read back, was most of a batch's statements); a read of a table writes what
    is pending for it first, so it sees what the unit recorded. Its aggregates are each subject's
    standing facts of positive status (CloudEvent id -> when it happened): `get_many` loads those of
    a batch's subjects in one statement (`handlers.preload`)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.art_starts: dict[tuple[UUID, UUID], dict[str, Any]] = {}
        self.positives: list[dict[str, Any]] = []
        #: infant -> the delivery that registered it (the first one: a later delivery leaves it)
        self.delivered: dict[UUID, UUID] = {}

    async def _load(self, keys: list[UUID]) -> dict[UUID, dict[UUID, datetime]]:
        found: dict[UUID, dict[UUID, datetime]] = {k: {} for k in keys}
        for subject_id, event_id, diagnosed_at in (await self.session.execute(_POSITIVES_OF, {"subjects": keys})).all():
            found[subject_id][event_id] = diagnosed_at
        return found

    async def flush(self) -> None:
        await self._write_delivered()
        await self._write_art_starts()
        await self._write_positives()

    async def _write_delivered(self) -> None:
        if self.delivered:
            rows = [{"infant_id": i, "delivery_event_id": d} for i, d in sorted(self.delivered.items())]
            self.delivered = {}
            await insert_rows(self.session, delivered_infant, rows, _KEPT)

    async def _write_art_starts(self) -> None:
        if self.art_starts:
            rows, self.art_starts = list(self.art_starts.values()), {}
            await insert_rows(self.session, art_start, rows, _KEPT)

    async def _write_positives(self) -> None:
        if self.positives:
            rows, self.positives = self.positives, []
            await insert_rows(self.session, positive_status, rows, _KEPT)

    # --- the infants of a delivery (a voided delivery reaches them) ---

    def remember_delivered(self, delivery_event_id: UUID, infant_ids: Iterable[UUID]) -> None:
        """The infants the delivery (its DeliveryRecorded CloudEvent) registered."""
        for infant in sorted(set(infant_ids)):
            self.delivered.setdefault(infant, delivery_event_id)

    async def infants_of(self, event_ids: Iterable[UUID]) -> list[UUID]:
        """The infants registered by the deliveries among `event_ids` (CloudEvent ids)."""
        ids = list(event_ids)
        if not ids:
            return []
        await self._write_delivered()
        return [row[0] for row in (await self.session.execute(_INFANTS_OF, {"events": ids})).all()]

    # --- ART starts (a void of one leaves the others) ---

    def record_art_start(self, subject_id: UUID, event_id: UUID, started_at: datetime) -> None:
        self.art_starts.setdefault(
            (subject_id, event_id), {"subject_id": subject_id, "event_id": event_id, "started_at": started_at}
        )

    async def earliest_art_start(self, subject_id: UUID) -> UUID | None:
        """The CloudEvent of her earliest ART start that stands (None: none recorded one by one)."""
        await self._write_art_starts()
        row = (await self.session.execute(_EARLIEST_ART_START, {"subject_id": subject_id})).first()
        return row[1] if row is not None else None

    async def void_art_starts(
        self, subject_id: UUID, event_ids: Collection[UUID]
    ) -> tuple[bool, tuple[datetime, UUID] | None]:
        """Forget her ART starts recorded by `event_ids`: whether one was, and the earliest that stands
        (when, and its CloudEvent id), if any."""
        await self._write_art_starts()
        params = {"subject_id": subject_id, "events": list(event_ids)}
        removed = (await self.session.execute(_VOID_ART_STARTS, params)).first() is not None
        earliest = (await self.session.execute(_EARLIEST_ART_START, {"subject_id": subject_id})).first()
        return removed, (earliest[0], earliest[1]) if earliest is not None else None

    # --- facts of a positive HIV status (a void of one leaves the others) ---

    async def record_positive_status(
        self,
        subject_id: UUID,
        event_id: UUID,
        diagnosed_at: datetime,
        facility_id: str,
        reason_code: str | None,
        correlation_id: str | None,
    ) -> datetime | None:
        """Keep a fact of her positive status (its CloudEvent id, when it happened, the ART wait's reason
        it starts, if any); returns when the earliest other standing one happened (None: none)."""
        standing = await self.get(subject_id)
        assert standing is not None
        earliest = min((at for e, at in standing.items() if e != event_id), default=None)
        if event_id not in standing:
            standing[event_id] = diagnosed_at
            self.positives.append(
                {
                    "subject_id": subject_id,
                    "event_id": event_id,
                    "diagnosed_at": diagnosed_at,
                    "facility_id": facility_id,
                    "reason_code": reason_code,
                    "correlation_id": correlation_id,
                }
            )
        return earliest

    async def void_positive_status(
        self, subject_id: UUID, event_ids: Collection[UUID]
    ) -> tuple[bool, PositiveStatus | None]:
        """Forget her facts of positive status recorded by `event_ids`: whether her earliest was one of
        them, and her earliest that stands."""
        await self._write_positives()
        for e in event_ids:
            self.seen.get(subject_id, {}).pop(e, None)
        before = (await self.session.execute(_FIRST_DIAGNOSIS, {"subject_id": subject_id})).first()
        await self.session.execute(_VOID_POSITIVE, {"subject_id": subject_id, "events": list(event_ids)})
        after = (await self.session.execute(_FIRST_DIAGNOSIS, {"subject_id": subject_id})).first()
        return before is not None and before[0] in event_ids, PositiveStatus(*after) if after is not None else None


# --- ART-initiation waits --------------------------------------------------------------------------


_ART_WAIT_FIELDS = ArtWait.__slots__
_SCHEDULE_ART_WAITS = text(
    "INSERT INTO art_wait (client_id, facility_id, diagnosed_at, due_at, reason_code, cause_event_id,"
    " correlation_id, ended_at, ended_by_event_id)"
    " SELECT * FROM unnest(CAST(:client_id AS uuid[]), CAST(:facility_id AS text[]),"
    " CAST(:diagnosed_at AS timestamptz[]), CAST(:due_at AS timestamptz[]), CAST(:reason_code AS text[]),"
    " CAST(:cause_event_id AS uuid[]), CAST(:correlation_id AS text[]), CAST(:ended_at AS timestamptz[]),"
    " CAST(:ended_by_event_id AS uuid[]))"
    # keep the earliest diagnosis, whichever arrived first (rules.earlier_diagnosis): a later
    # positive test does not push the referral further out, an earlier one posted later brings it
    # forward; a wait that ended (she died, left, started ART) gives way to a new one
    " ON CONFLICT (client_id) DO UPDATE SET facility_id = excluded.facility_id,"
    " diagnosed_at = excluded.diagnosed_at, due_at = excluded.due_at, reason_code = excluded.reason_code,"
    " cause_event_id = excluded.cause_event_id, correlation_id = excluded.correlation_id,"
    " ended_at = excluded.ended_at, ended_by_event_id = excluded.ended_by_event_id"
    " WHERE art_wait.ended_at IS NOT NULL"
    " OR (excluded.diagnosed_at, excluded.reason_code) < (art_wait.diagnosed_at, art_wait.reason_code)"
)
_DROP_ART_WAITS = text("DELETE FROM art_wait WHERE client_id = ANY(CAST(:clients AS uuid[]))")
_END_ART_WAIT = text(
    "UPDATE art_wait SET ended_at = :at, ended_by_event_id = :by"
    " WHERE client_id = :client_id AND ended_at IS NULL RETURNING client_id"
)
_DROP_ART_WAIT_CAUSED_BY = text(
    "DELETE FROM art_wait WHERE client_id = :client_id AND cause_event_id = ANY(CAST(:events AS uuid[]))"
    " RETURNING ended_at IS NULL"
)
_RESUME_ART_WAIT = text(
    "UPDATE art_wait SET ended_at = NULL, ended_by_event_id = NULL"
    " WHERE client_id = :client_id AND ended_by_event_id = ANY(CAST(:events AS uuid[])) RETURNING client_id"
)


async def end_stored_art_wait(session: AsyncSession, client_id: UUID, at: datetime, by: UUID | None) -> bool:
    """False when there was no running wait (or the timer took it while we waited for its row)."""
    params = {"client_id": client_id, "at": at, "by": by}
    return (await session.execute(_END_ART_WAIT, params)).first() is not None


async def lock_due_art_waits(session: AsyncSession, now: datetime, limit: int) -> list[ArtWait]:
    """Waits that are over; SKIP LOCKED so that replicas share them and an ART start being
    recorded for one of them right now wins."""
    stmt = (
        select(art_wait)
        .where(art_wait.c.due_at <= now, art_wait.c.ended_at.is_(None))
        .order_by(art_wait.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ArtWait(**row._mapping) for row in (await session.execute(stmt)).all()]


# --- subjects --------------------------------------------------------------------------------------


_SUBJECT_FACTS = text(
    "SELECT need.subject_id, s.on_art_since, s.ended, s.enrolled_at, s.ended_at, s.ended_by_event_id,"
    " w.client_id IS NOT NULL AS waiting_for_art"
    " FROM unnest(CAST(:subjects AS uuid[])) AS need(subject_id)"
    " LEFT JOIN subject_state s ON s.subject_id = need.subject_id"
    " LEFT JOIN art_wait w ON w.client_id = need.subject_id AND w.ended_at IS NULL"
).columns(
    subject_state.c.subject_id,
    subject_state.c.on_art_since,
    subject_state.c.ended,
    subject_state.c.enrolled_at,
    subject_state.c.ended_at,
    subject_state.c.ended_by_event_id,
    Column("waiting_for_art", Boolean),
)

_SAVE_SUBJECT_STATES = text(
    "INSERT INTO subject_state"
    " (subject_id, on_art_since, ended, enrolled_at, ended_at, ended_by_event_id, updated_at)"
    " SELECT s.subject_id, s.on_art_since, s.ended, s.enrolled_at, s.ended_at, s.ended_by, now()"
    " FROM unnest(CAST(:subjects AS uuid[]), CAST(:on_art_since AS timestamptz[]), CAST(:ended AS text[]),"
    " CAST(:enrolled_at AS timestamptz[]), CAST(:ended_at AS timestamptz[]), CAST(:ended_by AS uuid[]))"
    " AS s(subject_id, on_art_since, ended, enrolled_at, ended_at, ended_by)"
    " ON CONFLICT (subject_id) DO UPDATE"
    " SET on_art_since = excluded.on_art_since, ended = excluded.ended, enrolled_at = excluded.enrolled_at,"
    " ended_at = excluded.ended_at, ended_by_event_id = excluded.ended_by_event_id, updated_at = excluded.updated_at"
)


class Subjects(Repository[UUID, Subject]):
    """The subjects of a unit of work, by subject id; every subject exists (one nothing is stored
    about has no state, no wait and nothing open).

    `get_many` loads subjects whole and locked, in two statements for all those not seen yet: their
    state and whether an ART wait runs (unlocked: a subject's state and the start of her wait change
    only through her own partition's events; the timer may still end a wait, see `end_art_wait`),
    and every open referral of theirs, locked in id order until the unit ends (so their events reach
    the outbox in the order of their changes). A consumer batch loads all its subjects up front
    (`handlers.preload`); its handlers then find them here. `peek_many` (the ART timer) loads them
    unlocked, `hold` (the expiry timer) wraps referrals locked elsewhere. `flush` writes what the
    unit changed, a few statements per unit, whatever the number of events."""

    async def _load(self, keys: list[UUID]) -> dict[UUID, Subject]:
        return await self._read(keys, lock=True)

    async def _read(self, keys: list[UUID], *, lock: bool) -> dict[UUID, Subject]:
        facts = (await self.session.execute(_SUBJECT_FACTS, {"subjects": keys})).all()
        open_by_subject: dict[UUID, list[Referral]] = {k: [] for k in keys}
        for r in await open_of_subjects(self.session, keys, lock=lock):
            open_by_subject[r.subject_id].append(r)
        return {
            row.subject_id: Subject.loaded(
                row.subject_id,
                row.on_art_since,
                row.ended,
                row.waiting_for_art,
                open_by_subject[row.subject_id],
                enrolled_at=row.enrolled_at,
                ended_at=row.ended_at,
                ended_by=row.ended_by_event_id,
                locked=lock,
            )
            for row in facts
        }

    async def of(self, subject_id: UUID) -> Subject:
        found = await self.get(subject_id)
        assert found is not None
        return found

    async def peek_many(self, keys: Iterable[UUID]) -> dict[UUID, Subject]:
        """Subjects whole but unlocked: enough to open referrals (the insert is the arbiter of a
        need open twice), not to change one. For the ART timer, which holds the subjects' waits and
        must not wait for their referrals' locks (a consumer holding those may be waiting for a wait)."""
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in self.seen]
        if missing:
            for key, subject in (await self._read(missing, lock=False)).items():
                self.remember(key, subject)
        return {k: self.seen[k] for k in wanted}

    def hold(self, referrals: Iterable[Referral]) -> list[Subject]:
        """Subjects holding only `referrals`, which the caller locked (the expiry timer: SKIP LOCKED)."""
        held: dict[UUID, Subject] = {}
        for r in referrals:
            subject = self.seen.get(r.subject_id)
            if subject is None:
                subject = self.add(r.subject_id, Subject(r.subject_id, whole=False))
            subject.adopt([r])
            held[r.subject_id] = subject
        return list(held.values())

    async def closed_of(self, subject: Subject, service: ReferralService, reason_code: str) -> list[Referral]:
        """Her automatic expired referrals for a need (service and reason), locked (after her open
        ones: the lock order), held by her for a change: what a withdrawal may still take back."""
        stmt = (
            select(referral)
            .where(
                referral.c.subject_id == subject.subject_id,
                referral.c.referral_service == service.value,
                referral.c.reason_code == reason_code,
                referral.c.origin == ReferralOrigin.automatic.value,
                referral.c.status == ReferralStatus.expired.value,
            )
            .order_by(referral.c.id)
            .with_for_update()
        )
        rows = (await self.session.execute(stmt)).all()
        return subject.adopt_closed(Referral.from_row(row) for row in rows)

    async def touched_by(self, subject: Subject, event_ids: Collection[UUID]) -> list[Referral]:
        """Her closed referrals that one of `event_ids` (CloudEvent ids) opened or closed, locked
        (after her open ones: the lock order) and held by her for a change: what a void takes back."""
        ids = list(event_ids)
        stmt = (
            select(referral)
            .where(
                referral.c.subject_id == subject.subject_id,
                referral.c.status.not_in(_OPEN_CODES),
                or_(referral.c.cause_event_id.in_(ids), referral.c.closed_by_event_id.in_(ids)),
            )
            .order_by(referral.c.id)
            .with_for_update()
        )
        rows = (await self.session.execute(stmt)).all()
        return subject.adopt_closed(Referral.from_row(row) for row in rows)

    async def end_art_wait_caused_by(self, subject: Subject, event_ids: Collection[UUID]) -> None:
        """Her ART-initiation wait, if one of `event_ids` (a diagnosis now voided) started it, is gone,
        running or ended: nothing opens for it, now or after a later void. When the timer took it
        meanwhile, the referral it opened is held by her from now on (the void cancels it)."""
        ids = set(event_ids)
        if subject.new_wait is not None and subject.new_wait.cause_event_id in ids:
            subject.new_wait = None
        params = {"client_id": subject.subject_id, "events": list(ids)}
        dropped = (await self.session.execute(_DROP_ART_WAIT_CAUSED_BY, params)).first()
        if dropped is not None and dropped[0]:
            subject.waiting_for_art = False
        elif subject.waiting_for_art and dropped is None:
            # another diagnosis's wait (it stays), or the timer took this one and opened a referral
            # since she was loaded (committed: the delete waited for its lock)
            subject.adopt(await lock_open_for_subject(self.session, subject.subject_id))

    async def resume_art_wait(self, subject: Subject, event_ids: Collection[UUID]) -> None:
        """Her ART-initiation wait that one of `event_ids` (an ART start, a death now voided) had
        ended runs again, from its diagnosis: the timer opens her referral when it is over (at
        once, if it is over already)."""
        ids = set(event_ids)
        if subject.new_wait is not None and subject.new_wait.ended_by_event_id in ids:
            subject.new_wait = replace(subject.new_wait, ended_at=None, ended_by_event_id=None)
        params = {"client_id": subject.subject_id, "events": list(ids)}
        if (await self.session.execute(_RESUME_ART_WAIT, params)).first() is not None:
            subject.waiting_for_art = True

    async def end_art_wait(self, subject: Subject, at: datetime, by: UUID | None) -> None:
        """She needs no ART-initiation wait any more (`by` the event that says so, at `at`). A stored
        one is ended at once (not at commit): the timer must find it locked, or ended, from now on.
        It is kept, ended, for a void of `by`; a wait this unit started is written ended."""
        if subject.new_wait is not None and subject.new_wait.ended_at is None:
            subject.new_wait = replace(subject.new_wait, ended_at=at, ended_by_event_id=by)
        if not subject.waiting_for_art:
            return  # only her own events start a wait, and none did since she was loaded
        subject.waiting_for_art = False
        if not await end_stored_art_wait(self.session, subject.subject_id, at, by):
            # The timer took the wait after she was loaded, and opened an ART referral that her
            # loaded open referrals lack (it has committed: the update waited for its lock).
            subject.adopt(await lock_open_for_subject(self.session, subject.subject_id))

    async def flush(self) -> None:
        """Write what the unit changed: referrals moved on, then new ones (a need closed and opened
        again in one unit: the old row must close first), their history, subjects' states, new and
        ended ART waits. NeedAlreadyOpen when a new open referral's need was opened by another writer
        meanwhile (a referral opened and closed within the unit is not checked so)."""
        subjects = list(self.seen.values())
        moved: list[Referral] = []
        new: list[Referral] = []
        for s in subjects:
            for r in s.changed.values():
                (moved if r.id in s.stored_ids else new).append(r)
        if moved:
            await self.session.execute(_UPDATE_REFERRALS, _arrays(moved, _CHANGING))
        if new:
            inserted = {
                row[0] for row in await self.session.execute(_INSERT_REFERRALS, _arrays(new, _REFERRAL_COLUMNS))
            }
            lost = [r for r in new if r.id not in inserted]
            if lost:
                raise NeedAlreadyOpen(lost)
        history = [
            {
                "referral_id": h.referral.id,
                "version": h.referral.version,
                "action": h.action,
                "status": h.referral.status.value,
                "at": h.at,
                "outcome_code": h.referral.outcome_code,
                "note": h.note,
                "actor": h.actor,
            }
            for s in subjects
            for h in s.history
        ]
        await insert_rows(self.session, referral_action, history)
        states = [s for s in subjects if s.state_changed]
        if states:
            await self.session.execute(
                _SAVE_SUBJECT_STATES,
                {
                    "subjects": [s.subject_id for s in states],
                    "on_art_since": [s.on_art_since for s in states],
                    "ended": [s.ended for s in states],
                    "enrolled_at": [s.enrolled_at for s in states],
                    "ended_at": [s.ended_at for s in states],
                    "ended_by": [s.ended_by for s in states],
                },
            )
        waits = [s.new_wait for s in subjects if s.new_wait is not None]
        if waits:
            await self.session.execute(
                _SCHEDULE_ART_WAITS, {name: [getattr(w, name) for w in waits] for name in _ART_WAIT_FIELDS}
            )
        over = [s.subject_id for s in subjects if s.wait_over]
        if over:
            await self.session.execute(_DROP_ART_WAITS, {"clients": over})


class ReferralsUnit(UnitOfWork):
    """The referrals service's unit of work: the subjects it holds, and the ministry feed, whose
    positions are taken last (`finish`: see feed.py)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.subjects = self.track(Subjects(session))
        self.facts = self.track(Facts(session))

    async def finish(self, envelopes: list[tuple[CloudEvent, Event]]) -> None:
        await append_feed(
            self.session,
            [
                {
                    "event_id": ce.id,
                    "event_type": ce.type,
                    "event_time": ce.time,
                    "referral_id": e.referral_id,
                    "version": e.version,
                    "from_facility_id": e.facility_id,
                    "to_facility_id": e.to_facility_id,
                    "data": ce.data,
                }
                for ce, e in envelopes
                if isinstance(e, ReferralEvent)
            ],
        )
