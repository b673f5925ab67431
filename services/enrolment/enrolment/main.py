"""ASGI entry point: `uvicorn enrolment.main:app`."""

from fastapi import FastAPI
from pmtct_events import ENROLMENT_TOPIC
from servicekit.app import create_app

from . import endpoints
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    return create_app(
        settings or Settings(),
        title="PMTCT enrolment service",
        description="The front door for partner clinics' EMRs: mother events in, client identity, PII kept in this schema only.",
        routers=[endpoints.router],
        publishes=[ENROLMENT_TOPIC],
    )


app = build_app()
