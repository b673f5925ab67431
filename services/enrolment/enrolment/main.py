"""ASGI entry point: `uvicorn enrolment.main:app`."""

from pmtct_events import ENROLMENT_TOPIC
from servicekit.app import create_app

from . import endpoints
from .settings import Settings

settings = Settings()
app = create_app(
    settings,
    title="PMTCT enrolment service",
    description="The front door for partner clinics' EMRs: mother events in, client identity, PII kept in this schema only.",
    routers=[endpoints.router],
    publishes=[ENROLMENT_TOPIC],
)
