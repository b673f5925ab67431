"""ASGI entry point: `uvicorn followup.main:app`."""

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC
from servicekit.app import ConsumerSpec, create_app

from . import endpoints, handlers
from .settings import Settings

settings = Settings()
app = create_app(
    settings,
    title="PMTCT follow-up service",
    description="HIV-exposed infant schedule, due and overdue follow-ups, Mentor Mother worklists.",
    routers=[endpoints.router],
    publishes=[FOLLOWUP_TOPIC],
    consumers=[ConsumerSpec(name="followup", topics=[ENROLMENT_TOPIC], handlers=handlers.HANDLERS)],
)
