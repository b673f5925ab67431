"""The infant schedule rules (followup/eid_schedule.py, WHO defaults), one table row per rule, each
row named after the rule it checks.

Dates are relative to the birth `B`; an expected item is (window start, window end, overdue on,
state), where state is "open", "satisfied" or "cancelled:<reason>".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from uuid import uuid4

import pytest

from followup.cases import InfantCase
from followup.eid_schedule import (
    EidRules,
    FeedingFact,
    InfantFacts,
    MotherAtDelivery,
    final_outcome,
    high_risk_reasons,
    infant_plan,
    prophylaxis_for,
)
from followup.eid_schedule import TestFact as Result
from followup.mother_schedule import MotherFacts, MotherRules, mother_plan
from followup.schedule import Requirement, Status, Transition, add_months
from pmtct_events.followup import (
    FeedingMethod,
    FinalOutcome,
    HighRiskReason,
    InfantTest,
    ProphylaxisDrug,
    ScheduleKind,
)
from pmtct_events.followup import TestResult as Value

B = date(2030, 1, 15)
RULES = EidRules()


def w(n: float) -> date:
    return B + timedelta(weeks=n)


def m(n: int, plus_days: int = 0) -> date:
    return add_months(B, n) + timedelta(days=plus_days)


def d(day: date, n: int) -> date:
    return day + timedelta(days=n)


def nat(on: date, result: str = "negative", confirmatory: bool = False, reported: date | None = None) -> Result:
    return Result(on, InfantTest.NAT, Value(result), confirmatory, reported)


def antibody(on: date, result: str = "negative") -> Result:
    return Result(on, InfantTest.antibody, Value(result))


def stopped(on: date) -> FeedingFact:
    return FeedingFact(on, FeedingMethod.breastfeeding_stopped)


def facts(high_risk: bool = False, **kw) -> InfantFacts:
    return InfantFacts(birth_date=B, high_risk=high_risk, follow_up_from=kw.pop("follow_up_from", B), **kw)


def state(r: Requirement) -> str:
    if r.satisfied_on is not None:
        return "satisfied"
    if r.cancel_reason is not None:
        return f"cancelled:{r.cancel_reason}"
    return "open"


def summary(requirements: list[Requirement]) -> dict[str, tuple[date, date, date, str]]:
    """Per kind, the latest item (a kind may recur: a second confirmatory NAT)."""
    return {r.kind.value: (r.window_start, r.window_end, r.overdue_on, state(r)) for r in requirements}


NAT_6W = (w(4), w(8), d(w(8), 14), "open")
NAT_9M = (m(9), m(9, 30), m(9, 44), "open")
FINAL_18M = (m(18), m(18, 42), m(18, 56), "open")

# (rule, facts, rules, expected items by kind; None = no such item)
INFANT_RULES = [
    (
        "standard risk: NAT at 6 weeks in a 4-8 week window, overdue after 14 days' grace; NAT at 9 months; "
        "final test at 18 months; no birth NAT",
        facts(),
        RULES,
        {"nat_birth": None, "nat_6_weeks": NAT_6W, "nat_9_months": NAT_9M, "final_test": FINAL_18M},
    ),
    (
        "high risk: a NAT at birth",
        facts(high_risk=True),
        RULES,
        {"nat_birth": (B, d(B, 14), d(B, 28), "open"), "nat_6_weeks": NAT_6W, "nat_9_months": NAT_9M},
    ),
    (
        "a country may lengthen the grace period",
        facts(),
        EidRules(grace_days=21),
        {"nat_6_weeks": (w(4), w(8), d(w(8), 21), "open")},
    ),
    (
        "NAT at 9 months for every HEI, even after a negative 6-week NAT",
        facts(results=(nat(w(6)),)),
        RULES,
        {"nat_6_weeks": (w(4), w(8), d(w(8), 14), "satisfied"), "nat_9_months": NAT_9M},
    ),
    (
        "a result a few days before its window opens still counts (7-day tolerance)",
        facts(results=(nat(d(w(4), -5)),)),
        RULES,
        {"nat_6_weeks": (w(4), w(8), d(w(8), 14), "satisfied")},
    ),
    (
        "a late 6-week NAT, after its overdue date, still meets the 6-week item",
        facts(results=(nat(w(13)),)),
        RULES,
        {"nat_6_weeks": (w(4), w(8), d(w(8), 14), "satisfied"), "nat_9_months": NAT_9M},
    ),
    (
        "a NAT at 10 months meets the 9-month NAT and supersedes a 6-week NAT never done",
        facts(results=(nat(m(10)),)),
        RULES,
        {
            "nat_6_weeks": (w(4), w(8), d(w(8), 14), "cancelled:superseded"),
            "nat_9_months": (m(9), m(9, 30), m(9, 44), "satisfied"),
        },
    ),
    (
        "final test at 18 months when breastfeeding stopped before 15 months",
        facts(feeding=(stopped(m(6)),)),
        RULES,
        {"final_test": FINAL_18M},
    ),
    (
        "final test 3 months after breastfeeding stops when that is later than 18 months",
        facts(feeding=(stopped(m(17)),)),
        RULES,
        {"final_test": (m(20), m(20, 42), m(20, 56), "open")},
    ),
    (
        "replacement feeding counts as breastfeeding stopped; a later breastfeeding record resumes it",
        facts(
            feeding=(
                FeedingFact(m(2), FeedingMethod.replacement_feeding),
                FeedingFact(m(4), FeedingMethod.mixed_feeding),
                stopped(m(19)),
            )
        ),
        RULES,
        {"final_test": (m(22), m(22, 42), m(22, 56), "open")},
    ),
    (
        "the mother's death ends breastfeeding and moves the final test",
        facts(mother_died_on=m(17)),
        RULES,
        {"final_test": (m(20), m(20, 42), m(20, 56), "open")},
    ),
    (
        "the final test is an antibody test from 18 months",
        facts(feeding=(stopped(m(6)),), results=(antibody(m(18, 3)),)),
        RULES,
        {"final_test": (m(18), m(18, 42), m(18, 56), "satisfied")},
    ),
    (
        "an antibody test before 18 months is not a final test (maternal antibodies)",
        facts(feeding=(stopped(m(6)),), results=(antibody(m(18, -5)),)),
        RULES,
        {"final_test": FINAL_18M},
    ),
    (
        "a first positive NAT: infant ART and a confirmatory NAT at once, timed from the day the result was "
        "reported; routine NATs are moot meanwhile (WHO 2021 algorithm, note c)",
        facts(results=(nat(w(6), "positive", reported=d(w(6), 10)),)),
        RULES,
        {
            "nat_6_weeks": (w(4), w(8), d(w(8), 14), "satisfied"),
            "confirmatory_nat": (w(6), d(w(6), 24), d(w(6), 38), "open"),
            "nat_9_months": (m(9), m(9, 30), m(9, 44), "cancelled:positive_result"),
            "infant_art_start": (w(6), d(w(6), 24), d(w(6), 38), "open"),
        },
    ),
    (
        "a positive antibody test before 18 months calls for a NAT, never for ART (WHO 2021: maternal antibodies)",
        facts(results=(antibody(m(12), "positive"),)),
        RULES,
        {
            "nat_after_antibody": (m(12), m(12, 14), m(12, 28), "open"),
            "confirmatory_nat": None,
            "infant_art_start": None,
        },
    ),
    (
        "a confirmed positive (two diagnostic positives): infected, testing stops, ART start needed at once",
        facts(results=(nat(w(6), "positive"), nat(w(7), "positive", confirmatory=True))),
        RULES,
        {
            "confirmatory_nat": (w(6), d(w(6), 14), d(w(6), 28), "satisfied"),
            "nat_9_months": (m(9), m(9, 30), m(9, 44), "cancelled:infected"),
            "final_test": (m(18), m(18, 42), m(18, 56), "cancelled:infected"),
            "infant_art_start": (w(6), d(w(6), 14), d(w(6), 28), "open"),
        },
    ),
    (
        "an ART start meets the ART-start need of an infected infant",
        facts(results=(nat(w(6), "positive"), nat(w(7), "positive")), art_started_on=w(8)),
        RULES,
        {"infant_art_start": (w(6), d(w(6), 14), d(w(6), 28), "satisfied")},
    ),
    (
        "indeterminate: a repeat test at once",
        facts(results=(nat(w(6), "indeterminate"),)),
        RULES,
        {"repeat_test": (w(6), d(w(6), 14), d(w(6), 28), "open"), "nat_9_months": NAT_9M},
    ),
    (
        "a negative confirmatory NAT after a positive is discordant: a repeat test at once",
        facts(results=(nat(w(6), "positive"), nat(w(7), "negative", confirmatory=True))),
        RULES,
        {
            "confirmatory_nat": (w(6), d(w(6), 14), d(w(6), 28), "satisfied"),
            "repeat_test": (w(7), d(w(7), 14), d(w(7), 28), "open"),
            "infant_art_start": (w(6), d(w(6), 14), d(w(6), 28), "open"),
        },
    ),
    (
        "a second negative clears a discordant positive: routine testing goes on",
        facts(results=(nat(w(6), "positive"), nat(w(7)), nat(w(8)))),
        RULES,
        {"repeat_test": (w(7), d(w(7), 14), d(w(7), 28), "satisfied"), "nat_9_months": NAT_9M},
    ),
    (
        "death cancels everything still open",
        facts(results=(nat(w(6)),), died_on=m(3)),
        RULES,
        {
            "nat_6_weeks": (w(4), w(8), d(w(8), 14), "satisfied"),
            "nat_9_months": (m(9), m(9, 30), m(9, 44), "cancelled:died"),
            "final_test": (m(18), m(18, 42), m(18, 56), "cancelled:died"),
        },
    ),
    (
        "transfer out cancels everything still open",
        facts(transferred_out_on=w(2)),
        RULES,
        {"nat_6_weeks": (w(4), w(8), d(w(8), 14), "cancelled:transferred_out")},
    ),
    (
        "late diagnosis while breastfeeding: follow-up from her diagnosis, one entry NAT instead of the "
        "6-week NAT, no birth NAT",
        facts(high_risk=True, follow_up_from=m(5)),
        RULES,
        {
            "nat_birth": None,
            "nat_6_weeks": None,
            "entry_nat": (m(5), m(5, 14), m(5, 28), "open"),
            "nat_9_months": NAT_9M,
        },
    ),
    (
        "late diagnosis just before 9 months: no entry NAT, the 9-month NAT is due at once",
        facts(high_risk=True, follow_up_from=m(9, -7)),
        RULES,
        {"nat_6_weeks": None, "nat_9_months": NAT_9M},
    ),
    (
        "late diagnosis after 18 months: the final test at entry",
        facts(high_risk=True, follow_up_from=m(20)),
        RULES,
        {"nat_6_weeks": None, "nat_9_months": None, "final_test": (m(20), m(20, 42), m(20, 56), "open")},
    ),
]


@pytest.mark.parametrize("rule, infant, rules, expected", INFANT_RULES, ids=[row[0] for row in INFANT_RULES])
def test_infant_schedule_rule(rule: str, infant: InfantFacts, rules: EidRules, expected: dict) -> None:
    plan = summary(infant_plan(infant, rules).requirements)
    for kind, item in expected.items():
        assert plan.get(kind) == item, f"{rule}: {kind}"


# (rule, mother's situation at delivery, expected reasons)
HIGH_RISK_RULES = [
    (
        "standard risk: on ART a year, suppressed viral load two weeks before delivery",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=40, viral_load_on=w(-2)),
        [],
    ),
    (
        "high risk: on ART for less than 4 weeks at delivery",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=w(-3), viral_load_copies=40, viral_load_on=w(-2)),
        [HighRiskReason.art_under_4_weeks],
    ),
    (
        "high risk: not on ART at delivery",
        MotherAtDelivery(B, diagnosed_on=m(-24), viral_load_copies=40, viral_load_on=w(-2)),
        [HighRiskReason.no_art],
    ),
    (
        "high risk: viral load above 1000 in the 4 weeks before delivery",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=5000, viral_load_on=w(-3)),
        [HighRiskReason.viral_load_above_threshold],
    ),
    (
        "an unsuppressed viral load older than 4 weeks is not the 4-week criterion",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=5000, viral_load_on=w(-10)),
        [],
    ),
    (
        "standard risk: no viral load posted for a woman on ART a year (WHO 2025: VL > 1000 counts only if a VL "
        "is available)",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12)),
        [],
    ),
    (
        "high risk: diagnosed in labour",
        MotherAtDelivery(B, diagnosed_on=d(B, -1), art_start_date=B, viral_load_copies=40, viral_load_on=w(-2)),
        [HighRiskReason.art_under_4_weeks, HighRiskReason.diagnosed_in_labour_or_postpartum],
    ),
]


@pytest.mark.parametrize("rule, mother, expected", HIGH_RISK_RULES, ids=[row[0] for row in HIGH_RISK_RULES])
def test_high_risk_rule(rule: str, mother: MotherAtDelivery, expected: list[HighRiskReason]) -> None:
    assert high_risk_reasons(mother, RULES) == expected, rule


@pytest.mark.parametrize(
    "rule, high_risk, expected",
    [
        ("prophylaxis, standard risk: NVP for 6 weeks", False, [(ProphylaxisDrug.NVP, 6)]),
        (
            "prophylaxis, high risk (WHO 2025 enhanced): three drugs for 6 weeks, then NVP until the mother is "
            "suppressed or breastfeeding ends",
            True,
            [(ProphylaxisDrug.AZT_3TC_NVP, 6), (ProphylaxisDrug.NVP, 52)],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_prophylaxis_rule(rule: str, high_risk: bool, expected: list) -> None:
    assert [(p.drug, p.duration_weeks) for p in prophylaxis_for(high_risk, RULES)] == expected, rule


# (rule, facts, expected final outcome or None)
OUTCOME_RULES = [
    ("no outcome while follow-up goes on", facts(results=(nat(w(6)),)), None),
    (
        "infected: two diagnostic positives",
        facts(results=(nat(w(6), "positive"), nat(w(7), "positive"))),
        (FinalOutcome.infected, w(7)),
    ),
    (
        "uninfected: a negative final test and no longer breastfeeding",
        facts(feeding=(stopped(m(12)),), results=(antibody(m(18, 2)),)),
        (FinalOutcome.uninfected, m(18, 2)),
    ),
    (
        "not uninfected while still breastfeeding, however negative the 18-month test",
        facts(results=(antibody(m(18, 2)),)),
        None,
    ),
    ("died", facts(died_on=m(4)), (FinalOutcome.died, m(4))),
    ("transferred out", facts(transferred_out_on=m(4)), (FinalOutcome.transferred_out, m(4))),
    (
        "a known status outranks a death (MER PMTCT_FO: died = died without status known)",
        facts(results=(nat(w(6), "positive"), nat(w(7), "positive")), died_on=m(4)),
        (FinalOutcome.infected, w(7)),
    ),
]


@pytest.mark.parametrize("rule, infant, expected", OUTCOME_RULES, ids=[row[0] for row in OUTCOME_RULES])
def test_final_outcome_rule(rule: str, infant: InfantFacts, expected) -> None:
    assert final_outcome(infant, infant_plan(infant, RULES)) == expected, rule


# (rule, day, lost?, expected announcements of the 6-week NAT and the final outcome); an infant not
# lost was last seen a month before the day
TIMER_RULES = [
    ("nothing is announced before the window opens", w(4) - timedelta(days=1), False, [], None),
    ("InfantTestDue when the window opens", w(4), False, [Transition.due], None),
    ("still only due on the last day of the grace period", d(w(8), 13), False, [Transition.due], None),
    (
        "InfantTestOverdue after window plus grace; a backfill found overdue is announced due then overdue",
        d(w(8), 14),
        False,
        [Transition.due, Transition.overdue],
        None,
    ),
    ("age snapshot unknown at 24 months when nothing established an outcome", m(24), False, None, FinalOutcome.unknown),
    ("age snapshot LTFU at 24 months when the infant is lost", m(24), True, None, FinalOutcome.lost_to_follow_up),
]


@pytest.mark.parametrize("rule, day, lost, announced, outcome", TIMER_RULES, ids=[row[0] for row in TIMER_RULES])
def test_timer_rule(rule: str, day: date, lost: bool, announced, outcome) -> None:
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", facts())
    case.recompute(RULES)
    if lost:
        case.attendance.lost_since = case.attendance.lost_last_seen_on = day - timedelta(days=60)
    else:
        case.attendance.seen(day - timedelta(days=30))
    report = case.tick(day, RULES, silence_days=90)
    if announced is not None:
        six = [t for item, t in report.transitions if item.kind.value == "nat_6_weeks"]
        assert six == announced, rule
    assert (report.outcome[0] if report.outcome else None) == outcome, rule
    if outcome is not None:
        assert any(i.open for i in case.items), "the age snapshot closes nothing: the final test is still needed"


def test_lost_to_follow_up_after_the_configured_silence_following_an_overdue_item_and_only_once() -> None:
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", facts())
    case.recompute(RULES)
    overdue_on = d(w(8), 14)
    assert case.tick(d(overdue_on, 89), RULES, silence_days=90).lost_on is None
    assert case.tick(d(overdue_on, 90), RULES, silence_days=90).lost_on == d(overdue_on, 90)
    assert case.tick(d(overdue_on, 91), RULES, silence_days=90).lost_on is None


def test_a_contact_after_a_loss_brings_the_infant_back_into_care_and_a_new_silence_is_counted_from_it() -> None:
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", facts())
    case.recompute(RULES)
    overdue_on = d(w(8), 14)
    case.tick(d(overdue_on, 90), RULES, silence_days=90)
    case.attendance.seen(d(overdue_on, 100))
    assert case.attendance.lost_since is None
    assert case.tick(d(overdue_on, 150), RULES, silence_days=90).lost_on is None
    assert case.tick(d(overdue_on, 190), RULES, silence_days=90).lost_on == d(overdue_on, 190)


@pytest.mark.parametrize("announced", [False, True], ids=["never announced", "announced"])
def test_feeding_stopped_moves_the_final_test_the_old_item_goes_unless_announced_and_a_new_one_is_planned(
    announced: bool,
) -> None:
    """The old final test, never announced, is dropped (every order of the same facts ends without
    it); announced (someone was told it was due), it stays, cancelled `no_longer_required`."""
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", facts())
    case.recompute(RULES)
    old = next(i for i in case.items if i.kind.value == "final_test")
    old.announced = announced
    case.facts = replace(case.facts, feeding=(stopped(m(17)),))
    case.recompute(RULES)
    finals = {i.window_start: i for i in case.items if i.kind.value == "final_test"}
    if announced:
        assert (finals[old.window_start].status, finals[old.window_start].cancel_reason) == (
            Status.cancelled,
            "no_longer_required",
        )
        assert case.dropped == set()
    else:
        assert old.window_start not in finals
        assert case.dropped == {old.item_id}, "the repository deletes it"
    assert finals[m(20)].status is Status.planned and finals[m(20)].item_id != old.item_id


DELIVERED = date(2030, 6, 1)
EDD = date(2030, 6, 5)


def vl_summary(f: MotherFacts, rules: MotherRules = MotherRules()) -> list[tuple[date, date, date, str]]:
    plan = [r for r in mother_plan(f, rules) if r.kind is ScheduleKind.mother_viral_load]
    return [(r.window_start, r.window_end, r.overdue_on, state(r)) for r in plan]


# (rule, facts, expected viral-load items in window order)
MOTHER_RULES = [
    ("no viral-load follow-up for a mother not known positive", MotherFacts(edd=EDD), []),
    (
        "mother VL at 34-36 weeks of gestation, overdue after 14 days' grace",
        MotherFacts(positive_since=date(2029, 1, 1), edd=EDD),
        [(EDD - timedelta(weeks=6), EDD - timedelta(weeks=4), EDD - timedelta(weeks=4) + timedelta(days=14), "open")],
    ),
    (
        "a delivery before the late-pregnancy VL was taken cancels it",
        MotherFacts(
            positive_since=date(2029, 1, 1),
            edd=EDD,
            delivered_on=EDD - timedelta(weeks=5),
            breastfeeding_until=EDD - timedelta(weeks=5),
        ),
        [
            (
                EDD - timedelta(weeks=6),
                EDD - timedelta(weeks=4),
                EDD - timedelta(weeks=4) + timedelta(days=14),
                "cancelled:delivered",
            )
        ],
    ),
    (
        "mother VL every 3 months while breastfeeding, until breastfeeding stops",
        MotherFacts(
            positive_since=date(2029, 1, 1), delivered_on=DELIVERED, breastfeeding_until=add_months(DELIVERED, 7)
        ),
        [
            (
                add_months(DELIVERED, 3),
                add_months(DELIVERED, 3) + timedelta(days=28),
                add_months(DELIVERED, 3) + timedelta(days=42),
                "open",
            ),
            (
                add_months(DELIVERED, 6),
                add_months(DELIVERED, 6) + timedelta(days=28),
                add_months(DELIVERED, 6) + timedelta(days=42),
                "open",
            ),
        ],
    ),
    (
        "breastfeeding VLs for at most 24 months when nobody records it stopping",
        MotherFacts(positive_since=date(2029, 1, 1), delivered_on=DELIVERED),
        [
            (
                add_months(DELIVERED, k),
                add_months(DELIVERED, k) + timedelta(days=28),
                add_months(DELIVERED, k) + timedelta(days=42),
                "open",
            )
            for k in range(3, 24, 3)
        ],
    ),
    (
        "diagnosed after delivery: breastfeeding VLs from her diagnosis on",
        MotherFacts(
            positive_since=add_months(DELIVERED, 4),
            delivered_on=DELIVERED,
            breastfeeding_until=add_months(DELIVERED, 10),
        ),
        [
            (
                add_months(DELIVERED, k),
                add_months(DELIVERED, k) + timedelta(days=28),
                add_months(DELIVERED, k) + timedelta(days=42),
                "open",
            )
            for k in (6, 9)
        ],
    ),
    (
        "a VL meets the item whose window has opened; a missed earlier one is superseded",
        MotherFacts(
            positive_since=date(2029, 1, 1),
            delivered_on=DELIVERED,
            breastfeeding_until=add_months(DELIVERED, 7),
            viral_loads=((add_months(DELIVERED, 6), 40),),
        ),
        [
            (
                add_months(DELIVERED, 3),
                add_months(DELIVERED, 3) + timedelta(days=28),
                add_months(DELIVERED, 3) + timedelta(days=42),
                "cancelled:superseded",
            ),
            (
                add_months(DELIVERED, 6),
                add_months(DELIVERED, 6) + timedelta(days=28),
                add_months(DELIVERED, 6) + timedelta(days=42),
                "satisfied",
            ),
        ],
    ),
    (
        "the mother's death cancels her open VLs",
        MotherFacts(
            positive_since=date(2029, 1, 1),
            delivered_on=DELIVERED,
            breastfeeding_until=add_months(DELIVERED, 4),
            died_on=add_months(DELIVERED, 1),
        ),
        [
            (
                add_months(DELIVERED, 3),
                add_months(DELIVERED, 3) + timedelta(days=28),
                add_months(DELIVERED, 3) + timedelta(days=42),
                "cancelled:died",
            )
        ],
    ),
]


@pytest.mark.parametrize("rule, mother, expected", MOTHER_RULES, ids=[row[0] for row in MOTHER_RULES])
def test_mother_viral_load_rule(rule: str, mother: MotherFacts, expected: list) -> None:
    assert vl_summary(mother) == expected, rule


def test_a_country_may_test_mothers_every_6_months_while_breastfeeding() -> None:
    f = MotherFacts(
        positive_since=date(2029, 1, 1), delivered_on=DELIVERED, breastfeeding_until=add_months(DELIVERED, 13)
    )
    starts = [item[0] for item in vl_summary(f, MotherRules(breastfeeding_every_months=6))]
    assert starts == [add_months(DELIVERED, 6), add_months(DELIVERED, 12)]


def test_a_country_configures_the_rules_through_the_environment(monkeypatch) -> None:
    from followup.settings import Settings

    monkeypatch.setenv("PMTCT_EID__GRACE_DAYS", "21")
    monkeypatch.setenv("PMTCT_EID__HIGH_RISK_VIRAL_LOAD_COPIES", "200")
    monkeypatch.setenv("PMTCT_MOTHER_VIRAL_LOAD", '{"breastfeeding_every_months": 6}')
    monkeypatch.setenv("PMTCT_TIMEZONE", "Africa/Blantyre")
    settings = Settings()
    assert (settings.eid.grace_days, settings.eid.high_risk_viral_load_copies) == (21, 200)
    assert settings.eid.test_points[1].window_to.weeks == 8, "what a country does not set keeps its preset's value"
    assert settings.mother_viral_load.breastfeeding_every_months == 6
    assert str(settings.clock.zone) == "Africa/Blantyre"


def test_followup_dates_an_event_on_the_programme_local_day(monkeypatch) -> None:
    """Follow-up's days (births, windows, "today") come from the one programme clock: an infant
    visit at 23:30 UTC is the next day in Blantyre (UTC+2), whichever offset it was posted with."""
    from datetime import UTC, datetime, timedelta, timezone

    from followup.settings import Settings
    from servicekit.clock import Clock

    monkeypatch.setenv("PMTCT_TIMEZONE", "Africa/Blantyre")
    settings = Settings()
    late = datetime(2026, 5, 31, 23, 30, tzinfo=UTC)
    for posted in (late, late.astimezone(timezone(timedelta(hours=-4)))):
        assert settings.clock.local_day(posted) == date(2026, 6, 1)
    settings.use_clock(Clock.fixed(late))
    assert settings.clock.today() == date(2026, 6, 1), "the worklist's and the timers' today"
    assert settings.clock.local_midnight(date(2026, 6, 1)).astimezone(UTC) == datetime(2026, 5, 31, 22, tzinfo=UTC)
