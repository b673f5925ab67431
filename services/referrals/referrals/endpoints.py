"""HTTP endpoints of the referrals service: the referrals API, the ministry feed and the FHIR view."""

from __future__ import annotations

import json
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import jsonpatch
from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.referrals import ReferralStatus
from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import Principal, require
from servicekit.facilities import Facility
from servicekit.problems import Problem

from . import api, fhir, queries, subscriptions
from .models import Referral
from .rules import Action
from .schemas import (
    DeliveryLog,
    FeedPage,
    ManualAction,
    ReferralActionRequest,
    ReferralCreate,
    ReferralDetail,
    ReferralList,
    ReferralPublic,
    ResendRequest,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPublic,
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


# --- push subscriptions (see push.py) ------------------------------------------------------------

_SUBSCRIPTION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "problem+json: no such subscription that this client may see"},
    422: {"description": "problem+json: a bad URL, facility, kind of change or cursor"},
}


@router.post(
    "/subscriptions",
    status_code=201,
    tags=["push"],
    summary="Subscribe a webhook to the referral feed (every change, signed, retried)",
    responses=_SUBSCRIPTION_ERRORS,
)
async def create_subscription(
    body: SubscriptionCreate, principal: Reader, session: SessionDep, rt: RuntimeDep, response: Response
) -> SubscriptionCreated:
    created, secret = await subscriptions.create(
        session, principal, rt.registry, body, allow_http=rt.settings.push_allow_http
    )
    response.headers["Location"] = f"/v1/subscriptions/{created.id}"
    return SubscriptionCreated(**created.model_dump(), secret=secret)


@router.get("/subscriptions", tags=["push"], summary="The caller's subscriptions (every one for `*`)")
async def list_subscriptions(principal: Reader, session: SessionDep) -> SubscriptionList:
    return SubscriptionList(items=await subscriptions.list_for(session, principal))


@router.get(
    "/subscriptions/{subscription_id}", tags=["push"], summary="One subscription", responses=_SUBSCRIPTION_ERRORS
)
async def get_subscription(subscription_id: UUID, principal: Reader, session: SessionDep) -> SubscriptionPublic:
    return await subscriptions.get(session, principal, subscription_id)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    tags=["push"],
    summary="Unsubscribe (its delivery log goes too)",
    responses=_SUBSCRIPTION_ERRORS,
)
async def delete_subscription(subscription_id: UUID, principal: Reader, session: SessionDep) -> Response:
    await subscriptions.delete(session, principal, subscription_id)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/pause", tags=["push"], summary="Stop delivering", responses=_SUBSCRIPTION_ERRORS
)
async def pause_subscription(subscription_id: UUID, principal: Reader, session: SessionDep) -> SubscriptionPublic:
    return await subscriptions.pause(session, principal, subscription_id)


@router.post(
    "/subscriptions/{subscription_id}/resume",
    tags=["push"],
    summary="Deliver again from where it stopped (after a pause, or repeated failure)",
    responses=_SUBSCRIPTION_ERRORS,
)
async def resume_subscription(subscription_id: UUID, principal: Reader, session: SessionDep) -> SubscriptionPublic:
    return await subscriptions.resume(session, principal, subscription_id)


@router.post(
    "/subscriptions/{subscription_id}/resend",
    tags=["push"],
    summary="Deliver every entry after a feed cursor again, and resume",
    responses=_SUBSCRIPTION_ERRORS,
)
async def resend_subscription(
    subscription_id: UUID, body: ResendRequest, principal: Reader, session: SessionDep
) -> SubscriptionPublic:
    return await subscriptions.resend(session, principal, subscription_id, body.after)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    tags=["push"],
    summary="The delivery log: every attempt, latest first",
    responses=_SUBSCRIPTION_ERRORS,
)
async def subscription_deliveries(
    subscription_id: UUID,
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryLog:
    return DeliveryLog(items=await subscriptions.deliveries(session, principal, subscription_id, limit))


# --- FHIR R4 (see fhir.py) ---------------------------------------------------------------------------

_FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}}}
    for status, description in {
        400: "OperationOutcome: a bad search parameter, body or If-Match",
        401: "OperationOutcome: no valid bearer token",
        403: "OperationOutcome: the token lacks the scope, or may not act for the facility",
        404: "OperationOutcome: no such resource that this client may see",
    }.items()
}
_UPDATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_FHIR_ERRORS,
    409: {"description": "OperationOutcome: the referral's status does not allow this change"},
    412: {"description": "OperationOutcome: If-Match is not the current version (nothing changed)"},
    415: {"description": "OperationOutcome: PATCH takes application/json-patch+json"},
    422: {"description": "OperationOutcome: a reason (statusReason) or outcome code is missing or invalid"},
    428: {"description": "OperationOutcome: If-Match is required"},
}


