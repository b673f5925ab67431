"""All SQL of the followup service: load and save the cases under their row locks, the EMR event
record, the timer scan and the reads.

Lock order, everywhere: a mother before her infants, and several rows of one table in id order.
Handlers, the POST path and the timers all follow it, so they cannot deadlock one another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.enrolment import HivStatus
from pmtct_events.followup import FinalOutcome, HighRiskReason, InfantTest, ProphylaxisPlan, ScheduleKind

from .cases import InfantCase, MotherCase, RecordedEvent, with_events
from .eid_schedule import InfantFacts
from .models import infant_events, infants, mothers, schedule_items
from .schedule import Attendance, Item, Status

# --- mothers -------------------------------------------------------------------------------------


async def lock_mother(session: AsyncSession, client_id: UUID, facility_id: str) -> MotherCase:
    """The mother's case, created on first sight, locked for the rest of the transaction."""
    await session.execute(insert(mothers).values(client_id=client_id, facility_id=facility_id).on_conflict_do_nothing())
    row = (await session.execute(select(mothers).where(mothers.c.client_id == client_id).with_for_update())).one()
    items = await load_items(session, [client_id])
    return _mother(row._mapping, items.get(client_id, []))


async def lock_mothers(session: AsyncSession, client_ids: Iterable[UUID]) -> dict[UUID, MotherCase]:
    ids = sorted(set(client_ids))
    if not ids:
        return {}
    rows = (
        await session.execute(
            select(mothers).where(mothers.c.client_id.in_(ids)).order_by(mothers.c.client_id).with_for_update()
        )
    ).all()
    items = await load_items(session, ids)
    return {r.client_id: _mother(r._mapping, items.get(r.client_id, [])) for r in rows}


def _mother(row: Any, items: list[Item]) -> MotherCase:
    return MotherCase(
        client_id=row["client_id"],
        facility_id=row["facility_id"],
        hiv_status=HivStatus(row["hiv_status"]),
        positive_since=row["positive_since"],
        art_start_date=row["art_start_date"],
        edd=row["edd"],
        delivered_on=row["delivered_on"],
        breastfeeding_until=row["breastfeeding_until"],
        viral_loads=[(date.fromisoformat(v["on"]), v["copies"]) for v in row["viral_loads"]],
        died_on=row["died_on"],
        transferred_out_on=row["transferred_out_on"],
        items=items,
        attendance=_attendance(row),
    )


async def save_mother(
    session: AsyncSession, case: MotherCase, next_timer_on: date | None, settle_s: float | None
) -> None:
    """`settle_s` is set when an input changed the case (timers then wait); None from the timers."""
    values: dict[str, Any] = {
        "facility_id": case.facility_id,
        "hiv_status": case.hiv_status.value,
        "positive_since": case.positive_since,
        "art_start_date": case.art_start_date,
        "edd": case.edd,
        "delivered_on": case.delivered_on,
        "breastfeeding_until": case.breastfeeding_until,
        "viral_loads": [{"on": on.isoformat(), "copies": copies} for on, copies in sorted(case.viral_loads)],
        "died_on": case.died_on,
        "transferred_out_on": case.transferred_out_on,
        **_attendance_values(case.attendance, next_timer_on, settle_s),
    }
    await session.execute(mothers.update().where(mothers.c.client_id == case.client_id).values(**values))
    await save_items(session, "client", case.client_id, case.client_id, case.facility_id, case.items)


# --- infants -------------------------------------------------------------------------------------


