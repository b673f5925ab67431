"""Programme indicators, each defined once, in the shape of the PEPFAR MER 2.x indicator reference
sheets (PMTCT_STAT, PMTCT_ART, PMTCT_EID, PMTCT_HEI, PMTCT_FO) plus the programme's own metrics.

Everything an indicator needs is a *count* of subjects (mothers, deliveries, infants, referrals)
in a *population*: the rows of one read-model table counted in the facility and month of one of
their dates. Every subject falls in exactly one (facility, month) cell of a population, so the
value for a quarter, a year, a district or a country is the sum of its cells, and a definition
written once here serves every period and every level. The cells are kept in the read model
(`monthly_counts`), moved as each subject's facts change, so a national year sums a few
thousand rows instead of counting every subject.

Counts look at the facts as recorded, whenever they arrive: a result posted weeks late by an
offline clinic still counts in the month of its sample. Ages are the infant's age at sampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

#: an infant's first NAT "by 2 months" is taken at 60 days of age or younger (MER PMTCT_EID 0-2 months)
TWO_MONTHS_DAYS = 60
#: "by 12 months": at 365 days of age or younger (MER PMTCT_EID, PMTCT_HEI_POS)
TWELVE_MONTHS_DAYS = 365
#: the final-outcome cohort was born this many months before the reporting period (MER PMTCT_FO)
FO_COHORT_LAG_MONTHS = 24


@dataclass(frozen=True)
class Count:
    """A number of subjects of a population that meet `where` (SQL on the population's table)."""

    key: str
    where: str
    label: str


@dataclass(frozen=True)
class Population:
    """Rows of `table` counted once each, in the facility `facility_column` and the month of
    `date_column` (plus `shift_months`), when they meet `where`. `subject_column` names the subject
    a handler changes, so the read model can move just that subject's counts (reporting.repository)."""

    name: str
    table: str
    subject_column: str
    facility_column: str
    date_column: str
    where: str
    counts: tuple[Count, ...]
    shift_months: int = 0

    @property
    def count_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.counts)

    def cells_sql(self, subjects: str) -> str:
        """Each count per (facility, month) of the rows that meet `subjects` (SQL)."""
        month = f"date_trunc('month', {self.date_column})"
        if self.shift_months:
            month = f"({month} + interval '{self.shift_months} months')"
        columns = ",\n  ".join(f"count(*) FILTER (WHERE {c.where}) AS {c.key}" for c in self.counts)
        return (
            f"SELECT {self.facility_column} AS facility_id, CAST({month} AS date) AS month,\n  {columns}\n"
            f"FROM {self.table}\n"
            f"WHERE ({subjects}) AND {self.facility_column} IS NOT NULL AND {self.date_column} IS NOT NULL"
            f" AND ({self.where})\n"
            "GROUP BY 1, 2"
        )


# -- populations ---------------------------------------------------------------------------------

_KNOWN_POSITIVE = "hiv_status_at_enrolment = 'positive'"
_NEWLY_POSITIVE = (
    "hiv_status_at_enrolment = 'unknown' AND first_test_setting = 'anc' AND first_test_result = 'positive'"
)
_NEGATIVE_AT_ANC = (
    "hiv_status_at_enrolment = 'negative'"
    " OR (hiv_status_at_enrolment = 'unknown' AND first_test_setting = 'anc' AND first_test_result = 'negative')"
)
_STAT_POS = f"({_KNOWN_POSITIVE}) OR ({_NEWLY_POSITIVE})"
_NEGATIVE_AT_ENROLMENT = (
    "hiv_status_at_enrolment = 'negative' OR (hiv_status_at_enrolment = 'unknown' AND first_test_result = 'negative')"
)

