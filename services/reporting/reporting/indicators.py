"""Indicators, each defined once: the PEPFAR MER 2.8 PMTCT indicators a ministry receives (the MER
data set) and the programme's own figures (the programme data set), kept apart so that a submission
of one never double-reports the other. docs/indicators.md gives each definition with its source
(PEPFAR MER Indicator Reference Guide version 2.8, FY2025, the indicator's reference sheet).

Everything an indicator needs is a *count* of subjects (enrolment episodes, post-ANC1 tests,
deliveries, infants, referrals) in a *population*: the rows of one read-model table counted in the
facility and month of one of their dates. Every subject falls in exactly one (facility, month)
cell of a population, so the value for a quarter, a fiscal year, a district or a country is the
sum of its cells, and a definition written once here serves every period and every level. The
cells are kept in the read model (`monthly_counts`), moved as each subject's facts change.

Counts look at the facts as recorded, whenever they arrive: a result posted weeks late by an
offline clinic still counts in the month of its sample, and so revises a month already reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .ages import TWELVE_MONTHS_DAYS, TWO_MONTHS_DAYS, WOMEN_BANDS, YOUNG_WOMEN

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


def by_age(key: str, where: str, label: str, bands: tuple[str, ...] = WOMEN_BANDS, column: str = "age_band"):
    """The count, and one count per age band (`key__band`)."""
    yield Count(key, where, label)
    for band in bands:
        yield Count(f"{key}__{band}", f"({where}) AND {column} = '{band}'", f"{label}, {band}")


# -- populations ---------------------------------------------------------------------------------

_POS_AT_ANC1 = "stat_status IN ('known_positive', 'newly_positive')"

# enrolment episodes with an ANC1 here (reporting.episodes), counted in the month of ANC1
NEW_ANC1 = Population(
    name="new ANC1 clients",
    table="enrolments",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="anc1_on",
    where="anc1_on IS NOT NULL",
    counts=(
        *by_age("anc1", "TRUE", "New ANC1 clients"),
        Count("stat_known", "stat_status IS NOT NULL", "Known HIV status at ANC1"),
        *by_age("stat_known_positive", "stat_status = 'known_positive'", "Known positive at entry"),
        *by_age("stat_newly_positive", "stat_status = 'newly_positive'", "Newly tested positive"),
        *by_age("stat_new_negative", "stat_status = 'new_negative'", "New negative"),
        *by_age("stat_recent_negative", "stat_status = 'recent_negative'", "Recent negative"),
        Count("stat_pos", _POS_AT_ANC1, "HIV-positive at ANC1"),
        *by_age("art_already", f"{_POS_AT_ANC1} AND art_status = 'already'", "Already on ART"),
        *by_age("art_new", f"{_POS_AT_ANC1} AND art_status = 'new'", "New on ART in this pregnancy"),
        Count("art_total", f"{_POS_AT_ANC1} AND art_status IN ('already', 'new')", "On ART in pregnancy"),
        Count("art_postnatal", f"{_POS_AT_ANC1} AND art_status = 'postnatal'", "Started ART after delivery"),
    ),
)

MODALITIES = ("pregnancy", "labour_delivery", "breastfeeding")
RESULTS = ("positive", "negative")

# conclusive tests after ANC1 of women not known positive (reporting.episodes.PostAnc1Test)
POST_ANC1_TESTS = Population(
    name="post-ANC1 tests",
    table="mother_tests",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="tested_on",
    where="TRUE",
    counts=(
        Count("post_anc1_tests", "TRUE", "Tested after ANC1"),
        Count("post_anc1_pos", "newly_positive", "Newly identified positive after ANC1"),
        *(
            count
            for modality in MODALITIES
            for result in RESULTS
            for count in by_age(
                f"pa_{modality}_{result}",
                f"modality = '{modality}' AND result = '{result}'",
                f"Post ANC1 {modality}, {result}",
            )
        ),
    ),
)

_NEGATIVE_AT_ENROLMENT = (
    "hiv_status_at_enrolment = 'negative' OR (hiv_status_at_enrolment = 'unknown' AND first_test_result = 'negative')"
)

NEW_ENROLMENTS = Population(
    name="new enrolments",
    table="enrolments",
    subject_column="client_id",
    facility_column="facility_id",
    date_column="enrolled_on",
    where="TRUE",
    counts=(
        Count("enrolled", "TRUE", "Women enrolled in the programme"),
        Count("enrolled_10_24", "age_band IN ({})".format(", ".join(f"'{b}'" for b in YOUNG_WOMEN)), "Aged 10-24"),
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
        Count(
            "hiv_pos_deliveries",
            # derived from her facts; a row not derived yet (stored before migration 0009) as published
            "COALESCE(positive_at_delivery, mother_hiv_status = 'positive')",
            "Deliveries to HIV-positive mothers",
        ),
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

_0_2 = f"<= {TWO_MONTHS_DAYS}"
_2_12 = f"> {TWO_MONTHS_DAYS}"

FIRST_NAT = Population(
    name="infants by first virologic sample",
    table="infants",
    subject_column="infant_id",
    facility_column="first_nat_facility_id",
    date_column="first_nat_on",
    where=f"first_nat_age_days <= {TWELVE_MONTHS_DAYS}",
    counts=(
        Count("eid_first", "TRUE", "First virologic sample by 12 months"),
        Count("eid_0_2", f"first_nat_age_days {_0_2}", "Sample at 0-2 months"),
        Count("eid_2_12", f"first_nat_age_days {_2_12}", "Sample at 2-12 months"),
        Count(
            "eid_0_2_positive", f"first_nat_age_days {_0_2} AND first_nat_result = 'positive'", "Positive by 2 months"
        ),
        Count("hei_neg_0_2m", f"first_nat_age_days {_0_2} AND first_nat_result = 'negative'", "Negative, 0-2 months"),
        Count(
            "hei_neg_2_12m", f"first_nat_age_days {_2_12} AND first_nat_result = 'negative'", "Negative, 2-12 months"
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
        Count("hei_pos_0_2m", f"first_pos_nat_age_days {_0_2}", "Positive, 0-2 months"),
        Count("hei_pos_2_12m", f"first_pos_nat_age_days {_2_12}", "Positive, 2-12 months"),
        Count("hei_pos_art", "art_started_on IS NOT NULL", "Positive, ART started"),
        Count("hei_pos_art_0_2m", f"art_started_on IS NOT NULL AND first_pos_nat_age_days {_0_2}", "ART, 0-2 months"),
        Count(
            "hei_pos_art_2_12m", f"art_started_on IS NOT NULL AND first_pos_nat_age_days {_2_12}", "ART, 2-12 months"
        ),
    ),
)

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
        Count("fo_outcome", "fo_outcome IS NOT NULL", "With a documented outcome by 18 months"),
        Count("fo_infected", "fo_outcome = 'infected'", "HIV-infected"),
        Count("fo_uninfected", "fo_outcome = 'uninfected'", "HIV-uninfected"),
        Count("fo_unknown", "fo_outcome = 'unknown'", "HIV final status unknown"),
        Count("fo_died", "fo_outcome = 'died'", "Died without status known"),
        Count("fo_known_status", "fo_outcome IN ('infected', 'uninfected')", "Final HIV status known"),
        Count("fo_infected_now", "outcome_now = 'infected'", "HIV-infected, by every fact known now (any age)"),
    ),
)

REFERRALS_DUE = Population(
    name="referrals by due date",
    table="referrals",
    subject_column="referral_id",
    facility_column="facility_id",
    date_column="due_by",
    # a cancelled referral was withdrawn (made in error, cancelled entered_in_error when the fact that opened
    # it was voided, or made moot by a late result): no loop to close
    where="status <> 'cancelled'",
    counts=(
        Count("referrals_due", "TRUE", "Referrals due to close"),
        Count("referrals_completed", "status = 'completed'", "Completed"),
        Count("referrals_declined", "status = 'declined'", "Declined"),
        Count("referrals_expired", "status = 'expired'", "Expired"),
        Count("referrals_open", "status IN ('requested', 'accepted')", "Still open"),
    ),
)

#: the corrections (reporting.facts, Table.voids): each void by the facility that voided and the day it did
VOIDS = Population(
    name="corrections",
    table="voids",
    subject_column="event_id",
    facility_column="facility_id",
    date_column="occurred_on",
    where="TRUE",
    counts=(Count("corrections", "TRUE", "Events voided or replaced as entered in error"),),
)

#: counted per (facility, month) as events arrive, not from subjects: an interaction has no state
CLIENT_INTERACTIONS_COUNT = Count("client_interactions", "TRUE", "Events recorded for clients")

POPULATIONS: tuple[Population, ...] = (
    NEW_ANC1,
    POST_ANC1_TESTS,
    NEW_ENROLMENTS,
    DELIVERIES,
    HEI_BIRTHS,
    FIRST_NAT,
    FIRST_POSITIVE_NAT,
    FO_COHORT,
    REFERRALS_DUE,
    VOIDS,
)
COUNTS: dict[str, Count] = {
    **{c.key: c for p in POPULATIONS for c in p.counts},
    CLIENT_INTERACTIONS_COUNT.key: CLIENT_INTERACTIONS_COUNT,
}


# -- indicators ----------------------------------------------------------------------------------


class Unit(StrEnum):
    percent = "percent"
    number = "number"


class DataSet(StrEnum):
    #: PEPFAR MER PMTCT indicators: what the ministry's facility registers also count
    mer = "mer"
    #: the programme's own figures among its enrolled clients: never submitted as facility figures
    programme = "programme"


Keys = tuple[str, ...]


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str
    data_set: DataSet
    #: count keys summed
    numerator: Keys
    denominator: Keys | None
    #: disaggregation name -> count key (`status`, `status:age band`, ...)
    disaggregations: Mapping[str, str] = field(default_factory=dict)
    guideline: str = ""
    definition: str = ""
    #: why this percentage may exceed 100 % (None: it cannot, the numerator is part of the denominator)
    may_exceed_100: str | None = None

    @property
    def unit(self) -> Unit:
        return Unit.percent if self.denominator else Unit.number


def _crossed(statuses: Mapping[str, str], bands: tuple[str, ...] = WOMEN_BANDS) -> dict[str, str]:
    """Each status's total and its age bands: `status` and `status:band`."""
    found: dict[str, str] = {}
    for name, key in statuses.items():
        found[name] = key
        found.update({f"{name}:{band}": f"{key}__{band}" for band in bands})
    return found


