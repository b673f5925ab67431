"""Reads of the reporting service: indicators for a scope and period, exports, dashboard data.

A scope is a facility, a district, a province, a country or everything, resolved through the
facility registry and narrowed to the facilities the caller may see: a clinic's token sees only
its own facilities, a national token (`*`) sees all.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.auth import Principal
from servicekit.facilities import Facility, FacilityRegistry
from servicekit.problems import Problem

from . import dhis2, programme, programme_store, repository
from .indicators import DataSet, IndicatorValue, evaluate, of_data_set, sum_counts
from .periods import Period, PeriodError, last_complete, parse_period
from .schemas import DataValueSet

Counts = dict[str, int]


@dataclass(frozen=True)
class Scope:
    level: str
    id: str | None
    facilities: list[Facility]

    @property
    def facility_ids(self) -> list[str]:
        return [f.facility_id for f in self.facilities]


def period_from(text: str | None, today: date) -> Period:
    """The period asked for; without one, the last complete month (the current one is still filling)."""
    if text is None:
        return last_complete(today)
    try:
        return parse_period(text)
    except PeriodError as exc:
        raise Problem(422, "invalid_period", str(exc)) from exc


def resolve_scope(
    registry: FacilityRegistry,
    principal: Principal,
    facility_id: str | None = None,
    district: str | None = None,
    province: str | None = None,
    country: str | None = None,
) -> Scope:
    given = {
        k: v
        for k, v in {"facility": facility_id, "district": district, "province": province, "country": country}.items()
        if v
    }
    if len(given) > 1:
        raise Problem(
            422, "ambiguous_scope", f"Give one of facility_id, district, province, country, not {sorted(given)}."
        )
    if not given:
        level, wanted, candidates = "all", None, registry.all()
    else:
        level, wanted = next(iter(given.items()))
        candidates = _in_area(registry, level, wanted)
        if not candidates:
            what = "facility" if level == "facility" else level
            raise Problem(404, f"unknown_{what}", f"No {what} {wanted!r} in the facility registry.")
    if level == "facility":
        principal.require_facility(wanted)
    visible = [f for f in candidates if principal.may_act_for(f.facility_id)]
    if not visible:
        raise Problem(403, "scope_forbidden", f"This client may not see any facility of {level} {wanted!r}.")
    return Scope(level, wanted, visible)


def _in_area(registry: FacilityRegistry, level: str, wanted: str) -> list[Facility]:
    if level == "facility":
        found = registry.get(wanted)
        return [found] if found else []
    if level == "district":
        return registry.in_district(wanted)
    if level == "province":
        return registry.in_province(wanted)
    return registry.in_country(wanted)


async def counts_by_cell(session: AsyncSession, facility_ids: list[str], start: date, end: date) -> repository.Cells:
    """Every count, per (facility, month) with any data, for months in [start, end)."""
    return await repository.read_cells(session, facility_ids, start, end)


async def indicator_values(
    session: AsyncSession, scope: Scope, period: Period, data_set: DataSet | None = None
) -> list[IndicatorValue]:
    cells = await counts_by_cell(session, scope.facility_ids, period.start, period.end)
    return evaluate(sum_counts(cells.values()), of_data_set(data_set))


async def counts_by_facility(session: AsyncSession, scope: Scope, period: Period) -> dict[str, Counts]:
    cells = await counts_by_cell(session, scope.facility_ids, period.start, period.end)
    grouped: dict[str, list[Counts]] = defaultdict(list)
    for (facility_id, _), counts in cells.items():
        grouped[facility_id].append(counts)
    return {f: sum_counts(grouped.get(f, [])) for f in scope.facility_ids}


async def monthly_totals(session: AsyncSession, scope: Scope, months: list[Period]) -> list[tuple[Period, Counts]]:
    """Counts summed over the scope, month by month (for trends)."""
    cells = await counts_by_cell(session, scope.facility_ids, months[0].start, months[-1].end)
    by_month: dict[date, list[Counts]] = defaultdict(list)
    for (_, month), counts in cells.items():
        by_month[month].append(counts)
    return [(m, sum_counts(by_month.get(m.start, []))) for m in months]


async def dhis2_export(
    session: AsyncSession, scope: Scope, period: Period, mapping: dhis2.Dhis2Mapping
) -> DataValueSet:
    """The mapping's data set for every facility of the scope, one org unit each."""
    per_facility = await counts_by_facility(session, scope, period)
    if any(m.count in dhis2.MENTOR_FIGURES for m in mapping.dataValues):
        for fid in scope.facility_ids:
            per_facility[fid] = {**per_facility[fid], **await mentor_figures(session, [fid], period)}
    units = [(dhis2.org_unit(mapping, f.facility_id, f.dhis2_org_unit), f.facility_id) for f in scope.facilities]
    aocs = {unit: mapping.attribute_option_combo(fid) for unit, fid in units}
    return dhis2.data_value_set(mapping, period, [(unit, per_facility[fid]) for unit, fid in units], aocs)


CSV_COLUMNS = (
    "period",
    "level",
    "org_unit",
    "org_unit_name",
    "indicator",
    "disaggregation",
    "numerator",
    "denominator",
    "value",
)


async def indicators_csv(session: AsyncSession, scope: Scope, period: Period, data_set: DataSet | None = None) -> str:
    """One row per facility of the scope and indicator (and disaggregation), then the scope's totals."""
    per_facility = await counts_by_facility(session, scope, period)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    blocks = [("facility", f.facility_id, f.name, per_facility[f.facility_id]) for f in scope.facilities]
    if scope.level != "facility":
        blocks.append((scope.level, scope.id or "all", scope.id or "All facilities", sum_counts(per_facility.values())))
    for level, org_id, name, counts in blocks:
        for v in evaluate(counts, of_data_set(data_set)):
            row = (period.id, level, org_id, name, v.indicator.code)
            writer.writerow((*row, "total", v.numerator, _blank(v.denominator), _blank(v.value)))
            for disaggregation, value in v.disaggregations.items():
                writer.writerow((*row, disaggregation, value, "", ""))
    return out.getvalue()


def _blank(value: object) -> object:
    return "" if value is None else value


async def followup_status(session: AsyncSession, facility_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Today's (overdue, lost to follow-up) counts per facility."""
    return await repository.followup_status(session, facility_ids)


async def mentor_figures(session: AsyncSession, facility_ids: list[str], period: Period) -> dict[str, int]:
    """The Mentor Mothers' headline figures of the facilities and period (reporting.programme)."""
    found = programme.figures(await programme_store.counts(session, facility_ids, period.start, period.end), 1)
    return {"mm_client_interactions": found.interactions_total, "mm_clients_reached": found.reached.at_least_one}
