"""HTTP endpoints of the reporting queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import Principal
from servicekit.problems import Problem

from . import adx, dashboard, dhis2, queries, submissions
from .indicators import DataSet
from .periods import Period
from .schemas import (
    DataValueSet,
    FacilityPublic,
    IndicatorPublic,
    IndicatorReport,
    PeriodPublic,
    ScopePublic,
    SubmissionHistory,
    SubmissionPublic,
)
from .settings import Settings

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
router = APIRouter(prefix="/v1", tags=["reporting"])
pages = APIRouter(tags=["dashboard"])

#: `reports:read`, from the Authorization header or the dashboard's cookie
Reader = Annotated[Principal, Depends(dashboard.browser_principal)]

PeriodQuery = Annotated[
    str | None,
    Query(description="2026-11 (202611), 2026Q4, 2026, FY2027 (2026Oct), FY2027Q1; the last complete month if absent"),
]
DataSetQuery = Annotated[
    DataSet | None, Query(description="mer (the ministry's MER data set) or programme; both if absent")
]
FacilityQuery = Annotated[str | None, Query(description="One facility id")]
DistrictQuery = Annotated[str | None, Query(description="A district of the facility registry")]
ProvinceQuery = Annotated[str | None, Query(description="A province of the facility registry")]
CountryQuery = Annotated[str | None, Query(description="A country code of the facility registry, e.g. ZA")]


@dataclass(frozen=True)
class Where:
    scope: queries.Scope
    period: Period


async def where(
    rt: RuntimeDep,
    principal: Reader,
    period: PeriodQuery = None,
    facility_id: FacilityQuery = None,
    district: DistrictQuery = None,
    province: ProvinceQuery = None,
    country: CountryQuery = None,
) -> Where:
    """The scope (narrowed to what the caller may see) and the period a report is asked for."""
    scope = queries.resolve_scope(rt.registry, principal, facility_id, district, province, country)
    return Where(scope, queries.period_from(period, rt.settings.clock.today()))


WhereDep = Annotated[Where, Depends(where)]


@router.get("/indicators", summary="Programme indicators for a facility, district, province or country")
async def indicators(session: SessionDep, w: WhereDep, data_set: DataSetQuery = None) -> IndicatorReport:
    values = await queries.indicator_values(session, w.scope, w.period, data_set)
    return IndicatorReport(
        period=PeriodPublic.of(w.period),
        scope=ScopePublic(level=w.scope.level, id=w.scope.id, facilities=w.scope.facility_ids),
        indicators=[IndicatorPublic.of(v) for v in values],
    )


@router.get("/facilities", summary="The facility registry (the facilities the caller may see)")
async def facilities(rt: RuntimeDep, principal: Reader) -> list[FacilityPublic]:
    return [FacilityPublic(**f.as_dict()) for f in rt.registry.all() if principal.may_act_for(f.facility_id)]


@router.get(
    "/exports/dhis2",
    summary="A data set's counts as a DHIS2 dataValueSets document, one org unit per facility",
    response_model_exclude_none=True,
)
async def dhis2_export(
    rt: RuntimeDep, session: SessionDep, w: WhereDep, data_set: Annotated[DataSet, Query()] = DataSet.mer
) -> DataValueSet:
    mapping = dhis2.mapping_for(rt.settings, data_set)
    return await queries.dhis2_export(session, w.scope, w.period, mapping)


@router.get(
    "/exports/adx",
    summary="The same figures as the DHIS2 export, as an ADX message (IHE QRPH, urn:ihe:qrph:adx:2015)",
    response_class=Response,
    responses={200: {"content": {"application/adx+xml": {}}}},
)
async def adx_export(
    rt: RuntimeDep, session: SessionDep, w: WhereDep, data_set: Annotated[DataSet, Query()] = DataSet.mer
) -> Response:
    values = await queries.dhis2_export(session, w.scope, w.period, dhis2.mapping_for(rt.settings, data_set))
    body = adx.document(values, w.period, rt.settings.clock.now())
    filename = f"pmtct-{data_set.value}-{w.period.id}.adx.xml"
    return Response(
        body, media_type="application/adx+xml", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


SUBMIT_SCOPE = "reports:submit"


def _submitter(principal: Principal) -> Principal:
    if SUBMIT_SCOPE not in principal.scopes and "admin" not in principal.scopes:
        raise Problem(403, "insufficient_scope", f"Pushing to DHIS2 needs scope {SUBMIT_SCOPE!r}.")
    if not principal.national:
        raise Problem(403, "scope_forbidden", "A push sends every facility's figures: it needs a national token (*).")
    return principal


@router.get(
    "/exports/dhis2/submissions",
    summary="Every DHIS2 push with its import summary, newest first; what changed since the last accepted one",
)
async def dhis2_submissions(
    rt: RuntimeDep,
    session: SessionDep,
    principal: Reader,
    data_set: DataSetQuery = None,
    period: Annotated[str | None, Query(description="Only this period (FY2026, 2026-09, ...)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SubmissionHistory:
    if not principal.national:
        raise Problem(
            403, "scope_forbidden", "The submission history covers every facility: it needs a national token."
        )
    wanted = queries.period_from(period, rt.settings.clock.today()) if period else None
    shown = await submissions.history_public(session, rt.registry, rt.settings, data_set, wanted, limit)
    return SubmissionHistory(submissions=shown)


@router.post(
    "/exports/dhis2/push",
    summary="Push a data set for a period to DHIS2 (POST /api/dataValueSets) and keep the import summary",
    status_code=201,
    responses={
        403: {"description": "insufficient_scope (needs reports:submit) or scope_forbidden (needs a national token)"},
        502: {"description": "dhis2_unavailable: DHIS2 did not answer after the retries (the attempt is recorded)"},
        409: {"description": "dhis2_not_configured: this service has no DHIS2 URL or credentials"},
    },
)
async def dhis2_push(
    rt: RuntimeDep,
    session: SessionDep,
    principal: Reader,
    period: PeriodQuery = None,
    data_set: Annotated[DataSet, Query()] = DataSet.mer,
    dry_run: Annotated[bool, Query(description="DHIS2 checks and summarises the import without saving it")] = False,
) -> SubmissionPublic:
    _submitter(principal)
    wanted = queries.period_from(period, rt.settings.clock.today())
    try:
        row = await submissions.push(rt.sessions, rt.registry, rt.settings, data_set, wanted, dry_run=dry_run)
    except submissions.NotConfigured as exc:
        raise Problem(409, "dhis2_not_configured", str(exc)) from exc
    if row.outcome == submissions.FAILED:
        raise Problem(
            502,
            "dhis2_unavailable",
            f"DHIS2 did not answer after {row.attempts} attempts ({row.description}); submission {row.id} records it.",
        )
    shown = await submissions.history_public(session, rt.registry, rt.settings, data_set, wanted, limit=500)
    return next(s for s in shown if s.id == row.id)


@router.get(
    "/exports/indicators.csv",
    summary="Indicators per facility of the scope, and the scope's totals, as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def indicators_csv(session: SessionDep, w: WhereDep, data_set: DataSetQuery = None) -> Response:
    body = await queries.indicators_csv(session, w.scope, w.period, data_set)
    filename = f"pmtct-indicators-{w.period.id}.csv"
    return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


#: a browser's page is answered a page, not problem+json: the sign-in page again, saying why
SIGNED_OUT = {
    401: {
        "description": "No token, or one the platform does not accept: the sign-in page",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    403: {
        "description": "A token without reports:read (on /push: without reports:submit, or not national): the"
        " sign-in page",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
}


@pages.get(
    "/",
    summary="The dashboard (the sign-in page without a reports:read token; a token is never read from the address)",
    response_class=HTMLResponse,
    responses=SIGNED_OUT,  # type: ignore[arg-type]
)
async def dashboard_page(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    period: PeriodQuery = None,
    facility_id: FacilityQuery = None,
    district: DistrictQuery = None,
    province: ProvinceQuery = None,
    country: CountryQuery = None,
) -> Response:
    try:
        principal = await dashboard.browser_principal(request)
    except Problem as problem:
        if problem.status in (401, 403):
            return dashboard.signed_out_page(problem.detail, problem.status)
        raise
    filters = dashboard.Filters(
        queries.period_from(period or None, rt.settings.clock.today()),
        facility_id or None,
        district or None,
        province or None,
        country or None,
        period_defaulted=not period,
    )
    html = await dashboard.page(session, principal, rt.registry, filters, rt.settings)
    return HTMLResponse(html)


@pages.post(
    "/sign-in",
    summary="The dashboard's sign-in form: a reports:read token in the body, kept in a cookie, then the dashboard",
    response_class=RedirectResponse,
    status_code=303,
    responses=SIGNED_OUT,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"token": {"type": "string"}, "next": {"type": "string"}},
                        "required": ["token"],
                    }
                }
            },
        }
    },
)
async def dashboard_sign_in(request: Request, rt: RuntimeDep) -> Response:
    try:
        return await dashboard.sign_in_form(request, rt.settings.dashboard_cookie_secure)
    except Problem as problem:
        if problem.status in (401, 403):
            return dashboard.signed_out_page(problem.detail, problem.status)
        raise


@pages.post(
    "/push",
    summary="The dashboard's DHIS2 push (a form: period, data_set, dry_run), then back to the dashboard",
    response_class=RedirectResponse,
    responses=SIGNED_OUT,  # type: ignore[arg-type]
    status_code=303,
)
async def dashboard_push(request: Request, rt: RuntimeDep) -> Response:
    try:
        _submitter(await dashboard.browser_principal(request))
    except Problem as problem:
        if problem.status in (401, 403):
            return dashboard.signed_out_page(problem.detail, problem.status)
        raise
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    wanted = queries.period_from((form.get("period") or [None])[0], rt.settings.clock.today())
    try:
        data_set = DataSet((form.get("data_set") or ["mer"])[0])
    except ValueError as exc:
        raise Problem(422, "invalid_data_set", "data_set is mer or programme.") from exc
    dry_run = (form.get("dry_run") or ["false"])[0] == "true"
    try:
        await submissions.push(rt.sessions, rt.registry, rt.settings, data_set, wanted, dry_run=dry_run)
    except submissions.NotConfigured as exc:
        raise Problem(409, "dhis2_not_configured", str(exc)) from exc
    return RedirectResponse(f"/?{urlencode({'period': wanted.id})}#downloads", status_code=303)
