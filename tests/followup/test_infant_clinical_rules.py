"""The infant clinical rules as a programme's clinicians would try them: one row per scenario, each
named for its rule and citing its source (docs/clinical-rules.md lists the sources in full).

Every scenario is a journey of one infant case, driven as the service drives it: follow-up starts
(at birth, or at the mother's diagnosis), facts are recorded and the case recomputed (the POST and
the consumer), time is a timer tick. What is checked is what a clinician or a Mentor Mother sees:
the items and their state, what was announced (a due or overdue test is what sends someone out),
the infant's outcome and status. A final permutation property: the same facts in any order give the
same plan, state and outcome.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from followup import presets
from followup.cases import INFANT_OUTCOME_RECORDED, InfantCase, RecordedEvent
from followup.eid_schedule import EidRules, InfantFacts, MotherAtDelivery, high_risk_reasons, prophylaxis_for
from followup.schedule import Item, Status, Transition, add_months
from followup.stream import apply_to_mother
from pmtct_events.followup import FinalOutcome, HighRiskReason, ProphylaxisDrug, ScheduleKind

B = date(2030, 1, 15)
#: a country preset with cotrimoxazole and the HEI visits turned off
NO_HEI_CARE = str(Path(__file__).parent / "presets" / "no-hei-care.toml")
SILENCE = 90

WHO_2021 = "WHO 2021 consolidated HIV guidelines, 2.5 infant diagnosis algorithm"
WHO_2021_C = "WHO 2021 infant diagnosis algorithm, note c (start ART without delay; retest at the same time)"
WHO_2025 = "WHO 2025 updated recommendations on HIV clinical management, infant prophylaxis / high-risk infants"
MER = "PEPFAR MER PMTCT_FO (24-month final outcome)"
ISSUE = "issue 13 (follow-up ends by a clinical fact; one sample meets every need)"
KENYA = "Kenya HIV Prevention and Treatment Guidelines 2022 (NASCOP), HEI testing"
SOUTH_AFRICA = "South Africa Vertical Transmission Prevention Guideline 2023, infant testing"
SOUTH_AFRICA_RISK = "South Africa PMTCT guideline 2019 (Wessels 2020, Table 2: high-risk infant at birth)"
WHO_CTX = "WHO 2021 consolidated HIV guidelines, cotrimoxazole prophylaxis (HEI from 4–6 weeks until HIV excluded)"
HEI_VISITS = "WHO 2021 (regular follow-up of every HEI until final diagnosis); visit calendar of the preset"
DISCHARGE = "issue 13 build 1 (follow-up ends by a discharge posted by the facility)"


def w(n: float) -> date:
    return B + timedelta(weeks=n)


def m(n: int, plus_days: int = 0) -> date:
    return add_months(B, n) + timedelta(days=plus_days)


def nat(on: date, result: str = "negative", confirmatory: bool = False) -> tuple:
    return ("InfantTestResulted", on, {"test": "NAT", "result": result, "confirmatory": confirmatory})


def antibody(on: date, result: str = "negative") -> tuple:
    return ("InfantTestResulted", on, {"test": "antibody", "result": result, "confirmatory": False})


def feeding(on: date, method: str = "breastfeeding_stopped") -> tuple:
    return ("InfantFeedingRecorded", on, {"method": method})


def art(on: date) -> tuple:
    return ("InfantArtInitiated", on, {})


def outcome(on: date, what: str) -> tuple:
    return (INFANT_OUTCOME_RECORDED, on, {"outcome": what})


def discharge(on: date, reason: str = "other") -> tuple:
    return (INFANT_OUTCOME_RECORDED, on, {"outcome": "discharged", "reason": reason})


def visit(on: date) -> tuple:
    return ("InfantVisitRecorded", on, {})


def cotrimoxazole(on: date, started: date | None = None) -> tuple:
    return ("InfantCotrimoxazoleRecorded", on, {"started_on": started.isoformat()} if started else {})


def prophylaxis(on: date, drug: str, started: date | None = None) -> tuple:
    data: dict[str, Any] = {"drug": drug, "duration_weeks": 6}
    if started is not None:
        data["started_on"] = started.isoformat()
    return ("InfantProphylaxisRecorded", on, data)


def tick(on: date) -> tuple:
    return ("tick", on, {})


@dataclass
class Journey:
    steps: list[tuple] = field(default_factory=list)
    reasons: list[HighRiskReason] = field(default_factory=list)
    start: date = B
    preset: str = "who-2025"
    #: the day time has reached at the end (a last tick)
    until: date | None = None


@dataclass
class Seen:
    case: InfantCase
    announced: list[tuple[str, Transition]]
    outcomes: list[FinalOutcome]


def key(item: Item) -> str:
    """A preset's own routine NATs and the HEI visits are told apart by their labels."""
    if item.kind in (ScheduleKind.routine_nat, ScheduleKind.hei_visit) and item.label:
        return item.label
    return item.kind.value


