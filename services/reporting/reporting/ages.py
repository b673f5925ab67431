"""Age bands of the indicators (pure).

Women: PEPFAR MER 2.8's fine age bands (MER Indicator Reference Guide v2.8, "Disaggregated
Monitoring: Age"): <10, 10-14, 15-19, 20-24, 25-29, 30-34, 35-39, 40-44, 45-49, 50+, and Unknown
Age when the age was not recorded. The programme's adolescent and young women group (10-24) is
the sum of the 10-14, 15-19 and 20-24 bands (`YOUNG_WOMEN`).

Infants: MER PMTCT_EID / PMTCT_HEI's age at sample collection, 0-2 months (sample at 60 days of
age or younger) and 2-12 months (61 to 365 days).
"""

from __future__ import annotations

#: MER fine bands for women, in order; `unknown` when no age was recorded
WOMEN_BANDS: tuple[str, ...] = (
    "lt10",
    "10_14",
    "15_19",
    "20_24",
    "25_29",
    "30_34",
    "35_39",
    "40_44",
    "45_49",
    "50plus",
    "unknown",
)
LABELS: dict[str, str] = {
    "lt10": "<10",
    "10_14": "10-14",
    "15_19": "15-19",
    "20_24": "20-24",
    "25_29": "25-29",
    "30_34": "30-34",
    "35_39": "35-39",
    "40_44": "40-44",
    "45_49": "45-49",
    "50plus": "50+",
    "unknown": "Unknown age",
    "0_2m": "0-2 months",
    "2_12m": "2-12 months",
}
#: the programme's adolescent girls and young women, 10-24 years
YOUNG_WOMEN: tuple[str, ...] = ("10_14", "15_19", "20_24")

#: an infant sampled at this age in days or younger was sampled "by 2 months" (MER PMTCT_EID 0-2 months)
TWO_MONTHS_DAYS = 60
#: "by 12 months": at 365 days of age or younger (MER PMTCT_EID, PMTCT_HEI)
TWELVE_MONTHS_DAYS = 365
INFANT_BANDS: tuple[str, ...] = ("0_2m", "2_12m")


def age_band(age_years: int | None) -> str:
    """The MER fine band of an age in whole years."""
    if age_years is None:
        return "unknown"
    if age_years < 10:
        return "lt10"
    if age_years >= 50:
        return "50plus"
    low = age_years - age_years % 5
    return f"{low}_{low + 4}"


def infant_band(age_days: int) -> str | None:
    """0-2 or 2-12 months at sample collection; None past 12 months."""
    if age_days <= TWO_MONTHS_DAYS:
        return "0_2m"
    if age_days <= TWELVE_MONTHS_DAYS:
        return "2_12m"
    return None
