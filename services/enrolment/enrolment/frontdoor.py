"""The one front door for EMRs: enrolment's `POST /v1/events` takes mother and infant events in one
batch, routes each event to the service that keeps its subject, and answers them all in the order
posted with one result vocabulary (`servicekit.intake`; docs/emr-intake.md).

- **Routing** is one registry by type, `ROUTES`: mother types to enrolment's own pipeline
  (`intake.py`), infant types to follow-up's intake over HTTP. A type whose service depends on the
  event is routed by a `Resolver` that asks enrolment's store (`recorded_here`: a correction goes to
  the service that recorded the event it names). A type in no route goes to enrolment's pipeline,
  which rejects it `unknown_event_type`, naming every type the door takes.
- **Mother events first**, in one unit of work, then the infant events (a delivery and its babies'
  events may come in one batch). A whole-request problem of the mother part (503 `contention`)
  refuses the whole batch before anything is forwarded.
- **Forwarding** posts the infant events to follow-up's `POST /v1/events` with the caller's own bearer
  token (follow-up checks the scope and each event's facility itself), `dry_run` passed through and
  the trace continued (`traceparent`). Follow-up down, slow or answering a server error: each of its
  events is `rejected` `service_unavailable` ("resend it later, unchanged"), never a 500, and the
  mother events keep their answers.

`submit` is the door itself; the JSON endpoint and the FHIR endpoint call it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import httpx
from opentelemetry import propagate
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit import pending
from servicekit.app import Runtime
from servicekit.auth import Principal
from servicekit.intake import REHEARSAL_HEADER, Code, check_batch_size, rehearsal_proof
from servicekit.intake import EventResult as _Result
from servicekit.metrics import INTAKE_DRY_RUN_EVENTS, INTAKE_EVENTS
from servicekit.problems import PROBLEM_JSON, Problem

from . import intake, queries, repository
from .personal_data import cipher_of
from .schemas import EVENT_TYPES, EVENT_VOIDED, BatchResult, EventResult
from .settings import Settings

log = logging.getLogger(__name__)


class Door(StrEnum):
    """Where an event is recorded."""

    enrolment = "enrolment"
    followup = "followup"


#: a type whose door depends on the event: given enrolment's session and the raw events of that
#: type, the door of each (in order)
Resolver = Callable[[AsyncSession, Sequence[dict[str, Any]]], Awaitable[list[Door]]]

#: the infant events follow-up takes (followup/schemas.py INFANT_EVENT_TYPES; a test keeps them equal)
INFANT_TYPES: tuple[str, ...] = (
    "InfantProphylaxisRecorded",
    "InfantFeedingRecorded",
    "InfantTestResulted",
    "InfantArtInitiated",
    "InfantVisitRecorded",
    "InfantCotrimoxazoleRecorded",
    "InfantOutcomeRecorded",
)


#: how the front door's /openapi.json shows an infant event (follow-up's /openapi.json has its fields)
INFANT_EVENT_SCHEMA: dict[str, Any] = {
    "title": "InfantEvent",
    "type": "object",
    "description": "An infant event, recorded by follow-up: its fields are in follow-up's /docs (InfantEvent) and"
    " services/followup/README.md.",
    "properties": {"type": {"type": "string", "enum": list(INFANT_TYPES)}},
    "required": ["type"],
}


def recorded_here(field: str) -> Resolver:
    """The resolver of a type that names another event by its event_id in `data.<field>` (a
    correction): enrolment if enrolment's store holds that event, or holds it `pending`
    (servicekit.pending: a void of a held event voids it there), else follow-up. An event whose
    field is missing or not a UUID goes to enrolment, whose pipeline rejects its shape."""

    async def resolve(session: AsyncSession, events: Sequence[dict[str, Any]]) -> list[Door]:
        named = [_uuid(e.get("data", {}).get(field) if isinstance(e.get("data"), dict) else None) for e in events]
        wanted = {n for n in named if n is not None}
        here = set(await repository.recorded_events(session, wanted)) | await pending.held_here(session, wanted)
        return [Door.enrolment if n is None or n in here else Door.followup for n in named]

    return resolve


#: THE routing registry: every type the front door takes and where it goes. Add a type here (one
#: line; a resolver for one that depends on the event, e.g. `"EventVoided": recorded_here("voided_event_id")`)
ROUTES: dict[str, Door | Resolver] = {
    **dict.fromkeys(EVENT_TYPES, Door.enrolment),
    **dict.fromkeys(INFANT_TYPES, Door.followup),
    # a void goes to the service that recorded the event it names; an event posted with `replaces`
    # goes where its type goes (a replacement has the type of what it replaces)
    EVENT_VOIDED: recorded_here("voided_event_id"),
}

#: enrolment's pipeline as the front door runs it: an unknown type's reason lists every routed type
DOOR_INTAKE = replace(intake.INTAKE, event_types=tuple(ROUTES), describes="an event the platform takes")


async def submit(
    runtime: Runtime[Settings],
    principal: Principal,
    token: str,
    events: Sequence[Any],
    *,
    dry_run: bool = False,
    counted: bool = True,
) -> BatchResult:
    """Record (or, `dry_run`, only answer) a batch of mother and infant events posted by `principal`
    with bearer `token`: one result per event, in the order posted (module docstring). `counted=False`:
    a dry run the platform runs for itself (the FHIR door's check of a transaction), kept out of
    `pmtct_intake_dry_run_events_total` here and in follow-up (`servicekit.intake.REHEARSAL_HEADER`)."""
    settings = runtime.settings
    check_batch_size(len(events), settings.intake_max_batch)
    doors = await route(runtime, events)
    results: dict[int, EventResult] = {}
    batch_id: UUID | None = None
    mother = [i for i, d in enumerate(doors) if d is Door.enrolment]
    infant = [i for i, d in enumerate(doors) if d is Door.followup]
    if mother:
        assert settings.pii_key is not None  # checked at start-up (settings.require_keys)
        reply = await intake.record_batch(
            runtime.begin,
            settings,
            runtime.registry,
            principal,
            cipher_of(settings.pii_key.get_secret_value()),
            [events[i] for i in mother],
            dry_run=dry_run,
            intake=DOOR_INTAKE,
            counted=counted,
        )
        batch_id = reply.batch_id
        results.update(_placed(reply.results, mother))
    if infant:
        forwarded = await forward(settings, token, [events[i] for i in infant], dry_run, counted=counted)
        batch_id = batch_id or forwarded.batch_id
        results.update(_placed(forwarded.results, infant))
    return BatchResult.of(batch_id or uuid4(), [results[i] for i in range(len(events))], dry_run=dry_run)


async def route(runtime: Runtime[Settings], events: Sequence[Any]) -> list[Door]:
    """The door of each posted event, by `ROUTES` (enrolment for what no route names)."""
    doors = [Door.enrolment] * len(events)
    asked: dict[Resolver, list[int]] = {}
    for i, raw in enumerate(events):
        tag = raw.get("type") if isinstance(raw, dict) else None
        found = ROUTES.get(tag) if isinstance(tag, str) else None
        if isinstance(found, Door):
            doors[i] = found
        elif found is not None:
            asked.setdefault(found, []).append(i)
    if asked:
        async with runtime.sessions() as session:
            for resolve, indices in asked.items():
                for i, door in zip(indices, await resolve(session, [events[i] for i in indices]), strict=True):
                    doors[i] = door
    return doors


async def forward(
    settings: Settings, token: str, events: list[Any], dry_run: bool, *, counted: bool = True
) -> BatchResult:
    """Post infant events to follow-up's intake on the caller's behalf; its answer, or each event
    `service_unavailable` when there is none to be had."""
    if settings.followup_url is None:
        return _unavailable(
            events, dry_run, counted, "This deployment does not say where follow-up is (PMTCT_FOLLOWUP_URL)."
        )
    url = str(settings.followup_url).rstrip("/") + "/v1/events"
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if dry_run and not counted:
        proof = rehearsal_proof(settings.hmac_key, token)
        if proof is not None:
            headers[REHEARSAL_HEADER] = proof
    propagate.inject(headers)  # the trace goes on into follow-up
    # the events as posted (NaN included, as the standard library reads and writes it): follow-up
    # answers each exactly as if the EMR had posted it there
    body = json.dumps({"events": events}).encode()
    try:
        async with httpx.AsyncClient(timeout=settings.followup_timeout_s) as http:
            response = await http.post(
                url, content=body, headers=headers, params={"dry_run": "true"} if dry_run else None
            )
    except httpx.TimeoutException:
        log.warning("front door: follow-up did not answer within %.0f s", settings.followup_timeout_s)
        return _unavailable(
            events,
            dry_run,
            counted,
            f"Follow-up did not answer within {settings.followup_timeout_s:g} s; resend this event later.",
        )
    except httpx.HTTPError as exc:
        log.warning("front door: follow-up is not reachable (%s)", type(exc).__name__)
        return _unavailable(events, dry_run, counted, "Follow-up is not reachable just now; resend this event later.")
    if response.status_code == 200:
        try:
            reply = BatchResult.model_validate_json(response.content)
        except ValidationError:
            reply = None
        if reply is not None and sorted(r.index for r in reply.results) == list(range(len(events))):
            return reply
        log.warning("front door: follow-up's answer could not be read")
        return _unavailable(events, dry_run, counted, "Follow-up's answer could not be read; resend this event later.")
    return _refused(events, dry_run, counted, response)


async def event_state(
    runtime: Runtime[Settings], session: AsyncSession, principal: Principal, token: str, event_id: UUID
) -> pending.EventState:
    """`GET /v1/events/{event_id}` at the front door: what became of a mother event (enrolment's
    own records), else of an infant event (follow-up's `GET /v1/events/{event_id}`, asked with the
    caller's own token), so the EMR asks one address for every event it posted. 404
    `unknown_event` when neither holds it for a facility of the caller; 503 `service_unavailable`
    when enrolment does not hold it and follow-up cannot be asked."""
    try:
        return await pending.event_state(session, event_id, principal, queries.accepted_event, store=intake.STORE)
    except Problem as problem:
        if problem.status != 404:
            raise
        not_here = problem
    settings = runtime.settings
    if settings.followup_url is None:
        raise not_here
    url = f"{str(settings.followup_url).rstrip('/')}/v1/events/{event_id}"
    headers = {"authorization": f"Bearer {token}"}
    propagate.inject(headers)
    try:
        async with httpx.AsyncClient(timeout=settings.followup_timeout_s) as http:
            response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("front door: follow-up is not reachable for an event lookup (%s)", type(exc).__name__)
        response = None
    if response is not None and response.status_code == 200:
        try:
            return pending.EventState.model_validate_json(response.content)
        except ValidationError:
            log.warning("front door: follow-up's event state could not be read")
    elif response is not None and response.status_code == 404:
        raise not_here
    elif response is not None:
        log.warning("front door: follow-up answered %d to an event lookup", response.status_code)
    unavailable = Problem(
        503,
        Code.service_unavailable,
        f"Event {event_id} is not a mother event recorded here, and follow-up (which keeps infant events) did not"
        " answer; ask again later.",
    )
    unavailable.headers["Retry-After"] = "5"
    raise unavailable


def _refused(events: list[Any], dry_run: bool, counted: bool, response: httpx.Response) -> BatchResult:
    """Follow-up refused the forwarded request as a whole: a server error (or anything without a
    problem code of the vocabulary) is `service_unavailable`; otherwise each event gets its code."""
    code: Code | None = None
    detail = ""
    if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        try:
            problem = response.json()
            code, detail = Code(problem.get("code")), str(problem.get("detail") or "")
        except (ValueError, AttributeError):
            code = None
    if response.status_code >= 500 or code is None or code.status is None:
        log.warning("front door: follow-up answered %d", response.status_code)
        return _unavailable(
            events, dry_run, counted, f"Follow-up answered {response.status_code}; resend this event later."
        )
    return _answered_here(events, dry_run, counted, code, f"Follow-up: {detail}")


def _unavailable(events: list[Any], dry_run: bool, counted: bool, reason: str) -> BatchResult:
    return _answered_here(events, dry_run, counted, Code.service_unavailable, reason)


def _answered_here(events: list[Any], dry_run: bool, counted: bool, code: Code, reason: str) -> BatchResult:
    """Every forwarded event answered by the front door itself, since follow-up did not answer
    them; counted here (follow-up never saw them), as the front door's (`service="enrolment"`)."""
    if counted or not dry_run:
        counter = INTAKE_DRY_RUN_EVENTS if dry_run else INTAKE_EVENTS
        counter.labels("enrolment", "rejected", code.value).inc(len(events))
    return BatchResult.of(
        uuid4(), [EventResult.rejection(i, _event_id(e), code, reason) for i, e in enumerate(events)], dry_run=dry_run
    )


def _placed(results: Sequence[_Result], positions: list[int]) -> dict[int, EventResult]:
    """A part's results at their places in the posted batch."""
    return {
        positions[r.index]: EventResult.model_validate({**r.model_dump(), "index": positions[r.index]}) for r in results
    }


def _event_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
