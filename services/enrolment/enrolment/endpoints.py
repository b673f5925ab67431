"""HTTP endpoints of the enrolment service: a few lines each, the work is in `queries.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from servicekit import intake, pending
from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import BearerToken, Principal, require
from servicekit.fhir import fhir_response
from servicekit.problems import FHIR_JSON, Problem

from . import caseloads, fhir_concepts, fhir_door, frontdoor, queries
from .fhir_translate import BundleRefused, Setup
from .personal_data import PersonalDataCipher, cipher_of
from .schemas import (
    REF_PATTERN,
    TEXT_PATTERN,
    BatchResult,
    CaseloadPersonalDataReply,
    CaseloadRead,
    ClientPublic,
    EventBatch,
    PersonalDataRead,
)
from .settings import Settings

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
router = APIRouter(prefix="/v1", tags=["enrolment"])


def cipher(runtime: RuntimeDep) -> PersonalDataCipher:
    key = runtime.settings.pii_key
    assert key is not None  # checked at start-up (settings.require_keys)
    return cipher_of(key.get_secret_value())


def purpose_of_use(
    purpose: Annotated[
        str | None, Query(max_length=200, pattern=TEXT_PATTERN, description="Why personal data is read (audited).")
    ] = None,
    x_purpose: Annotated[str | None, Header(alias="X-Purpose", max_length=200, pattern=TEXT_PATTERN)] = None,
) -> str:
    stated = (purpose or x_purpose or "").strip()
    if not stated:
        raise Problem(
            400,
            "purpose_required",
            "Say why you read this woman's personal data (?purpose=... or an X-Purpose header); it is recorded.",
        )
    return stated


CipherDep = Annotated[PersonalDataCipher, Depends(cipher)]
PurposeDep = Annotated[str, Depends(purpose_of_use)]


@router.post(
    "/events",
    summary="The EMRs' front door: record a batch of mother and infant events",
    description="Up to 1000 events, mother and infant events mixed; each is routed to the service that keeps"
    " it (infant events to follow-up) and answered in the order posted: accepted, duplicate, or rejected with a"
    " code and a reason. The codes, and what an EMR should do for each: docs/emr-intake.md.",
    responses=intake.RESPONSES,
)
async def post_events(
    batch: EventBatch,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("events:write")],
    token: BearerToken,
    dry_run: intake.DryRun = False,
) -> BatchResult:
    return await frontdoor.submit(runtime, principal, token, batch.events, dry_run=dry_run)


@router.get(
    "/events/{event_id}",
    summary="What became of a posted event, mother or infant: accepted, pending, expired or rejected",
    description="An event answered `pending` is held until what it waits for is posted; this says what became"
    " of it (and of any event recorded), with the ids the platform gave: docs/emr-intake.md. The front door's"
    " one address: an infant event is asked of follow-up, with the caller's token.",
    responses={
        **intake.STATE_RESPONSES,
        503: {
            "description": "`service_unavailable`: the event is not a mother event recorded here and follow-up did"
            " not answer; ask again later (`Retry-After`).",
        },
    },
)
async def get_event(
    event_id: UUID,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("events:write")],
    token: BearerToken,
) -> pending.EventState:
    return await frontdoor.event_state(runtime, session, principal, token, event_id)


@router.get("/clients/{client_id}", summary="A client with her personal data (audited)")
async def get_client(
    client_id: UUID,
    cipher: CipherDep,
    purpose: PurposeDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("clients:read")],
) -> ClientPublic:
    clock = runtime.settings.clock
    async with runtime.begin() as uow:  # the audit row commits before the answer leaves
        found = await queries.read_client(uow.session, cipher, principal, client_id, purpose, "by_client_id", clock)
        await uow.commit()
    return found


@router.get("/clients", summary="Find a client by the EMR's record number (audited)")
async def find_client(
    facility_id: Annotated[str, Query(min_length=1, max_length=64, pattern=REF_PATTERN)],
    client_ref: Annotated[str, Query(min_length=1, max_length=64, pattern=REF_PATTERN)],
    cipher: CipherDep,
    purpose: PurposeDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("clients:read")],
) -> ClientPublic:
    clock = runtime.settings.clock
    async with runtime.begin() as uow:  # the audit row commits before the answer leaves
        found = await queries.find_client(uow.session, cipher, principal, facility_id, client_ref, purpose, clock)
        await uow.commit()
    return found


@router.post(
    "/caseload/personal-data",
    summary="Whom a Mentor Mother's worklist rows are about: one audited read, her own caseload only",
    description="The app posts the worklist's client ids (follow-up's `GET /v1/worklist?mentor=me`) and why it"
    " reads them. Clients not in the caller's caseload are listed in `not_in_caseload` and not read.",
    responses={403: {"description": "`not_staff`, `facility_forbidden`, `not_in_caseload`, `insufficient_scope`"}},
)
async def read_caseload(
    body: CaseloadRead,
    cipher: CipherDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("caseload:read")],
) -> CaseloadPersonalDataReply:
    async with runtime.begin() as uow:  # the audit rows commit before the answer leaves
        found = await caseloads.read_caseload(uow, cipher, principal, body.client_ids, body.purpose.strip())
        await uow.commit()
    return found


@router.get("/audit", summary="Who read which client's personal data, and why (admin)")
async def audit(
    session: SessionDep,
    _: Annotated[Principal, require("admin")],
    client_id: UUID | None = None,
    caller: Annotated[str | None, Query(max_length=200, pattern=TEXT_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PersonalDataRead]:
    return await queries.personal_data_reads(session, client_id, caller, limit)


# --- FHIR R4 intake (fhir_door.py) ------------------------------------------------------------------

fhir_router = APIRouter(prefix="/fhir", tags=["fhir"])

_FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `transaction-response` or `batch-response` Bundle: one entry per posted entry, in order,"
        " each with `response.status` (201 Created, 200 OK, or 4xx with an OperationOutcome naming the entry).",
        "content": {FHIR_JSON: {"schema": {"type": "object", "description": "an R4 Bundle"}}},
    },
    **{
        status: {"description": description, "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
        for status, description in {
            400: "OperationOutcome: not JSON, not a Bundle, an invalid resource (a transaction: its issues name"
            " each entry, `Bundle.entry[i]`; nothing was recorded)",
            401: "OperationOutcome: no valid bearer token",
            403: "OperationOutcome: the token lacks `events:write`",
            413: "OperationOutcome: the body is larger than the service reads (4 MiB), or more than 1000 entries",
            415: "OperationOutcome: send `Content-Type: application/fhir+json`",
            422: "OperationOutcome: a transaction with a refused entry (an unknown code, a resource type this door"
            " does not take, an event the platform's rules refuse): one issue per refused entry; nothing recorded",
            503: "OperationOutcome: the database or broker is not reachable, or concurrent posts kept racing;"
            " resend the Bundle unchanged",
        }.items()
    },
}
_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FHIR_JSON: {"schema": {"type": "object", "description": "an R4 Bundle of type transaction or batch"}}
        },
    }
}


def fhir_setup(runtime: Runtime[Settings], principal: Principal) -> Setup:
    settings = runtime.settings
    return Setup(
        concepts=fhir_concepts.load(settings.fhir_concept_map),
        facilities=frozenset(f.facility_id for f in runtime.registry.all()),
        token_facilities=principal.facilities,
        zone=settings.clock.zone,
        record_number=tuple(settings.fhir_record_number_identifiers),
        national_id=tuple(settings.fhir_national_id_identifiers),
    )


@fhir_router.post(
    "",
    summary="Record a FHIR R4 transaction or batch Bundle from an EMR (OpenMRS FHIR2 style)",
    description="Each resource becomes the platform's own events (docs/fhir-intake.md), recorded through the"
    " front door as if posted to `POST /v1/events`. A transaction is all or nothing (checked by a dry run first);"
    " a batch is taken entry by entry. `?dry_run=true` answers the same and records nothing.",
    responses=_FHIR_RESPONSES,
    openapi_extra=_BUNDLE_BODY,
)
async def post_bundle(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("events:write")],
    token: BearerToken,
    dry_run: intake.DryRun = False,
) -> Response:
    body = fhir_door.read_body(
        request.headers.get("content-type", ""), await request.body(), runtime.settings.intake_max_batch
    )

    async def submit(events: list[dict[str, Any]], rehearse: bool, counted: bool) -> Sequence[Any]:
        return (await frontdoor.submit(runtime, principal, token, events, dry_run=rehearse, counted=counted)).results

    async def chain(event_id: str) -> list[str]:
        """The event and those that replaced it, oldest first, as `GET /v1/events/{event_id}` says."""
        found: list[str] = []
        current: str | None = event_id
        async with runtime.sessions() as session:
            while current is not None and current not in found and len(found) < 20:
                try:
                    state = await frontdoor.event_state(runtime, session, principal, token, UUID(current))
                except Problem:
                    break
                if state.status not in ("accepted", "voided"):
                    break
                found.append(current)
                current = str(state.voided_by) if state.status == "voided" and state.voided_by else None
        return found

    try:
        answer = await fhir_door.record(body, fhir_setup(runtime, principal), submit, dry_run, chain)
    except BundleRefused as exc:
        raise Problem(exc.status, exc.code, exc.detail) from None
    return fhir_response(answer)