# enrolment episodes (reporting.episodes): a transfer in opens none, so no pregnancy is counted twice
NEW_ANC1 = Population(
    name="new ANC1 clients",
    table="enrolments",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="enrolled_on",
    where="status_at_enrolment = 'pregnant'",
    counts=(
        Count("anc1", "TRUE", "New ANC1 clients"),
        Count("stat_known", f"({_STAT_POS}) OR ({_NEGATIVE_AT_ANC})", "Known HIV status at ANC"),
        Count("stat_known_positive", _KNOWN_POSITIVE, "Known positive at entry"),
        Count("stat_newly_positive", _NEWLY_POSITIVE, "Newly tested positive"),
        Count("stat_negative", _NEGATIVE_AT_ANC, "Negative"),
        Count("stat_pos", _STAT_POS, "HIV-positive"),
        Count("art_already", f"({_STAT_POS}) AND on_art_at_enrolment", "Already on ART"),
        Count("art_new", f"({_STAT_POS}) AND NOT on_art_at_enrolment AND art_started_on IS NOT NULL", "New on ART"),
        Count("art_total", f"({_STAT_POS}) AND (on_art_at_enrolment OR art_started_on IS NOT NULL)", "On ART"),
    ),
)

NEW_ENROLMENTS = Population(
    name="new enrolments",
    table="enrolments",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="enrolled_on",
    where="TRUE",
    counts=(
        Count("negative_at_enrolment", _NEGATIVE_AT_ENROLMENT, "HIV-negative at enrolment"),
        Count(
            "seroconverted",
            f"({_NEGATIVE_AT_ENROLMENT}) AND first_positive_on IS NOT NULL",
            "Later tested HIV-positive",
        ),
    ),
)

DELIVERIES = Population(
    name="deliveries",
    table="deliveries",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="delivered_on",
    where="TRUE",
    counts=(
        Count("deliveries", "TRUE", "Deliveries recorded"),
        Count("skilled_deliveries", "skilled_attendant", "With a skilled attendant"),
        Count("hiv_pos_deliveries", "mother_hiv_status = 'positive'", "Deliveries to HIV-positive mothers"),
    ),
)

HEI_BIRTHS = Population(
    name="HIV-exposed infants by birth month",
    table="infants",
    subject_column="infant_id",
    facility_column="facility_id",
    date_column="birth_date",
    where="birth_date IS NOT NULL",
    counts=(Count("hei_born", "TRUE", "HIV-exposed infants registered"),),
)

FIRST_NAT = Population(
    name="infants by first virologic sample",
    table="infants",
    subject_column="infant_id",
    facility_column="first_nat_facility_id",
    date_column="first_nat_on",
    where=f"first_nat_age_days <= {TWELVE_MONTHS_DAYS}",
    counts=(
        Count("eid_first", "TRUE", "First virologic sample by 12 months"),
        Count("eid_0_2", f"first_nat_age_days <= {TWO_MONTHS_DAYS}", "Sample at 0-2 months"),
        Count("eid_2_12", f"first_nat_age_days > {TWO_MONTHS_DAYS}", "Sample at 2-12 months"),
        Count(
            "eid_0_2_positive",
            f"first_nat_age_days <= {TWO_MONTHS_DAYS} AND first_nat_result = 'positive'",
            "First NAT by 2 months positive",
        ),
    ),
)

FIRST_POSITIVE_NAT = Population(
    name="infants by first positive virologic sample",
    table="infants",
    subject_column="infant_id",
    facility_column="first_pos_nat_facility_id",
    date_column="first_pos_nat_on",
    where=f"first_pos_nat_age_days <= {TWELVE_MONTHS_DAYS}",
    counts=(
        Count("hei_pos", "TRUE", "Positive virologic result by 12 months"),
        Count("hei_pos_art", "art_started_on IS NOT NULL", "ART started"),
        Count("hei_pos_no_art", "art_started_on IS NULL", "ART not started"),
    ),
)

_UNKNOWN_OUTCOMES = "'unknown', 'lost_to_follow_up', 'transferred_out'"

