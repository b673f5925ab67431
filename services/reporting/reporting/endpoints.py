"""HTTP endpoints of the reporting queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import Principal
from servicekit.problems import Problem

from . import dashboard, dhis2, queries
from .indicators import DataSet
from .periods import Period
from .schemas import DataValueSet, FacilityPublic, IndicatorPublic, IndicatorReport, PeriodPublic, ScopePublic
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
    "/exports/indicators.csv",
    summary="Indicators per facility of the scope, and the scope's totals, as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def indicators_csv(session: SessionDep, w: WhereDep, data_set: DataSetQuery = None) -> Response:
    body = await queries.indicators_csv(session, w.scope, w.period, data_set)
    filename = f"pmtct-indicators-{w.period.id}.csv"
    return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@pages.get("/", summary="The dashboard", response_class=HTMLResponse)
async def dashboard_page(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    token: Annotated[str | None, Query(description="A reports:read token, kept in a cookie")] = None,
    period: PeriodQuery = None,
    facility_id: FacilityQuery = None,
    district: DistrictQuery = None,
) -> Response:
    try:
        if token:
            return await dashboard.sign_in(request, token, rt.settings.dashboard_cookie_secure)
        principal = await dashboard.browser_principal(request)
    except Problem as problem:
        if problem.status in (401, 403):
            return dashboard.signed_out_page(problem.detail, problem.status)
        raise
    # the form sends both selects: a chosen facility is the narrower filter
    today = rt.settings.clock.today()
    filters = dashboard.Filters(
        facility_id or None, None if facility_id else district or None, queries.period_from(period, today)
    )
    html = await dashboard.page(session, principal, rt.registry, filters, rt.settings.dashboard_trend_months, today)
    return HTMLResponse(html)
