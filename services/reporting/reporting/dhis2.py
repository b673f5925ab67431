"""DHIS2 aggregate export: the counts of one data set as a `dataValueSets` document.

Which data element and category option combo carries each count, the data set, the attribute
option combo (the funding mechanism or programme the figures are reported under) and the id
scheme (CODE or UID) are configuration: one mapping file per data set, `data/dhis2_mer.json` and
`data/dhis2_programme.json` ship as the defaults (`PMTCT_DHIS2_MAPPING`,
`PMTCT_DHIS2_PROGRAMME_MAPPING` replace them). Org units come from the facility registry's
`dhis2_org_unit` column unless the mapping's `orgUnits` overrides one. Only raw counts at their
finest disaggregation are sent: DHIS2 adds them up and computes the percentages from its own
indicator definitions. Zeros are sent too, so a corrected period overwrites a value sent before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

from .indicators import COUNTS, DataSet, of_data_set
from .periods import Period
from .schemas import DataValue, DataValueSet

#: the Mentor Mothers' own figures (reporting.programme, from programme_store), per facility and period:
#: what the programme data set sends besides the counts of reporting.indicators
MENTOR_FIGURES: dict[str, str] = {
    "mm_client_interactions": "Mentor Mother client interactions (contacts, group attendance, tracing visits)",
    "mm_clients_reached": "Clients with at least one Mentor Mother interaction",
}


class IdScheme(StrEnum):
    UID = "UID"
    CODE = "CODE"


class MappedCount(BaseModel):
    count: str = Field(description="A count key of reporting.indicators")
    dataElement: str
    categoryOptionCombo: str | None = None

    @field_validator("count")
    @classmethod
    def known_count(cls, value: str) -> str:
        if value not in COUNTS and value not in MENTOR_FIGURES:
            raise ValueError(f"unknown count {value!r}; known: {', '.join([*COUNTS, *MENTOR_FIGURES])}")
        return value


class Dhis2Mapping(BaseModel):
    #: which of the platform's data sets this file maps
    indicatorDataSet: DataSet = DataSet.mer
    dataSet: str
    #: how the ids below are written: DHIS2 UIDs or metadata codes (sent as the import's id schemes)
    idScheme: IdScheme = IdScheme.UID
    defaultCategoryOptionCombo: str
    #: the funding mechanism or programme the figures are reported under (DHIS2's default if unset)
    attributeOptionCombo: str | None = None
    #: facility_id -> attribute option combo, for facilities reported under another mechanism
    attributeOptionCombos: dict[str, str] = Field(default_factory=dict)
    dataValues: list[MappedCount]
    #: facility_id -> org unit, where it differs from the registry's
    orgUnits: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def one_data_value_per_combination(self) -> Dhis2Mapping:
        seen: set[tuple[str, str | None]] = set()
        for m in self.dataValues:
            pair = (m.dataElement, m.categoryOptionCombo)
            if pair in seen:
                raise ValueError(f"{m.dataElement}/{m.categoryOptionCombo} is mapped twice")
            seen.add(pair)
        return self

    def attribute_option_combo(self, facility_id: str) -> str | None:
        return self.attributeOptionCombos.get(facility_id, self.attributeOptionCombo)


PACKAGED = {DataSet.mer: "dhis2_mer.json", DataSet.programme: "dhis2_programme.json"}


@lru_cache(maxsize=8)
def load_mapping(path: Path | None = None, data_set: DataSet = DataSet.mer) -> Dhis2Mapping:
    if path is None:
        raw = resources.files("reporting.data").joinpath(PACKAGED[data_set]).read_text()
    else:
        raw = Path(path).read_text()
    mapping = Dhis2Mapping.model_validate(json.loads(raw))
    if path is None and mapping.indicatorDataSet is not data_set:
        raise ValueError(f"{PACKAGED[data_set]} maps the {mapping.indicatorDataSet} data set")
    return mapping


def mapping_for(settings, data_set: DataSet) -> Dhis2Mapping:
    """The configured mapping of `data_set` (reporting.settings)."""
    path = settings.dhis2_mapping_path if data_set is DataSet.mer else settings.dhis2_programme_mapping_path
    return load_mapping(path, data_set)


def org_unit(mapping: Dhis2Mapping, facility_id: str, registry_org_unit: str) -> str:
    return mapping.orgUnits.get(facility_id, registry_org_unit)


def data_value_set(
    mapping: Dhis2Mapping,
    period: Period,
    counts_by_org_unit: Sequence[tuple[str, Mapping[str, int]]],
    attribute_option_combos: Mapping[str, str | None] | None = None,
) -> DataValueSet:
    """One data value per mapped count and org unit, in mapping order then org unit order."""
    aocs = attribute_option_combos or {}
    values = [
        DataValue(
            dataElement=m.dataElement,
            categoryOptionCombo=m.categoryOptionCombo or mapping.defaultCategoryOptionCombo,
            attributeOptionCombo=aocs.get(unit, mapping.attributeOptionCombo),
            orgUnit=unit,
            period=period.dhis2,
            value=str(counts[m.count]),
        )
        for unit, counts in counts_by_org_unit
        for m in mapping.dataValues
    ]
    return DataValueSet(dataSet=mapping.dataSet, period=period.dhis2, dataValues=values)


def import_params(mapping: Dhis2Mapping, dry_run: bool) -> dict[str, str]:
    """The query of `POST /api/dataValueSets`: dry run, strategy and the mapping's id scheme."""
    scheme = mapping.idScheme.value
    return {
        "dryRun": "true" if dry_run else "false",
        "importStrategy": "CREATE_AND_UPDATE",
        "idScheme": scheme,
        "dataElementIdScheme": scheme,
        "orgUnitIdScheme": scheme,
        "categoryOptionComboIdScheme": scheme,
        "dataSetIdScheme": scheme,
    }