FO_COHORT = Population(
    name="HIV-exposed infant birth cohort of 24 months earlier",
    table="infants",
    subject_column="infant_id",
    facility_column="facility_id",
    date_column="birth_date",
    where="birth_date IS NOT NULL",
    shift_months=FO_COHORT_LAG_MONTHS,
    counts=(
        Count("fo_cohort", "TRUE", "HEIs in the birth cohort"),
        Count("fo_outcome", "outcome IS NOT NULL", "With a documented outcome"),
        Count("fo_infected", "outcome = 'infected'", "HIV-infected"),
        Count("fo_uninfected", "outcome = 'uninfected'", "HIV-uninfected"),
        Count("fo_unknown", f"outcome IN ({_UNKNOWN_OUTCOMES})", "HIV final status unknown"),
        Count("fo_died", "outcome = 'died'", "Died without status known"),
    ),
)

REFERRALS_DUE = Population(
    name="referrals by due date",
    table="referrals",
    subject_column="referral_id",
    facility_column="facility_id",
    date_column="due_by",
    # a cancelled referral was withdrawn (made in error, or made moot by a late result): no loop to close
    where="status <> 'cancelled'",
    counts=(
        Count("referrals_due", "TRUE", "Referrals due to close"),
        Count("referrals_completed", "status = 'completed'", "Completed"),
        Count("referrals_declined", "status = 'declined'", "Declined"),
        Count("referrals_expired", "status = 'expired'", "Expired"),
        Count("referrals_open", "status IN ('requested', 'accepted')", "Still open"),
    ),
)

#: counted per (facility, month) as events arrive, not from subjects: an interaction has no state
CLIENT_INTERACTIONS_COUNT = Count("client_interactions", "TRUE", "Events recorded for clients")

POPULATIONS: tuple[Population, ...] = (
    NEW_ANC1,
    NEW_ENROLMENTS,
    DELIVERIES,
    HEI_BIRTHS,
    FIRST_NAT,
    FIRST_POSITIVE_NAT,
    FO_COHORT,
    REFERRALS_DUE,
)
COUNTS: dict[str, Count] = {
    **{c.key: c for p in POPULATIONS for c in p.counts},
    CLIENT_INTERACTIONS_COUNT.key: CLIENT_INTERACTIONS_COUNT,
}


# -- indicators ----------------------------------------------------------------------------------


class Unit(StrEnum):
    percent = "percent"
    number = "number"


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str
    numerator: str
    denominator: str | None
    #: disaggregation name -> count key
    disaggregations: Mapping[str, str] = field(default_factory=dict)
    guideline: str = ""
    definition: str = ""

    @property
    def unit(self) -> Unit:
        return Unit.percent if self.denominator else Unit.number


