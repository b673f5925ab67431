"""The HIV-exposed infant (HEI) schedule: prophylaxis, early infant diagnosis, final outcome.

Pure functions of the facts known about one infant, with WHO defaults: testing by the WHO 2021
infant HIV diagnosis algorithm (NAT at birth for high risk, at 6 weeks and 9 months; final
diagnosis at 18 months or 3 months after breastfeeding ends, whichever is later), high risk and
prophylaxis by the WHO 2025 updated recommendations on HIV clinical management. Every number is a
field of `EidRules`, so a country changes its
configuration, not this code (`PMTCT_EID__GRACE_DAYS=21`, or `PMTCT_EID='{"grace_days": 21}'`).

The rules, in the order `infant_plan` applies them:

1. High risk (`high_risk_reasons`): mother on ART < 4 weeks at delivery (or not on ART), a viral
   load > 1000 copies/mL in the 4 weeks before delivery, no viral load at all, or diagnosed in
   labour or postpartum. High risk → NVP 12 weeks + AZT 6 weeks and a NAT at birth; otherwise NVP
   6 weeks (`prophylaxis_for`).
2. NAT at 6 weeks: window 4–8 weeks of age, overdue after the window plus a 14-day grace.
3. NAT at 9 months for every HEI, whatever the earlier results.
4. Final test at 18 months or 3 months after breastfeeding stops, whichever is later (antibody
   test, valid from 18 months). While breastfeeding continues the 18-month test is planned
   provisionally; when breastfeeding stops the plan moves the final test.
5. Any positive result: a confirmatory NAT at once. Two diagnostic positives = infected, which
   cancels further testing and requires ART (an `infant_art_start` item until ART starts). A
   negative after a positive is discordant: a repeat test at once; a second negative clears it.
6. Indeterminate: a repeat test at once.
7. Late entry (mother diagnosed while breastfeeding): follow-up starts at her diagnosis; routine
   tests whose window has closed are replaced by one NAT at entry, unless the 9-month NAT or the
   final test comes within the "at once" window anyway.
8. Death, transfer out, or a final outcome close the schedule: what is still open is cancelled.

A result meets the latest routine item whose window has opened (a week's tolerance for an early
visit); earlier open routine items are then superseded. A sample taken after a trigger meets the
confirmatory or repeat item it triggered first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pmtct_events.followup import (
    FeedingMethod,
    FinalOutcome,
    HighRiskReason,
    InfantTest,
    ProphylaxisDrug,
    ProphylaxisPlan,
    ScheduleKind,
    TestResult,
)

from .schedule import Requirement, Slot, add_months, cancel_open, frozen, match_routine

BREASTFEEDING = frozenset({FeedingMethod.exclusive_breastfeeding, FeedingMethod.mixed_feeding})


class EidRules(BaseModel):
    """Infant schedule configuration; the defaults are WHO's (2021 infant diagnosis algorithm, 2025
    updated recommendations on infant prophylaxis); national schedules are other values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    high_risk_art_weeks: int = Field(4, ge=0, description="on ART fewer weeks than this at delivery = high risk")
    high_risk_viral_load_copies: int = Field(1000, ge=0, description="a viral load above this = high risk")
    viral_load_recent_weeks: int = Field(4, ge=0, description="how recent before delivery that viral load is")
    labour_days: int = Field(1, ge=0, description="a diagnosis this many days before delivery was in labour")
    standard_prophylaxis: tuple[ProphylaxisPlan, ...] = (ProphylaxisPlan(drug=ProphylaxisDrug.NVP, duration_weeks=6),)
    high_risk_prophylaxis: tuple[ProphylaxisPlan, ...] = (
        ProphylaxisPlan(drug=ProphylaxisDrug.NVP, duration_weeks=12),
        ProphylaxisPlan(drug=ProphylaxisDrug.AZT, duration_weeks=6),
    )
    birth_nat_for_high_risk: bool = True
    birth_nat_window_days: int = Field(14, ge=1)
    nat_6_weeks_from_weeks: int = Field(4, ge=0)
    nat_6_weeks_to_weeks: int = Field(8, ge=1)
    nat_9_months_at_months: int = Field(9, ge=1)
    nat_9_months_window_days: int = Field(30, ge=1)
    final_test_min_age_months: int = Field(18, ge=1)
    final_test_after_breastfeeding_months: int = Field(3, ge=0)
    final_test_window_days: int = Field(42, ge=1)
    antibody_valid_from_months: int = Field(18, ge=0)
    at_once_window_days: int = Field(14, ge=1, description="confirmatory, repeat, entry NAT and ART start")
    grace_days: int = Field(14, ge=0)
    early_tolerance_days: int = Field(7, ge=0)
    final_outcome_by_months: int = Field(24, ge=1)
    max_breastfeeding_months: int = Field(24, ge=0, description="older infants of a newly diagnosed mother are not HEI")


