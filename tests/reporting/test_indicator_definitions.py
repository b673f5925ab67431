"""Each indicator (PEPFAR MER PMTCT indicators and the programme's own) is defined once, names its
numerator and denominator, and counts that exist."""

from __future__ import annotations

import json

import pytest

from reporting import dhis2
from reporting.indicators import BY_CODE, CASCADE, COUNTS, INDICATORS, POPULATIONS, evaluate, percent, sum_counts
from reporting.periods import parse_period

DOMAIN_TABLE = (
    "PMTCT_STAT",
    "PMTCT_STAT_POS",
    "PMTCT_ART",
    "PMTCT_EID",
    "PMTCT_HEI_POS",
    "PMTCT_FO",
    "MTCT_EARLY",
    "MTCT_FINAL",
    "SKILLED_DELIVERY",
    "SEROCONVERSION",
    "REFERRAL_COMPLETION",
    "CLIENT_INTERACTIONS",
)


def test_every_indicator_of_the_domain_table_is_defined_once() -> None:
    assert [i.code for i in INDICATORS] == list(DOMAIN_TABLE)
    assert len(BY_CODE) == len(INDICATORS)


@pytest.mark.parametrize("code", DOMAIN_TABLE)
def test_an_indicator_documents_its_numerator_denominator_and_guideline(code: str) -> None:
    indicator = BY_CODE[code]
    assert indicator.guideline and indicator.definition
    if indicator.denominator:
        assert "Numerator" in indicator.definition and "Denominator" in indicator.definition
    used = [indicator.numerator, indicator.denominator, *indicator.disaggregations.values()]
    assert all(key in COUNTS for key in used if key)


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
    assert (values["PMTCT_STAT"].numerator, values["PMTCT_STAT"].denominator, values["PMTCT_STAT"].value) == (
        2,
        3,
        66.7,
    )
    assert values["CLIENT_INTERACTIONS"].value == 4.0
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
                "orgUnits": {"FAC-ZA-001": "OverrideOU1"},
                "dataValues": [{"count": "anc1", "dataElement": "AncOneDE001"}],
            }
        )
    )
    mapping = dhis2.load_mapping(path)
    unit = dhis2.org_unit(mapping, "FAC-ZA-001", "Gq7ZiXsM0nA")
    document = dhis2.data_value_set(mapping, parse_period("2026Q4"), [(unit, {"anc1": 7})])
    assert document.model_dump() == {
        "dataSet": "MyDataSet01",
        "period": "2026Q4",
        "dataValues": [
            {
                "dataElement": "AncOneDE001",
                "categoryOptionCombo": "Default0001",
                "orgUnit": "OverrideOU1",
                "period": "2026Q4",
                "value": "7",
            }
        ],
    }


def test_a_dhis2_mapping_naming_an_unknown_count_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.json"
    body = {"dataSet": "X", "defaultCategoryOptionCombo": "Y", "dataValues": [{"count": "nope", "dataElement": "Z"}]}
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="unknown count 'nope'"):
        dhis2.load_mapping(path)


def test_the_packaged_dhis2_mapping_lets_dhis2_compute_every_indicator() -> None:
    """Each numerator and denominator is sent, or is the sum of the disaggregations that are."""
    mapped = {m.count for m in dhis2.load_mapping().dataValues}
    sums = {i.numerator: set(i.disaggregations.values()) for i in INDICATORS if i.disaggregations}

    def sent(key: str) -> bool:
        return key in mapped or (key in sums and sums[key] <= mapped)

    for indicator in INDICATORS:
        assert sent(indicator.numerator), indicator.code
        assert indicator.denominator is None or sent(indicator.denominator), indicator.code
