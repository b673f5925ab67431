"""DHIS2 aggregate export: counts of the read model as `dataValueSets` JSON.

Which data element and category option combo carries each count, and the data set, are
configuration: `reporting/data/dhis2_mapping.json` ships as the default and
`PMTCT_DHIS2_MAPPING=path.json` replaces it. Org units come from the facility registry's
`dhis2_org_unit` column unless the mapping's `orgUnits` overrides one. Only raw counts are sent:
DHIS2 computes the percentages from its own indicator definitions. Zeros are sent too, so a
corrected month overwrites a value sent earlier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from .indicators import COUNTS
from .periods import Period
from .schemas import DataValue, DataValueSet


class MappedCount(BaseModel):
    count: str = Field(description="A count key of reporting.indicators")
    dataElement: str
    categoryOptionCombo: str | None = None

    @field_validator("count")
    @classmethod
    def known_count(cls, value: str) -> str:
        if value not in COUNTS:
            raise ValueError(f"unknown count {value!r}; known: {', '.join(COUNTS)}")
        return value


class Dhis2Mapping(BaseModel):
    dataSet: str
    defaultCategoryOptionCombo: str
    dataValues: list[MappedCount]
    #: facility_id -> org unit, where it differs from the registry's
    orgUnits: dict[str, str] = Field(default_factory=dict)


@lru_cache(maxsize=4)
def load_mapping(path: Path | None = None) -> Dhis2Mapping:
    if path is None:
        raw = resources.files("reporting.data").joinpath("dhis2_mapping.json").read_text()
    else:
        raw = Path(path).read_text()
    return Dhis2Mapping.model_validate(json.loads(raw))


def org_unit(mapping: Dhis2Mapping, facility_id: str, registry_org_unit: str) -> str:
    return mapping.orgUnits.get(facility_id, registry_org_unit)


def data_value_set(
    mapping: Dhis2Mapping, period: Period, counts_by_org_unit: Sequence[tuple[str, Mapping[str, int]]]
) -> DataValueSet:
    """One data value per mapped count and org unit, in mapping order then org unit order."""
    values = [
        DataValue(
            dataElement=m.dataElement,
            categoryOptionCombo=m.categoryOptionCombo or mapping.defaultCategoryOptionCombo,
            orgUnit=unit,
            period=period.dhis2,
            value=str(counts[m.count]),
        )
        for unit, counts in counts_by_org_unit
        for m in mapping.dataValues
    ]
    return DataValueSet(dataSet=mapping.dataSet, period=period.dhis2, dataValues=values)