def drive(j: Journey) -> Seen:
    rules = presets.load(j.preset).infant
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", InfantFacts(birth_date=B, high_risk=False, follow_up_from=B))
    seen = Seen(case, [], [])
    decided = case.start_follow_up(j.start, j.reasons, rules)
    if decided:
        seen.outcomes.append(decided[0])
    today = j.start
    steps = [*j.steps, *([tick(j.until)] if j.until else [])]
    for kind, on, data in steps:
        today = max(today, on)
        if kind == "tick":
            report = case.tick(today, rules, SILENCE)
            seen.announced += [(key(i), t) for i, t in report.transitions]
            if report.outcome:
                seen.outcomes.append(report.outcome[0])
            continue
        case.record(RecordedEvent(kind, on, today, data))
        decided = case.recompute(rules)
        if decided:
            seen.outcomes.append(decided[0])
    return seen


def state(i: Item) -> str:
    if i.status is Status.cancelled:
        return f"cancelled:{i.cancel_reason}"
    return i.status.value


def items(seen: Seen) -> dict[str, str]:
    """Per key, the state of its latest item (a kind may recur)."""
    return {key(i): state(i) for i in seen.case.items}


OPEN = ("planned", "due", "overdue")


# (scenario, source, journey, expected) — expected keys:
#   items: {key: state, or "open" for any of planned/due/overdue, or None: no such item}
#   outcome: the infant's outcome (None: none yet); art_needed / pending_feeding: the plan's flags
#   announced: (key, transition) pairs that must have been announced; never: keys never announced
SCENARIOS: list[tuple[str, str, Journey, dict[str, Any]]] = [
    # --- 1. follow-up ends by a clinical fact, never by the calendar ---
    (
        "24 silent months: the age snapshot reports LTFU and cancels nothing; the final test is still needed",
        MER,
        Journey(steps=[tick(m(5)), tick(m(24))]),
        {"outcome": FinalOutcome.lost_to_follow_up, "items": {"final_test": "overdue", "nat_9_months": "overdue"}},
    ),
    (
        "not lost at the snapshot (seen recently): reported unknown, follow-up goes on",
        MER,
        Journey(steps=[tick(m(5)), feeding(m(23, 20), "exclusive_breastfeeding"), tick(m(24))]),
        {"outcome": FinalOutcome.unknown, "items": {"final_test": "open"}},
    ),
    (
        "found infected at 25 months after 24 silent months: infected, the ART item due at once, testing stops",
        WHO_2021_C,
        Journey(steps=[tick(m(5)), tick(m(24)), nat(m(25), "positive"), nat(m(25, 3), "positive", True)]),
        {
            "outcome": FinalOutcome.infected,
            "art_needed": True,
            "items": {"infant_art_start": "planned", "final_test": "satisfied", "nat_9_months": "cancelled:superseded"},
        },
    ),
    (
        "breastfeeding stopped at 22 months: the final test moves to 25 months and is still asked for",
        WHO_2021,
        Journey(steps=[feeding(m(22)), tick(m(24))]),
        {"items": {"final_test": "planned"}, "outcome": FinalOutcome.unknown},
    ),
    (
        "a backfill after the age snapshot revises the outcome: uninfected",
        MER,
        Journey(steps=[tick(m(24)), feeding(m(12)), antibody(m(19))]),
        {"outcome": FinalOutcome.uninfected, "items": {"final_test": "satisfied"}},
    ),
    (
        "infant death ends follow-up: what is open is cancelled, the outcome is died",
        WHO_2021,
        Journey(steps=[nat(w(6)), outcome(m(3), "died")]),
        {
            "outcome": FinalOutcome.died,
            "items": {"nat_6_weeks": "satisfied", "nat_9_months": "cancelled:died", "final_test": "cancelled:died"},
        },
    ),
    (
        "a known status outranks a death: infected, then died, is infected",
        MER,
        Journey(steps=[nat(w(6), "positive"), nat(w(7), "positive", True), outcome(m(3), "died")]),
        {"outcome": FinalOutcome.infected, "art_needed": False},
    ),
    (
        "the LTFU tracing of a silent baby is a state: she is lost, nothing is cancelled",
        ISSUE,
        Journey(until=w(8) + timedelta(days=14 + SILENCE)),
        {"items": {"nat_6_weeks": "overdue", "nat_9_months": "planned"}, "outcome": None},
    ),
    # --- 2. one sample meets every open need it can meet ---
    (
        "a NAT four days after a positive antibody test at 9 months meets both the NAT it called for and the "
        "9-month NAT: nothing goes overdue",
        ISSUE,
        Journey(steps=[nat(w(6)), antibody(m(9), "positive"), nat(m(9, 4)), tick(m(11))]),
        {
            "items": {"nat_after_antibody": "satisfied", "nat_9_months": "satisfied"},
            "never": {("nat_9_months", Transition.overdue)},
        },
    ),
    (
        "a confirmatory NAT in the 6-week window also meets the 6-week NAT",
        ISSUE,
        Journey(steps=[nat(w(1), "indeterminate"), nat(w(5)), tick(w(12))]),
        {"items": {"repeat_test": "satisfied", "nat_6_weeks": "satisfied"}},
    ),
    (
        "an entry NAT that falls in a routine window meets it too",
        ISSUE,
        Journey(start=m(8), steps=[nat(m(9, 2))]),
        {"items": {"nat_9_months": "satisfied", "entry_nat": "satisfied"}},
    ),
    (
        "an early sample within the 7-day tolerance meets the routine NAT",
        WHO_2021,
        Journey(steps=[nat(w(4) - timedelta(days=5))]),
        {"items": {"nat_6_weeks": "satisfied"}},
    ),
    (
        "a sample before the tolerance does not: the 6-week NAT stays open",
        WHO_2021,
        Journey(steps=[nat(w(2))]),
        {"items": {"nat_6_weeks": "planned"}},
    ),
    (
        "a NAT at 10 months meets the 9-month NAT and supersedes a 6-week NAT never done",
        WHO_2021,
        Journey(steps=[nat(m(10))]),
        {"items": {"nat_6_weeks": "cancelled:superseded", "nat_9_months": "satisfied"}},
    ),
    (
        "NAT at 9 months for every HEI, even after a negative 6-week NAT",
        WHO_2021,
        Journey(steps=[nat(w(6))]),
        {"items": {"nat_6_weeks": "satisfied", "nat_9_months": "planned"}},
    ),
    # --- 3. positive results (WHO 2021 algorithm) ---
    (
        "a first positive NAT: infant ART due at once and a confirmatory NAT due at once",
        WHO_2021_C,
        Journey(steps=[nat(w(6), "positive"), tick(w(6) + timedelta(days=1))]),
        {
            "art_needed": True,
            "items": {
                "infant_art_start": "due",
                "confirmatory_nat": "due",
                "nat_9_months": "cancelled:positive_result",
            },
            "announced": {("confirmatory_nat", Transition.due)},
        },
    ),
    (
        "the confirmatory NAT positive: infected, on the day of confirmation; the ART item stays until ART starts",
        WHO_2021,
        Journey(steps=[nat(w(6), "positive"), nat(w(6) + timedelta(days=5), "positive", True)]),
        {"outcome": FinalOutcome.infected, "art_needed": True, "items": {"confirmatory_nat": "satisfied"}},
    ),
    (
        "ART started meets the ART item",
        WHO_2021_C,
        Journey(steps=[nat(w(6), "positive"), art(w(6) + timedelta(days=2))]),
        {"art_needed": False, "items": {"infant_art_start": "satisfied", "confirmatory_nat": "planned"}},
    ),
    (
        "a discordant confirmatory calls for another NAT and does not drop ART",
        WHO_2021,
        Journey(steps=[nat(w(6), "positive"), nat(w(7), "negative", True)]),
        {"art_needed": True, "items": {"repeat_test": "planned", "infant_art_start": "planned"}, "outcome": None},
    ),
    (
        "a second negative clears a discordant positive: the ART need ends and the routine schedule resumes",
        WHO_2021,
        Journey(steps=[nat(w(6), "positive"), nat(w(7)), nat(w(8))]),
        {
            "art_needed": False,
            "items": {"infant_art_start": "cancelled:positive_not_confirmed", "nat_9_months": "planned"},
        },
    ),
    (
        "a positive after a discordant negative: infected",
        WHO_2021,
        Journey(steps=[nat(w(6), "positive"), nat(w(7)), nat(w(8), "positive")]),
        {"outcome": FinalOutcome.infected, "art_needed": True},
    ),
    (
        "a positive antibody test before 18 months calls for a NAT, never for ART",
        WHO_2021,
        Journey(steps=[antibody(m(12), "positive")]),
        {"art_needed": False, "items": {"nat_after_antibody": "planned", "infant_art_start": None}},
    ),
    (
        "a positive antibody test from 18 months diagnoses: ART at once and a confirmatory test",
        WHO_2021,
        Journey(steps=[antibody(m(19), "positive")]),
        {"art_needed": True, "items": {"infant_art_start": "planned", "confirmatory_nat": "planned"}},
    ),
    (
        "indeterminate: a repeat test at once",
        WHO_2021,
        Journey(steps=[nat(w(6), "indeterminate")]),
        {"items": {"repeat_test": "planned", "nat_9_months": "planned"}},
    ),
    (
        "twin A's birth NAT positive: her 6-week NAT is moot, never announced overdue; ART and confirmation instead",
        WHO_2021_C,
        Journey(
            reasons=[HighRiskReason.art_under_4_weeks],
            steps=[nat(B, "positive"), tick(w(4)), tick(w(12))],
        ),
        {
            "items": {"nat_6_weeks": "cancelled:positive_result", "infant_art_start": "overdue"},
            "never": {("nat_6_weeks", Transition.due), ("nat_6_weeks", Transition.overdue)},
        },
    ),
    (
        "twin B's birth NAT negative: her 6-week NAT goes on (and overdue when missed)",
        WHO_2021,
        Journey(reasons=[HighRiskReason.art_under_4_weeks], steps=[nat(B), tick(w(4)), tick(w(12))]),
        {
            "items": {"nat_birth": "satisfied", "nat_6_weeks": "overdue"},
            "announced": {("nat_6_weeks", Transition.overdue)},
        },
    ),
    # --- 4. feeding and the final diagnosis ---
    (
        "final test at 18 months when breastfeeding stopped before 15 months",
        WHO_2021,
        Journey(steps=[feeding(m(6))]),
        {"items": {"final_test": "planned", "record_feeding_status": "cancelled:feeding_status_known"}},
    ),
    (
        "negative tests and no feeding record: the final test comes due with a record-feeding-status item",
        WHO_2021,
        Journey(until=m(18, 1)),
        {"items": {"final_test": "due", "record_feeding_status": "due"}},
    ),
    (
        "a negative final test without the end of breastfeeding: final test pending feeding status",
        WHO_2021,
        Journey(steps=[nat(w(6)), nat(m(9)), antibody(m(18, 2))]),
        {"outcome": None, "pending_feeding": True, "items": {"final_test": "satisfied"}},
    ),
    (
        "uninfected: a negative final test with breastfeeding over (3 months before)",
        WHO_2021,
        Journey(steps=[feeding(m(12)), antibody(m(18, 2))]),
        {
            "outcome": FinalOutcome.uninfected,
            "pending_feeding": False,
            "items": {"record_feeding_status": "cancelled:feeding_status_known"},
        },
    ),
    (
        "feeding recorded as ongoing meets the feeding item; the final test waits for its end",
        WHO_2021,
        Journey(steps=[feeding(m(18), "exclusive_breastfeeding"), antibody(m(18, 2))]),
        {"items": {"record_feeding_status": "satisfied"}, "pending_feeding": True, "outcome": None},
    ),
    (
        "breastfeeding stopped at 17 months: a negative antibody test at 18 months is not yet the final test",
        WHO_2021,
        Journey(steps=[feeding(m(17)), antibody(m(18, 2))]),
        {"items": {"final_test": "planned"}, "pending_feeding": False, "outcome": None},
    ),
    # --- 5. late entry ---
    (
        "a mother diagnosed at 7 months of breastfeeding: an entry NAT, not the 6-week NAT",
        WHO_2021,
        Journey(start=m(7), reasons=[HighRiskReason.diagnosed_in_labour_or_postpartum]),
        {"items": {"entry_nat": "planned", "nat_6_weeks": None, "nat_birth": None, "nat_9_months": "planned"}},
    ),
    (
        "late diagnosis just before 9 months: no entry NAT, the 9-month NAT due at once",
        WHO_2021,
        Journey(start=m(9, -7)),
        {"items": {"entry_nat": None, "nat_9_months": "planned"}},
    ),
    (
        "late diagnosis after 18 months: the final test at entry",
        WHO_2021,
        Journey(start=m(20)),
        {"items": {"entry_nat": None, "nat_9_months": None, "final_test": "planned"}},
    ),
    # --- 6. infants move ---
    (
        "transfer out: the sending facility's items are cancelled, the outcome is transferred out",
        ISSUE,
        Journey(steps=[outcome(w(2), "transferred_out")]),
        {"outcome": FinalOutcome.transferred_out, "items": {"nat_6_weeks": "cancelled:transferred_out"}},
    ),
    (
        "transfer in after a transfer out: her items are planned again and her results count",
        ISSUE,
        Journey(steps=[outcome(w(2), "transferred_out"), outcome(w(3), "transferred_in"), nat(w(6))]),
        {"items": {"nat_6_weeks": "satisfied", "nat_9_months": "planned"}},
    ),
    (
        "transferred in, later found uninfected: the outcome is revised to uninfected",
        ISSUE,
        Journey(
            steps=[outcome(w(2), "transferred_out"), outcome(w(3), "transferred_in"), feeding(m(10)), antibody(m(18))]
        ),
        {"outcome": FinalOutcome.uninfected},
    ),
    # --- 7. prophylaxis as data ---
    (
        "standard risk: NVP from birth; not recorded within 3 days it is due, then overdue after the grace",
        WHO_2025,
        Journey(steps=[tick(B + timedelta(days=1)), tick(B + timedelta(days=18))]),
        {
            "items": {"infant_prophylaxis": "overdue"},
            "announced": {("infant_prophylaxis", Transition.due), ("infant_prophylaxis", Transition.overdue)},
        },
    ),
    (
        "the recorded drug meets the regimen step (started on the day the EMR says)",
        WHO_2025,
        Journey(steps=[prophylaxis(B + timedelta(days=9), "NVP", started=B)]),
        {"items": {"infant_prophylaxis": "satisfied"}},
    ),
    (
        "high risk (WHO 2025 enhanced): AZT+3TC+NVP from birth, then NVP from week 6, each its own step",
        WHO_2025,
        Journey(
            reasons=[HighRiskReason.art_under_4_weeks],
            steps=[prophylaxis(B, "AZT+3TC+NVP"), nat(w(6)), tick(w(9))],
        ),
        {"items": {"infant_prophylaxis": "overdue"}, "never": {("nat_6_weeks", Transition.overdue)}},
    ),
    (
        "a drug other than the regimen's does not meet it",
        WHO_2025,
        Journey(reasons=[HighRiskReason.art_under_4_weeks], steps=[prophylaxis(B, "NVP")]),
        {"items": {"infant_prophylaxis": "planned"}},
    ),
    (
        "a positive NAT: prophylaxis is moot, ART is what she needs",
        WHO_2021_C,
        Journey(steps=[nat(B + timedelta(days=2), "positive")]),
        {"items": {"infant_prophylaxis": "cancelled:positive_result"}, "art_needed": True},
    ),
    # --- 7b. prophylaxis recorded with a regimen the preset does not name ---
    (
        "a drug the preset's regimen does not name (AZT for a standard-risk infant) meets the step, as given",
        WHO_2025,
        Journey(steps=[prophylaxis(B + timedelta(days=1), "AZT"), tick(B + timedelta(days=30))]),
        {
            "items": {"infant_prophylaxis": "satisfied"},
            "never": {("infant_prophylaxis", Transition.overdue)},
        },
    ),
    (
        "a substitute started after its step's time does not meet it (a late AZT at 8 weeks)",
        WHO_2025,
        Journey(steps=[prophylaxis(w(8), "AZT"), tick(w(9))]),
        {"items": {"infant_prophylaxis": "overdue"}},
    ),
    # --- 9. cotrimoxazole from 6 weeks until HIV is excluded ---
    (
        "cotrimoxazole is due at 6 weeks, overdue when not recorded after its window and the grace",
        WHO_CTX,
        Journey(steps=[tick(w(6)), tick(w(6) + timedelta(days=14 + 14))]),
        {
            "items": {"infant_cotrimoxazole": "overdue"},
            "announced": {("infant_cotrimoxazole", Transition.due), ("infant_cotrimoxazole", Transition.overdue)},
        },
    ),
    (
        "cotrimoxazole recorded (started on the day the EMR says) meets it",
        WHO_CTX,
        Journey(steps=[cotrimoxazole(w(7), started=w(6)), tick(w(12))]),
        {"items": {"infant_cotrimoxazole": "satisfied"}, "never": {("infant_cotrimoxazole", Transition.overdue)}},
    ),
    (
        "HIV excluded (a negative final test after breastfeeding ended): cotrimoxazole and visits end",
        WHO_CTX,
        Journey(steps=[feeding(m(12)), antibody(m(18, 2))]),
        {
            "outcome": FinalOutcome.uninfected,
            "items": {"infant_cotrimoxazole": "cancelled:follow_up_complete"},
        },
    ),
    (
        "infected: cotrimoxazole and HEI visits end here (her care goes on in ART care), ART stays",
        WHO_CTX,
        Journey(steps=[nat(w(6), "positive"), nat(w(7), "positive", True)]),
        {
            "outcome": FinalOutcome.infected,
            "art_needed": True,
            "items": {"infant_cotrimoxazole": "cancelled:infected", "HEI visit at 14 weeks": "cancelled:infected"},
        },
    ),
    (
        "a first positive NAT not yet confirmed: cotrimoxazole and the visits go on beside ART",
        WHO_CTX,
        Journey(steps=[nat(w(6), "positive")]),
        {"items": {"infant_cotrimoxazole": "planned", "HEI visit at 10 weeks": "planned"}, "art_needed": True},
    ),
    (
        "a death ends cotrimoxazole and the visits",
        WHO_CTX,
        Journey(steps=[outcome(w(3), "died")]),
        {"items": {"infant_cotrimoxazole": "cancelled:died", "HEI visit at 6 weeks": "cancelled:died"}},
    ),
    (
        "a national preset may turn cotrimoxazole and the visits off (ask_cotrimoxazole, ask_hei_visits)",
        "clinical preset (docs/clinical-rules.md)",
        Journey(preset=NO_HEI_CARE),
        {"items": {"infant_cotrimoxazole": None, "HEI visit at 6 weeks": None, "nat_6_weeks": "planned"}},
    ),
    # --- 10. HEI clinic visits, due / overdue like tests, traced when missed ---
    (
        "a missed HEI visit at 6 weeks is announced overdue (the referrals service traces it)",
        HEI_VISITS,
        Journey(steps=[nat(w(4)), tick(w(6) + timedelta(days=14 + 14))]),
        {
            "items": {"HEI visit at 6 weeks": "overdue", "nat_6_weeks": "satisfied"},
            "announced": {("HEI visit at 6 weeks", Transition.due), ("HEI visit at 6 weeks", Transition.overdue)},
        },
    ),
    (
        # found by tests/followup/test_schedule_properties.py: the later ART record was lost as a
        # contact once an earlier one arrived, and the 14-week visit, already announced due, was
        # planned and announced again
        "every ART record is a clinic contact: records at 10 and 13 weeks meet the 10- and 14-week visits",
        HEI_VISITS,
        Journey(steps=[tick(w(14)), art(w(13)), art(w(10)), tick(w(15))]),
        {
            "items": {"HEI visit at 10 weeks": "satisfied", "HEI visit at 14 weeks": "satisfied"},
            "never": {("HEI visit at 14 weeks", Transition.overdue)},
        },
    ),
    (
        "a visit at 11 weeks meets the 10-week visit and supersedes the missed 6-week one",
        HEI_VISITS,
        Journey(steps=[visit(w(11)), tick(w(12))]),
        {"items": {"HEI visit at 10 weeks": "satisfied", "HEI visit at 6 weeks": "cancelled:superseded"}},
    ),
    (
        "one sample meets the visit of its day too: the 6-week NAT taken at the 6-week visit",
        HEI_VISITS,
        Journey(steps=[nat(w(6)), tick(w(9))]),
        {"items": {"HEI visit at 6 weeks": "satisfied", "nat_6_weeks": "satisfied"}},
    ),
    (
        "late entry at 7 months: no visits before it, the 9-month visit ahead",
        HEI_VISITS,
        Journey(start=m(7)),
        {"items": {"HEI visit at 14 weeks": None, "HEI visit at 9 months": "planned"}},
    ),
    # --- 11. discharge by the facility ---
    (
        "a discharge posted by the facility ends follow-up: what is open is cancelled, outcome discharged",
        DISCHARGE,
        Journey(steps=[nat(w(6)), discharge(m(10), "caregiver_declined"), tick(m(30))]),
        {
            "outcome": FinalOutcome.discharged,
            "items": {"final_test": "cancelled:discharged", "HEI visit at 12 months": "cancelled:discharged"},
            "never": {("final_test", Transition.overdue)},
        },
    ),
    (
        "a child seen again after her discharge is followed again: no outcome, her items open",
        DISCHARGE,
        Journey(steps=[discharge(m(10)), visit(m(11))]),
        {"outcome": None, "items": {"final_test": "planned", "HEI visit at 12 months": "planned"}},
    ),
    (
        "a discharge does not hide a final status the facts establish: uninfected",
        DISCHARGE,
        Journey(steps=[feeding(m(12)), antibody(m(18, 2)), discharge(m(18, 5), "hiv_excluded")]),
        {"outcome": FinalOutcome.uninfected},
    ),
    # --- 8. presets ---
    (
        "Kenya: PCR at 6 weeks, 6 months and 12 months, named for what they are",
        KENYA,
        Journey(preset="kenya-2022"),
        {
            "items": {
                "nat_6_weeks": "planned",
                "PCR at 6 months": "planned",
                "PCR at 12 months": "planned",
                "nat_9_months": None,
            }
        },
    ),
    (
        "Kenya: a NAT at 6 months meets the 6-month PCR",
        KENYA,
        Journey(preset="kenya-2022", steps=[nat(w(6)), nat(m(6, 3))]),
        {"items": {"PCR at 6 months": "satisfied", "PCR at 12 months": "planned"}},
    ),
    (
        "South Africa: a birth PCR for every exposed infant, then 10 weeks and 6 months",
        SOUTH_AFRICA,
        Journey(preset="south-africa-2023"),
        {"items": {"nat_birth": "planned", "PCR at 10 weeks": "planned", "PCR at 6 months": "planned"}},
    ),
    (
        "WHO: no birth NAT for a standard-risk infant",
        WHO_2021,
        Journey(),
        {"items": {"nat_birth": None, "nat_6_weeks": "planned"}},
    ),
    (
        "WHO: a birth NAT for a high-risk infant",
        WHO_2021,
        Journey(reasons=[HighRiskReason.viral_load_above_threshold]),
        {"items": {"nat_birth": "planned"}},
    ),
]


