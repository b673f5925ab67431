"""HTTP endpoints of the followup service."""

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from servicekit import intake, pending
from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import BearerToken, Principal, require
from servicekit.problems import Problem

from . import intake as emr_intake
from . import queries
from .mentoring import endpoints as mentoring
from .mentoring import queries as mentoring_queries
from .mentoring.schemas import MentorWorklist
from .schemas import EventBatch, InfantPublic, IngestReply, Worklist
from .settings import Settings

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
router = APIRouter(prefix="/v1", tags=["followup"])

WorklistReader = Annotated[Principal, require("worklist:read")]


@router.post(
    "/events",
    summary="Post a batch of infant events (at most 1000)",
    description="One result per event, in the order posted: accepted, duplicate, or rejected with a code and"
    " a reason. The codes, and what an EMR should do for each: docs/emr-intake.md.",
    responses=intake.RESPONSES,
)
async def post_events(
    body: EventBatch,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("events:write")],
    token: BearerToken,
    dry_run: intake.DryRun = False,
    rehearsal: intake.Rehearsal = None,
) -> IngestReply:
    return await emr_intake.record(
        runtime.begin,
        runtime.settings,
        runtime.registry,
        principal,
        body.events,
        dry_run=dry_run,
        counted=not intake.is_rehearsal(runtime.settings.hmac_key, token, rehearsal),
    )


@router.get(
    "/events/{event_id}",
    summary="What became of a posted infant event: accepted, pending, expired or rejected",
    description="An event answered `pending` is held until its infant is in follow-up; this says what became of"
    " it (and of any event recorded here), with the infant's id: docs/emr-intake.md.",
    responses=intake.STATE_RESPONSES,
)
async def get_event(
    event_id: UUID, session: SessionDep, principal: Annotated[Principal, require("events:write")]
) -> pending.EventState:
    return await pending.event_state(session, event_id, principal, queries.accepted_event, store=emr_intake.STORE)


@router.get("/infants/{infant_id}", summary="An infant's follow-up: plan, results and status")
async def get_infant(
    infant_id: UUID, session: SessionDep, runtime: RuntimeDep, principal: WorklistReader
) -> InfantPublic:
    return await queries.infant_record(session, infant_id, principal, runtime.settings)


@router.get(
    "/worklist",
    summary="What is due and overdue, most urgent first: at a facility, or in a Mentor Mother's caseload",
    description="`facility_id=F`: the facility's worklist. `mentor=me` (the token's subject, a staff member) or"
    " `mentor=ID` (her site coordinator, an admin): her caseload's items, tracing list and next contacts.",
    responses={
        403: {"description": "`facility_forbidden`, `not_staff`, `not_coordinator`, `insufficient_scope`"},
        404: {"description": "`unknown_facility`, `unknown_staff`"},
        422: {"description": "`facility_or_mentor`: give one of facility_id and mentor"},
    },
)
async def get_worklist(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: WorklistReader,
    facility_id: str | None = None,
    mentor: Annotated[str | None, Query(pattern=r"^(me|[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})$")] = None,
    as_of: date | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Worklist | MentorWorklist:
    day = as_of or runtime.settings.clock.today()
    if (facility_id is None) == (mentor is None):
        raise Problem(422, "facility_or_mentor", "Ask for one worklist: facility_id=F, or mentor=me / mentor=ID.")
    if mentor is not None:
        async with runtime.begin() as uow:
            member = await mentoring.mentor_asked(uow, principal, mentor)
            return await mentoring_queries.mentor_worklist(uow.session, member, day, limit, runtime.settings.eid)
    assert facility_id is not None
    if facility_id not in runtime.registry:
        raise Problem(404, "unknown_facility", f"Facility {facility_id!r} is not registered.")
    principal.require_facility(facility_id)
    return await queries.worklist(session, facility_id, day, limit, runtime.settings.eid)