PMTCT_STAT = Indicator(
    "PMTCT_STAT",
    "Pregnant women with known HIV status at ANC1",
    numerator="stat_known",
    denominator="anc1",
    disaggregations={
        "known_positive": "stat_known_positive",
        "newly_positive": "stat_newly_positive",
        "negative": "stat_negative",
    },
    guideline="PEPFAR MER PMTCT_STAT",
    definition="Numerator: new ANC1 clients (pregnant women enrolling, not transferred in; a new pregnancy is "
    "a new ANC1) in the period whose HIV status is known: positive or negative at enrolment, or a conclusive "
    "first HIV test at ANC. Denominator: new ANC1 clients in the period.",
)
PMTCT_STAT_POS = Indicator(
    "PMTCT_STAT_POS",
    "HIV-positive pregnant women identified at ANC1",
    numerator="stat_pos",
    denominator="stat_known",
    disaggregations={"known_positive": "stat_known_positive", "newly_positive": "stat_newly_positive"},
    guideline="PEPFAR MER PMTCT_STAT (POS)",
    definition="Numerator: of the PMTCT_STAT numerator, women known positive at enrolment or whose first "
    "conclusive HIV test at ANC was positive. Denominator: the PMTCT_STAT numerator.",
)
PMTCT_ART = Indicator(
    "PMTCT_ART",
    "HIV-positive pregnant women on ART",
    numerator="art_total",
    denominator="stat_pos",
    disaggregations={"already_on_art": "art_already", "new_on_art": "art_new"},
    guideline="PEPFAR MER PMTCT_ART",
    definition="Numerator: of the PMTCT_STAT_POS numerator, women already on ART at enrolment, or who "
    "started ART (ArtInitiated) since. Denominator: the PMTCT_STAT_POS numerator.",
)
PMTCT_EID = Indicator(
    "PMTCT_EID",
    "Infants with a first virologic test by 12 months",
    numerator="eid_first",
    denominator="stat_pos",
    disaggregations={"0_2_months": "eid_0_2", "2_12_months": "eid_2_12"},
    guideline="PEPFAR MER PMTCT_EID",
    definition="Numerator: infants whose first virologic (NAT) sample was collected in the period, at 12 "
    "months of age or younger, counted where the sample was taken; 0-2 months is 60 days or younger. "
    "Denominator: HIV-exposed infants born, by the MER proxy PMTCT_STAT_POS of the same period.",
)
PMTCT_HEI_POS = Indicator(
    "PMTCT_HEI_POS",
    "Infants with a positive virologic result by 12 months",
    numerator="hei_pos",
    denominator=None,
    disaggregations={"art_started": "hei_pos_art", "art_not_started": "hei_pos_no_art"},
    guideline="PEPFAR MER PMTCT_HEI_POS",
    definition="Infants whose first positive virologic sample (confirmatory tests excluded) was collected "
    "in the period at 12 months of age or younger, disaggregated by whether infant ART has started.",
)
PMTCT_FO = Indicator(
    "PMTCT_FO",
    "HIV-exposed infants with a documented final outcome",
    numerator="fo_outcome",
    denominator="fo_cohort",
    disaggregations={
        "infected": "fo_infected",
        "uninfected": "fo_uninfected",
        "unknown": "fo_unknown",
        "died": "fo_died",
    },
    guideline="PEPFAR MER PMTCT_FO",
    definition="Denominator: HIV-exposed infants registered for follow-up and born in the period 24 months "
    "before the reporting period (the birth cohort). Numerator: those with a documented final outcome; "
    "LTFU and transferred out count as final status unknown.",
)
MTCT_EARLY = Indicator(
    "MTCT_EARLY",
    "Early mother-to-child transmission rate (first NAT by 2 months)",
    numerator="eid_0_2_positive",
    denominator="eid_0_2",
    guideline="WHO EID / UNAIDS early MTCT rate",
    definition="Numerator: infants whose first virologic test, sampled in the period by 2 months of age, "
    "was positive. Denominator: infants whose first virologic sample was taken in the period by 2 months.",
)
MTCT_FINAL = Indicator(
    "MTCT_FINAL",
    "Final mother-to-child transmission rate",
    numerator="fo_infected",
    denominator="fo_cohort",
    guideline="WHO / UNAIDS final MTCT rate (virtual elimination < 5%)",
    definition="Numerator: infants of the PMTCT_FO birth cohort whose final outcome is HIV-infected. "
    "Denominator: the PMTCT_FO birth cohort.",
)
SKILLED_DELIVERY = Indicator(
    "SKILLED_DELIVERY",
    "Deliveries with a skilled birth attendant",
    numerator="skilled_deliveries",
    denominator="deliveries",
    guideline="WHO / SDG 3.1.2 skilled birth attendance",
    definition="Numerator: deliveries in the period attended by a skilled attendant. "
    "Denominator: deliveries recorded in the period.",
)
SEROCONVERSION = Indicator(
    "SEROCONVERSION",
    "Seroconversion among HIV-negative women",
    numerator="seroconverted",
    denominator="negative_at_enrolment",
    guideline="Mentor Mother programme outcome (maternal HIV incidence, WHO retesting guidance)",
    definition="Denominator: women enrolled in the period (not transferred in) who were HIV-negative at "
    "enrolment (negative status recorded, or a negative first conclusive test). Numerator: of those, "
    "women with a later positive HIV test in the same episode (pregnancy and breastfeeding).",
)
REFERRAL_COMPLETION = Indicator(
    "REFERRAL_COMPLETION",
    "Referrals completed (loop closure)",
    numerator="referrals_completed",
    denominator="referrals_due",
    disaggregations={
        "completed": "referrals_completed",
        "declined": "referrals_declined",
        "expired": "referrals_expired",
        "open": "referrals_open",
    },
    guideline="Programme referral loop closure (FHIR Task status)",
    definition="Denominator: referrals due to close in the period (due date in the period), cancelled ones "
    "excluded. Numerator: of those, referrals completed; each counted by the referring facility.",
)
CLIENT_INTERACTIONS = Indicator(
    "CLIENT_INTERACTIONS",
    "Client interactions",
    numerator="client_interactions",
    denominator=None,
    guideline="Mentor Mother programme volume",
    definition="Events recorded by clinics for mothers and infants in the period (enrolments, ANC visits, "
    "tests, ART starts, viral loads, deliveries, transfers, deaths, infant prophylaxis, feeding, tests, ART "
    "and visits), at the facility that recorded them. Platform-generated events (schedules, due/overdue "
    "alerts, outcome classification, loss to follow-up) are not interactions.",
)