def default_mapping(data_set: DataSet) -> dict:
    """The shipped default of a data set (what `data/dhis2_<set>.json` holds, regenerated by
    `python -m reporting.dhis2`): codes modelled on the DATIM MER data elements, placeholders a
    ministry replaces with its own (docs/indicators.md, "DHIS2 mapping")."""
    from .ages import WOMEN_BANDS
    from .indicators import RESULTS

    def age(band: str) -> str:
        return band.upper().replace("_", "-").replace("LT10", "LT10").replace("50PLUS", "50+")

    rows: list[dict] = []

    def add(count: str, element: str, combo: str | None = None) -> None:
        rows.append({"count": count, "dataElement": element, **({"categoryOptionCombo": combo} if combo else {})})

    if data_set is DataSet.mer:
        for band in WOMEN_BANDS:
            add(f"anc1__{band}", "PMTCT_STAT_D", f"AGE_{age(band)}_F")
        for status, code in (
            ("known_positive", "KNOWN_POS"),
            ("newly_positive", "NEW_POS"),
            ("new_negative", "NEW_NEG"),
            ("recent_negative", "RECENT_NEG"),
        ):
            for band in WOMEN_BANDS:
                add(f"stat_{status}__{band}", "PMTCT_STAT_N", f"{code}_AGE_{age(band)}_F")
        for status, code in (("already", "ALREADY_ON_ART"), ("new", "NEW_ON_ART")):
            for band in WOMEN_BANDS:
                add(f"art_{status}__{band}", "PMTCT_ART_N", f"{code}_AGE_{age(band)}_F")
        add("eid_0_2", "PMTCT_EID_N", "INFANT_AGE_0-2M")
        add("eid_2_12", "PMTCT_EID_N", "INFANT_AGE_2-12M")
        for result, code in (("pos", "POSITIVE"), ("neg", "NEGATIVE")):
            for band, b in (("0_2m", "0-2M"), ("2_12m", "2-12M")):
                add(f"hei_{result}_{band}", "PMTCT_HEI_N", f"{code}_INFANT_AGE_{b}")
        add("hei_pos_art_0_2m", "PMTCT_HEI_POS_ART_N", "INFANT_AGE_0-2M")
        add("hei_pos_art_2_12m", "PMTCT_HEI_POS_ART_N", "INFANT_AGE_2-12M")
        add("fo_cohort", "PMTCT_FO_D")
        for outcome, code in (
            ("infected", "INFECTED"),
            ("uninfected", "UNINFECTED"),
            ("unknown", "UNKNOWN"),
            ("died", "DIED"),
        ):
            add(f"fo_{outcome}", "PMTCT_FO_N", f"OUTCOME_{code}")
        for modality, code in (("pregnancy", "PREG"), ("labour_delivery", "LD"), ("breastfeeding", "BF")):
            for result in RESULTS:
                for band in WOMEN_BANDS:
                    add(
                        f"pa_{modality}_{result}__{band}",
                        "HTS_TST_POST_ANC1_N",
                        f"{code}_{result.upper()}_AGE_{age(band)}_F",
                    )
        return {
            "indicatorDataSet": "mer",
            "dataSet": "MER_PMTCT_FACILITY",
            "idScheme": "CODE",
            "defaultCategoryOptionCombo": "default",
            "attributeOptionCombo": "MECH_PMTCT_M2M",
            "dataValues": rows,
        }
    for key in (
        "eid_0_2",
        "eid_0_2_positive",
        "fo_infected",
        "fo_known_status",
        "fo_infected_now",
        "deliveries",
        "skilled_deliveries",
        "negative_at_enrolment",
        "seroconverted",
        "enrolled",
        "enrolled_10_24",
        "referrals_due",
        "referrals_completed",
        "client_interactions",
        "corrections",
        *MENTOR_FIGURES,
    ):
        add(key, f"M2M_{key.upper()}")
    return {
        "indicatorDataSet": "programme",
        "dataSet": "M2M_PROGRAMME",
        "idScheme": "CODE",
        "defaultCategoryOptionCombo": "default",
        "attributeOptionCombo": "PROG_M2M_MENTOR_MOTHERS",
        "dataValues": rows,
    }


def covered(mapping: Dhis2Mapping, key: str) -> bool:
    """Whether DHIS2 can add `key` up from what the mapping sends."""
    from .indicators import PARTS

    sent = {m.count for m in mapping.dataValues}
    return key in sent or (key in PARTS and all(covered(mapping, part) for part in PARTS[key]))


def uncovered(mapping: Dhis2Mapping) -> list[str]:
    """Numerators and denominators of the mapping's data set that DHIS2 could not compute."""
    missing = []
    for indicator in of_data_set(mapping.indicatorDataSet):
        for key in (*indicator.numerator, *(indicator.denominator or ())):
            if not covered(mapping, key):
                missing.append(f"{indicator.code}:{key}")
    return missing


if __name__ == "__main__":  # regenerate the packaged defaults
    for ds, name in PACKAGED.items():
        target = Path(__file__).parent / "data" / name
        target.write_text(json.dumps(default_mapping(ds), indent=2) + "\n")
        print(f"wrote {target}")
