"""The HTTP side of the runtime, in a scratch app built by the same factory as the services:
auth on scopes and facilities, problem+json, and one trace from a request to a consumer's span."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from spine_support import SCHEMA, Pinged, event_type_on

from servicekit import outbox
from servicekit.app import ConsumerSpec, SessionDep, create_app
from servicekit.auth import require
from servicekit.settings import ServiceSettings


class Ping(BaseModel):
    facility_id: str
    key: str


def scratch_app(settings: ServiceSettings, topic: str, handled: list):
    event_type = event_type_on(topic)
    router = APIRouter()

    @router.post("/v1/pings", status_code=202)
    async def ping(body: Ping, session: SessionDep, principal=require("events:write")) -> dict:
        principal.require_facility(body.facility_id)
        async with session.begin():
            [ce] = await outbox.add(
                session,
                event_type(facility_id=body.facility_id, occurred_at=datetime.now(UTC), stream=body.key, seq=0),
            )
        return {"event_id": str(ce.id)}

    async def on_ping(event: Pinged, uow) -> None:
        handled.append((uow.cause.id, trace.get_current_span().get_span_context().trace_id))

    return create_app(
        settings,
        title="scratch",
        description="runtime test app",
        routers=[router],
        publishes=[topic],
        consumers=[ConsumerSpec(name=f"{SCHEMA}-tracing", topics=[topic], handlers={event_type: on_ping})],
    )


@pytest.fixture
async def scratch(spine, issuer):
    settings = spine.settings.model_copy(update={"auth_jwks_url": issuer.jwks_url, "auth_issuer": "pmtct-dev-issuer"})
    handled: list = []
    app = scratch_app(settings, spine.topic, handled)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client:
            yield client, handled


async def test_no_token_is_401_with_a_problem_and_a_challenge(scratch) -> None:
    client, _ = scratch
    r = await client.post("/v1/pings", json={"facility_id": "FAC-ZA-001", "key": "a"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["code"] == "unauthorized"


async def test_a_forged_token_is_401(scratch, tmp_path) -> None:
    from pmtct_tools.devissuer import DevIssuer

    forged = DevIssuer(tmp_path).ensure().mint("mallory", "events:write", ["*"])
    client, _ = scratch
    r = await client.post(
        "/v1/pings", json={"facility_id": "FAC-ZA-001", "key": "a"}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert r.status_code == 401
    assert "Invalid token" in r.json()["detail"]


async def test_a_token_without_the_scope_is_403(scratch, issuer) -> None:
    client, _ = scratch
    r = await client.post(
        "/v1/pings",
        json={"facility_id": "FAC-ZA-001", "key": "a"},
        headers=issuer.headers("reports:read", ["FAC-ZA-001"]),
    )
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    assert "events:write" in r.json()["detail"]


async def test_a_token_for_another_facility_is_403(scratch, issuer) -> None:
    client, _ = scratch
    r = await client.post(
        "/v1/pings",
        json={"facility_id": "FAC-ZA-001", "key": "a"},
        headers=issuer.headers("events:write", ["FAC-KE-001"]),
    )
    assert r.status_code == 403
    assert r.json()["code"] == "facility_forbidden"


async def test_a_malformed_body_is_a_400_problem_not_a_500(scratch, issuer) -> None:
    client, _ = scratch
    r = await client.post(
        "/v1/pings",
        content=b"{nope",
        headers={**issuer.headers("events:write", ["*"]), "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "malformed_json"


async def test_a_body_without_a_json_content_type_is_a_415_problem(scratch, issuer) -> None:
    client, _ = scratch
    r = await client.post(
        "/v1/pings",
        content=b'{"facility_id": "FAC-ZA-001", "key": "a"}',
        headers={**issuer.headers("events:write", ["*"]), "content-type": "text/plain"},
    )
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]


async def test_health_readiness_and_metrics_answer(scratch) -> None:
    client, _ = scratch
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "background": "ok", "consumers": "ok"}
    metrics = (await client.get("/metrics")).text
    assert "pmtct_outbox_backlog" in metrics and "pmtct_http_request_seconds" in metrics


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_one_trace_runs_from_the_http_request_to_the_consumers_handler_span(spans, scratch, issuer) -> None:
    client, handled = scratch
    r = await client.post(
        "/v1/pings",
        json={"facility_id": "FAC-ZA-001", "key": "traced"},
        headers=issuer.headers("events:write", ["FAC-ZA-001"]),
    )
    assert r.status_code == 202, r.text
    event_id = r.json()["event_id"]
    for _ in range(300):
        if any(str(e) == event_id for e, _ in handled):
            break
        await asyncio.sleep(0.1)
    [(_, handler_trace)] = [(e, t) for e, t in handled if str(e) == event_id]

    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind == trace.SpanKind.SERVER and "/v1/pings" in s.name]
    process = [
        s for s in finished if s.name == "Pinged process" and s.attributes.get("messaging.message.id") == event_id
    ]
    assert server and process
    assert server[0].context.trace_id == handler_trace == process[0].context.trace_id
    assert process[0].parent is not None


def test_with_nowhere_to_send_spans_a_service_records_none_but_trace_ids_still_travel() -> None:
    script = """
from opentelemetry import trace
from servicekit.telemetry import current_traceparent, setup_tracing, tracer
setup_tracing("probe")
with tracer().start_as_current_span("incoming") as span:
    parent = span.get_span_context()
    with tracer().start_as_current_span("child") as child:
        print(span.is_recording(), child.get_span_context().trace_id == parent.trace_id, current_traceparent())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    recording, same_trace, traceparent = out.stdout.split()
    assert recording == "False" and same_trace == "True"
    assert traceparent.startswith("00-") and len(traceparent.split("-")[1]) == 32
