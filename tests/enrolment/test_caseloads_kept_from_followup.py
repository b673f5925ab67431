"""Enrolment keeps each mother's caseload from follow-up's CaseloadAssigned events (it limits a
Mentor Mother's personal-data reads to her own clients by them): per mother, the latest stands,
but for her leaving a facility's caseload dated before she joined another's. Follow-up announces
that leaving after the joining when her transfer out came after her enrolment elsewhere
(followup.mentoring.caseloads; tests/followup/test_caseload_transfer_in_either_order.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from conftest import EnrolmentService

from enrolment.caseloads import caseload_assigned
from pmtct_events.mentoring import AssignmentReason, CaseloadAssigned
from servicekit import db, uow

T0, T_OUT, T_THERE = (datetime(2031, 3, d, 9, tzinfo=UTC) for d in (3, 13, 23))


def assigned(client_id, facility: str, staff: str | None, on: datetime, reason: str) -> CaseloadAssigned:
    return CaseloadAssigned(
        facility_id=facility, occurred_at=on, client_id=client_id, staff_id=staff, reason=AssignmentReason(reason)
    )


async def test_her_leaving_a_caseload_announced_after_she_joined_another_does_not_take_her_out_of_it(
    enrolment: EnrolmentService,
) -> None:
    engine = db.create_engine(enrolment.database_url, "enrolment", pool_size=1)
    sessions = db.sessionmaker(engine)
    ends = {}
    try:
        for order in ("as it happened", "the leaving announced last"):
            client = uuid4()
            joined_here = assigned(client, "FAC-ZA-001", "MM-ZA-001-01", T0, "rule")
            left_here = assigned(client, "FAC-ZA-001", None, T_OUT, "transferred")
            joined_there = assigned(client, "FAC-ZA-002", "MM-ZA-002-01", T_THERE, "transferred")
            events = [joined_here, left_here, joined_there]
            if order != "as it happened":
                events = [joined_here, joined_there, left_here]
            for event in events:
                async with uow.begin(sessions, uow.UnitOfWork) as unit:
                    await caseload_assigned(event, unit)
                    await unit.commit()
            [row] = await enrolment.fetch(
                "SELECT facility_id, staff_id, assigned_at FROM caseload WHERE client_id = $1", client
            )
            ends[order] = dict(row)
    finally:
        await engine.dispose()
    there = {"facility_id": "FAC-ZA-002", "staff_id": "MM-ZA-002-01", "assigned_at": T_THERE}
    assert ends == {"as it happened": there, "the leaving announced last": there}