@dataclass(frozen=True, slots=True)
class MotherAtDelivery:
    """The mother's HIV context on the day of delivery (DeliveryRecorded carries it)."""

    delivered_on: date
    diagnosed_on: date | None = None
    art_start_date: date | None = None
    viral_load_copies: int | None = None
    viral_load_on: date | None = None


def high_risk_reasons(m: MotherAtDelivery, rules: EidRules) -> list[HighRiskReason]:
    """High risk (WHO 2025 updated recommendations on HIV clinical management): on ART < 4 weeks
    at delivery, VL > 1000 in the 4 weeks before delivery, no VL, or diagnosed in labour /
    postpartum. Empty list = standard risk."""
    reasons: list[HighRiskReason] = []
    if m.art_start_date is None or m.art_start_date > m.delivered_on:
        reasons.append(HighRiskReason.no_art)
    elif m.delivered_on - m.art_start_date < timedelta(weeks=rules.high_risk_art_weeks):
        reasons.append(HighRiskReason.art_under_4_weeks)
    if m.viral_load_on is None or m.viral_load_copies is None or m.viral_load_on > m.delivered_on:
        reasons.append(HighRiskReason.no_viral_load)
    elif (
        m.delivered_on - m.viral_load_on <= timedelta(weeks=rules.viral_load_recent_weeks)
        and m.viral_load_copies > rules.high_risk_viral_load_copies
    ):
        reasons.append(HighRiskReason.viral_load_above_threshold)
    if m.diagnosed_on is not None and m.diagnosed_on >= m.delivered_on - timedelta(days=rules.labour_days):
        reasons.append(HighRiskReason.diagnosed_in_labour_or_postpartum)
    return reasons


def prophylaxis_for(high_risk: bool, rules: EidRules) -> list[ProphylaxisPlan]:
    """Standard: NVP 6 weeks. High risk: NVP 12 weeks + AZT 6 weeks."""
    return list(rules.high_risk_prophylaxis if high_risk else rules.standard_prophylaxis)


@dataclass(frozen=True, slots=True)
class TestFact:
    sampled_on: date
    test: InfantTest
    result: TestResult
    confirmatory: bool = False
    #: the day the result reached the platform: "at once" follow-ups are timed from it
    reported_on: date | None = None
    #: arrival order, to order results sampled the same day
    seq: int = 0


@dataclass(frozen=True, slots=True)
class FeedingFact:
    on: date
    method: FeedingMethod


@dataclass(frozen=True, slots=True)
class InfantFacts:
    birth_date: date
    high_risk: bool
    #: the birth date, or the mother's diagnosis while breastfeeding (late entry)
    follow_up_from: date
    results: tuple[TestFact, ...] = ()
    feeding: tuple[FeedingFact, ...] = ()
    mother_died_on: date | None = None
    died_on: date | None = None
    transferred_out_on: date | None = None
    art_started_on: date | None = None
    #: a final outcome already recorded (by the deadline rule): the schedule is closed
    closed_by: FinalOutcome | None = None


