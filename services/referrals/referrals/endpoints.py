"""HTTP endpoints of the referrals service: the referrals API, the ministry feed and the FHIR view."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from pmtct_events.referrals import ReferralStatus
from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import Principal, require

from . import api, fhir, queries
from .rules import Action
from .schemas import (
    FeedPage,
    ManualAction,
    ReferralActionRequest,
    ReferralCreate,
    ReferralDetail,
    ReferralList,
    ReferralPublic,
)
from .settings import Settings

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
router = APIRouter(prefix="/v1", tags=["referrals"])
fhir_router = APIRouter(prefix="/fhir", tags=["fhir"])

Writer = Annotated[Principal, require("referrals:write")]
Reader = Annotated[Principal, require("referrals:read")]


@router.post("/referrals", status_code=201, summary="Refer a mother or an infant")
async def create_referral(
    body: ReferralCreate, principal: Writer, rt: RuntimeDep, response: Response
) -> ReferralPublic:
    r = await api.create_referral(rt, principal, body)
    response.headers["Location"] = f"/v1/referrals/{r.id}"
    return ReferralPublic.of(r)


@router.post("/referrals/{referral_id}/{action}", summary="Accept, complete, decline or cancel a referral")
async def act_on_referral(
    referral_id: UUID,
    action: ManualAction,
    principal: Writer,
    rt: RuntimeDep,
    body: Annotated[ReferralActionRequest | None, Body()] = None,
) -> ReferralPublic:
    r = await api.act(rt, principal, referral_id, Action(action.value), body or ReferralActionRequest())
    return ReferralPublic.of(r)


@router.get("/referrals", summary="Referrals from or to the caller's facilities, newest first")
async def list_referrals(
    principal: Reader,
    session: SessionDep,
    facility_id: str | None = None,
    status: ReferralStatus | None = None,
    subject_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReferralList:
    found = await queries.list_referrals(
        session, principal, facility_id=facility_id, status=status, subject_id=subject_id, limit=limit, offset=offset
    )
    return ReferralList(items=[ReferralPublic.of(r) for r in found], limit=limit, offset=offset)


@router.get("/referrals/{referral_id}", summary="One referral with its history and notes")
async def get_referral(referral_id: UUID, principal: Reader, session: SessionDep) -> ReferralDetail:
    r = await queries.get_referral(session, principal, referral_id)
    history = await queries.history(session, referral_id)
    return ReferralDetail(**ReferralPublic.of(r).model_dump(), history=history)


@router.get("/feed", summary="The ministry referral feed: every change, in commit order, from a cursor")
async def read_feed(
    principal: Reader,
    session: SessionDep,
    rt: RuntimeDep,
    after: Annotated[str | None, Query(description="next_cursor of the previous page; omit to start")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    facility_id: str | None = None,
) -> FeedPage:
    limit = min(limit, rt.settings.feed_max_page)
    return await queries.read_feed(session, principal, after=after, limit=limit, facility_id=facility_id)


def _fhir(resource) -> Response:
    return Response(resource.model_dump_json(), media_type=fhir.FHIR_JSON)


@fhir_router.get("/ServiceRequest/{referral_id}", summary="A referral as a FHIR R4 ServiceRequest")
async def get_service_request(referral_id: UUID, principal: Reader, session: SessionDep) -> Response:
    return _fhir(fhir.service_request(await queries.get_referral(session, principal, referral_id)))


@fhir_router.get("/Task/{referral_id}", summary="A referral's fulfilment as a FHIR R4 Task")
async def get_task(referral_id: UUID, principal: Reader, session: SessionDep) -> Response:
    return _fhir(fhir.task(await queries.get_referral(session, principal, referral_id)))


@fhir_router.get("/Task", summary="Search referral Tasks (status, business-status, owner, focus, patient)")
async def search_tasks(
    request: Request,
    principal: Reader,
    session: SessionDep,
    id_: Annotated[str | None, Query(alias="_id")] = None,
    focus: str | None = None,
    owner: str | None = None,
    status: str | None = None,
    business_status: Annotated[str | None, Query(alias="business-status")] = None,
    patient: str | None = None,
    subject: str | None = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 100,
) -> Response:
    query = fhir.task_query(
        ids=id_, focus=focus, owner=owner, status=status, business_status=business_status, patient=patient or subject
    )
    found = await queries.search_tasks(session, principal, query, limit=count)
    return _fhir(fhir.search_bundle([fhir.task(r) for r in found], str(request.url)))
