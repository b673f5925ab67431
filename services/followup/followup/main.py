"""ASGI entry point: `uvicorn followup.main:app`."""

from fastapi import FastAPI

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC
from servicekit import intake, pending
from servicekit.app import ConsumerSpec, create_app

from . import endpoints, stream, timers
from .handlers import handlers
from .mentoring import api as mentoring_api
from .mentoring import endpoints as mentoring_endpoints
from .mentoring.schemas import RECORD
from .repository import FollowupUnit
from .schemas import INFANT_EVENT
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_app(
        settings,
        title="PMTCT follow-up service",
        description="HIV-exposed infant schedule, due and overdue follow-ups, Mentor Mother worklists.",
        routers=[endpoints.router, mentoring_endpoints.router],
        publishes=[FOLLOWUP_TOPIC],
        consumers=[
            ConsumerSpec(
                name="followup",
                topics=[ENROLMENT_TOPIC],
                handlers=handlers(settings),
                preload=stream.preload,  # type: ignore[arg-type]
            )
        ],
        background=[("durable timers", timers.run), ("held events' expiry", pending.run)],
        unit_of_work=FollowupUnit,
        on_startup=mentoring_api.load_registry,
    )
    intake.document(app, INFANT_EVENT, "InfantEvent")
    intake.document(app, RECORD, "MentorRecord", batch_model="RecordBatch")
    return app


app = build_app()
