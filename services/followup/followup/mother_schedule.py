"""The mother's follow-up: HIV retesting while she is not known positive, ART start once she is,
and viral-load monitoring and its response. Pure functions of the facts known about her, with WHO
defaults; every number is a field of `MotherRules` (`PMTCT_MOTHER_VIRAL_LOAD__…`), so a country
changes its configuration, not this code.

Retesting of a woman not known positive (WHO Consolidated guidelines on HIV testing services,
2019, "Retesting": in high-burden settings, test at the first ANC visit, retest in the third
trimester, at labour and delivery if the third-trimester retest was missed, and during the
postpartum / breastfeeding period; the 2021 consolidated guidelines keep it; national schedules
place the postpartum retests on the infant's visits, which is what the default does):

1. ANC1 test: at once (`anc1_test_window_days`) from the first day her pregnancy is seen.
2. Third-trimester retest: weeks 28–36 of gestation (from the EDD); a delivery before it was done
   cancels it (rule 3 takes over).
3. Labour and delivery: at once from the delivery when the third-trimester retest is missing, or
   her status is still unknown (no conclusive test in the pregnancy: "test her at once").
4. Postpartum while breastfeeding: at 14 weeks after delivery (the infant's 14-week visit), at 6
   months, then every 6 months while any infant of hers breastfeeds (at most 24 months).
5. Inconclusive (indeterminate) result: retest in 14 days (WHO HTS 2019: an HIV-inconclusive
   status is resolved by retesting 14 days later); a conclusive result after it meets it.
A conclusive test meets the latest point whose window has opened (two weeks' tolerance); earlier
open points are superseded. A positive result ends retesting: what is still open is cancelled.

Once she is known positive:

6. ART start: an "at once" item from the day the platform first knew she was positive, unless she
   was on ART by then (WHO 2021 consolidated guidelines: rapid ART initiation, within 7 days of
   diagnosis, the same day where she is ready); met by her ART start.
7. Viral load at 34–36 weeks of gestation and every 3 months while breastfeeding (WHO 2021
   consolidated guidelines, viral-load monitoring of pregnant and breastfeeding women; national
   schedules say every 3–6 months). A delivery before the late-pregnancy VL cancels it, and so does
   a pregnancy loss. A VL meets the latest open item whose window has opened.
8. Viral-load response (WHO 2021 consolidated guidelines, the viral-load testing algorithm of the
   chapter on monitoring the response to ART): a VL at or above `unsuppressed_copies` (1000
   copies/mL) calls for enhanced adherence support, an "at once" item for the adherence period,
   and a repeat VL after it (`repeat_viral_load_after_months`, 3 months); the next VL meets both.
   (A second unsuppressed VL is a treatment-failure decision for the clinician: it starts the same
   response again here.)

Death or transfer out cancels what is open (an item cancelled by her transfer is planned again
when she enrols at another facility: her follow-up moves with her).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pmtct_events.enrolment import HivTestResult
from pmtct_events.followup import ScheduleKind

from .schedule import TRANSFERRED_OUT, Requirement, Slot, add_months, cancel_open, frozen, match_routine

GESTATION_WEEKS = 40
#: a delivery at least this long before the expected date belongs to an earlier pregnancy
EARLIER_PREGNANCY_WEEKS = 20

#: the points of rules 1–4, in the order of a pregnancy and what follows it
RETEST_KINDS = (
    ScheduleKind.mother_hiv_test_anc1,
    ScheduleKind.mother_hiv_retest_third_trimester,
    ScheduleKind.mother_hiv_test_delivery,
    ScheduleKind.mother_hiv_retest_postpartum,
)
HIV_TEST_KINDS = frozenset({*RETEST_KINDS, ScheduleKind.mother_hiv_retest_inconclusive})
VIRAL_LOAD_KINDS = frozenset({ScheduleKind.mother_viral_load, ScheduleKind.mother_repeat_viral_load})
CONCLUSIVE = frozenset({HivTestResult.positive, HivTestResult.negative})


class MotherRules(BaseModel):
    """Mother follow-up configuration; the defaults are WHO's (HTS 2019 retesting, 2021
    consolidated guidelines for ART start and viral load)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    late_pregnancy_from_weeks: int = Field(34, ge=4, le=42)
    late_pregnancy_to_weeks: int = Field(36, ge=4, le=42)
    breastfeeding_every_months: int = Field(3, ge=1)
    window_days: int = Field(28, ge=1)
    grace_days: int = Field(14, ge=0)
    early_tolerance_days: int = Field(14, ge=0)
    max_breastfeeding_months: int = Field(24, ge=0)
    # retesting of women not known positive
    retesting: bool = True
    anc1_test_window_days: int = Field(7, ge=1, description="ANC1 test, and a test at delivery: at once")
    third_trimester_from_weeks: int = Field(28, ge=4, le=42)
    third_trimester_to_weeks: int = Field(36, ge=4, le=42)
    delivery_test_window_days: int = Field(3, ge=1, description="a test at labour and delivery")
    postpartum_retest_first_weeks: int = Field(14, ge=1, description="the first postpartum retest")
    postpartum_retest_every_months: int = Field(6, ge=1, description="then from 6 months, every this many months")
    retest_window_days: int = Field(28, ge=1)
    inconclusive_retest_days: int = Field(14, ge=1, description="an inconclusive result: retest after this")
    # ART start and the viral-load response
    art_start_window_days: int = Field(7, ge=0, description="rapid ART initiation: within this many days")
    unsuppressed_copies: int = Field(1000, ge=1, description="a VL at or above this is unsuppressed")
    repeat_viral_load_after_months: int = Field(3, ge=1, description="the adherence period before a repeat VL")