@pytest.mark.parametrize(
    "scenario, source, journey, expected", SCENARIOS, ids=[f"{row[0]} [{row[1]}]" for row in SCENARIOS]
)
def test_infant_scenario(scenario: str, source: str, journey: Journey, expected: dict[str, Any]) -> None:
    seen = drive(journey)
    plan = seen.case.plan
    assert plan is not None
    found = items(seen)
    for k, want in expected.get("items", {}).items():
        got = found.get(k)
        if want == "open":
            assert got in OPEN, f"{scenario}: {k} is {got}"
        else:
            assert got == want, f"{scenario}: {k} is {got}, expected {want}"
    if "outcome" in expected:
        assert seen.case.final_outcome == expected["outcome"], scenario
    if "art_needed" in expected:
        assert plan.art_needed is expected["art_needed"], scenario
    if "pending_feeding" in expected:
        assert plan.pending_feeding_status is expected["pending_feeding"], scenario
    for pair in expected.get("announced", ()):
        assert pair in seen.announced, f"{scenario}: {pair} announced"
    for pair in expected.get("never", ()):
        assert pair not in seen.announced, f"{scenario}: {pair} must not be announced"


def test_the_mothers_death_moves_the_final_test() -> None:
    """WHO 2021: the final diagnosis is 3 months after breastfeeding ends; her death ends it."""
    from dataclasses import replace

    rules = EidRules()
    case = InfantCase(uuid4(), uuid4(), "F", InfantFacts(birth_date=B, high_risk=False, follow_up_from=B))
    case.start_follow_up(B, [], rules)
    case.facts = replace(case.facts, mother_died_on=m(17))
    case.recompute(rules)
    finals = [i for i in case.items if i.kind is ScheduleKind.final_test and i.open]
    assert [i.window_start for i in finals] == [m(20)]