async def add_infants(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """New live-born infants (not in follow-up yet); a redelivered delivery adds nothing."""
    if rows:
        await session.execute(insert(infants).values(list(rows)).on_conflict_do_nothing())


async def infant_ids_of(session: AsyncSession, client_id: UUID) -> list[UUID]:
    rows = await session.execute(select(infants.c.infant_id).where(infants.c.client_id == client_id))
    return [r.infant_id for r in rows]


@dataclass(frozen=True, slots=True)
class InfantKey:
    infant_id: UUID
    client_id: UUID
    ref_hash: str | None


async def resolve_infants(
    session: AsyncSession, infant_ids: Iterable[UUID], ref_hashes: Iterable[str]
) -> tuple[dict[UUID, InfantKey], dict[str, InfantKey]]:
    """Infants named by id or by the keyed hash of their EMR reference."""
    ids, hashes = list(set(infant_ids)), list(set(ref_hashes))
    if not ids and not hashes:
        return {}, {}
    rows = await session.execute(
        select(infants.c.infant_id, infants.c.client_id, infants.c.ref_hash).where(
            infants.c.infant_id.in_(ids) | infants.c.ref_hash.in_(hashes)
        )
    )
    keys = [InfantKey(r.infant_id, r.client_id, r.ref_hash) for r in rows]
    return {k.infant_id: k for k in keys}, {k.ref_hash: k for k in keys if k.ref_hash}


async def lock_infants(session: AsyncSession, infant_ids: Iterable[UUID], tz: str) -> dict[UUID, InfantCase]:
    """Infant cases with their history and items, locked in id order."""
    ids = sorted(set(infant_ids))
    if not ids:
        return {}
    rows = (
        await session.execute(
            select(infants).where(infants.c.infant_id.in_(ids)).order_by(infants.c.infant_id).with_for_update()
        )
    ).all()
    history = await _histories(session, ids, tz)
    items = await load_items(session, ids)
    return {r.infant_id: _infant(r._mapping, history.get(r.infant_id, []), items.get(r.infant_id, [])) for r in rows}


async def _histories(session: AsyncSession, ids: list[UUID], tz: str) -> dict[UUID, list[RecordedEvent]]:
    rows = await session.execute(
        text(
            "SELECT infant_id, type, data, (occurred_at AT TIME ZONE :tz)::date AS occurred_on,"
            " (received_at AT TIME ZONE :tz)::date AS reported_on FROM infant_events"
            " WHERE infant_id = ANY(:ids) ORDER BY occurred_at, received_at, event_id"
        ),
        {"ids": ids, "tz": tz},
    )
    out: dict[UUID, list[RecordedEvent]] = {}
    for r in rows:
        out.setdefault(r.infant_id, []).append(RecordedEvent(r.type, r.occurred_on, r.reported_on, r.data))
    return out


def _infant(row: Any, history: list[RecordedEvent], items: list[Item]) -> InfantCase:
    facts = InfantFacts(
        birth_date=row["birth_date"],
        high_risk=row["high_risk"],
        follow_up_from=row["follow_up_from"] or row["birth_date"],
        mother_died_on=row["mother_died_on"],
    )
    case = InfantCase(
        infant_id=row["infant_id"],
        client_id=row["client_id"],
        facility_id=row["facility_id"],
        facts=facts,
        in_follow_up=row["in_follow_up"],
        high_risk_reasons=[HighRiskReason(r) for r in row["high_risk_reasons"]],
        prophylaxis=[ProphylaxisPlan.model_validate(p) for p in row["prophylaxis"]],
        items=items,
        attendance=_attendance(row),
        final_outcome=FinalOutcome(row["final_outcome"]) if row["final_outcome"] else None,
        final_outcome_on=row["final_outcome_on"],
    )
    if history:
        case.events = list(history)
        case.facts = with_events(case.facts, history)
    return case


async def save_infant(
    session: AsyncSession, case: InfantCase, next_timer_on: date | None, settle_s: float | None
) -> None:
    plan = case.plan
    values: dict[str, Any] = {
        "in_follow_up": case.in_follow_up,
        "follow_up_from": case.facts.follow_up_from if case.in_follow_up else None,
        "high_risk": case.facts.high_risk,
        "high_risk_reasons": [r.value for r in case.high_risk_reasons],
        "prophylaxis": [p.model_dump(mode="json") for p in case.prophylaxis],
        "mother_died_on": case.facts.mother_died_on,
        "died_on": case.facts.died_on,
        "transferred_out_on": case.facts.transferred_out_on,
        "art_started_on": case.facts.art_started_on,
        "breastfeeding_stopped_on": plan.breastfeeding_stopped_on if plan else None,
        "art_needed": bool(plan and plan.art_needed),
        "final_outcome": case.final_outcome.value if case.final_outcome else None,
        "final_outcome_on": case.final_outcome_on,
        **_attendance_values(case.attendance, next_timer_on, settle_s),
    }
    await session.execute(infants.update().where(infants.c.infant_id == case.infant_id).values(**values))
    await save_items(session, "infant", case.infant_id, case.client_id, case.facility_id, case.items)


# --- schedule items ------------------------------------------------------------------------------


async def load_items(session: AsyncSession, subject_ids: Sequence[UUID]) -> dict[UUID, list[Item]]:
    rows = await session.execute(
        select(schedule_items)
        .where(schedule_items.c.subject_id.in_(list(subject_ids)))
        .order_by(schedule_items.c.window_start, schedule_items.c.kind)
    )
    out: dict[UUID, list[Item]] = {}
    for r in rows:
        out.setdefault(r.subject_id, []).append(
            Item(
                item_id=r.item_id,
                kind=ScheduleKind(r.kind),
                test=InfantTest(r.test) if r.test else None,
                window_start=r.window_start,
                window_end=r.window_end,
                overdue_on=r.overdue_on,
                status=Status(r.status),
                satisfied_on=r.satisfied_on,
                cancel_reason=r.cancel_reason,
            )
        )
    return out


async def save_items(
    session: AsyncSession, subject_type: str, subject_id: UUID, client_id: UUID, facility_id: str, items: list[Item]
) -> None:
    """Write the items that changed. The announcement stamps record when a due or overdue
    transition was committed (with its event, in this same transaction)."""
    changed = [i for i in items if i.changed]
    if not changed:
        return
    rows = [
        {
            "item_id": i.item_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "client_id": client_id,
            "facility_id": facility_id,
            "kind": i.kind.value,
            "test": i.test.value if i.test else None,
            "window_start": i.window_start,
            "window_end": i.window_end,
            "overdue_on": i.overdue_on,
            "status": i.status.value,
            "satisfied_on": i.satisfied_on,
            "cancel_reason": i.cancel_reason,
        }
        for i in changed
    ]
    stmt = insert(schedule_items).values(rows)
    now = func.now()
    stmt = stmt.on_conflict_do_update(
        index_elements=[schedule_items.c.item_id],
        set_={
            "facility_id": stmt.excluded.facility_id,
            "window_end": stmt.excluded.window_end,
            "overdue_on": stmt.excluded.overdue_on,
            "status": stmt.excluded.status,
            "satisfied_on": stmt.excluded.satisfied_on,
            "cancel_reason": stmt.excluded.cancel_reason,
            "due_announced_at": func.coalesce(
                schedule_items.c.due_announced_at,
                text("CASE WHEN excluded.status IN ('due', 'overdue') THEN now() END"),
            ),
            "overdue_announced_at": func.coalesce(
                schedule_items.c.overdue_announced_at,
                text("CASE WHEN excluded.status = 'overdue' THEN now() END"),
            ),
            "updated_at": now,
        },
    )
    await session.execute(stmt)
    for i in changed:
        i.changed = False


# --- attendance and timers -----------------------------------------------------------------------


def _attendance(row: Any) -> Attendance:
    return Attendance(row["last_seen_on"], row["lost_since"], row["lost_last_seen_on"])


def _attendance_values(a: Attendance, next_timer_on: date | None, settle_s: float | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "last_seen_on": a.last_seen_on,
        "lost_since": a.lost_since,
        "lost_last_seen_on": a.lost_last_seen_on,
        "next_timer_on": next_timer_on,
        "updated_at": func.now(),
    }
    if settle_s is not None:
        values["settle_until"] = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, settle_s)
    return values


