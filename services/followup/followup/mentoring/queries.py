"""Reads of the Mentor Mothers' work: her worklist, a caseload, a client's disclosure history and
index contacts, the staff list."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.followup import ScheduleKind, SubjectType
from pmtct_events.mentoring import AssignmentReason, DisclosureStatus, DisclosureTarget
from servicekit.clock import Clock
from servicekit.staff import StaffMember, StaffRole

from ..eid_schedule import EidRules
from ..queries import worklist_entry
from . import repository as repo
from .schemas import (
    Caseload,
    CaseloadClient,
    Disclosure,
    DisclosureEntry,
    IndexContactPublic,
    MentorWorklist,
    NextContact,
    TracingTask,
)


async def mentor_worklist(
    session: AsyncSession, member: StaffMember, as_of: date, limit: int, rules: EidRules
) -> MentorWorklist:
    """Her caseload's open items, most urgent first; the lost among them to trace (for a
    Community Mentor Mother: every lost client of her facility); each client's next contact."""
    clients = await repo.clients_of(session, member.staff_id)
    rows = await repo.items_of_clients(session, clients, as_of, limit + 1)
    if member.role is StaffRole.community_mentor_mother:
        lost = await repo.lost_subjects(session, facility_id=member.facility_id, limit=limit)
    else:
        lost = await repo.lost_subjects(session, client_ids=clients, limit=limit)
    entries = [worklist_entry(r, as_of, rules) for r in rows[:limit]]
    tracing = [
        TracingTask(
            subject_type=SubjectType(r.subject_type),
            subject_id=r.subject_id,
            client_id=r.client_id,
            lost_since=r.lost_since,
            last_seen_on=r.last_seen_on,
            attempts=r.attempts or 0,
            failed_attempts=r.failed_attempts or 0,
        )
        for r in lost
    ]
    upcoming = [
        NextContact(
            client_id=r.client_id,
            subject_type=r.subject_type,
            subject_id=r.subject_id,
            action=r.kind,
            label=r.label or rules.label(ScheduleKind(r.kind)),
            test=r.test,
            window_start=r.window_start,
            window_end=r.window_end,
        )
        for r in await repo.next_items(session, clients, as_of)
    ]
    named = {e.client_id for e in entries} | {t.client_id for t in tracing} | {n.client_id for n in upcoming}
    return MentorWorklist(
        facility_id=member.facility_id,
        as_of=as_of,
        count=len(entries),
        truncated=len(rows) > limit,
        items=entries,
        staff_id=member.staff_id,
        role=member.role,
        client_ids=sorted(named),
        tracing=tracing,
        next_contacts=upcoming,
    )


async def caseload(session: AsyncSession, member: StaffMember) -> Caseload:
    rows = await repo.caseload_rows(session, member.staff_id)
    clients = [
        CaseloadClient(
            client_id=r.client_id, assigned_at=r.assigned_at, reason=AssignmentReason(r.reason), lost_since=r.lost_since
        )
        for r in rows
    ]
    return Caseload(staff_id=member.staff_id, facility_id=member.facility_id, count=len(clients), clients=clients)


async def disclosure(session: AsyncSession, client_id: UUID, clock: Clock) -> Disclosure:
    history = [
        DisclosureEntry(
            on=clock.local_day(r.occurred_at),
            to=DisclosureTarget(r.payload["to"]),
            status=DisclosureStatus(r.payload["status"]),
            staff_id=r.staff_id,
        )
        for r in await repo.disclosure_history(session, client_id)
    ]
    latest = {e.to: e.status for e in history}  # history is in date order: the last one stands
    return Disclosure(
        client_id=client_id,
        partner=latest.get(DisclosureTarget.partner),
        family=latest.get(DisclosureTarget.family),
        history=history,
    )


async def index_contacts(session: AsyncSession, client_id: UUID) -> list[IndexContactPublic]:
    return [
        IndexContactPublic.model_validate(r._mapping) for r in await repo.index_contacts_of_client(session, client_id)
    ]