def test_a_stillbirth_is_not_an_infant_and_starts_no_follow_up() -> None:
    """A delivery's stillborn baby gets no infant row (WHO 2021 infant diagnosis concerns live-born
    HIV-exposed infants): only live births become infants."""
    from datetime import UTC, datetime

    from followup.cases import MotherCase
    from pmtct_events.enrolment import (
        BirthOutcome,
        DeliveredInfant,
        DeliveryPlace,
        DeliveryRecorded,
        HivStatus,
        InfantSex,
        MaternalOutcome,
    )

    mother = MotherCase(uuid4(), "F")
    born, stillborn = uuid4(), uuid4()
    delivery = DeliveryRecorded(
        facility_id="F",
        occurred_at=datetime(2030, 1, 15, 9, tzinfo=UTC),
        client_id=mother.client_id,
        place=DeliveryPlace.facility,
        skilled_attendant=True,
        maternal_outcome=MaternalOutcome.alive,
        mother_hiv_status=HivStatus.positive,
        infants=[
            DeliveredInfant(infant_id=born, outcome=BirthOutcome.live_birth, sex=InfantSex.female),
            DeliveredInfant(infant_id=stillborn, outcome=BirthOutcome.stillbirth, sex=InfantSex.male),
        ],
    )
    rows = apply_to_mother(mother, delivery, B)
    assert [r["infant_id"] for r in rows] == [born]


