"""What the enrolment stream does to caseloads: a mother who enrols is assigned by the rule, one
who transfers out leaves her facility's caseloads. Called by follow-up's handler of every mother
event (`followup.handlers`), in the consumer batch's unit of work."""

from __future__ import annotations

from pmtct_events import Event
from pmtct_events.enrolment import ClientEnrolled, ClientTransferredOut
from servicekit.uow import UnitOfWork

from ..settings import Settings
from . import caseloads


async def on_enrolment_event(event: Event, uow: UnitOfWork, settings: Settings) -> None:
    if isinstance(event, ClientEnrolled):
        await caseloads.enrolled(uow, event.client_id, event.facility_id, event.occurred_at, settings.mentoring)
    elif isinstance(event, ClientTransferredOut):
        await caseloads.transferred_out(uow, event.client_id, event.facility_id, event.occurred_at)