@dataclass(frozen=True, slots=True)
class MotherFacts:
    positive_since: date | None = None
    #: the day the platform first had word she was positive (ART is due from then)
    positive_seen_on: date | None = None
    art_start_date: date | None = None
    #: her current (latest) pregnancy: first seen, expected, and how it ended
    pregnancy_from: date | None = None
    edd: date | None = None
    pregnancy_lost_on: date | None = None
    delivered_on: date | None = None
    #: the day the last of her infants stopped breastfeeding; None while one still does (or unknown)
    breastfeeding_until: date | None = None
    #: (day, result) of her HIV tests, and a status known at enrolment as a test on its day
    hiv_tests: tuple[tuple[date, HivTestResult], ...] = ()
    #: (day taken, copies/mL)
    viral_loads: tuple[tuple[date, int], ...] = ()
    died_on: date | None = None
    transferred_out_on: date | None = None

    def lmp(self) -> date | None:
        """The first day of her current pregnancy as dated (EDD less 280 days), else first seen."""
        if self.edd is not None:
            return self.edd - timedelta(weeks=GESTATION_WEEKS)
        return self.pregnancy_from

    def delivered_this_pregnancy(self) -> bool:
        """Whether her latest delivery ended her current pregnancy (not an earlier one)."""
        if self.delivered_on is None:
            return False
        if self.edd is not None:
            return self.delivered_on >= self.edd - timedelta(weeks=EARLIER_PREGNANCY_WEEKS)
        return self.pregnancy_from is None or self.delivered_on >= self.pregnancy_from


def mother_plan(f: MotherFacts, rules: MotherRules) -> list[Requirement]:
    """What she needs given the facts so far (rules 1–8 of the module docstring)."""
    slots: list[Slot] = []
    if rules.retesting:
        slots += retesting(f, rules)
    if f.positive_since is not None:
        slots += art_start(f, rules)
        if rules.enabled:
            slots += viral_loads(f, rules)
    if f.died_on is not None:
        cancel_open(slots, "died")
    if f.transferred_out_on is not None:
        cancel_open(slots, TRANSFERRED_OUT)
    return frozen(slots)