# (rule, source, the mother's facts, expected reasons)
HIGH_RISK = [
    (
        "standard risk: on ART a year, suppressed 2 weeks before delivery",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=40, viral_load_on=w(-2)),
        [],
    ),
    (
        "suppressed on ART for four years with no VL posted is not high risk",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(-60), art_start_date=m(-48)),
        [],
    ),
    (
        "incident infection: a positive test after a negative one in pregnancy",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(-2), art_start_date=m(-2), last_negative_test_on=m(-6)),
        [HighRiskReason.incident_infection],
    ),
    (
        "a negative test long before the pregnancy is not an incident infection in it",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(-2), art_start_date=m(-2), last_negative_test_on=m(-30)),
        [],
    ),
    (
        "VL above 1000 in the 4 weeks before delivery",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=1500, viral_load_on=w(-1)),
        [HighRiskReason.viral_load_above_threshold],
    ),
    (
        "first identified postpartum (and not on ART at delivery)",
        WHO_2025,
        MotherAtDelivery(B, diagnosed_on=m(7)),
        [HighRiskReason.no_art, HighRiskReason.diagnosed_in_labour_or_postpartum],
    ),
]


@pytest.mark.parametrize("rule, source, mother, expected", HIGH_RISK, ids=[f"{r[0]} [{r[1]}]" for r in HIGH_RISK])
def test_high_risk_reason(rule: str, source: str, mother: MotherAtDelivery, expected: list) -> None:
    assert high_risk_reasons(mother, EidRules()) == expected, rule


