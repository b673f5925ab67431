"""A mother who transfers out of one facility and enrols at another: the two facilities' EMRs post
on their own, so follow-up may consume her enrolment there before her transfer out from here. The
same facts in either order announce the same caseload assignments (who, where, dated by their
fact) and leave her in the same caseload (issue 19: the fault suite found one more
CaseloadAssigned for her when her events came in the other order)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

from followup_support import SIM_START, FollowupService, at, new_mother

from followup.handlers import handlers
from followup.mentoring import repository as mentoring
from followup.repository import FollowupUnit
from pmtct_events import CloudEvent
from pmtct_events.enrolment import ClientEvent, ClientTransferredOut
from servicekit import uow
from servicekit.staff import StaffMember, StaffRole


async def consume(followup: FollowupService, *events: ClientEvent) -> None:
    """As follow-up's consumer does: each event in its own unit, through the service's handlers."""
    handle = handlers(followup.sim)
    for event in events:
        async with uow.begin(followup.sessions, FollowupUnit) as unit:
            with unit.handling(CloudEvent.from_event(event)):
                await handle[type(event)](event, unit)
            await unit.commit()


async def caseload_announcements(followup: FollowupService, client_id: UUID) -> list[tuple]:
    emitted = await followup.emitted([client_id])
    return sorted(
        (p["occurred_at"], p["facility_id"], p["staff_id"], p["reason"])
        for name, p in emitted
        if name == "CaseloadAssigned"
    )


async def test_a_transfer_out_consumed_after_her_enrolment_elsewhere_announces_the_same_caseloads(
    followup: FollowupService,
) -> None:
    here, there = f"FAC-T{uuid4().hex[:6]}-A", f"FAC-T{uuid4().hex[:6]}-B"
    mm_here, mm_there = f"MM-{uuid4().hex[:8]}", f"MM-{uuid4().hex[:8]}"
    async with followup.units() as unit:
        for staff_id, facility in ((mm_here, here), (mm_there, there)):
            await mentoring.save_staff(unit.session, StaffMember(staff_id, StaffRole.mentor_mother, facility, True))
        await unit.commit()

    ends = {}
    for order in ("transfer out first", "enrolment elsewhere first"):
        mother = new_mother(here)
        enrolled_here = mother.enrolled(SIM_START)
        out = ClientTransferredOut(
            facility_id=here,
            occurred_at=at(SIM_START + timedelta(days=40)),
            client_id=mother.client_id,
            to_facility_id=there,
        )
        mother.facility_id = there
        enrolled_there = mother.enrolled(SIM_START + timedelta(days=55))
        await consume(followup, enrolled_here)
        if order == "transfer out first":
            await consume(followup, out, enrolled_there)
        else:
            await consume(followup, enrolled_there, out)
        async with followup.units() as unit:
            row = (await mentoring.assignments(unit.session, [mother.client_id]))[mother.client_id]
        ends[order] = (
            await caseload_announcements(followup, mother.client_id),
            (row.facility_id, row.staff_id, row.reason, row.assigned_at, row.moved_from_facility_id),
        )

    day = lambda d: at(SIM_START + timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    # written by hand: in her first Mentor Mother's caseload from her enrolment, in nobody's from
    # her transfer out (day 40), in the Mentor Mother's of the facility she enrolled at from day 55
    announced = [
        (day(0), here, mm_here, "rule"),
        (day(40), here, None, "transferred"),
        (day(55), there, mm_there, "transferred"),
    ]
    now_in = (there, mm_there, "transferred", at(SIM_START + timedelta(days=55)), None)
    assert ends["transfer out first"] == (announced, now_in)
    assert ends["enrolment elsewhere first"] == (announced, now_in)