def breastfeeding_stopped_on(f: InfantFacts) -> date | None:
    """The day breastfeeding stopped for good, or None while it continues (or nothing is known:
    the programmes assume breastfeeding, as most mothers in them breastfeed). Replacement feeding
    counts as stopped; a later breastfeeding record resumes it. The mother's death ends it."""
    stopped: date | None = None
    for fact in sorted(f.feeding, key=lambda x: x.on):
        if fact.method in BREASTFEEDING:
            stopped = None
        elif stopped is None:
            stopped = fact.on
    if f.mother_died_on is not None and (stopped is None or f.mother_died_on < stopped):
        stopped = f.mother_died_on
    return stopped


def is_diagnostic(birth_date: date, r: TestFact, rules: EidRules) -> bool:
    """A NAT at any age; an antibody test only from 18 months (before, it shows maternal antibodies)."""
    if r.test is InfantTest.NAT:
        return True
    return r.sampled_on >= add_months(birth_date, rules.antibody_valid_from_months)


@dataclass(frozen=True, slots=True)
class InfantPlan:
    requirements: list[Requirement]
    infected_on: date | None = None
    uninfected_on: date | None = None
    art_needed: bool = False
    breastfeeding_stopped_on: date | None = None


def infant_plan(f: InfantFacts, rules: EidRules) -> InfantPlan:
    """Everything the infant needs given the facts so far (rules 1–8 of the module docstring)."""
    birth, start = f.birth_date, f.follow_up_from
    at_once = timedelta(days=rules.at_once_window_days)
    grace = rules.grace_days
    slots: list[Slot] = []

    def routine(kind: ScheduleKind, test: InfantTest, begin: date, end: date) -> Slot:
        slot = Slot(kind, test, begin, end, grace)
        slots.append(slot)
        return slot

    bf_stop = breastfeeding_stopped_on(f)
    six_start = birth + timedelta(weeks=rules.nat_6_weeks_from_weeks)
    six_end = birth + timedelta(weeks=rules.nat_6_weeks_to_weeks)
    nine_start = add_months(birth, rules.nat_9_months_at_months)
    nine_end = nine_start + timedelta(days=rules.nat_9_months_window_days)
    final_start = max(add_months(birth, rules.final_test_min_age_months), start)
    if bf_stop is not None:
        final_start = max(final_start, add_months(bf_stop, rules.final_test_after_breastfeeding_months))

    if f.high_risk and rules.birth_nat_for_high_risk and start <= birth:
        routine(ScheduleKind.nat_birth, InfantTest.NAT, birth, birth + timedelta(days=rules.birth_nat_window_days))
    if start <= six_end:
        routine(ScheduleKind.nat_6_weeks, InfantTest.NAT, six_start, six_end)
    else:
        next_routine = nine_start if start <= nine_end else final_start
        if next_routine - start > at_once:
            routine(ScheduleKind.nat_6_weeks, InfantTest.NAT, start, start + at_once)
    if start <= nine_end and nine_start < final_start:
        routine(ScheduleKind.nat_9_months, InfantTest.NAT, nine_start, nine_end)
    final = routine(
        ScheduleKind.final_test,
        InfantTest.antibody,
        final_start,
        final_start + timedelta(days=rules.final_test_window_days),
    )

    infected_on: date | None = None
    pending_positive: date | None = None
    discordant = False
    final_negative_on: date | None = None

    def at_once_slot(kind: ScheduleKind, test: InfantTest, r: TestFact) -> None:
        if any(s.kind is kind and s.open for s in slots):
            return
        reported = max(r.sampled_on, r.reported_on or r.sampled_on)
        # keyed by the trigger's sample date (unique per open need), timed from the day it was reported
        slots.append(Slot(kind, test, r.sampled_on, reported + at_once, grace, routine=False))

    for r in sorted(f.results, key=lambda x: (x.sampled_on, x.seq)):
        if infected_on is not None:
            break
        diagnostic = is_diagnostic(birth, r, rules)
        follow = next(
            (
                s
                for s in slots
                if not s.routine
                and s.open
                and s.window_start < r.sampled_on
                and (r.test is InfantTest.NAT or s.kind is ScheduleKind.repeat_test)
            ),
            None,
        )
        if follow is not None:
            follow.satisfied_on = r.sampled_on
        else:
            met = match_routine(
                slots,
                r.sampled_on,
                lambda s, r=r, diagnostic=diagnostic: (
                    r.test is InfantTest.NAT or (diagnostic and s.kind is ScheduleKind.final_test)
                ),
                rules.early_tolerance_days,
            )
            if met is final and r.result is TestResult.negative:
                final_negative_on = r.sampled_on
        if r.result is TestResult.positive:
            if diagnostic and pending_positive is not None:
                infected_on = r.sampled_on
            else:
                if diagnostic:
                    pending_positive = r.sampled_on
                at_once_slot(ScheduleKind.confirmatory_nat, InfantTest.NAT, r)
        elif r.result is TestResult.indeterminate:
            at_once_slot(ScheduleKind.repeat_test, r.test, r)
        elif pending_positive is not None:
            if discordant:
                pending_positive, discordant = None, False
            else:
                discordant = True
                at_once_slot(ScheduleKind.repeat_test, InfantTest.NAT, r)

    uninfected_on: date | None = None
    if infected_on is not None:
        cancel_open(slots, "infected")
        art = Slot(ScheduleKind.infant_art_start, None, infected_on, infected_on + at_once, grace, routine=False)
        if f.art_started_on is not None:
            art.satisfied_on = max(f.art_started_on, infected_on)
        slots.append(art)
    elif final_negative_on is not None and bf_stop is not None and pending_positive is None:
        uninfected_on = final_negative_on
        cancel_open(slots, "follow_up_complete")

    if f.died_on is not None:
        cancel_open(slots, "died")
    if f.transferred_out_on is not None:
        cancel_open(slots, "transferred_out")
    if f.closed_by is not None and f.closed_by is not FinalOutcome.infected:  # infected still needs ART
        cancel_open(slots, f"closed_{f.closed_by.value}")
    art_needed = infected_on is not None and f.art_started_on is None and f.died_on is None
    return InfantPlan(frozen(slots), infected_on, uninfected_on, art_needed, bf_stop)