# (rule, source, preset, the mother's facts, expected reasons)
NATIONAL_HIGH_RISK = [
    (
        "South Africa: on ART two weeks, VL 400 a week before delivery: low risk (only 'not on ART' counts)",
        SOUTH_AFRICA_RISK,
        "south-africa-2023",
        MotherAtDelivery(B, diagnosed_on=w(-3), art_start_date=w(-2), viral_load_copies=400, viral_load_on=w(-1)),
        [],
    ),
    (
        "South Africa: a VL of exactly 1000 ten weeks before delivery is high risk (>= 1000 within 12 weeks)",
        SOUTH_AFRICA_RISK,
        "south-africa-2023",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=1000, viral_load_on=w(-10)),
        [HighRiskReason.viral_load_above_threshold],
    ),
    (
        "South Africa: a VL 20 weeks before delivery is no VL at delivery or in the 12 weeks before",
        SOUTH_AFRICA_RISK,
        "south-africa-2023",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=40, viral_load_on=w(-20)),
        [HighRiskReason.no_viral_load],
    ),
    (
        "South Africa: not on ART at delivery",
        SOUTH_AFRICA_RISK,
        "south-africa-2023",
        MotherAtDelivery(B, diagnosed_on=m(-1), viral_load_copies=40, viral_load_on=w(-1)),
        [HighRiskReason.no_art],
    ),
    (
        "WHO: a VL of exactly 1000 is not above 1000",
        WHO_2025,
        "who-2025",
        MotherAtDelivery(B, diagnosed_on=m(-24), art_start_date=m(-12), viral_load_copies=1000, viral_load_on=w(-2)),
        [],
    ),
]


