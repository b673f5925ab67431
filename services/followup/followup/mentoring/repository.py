"""All SQL of the Mentor Mothers' work: staff, caseloads, her worklist, the posted records, tracing
counts and index contacts. Plain functions on the unit of work's session, like the rest of
follow-up's set-based SQL; what they change is committed by the caller's unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.staff import StaffMember, StaffRole
from servicekit.uow import Repository

from ..models import SHOWN_ITEM_COLUMNS as _SHOWN
from ..models import URGENT_ITEMS as _URGENT
from ..models import infants, mothers, schedule_items
from .models import caseload, index_contacts, mentoring_records, staff, tracing

# --- staff ---------------------------------------------------------------------------------------


def _member(row: Any) -> StaffMember:
    return StaffMember(row.staff_id, StaffRole(row.role), row.facility_id, row.active)


async def staff_members(session: AsyncSession, facility_id: str | None = None) -> list[StaffMember]:
    query = select(staff).order_by(staff.c.facility_id, staff.c.staff_id)
    if facility_id is not None:
        query = query.where(staff.c.facility_id == facility_id)
    return [_member(r) for r in (await session.execute(query)).all()]


async def staff_member(session: AsyncSession, staff_id: str, lock: bool = False) -> StaffMember | None:
    query = select(staff).where(staff.c.staff_id == staff_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _member(row) if row else None


async def add_unknown_staff(session: AsyncSession, members: Sequence[StaffMember]) -> list[StaffMember]:
    """The registry's members not in the table yet, inserted; the ones inserted."""
    if not members:
        return []
    statement = (
        insert(staff)
        .values(
            [
                {"staff_id": m.staff_id, "role": m.role.value, "facility_id": m.facility_id, "active": m.active}
                for m in members
            ]
        )
        .on_conflict_do_nothing(index_elements=["staff_id"])
        .returning(staff)
    )
    return [_member(r) for r in (await session.execute(statement)).all()]


async def save_staff(session: AsyncSession, m: StaffMember) -> None:
    values = {"role": m.role.value, "facility_id": m.facility_id, "active": m.active}
    statement = insert(staff).values(staff_id=m.staff_id, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["staff_id"], set_={**values, "updated_at": func.now()})
    )


# --- caseloads -----------------------------------------------------------------------------------

_LOCK_FACILITY = text("SELECT pg_advisory_xact_lock(hashtext('pmtct.caseload'), hashtext(:facility_id))")


async def lock_facility_caseloads(session: AsyncSession, facility_id: str) -> None:
    """Serialise caseload changes at a facility (two replicas choosing a least-loaded Mentor
    Mother at once would both choose her); held until the unit commits."""
    await session.execute(_LOCK_FACILITY, {"facility_id": facility_id})


_LOADS = text(
    "SELECT s.staff_id, count(c.client_id) AS clients FROM staff s"
    " LEFT JOIN caseload c ON c.staff_id = s.staff_id"
    " WHERE s.facility_id = :facility_id AND s.active AND s.role = 'mentor_mother'"
    " GROUP BY s.staff_id"
)


async def mentor_loads(session: AsyncSession, facility_id: str) -> dict[str, int]:
    """Every active Mentor Mother of the facility and how many mothers her caseload holds."""
    rows = await session.execute(_LOADS, {"facility_id": facility_id})
    return {r.staff_id: r.clients for r in rows}


async def assignments(session: AsyncSession, client_ids: Iterable[UUID]) -> dict[UUID, Any]:
    ids = sorted(set(client_ids))
    if not ids:
        return {}
    rows = await session.execute(select(caseload).where(caseload.c.client_id.in_(ids)))
    return {r.client_id: r for r in rows}


async def set_assignment(
    session: AsyncSession,
    client_id: UUID,
    facility_id: str,
    staff_id: str | None,
    reason: str,
    at: datetime,
    moved_from: tuple[str | None, str | None],
) -> None:
    values = {
        "facility_id": facility_id,
        "staff_id": staff_id,
        "reason": reason,
        "assigned_at": at,
        "moved_from_facility_id": moved_from[0],
        "moved_from_staff_id": moved_from[1],
    }
    statement = insert(caseload).values(client_id=client_id, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["client_id"], set_=values))


