"""Posting a programme through the public APIs, as the clinics' EMRs would.

Each facility's EMR has its own token (`events:write` for that facility only) and posts its events
in arrival order, in batches, to enrolment (mother events) and follow-up (infant events). EMRs of
different facilities post concurrently. Time is cut into windows of arrival: in each, mother
events go first, then infant events, because an infant exists for follow-up only once the
platform has carried its delivery there. An infant event that still finds its infant unknown is
retried after a pause (the platform is eventually consistent), keeping that infant's events in
order. Some EMRs keep the platform's infant ids from delivery results and use them; the others
keep naming infants by their own record number.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import orjson

from .events import EmrEvent, Outcome, Service

#: follow-up's codes for "this infant is not known (yet)": worth a retry while deliveries propagate
UNKNOWN_INFANT_CODES = frozenset({"unknown_infant", "infant_not_found"})
#: how long an infant event may wait for its infant to reach follow-up
INFANT_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    enrolment: str
    followup: str

    def events_url(self, service: Service) -> str:
        return f"{getattr(self, service).rstrip('/')}/v1/events"


@dataclass
class Tally:
    """What the platform answered, against what the generator intended."""

    intended: Counter[Outcome] = field(default_factory=Counter)
    answered: Counter[Outcome] = field(default_factory=Counter)
    #: rejection codes, as answered
    codes: Counter[str] = field(default_factory=Counter)
    #: events answered otherwise than intended: (event, answer, code, reason)
    surprises: list[tuple[EmrEvent, str, str | None, str | None]] = field(default_factory=list)
    #: (facility_id, infant_ref) -> the platform's infant id, from delivery results
    infant_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (facility_id, client_ref) -> the platform's client id, from enrolment results
    client_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def matches(self) -> bool:
        return not self.surprises and self.answered == self.intended

    def posted_before(self) -> list[tuple[EmrEvent, str, str | None, str | None]]:
        """The surprises that are no surprise on a resend: answered `duplicate` where a first post
        intended the event recorded (`accepted`) or held (`pending`): the platform had it already,
        from an earlier post of this programme."""
        return [s for s in self.surprises if s[1] == "duplicate" and s[0].expect in ("accepted", "pending")]

    @property
    def nothing_new(self) -> bool:
        """Everything of the programme was recorded before: a resend of a programme posted already."""
        return bool(self.posted_before()) and self.answered["accepted"] == 0 and self.answered["pending"] == 0

    def record(self, event: EmrEvent, result: dict[str, Any]) -> None:
        status = result.get("status")
        self.intended[event.expect] += 1
        if status in ("accepted", "duplicate", "rejected", "pending"):
            self.answered[status] += 1
        if status == "rejected":
            self.codes[result.get("code") or "unknown"] += 1
        if status != event.expect:
            self.surprises.append((event, str(status), result.get("code"), result.get("reason")))
        if event.type == "ClientEnrolled" and result.get("client_id"):
            self.client_ids[(event.facility_id, event.body["client_ref"])] = str(result["client_id"])
        for infant in result.get("infants") or ():
            self.infant_ids[(event.facility_id, infant["infant_ref"])] = str(infant["infant_id"])


class Tokens:
    """One bearer token per facility EMR, minted on first use."""

    def __init__(self, mint: Callable[[str, str, list[str]], str]) -> None:
        self._mint = mint
        self._tokens: dict[str, str] = {}

    def headers(self, facility_id: str) -> dict[str, str]:
        token = self._tokens.get(facility_id)
        if token is None:
            token = self._tokens[facility_id] = self._mint(f"emr-{facility_id}", "events:write", [facility_id])
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class RateLimit:
    """At most `per_second` events per second, shared by every EMR (None: as fast as answered)."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        if not self.per_second:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(self._next, now) + n / self.per_second
        if wait > 0:
            await asyncio.sleep(wait)


