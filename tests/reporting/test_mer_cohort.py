"""The cohort of `mer_cohort.py` (79 mothers, 40 infants, FY2024-FY2026), sent to the topics the
reporting consumer reads, reported exactly by the MER 2.8 definitions.

Every number below is counted by hand from the group comments of `mer_cohort.py`; how is written
beside it (Mn = mother group n, In/Fn = their infants). A disaggregation dict lists the non-zero
entries; every other disaggregation of the indicator must be zero.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

pytestmark = pytest.mark.e2e

# fmt: off
FY2026 = {
    # ANC1 in FY2026: M1 10 + M2 6 + M3 4 + M4 5 + M5 3 + M6 3 + M7 4 + M8 3 + M9 3 + M10 2 + M13 4 + M14 2
    # + M19 2 (their second pregnancy, opened by its ANC1 visit) = 51 (M11 enrolled postnatally and M12 at their
    # third visit: no ANC1 here; M1's transfers in: no second ANC1).
    # Known status: all but M4 (known negative before this pregnancy, not retested) and M8 (tested at visit 2
    # only), and M14 (results not posted yet): 51 - 5 - 3 - 2 = 41.
    "PMTCT_STAT": (41, 51, 80.4, {
        # known positive at entry: M2 3x33, 3x38; M9 3x35; M10 2x45; M19 2x24
        "known_positive": 13, "known_positive:30_34": 3, "known_positive:35_39": 6, "known_positive:45_49": 2,
        "known_positive:20_24": 2,
        # newly tested positive at ANC1: M3 2x17, 2x22
        "newly_positive": 4, "newly_positive:15_19": 2, "newly_positive:20_24": 2,
        # new negatives: M1 5x22 5x27; M5 3x42 (retested); M7 4x20; M13 4x31 = 21 (M14's are late)
        "new_negative": 21, "new_negative:20_24": 9, "new_negative:25_29": 5, "new_negative:40_44": 3,
        "new_negative:30_34": 4,
        # recent negative: M6 3x14 (negative since 2026-01-20, the pregnancy began 2025-11-10)
        "recent_negative": 3, "recent_negative:10_14": 3,
        # denominator by age: 10-14 M6 3; 15-19 M3 2 + M14 2; 20-24 M1 5 + M3 2 + M7 4 + M19 2; 25-29 M1 5 + M4 5
        # + M8 3; 30-34 M2 3 + M13 4; 35-39 M2 3 + M9 3; 40-44 M5 3; 45-49 M10 2
        "denominator:10_14": 3, "denominator:15_19": 4, "denominator:20_24": 13, "denominator:25_29": 13,
        "denominator:30_34": 7, "denominator:35_39": 6, "denominator:40_44": 3, "denominator:45_49": 2,
    }),
    # positives: 13 known + 4 new = 17, of the 41 known
    "PMTCT_STAT_POS": (17, 41, 41.5, {
        "known_positive": 13, "known_positive:30_34": 3, "known_positive:35_39": 6, "known_positive:45_49": 2,
        "known_positive:20_24": 2,
        "newly_positive": 4, "newly_positive:15_19": 2, "newly_positive:20_24": 2,
    }),
    # on ART in pregnancy: M2 6 already (since 2022); M19 2 already (since 2024); M3 4 new (ANC1 day); M10 2 new
    # (started 2025-12-01, in the pregnancy that began 2025-08-26) = 14 of 17. M9's 3 started after delivery:
    # postnatal, excluded.
    "PMTCT_ART": (14, 17, 82.4, {
        "already_on_art": 8, "already_on_art:30_34": 3, "already_on_art:35_39": 3, "already_on_art:20_24": 2,
        "new_on_art": 6, "new_on_art:15_19": 2, "new_on_art:20_24": 2, "new_on_art:45_49": 2,
        "postnatal_start_excluded": 3,
    }),
    # first NAT in FY2026 by 12 months: M2 7 (birth, May), M3 5 (6 weeks, July), M9 3 (70 days, Aug), M16 4
    # (6 weeks, Oct 2025), M13 1 (birth, Aug), M7 4 (birth, Sep), M10 2 (birth, June), M11 1 (105 days, May) = 27;
    # 2-12 months: M9 3 + M11 1 = 4; 0-2 months: 23.
    # Denominator: PMTCT_STAT_POS 17 + newly positive after ANC1: M7 4 (pregnancy), M11 1 (breastfeeding),
    # M13 1 (labour and delivery) = 23. Above 100 %: M16's infants' mothers were identified in FY2025; twins.
    "PMTCT_EID": (27, 23, 117.4, {"0_2m": 23, "2_12m": 4}),
    # positives by first positive non-confirmatory sample: M2 1 (0-2 months, ART), M9 1 (70 days, no ART), M16 1
    # (273 days, ART), M11 1 (105 days, ART). Negatives by first sample: M2 6, M3 5, M16 4, M13 1, M7 4, M10 2
    # (0-2 months) = 22; M9 2 (2-12 months). 4 + 24 = 28 (M16's first infant counts negative in October and
    # positive in June).
    "PMTCT_HEI": (28, None, 28.0, {
        "positive:0_2m": 1, "positive:2_12m": 3, "negative:0_2m": 22, "negative:2_12m": 2,
        "positive_art_started:0_2m": 1, "positive_art_started:2_12m": 2,
    }),
    # FY2024 birth cohort (F1-F13, born Oct 2023 - Sep 2024): infected F5; uninfected F1-F4, F13; died F6;
    # unknown F7 (transferred out), F8 (lost, nothing after); no outcome F9, F10, F11 (its final test is late), F12
    "PMTCT_FO": (9, 13, 69.2, {"infected": 1, "uninfected": 5, "unknown": 2, "died": 1}),
    # post-ANC1 tests: M7 4 positive (pregnancy, 20); M8 3 negative (visit 2, 26); M12 3 negative (enrolled at visit
    # 3, 29); M11 3 negative, 1 positive (breastfeeding, 24); M13 2 negative, 1 positive (labour and delivery, 31)
    "HTS_TST_POST_ANC1": (17, None, 17.0, {
        "pregnancy:positive": 4, "pregnancy:positive:20_24": 4,
        "pregnancy:negative": 6, "pregnancy:negative:25_29": 6,
        "breastfeeding:negative": 3, "breastfeeding:negative:20_24": 3,
        "breastfeeding:positive": 1, "breastfeeding:positive:20_24": 1,
        "labour_delivery:negative": 2, "labour_delivery:negative:30_34": 2,
        "labour_delivery:positive": 1, "labour_delivery:positive:30_34": 1,
    }),
    # programme: first NAT by 2 months 23, positive 1 (M2's)
    "MTCT_EARLY": (1, 23, 4.3, {}),
    # FO cohort: infected 1 of known status 1 + 5
    "MTCT_FINAL": (1, 6, 16.7, {}),
    # deliveries in FY2026: M2 6, M3 4 (1 home), M9 3, M10 2, M7 4, M13 4 (2 unskilled) = 23, skilled 20
    "SKILLED_DELIVERY": (20, 23, 87.0, {}),
    # negative at enrolment (FY2026 enrolments): M1 10, M4 5, M5 3, M6 3, M7 4, M8 3 (first test negative), M11 3,
    # M12 3, M13 4 = 38 (M14 have no result yet); seroconverted: M7 4, M13 1 = 5
    "SEROCONVERSION": (5, 38, 13.2, {}),
    # FY2026 episodes opened (enrolments, not transfers, and M19's ANC1): 51 ANC1 + M11 4 + M12 3 = 58; aged
    # 10-24: M1 5, M3 4, M6 3, M7 4, M11 4, M14 2, M19 2 = 24
    "ENROLLED_10_24": (24, 58, 41.4, {}),
    # referrals at A due in September: completed 1, expired 1 (the cancelled one does not count)
    "REFERRAL_COMPLETION": (1, 2, 50.0, {"completed": 1, "expired": 1}),
}
FY2025 = {
    # ANC1: M15 5 (new negatives, 25) + M16 4 (known positive, 30, on ART since 2020) + M19 2 (known positive,
    # 23, on ART since 2024) = 11
    "PMTCT_STAT": (11, 11, 100.0, {
        "new_negative": 5, "new_negative:25_29": 5, "known_positive": 6, "known_positive:30_34": 4,
        "known_positive:20_24": 2, "denominator:25_29": 5, "denominator:30_34": 4, "denominator:20_24": 2,
    }),
    "PMTCT_ART": (6, 6, 100.0, {"already_on_art": 6, "already_on_art:30_34": 4, "already_on_art:20_24": 2}),
    # first NAT in FY2025: F13 at 91 days (2024-12-02); M16's infants are tested in FY2026
    "PMTCT_EID": (1, 6, 16.7, {"2_12m": 1}),
    "PMTCT_HEI": (1, None, 1.0, {"negative:2_12m": 1}),
    # births of FY2023: none
    "PMTCT_FO": (0, 0, None, {}),
}
# fmt: on


def observed(report: dict[str, Any], codes) -> dict[str, tuple]:
    return {
        i["code"]: (i["numerator"], i["denominator"], i["value"], {k: v for k, v in i["disaggregations"].items() if v})
        for i in report["indicators"]
        if i["code"] in codes
    }


async def report(served, period: str, scope: str = "") -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"{served.url}/v1/indicators?period={period}&{scope}", headers=served.reader)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def served(mer_served):
    return mer_served


async def test_fy2026_every_mer_and_programme_figure_equals_the_hand_count(served) -> None:
    assert observed(await report(served, "FY2026"), FY2026) == FY2026


async def test_fy2025_figures_equal_the_hand_count(served) -> None:
    assert observed(await report(served, "FY2025"), FY2025) == FY2025


async def test_the_adx_export_parses_in_the_adx_namespace_with_the_json_exports_periods_org_units_and_values(
    served,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        as_json = await client.get(
            f"{served.url}/v1/exports/dhis2?period=FY2026&district=Maseru", headers=served.reader
        )
        as_adx = await client.get(f"{served.url}/v1/exports/adx?period=FY2026&district=Maseru", headers=served.reader)
    assert as_adx.status_code == 200 and as_adx.headers["content-type"].startswith("application/adx+xml")
    root = ElementTree.fromstring(as_adx.content)
    ns = "{urn:ihe:qrph:adx:2015}"
    assert root.tag == f"{ns}adx" and root.get("exported") == "2026-10-15T09:00:00Z"
    groups = root.findall(f"{ns}group")
    body = as_json.json()
    # FY2026 is DHIS2's 2025Oct: twelve months from 2025-10-01; Maseru is A and B
    assert body["period"] == "2025Oct"
    assert {(g.get("orgUnit"), g.get("period"), g.get("dataSet"), g.get("attributeOptionCombo")) for g in groups} == {
        ("LsMsuFlt001", "2025-10-01/P1Y", "MER_PMTCT_FACILITY", "MECH_PMTCT_M2M"),
        ("LsMsuQol002", "2025-10-01/P1Y", "MER_PMTCT_FACILITY", "MECH_PMTCT_M2M"),
    }
    adx_values = {
        (g.get("orgUnit"), v.get("dataElement"), v.get("categoryOptionCombo"), v.get("value"))
        for g in groups
        for v in g.findall(f"{ns}dataValue")
    }
    json_values = {(v["orgUnit"], v["dataElement"], v["categoryOptionCombo"], v["value"]) for v in body["dataValues"]}
    assert adx_values == json_values and len(adx_values) == 2 * 156
    # A's ANC1 clients aged 20-24: M1 5 + M3 2; B's recent negatives aged 14: M6 3
    assert ("LsMsuFlt001", "PMTCT_STAT_D", "AGE_20-24_F", "7") in adx_values
    assert ("LsMsuQol002", "PMTCT_STAT_N", "RECENT_NEG_AGE_10-14_F", "3") in adx_values


async def test_each_total_is_the_sum_of_its_age_bands_and_statuses(served) -> None:
    """What DHIS2 adds up from the finest values equals the totals the API reports."""
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"{served.url}/v1/indicators?period=FY2026&data_set=mer", headers=served.reader)
    values = {i["code"]: i for i in reply.json()["indicators"]}
    assert {i["data_set"] for i in values.values()} == {"mer"}
    stat = values["PMTCT_STAT"]["disaggregations"]
    for status in ("known_positive", "newly_positive", "new_negative", "recent_negative"):
        assert stat[status] == sum(v for k, v in stat.items() if k.startswith(f"{status}:"))
    assert values["PMTCT_STAT"]["denominator"] == sum(v for k, v in stat.items() if k.startswith("denominator:"))
    assert values["PMTCT_EID"]["may_exceed_100"] and values["PMTCT_STAT"]["may_exceed_100"] is None