@dataclass(frozen=True)
class Assignment:
    """Whose caseload a mother is in, at which facility (`staff_id` None: nobody's); and the
    Mentor Mother's caseload at another facility she enrolled here from, her transfer out from
    it not known yet (`moved_from_*`, None when there is none)."""

    facility_id: str
    staff_id: str | None
    moved_from_facility_id: str | None = None
    moved_from_staff_id: str | None = None


class Caseloads(Repository[UUID, "Assignment | None"]):
    """The caseload assignments a unit of work reads and changes, remembered: a consumer batch's
    mothers are read in one statement (`stream.preload`), a mother with none is remembered as None,
    and each facility's Mentor Mothers' loads are read once per unit under the facility's lock and
    then kept up to date as the unit assigns. Assignments are written as they are made (the
    coordinator's answer and `clients_of` read the table)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self._loads: dict[str, dict[str, int]] = {}

    async def _load(self, keys: list[UUID]) -> dict[UUID, Assignment | None]:
        rows = await assignments(self.session, keys)
        return {
            k: Assignment(
                rows[k].facility_id, rows[k].staff_id, rows[k].moved_from_facility_id, rows[k].moved_from_staff_id
            )
            if k in rows
            else None
            for k in keys
        }

    async def loads(self, facility_id: str) -> dict[str, int]:
        """Every active Mentor Mother of the facility and her caseload's size, taking the
        facility's caseload lock the first time in this unit (a copy: the caller may change it)."""
        if facility_id not in self._loads:
            await lock_facility_caseloads(self.session, facility_id)
            self._loads[facility_id] = await mentor_loads(self.session, facility_id)
        return dict(self._loads[facility_id])

    async def set(
        self,
        client_id: UUID,
        facility_id: str,
        staff_id: str | None,
        reason: str,
        at: datetime,
        moved_from: tuple[str | None, str | None] | None = None,
    ) -> Assignment | None:
        """Put her in `staff_id`'s caseload at `facility_id`; the assignment she had. `moved_from`:
        the caseload elsewhere she left unannounced ((None, None): none any more); None keeps it."""
        before = (await self.get_many([client_id])).get(client_id)
        if moved_from is None:
            moved_from = (before.moved_from_facility_id, before.moved_from_staff_id) if before else (None, None)
        await set_assignment(self.session, client_id, facility_id, staff_id, reason, at, moved_from)
        for loads in self._loads.values():
            if before is not None and before.staff_id in loads:
                loads[before.staff_id] -= 1
        if staff_id is not None and staff_id in self._loads.get(facility_id, {}):
            self._loads[facility_id][staff_id] += 1
        self.remember(client_id, Assignment(facility_id, staff_id, *moved_from))
        return before

    async def left_announced(self, client_id: UUID) -> None:
        """Her leaving the caseload she moved from is announced: nothing is pending any more."""
        current = await self.get(client_id)
        assert current is not None
        await self.session.execute(
            caseload.update()
            .where(caseload.c.client_id == client_id)
            .values(moved_from_facility_id=None, moved_from_staff_id=None)
        )
        self.remember(client_id, Assignment(current.facility_id, current.staff_id))


async def clients_of(session: AsyncSession, staff_id: str) -> list[UUID]:
    rows = await session.execute(
        select(caseload.c.client_id).where(caseload.c.staff_id == staff_id).order_by(caseload.c.client_id)
    )
    return list(rows.scalars())


async def caseload_rows(session: AsyncSession, staff_id: str) -> list[Any]:
    rows = await session.execute(
        select(caseload, mothers.c.lost_since, mothers.c.died_on, mothers.c.transferred_out_on)
        .join(mothers, mothers.c.client_id == caseload.c.client_id, isouter=True)
        .where(caseload.c.staff_id == staff_id)
        .order_by(caseload.c.assigned_at, caseload.c.client_id)
    )
    return list(rows)


