"""ASGI entry point: `uvicorn referrals.main:app`."""

from fastapi import FastAPI

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC
from servicekit.app import ConsumerSpec, create_app
from servicekit.fhir import install_operation_outcomes

from . import endpoints, handlers, push, timers
from .repository import ReferralsUnit
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_app(
        settings,
        title="PMTCT referrals service",
        description="Closed-loop referrals, automatic referrals from the schedule, and the ministry referral feed.",
        routers=[endpoints.router, endpoints.fhir_router],
        publishes=[REFERRALS_TOPIC],
        consumers=[
            ConsumerSpec(
                name="referrals",
                topics=[ENROLMENT_TOPIC, FOLLOWUP_TOPIC],
                handlers=handlers.build(settings),
                preload=handlers.preload,
            )
        ],
        background=[("referral timers", timers.run), ("push deliveries", push.run)],
        unit_of_work=ReferralsUnit,
    )
    install_operation_outcomes(app)
    return app


app = build_app()
