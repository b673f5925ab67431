"""Caseloads in enrolment: kept from follow-up's `CaseloadAssigned` and `StaffMemberChanged`
events (the services never call each other), and the one audited read of a worklist's clients.

A Mentor Mother's app asks follow-up for her worklist (platform ids only), then enrolment for whom
its rows are about, in one call (`POST /v1/caseload/personal-data`): name, EMR record number and
phone of each mother, for the clients in her own caseload only (her site coordinator: any client
of her facility's caseloads). The read is audited, one row per client in one statement, with her
staff id as the caller and her stated purpose, and committed before the answer leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.mentoring import CaseloadAssigned, StaffMemberChanged, StaffRole
from servicekit.auth import Principal
from servicekit.problems import Problem
from servicekit.uow import UnitOfWork

from .models import caseload, clients, personal_data_reads, registrations, staff
from .personal_data import PersonalDataCipher
from .schemas import CaseloadPersonalData, CaseloadPersonalDataReply

ACCESS = "caseload"

# --- the stream ------------------------------------------------------------------------------------


async def caseload_assigned(event: CaseloadAssigned, uow: UnitOfWork) -> None:
    values = {"facility_id": event.facility_id, "staff_id": event.staff_id, "assigned_at": event.occurred_at}
    statement = insert(caseload).values(client_id=event.client_id, **values)
    # per client, events arrive in the order follow-up committed them and the latest assignment
    # stands, but for her leaving a facility's caseload dated before she joined another's (a
    # transfer out that came after her enrolment elsewhere: followup.mentoring.caseloads): history
    history = (caseload.c.facility_id != statement.excluded.facility_id) & (
        caseload.c.assigned_at > statement.excluded.assigned_at
    )
    await uow.session.execute(
        statement.on_conflict_do_update(index_elements=["client_id"], set_=values, where=~history)
    )


async def staff_member_changed(event: StaffMemberChanged, uow: UnitOfWork) -> None:
    values = {
        "role": event.role.value,
        "facility_id": event.facility_id,
        "active": event.active,
        "changed_at": event.occurred_at,
    }
    statement = insert(staff).values(staff_id=event.staff_id, **values)
    await uow.session.execute(statement.on_conflict_do_update(index_elements=["staff_id"], set_=values))


HANDLERS = {CaseloadAssigned: caseload_assigned, StaffMemberChanged: staff_member_changed}

# --- the read --------------------------------------------------------------------------------------


async def _reader(session: AsyncSession, principal: Principal) -> tuple[str, StaffRole, str]:
    row = None
    if principal.subject:
        row = (await session.execute(select(staff).where(staff.c.staff_id == principal.subject))).first()
    if row is None or not row.active:
        raise Problem(403, "not_staff", f"The token's subject {principal.subject!r} is not an active staff member.")
    if not principal.may_act_for(row.facility_id):
        raise Problem(
            403,
            "facility_forbidden",
            f"Staff member {row.staff_id} works at {row.facility_id}; this token is not for that facility.",
        )
    return row.staff_id, StaffRole(row.role), row.facility_id


async def read_caseload(
    uow: UnitOfWork, cipher: PersonalDataCipher, principal: Principal, client_ids: Sequence[UUID], purpose: str
) -> CaseloadPersonalDataReply:
    """Whom the rows of her worklist are about: one audited read for all of them."""
    session = uow.session
    staff_id, role, facility_id = await _reader(session, principal)
    wanted = sorted(set(client_ids))
    assigned = {r.client_id: r for r in await session.execute(select(caseload).where(caseload.c.client_id.in_(wanted)))}

    def allowed(client_id: UUID) -> bool:
        a = assigned.get(client_id)
        if a is None or a.facility_id != facility_id:
            return False
        return a.staff_id == staff_id or role is StaffRole.site_coordinator

    mine = [c for c in wanted if allowed(c)]
    refused = [c for c in wanted if c not in set(mine)]
    if wanted and not mine:
        raise Problem(
            403,
            "not_in_caseload",
            f"None of the {len(wanted)} clients asked for is in {staff_id}'s caseload at {facility_id}.",
        )
    found: list[CaseloadPersonalData] = []
    if mine:
        rows = {r.client_id: r for r in await session.execute(select(clients).where(clients.c.client_id.in_(mine)))}
        refs = {
            r.client_id: r.client_ref
            for r in await session.execute(
                select(registrations.c.client_id, registrations.c.client_ref).where(
                    registrations.c.client_id.in_(mine), registrations.c.facility_id == facility_id
                )
            )
        }
        present = [c for c in mine if c in rows]
        await session.execute(
            insert(personal_data_reads),
            [{"client_id": c, "caller": staff_id, "purpose": purpose, "access": ACCESS} for c in present],
        )
        for c in present:
            row = rows[c]
            found.append(
                CaseloadPersonalData(
                    client_id=c,
                    client_ref=refs.get(c),
                    given_name=cipher.decrypt(c, "given_name", row.given_name),
                    family_name=cipher.decrypt(c, "family_name", row.family_name),
                    phone=cipher.decrypt(c, "phone", row.phone),
                    birth_date=row.birth_date,
                )
            )
    return CaseloadPersonalDataReply(staff_id=staff_id, facility_id=facility_id, clients=found, not_in_caseload=refused)
