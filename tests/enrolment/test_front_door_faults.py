"""The front door when follow-up is slow or failing (enrolment in-process against the real PostgreSQL
and broker; follow-up's place taken by a socket that never answers, or answers a server error): the
mother events are recorded, the infant events are `service_unavailable`, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import AnyHttpUrl

from enrolment.main import build_app


@asynccontextmanager
async def fake_followup(answer: Callable[[asyncio.StreamWriter], None] | None) -> AsyncIterator[str]:
    """A socket where follow-up should be: it reads the request and answers with `answer`, or never."""
    held: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is None:
            held.append(writer)  # keep it open, say nothing
            return
        answer(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()


def server_error(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")


def infant_visit(emr: Any) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "InfantVisitRecorded",
        "facility_id": "FAC-ZA-001",
        "occurred_at": emr.ago(10),
        "infant_id": str(uuid.uuid4()),
        "data": {},
    }


async def post_through(url: str, enrolment: Any, events: list[dict]) -> httpx.Response:
    """Post through an enrolment app of its own whose follow-up is at `url`."""
    settings = enrolment.settings.model_copy(update={"followup_url": AnyHttpUrl(url), "followup_timeout_s": 1.0})
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e", timeout=30) as http:
            return await http.post(
                "/v1/events", json={"events": events}, headers=enrolment.headers("events:write", ["FAC-ZA-001"])
            )


async def test_follow_up_too_slow_its_events_are_service_unavailable_and_the_mother_events_recorded(
    enrolment: Any, emr: Any
) -> None:
    events = [infant_visit(emr), emr.enrolment()]
    async with fake_followup(None) as url:
        response = await post_through(url, enrolment, events)

    assert response.status_code == 200, response.text
    infant, mother = response.json()["results"]
    assert (infant["status"], infant["code"]) == ("rejected", "service_unavailable")
    assert "did not answer within 1 s" in infant["reason"]
    assert (mother["status"], mother["code"]) == ("accepted", None)


async def test_follow_up_failing_its_events_are_service_unavailable(enrolment: Any, emr: Any) -> None:
    events = [emr.enrolment(), infant_visit(emr), infant_visit(emr)]
    async with fake_followup(server_error) as url:
        response = await post_through(url, enrolment, events)

    assert response.status_code == 200, response.text
    assert [(r["index"], r["status"], r["code"]) for r in response.json()["results"]] == [
        (0, "accepted", None),
        (1, "rejected", "service_unavailable"),
        (2, "rejected", "service_unavailable"),
    ]
    assert "Follow-up answered 500" in response.json()["results"][1]["reason"]