async def mother_facility(session: AsyncSession, client_id: UUID) -> str | None:
    row = (await session.execute(select(mothers.c.facility_id).where(mothers.c.client_id == client_id))).first()
    return row.facility_id if row else None


async def mothers_facilities(session: AsyncSession, client_ids: Iterable[UUID]) -> dict[UUID, str]:
    ids = sorted(set(client_ids))
    if not ids:
        return {}
    rows = await session.execute(select(mothers.c.client_id, mothers.c.facility_id).where(mothers.c.client_id.in_(ids)))
    return {r.client_id: r.facility_id for r in rows}


# --- her worklist --------------------------------------------------------------------------------

#: her clients' open items in the facility worklist's columns and order (repository.WORKLIST_SQL)
_CASELOAD_ITEMS = text(
    f"""
    SELECT {_SHOWN} FROM schedule_items
    WHERE client_id = ANY(CAST(:client_ids AS uuid[])) AND status IN ('planned', 'due', 'overdue')
      AND window_start <= :as_of
    ORDER BY overdue_on <= :as_of DESC, {_URGENT} DESC, overdue_on, window_end, item_id
    LIMIT :limit
    """
)


async def items_of_clients(session: AsyncSession, client_ids: Sequence[UUID], as_of: date, limit: int) -> list[Any]:
    """Her clients' (and their infants') open items whose window has opened by `as_of`, most
    urgent first, in the order of the facility worklist (`repository.worklist`): overdue before due,
    the at-once actions first, then the longest overdue / the soonest closing window."""
    if not client_ids:
        return []
    rows = await session.execute(_CASELOAD_ITEMS, {"client_ids": list(client_ids), "as_of": as_of, "limit": limit})
    return list(rows)


async def next_items(session: AsyncSession, client_ids: Sequence[UUID], as_of: date) -> list[Any]:
    """Each client's next planned item whose window opens after `as_of`: her next contact."""
    if not client_ids:
        return []
    s = schedule_items.c
    rows = await session.execute(
        select(s.client_id, s.subject_type, s.subject_id, s.kind, s.label, s.test, s.window_start, s.window_end)
        .distinct(s.client_id)
        .where(s.client_id.in_(list(client_ids)), s.status == "planned", s.window_start > as_of)
        .order_by(s.client_id, s.window_start, s.item_id)
    )
    return sorted(rows, key=lambda r: (r.window_start, r.client_id))


_LOST = text(
    """
    SELECT 'client' AS subject_type, m.client_id AS subject_id, m.client_id, m.facility_id, m.lost_since,
           m.lost_last_seen_on AS last_seen_on, t.attempts, t.failed_attempts, t.confirmed_lost_on
    FROM mothers m LEFT JOIN tracing t ON t.subject_id = m.client_id
    WHERE m.lost_since IS NOT NULL AND m.died_on IS NULL AND m.transferred_out_on IS NULL
      AND (CAST(:facility_id AS text) IS NULL OR m.facility_id = :facility_id)
      AND (CAST(:client_ids AS uuid[]) IS NULL OR m.client_id = ANY(CAST(:client_ids AS uuid[])))
    UNION ALL
    SELECT 'infant', i.infant_id, i.client_id, i.facility_id, i.lost_since,
           i.lost_last_seen_on, t.attempts, t.failed_attempts, t.confirmed_lost_on
    FROM infants i LEFT JOIN tracing t ON t.subject_id = i.infant_id
    WHERE i.lost_since IS NOT NULL AND i.in_follow_up AND i.final_outcome IS NULL
      AND (CAST(:facility_id AS text) IS NULL OR i.facility_id = :facility_id)
      AND (CAST(:client_ids AS uuid[]) IS NULL OR i.client_id = ANY(CAST(:client_ids AS uuid[])))
    ORDER BY lost_since, subject_id
    LIMIT :limit
    """
)


