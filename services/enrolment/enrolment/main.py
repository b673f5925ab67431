"""ASGI entry point: `uvicorn enrolment.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC
from servicekit import intake, pending
from servicekit.app import ConsumerSpec, create_app
from servicekit.fhir import install_operation_outcomes

from . import caseloads, endpoints, fhir_concepts, frontdoor
from .schemas import EMR_EVENT
from .settings import Settings, require_keys


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_app(
        settings,
        title="PMTCT enrolment service",
        description="The front door for partner clinics' EMRs: mother and infant events in (infant events"
        " recorded by follow-up), client identity, personal data kept (encrypted) in this schema only.",
        routers=[endpoints.router, endpoints.fhir_router],
        publishes=[ENROLMENT_TOPIC],
        # the caseloads follow-up announces: what a Mentor Mother's personal-data read is limited to
        consumers=[ConsumerSpec(name="enrolment", topics=[FOLLOWUP_TOPIC], handlers=caseloads.HANDLERS)],  # type: ignore[arg-type]
        background=[("held events' expiry", pending.run)],
    )
    runtime_lifespan = app.router.lifespan_context

    # The keys are checked before the runtime connects to anything, so a missing key is the one
    # clear error at start-up; the app object itself can still be built (and imported) without them.
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        require_keys(settings)
        fhir_concepts.load(settings.fhir_concept_map)  # a ConceptMap that cannot be read stops the start here
        async with runtime_lifespan(app):
            yield

    app.router.lifespan_context = lifespan
    intake.document(app, EMR_EVENT, "EmrEvent", forwarded={"InfantEvent": frontdoor.INFANT_EVENT_SCHEMA})
    install_operation_outcomes(app)
    return app


app = build_app()