def stores_platform_ids(facility_id: str) -> bool:
    """Whether this facility's EMR keeps the platform's infant ids (about half of them do)."""
    return zlib.crc32(facility_id.encode()) % 2 == 0


def windows(events: Sequence[EmrEvent], length: timedelta | None) -> list[list[EmrEvent]]:
    """Cut events (in arrival order) into consecutive windows of arrival; one window if None."""
    if length is None or not events:
        return [list(events)] if events else []
    out: list[list[EmrEvent]] = []
    start = events[0].arrives_at
    for event in events:
        if not out or event.arrives_at >= start + length:
            out.append([])
            start = event.arrives_at
        out[-1].append(event)
    return out


class Poster:
    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Endpoints,
        tokens: Tokens,
        *,
        batch_size: int = 100,
        concurrency: int = 4,
        rate: float | None = None,
        on_answered: Callable[[EmrEvent, dict[str, Any]], None] | None = None,
        until: float | None = None,
        attempts: int = 5,
    ) -> None:
        self.client = client
        self.endpoints = endpoints
        self.tokens = tokens
        self.batch_size = batch_size
        self.slots = asyncio.Semaphore(concurrency)
        self.rate = RateLimit(rate)
        #: called with each event and its final answer, as soon as it is known
        self.on_answered = on_answered or (lambda event, result: None)
        #: a `time.monotonic()` after which no new batch is sent (the rest stays unposted)
        self.until = until
        #: tries of one request before its events are answered `failed` (waits 0.5 s, doubling up to 5 s)
        self.attempts = attempts
        self.tally = Tally()
        #: events answered `pending` that should be accepted: their fate is asked at the end (`settle`)
        self.held: list[EmrEvent] = []

    async def post_all(self, events: Sequence[EmrEvent], window: timedelta | None = timedelta(days=30)) -> Tally:
        for chunk in windows(events, window):
            await self.post_service("enrolment", [e for e in chunk if e.service == "enrolment"])
            await self.post_service("followup", [e for e in chunk if e.service == "followup"])
        await self.settle()
        return self.tally

    async def settle(self, wait_s: float = INFANT_WAIT_S) -> None:
        """What became of the events answered `pending` (held until their woman's enrolment or
        their infant's delivery arrives): asked of `GET /v1/events/{event_id}`, as an EMR does,
        until each is decided or `wait_s` has passed (then it counts as pending)."""
        deadline = time.monotonic() + wait_s
        pause = 0.2
        while self.held:
            still: list[EmrEvent] = []
            for event in self.held:
                url = f"{self.endpoints.events_url(event.service)}/{event.event_id}"
                response = await self.client.get(url, headers=self.tokens.headers(event.facility_id))
                state = response.json() if response.status_code == 200 else {"status": "pending"}
                if state.get("status") == "pending" and time.monotonic() < deadline:
                    still.append(event)
                    continue
                self.record(event, _answer_of(event, state))
            self.held = still
            if still:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def record(self, event: EmrEvent, result: dict[str, Any]) -> None:
        if result.get("status") == "pending" and event.expect == "accepted" and event not in self.held:
            self.held.append(event)
            return
        self.tally.record(event, result)
        self.on_answered(event, result)

    async def post_service(self, service: Service, events: Sequence[EmrEvent]) -> Tally:
        """Events for one service, each facility's EMR posting its own in order, side by side."""
        started = time.perf_counter()
        by_facility: dict[str, list[EmrEvent]] = defaultdict(list)
        for event in events:
            by_facility[event.facility_id].append(event)
        await asyncio.gather(*(self.post_facility(service, fid, evs) for fid, evs in by_facility.items()))
        self.tally.seconds += time.perf_counter() - started
        return self.tally

    async def post_facility(self, service: Service, facility_id: str, events: list[EmrEvent]) -> None:
        """One EMR's events of a window, in order; infant events whose infant is not known yet
        are retried (with the infant's later events behind them) until it is."""
        waiting: list[EmrEvent] = []
        held: set[str] = set()
        queue = events
        deadline = time.monotonic() + INFANT_WAIT_S
        pause = 0.2
        while queue:
            for start in range(0, len(queue), self.batch_size):
                if self.until is not None and time.monotonic() >= self.until:
                    return
                batch = []
                for event in queue[start : start + self.batch_size]:
                    if _infant(event) in held:
                        waiting.append(event)
                    else:
                        batch.append(event)
                if not batch:
                    continue
                for event, result in zip(batch, await self.post_batch(service, batch), strict=True):
                    if self.worth_retrying(event, result, deadline):
                        waiting.append(event)
                        held.add(_infant(event))
                    else:
                        self.record(event, result)
            queue, waiting, held = waiting, [], set()
            if queue:
                self.tally.retries += len(queue)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def worth_retrying(self, event: EmrEvent, result: dict[str, Any], deadline: float) -> bool:
        return (
            event.service == "followup"
            and event.expect != "rejected"
            and result.get("status") == "rejected"
            and result.get("code") in UNKNOWN_INFANT_CODES
            and time.monotonic() < deadline
        )

    def request_body(self, event: EmrEvent) -> dict[str, Any]:
        ref = event.body.get("infant_ref")
        if ref and stores_platform_ids(event.facility_id):
            infant_id = self.tally.infant_ids.get((event.facility_id, ref))
            if infant_id:
                body = {k: v for k, v in event.body.items() if k != "infant_ref"}
                body["infant_id"] = infant_id
                return body
        return event.body

    async def post_batch(self, service: Service, batch: list[EmrEvent]) -> list[dict[str, Any]]:
        """One request; a failed request (network, 5xx) is sent again, as EMRs do: the platform's
        idempotency turns what already landed into `duplicate`, which then counts as the
        original answer."""
        await self.rate.take(len(batch))
        payload = orjson.dumps({"events": [self.request_body(e) for e in batch]})
        headers = self.tokens.headers(batch[0].facility_id)
        delay = 0.5
        for attempt in range(1, self.attempts + 1):
            async with self.slots:
                self.tally.requests += 1
                try:
                    response = await self.client.post(
                        self.endpoints.events_url(service), content=payload, headers=headers
                    )
                except httpx.TransportError as exc:
                    failure: str = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        results = response.json()["results"]
                        if attempt > 1:
                            results = [_first_answer(e, r) for e, r in zip(batch, results, strict=True)]
                        return results
                    failure = f"HTTP {response.status_code}: {response.text[:300]}"
                    if response.status_code < 500:
                        return [_whole_batch_refused(response) for _ in batch]
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return [{"status": "failed", "code": "request_failed", "reason": failure} for _ in batch]


def _infant(event: EmrEvent) -> str:
    return event.body.get("infant_ref") or ""


def _answer_of(event: EmrEvent, state: dict[str, Any]) -> dict[str, Any]:
    """A held event's state (`GET /v1/events/{event_id}`) as the answer it stands for."""
    ids = state.get("ids") or {}
    answer: dict[str, Any] = {"status": state.get("status"), "code": state.get("code"), "reason": state.get("reason")}
    answer.update({k: v for k, v in ids.items() if k != "infant_ids"})
    if ids.get("infant_ids"):
        refs = [i["infant_ref"] for i in event.body["data"]["infants"]]
        answer["infants"] = [{"infant_ref": r, "infant_id": i} for r, i in zip(refs, ids["infant_ids"], strict=True)]
    return answer


def _first_answer(event: EmrEvent, result: dict[str, Any]) -> dict[str, Any]:
    if event.expect == "accepted" and result.get("status") == "duplicate":
        return {**result, "status": "accepted"}
    return result


def _whole_batch_refused(response: httpx.Response) -> dict[str, Any]:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    return {
        "status": "refused",
        "code": problem.get("code") or f"http_{response.status_code}",
        "reason": problem.get("detail") or response.text[:300],
    }