MER_2_8 = "PEPFAR MER Indicator Reference Guide v2.8 (FY2025)"

PMTCT_STAT = Indicator(
    "PMTCT_STAT",
    "Pregnant women with known HIV status at ANC1",
    DataSet.mer,
    numerator=("stat_known",),
    denominator=("anc1",),
    disaggregations={
        **_crossed(
            {
                "known_positive": "stat_known_positive",
                "newly_positive": "stat_newly_positive",
                "new_negative": "stat_new_negative",
                "recent_negative": "stat_recent_negative",
            }
        ),
        **{f"denominator:{band}": f"anc1__{band}" for band in WOMEN_BANDS},
    },
    guideline=f"{MER_2_8}, PMTCT_STAT (Prevention: PMTCT)",
    definition="Numerator: pregnant women at their first ANC visit of this pregnancy (ANC1) in the period whose "
    "HIV status is known: known positive at entry, newly tested (a conclusive test on the ANC1 day) positive or "
    "negative, or a negative result from earlier in this pregnancy (recent negative). A negative known from before "
    "this pregnancy is not a known status: without a retest at ANC1 she is outside the numerator. Tests at later "
    "visits are post-ANC1 tests. Denominator: new ANC1 clients in the period (a transfer in, or a woman who enrolled "
    "at a later visit, is not one). By age at ANC1 in MER's fine bands.",
)
PMTCT_STAT_POS = Indicator(
    "PMTCT_STAT_POS",
    "HIV-positive pregnant women identified at ANC1",
    DataSet.mer,
    numerator=("stat_pos",),
    denominator=("stat_known",),
    disaggregations=_crossed({"known_positive": "stat_known_positive", "newly_positive": "stat_newly_positive"}),
    guideline=f"{MER_2_8}, PMTCT_STAT (PMTCT_STAT_POS, the positive disaggregates)",
    definition="Numerator: of the PMTCT_STAT numerator, the known positives at entry and the newly tested positives. "
    "Denominator: the PMTCT_STAT numerator.",
)
PMTCT_ART = Indicator(
    "PMTCT_ART",
    "HIV-positive pregnant women on ART in pregnancy",
    DataSet.mer,
    numerator=("art_total",),
    denominator=("stat_pos",),
    disaggregations={
        **_crossed({"already_on_art": "art_already", "new_on_art": "art_new"}),
        "postnatal_start_excluded": "art_postnatal",
    },
    guideline=f"{MER_2_8}, PMTCT_ART (Prevention: PMTCT)",
    definition="Numerator: of the PMTCT_STAT_POS women of the period, those already on ART at the beginning of this "
    "pregnancy (ART started before the pregnancy began: ANC1 minus the gestation, or the EDD minus 40 weeks) or new "
    "on ART in this pregnancy (started after it began, up to the delivery day). ART started after the delivery is "
    "postnatal ART: not in PMTCT_ART, shown separately (postnatal_start_excluded). Counted in the ANC1 month. "
    "Denominator: PMTCT_STAT_POS.",
)
PMTCT_EID = Indicator(
    "PMTCT_EID",
    "Infants with a first virologic HIV test by 12 months",
    DataSet.mer,
    numerator=("eid_first",),
    denominator=("stat_pos", "post_anc1_pos"),
    disaggregations={"0_2m": "eid_0_2", "2_12m": "eid_2_12"},
    guideline=f"{MER_2_8}, PMTCT_EID (Prevention: PMTCT)",
    definition="Numerator: infants whose first virologic (NAT) sample was collected in the period at 12 months of age "
    "or younger, where it was collected; by age at sample (0-2 months: 60 days or younger; 2-12 months). "
    "Denominator (MER's proxy for the HIV-exposed infants): PMTCT_STAT_POS plus the women newly identified positive "
    "after ANC1 (HTS_TST Post ANC1: pregnancy, labour and delivery, breastfeeding) in the period.",
    may_exceed_100="The denominator is MER's proxy (mothers identified in the period), not the infants tested: "
    "infants of mothers identified in an earlier period, or twins, can take it above 100 %.",
)
PMTCT_HEI = Indicator(
    "PMTCT_HEI",
    "HIV-exposed infants with a virologic result by 12 months",
    DataSet.mer,
    numerator=("hei_pos", "hei_neg_0_2m", "hei_neg_2_12m"),
    denominator=None,
    disaggregations={
        "positive:0_2m": "hei_pos_0_2m",
        "positive:2_12m": "hei_pos_2_12m",
        "negative:0_2m": "hei_neg_0_2m",
        "negative:2_12m": "hei_neg_2_12m",
        "positive_art_started:0_2m": "hei_pos_art_0_2m",
        "positive_art_started:2_12m": "hei_pos_art_2_12m",
    },
    guideline=f"{MER_2_8}, PMTCT_HEI (Prevention: PMTCT; replaces PMTCT_HEI_POS)",
    definition="Infants with a virologic (NAT) result whose sample was collected in the period at 12 months of age or "
    "younger, by age at sample collection (0-2, 2-12 months) and result: a positive counted at its first positive "
    "sample that is not a confirmatory test (a positive on a later test counts too), a negative at the infant's "
    "first virologic sample. Positives disaggregated by confirmed ART initiation (PMTCT_HEI_POS_ART).",
)
PMTCT_FO = Indicator(
    "PMTCT_FO",
    "HIV-exposed infants with a documented outcome by 18 months",
    DataSet.mer,
    numerator=("fo_outcome",),
    denominator=("fo_cohort",),
    disaggregations={
        "infected": "fo_infected",
        "uninfected": "fo_uninfected",
        "unknown": "fo_unknown",
        "died": "fo_died",
    },
    guideline=f"{MER_2_8}, PMTCT_FO (Prevention: PMTCT; reported annually)",
    definition="Denominator: HIV-exposed infants registered in the birth cohort born in the period 24 months before "
    "the reporting period. Numerator: those with an outcome documented by 18 months of age, computed from the facts "
    "as they stood at 18 months (reporting.infants): HIV-infected, HIV-uninfected (a negative final test after "
    "breastfeeding ended), died without status known, HIV final status unknown (a recorded transfer out or loss to "
    "follow-up). An infant about whom nothing was recorded has no documented outcome. Late facts revise it.",
)
HTS_TST_POST_ANC1 = Indicator(
    "HTS_TST_POST_ANC1",
    "HIV tests of women after ANC1 (pregnancy, labour and delivery, breastfeeding)",
    DataSet.mer,
    numerator=("post_anc1_tests",),
    denominator=None,
    disaggregations={
        f"{modality}:{result}" + (f":{band}" if band else ""): f"pa_{modality}_{result}" + (f"__{band}" if band else "")
        for modality in MODALITIES
        for result in RESULTS
        for band in ("", *WOMEN_BANDS)
    },
    guideline=f"{MER_2_8}, HTS_TST (modality Post ANC1: Pregnancy/L&D/BF)",
    definition="Conclusive HIV tests in the period of women not known positive, after their ANC1 (every test of a "
    "woman enrolled postnatally or at a later ANC visit), by modality (pregnancy: a later ANC visit; labour and "
    "delivery; breastfeeding: after the delivery), result and age at the test.",
)

