"""HTTP use cases that write: the staff table (the registry at start-up, the admin API) and
explicit caseload assignment; and who the caller is, as staff."""

from __future__ import annotations

from uuid import UUID

from pmtct_events.mentoring import AssignmentReason, StaffMemberChanged
from servicekit import staff as registry
from servicekit.app import Runtime
from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.problems import Problem
from servicekit.staff import StaffMember, StaffRole
from servicekit.uow import UnitOfWork

from ..settings import Settings
from . import caseloads
from . import repository as repo
from .schemas import AssignmentPublic, StaffChange, StaffIn


def _announce(uow: UnitOfWork, m: StaffMember, settings: Settings) -> None:
    uow.publish(
        StaffMemberChanged(
            facility_id=m.facility_id,
            occurred_at=settings.clock.now(),
            staff_id=m.staff_id,
            role=m.role,
            active=m.active,
        )
    )


async def load_registry(rt: Runtime[Settings]) -> None:
    """At start-up: the registry's members the staff table does not know yet are added (and
    announced); those it knows keep what the admin API last set."""
    members = registry.at_start_up(rt.settings.staff_path, rt.settings.facilities_path, rt.registry)
    async with rt.begin() as uow:
        for m in await repo.add_unknown_staff(uow.session, members):
            _announce(uow, m, rt.settings)
        await uow.commit()


async def put_staff(
    uow: UnitOfWork, staff_id: str, body: StaffIn, settings: Settings, facilities: FacilityRegistry
) -> StaffChange:
    """Add or change a staff member; a Mentor Mother who leaves (inactive, another facility or
    role) hands her caseload to the others of her facility by the rule."""
    if body.facility_id not in facilities:
        raise Problem(422, "unknown_facility", f"Facility {body.facility_id!r} is not in the facility registry.")
    before = await repo.staff_member(uow.session, staff_id, lock=True)
    after = StaffMember(staff_id, body.role, body.facility_id, body.active)
    moved = 0
    if before != after:
        await repo.save_staff(uow.session, after)
        _announce(uow, after, settings)
        left = (
            before is not None
            and before.role is StaffRole.mentor_mother
            and (
                not after.active or after.facility_id != before.facility_id or after.role is not StaffRole.mentor_mother
            )
        )
        if left and before is not None:
            moved = await caseloads.staff_left(
                uow, staff_id, before.facility_id, settings.clock.now(), settings.mentoring
            )
    return StaffChange(**_fields(after), clients_reassigned=moved)


def _fields(m: StaffMember) -> dict:
    return {"staff_id": m.staff_id, "role": m.role, "facility_id": m.facility_id, "active": m.active}


async def caller(uow: UnitOfWork, principal: Principal) -> StaffMember:
    """The staff member whose app holds this token (its subject): registered, active, and the
    token acts for her facility; a clear 403 otherwise."""
    me = await repo.staff_member(uow.session, principal.subject) if principal.subject else None
    if me is None or not me.active:
        raise Problem(
            403,
            "not_staff",
            f"The token's subject {principal.subject!r} is not an active staff member (the staff registry).",
        )
    if not principal.may_act_for(me.facility_id):
        raise Problem(
            403,
            "facility_forbidden",
            f"Staff member {me.staff_id} works at {me.facility_id}; this token is for"
            f" {', '.join(sorted(principal.facilities)) or 'no facility'}.",
        )
    return me


async def may_manage(uow: UnitOfWork, principal: Principal, facility_id: str) -> None:
    """An admin, or a site coordinator of the facility, manages its caseloads and reads its
    Mentor Mothers' worklists."""
    if "admin" in principal.scopes:
        principal.require_facility(facility_id)
        return
    me = await caller(uow, principal)
    if me.role is not StaffRole.site_coordinator or me.facility_id != facility_id:
        raise Problem(
            403,
            "not_coordinator",
            f"Only a site coordinator of {facility_id} (or an admin) may do this; {me.staff_id} is a"
            f" {me.role.value} at {me.facility_id}.",
        )


async def assign(
    uow: UnitOfWork, principal: Principal, client_id: UUID, staff_id: str | None, settings: Settings
) -> AssignmentPublic:
    """A site coordinator puts a mother (and her infants) in a Mentor Mother's caseload."""
    facility_id = await repo.mother_facility(uow.session, client_id)
    if facility_id is None:
        raise Problem(404, "unknown_client", f"No mother {client_id} is known to follow-up.")
    await may_manage(uow, principal, facility_id)
    if staff_id is not None:
        mentor = await repo.staff_member(uow.session, staff_id)
        if mentor is None or not mentor.active or mentor.role is not StaffRole.mentor_mother:
            raise Problem(422, "not_a_mentor_mother", f"{staff_id!r} is not an active Mentor Mother.")
        if mentor.facility_id != facility_id:
            raise Problem(
                422,
                "facility_mismatch",
                f"Mentor Mother {staff_id} works at {mentor.facility_id}; the client is at {facility_id}.",
            )
    now = settings.clock.now()
    await repo.lock_facility_caseloads(uow.session, facility_id)
    await caseloads.assign(uow, client_id, facility_id, staff_id, AssignmentReason.explicit, now)
    row = (await repo.assignments(uow.session, [client_id]))[client_id]
    return AssignmentPublic(
        client_id=client_id,
        facility_id=row.facility_id,
        staff_id=row.staff_id,
        reason=AssignmentReason(row.reason),
        assigned_at=row.assigned_at,
    )