INDICATORS: tuple[Indicator, ...] = (
    PMTCT_STAT,
    PMTCT_STAT_POS,
    PMTCT_ART,
    PMTCT_EID,
    PMTCT_HEI_POS,
    PMTCT_FO,
    MTCT_EARLY,
    MTCT_FINAL,
    SKILLED_DELIVERY,
    SEROCONVERSION,
    REFERRAL_COMPLETION,
    CLIENT_INTERACTIONS,
)
BY_CODE: dict[str, Indicator] = {i.code: i for i in INDICATORS}

#: the PMTCT cascade of the dashboard: stage label -> count key
CASCADE: tuple[tuple[str, str], ...] = (
    ("ANC1", "anc1"),
    ("Known status", "stat_known"),
    ("HIV-positive", "stat_pos"),
    ("On ART", "art_total"),
    ("Delivered", "hiv_pos_deliveries"),
    ("HIV-exposed infants", "hei_born"),
    ("Tested by 2 months", "eid_0_2"),
    ("Final outcome", "fo_outcome"),
)


# -- values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndicatorValue:
    indicator: Indicator
    numerator: int
    denominator: int | None
    disaggregations: dict[str, int]

    @property
    def value(self) -> float | None:
        """Percent, one decimal; the count itself for an indicator without a denominator; None on 0/0."""
        if self.indicator.denominator is None:
            return float(self.numerator)
        return percent(self.numerator, self.denominator or 0)


def percent(numerator: int, denominator: int) -> float | None:
    if denominator == 0:
        return None
    return round(100 * numerator / denominator, 1)


def sum_counts(cells: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Add up per-(facility, month) counts: every count key, zero where no cell has it."""
    total = dict.fromkeys(COUNTS, 0)
    for cell in cells:
        for key, value in cell.items():
            total[key] += value
    return total


def evaluate(counts: Mapping[str, int], indicators: Iterable[Indicator] = INDICATORS) -> list[IndicatorValue]:
    """Indicator values from summed counts."""
    return [
        IndicatorValue(
            indicator=i,
            numerator=counts[i.numerator],
            denominator=counts[i.denominator] if i.denominator else None,
            disaggregations={name: counts[key] for name, key in i.disaggregations.items()},
        )
        for i in indicators
    ]