def _week(edd: date, week: int) -> date:
    return edd - timedelta(weeks=GESTATION_WEEKS - week)


def retesting(f: MotherFacts, rules: MotherRules) -> list[Slot]:
    """Rules 1–5: the HIV tests of a woman not known positive."""
    tests = sorted(f.hiv_tests)
    positive_on = min((on for on, r in tests if r is HivTestResult.positive), default=f.positive_since)
    #: conclusive results up to her first positive one: what retesting counts
    conclusive = [on for on, r in tests if r in CONCLUSIVE and (positive_on is None or on <= positive_on)]
    tolerance = timedelta(days=rules.early_tolerance_days)
    delivered = f.delivered_on if f.delivered_this_pregnancy() else None
    slots: list[Slot] = []

    def first_from(day: date, before: date | None = None) -> date | None:
        return next((on for on in conclusive if on >= day and (before is None or on < before)), None)

    lmp = f.lmp()
    if f.pregnancy_from is not None and lmp is not None:
        start = f.pregnancy_from
        anc1 = Slot(
            ScheduleKind.mother_hiv_test_anc1,
            None,
            start,
            start + timedelta(days=rules.anc1_test_window_days),
            rules.grace_days,
            routine=False,
        )
        anc1.satisfied_on = first_from(min(lmp, start - tolerance))
        slots.append(anc1)
    third: Slot | None = None
    if f.edd is not None and not (
        f.pregnancy_lost_on and f.pregnancy_lost_on < _week(f.edd, rules.third_trimester_from_weeks)
    ):
        begin = _week(f.edd, rules.third_trimester_from_weeks)
        end = _week(f.edd, rules.third_trimester_to_weeks)
        third = Slot(ScheduleKind.mother_hiv_retest_third_trimester, None, begin, end, rules.grace_days, routine=False)
        third.satisfied_on = first_from(begin - tolerance, delivered)
        if third.open and delivered is not None:
            third.cancel_reason = "delivered"
        slots.append(third)
    if f.pregnancy_lost_on is not None:
        cancel_open(slots, "pregnancy_ended")
    if delivered is not None:
        tested_in_pregnancy = lmp is None or first_from(lmp, delivered) is not None
        if third is None or third.satisfied_on is None or not tested_in_pregnancy:
            at_delivery = Slot(
                ScheduleKind.mother_hiv_test_delivery,
                None,
                delivered,
                delivered + timedelta(days=rules.delivery_test_window_days),
                0,
                routine=False,
            )
            at_delivery.satisfied_on = first_from(delivered - timedelta(days=1))
            slots.append(at_delivery)
    if f.delivered_on is not None:
        slots += _postpartum(f.delivered_on, f.breastfeeding_until, conclusive, rules)
    slots += _inconclusive(tests, rules)
    if positive_on is not None:
        # known positive: no test is needed after that day; one that was due by then is cancelled
        slots = [s for s in slots if not (s.open and s.window_start > positive_on)]
        cancel_open(slots, "known_positive")
    return slots


def _postpartum(
    delivered: date, breastfeeding_until: date | None, conclusive: list[date], rules: MotherRules
) -> list[Slot]:
    """Rule 4: 14 weeks after delivery, at 6 months, then every 6 months while breastfeeding."""
    limit = breastfeeding_until or add_months(delivered, rules.max_breastfeeding_months)
    starts = [delivered + timedelta(weeks=rules.postpartum_retest_first_weeks)]
    k = 6
    while (start := add_months(delivered, k)) < limit:
        if start > starts[-1]:
            starts.append(start)
        k += rules.postpartum_retest_every_months
    slots = [
        Slot(
            ScheduleKind.mother_hiv_retest_postpartum,
            None,
            start,
            start + timedelta(days=rules.retest_window_days),
            rules.grace_days,
        )
        for start in starts
        if start < limit
    ]
    for on in conclusive:
        if on > delivered:
            match_routine(slots, on, lambda _s: True, rules.early_tolerance_days)
    return slots


