"""Each indicator (PEPFAR MER PMTCT indicators and the programme's own) is defined once, names its
numerator and denominator, and counts that exist."""

from __future__ import annotations

import json

import pytest

from reporting import dhis2
from reporting.indicators import (
    BY_CODE,
    CASCADE,
    COUNTS,
    INDICATORS,
    PARTS,
    POPULATIONS,
    DataSet,
    evaluate,
    percent,
    sum_counts,
)
from reporting.periods import parse_period

DOMAIN_TABLE = (
    "PMTCT_STAT",
    "PMTCT_STAT_POS",
    "PMTCT_ART",
    "PMTCT_EID",
    "PMTCT_HEI",
    "PMTCT_FO",
    "HTS_TST_POST_ANC1",
    "MTCT_EARLY",
    "MTCT_FINAL",
    "HEI_INFECTED",
    "SKILLED_DELIVERY",
    "SEROCONVERSION",
    "ENROLLED_10_24",
    "REFERRAL_COMPLETION",
    "CLINIC_EVENTS",
    "CORRECTIONS",
)
MER = DOMAIN_TABLE[:7]


def test_every_indicator_of_the_domain_table_is_defined_once() -> None:
    assert [i.code for i in INDICATORS] == list(DOMAIN_TABLE)
    assert len(BY_CODE) == len(INDICATORS)


@pytest.mark.parametrize("code", DOMAIN_TABLE)
def test_an_indicator_documents_its_numerator_denominator_and_guideline(code: str) -> None:
    indicator = BY_CODE[code]
    assert indicator.guideline and indicator.definition
    if indicator.denominator:
        assert "Numerator" in indicator.definition and "Denominator" in indicator.definition
    used = [*indicator.numerator, *(indicator.denominator or ()), *indicator.disaggregations.values()]
    assert all(key in COUNTS for key in used)
    # a MER figure cites the reference guide's version and the indicator's sheet; the others are programme figures
    assert (indicator.data_set is DataSet.mer) == (code in MER)
    if code in MER:
        assert "MER Indicator Reference Guide v2.8" in indicator.guideline


def test_only_a_proxy_ratio_may_exceed_100_percent_and_it_says_why() -> None:
    assert [i.code for i in INDICATORS if i.may_exceed_100] == ["PMTCT_EID"]
    assert "proxy" in BY_CODE["PMTCT_EID"].may_exceed_100


def test_every_count_key_belongs_to_exactly_one_population() -> None:
    keys = [c.key for p in POPULATIONS for c in p.counts]
    assert len(keys) == len(set(keys))
    assert all(key in COUNTS for _, key in CASCADE)


def test_values_are_percentages_with_one_decimal_and_none_without_a_denominator() -> None:
    assert percent(1, 3) == 33.3
    assert percent(2, 3) == 66.7
    assert percent(0, 0) is None
    counts = sum_counts([{"anc1": 2, "stat_known": 1}, {"anc1": 1, "stat_known": 1, "client_interactions": 4}])
    values = {v.indicator.code: v for v in evaluate(counts)}
    stat = values["PMTCT_STAT"]
    assert (stat.numerator, stat.denominator, stat.value) == (2, 3, 66.7)
    eid = evaluate(
        {**dict.fromkeys(COUNTS, 0), "eid_first": 3, "stat_pos": 1, "post_anc1_pos": 1}, [BY_CODE["PMTCT_EID"]]
    )
    assert (eid[0].denominator, eid[0].value, eid[0].above_100) == (2, 150.0, True)
    assert values["CLINIC_EVENTS"].value == 4.0
    assert values["PMTCT_ART"].value is None


def test_the_monthly_query_of_the_final_outcome_cohort_reports_births_24_months_later() -> None:
    (fo,) = [p for p in POPULATIONS if p.shift_months]
    sql = fo.cells_sql("infant_id = :subject")
    assert "interval '24 months'" in sql and "infant_id = :subject" in sql and "GROUP BY 1, 2" in sql


def test_a_dhis2_mapping_from_configuration_replaces_the_packaged_one(tmp_path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(
        json.dumps(
            {
                "dataSet": "MyDataSet01",
                "defaultCategoryOptionCombo": "Default0001",
                "attributeOptionCombo": "MechanismA1",
                "attributeOptionCombos": {"FAC-ZA-002": "MechanismB1"},
                "orgUnits": {"FAC-ZA-001": "OverrideOU1"},
                "dataValues": [{"count": "anc1", "dataElement": "AncOneDE001"}],
            }
        )
    )
    mapping = dhis2.load_mapping(path)
    unit = dhis2.org_unit(mapping, "FAC-ZA-001", "Gq7ZiXsM0nA")
    aocs = {unit: mapping.attribute_option_combo("FAC-ZA-001"), "Kh4": mapping.attribute_option_combo("FAC-ZA-002")}
    document = dhis2.data_value_set(mapping, parse_period("FY2027"), [(unit, {"anc1": 7}), ("Kh4", {"anc1": 2})], aocs)
    assert document.model_dump(exclude_none=True) == {
        "dataSet": "MyDataSet01",
        "period": "2026Oct",
        "dataValues": [
            {
                "dataElement": "AncOneDE001",
                "categoryOptionCombo": "Default0001",
                "attributeOptionCombo": "MechanismA1",
                "orgUnit": "OverrideOU1",
                "period": "2026Oct",
                "value": "7",
            },
            {
                "dataElement": "AncOneDE001",
                "categoryOptionCombo": "Default0001",
                "attributeOptionCombo": "MechanismB1",
                "orgUnit": "Kh4",
                "period": "2026Oct",
                "value": "2",
            },
        ],
    }


def test_a_dhis2_mapping_naming_an_unknown_count_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.json"
    body = {"dataSet": "X", "defaultCategoryOptionCombo": "Y", "dataValues": [{"count": "nope", "dataElement": "Z"}]}
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="unknown count 'nope'"):
        dhis2.load_mapping(path)


@pytest.mark.parametrize("data_set", list(DataSet))
def test_the_packaged_dhis2_mappings_let_dhis2_compute_every_indicator_of_their_data_set(data_set) -> None:
    """Each numerator and denominator is sent, or is the sum of finer counts that are (age bands, statuses)."""
    mapping = dhis2.load_mapping(None, data_set)
    assert mapping.indicatorDataSet is data_set
    assert dhis2.uncovered(mapping) == []
    # the shipped files are what the generator writes
    assert json.loads(mapping.model_dump_json(exclude_defaults=True)) == json.loads(
        dhis2.Dhis2Mapping.model_validate(dhis2.default_mapping(data_set)).model_dump_json(exclude_defaults=True)
    )


def test_the_two_data_sets_send_disjoint_data_elements() -> None:
    mer, programme = (dhis2.load_mapping(None, d) for d in DataSet)
    assert mer.dataSet != programme.dataSet
    assert not {m.dataElement for m in mer.dataValues} & {m.dataElement for m in programme.dataValues}


def test_a_total_is_the_sum_of_its_parts() -> None:
    assert all(part in COUNTS for parts in PARTS.values() for part in parts)
    assert PARTS["anc1"][0] == "anc1__lt10" and PARTS["anc1"][-1] == "anc1__unknown"
