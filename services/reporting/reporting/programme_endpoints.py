"""`GET /v1/programme`: the Mentor Mothers' programme figures (`programme.py`) for a facility,
district, province or country and a period, beside the MER indicators of `/v1/indicators`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from servicekit.app import Runtime, SessionDep, runtime
from servicekit.auth import Principal, require

from . import programme, programme_store, queries
from .settings import Settings

RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]
router = APIRouter(prefix="/v1", tags=["programme"])


class ProgrammeReport(programme.ProgrammeFigures):
    period: str
    scope_level: str
    scope_id: str | None
    facilities: list[str]


@router.get(
    "/programme",
    summary="The Mentor Mothers' programme figures: interactions, clients reached, disclosure, index testing,"
    " tracing outcomes, caseloads",
    responses={
        403: {"description": "`facility_forbidden`, `insufficient_scope`"},
        404: {"description": "`unknown_facility` (or district, province, country)"},
        422: {"description": "`invalid_period`"},
    },
)
async def programme_figures(
    rt: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("reports:read")],
    period: Annotated[
        str | None, Query(description="2026-11 (or 202611), 2026Q4 or 2026; this month if absent")
    ] = None,
    facility_id: str | None = None,
    district: str | None = None,
    province: str | None = None,
    country: str | None = None,
    min_contacts: Annotated[int | None, Query(ge=1, description="'reached' with at least this many")] = None,
) -> ProgrammeReport:
    scope = queries.resolve_scope(rt.registry, principal, facility_id, district, province, country)
    p = queries.period_from(period, rt.settings.clock.today())
    counts = await programme_store.counts(session, scope.facility_ids, p.start, p.end)
    figures = programme.figures(counts, min_contacts or rt.settings.programme_reached_contacts)
    return ProgrammeReport(
        **figures.model_dump(by_alias=False),
        period=p.id,
        scope_level=scope.level,
        scope_id=scope.id,
        facilities=scope.facility_ids,
    )