def _inconclusive(tests: list[tuple[date, HivTestResult]], rules: MotherRules) -> list[Slot]:
    """Rule 5: each indeterminate result not yet resolved by a conclusive one calls for a retest."""
    slots: list[Slot] = []
    for on, result in tests:
        if result is not HivTestResult.indeterminate:
            continue
        start = on + timedelta(days=rules.inconclusive_retest_days)
        slot = Slot(
            ScheduleKind.mother_hiv_retest_inconclusive,
            None,
            start,
            start + timedelta(days=rules.anc1_test_window_days),
            rules.grace_days,
            routine=False,
        )
        slot.satisfied_on = next((d for d, r in tests if d > on and r in CONCLUSIVE), None)
        slots.append(slot)
    return slots


def art_start(f: MotherFacts, rules: MotherRules) -> list[Slot]:
    """Rule 6: ART at once from the day she was known positive, unless she was on ART by then."""
    seen = f.positive_seen_on or f.positive_since
    assert seen is not None
    if f.art_start_date is not None and f.art_start_date <= seen:
        return []
    slot = Slot(
        ScheduleKind.mother_art_start, None, seen, seen + timedelta(days=rules.art_start_window_days), 0, routine=False
    )
    slot.satisfied_on = f.art_start_date
    return [slot]


def viral_loads(f: MotherFacts, rules: MotherRules) -> list[Slot]:
    """Rules 7 and 8: routine viral loads and the response to an unsuppressed one."""
    assert f.positive_since is not None
    slots: list[Slot] = []
    pregnancy: Slot | None = None
    delivered_this_pregnancy = f.delivered_this_pregnancy()
    if f.edd is not None:
        begin = _week(f.edd, rules.late_pregnancy_from_weeks)
        end = _week(f.edd, rules.late_pregnancy_to_weeks)
        too_early = delivered_this_pregnancy and f.delivered_on is not None and f.delivered_on < begin
        if f.positive_since <= end and not too_early:
            pregnancy = Slot(ScheduleKind.mother_viral_load, None, begin, end, rules.grace_days)
            slots.append(pregnancy)
    if f.delivered_on is not None:
        limit = f.breastfeeding_until or add_months(f.delivered_on, rules.max_breastfeeding_months)
        k = 1
        while (begin := add_months(f.delivered_on, k * rules.breastfeeding_every_months)) < limit:
            if begin >= f.positive_since and (pregnancy is None or begin > pregnancy.window_start):
                end = begin + timedelta(days=rules.window_days)
                slots.append(Slot(ScheduleKind.mother_viral_load, None, begin, end, rules.grace_days))
            k += 1
    taken = sorted(f.viral_loads)
    for on, _ in taken:
        match_routine(slots, on, lambda _s: True, rules.early_tolerance_days)
    if pregnancy is not None and pregnancy.open:
        if delivered_this_pregnancy:
            pregnancy.cancel_reason = "delivered"
        elif f.pregnancy_lost_on is not None:
            pregnancy.cancel_reason = "pregnancy_ended"
    slots += _response(taken, rules)
    return slots


def _response(taken: Iterable[tuple[date, int]], rules: MotherRules) -> list[Slot]:
    """Rule 8: enhanced adherence support and a repeat VL after an unsuppressed one."""
    loads = list(taken)
    slots: list[Slot] = []
    for on, copies in loads:
        if copies < rules.unsuppressed_copies:
            continue
        repeat_on = add_months(on, rules.repeat_viral_load_after_months)
        next_vl = next((d for d, _ in loads if d > on), None)
        support = Slot(ScheduleKind.mother_adherence_support, None, on, repeat_on, 0, routine=False)
        repeat = Slot(
            ScheduleKind.mother_repeat_viral_load,
            None,
            repeat_on,
            repeat_on + timedelta(days=rules.window_days),
            rules.grace_days,
            routine=False,
        )
        support.satisfied_on = repeat.satisfied_on = next_vl
        slots += [support, repeat]
    return slots
