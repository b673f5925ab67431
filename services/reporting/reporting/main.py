"""ASGI entry point: `uvicorn reporting.main:app`."""

from fastapi import FastAPI

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC
from servicekit.app import ConsumerSpec, create_app

from . import endpoints, handlers, programme_endpoints, programme_store, submissions
from .repository import ReportingUnit
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_app(
        settings,
        title="PMTCT reporting service",
        description="Programme indicators, DHIS2 export and the dashboard.",
        routers=[endpoints.router, endpoints.pages, programme_endpoints.router],
        publishes=[],
        consumers=[
            ConsumerSpec(
                name="reporting",
                topics=[ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC],
                # the Mentor Mothers' programme facts beside the MER read model (reporting.programme)
                handlers={**handlers.build(settings), **programme_store.handlers(settings.clock)},
            )
        ],
        unit_of_work=ReportingUnit,
        background=[("scheduled DHIS2 push", submissions.run)],
    )


app = build_app()
