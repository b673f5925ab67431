"""ASGI entry point: `uvicorn enrolment.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pmtct_events import ENROLMENT_TOPIC
from servicekit.app import create_app

from . import endpoints
from .schemas import EMR_EVENT
from .settings import Settings, require_keys


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_app(
        settings,
        title="PMTCT enrolment service",
        description="The front door for partner clinics' EMRs: mother events in, client identity,"
        " personal data kept (encrypted) in this schema only.",
        routers=[endpoints.router],
        publishes=[ENROLMENT_TOPIC],
    )
    runtime_lifespan = app.router.lifespan_context

    # The keys are checked before the runtime connects to anything, so a missing key is the one
    # clear error at start-up; the app object itself can still be built (and imported) without them.
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        require_keys(settings)
        async with runtime_lifespan(app):
            yield

    app.router.lifespan_context = lifespan
    document_emr_events(app)
    return app


def document_emr_events(app: FastAPI) -> None:
    """Show EMR integrators the schema of each event in /openapi.json. The batch body declares its
    events loosely (each is validated on its own, so one bad event cannot fail the batch)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        event = EMR_EVENT.json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event.pop("$defs", {}))
        components["EmrEvent"] = event
        components["EventBatch"]["properties"]["events"]["items"] = {"$ref": "#/components/schemas/EmrEvent"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


app = build_app()