_TIE_ORDER = {
    FinalOutcome.infected: 0,
    FinalOutcome.died: 1,
    FinalOutcome.transferred_out: 2,
    FinalOutcome.uninfected: 3,
}


def final_outcome(f: InfantFacts, plan: InfantPlan) -> tuple[FinalOutcome, date] | None:
    """The outcome the facts establish (infected; uninfected = a negative final test with
    breastfeeding ended; died; transferred out: the WHO 2021 final diagnosis), the earliest if
    several; None if none yet. LTFU and unknown are decided by time, at `outcome_deadline`."""
    found = [
        (outcome, on)
        for outcome, on in (
            (FinalOutcome.infected, plan.infected_on),
            (FinalOutcome.died, f.died_on),
            (FinalOutcome.transferred_out, f.transferred_out_on),
            (FinalOutcome.uninfected, plan.uninfected_on),
        )
        if on is not None
    ]
    if not found:
        return None
    return min(found, key=lambda pair: (pair[1], _TIE_ORDER[pair[0]]))


def outcome_deadline(birth_date: date, rules: EidRules) -> date:
    """By this age every HEI has a final outcome: if the facts gave none, it is LTFU (when the
    infant is lost at that moment) or unknown."""
    return add_months(birth_date, rules.final_outcome_by_months)


def deadline_outcome(lost: bool) -> FinalOutcome:
    return FinalOutcome.lost_to_follow_up if lost else FinalOutcome.unknown
