"""ASGI entry point: `uvicorn referrals.main:app`."""

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC
from servicekit.app import ConsumerSpec, create_app

from . import endpoints, handlers
from .settings import Settings

settings = Settings()
app = create_app(
    settings,
    title="PMTCT referrals service",
    description="Closed-loop referrals, automatic referrals from the schedule, and the ministry referral feed.",
    routers=[endpoints.router],
    publishes=[REFERRALS_TOPIC],
    consumers=[ConsumerSpec(name="referrals", topics=[ENROLMENT_TOPIC, FOLLOWUP_TOPIC], handlers=handlers.HANDLERS)],
)