@pytest.mark.parametrize(
    "rule, source, preset, mother, expected", NATIONAL_HIGH_RISK, ids=[f"{r[0]} [{r[1]}]" for r in NATIONAL_HIGH_RISK]
)
def test_national_high_risk_reason(
    rule: str, source: str, preset: str, mother: MotherAtDelivery, expected: list
) -> None:
    assert high_risk_reasons(mother, presets.load(preset).infant) == expected, rule


def test_every_item_kind_has_a_name_and_no_planned_item_is_unnamed() -> None:
    """Worklist items are named for what they are, in one place (followup/labels.py): every kind
    has a name, and every item a plan makes (infant and mother, every preset) carries one."""
    from followup.labels import KIND_LABELS
    from followup.mother_schedule import MotherFacts, MotherRules, mother_plan
    from pmtct_events.enrolment import HivTestResult

    assert set(KIND_LABELS) == set(ScheduleKind)
    assert all(name and "_" not in name for name in KIND_LABELS.values())
    for name in presets.available():
        seen = drive(Journey(preset=name, steps=[nat(w(6), "positive"), nat(w(7), "indeterminate", True)]))
        assert all(i.label for i in seen.case.items), name
    assert {i.kind: i.label for i in drive(Journey()).case.items}[ScheduleKind.final_test] == "Final HIV test"
    mother = mother_plan(
        MotherFacts(positive_since=B, positive_seen_on=B, delivered_on=B, hiv_tests=((B, HivTestResult.positive),)),
        MotherRules(),
    )
    named = {r.kind: r.label for r in mother}
    assert named[ScheduleKind.mother_art_start] == "Start ART (mother)"
    assert all(named.values())