async def lost_subjects(
    session: AsyncSession, *, facility_id: str | None = None, client_ids: Sequence[UUID] | None = None, limit: int
) -> list[Any]:
    """Mothers and infants in a lost-to-follow-up episode (longest lost first), of a facility
    (a CMM's tracing list) or of some clients (a Mentor Mother's caseload); not the confirmed lost."""
    rows = await session.execute(
        _LOST,
        {
            "facility_id": facility_id,
            "client_ids": list(client_ids) if client_ids is not None else None,
            "limit": limit,
        },
    )
    return [r for r in rows if r.confirmed_lost_on is None]


# --- the records the app posts -------------------------------------------------------------------


async def known_records(session: AsyncSession, event_ids: Iterable[UUID]) -> dict[UUID, tuple[str, dict]]:
    ids = list(set(event_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(mentoring_records.c.event_id, mentoring_records.c.content_hash, mentoring_records.c.result).where(
            mentoring_records.c.event_id.in_(ids)
        )
    )
    return {r.event_id: (r.content_hash, r.result) for r in rows}


async def add_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(mentoring_records), list(rows))


async def disclosure_history(session: AsyncSession, client_id: UUID) -> list[Any]:
    rows = await session.execute(
        select(mentoring_records.c.occurred_at, mentoring_records.c.payload, mentoring_records.c.staff_id)
        .where(mentoring_records.c.client_id == client_id, mentoring_records.c.type == "DisclosureRecorded")
        .order_by(mentoring_records.c.occurred_at, mentoring_records.c.event_id)
    )
    return list(rows)


# --- subjects the app names ----------------------------------------------------------------------


async def subjects(session: AsyncSession, client_ids: Iterable[UUID], infant_ids: Iterable[UUID]) -> dict[UUID, Any]:
    """The mothers and infants named, with their facility and state, locked (mothers before
    infants, each in id order: follow-up's lock order)."""
    found: dict[UUID, Any] = {}
    cids, iids = sorted(set(client_ids)), sorted(set(infant_ids))
    if cids:
        rows = await session.execute(
            select(mothers.c.client_id, mothers.c.facility_id, mothers.c.died_on, mothers.c.lost_since)
            .where(mothers.c.client_id.in_(cids))
            .order_by(mothers.c.client_id)
            .with_for_update()
        )
        found.update({r.client_id: r for r in rows})
    if iids:
        rows = await session.execute(
            select(
                infants.c.infant_id,
                infants.c.client_id,
                infants.c.facility_id,
                infants.c.died_on,
                infants.c.lost_since,
                infants.c.in_follow_up,
            )
            .where(infants.c.infant_id.in_(iids))
            .order_by(infants.c.infant_id)
            .with_for_update()
        )
        found.update({r.infant_id: r for r in rows})
    return found


async def tracing_counts(session: AsyncSession, subject_ids: Iterable[UUID]) -> dict[UUID, Any]:
    ids = sorted(set(subject_ids))
    if not ids:
        return {}
    rows = await session.execute(select(tracing).where(tracing.c.subject_id.in_(ids)).with_for_update())
    return {r.subject_id: r for r in rows}


async def save_tracing(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = insert(tracing)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["subject_id"],
            set_={c: statement.excluded[c] for c in ("lost_since", "failed_attempts", "attempts", "confirmed_lost_on")},
        ),
        list(rows),
    )


async def index_contacts_of(session: AsyncSession, contact_ids: Iterable[UUID]) -> dict[UUID, Any]:
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(index_contacts)
        .where(index_contacts.c.contact_id.in_(ids))
        .order_by(index_contacts.c.contact_id)
        .with_for_update()
    )
    return {r.contact_id: dict(r._mapping) for r in rows}


async def save_index_contacts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = insert(index_contacts)
    columns = ("relationship", "elicited_on", "invited_on", "tested_on", "result", "known_positive", "linked_on")
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["contact_id"], set_={c: statement.excluded[c] for c in columns}
        ),
        list(rows),
    )


async def index_contacts_of_client(session: AsyncSession, client_id: UUID) -> list[Any]:
    rows = await session.execute(
        select(index_contacts).where(index_contacts.c.client_id == client_id).order_by(index_contacts.c.elicited_on)
    )
    return list(rows)
