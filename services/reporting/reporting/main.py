"""ASGI entry point: `uvicorn reporting.main:app`."""

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC
from servicekit.app import ConsumerSpec, create_app

from . import endpoints, handlers
from .settings import Settings

settings = Settings()
app = create_app(
    settings,
    title="PMTCT reporting service",
    description="Programme indicators, DHIS2 export and the dashboard.",
    routers=[endpoints.router],
    publishes=[],
    consumers=[ConsumerSpec(name="reporting", topics=[ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC], handlers=handlers.HANDLERS)],
)
