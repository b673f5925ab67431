"""Caseloads: which Mentor Mother each mother (and her infants with her) belongs to.

A mother is assigned when she enrols (by the configured rule: `rules.least_loaded`, or nobody),
explicitly by a site coordinator (`api.assign`), anew when her Mentor Mother leaves (made
inactive or moved to another facility: the rule chooses among those who stay), and released when
she transfers out (her new facility's rule assigns her when she enrols there). Every change is a
`CaseloadAssigned` event: enrolment keeps the caseloads from them, so it can limit a Mentor
Mother's personal-data read to her own clients, and reporting counts caseloads.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pmtct_events.mentoring import AssignmentReason, CaseloadAssigned

from ..repository import FollowupUnit
from . import repository as repo
from . import rules
from .rules import CaseloadRule, MentoringRules


async def assign(
    uow: FollowupUnit,
    client_id: UUID,
    facility_id: str,
    staff_id: str | None,
    reason: AssignmentReason,
    at: datetime,
    moved_from: tuple[str | None, str | None] | None = None,
) -> bool:
    """Put the mother in `staff_id`'s caseload (None: in nobody's); False if she is there already.
    `moved_from`: see `Caseloads.set`."""
    current = await uow.caseloads.get(client_id)
    if current is not None and current.staff_id == staff_id and current.facility_id == facility_id:
        return False
    await uow.caseloads.set(client_id, facility_id, staff_id, reason.value, at, moved_from)
    uow.publish(
        CaseloadAssigned(
            facility_id=facility_id,
            occurred_at=at,
            client_id=client_id,
            staff_id=staff_id,
            previous_staff_id=current.staff_id if current is not None else None,
            reason=reason,
        )
    )
    return True


async def chosen(
    uow: FollowupUnit, facility_id: str, settings: MentoringRules, leaving: str | None = None
) -> str | None:
    """Whom the configured rule gives a client of the facility (under the facility's caseload lock)."""
    if settings.caseload_rule is CaseloadRule.none:
        return None
    loads = await uow.caseloads.loads(facility_id)
    loads.pop(leaving or "", None)
    return rules.least_loaded(loads)


async def enrolled(
    uow: FollowupUnit, client_id: UUID, facility_id: str, at: datetime, settings: MentoringRules
) -> None:
    """She enrolled at `facility_id`: a mother new to the facility's caseloads gets a Mentor
    Mother by the rule; one already in them (a new pregnancy, a repeat) keeps hers. When the rule
    gives nobody, nothing changes for a mother who was in nobody's caseload here or anywhere (no
    `CaseloadAssigned` saying "still nobody's" for every enrolment of a facility without Mentor
    Mothers); one who moved here leaves her old facility's caseload.

    One who moved here from a Mentor Mother's caseload elsewhere before her transfer out from
    there is known (the two facilities' EMRs post on their own, so the transfer out may come
    after her enrolment here) keeps that caseload as `moved_from`: the transfer out announces her
    leaving it when it comes (`transferred_out`), so that the same facts in either order announce
    the same assignments, each dated by its fact."""
    current = await uow.caseloads.get(client_id)
    if current is not None and current.facility_id == facility_id and current.staff_id is not None:
        return
    moved_here = current is not None and current.facility_id != facility_id
    staff_id = await chosen(uow, facility_id, settings)
    if staff_id is None and not moved_here:
        return
    reason = AssignmentReason.transferred if moved_here else AssignmentReason.rule
    moved_from = None
    if current is not None and moved_here:
        moved_from = (current.facility_id, current.staff_id) if current.staff_id is not None else (None, None)
    await assign(uow, client_id, facility_id, staff_id, reason, at, moved_from)


async def transferred_out(uow: FollowupUnit, client_id: UUID, facility_id: str, at: datetime) -> None:
    """She left the facility: she is in none of its caseloads any more. If she has enrolled at
    another facility since, still in a Mentor Mother's caseload here (her transfer out came after
    her enrolment there), her leaving it is announced now, dated by the transfer out, as it would
    have been had the transfer come first; where she is now does not change."""
    current = await uow.caseloads.get(client_id)
    if current is None:
        return
    if current.facility_id == facility_id:
        await assign(uow, client_id, facility_id, None, AssignmentReason.transferred, at)
    elif current.moved_from_facility_id == facility_id:
        await uow.caseloads.left_announced(client_id)
        uow.publish(
            CaseloadAssigned(
                facility_id=facility_id,
                occurred_at=at,
                client_id=client_id,
                staff_id=None,
                previous_staff_id=current.moved_from_staff_id,
                reason=AssignmentReason.transferred,
            )
        )


async def staff_left(uow: FollowupUnit, staff_id: str, facility_id: str, at: datetime, settings: MentoringRules) -> int:
    """Her clients go to the others of her facility, one at a time by the rule (so they spread
    over the least loaded); how many moved."""
    clients = await repo.clients_of(uow.session, staff_id)
    for client_id in clients:
        await assign(
            uow,
            client_id,
            facility_id,
            await chosen(uow, facility_id, settings, leaving=staff_id),
            AssignmentReason.staff_left,
            at,
        )
    return len(clients)