def _fhir(resource: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(resource.model_dump_json(), status_code=status_code, media_type=fhir.FHIR_JSON, headers=headers)


def _versioned(resource: Any, r: Referral) -> Response:
    return _fhir(resource, headers={"ETag": fhir.etag(r), "Last-Modified": format_datetime(r.updated_at, usegmt=True)})


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    return params


def _next_url(request: Request, page: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "_page"] + [("_page", page)]
    return str(request.url.replace(query=urlencode(query)))


def _referral_id(value: str, resource_type: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Problem(404, "not_found", f"No {resource_type}/{value}: its ids are referral ids (UUIDs).") from None


@fhir_router.get("/metadata", summary="The CapabilityStatement: what this FHIR endpoint does")
async def capability_statement(request: Request) -> Response:
    return _fhir(
        fhir.capability_statement(str(request.url_for("capability_statement")).removesuffix("/metadata"), "1.0.0")
    )


async def _search(request: Request, principal: Principal, session: AsyncSession, resource_type: str) -> Response:
    params = _params(request)
    query = fhir.referral_query(resource_type, params)
    limit = fhir.count(params)
    found, more = await queries.search_referrals(
        session, principal, query, after=fhir.parse_page_key((params.get("_page") or [None])[-1]), limit=limit
    )
    build = fhir.task if resource_type == "Task" else fhir.service_request
    next_url = _next_url(request, fhir.page_key(found[-1])) if more else None
    return _fhir(fhir.searchset([build(r) for r in found], str(request.url), next_url))


@fhir_router.get(
    "/ServiceRequest/{referral_id}", summary="A referral as a FHIR R4 ServiceRequest", responses=_FHIR_ERRORS
)
async def get_service_request(referral_id: str, principal: Reader, session: SessionDep) -> Response:
    r = await queries.get_referral(session, principal, _referral_id(referral_id, "ServiceRequest"))
    return _versioned(fhir.service_request(r), r)


@fhir_router.get(
    "/ServiceRequest",
    summary="Search referrals (performer, requester, status, subject, _lastUpdated, _count)",
    responses=_FHIR_ERRORS,
)
async def search_service_requests(request: Request, principal: Reader, session: SessionDep) -> Response:
    return await _search(request, principal, session, "ServiceRequest")


@fhir_router.get("/Task/{referral_id}", summary="A referral's fulfilment as a FHIR R4 Task", responses=_FHIR_ERRORS)
async def get_task(referral_id: str, principal: Reader, session: SessionDep) -> Response:
    r = await queries.get_referral(session, principal, _referral_id(referral_id, "Task"))
    return _versioned(fhir.task(r), r)


@fhir_router.get(
    "/Task",
    summary="Search referral Tasks (owner, requester, status, business-status, focus, subject, _lastUpdated)",
    responses=_FHIR_ERRORS,
)
async def search_tasks(request: Request, principal: Reader, session: SessionDep) -> Response:
    return await _search(request, principal, session, "Task")


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "malformed_json", "The request body is not valid JSON.") from None


def _task_of(body: Any) -> fhir.Task:
    if not isinstance(body, dict) or body.get("resourceType") != "Task":
        raise Problem(400, "invalid_resource", "The body is not a FHIR Task (resourceType Task).")
    try:
        return fhir.Task.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "Task"
        raise Problem(400, "invalid_resource", f"Not a valid R4 Task: {where}: {first['msg']}") from None


_TASK_BODY = {
    "requestBody": {
        "required": True,
        "content": {fhir.FHIR_JSON: {"schema": {"type": "object", "description": "an R4 Task"}}},
    }
}


@fhir_router.put(
    "/Task/{referral_id}",
    summary="Accept, reject, start, complete or cancel a referral by updating its Task (If-Match)",
    responses=_UPDATE_ERRORS,
    openapi_extra=_TASK_BODY,
)
async def put_task(
    referral_id: str,
    request: Request,
    principal: Writer,
    rt: RuntimeDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    rid = _referral_id(referral_id, "Task")
    version = fhir.parse_if_match(if_match)
    incoming = _task_of(await _json_body(request))
    r = await api.update_task(rt, principal, rid, version, incoming)
    return _versioned(fhir.task(r), r)


@fhir_router.patch(
    "/Task/{referral_id}",
    summary="Update a referral's Task with a JSON Patch (RFC 6902) (If-Match)",
    responses=_UPDATE_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}},
        }
    },
)
async def patch_task(
    referral_id: str,
    request: Request,
    principal: Writer,
    rt: RuntimeDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    rid = _referral_id(referral_id, "Task")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json-patch+json":
        raise Problem(
            415, "unsupported_media_type", "PATCH a Task with a JSON Patch: Content-Type application/json-patch+json."
        )
    version = fhir.parse_if_match(if_match)
    ops = await _json_body(request)
    current = await api.visible_referral(rt, principal, rid)
    try:
        patched = jsonpatch.apply_patch(fhir.task(current).model_dump(mode="json"), ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, AttributeError) as exc:
        raise Problem(400, "invalid_patch", f"The JSON Patch does not apply to the Task: {exc}") from None
    r = await api.update_task(rt, principal, rid, version, _task_of(patched))
    return _versioned(fhir.task(r), r)


def _facility(rt: Runtime, facility_id: str, resource_type: str) -> Facility:
    f = rt.registry.get(facility_id)
    if f is None:
        raise Problem(404, "not_found", f"No {resource_type}/{facility_id} in the facility registry.")
    return f


def _registry_search(request: Request, rt: Runtime, resource_type: str) -> Response:
    params = _params(request)
    query = fhir.facility_query(resource_type, params)
    limit = fhir.count(params)
    page = (params.get("_page") or ["0"])[-1]
    if not page.isdigit():
        raise Problem(400, "invalid_search_parameter", "_page: follow the Bundle's next link.")
    start = int(page)
    found = [f for f in rt.registry.all() if query.matches(f)]
    found.sort(key=lambda f: f.facility_id)
    build = fhir.organization if resource_type == "Organization" else fhir.location
    more = len(found) > start + limit
    next_url = _next_url(request, str(start + limit)) if more else None
    return _fhir(fhir.searchset([build(f) for f in found[start : start + limit]], str(request.url), next_url))


@fhir_router.get("/Organization/{facility_id}", summary="A facility as a FHIR R4 Organization", responses=_FHIR_ERRORS)
async def get_organization(facility_id: str, principal: Reader, rt: RuntimeDep) -> Response:
    return _fhir(fhir.organization(_facility(rt, facility_id, "Organization")))


@fhir_router.get(
    "/Organization",
    summary="Search the facility registry (_id, name, identifier, address-state, address-country)",
    responses=_FHIR_ERRORS,
)
async def search_organizations(request: Request, principal: Reader, rt: RuntimeDep) -> Response:
    return _registry_search(request, rt, "Organization")


@fhir_router.get("/Location/{facility_id}", summary="A facility as a FHIR R4 Location", responses=_FHIR_ERRORS)
async def get_location(facility_id: str, principal: Reader, rt: RuntimeDep) -> Response:
    return _fhir(fhir.location(_facility(rt, facility_id, "Location")))


@fhir_router.get(
    "/Location",
    summary="Search the facility registry as Locations (as Organization, and organization)",
    responses=_FHIR_ERRORS,
)
async def search_locations(request: Request, principal: Reader, rt: RuntimeDep) -> Response:
    return _registry_search(request, rt, "Location")
