"""Read latency with the programme loaded: a Mentor Mother's worklist and the programme indicators,
one request at a time (what one user waits for), cycling over facilities and scopes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date

import httpx

from emrsim.runner import Mint

from .stats import summary


async def timed_gets(client: httpx.AsyncClient, requests: Sequence[tuple[str, dict]], headers: dict) -> dict:
    latencies: list[float] = []
    sizes: list[int] = []
    failures = 0
    for url, params in requests:
        started = time.perf_counter()
        response = await client.get(url, params=params, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures += 1
        sizes.append(len(response.content))
    return {
        **summary(latencies, (50, 95)),
        "requests": len(latencies),
        "failures": failures,
        "mean_response_kb": round(sum(sizes) / len(sizes) / 1024, 1),
    }


async def worklist(url: str, facility_ids: Sequence[str], mint: Mint, *, requests: int, as_of: date) -> dict:
    headers = {"Authorization": "Bearer " + mint("bench-mentor-mothers", "worklist:read", ["*"])}
    plan = [
        (f"{url}/v1/worklist", {"facility_id": facility_ids[n % len(facility_ids)], "as_of": as_of.isoformat()})
        for n in range(requests)
    ]
    async with httpx.AsyncClient(timeout=60) as client:
        probe = await client.get(plan[0][0], params=plan[0][1], headers=headers)
        items = probe.json().get("count") if probe.status_code == 200 else None
        result = await timed_gets(client, plan, headers)
    result["items_per_facility_sample"] = items
    return result


async def indicators(url: str, scopes: Sequence[dict], mint: Mint, *, requests: int, period: str) -> dict:
    """`scopes`: query parameters naming a facility, district or country."""
    headers = {"Authorization": "Bearer " + mint("bench-programme-manager", "reports:read", ["*"])}
    plan = [(f"{url}/v1/indicators", {**scopes[n % len(scopes)], "period": period}) for n in range(requests)]
    async with httpx.AsyncClient(timeout=60) as client:
        return await timed_gets(client, plan, headers)
