"""Event handlers of the followup service: every mother event of the enrolment topic updates the
mother's case and, through it, her infants' (`service.on_enrolment_event`)."""

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import EVENTS as ENROLMENT_EVENTS
from servicekit.consumer import Handler

from . import service
from .settings import Settings


def handlers(settings: Settings) -> dict[type[Event], Handler]:
    async def on_mother_event(session: AsyncSession, ce: CloudEvent, event: Event) -> None:
        await service.on_enrolment_event(session, ce, event, settings)  # type: ignore[arg-type]

    return {model: on_mother_event for model in ENROLMENT_EVENTS}