MTCT_EARLY = Indicator(
    "MTCT_EARLY",
    "Early mother-to-child transmission rate (first NAT by 2 months)",
    DataSet.programme,
    numerator=("eid_0_2_positive",),
    denominator=("eid_0_2",),
    guideline="WHO / UNAIDS early MTCT rate (Global AIDS Monitoring)",
    definition="Numerator: infants whose first virologic test, sampled in the period by 2 months of age, "
    "was positive. Denominator: infants whose first virologic sample was taken in the period by 2 months.",
)
MTCT_FINAL = Indicator(
    "MTCT_FINAL",
    "Final mother-to-child transmission rate",
    DataSet.programme,
    numerator=("fo_infected",),
    denominator=("fo_known_status",),
    guideline="WHO / UNAIDS final MTCT rate (Global AIDS Monitoring; elimination target < 5 % breastfeeding)",
    definition="Numerator: infants of the PMTCT_FO birth cohort HIV-infected by 18 months. Denominator: infants of the "
    "cohort whose final HIV status is known (infected or uninfected): deaths and unknown outcomes are not divided by.",
)
HEI_INFECTED = Indicator(
    "HEI_INFECTED",
    "HIV-exposed infants of the birth cohort found HIV-infected, at any age",
    DataSet.programme,
    numerator=("fo_infected_now",),
    denominator=None,
    guideline="WHO 2021 consolidated HIV guidelines, 2.5 infant diagnosis (follow-up until the final diagnosis)",
    definition="Infants of the PMTCT_FO birth cohort (born 24 months before the period) found HIV-infected by every "
    "fact known now, at any age: a child traced after 18 months and diagnosed then counts here (not in PMTCT_FO or "
    "MTCT_FINAL, which take the facts as they stood at 18 months). Late facts revise it.",
)
SKILLED_DELIVERY = Indicator(
    "SKILLED_DELIVERY",
    "Deliveries with a skilled birth attendant",
    DataSet.programme,
    numerator=("skilled_deliveries",),
    denominator=("deliveries",),
    guideline="WHO / SDG 3.1.2 skilled birth attendance",
    definition="Numerator: deliveries of enrolled clients in the period attended by a skilled attendant. "
    "Denominator: deliveries of enrolled clients recorded in the period.",
)
SEROCONVERSION = Indicator(
    "SEROCONVERSION",
    "Seroconversion among HIV-negative women",
    DataSet.programme,
    numerator=("seroconverted",),
    denominator=("negative_at_enrolment",),
    guideline="Mentor Mother programme outcome (maternal HIV incidence, WHO retesting guidance)",
    definition="Denominator: women enrolled in the period (not transferred in) who were HIV-negative at "
    "enrolment (negative status recorded, or a negative first conclusive test). Numerator: of those, "
    "women with a later positive HIV test in the same episode (pregnancy and breastfeeding).",
)
ENROLLED_YOUNG_WOMEN = Indicator(
    "ENROLLED_10_24",
    "Enrolled clients aged 10-24",
    DataSet.programme,
    numerator=("enrolled_10_24",),
    denominator=("enrolled",),
    guideline="Mentor Mother programme: adolescent girls and young women (10-24)",
    definition="Numerator: women enrolled in the period aged 10-24 at enrolment. Denominator: women enrolled in the "
    "period (not transferred in).",
)
REFERRAL_COMPLETION = Indicator(
    "REFERRAL_COMPLETION",
    "Referrals completed (loop closure)",
    DataSet.programme,
    numerator=("referrals_completed",),
    denominator=("referrals_due",),
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
CLINIC_EVENTS = Indicator(
    "CLINIC_EVENTS",
    "Events recorded by clinics",
    DataSet.programme,
    numerator=("client_interactions",),
    denominator=None,
    # not the programme's "client interactions": those are the Mentor Mothers' own contacts
    # (reporting/programme.py, DHIS2 M2M_MM_CLIENT_INTERACTIONS); this is the clinics' EMR volume
    guideline="Programme volume (clinic EMR records), beside the Mentor Mothers' client interactions",
    definition="Events recorded by clinics for mothers and infants in the period (enrolments, ANC visits, "
    "tests, ART starts, viral loads, deliveries, transfers, deaths, infant prophylaxis, feeding, tests, ART "
    "and visits), at the facility that recorded them. Platform-generated events (schedules, due/overdue "
    "alerts, outcome classification, loss to follow-up) are not interactions.",
)
CORRECTIONS = Indicator(
    "CORRECTIONS",
    "Corrections by clinics",
    DataSet.programme,
    numerator=("corrections",),
    denominator=None,
    guideline="Programme data quality (EMR corrections: issue 17, docs/indicators.md#corrections-voided-events)",
    definition="Events a clinic voided or replaced as entered in error in the period (ClientEventVoided, "
    "InfantEventVoided), at the facility that corrected them, in the month of the correction. Every other figure "
    "is counted without the voided events; this one says how many there were.",
)

INDICATORS: tuple[Indicator, ...] = (
    PMTCT_STAT,
    PMTCT_STAT_POS,
    PMTCT_ART,
    PMTCT_EID,
    PMTCT_HEI,
    PMTCT_FO,
    HTS_TST_POST_ANC1,
    MTCT_EARLY,
    MTCT_FINAL,
    HEI_INFECTED,
    SKILLED_DELIVERY,
    SEROCONVERSION,
    ENROLLED_YOUNG_WOMEN,
    REFERRAL_COMPLETION,
    CLINIC_EVENTS,
    CORRECTIONS,
)
BY_CODE: dict[str, Indicator] = {i.code: i for i in INDICATORS}


def of_data_set(data_set: DataSet | None) -> tuple[Indicator, ...]:
    return tuple(i for i in INDICATORS if data_set is None or i.data_set is data_set)


#: the PMTCT cascade of the dashboard: stage label -> count key (each stage a subset of the one before
#: in the same period, except the infant stages, which follow the births and samples of the period)
CASCADE: tuple[tuple[str, str], ...] = (
    ("ANC1", "anc1"),
    ("Known status", "stat_known"),
    ("HIV-positive", "stat_pos"),
    ("On ART in pregnancy", "art_total"),
    ("HIV-exposed infants born", "hei_born"),
    ("First NAT by 2 months", "eid_0_2"),
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

    @property
    def above_100(self) -> bool:
        return self.value is not None and self.indicator.denominator is not None and self.value > 100


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
            numerator=sum(counts[k] for k in i.numerator),
            denominator=sum(counts[k] for k in i.denominator) if i.denominator else None,
            disaggregations={name: counts[key] for name, key in i.disaggregations.items()},
        )
        for i in indicators
    ]