async def claim_due_infants(
    session: AsyncSession, today: date, limit: int, only: Sequence[UUID] | None = None
) -> list[UUID]:
    """Infants with timer work due by `today` whose last input has settled, locked; rows another
    replica holds are skipped (`SKIP LOCKED`), so replicas share the work without waiting."""
    return await _claim(session, "infants", "infant_id", today, limit, only)


async def claim_due_mothers(
    session: AsyncSession, today: date, limit: int, only: Sequence[UUID] | None = None
) -> list[UUID]:
    return await _claim(session, "mothers", "client_id", today, limit, only)


async def _claim(
    session: AsyncSession, table: str, key: str, today: date, limit: int, only: Sequence[UUID] | None
) -> list[UUID]:
    params: dict[str, Any] = {"today": today, "limit": limit}
    restrict = ""
    if only is not None:
        restrict, params["only"] = f" AND {key} = ANY(:only)", list(only)
    rows = await session.execute(
        text(
            f"SELECT {key} FROM {table} WHERE next_timer_on <= :today AND settle_until <= now(){restrict}"
            f" ORDER BY next_timer_on, {key} LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        params,
    )
    return [r[0] for r in rows]


# --- EMR infant events ---------------------------------------------------------------------------


async def known_events(session: AsyncSession, event_ids: Iterable[UUID]) -> dict[UUID, tuple[str, UUID]]:
    """Already accepted events: event_id -> (content hash, infant_id)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(infant_events.c.event_id, infant_events.c.content_hash, infant_events.c.infant_id).where(
            infant_events.c.event_id.in_(ids)
        )
    )
    return {r.event_id: (r.content_hash, r.infant_id) for r in rows}


async def add_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(infant_events).values(list(rows)))


# --- reads ---------------------------------------------------------------------------------------


async def infant_record(session: AsyncSession, infant_id: UUID) -> tuple[Any, list[Any], list[Any]] | None:
    """The infant row, its items and its accepted events, for GET /v1/infants/{id}."""
    row = (await session.execute(select(infants).where(infants.c.infant_id == infant_id))).first()
    if row is None:
        return None
    items = (
        await session.execute(
            select(schedule_items)
            .where(schedule_items.c.subject_id == infant_id)
            .order_by(schedule_items.c.window_start, schedule_items.c.kind)
        )
    ).all()
    events = (
        await session.execute(
            select(infant_events)
            .where(infant_events.c.infant_id == infant_id)
            .order_by(infant_events.c.occurred_at, infant_events.c.received_at)
        )
    ).all()
    return row, items, events


WORKLIST_SQL = text(
    """
    SELECT item_id, subject_type, subject_id, client_id, kind, test, window_start, window_end, overdue_on, status
    FROM schedule_items
    WHERE facility_id = :facility_id
      AND status IN ('planned', 'due', 'overdue')
      AND window_start <= :as_of
    ORDER BY overdue_on <= :as_of DESC,
             kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test') DESC,
             overdue_on,
             window_end,
             item_id
    LIMIT :limit
    """
)


async def worklist(session: AsyncSession, facility_id: str, as_of: date, limit: int) -> list[Any]:
    """A facility's open items whose window has opened by `as_of`, most urgent first: overdue
    before due; within each, the "at once" actions (ART start, confirmatory and repeat tests),
    then the longest overdue / the soonest closing window. One range scan of the partial index
    `schedule_items_worklist`; callable directly by the benchmark."""
    rows = await session.execute(WORKLIST_SQL, {"facility_id": facility_id, "as_of": as_of, "limit": limit})
    return list(rows)
