"""Event handlers of the followup service: every mother event of the enrolment topic updates the
mother's case and, through it, her infants' (`stream.on_enrolment_event`), and her place in a
Mentor Mother's caseload (`mentoring.stream`)."""

from pmtct_events import Event
from pmtct_events.enrolment import EVENTS as ENROLMENT_EVENTS
from servicekit.consumer import Handler

from . import stream
from .mentoring import stream as mentoring
from .repository import FollowupUnit
from .settings import Settings


def handlers(settings: Settings) -> dict[type[Event], Handler]:
    async def on_mother_event(event: Event, uow: FollowupUnit) -> None:
        await stream.on_enrolment_event(event, uow, settings)  # type: ignore[arg-type]
        await mentoring.on_enrolment_event(event, uow, settings)

    return {model: on_mother_event for model in ENROLMENT_EVENTS}  # type: ignore[misc]
