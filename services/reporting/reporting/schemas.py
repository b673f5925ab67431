"""API models of the reporting service."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from .indicators import DataSet, IndicatorValue, Unit
from .models import SubmissionBase
from .periods import Period, PeriodKind


class PeriodPublic(BaseModel):
    id: str = Field(examples=["2026-11"])
    kind: PeriodKind
    start: date
    end: date = Field(description="Last day of the period")
    dhis2: str = Field(examples=["202611"])

    @classmethod
    def of(cls, period: Period) -> PeriodPublic:
        return cls(id=period.id, kind=period.kind, start=period.start, end=period.last_day, dhis2=period.dhis2)


class ScopePublic(BaseModel):
    level: str = Field(description="facility, district, province, country or all", examples=["district"])
    id: str | None = Field(examples=["Cape Town Metro"])
    facilities: list[str] = Field(description="The facilities whose numbers are summed (those the caller may see)")


class IndicatorPublic(BaseModel):
    code: str = Field(examples=["PMTCT_STAT"])
    name: str
    data_set: DataSet = Field(description="mer (submitted to the ministry) or programme (the programme's own)")
    unit: Unit
    numerator: int
    denominator: int | None
    value: float | None = Field(description="Percent (one decimal) or the count; null when the denominator is 0")
    disaggregations: dict[str, int] = Field(
        description="By name: a status (known_positive), a status and an age band (known_positive:15_19), ..."
    )
    definition: str
    guideline: str
    may_exceed_100: str | None = Field(description="Why this percentage can exceed 100 %; null when it cannot")

    @classmethod
    def of(cls, v: IndicatorValue) -> IndicatorPublic:
        i = v.indicator
        return cls(
            code=i.code,
            name=i.name,
            data_set=i.data_set,
            unit=i.unit,
            numerator=v.numerator,
            denominator=v.denominator,
            value=v.value,
            disaggregations=v.disaggregations,
            definition=i.definition,
            guideline=i.guideline,
            may_exceed_100=i.may_exceed_100,
        )


class IndicatorReport(BaseModel):
    period: PeriodPublic
    scope: ScopePublic
    indicators: list[IndicatorPublic]


class FacilityPublic(BaseModel):
    facility_id: str
    name: str
    district: str
    province: str
    country: str
    dhis2_org_unit: str


class DataValue(BaseModel):
    dataElement: str
    categoryOptionCombo: str
    attributeOptionCombo: str | None = None
    orgUnit: str
    period: str
    value: str


class DataValueSet(BaseModel):
    """DHIS2 `dataValueSets` JSON (POST /api/dataValueSets)."""

    dataSet: str
    period: str
    dataValues: list[DataValue]


class ChangedValue(BaseModel):
    """A value that differs from what the last accepted push sent (a late fact revised the period)."""

    dataElement: str
    categoryOptionCombo: str
    orgUnit: str
    attributeOptionCombo: str | None
    sent: str | None
    now: str | None


class SubmissionPublic(SubmissionBase):
    """A push as the history shows it: the stored submission (models.SubmissionBase), its revision
    number and, on the latest accepted push of its period, what changed since."""

    id: int  # type: ignore[assignment]
    dhis2_period: str = Field(examples=["2025Oct"])
    values_sent: int
    revision: int | None = Field(
        description="1 for the first accepted push of its data set and period, 2 for the next; null if not accepted"
    )
    changed_since: list[ChangedValue] | None = Field(
        default=None,
        description="On the latest accepted push of its period: the values that changed since (late facts); "
        "the next push sends them",
    )


class SubmissionHistory(BaseModel):
    submissions: list[SubmissionPublic]
