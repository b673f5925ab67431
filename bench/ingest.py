"""Ingestion through `POST /v1/events`: sustained batches from many EMRs, and single events at a
moderate fixed rate (the latency a clinic's EMR sees)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import httpx
import orjson

from emrsim.events import EmrEvent
from emrsim.posting import Endpoints, Poster, Tally, Tokens
from emrsim.runner import Mint

from .stats import summary


async def post_events(
    events: Sequence[EmrEvent],
    endpoints: Endpoints,
    mint: Mint,
    *,
    service: str,
    concurrency: int,
    batch_size: int = 100,
    infant_ids: dict | None = None,
) -> Tally:
    """Every facility's EMR posts its events in order, in batches of `batch_size`, with at most
    `concurrency` requests in flight over all of them."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0), limits=limits) as client:
        poster = Poster(client, endpoints, Tokens(mint), batch_size=batch_size, concurrency=concurrency)
        if infant_ids:
            poster.tally.infant_ids.update(infant_ids)
        return await poster.post_service(service, events)  # type: ignore[arg-type]


def throughput(tally: Tally) -> dict:
    answered = sum(tally.answered.values())
    return {
        "events_per_s": round(tally.answered["accepted"] / tally.seconds, 1) if tally.seconds else 0.0,
        "answered_per_s": round(answered / tally.seconds, 1) if tally.seconds else 0.0,
        "events": answered,
        "accepted": tally.answered["accepted"],
        "duplicate": tally.answered["duplicate"],
        "rejected": tally.answered["rejected"],
        "unexpected": len(tally.surprises),
        "requests": tally.requests,
        "seconds": round(tally.seconds, 1),
    }


def new_mother(facility_id: str, n: int, day: date) -> dict:
    """A woman booking at ANC1, her status not known yet."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": "ClientEnrolled",
        "facility_id": facility_id,
        "occurred_at": datetime.combine(day, datetime.min.time(), UTC).replace(hour=9).isoformat(),
        "client_ref": f"LAT-{n:07d}-{uuid.uuid4().hex[:6]}",
        "data": {
            "birth_date": "1998-03-14",
            "status_at_enrolment": "pregnant",
            "hiv_status": "unknown",
            "on_art": False,
            "gestation_weeks": 18,
        },
    }


async def single_post_latency(
    endpoint: str, facility_ids: Sequence[str], mint: Mint, *, rate: float, seconds: float
) -> dict:
    """One event per request (a new mother at ANC1), `rate` requests per second, open loop: each
    request starts on schedule whatever the previous ones are doing."""
    tokens = Tokens(mint)
    yesterday = date.today() - timedelta(days=1)
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def one(client: httpx.AsyncClient, n: int) -> None:
        facility = facility_ids[n % len(facility_ids)]
        body = orjson.dumps({"events": [new_mother(facility, n, yesterday)]})
        started = time.perf_counter()
        response = await client.post(endpoint, content=body, headers=tokens.headers(facility))
        latencies.append((time.perf_counter() - started) * 1000)
        status = response.json()["results"][0]["status"] if response.status_code == 200 else str(response.status_code)
        statuses[status] = statuses.get(status, 0) + 1

    async with httpx.AsyncClient(timeout=30) as client:
        for facility in facility_ids:
            tokens.headers(facility)  # mint before the clock starts
        tasks = []
        started = time.perf_counter()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks)
    return {
        **summary(latencies, (50, 99)),
        "requests": len(latencies),
        "rate_per_s": rate,
        "answers": statuses,
    }