def test_a_country_that_counts_no_viral_load_as_high_risk_says_so_in_its_preset() -> None:
    """A national option, off in WHO 2025 (which counts a VL 'if viral load is available')."""
    mother = MotherAtDelivery(B, diagnosed_on=m(-60), art_start_date=m(-48))
    assert high_risk_reasons(mother, presets.load("south-africa-2023").infant) == [HighRiskReason.no_viral_load]


def test_the_enhanced_regimen_is_the_preset_data() -> None:
    """WHO 2025: high-risk breastfed infants get three drugs for 6 weeks, then one drug until the
    mother is suppressed or breastfeeding ends; standard: NVP for 6 weeks."""
    enhanced = prophylaxis_for(True, EidRules())
    assert [(p.drug, p.duration_weeks, p.from_week) for p in enhanced] == [
        (ProphylaxisDrug.AZT_3TC_NVP, 6, 0),
        (ProphylaxisDrug.NVP, 52, 6),
    ]
    assert enhanced[1].until is not None
    assert [(p.drug, p.duration_weeks) for p in prophylaxis_for(False, EidRules())] == [(ProphylaxisDrug.NVP, 6)]


# --- the permutation property -----------------------------------------------------------------

FACT_SETS = {
    "discordant then cleared": [nat(w(6), "positive"), nat(w(7), "negative", True), nat(w(8)), nat(m(9))],
    "positive antibody then NATs": [antibody(m(9), "positive"), nat(m(9, 4)), nat(w(6)), feeding(m(12))],
    "transfer out and in": [outcome(w(2), "transferred_out"), outcome(w(3), "transferred_in"), nat(w(6))],
    "same-day positive and negative": [nat(w(6), "positive"), nat(w(6)), nat(w(7), "positive")],
    "final diagnosis": [feeding(m(12)), antibody(m(18, 2)), nat(m(9)), feeding(m(4), "exclusive_breastfeeding")],
    "infected, ART, death": [nat(w(6), "positive"), art(w(7)), nat(w(7), "positive", True), outcome(m(3), "died")],
    "visits, cotrimoxazole, a discharge and a visit after it": [
        visit(w(11)),
        cotrimoxazole(w(7), started=w(6)),
        discharge(m(8), "caregiver_declined"),
        visit(m(9)),
        prophylaxis(B + timedelta(days=1), "AZT"),
    ],
}


def settled(order: list[tuple], on: date) -> tuple:
    """The facts recorded one by one in this order (each on the day it is posted, `on`), then the
    case's items, outcome and flags."""
    rules = EidRules()
    case = InfantCase(uuid4(), uuid4(), "F", InfantFacts(birth_date=B, high_risk=False, follow_up_from=B))
    case.start_follow_up(B, [], rules)
    for kind, day, data in order:
        case.record(RecordedEvent(kind, day, on, data))
        case.recompute(rules)
    plan = case.plan
    assert plan is not None
    standing = [i for i in case.items if i.cancel_reason != "no_longer_required"]  # how the facts arrived
    return (
        sorted(
            (i.kind.value, i.window_start, i.window_end, i.status.value, i.satisfied_on, i.cancel_reason)
            for i in standing
        ),
        (case.final_outcome, case.final_outcome_on),
        (plan.art_needed, plan.pending_feeding_status, plan.infected_on, plan.uninfected_on),
    )


@pytest.mark.parametrize("facts", list(FACT_SETS.values()), ids=list(FACT_SETS))
def test_any_order_of_the_same_facts_gives_the_same_plan_state_and_outcome(facts: list[tuple]) -> None:
    posted = m(20)
    first = settled(facts, posted)
    for order in itertools.permutations(facts):
        assert settled(list(order), posted) == first, [f[0:2] for f in order]


@pytest.mark.parametrize(
    "steps, because",
    [
        ([outcome(w(2), "transferred_out"), outcome(w(3), "transferred_in")], "transferred_in"),
        ([discharge(m(4), "caregiver_declined"), nat(m(5))], "seen_after_discharge"),
    ],
    ids=["a transfer in after the transfer out", "a sample after the discharge"],
)
def test_an_ended_follow_up_that_resumes_is_announced_once(steps: list[tuple], because: str) -> None:
    """Issue 13: a transfer out ends follow-up only until a transfer in (and a discharge until she
    is seen again); InfantFollowUpResumed tells the referrals service to follow her again."""
    from datetime import UTC, datetime

    from servicekit.clock import Clock

    rules = EidRules()
    case = InfantCase(uuid4(), uuid4(), "F", InfantFacts(birth_date=B, high_risk=False, follow_up_from=B))
    case.start_follow_up(B, [], rules)
    clock = Clock.fixed(datetime(2030, 7, 15, 9, tzinfo=UTC))
    for kind, on, data in steps:
        case.record(RecordedEvent(kind, on, on, data))
        case.conclude(case.recompute(rules), clock)
    names = [(e.event_name, getattr(e, "outcome", None), getattr(e, "because", None)) for e in case.pull_events()]
    ended = "discharged" if because == "seen_after_discharge" else "transferred_out"
    assert names == [
        ("InfantFinalOutcomeRecorded", FinalOutcome(ended), None),
        ("InfantFollowUpResumed", None, because),
    ]
    assert case.final_outcome is None
