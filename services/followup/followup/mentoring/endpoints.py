"""HTTP routes of the Mentor Mothers' work (a few lines each): the staff admin API, caseloads,
what the app posts (`POST /v1/contacts`), a client's disclosure and index contacts. Her
worklist is `GET /v1/worklist?mentor=me` (followup.endpoints)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path

from pmtct_events.mentoring import AssignmentReason
from servicekit import intake
from servicekit.app import Runtime, runtime
from servicekit.auth import Principal, require
from servicekit.problems import Problem

from ..settings import Settings
from . import api, queries
from . import intake as records
from . import repository as repo
from .schemas import (
    STAFF_ID,
    AssignmentIn,
    AssignmentPublic,
    Caseload,
    Disclosure,
    IndexContactPublic,
    RecordBatch,
    RecordReply,
    StaffChange,
    StaffIn,
    StaffPublic,
)

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
StaffId = Annotated[str, Path(pattern=STAFF_ID)]
router = APIRouter(prefix="/v1", tags=["mentor mothers"])

FORBIDDEN = {403: {"description": "`not_staff`, `not_coordinator`, `facility_forbidden`, `insufficient_scope`"}}


@router.post(
    "/contacts",
    summary="Post a batch of a Mentor Mother's records (at most 1000): contacts, group sessions, tracing"
    " attempts, disclosure, index testing",
    description="Offline-tolerant like EMR events: one result per record, in the order posted; re-posting the"
    " same event_id is a `duplicate` with no second effect. The token's subject is the staff member who did it."
    " Codes: docs/emr-intake.md; the records: docs/mentor-mothers.md.",
    responses={**intake.RESPONSES, 403: {"description": "`not_staff`, `facility_forbidden`, `insufficient_scope`"}},
)
async def post_contacts(
    body: RecordBatch, runtime: RuntimeDep, principal: Annotated[Principal, require("contacts:write")]
) -> RecordReply:
    async with runtime.begin() as uow:
        member = await api.caller(uow, principal)
    return await records.record(runtime.begin, runtime.settings, runtime.registry, principal, member, body.events)


@router.get("/staff", summary="The staff of a facility (an admin, or its site coordinator)", responses=FORBIDDEN)
async def list_staff(
    runtime: RuntimeDep, principal: Annotated[Principal, require("worklist:read")], facility_id: str
) -> list[StaffPublic]:
    async with runtime.begin() as uow:
        await api.may_manage(uow, principal, facility_id)
        return [StaffPublic(**api._fields(m)) for m in await repo.staff_members(uow.session, facility_id)]


@router.put(
    "/staff/{staff_id}",
    summary="Add or change a staff member (admin); a Mentor Mother who leaves hands on her caseload",
    responses={422: {"description": "`unknown_facility`"}},
)
async def put_staff(
    staff_id: StaffId, body: StaffIn, runtime: RuntimeDep, _: Annotated[Principal, require("admin")]
) -> StaffChange:
    async with runtime.begin() as uow:
        changed = await api.put_staff(uow, staff_id, body, runtime.settings, runtime.registry)
        await uow.commit()
    return changed


@router.get(
    "/staff/{staff_id}/caseload",
    summary="A Mentor Mother's caseload (herself, her site coordinator, an admin)",
    responses={**FORBIDDEN, 404: {"description": "`unknown_staff`"}},
)
async def get_caseload(
    staff_id: Annotated[str, Path(pattern=r"^(me|[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})$")],
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("worklist:read")],
) -> Caseload:
    async with runtime.begin() as uow:
        member = await mentor_asked(uow, principal, staff_id)
        return await queries.caseload(uow.session, member)


@router.put(
    "/clients/{client_id}/mentor",
    summary="Put a mother (and her infants) in a Mentor Mother's caseload (site coordinator, admin)",
    responses={
        **FORBIDDEN,
        404: {"description": "`unknown_client`"},
        422: {"description": "`not_a_mentor_mother`, `facility_mismatch`"},
    },
)
async def put_mentor(
    client_id: UUID, body: AssignmentIn, runtime: RuntimeDep, principal: Annotated[Principal, require("worklist:read")]
) -> AssignmentPublic:
    async with runtime.begin() as uow:
        assigned = await api.assign(uow, principal, client_id, body.staff_id, runtime.settings)
        await uow.commit()
    return assigned


@router.get(
    "/clients/{client_id}/mentor",
    summary="Whose caseload a mother (and her infants) is in",
    responses={
        404: {"description": "`unknown_client`: not known, not assigned, or at a facility the caller may not act for"}
    },
)
async def get_mentor(
    client_id: UUID, runtime: RuntimeDep, principal: Annotated[Principal, require("worklist:read")]
) -> AssignmentPublic:
    async with runtime.begin() as uow:
        row = (await repo.assignments(uow.session, [client_id])).get(client_id)
        if row is None or not principal.may_act_for(row.facility_id):
            raise Problem(404, "unknown_client", f"Mother {client_id} is in no caseload this caller may read.")
        return AssignmentPublic(
            client_id=client_id,
            facility_id=row.facility_id,
            staff_id=row.staff_id,
            reason=AssignmentReason(row.reason),
            assigned_at=row.assigned_at,
        )


@router.get("/clients/{client_id}/disclosure", summary="Her disclosure to partner and family, over time")
async def get_disclosure(
    client_id: UUID, runtime: RuntimeDep, principal: Annotated[Principal, require("worklist:read")]
) -> Disclosure:
    async with runtime.begin() as uow:
        await facility_of_client(uow, principal, client_id)
        return await queries.disclosure(uow.session, client_id, runtime.settings.clock)


@router.get("/clients/{client_id}/index-contacts", summary="The partners and children she named for testing")
async def get_index_contacts(
    client_id: UUID, runtime: RuntimeDep, principal: Annotated[Principal, require("worklist:read")]
) -> list[IndexContactPublic]:
    async with runtime.begin() as uow:
        await facility_of_client(uow, principal, client_id)
        return await queries.index_contacts(uow.session, client_id)


async def facility_of_client(uow, principal: Principal, client_id: UUID) -> str:
    facility_id = await repo.mother_facility(uow.session, client_id)
    if facility_id is None or not principal.may_act_for(facility_id):
        raise Problem(404, "unknown_client", f"No mother {client_id} at a facility this caller may act for.")
    return facility_id


async def mentor_asked(uow, principal: Principal, mentor: str):
    """The staff member `mentor` names: `me` (the token's subject), or another, whom only an admin
    or her site coordinator may ask about."""
    if mentor == "me":
        return await api.caller(uow, principal)
    member = await repo.staff_member(uow.session, mentor)
    if member is None:
        raise Problem(404, "unknown_staff", f"No staff member {mentor!r} is registered.")
    if principal.subject == member.staff_id:
        return await api.caller(uow, principal)
    await api.may_manage(uow, principal, member.facility_id)
    return member