def _parts() -> dict[str, tuple[str, ...]]:
    """Count keys that are sums of other count keys (a total of its age bands, of its statuses, ...):
    what a DHIS2 mapping may send instead of the total, for DHIS2 to add up."""
    parts: dict[str, tuple[str, ...]] = {}
    for key in COUNTS:
        bands = tuple(f"{key}__{band}" for band in WOMEN_BANDS)
        if all(b in COUNTS for b in bands):
            parts[key] = bands
    parts.update(
        {
            "stat_known": ("stat_known_positive", "stat_newly_positive", "stat_new_negative", "stat_recent_negative"),
            "stat_pos": ("stat_known_positive", "stat_newly_positive"),
            "art_total": ("art_already", "art_new"),
            "eid_first": ("eid_0_2", "eid_2_12"),
            "hei_pos": ("hei_pos_0_2m", "hei_pos_2_12m"),
            "hei_pos_art": ("hei_pos_art_0_2m", "hei_pos_art_2_12m"),
            "fo_outcome": ("fo_infected", "fo_uninfected", "fo_unknown", "fo_died"),
            "fo_known_status": ("fo_infected", "fo_uninfected"),
            "post_anc1_tests": tuple(f"pa_{m}_{r}" for m in MODALITIES for r in RESULTS),
            "post_anc1_pos": tuple(f"pa_{m}_positive" for m in MODALITIES),
        }
    )
    return parts


#: count key -> the count keys it is the sum of
PARTS: dict[str, tuple[str, ...]] = _parts()
