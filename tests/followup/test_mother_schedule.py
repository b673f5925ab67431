"""The mother's follow-up rules (followup.mother_schedule), one table row per rule, each naming
the guidance it follows:

- retesting of women not known positive: WHO Consolidated guidelines on HIV testing services
  (2019), "Retesting" — ANC1, third trimester, labour and delivery if the third-trimester retest
  is missing, postpartum while breastfeeding; an inconclusive status is retested after 14 days;
- ART start: WHO 2021 consolidated HIV guidelines, rapid ART initiation (within 7 days);
- viral load: WHO 2021 consolidated HIV guidelines, viral-load testing algorithm — a VL at or above
  1000 copies/mL calls for enhanced adherence support and a repeat VL after 3 months.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from followup.mother_schedule import MotherFacts, MotherRules, mother_plan
from followup.schedule import Requirement, add_months
from pmtct_events.enrolment import HivTestResult
from pmtct_events.followup import ScheduleKind as K

EDD = date(2030, 9, 1)
SEEN = EDD - timedelta(weeks=40 - 12)  # first seen at 12 weeks
NEG, POS, IND = HivTestResult.negative, HivTestResult.positive, HivTestResult.indeterminate


def wk(n: int) -> date:
    """The day she is `n` weeks pregnant."""
    return EDD - timedelta(weeks=40 - n)


def state(r: Requirement) -> str:
    if r.satisfied_on:
        return f"satisfied {r.satisfied_on.isoformat()}"
    if r.cancel_reason:
        return f"cancelled:{r.cancel_reason}"
    return "open"


def plan(f: MotherFacts, rules: MotherRules = MotherRules(), kinds: set[K] | None = None) -> list[tuple]:
    return [
        (r.kind.value, r.window_start, r.window_end, r.overdue_on, state(r))
        for r in mother_plan(f, rules)
        if kinds is None or r.kind in kinds
    ]


PREGNANT_NEGATIVE = MotherFacts(pregnancy_from=SEEN, edd=EDD, hiv_tests=((SEEN, NEG),))
DELIVERED = EDD - timedelta(days=3)

RETESTING = [
    (
        "WHO HTS 2019: a woman of unknown status is tested at ANC1, at once",
        MotherFacts(pregnancy_from=SEEN, edd=EDD),
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), "open"),
            ("mother_hiv_retest_third_trimester", wk(28), wk(36), wk(36) + timedelta(days=14), "open"),
        ],
    ),
    (
        "WHO HTS 2019: negative at ANC1 → retest in the third trimester (weeks 28–36)",
        PREGNANT_NEGATIVE,
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), f"satisfied {SEEN}"),
            ("mother_hiv_retest_third_trimester", wk(28), wk(36), wk(36) + timedelta(days=14), "open"),
        ],
    ),
    (
        "a documented negative earlier in this pregnancy is her ANC1 test",
        MotherFacts(pregnancy_from=SEEN, edd=EDD, hiv_tests=((wk(6), NEG),)),
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), f"satisfied {wk(6)}"),
            ("mother_hiv_retest_third_trimester", wk(28), wk(36), wk(36) + timedelta(days=14), "open"),
        ],
    ),
    (
        "the third-trimester retest is met by a test in its window",
        MotherFacts(pregnancy_from=SEEN, edd=EDD, hiv_tests=((SEEN, NEG), (wk(32), NEG))),
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), f"satisfied {SEEN}"),
            (
                "mother_hiv_retest_third_trimester",
                wk(28),
                wk(36),
                wk(36) + timedelta(days=14),
                f"satisfied {wk(32)}",
            ),
        ],
    ),
    (
        "WHO HTS 2019: the third-trimester retest missed → test at labour and delivery, at once",
        MotherFacts(pregnancy_from=SEEN, edd=EDD, hiv_tests=((SEEN, NEG),), delivered_on=DELIVERED),
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), f"satisfied {SEEN}"),
            ("mother_hiv_retest_third_trimester", wk(28), wk(36), wk(36) + timedelta(days=14), "cancelled:delivered"),
            (
                "mother_hiv_test_delivery",
                DELIVERED,
                DELIVERED + timedelta(days=3),
                DELIVERED + timedelta(days=3),
                "open",
            ),
        ],
    ),
    (
        "status unknown at delivery (never tested) → test her at once",
        MotherFacts(delivered_on=DELIVERED),
        [("mother_hiv_test_delivery", DELIVERED, DELIVERED + timedelta(days=3), DELIVERED + timedelta(days=3), "open")],
    ),
    (
        "a pregnancy loss ends the pregnancy's tests; a loss before 28 weeks plans no third-trimester retest",
        MotherFacts(pregnancy_from=SEEN, edd=EDD, pregnancy_lost_on=wk(14)),
        [
            (
                "mother_hiv_test_anc1",
                SEEN,
                SEEN + timedelta(days=7),
                SEEN + timedelta(days=21),
                "cancelled:pregnancy_ended",
            ),
        ],
    ),
    (
        "WHO HTS 2019: an inconclusive result → retest in 14 days",
        MotherFacts(hiv_tests=((date(2030, 3, 2), IND),)),
        [
            (
                "mother_hiv_retest_inconclusive",
                date(2030, 3, 16),
                date(2030, 3, 23),
                date(2030, 4, 6),
                "open",
            )
        ],
    ),
    (
        "a positive retest ends retesting: what was due is cancelled, nothing later is planned",
        MotherFacts(
            pregnancy_from=SEEN,
            edd=EDD,
            hiv_tests=((SEEN, NEG), (wk(34), POS)),
            positive_since=wk(34),
            positive_seen_on=wk(34),
            delivered_on=DELIVERED,
        ),
        [
            ("mother_hiv_test_anc1", SEEN, SEEN + timedelta(days=7), SEEN + timedelta(days=21), f"satisfied {SEEN}"),
            (
                "mother_hiv_retest_third_trimester",
                wk(28),
                wk(36),
                wk(36) + timedelta(days=14),
                f"satisfied {wk(34)}",
            ),
        ],
    ),
]


@pytest.mark.parametrize("rule, mother, expected", RETESTING, ids=[row[0] for row in RETESTING])
def test_retesting_rule(rule: str, mother: MotherFacts, expected: list) -> None:
    in_pregnancy = {k for k in K if k.value.startswith("mother_hiv_")} - {K.mother_hiv_retest_postpartum}
    assert plan(mother, kinds=in_pregnancy) == expected, rule


def test_postpartum_retests_at_14_weeks_6_months_then_every_6_months_while_breastfeeding() -> None:
    """WHO HTS 2019: retest during breastfeeding; the default places the retests on the infant's
    14-week visit, then at 6 months and every 6 months (a national preset changes the numbers)."""
    mother = MotherFacts(
        hiv_tests=((DELIVERED, NEG),), delivered_on=DELIVERED, breastfeeding_until=add_months(DELIVERED, 13)
    )

    starts = [row[1] for row in plan(mother, kinds={K.mother_hiv_retest_postpartum})]

    assert starts == [DELIVERED + timedelta(weeks=14), add_months(DELIVERED, 6), add_months(DELIVERED, 12)]
    every_3 = MotherRules(postpartum_retest_every_months=3)
    assert [row[1] for row in plan(mother, every_3, kinds={K.mother_hiv_retest_postpartum})] == [
        DELIVERED + timedelta(weeks=14),
        add_months(DELIVERED, 6),
        add_months(DELIVERED, 9),
        add_months(DELIVERED, 12),
    ]


def test_a_country_that_does_not_retest_plans_no_test() -> None:
    assert plan(MotherFacts(pregnancy_from=SEEN, edd=EDD), MotherRules(retesting=False)) == []


ART_AND_VL = [
    (
        "WHO 2021: known positive and not on ART → ART start at once, within 7 days",
        MotherFacts(positive_since=date(2030, 3, 2), positive_seen_on=date(2030, 3, 2)),
        {K.mother_art_start},
        [("mother_art_start", date(2030, 3, 2), date(2030, 3, 9), date(2030, 3, 9), "open")],
    ),
    (
        "diagnosed years ago, enrolled not on ART: due from the day the platform knew",
        MotherFacts(positive_since=date(2021, 1, 1), positive_seen_on=date(2030, 3, 2)),
        {K.mother_art_start},
        [("mother_art_start", date(2030, 3, 2), date(2030, 3, 9), date(2030, 3, 9), "open")],
    ),
    (
        "the ART start meets it",
        MotherFacts(
            positive_since=date(2030, 3, 2), positive_seen_on=date(2030, 3, 2), art_start_date=date(2030, 3, 5)
        ),
        {K.mother_art_start},
        [("mother_art_start", date(2030, 3, 2), date(2030, 3, 9), date(2030, 3, 9), "satisfied 2030-03-05")],
    ),
    (
        "on ART already when she was known positive: nothing to start",
        MotherFacts(
            positive_since=date(2021, 1, 1), positive_seen_on=date(2030, 3, 2), art_start_date=date(2021, 2, 1)
        ),
        {K.mother_art_start},
        [],
    ),
    (
        "WHO 2021 VL algorithm: 2,400 copies/mL at 30 weeks → enhanced adherence support, repeat VL after 3 months",
        MotherFacts(
            positive_since=date(2029, 1, 1), art_start_date=date(2029, 1, 1), edd=EDD, viral_loads=((wk(30), 2400),)
        ),
        {K.mother_adherence_support, K.mother_repeat_viral_load},
        [
            ("mother_adherence_support", wk(30), add_months(wk(30), 3), add_months(wk(30), 3), "open"),
            (
                "mother_repeat_viral_load",
                add_months(wk(30), 3),
                add_months(wk(30), 3) + timedelta(days=28),
                add_months(wk(30), 3) + timedelta(days=42),
                "open",
            ),
        ],
    ),
    (
        "the repeat VL meets the adherence item and the repeat",
        MotherFacts(
            positive_since=date(2029, 1, 1),
            art_start_date=date(2029, 1, 1),
            viral_loads=((date(2030, 3, 1), 2400), (date(2030, 6, 3), 40)),
        ),
        {K.mother_adherence_support, K.mother_repeat_viral_load},
        [
            ("mother_adherence_support", date(2030, 3, 1), date(2030, 6, 1), date(2030, 6, 1), "satisfied 2030-06-03"),
            (
                "mother_repeat_viral_load",
                date(2030, 6, 1),
                date(2030, 6, 29),
                date(2030, 7, 13),
                "satisfied 2030-06-03",
            ),
        ],
    ),
    (
        "a suppressed VL (below 1000 copies/mL) calls for no response",
        MotherFacts(
            positive_since=date(2029, 1, 1), art_start_date=date(2029, 1, 1), viral_loads=((date(2030, 3, 1), 999),)
        ),
        {K.mother_adherence_support, K.mother_repeat_viral_load},
        [],
    ),
    (
        "a pregnancy loss cancels its late-pregnancy VL",
        MotherFacts(
            positive_since=date(2029, 1, 1), art_start_date=date(2029, 1, 1), edd=EDD, pregnancy_lost_on=wk(12)
        ),
        {K.mother_viral_load},
        [("mother_viral_load", wk(34), wk(36), wk(36) + timedelta(days=14), "cancelled:pregnancy_ended")],
    ),
]


@pytest.mark.parametrize("rule, mother, kinds, expected", ART_AND_VL, ids=[row[0] for row in ART_AND_VL])
def test_art_start_and_viral_load_response_rule(rule: str, mother: MotherFacts, kinds: set, expected: list) -> None:
    assert plan(mother, kinds=kinds) == expected, rule


def test_a_country_sets_its_own_unsuppressed_threshold() -> None:
    mother = MotherFacts(
        positive_since=date(2029, 1, 1), art_start_date=date(2029, 1, 1), viral_loads=((date(2030, 3, 1), 400),)
    )

    assert plan(mother, kinds={K.mother_adherence_support}) == []
    assert len(plan(mother, MotherRules(unsuppressed_copies=200), kinds={K.mother_adherence_support})) == 1


def test_death_or_transfer_out_cancels_what_is_open() -> None:
    f = MotherFacts(pregnancy_from=SEEN, edd=EDD, transferred_out_on=SEEN + timedelta(days=30))

    assert {row[4] for row in plan(f)} == {"cancelled:transferred_out"}
