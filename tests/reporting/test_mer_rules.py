"""The MER 2.8 rules a pregnancy and an infant are read by (reporting.episodes, reporting.infants),
table-tested on the facts alone. Each case names the rule of the reference sheet it follows
(PEPFAR MER Indicator Reference Guide v2.8: PMTCT_STAT, PMTCT_ART, HTS_TST Post ANC1, PMTCT_FO;
WHO 2021 infant diagnosis for the final test); docs/indicators.md has the definitions."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime

import pytest

from reporting.ages import age_band, infant_band
from reporting.episodes import AncVisit, ArtStart, Delivered, Enrolled, HivTest, PregnancyEnded, derive
from reporting.infants import InfantFact, fo_outcome

CLIENT = uuid.uuid4()


def at(day: str, hour: int = 9) -> tuple[datetime, date]:
    moment = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
    return moment, moment.date()


def enrolled(day: str, hiv: str = "unknown", status: str = "pregnant", **kw) -> Enrolled:
    return Enrolled(*at(day), "FAC-A", status, hiv, kw.pop("on_art", False), kw.pop("transfer_in", False), **kw)


def hiv_test(day: str, result: str, setting: str = "anc", hour: int = 10, **kw) -> HivTest:
    return HivTest(*at(day, hour), result, setting, event_id=uuid.uuid4(), **kw)


# (case, facts, stat_status, art_status, post-ANC1 tests as (modality, result))
CASES = [
    ("PMTCT_STAT: known positive at entry", [enrolled("2026-03-02", "positive")], "known_positive", None, []),
    (
        "PMTCT_STAT: newly tested at ANC1, the test on the ANC1 day",
        [enrolled("2026-03-02"), hiv_test("2026-03-02", "negative")],
        "new_negative",
        None,
        [],
    ),
    (
        "PMTCT_STAT: a test at a later visit is not at ANC1 (a post-ANC1 test in its own month)",
        [enrolled("2026-03-02"), hiv_test("2026-04-06", "negative")],
        None,
        None,
        [("pregnancy", "negative")],
    ),
    (
        "PMTCT_STAT: the ANC visit of the test's day is number 1: at ANC1",
        [enrolled("2026-03-02"), AncVisit(*at("2026-03-02"), 1), hiv_test("2026-03-02", "positive", "other")],
        "newly_positive",
        None,
        [],
    ),
    (
        "PMTCT_STAT: the ANC visit of the test's day is number 2: a post-ANC1 test, whatever its setting",
        [enrolled("2026-03-02"), AncVisit(*at("2026-04-06"), 2), hiv_test("2026-04-06", "negative", "anc")],
        None,
        None,
        [("pregnancy", "negative")],
    ),
    (
        "PMTCT_STAT: a negative known from before this pregnancy is not a known status without a retest",
        [enrolled("2026-03-02", "negative", known_since=date(2024, 1, 5), gestation_weeks=12)],
        None,
        None,
        [],
    ),
    (
        "PMTCT_STAT: a negative from earlier in this pregnancy is a recent negative",
        [enrolled("2026-03-02", "negative", known_since=date(2026, 1, 20), gestation_weeks=12)],
        "recent_negative",
        None,
        [],
    ),
    (
        "PMTCT_STAT: she enrolled at her third visit: no ANC1 here, her test is post-ANC1",
        [enrolled("2026-03-02"), AncVisit(*at("2026-03-02"), 3), hiv_test("2026-03-02", "negative")],
        None,
        None,
        [("pregnancy", "negative")],
    ),
    (
        "PMTCT_ART: on ART since before the pregnancy began is already on ART",
        [enrolled("2026-03-02", "positive", on_art=True, art_start_date=date(2025, 1, 6), gestation_weeks=12)],
        "known_positive",
        "already",
        [],
    ),
    (
        "PMTCT_ART: ART started in this pregnancy before ANC1 is new on ART",
        [enrolled("2026-03-02", "positive", on_art=True, art_start_date=date(2026, 2, 1), gestation_weeks=12)],
        "known_positive",
        "new",
        [],
    ),
    (
        "PMTCT_ART: ART started after the delivery is postnatal, not PMTCT_ART",
        [enrolled("2026-03-02", "positive"), Delivered(*at("2026-08-03")), ArtStart(*at("2026-08-20"))],
        "known_positive",
        "postnatal",
        [],
    ),
    (
        "PMTCT_ART: ART started on the delivery day after the delivery is postnatal; before it, new",
        [enrolled("2026-03-02", "positive"), Delivered(*at("2026-08-03", 9)), ArtStart(*at("2026-08-03", 15))],
        "known_positive",
        "postnatal",
        [],
    ),
    (
        "PMTCT_ART: ART started in the pregnancy is new, the delivery recorded or not",
        [enrolled("2026-03-02", "positive"), ArtStart(*at("2026-03-09")), Delivered(*at("2026-08-03"))],
        "known_positive",
        "new",
        [],
    ),
    (
        "PMTCT_ART: ART started after a pregnancy loss is neither new nor postnatal",
        [enrolled("2026-03-02", "positive"), PregnancyEnded(*at("2026-04-01")), ArtStart(*at("2026-04-20"))],
        "known_positive",
        None,
        [],
    ),
    (
        "HTS_TST Post ANC1: a test at labour and delivery, and one while breastfeeding",
        [
            enrolled("2026-03-02"),
            hiv_test("2026-03-02", "negative"),
            Delivered(*at("2026-09-01")),
            hiv_test("2026-09-01", "negative", "labour_delivery"),
            hiv_test("2026-12-01", "positive", "postnatal"),
        ],
        "new_negative",
        None,
        [("labour_delivery", "negative"), ("breastfeeding", "positive")],
    ),
    (
        "HTS_TST Post ANC1: a postnatal enrolment has no ANC1; her test is a breastfeeding test",
        [enrolled("2026-03-02", status="postnatal"), hiv_test("2026-03-02", "negative", "postnatal")],
        None,
        None,
        [("breastfeeding", "negative")],
    ),
    (
        "HTS_TST Post ANC1: a test after a pregnancy loss is outside pregnancy and breastfeeding",
        [
            enrolled("2026-03-02"),
            hiv_test("2026-03-02", "negative"),
            PregnancyEnded(*at("2026-04-01")),
            hiv_test("2026-05-04", "negative", "other"),
        ],
        "new_negative",
        None,
        [],
    ),
    (
        "HTS_TST Post ANC1: no tests of a woman once she is known positive",
        [enrolled("2026-03-02"), hiv_test("2026-04-06", "positive"), hiv_test("2026-05-04", "positive")],
        None,
        None,
        [("pregnancy", "positive")],
    ),
    (
        "HTS_TST Post ANC1: known positive from an earlier pregnancy, her tests in this one are not counted",
        [
            enrolled("2025-01-06"),
            hiv_test("2025-02-03", "positive"),
            Delivered(*at("2025-07-07")),
            enrolled("2026-03-02"),
            hiv_test("2026-04-06", "positive"),
        ],
        None,
        None,
        [("pregnancy", "positive")],
    ),
]


@pytest.mark.parametrize("case, facts, stat, art, post", CASES, ids=[c[0] for c in CASES])
def test_a_pregnancy_is_read_as_mer_says(case, facts, stat, art, post) -> None:
    (episode, *_), tests = derive(CLIENT, facts)
    assert (episode.stat_status, episode.art_status) == (stat, art)
    assert [(t.modality, t.result) for t in tests] == post


def test_a_new_pregnancy_opened_by_its_anc1_visit_is_a_new_anc1_client_known_positive_and_on_art() -> None:
    facts = [
        enrolled("2025-01-06", "positive", on_art=True, art_start_date=date(2024, 6, 3), age_years=23),
        Delivered(*at("2025-07-07")),
        AncVisit(*at("2026-03-16"), 1, facility_id="FAC-B", age_years=24),
    ]
    results = {tuple(derive(CLIENT, order)[0]) for order in itertools.permutations(facts)}
    assert len(results) == 1
    first, second = results.pop()
    assert (first.anc1_on, first.opened_by) == (date(2025, 1, 6), "enrolment")
    assert (second.anc1_on, second.opened_by, second.facility_id) == (date(2026, 3, 16), "anc1", "FAC-B")
    assert (second.stat_status, second.art_status, second.age_band) == ("known_positive", "already", "20_24")


@pytest.mark.parametrize(
    "age, band",
    [
        (9, "lt10"),
        (10, "10_14"),
        (14, "10_14"),
        (15, "15_19"),
        (24, "20_24"),
        (49, "45_49"),
        (50, "50plus"),
        (None, "unknown"),
    ],
)
def test_mer_fine_age_bands(age, band) -> None:
    assert age_band(age) == band


@pytest.mark.parametrize("days, band", [(0, "0_2m"), (60, "0_2m"), (61, "2_12m"), (365, "2_12m"), (366, None)])
def test_infant_age_at_sample(days, band) -> None:
    assert infant_band(days) == band


BORN = date(2024, 6, 3)


def fact(kind: str, day: str, **kw) -> InfantFact:
    moment, on = at(day)
    return InfantFact(kind, moment, on, moment, "FAC-A", **kw)


# (case, facts, outcome by 18 months)
OUTCOMES = [
    ("infected: a positive NAT", [fact("test", "2024-07-15", test="NAT", result="positive")], "infected"),
    (
        "not infected by an antibody test before 18 months (maternal antibodies)",
        [fact("test", "2025-06-03", test="antibody", result="positive")],
        None,
    ),
    (
        "uninfected: a negative test 3 months after breastfeeding ended (WHO 2021)",
        [
            fact("feeding", "2024-07-01", method="exclusive_breastfeeding"),
            fact("feeding", "2025-06-03", method="breastfeeding_stopped"),
            fact("test", "2025-12-03", test="antibody", result="negative"),
        ],
        "uninfected",
    ),
    (
        "no outcome: a negative test while still breastfeeding",
        [
            fact("feeding", "2024-07-01", method="mixed_feeding"),
            fact("test", "2025-12-03", test="antibody", result="negative"),
        ],
        None,
    ),
    ("died without status known", [fact("outcome", "2024-09-01", outcome="died")], "died"),
    ("final status unknown: transferred out", [fact("outcome", "2024-09-01", outcome="transferred_out")], "unknown"),
    (
        "no outcome: transferred out, then followed again at the facility she went to (InfantFollowUpResumed)",
        [fact("outcome", "2024-09-01", outcome="transferred_out"), fact("resumed", "2024-09-20")],
        None,
    ),
    (
        "no outcome: transferred out and in on one day",
        [fact("outcome", "2024-09-01", outcome="transferred_out"), fact("resumed", "2024-09-01")],
        None,
    ),
    (
        "final status unknown: discharged again after she was followed again",
        [
            fact("outcome", "2024-09-01", outcome="discharged"),
            fact("resumed", "2024-10-01"),
            fact("outcome", "2025-03-01", outcome="discharged"),
        ],
        "unknown",
    ),
    (
        "uninfected after a transfer and her follow-up resumed: the test decides",
        [
            fact("outcome", "2024-09-01", outcome="transferred_out"),
            fact("resumed", "2024-09-20"),
            fact("feeding", "2024-09-20", method="replacement_feeding"),
            fact("test", "2025-12-03", test="antibody", result="negative"),
        ],
        "uninfected",
    ),
    ("final status unknown: lost, nothing after", [fact("lost", "2025-01-10")], "unknown"),
    ("no outcome: lost, then seen again", [fact("lost", "2025-01-10"), fact("contact", "2025-02-03")], None),
    (
        "no outcome: follow-up's calendar 'unknown' is not a fact",
        [fact("outcome", "2026-06-03", outcome="unknown")],
        None,
    ),
    (
        "no outcome: a positive test after the 18-month visit window",
        [fact("test", "2026-02-10", test="NAT", result="positive")],
        None,
    ),
]


@pytest.mark.parametrize("case, facts, outcome", OUTCOMES, ids=[c[0] for c in OUTCOMES])
def test_pmtct_fo_outcome_from_the_facts_at_18_months(case, facts, outcome) -> None:
    assert fo_outcome(BORN, facts) == outcome
