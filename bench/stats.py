"""Percentiles, the way latency is reported: nearest rank, so p99 is a latency that happened."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], percentiles: Sequence[int]) -> dict[str, float | None]:
    """`p50_ms`, `p99_ms`, ... and `max_ms` of latencies in milliseconds (None without any)."""
    if not values:
        return {**{f"p{p}_ms": None for p in percentiles}, "max_ms": None}
    out = {f"p{p}_ms": round(percentile(values, p), 1) for p in percentiles}
    out["max_ms"] = round(max(values), 1)
    return out
