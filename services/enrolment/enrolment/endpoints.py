"""HTTP endpoints of the enrolment service: a few lines each, the work is in `queries.py`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query

from servicekit import intake
from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import BearerToken, Principal, require
from servicekit.problems import Problem

from . import caseloads, frontdoor, queries
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
