"""The HIV-exposed infant (HEI) schedule: prophylaxis, early infant diagnosis, final diagnosis.

Pure functions of the facts known about one infant; every number, test point and regimen is a field
of `EidRules`, the `[infant]` section of the clinical preset (`presets.py`, `PMTCT_CLINICAL_PRESET`,
WHO by default). docs/clinical-rules.md lists each rule with its source and the presets side by side.
Sources: WHO 2021 = "Consolidated guidelines on HIV prevention, testing, treatment, service delivery
and monitoring" (July 2021), section 2.5 "HIV diagnosis in infants and children" and its simplified
infant diagnosis algorithm (also Annex 2 of "Updated recommendations on HIV prevention, infant
diagnosis, antiretroviral initiation and monitoring", March 2021); WHO 2025 = "WHO updated
recommendations on HIV clinical management: recommendations for a public health approach" (2025),
infant postnatal prophylaxis and its definition of high-risk infants.

The rules, in the order `infant_plan` applies them:

1. Routine NATs at the preset's test points (WHO: at birth for high risk, at 6 weeks, at 9 months),
   each a window and a grace period after it; a point may be for high-risk infants only.
2. Late entry (mother diagnosed while breastfeeding): follow-up starts at her diagnosis; points
   whose window has closed are replaced by one entry NAT, unless a point opens within the "at
   once" window anyway.
3. Final diagnosis at 18 months or 3 months after breastfeeding ends, whichever is later (WHO 2021):
   an antibody test (or a NAT). While feeding is unknown or ongoing when it comes due, a "record
   feeding status" item asks for it; a negative final test without it is "pending feeding status".
4. One sample meets every open need it can meet: the confirmatory, repeat or entry NAT it follows,
   and the routine item whose window holds it (with the early tolerance; earlier routine items it
   passes are superseded).
5. Positive results (WHO 2021 algorithm, note c: "start ART without delay; at the same time,
   retest to confirm"): a first positive NAT needs infant ART at once and a confirmatory NAT at
   once; routine NATs are then moot until it is resolved. A second positive = infected. A negative
   confirmatory is discordant: another NAT at once, ART still needed; a second negative clears the
   positive and the routine schedule resumes. A positive antibody test before antibodies are
   diagnostic (18 months) calls for a NAT, never for ART.
6. Indeterminate: a repeat test at once.
7. Prophylaxis as data: each step of the preset's regimen is an item, met by its drug; a drug the
   regimen does not name at all, started while a step was due, meets it as given (a substitute).
8. Cotrimoxazole from 6 weeks and the preset's HEI clinic visits until HIV is excluded (WHO 2021,
   cotrimoxazole prophylaxis): a contact meets the latest visit whose window has opened; both end
   with the final diagnosis (uninfected; infected: ART care), death, transfer or discharge.
9. Follow-up ends by a clinical fact: a final diagnosis, death, a discharge posted by the facility
   (until she is seen again), or transfer out (until a transfer in). Silence never closes
   anything: loss to follow-up is a state of the attendance, and the age snapshot (24 months) is a
   report, not a reason to cancel what a child needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pmtct_events.followup import (
    DischargeReason,
    FeedingMethod,
    FinalOutcome,
    HighRiskReason,
    InfantTest,
    ProphylaxisDrug,
    ProphylaxisPlan,
    ProphylaxisUntil,
    ScheduleKind,
    TestResult,
)

from . import labels
from .schedule import TRANSFERRED_OUT, Requirement, Slot, add_months, cancel_open, frozen, match_routine

BREASTFEEDING = frozenset({FeedingMethod.exclusive_breastfeeding, FeedingMethod.mixed_feeding})

#: point codes that are kinds of their own (the WHO defaults'); any other code is a `routine_nat`
NAMED_POINTS = frozenset({ScheduleKind.nat_birth, ScheduleKind.nat_6_weeks, ScheduleKind.nat_9_months})


class Age(BaseModel):
    """An age (or a delay) in calendar months plus weeks plus days: `{ weeks = 6 }`, `{ months = 9 }`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    months: int = Field(0, ge=0, le=60)
    weeks: int = Field(0, ge=0, le=260)
    days: int = Field(0, ge=0, le=1830)

    def after(self, day: date) -> date:
        return add_months(day, self.months) + timedelta(weeks=self.weeks, days=self.days)

    def approx_days(self) -> float:
        return self.months * 30.44 + self.weeks * 7 + self.days


class TestPoint(BaseModel):
    """A routine test of the schedule: its code, its name on the worklist, the test, its window."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    label: str = Field(min_length=1, max_length=80)
    test: InfantTest = InfantTest.NAT
    window_from: Age = Field(alias="from")
    window_to: Age = Field(alias="to")
    only_high_risk: bool = False

    @model_validator(mode="after")
    def _window_in_order(self) -> Self:
        if self.window_to.approx_days() < self.window_from.approx_days():
            raise ValueError(f"test point {self.code!r}: its window ends ('to') before it begins ('from')")
        return self

    @property
    def kind(self) -> ScheduleKind:
        named = ScheduleKind._value2member_map_.get(self.code)
        return named if named in NAMED_POINTS else ScheduleKind.routine_nat  # type: ignore[return-value]


class VisitPoint(BaseModel):
    """A clinic visit of the HEI visit schedule: its name on the worklist and the age it is due at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=80)
    at: Age


def _visits(*ages: tuple[str, Age]) -> tuple[VisitPoint, ...]:
    return tuple(VisitPoint(label=f"HEI visit at {name}", at=age) for name, age in ages)


#: the HEI clinic visits: at the immunisation contacts of the first months (6, 10 and 14 weeks,
#: 9 months) and every 3 months after them up to the 18-month final test (the schedule national HEI
#: programmes commonly keep; WHO 2021 asks for regular follow-up until the final diagnosis and
#: leaves the calendar to the country)
WHO_VISITS: tuple[VisitPoint, ...] = _visits(
    ("6 weeks", Age(weeks=6)),
    ("10 weeks", Age(weeks=10)),
    ("14 weeks", Age(weeks=14)),
    ("6 months", Age(months=6)),
    ("9 months", Age(months=9)),
    ("12 months", Age(months=12)),
    ("15 months", Age(months=15)),
    ("18 months", Age(months=18)),
)

WHO_TEST_POINTS: tuple[TestPoint, ...] = (
    TestPoint(code="nat_birth", label="NAT at birth", window_from=Age(), window_to=Age(days=14), only_high_risk=True),
    TestPoint(code="nat_6_weeks", label="NAT at 6 weeks", window_from=Age(weeks=4), window_to=Age(weeks=8)),
    TestPoint(
        code="nat_9_months", label="NAT at 9 months", window_from=Age(months=9), window_to=Age(months=9, days=30)
    ),
)


class EidRules(BaseModel):
    """The `[infant]` section of a clinical preset; the defaults are WHO's (2021 infant diagnosis
    algorithm, 2025 updated recommendations on high risk and infant prophylaxis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- high risk (WHO 2025) ---
    high_risk_art_weeks: int = Field(4, ge=0, description="on ART fewer weeks than this at delivery = high risk")
    high_risk_viral_load_copies: int = Field(1000, ge=0, description="a viral load above this = high risk")
    viral_load_recent_weeks: int = Field(4, ge=0, description="how recent before delivery that viral load is")
    no_viral_load_is_high_risk: bool = Field(False, description="a national option; WHO 2025: only a VL that exists")
    incident_infection_is_high_risk: bool = True
    #: a negative test this many weeks before delivery or later, then a positive: incident infection
    incident_negative_within_weeks: int = Field(42, ge=1)
    labour_days: int = Field(1, ge=0, description="a diagnosis this many days before delivery was in labour")
    # --- prophylaxis regimens (WHO 2025) ---
    standard_prophylaxis: tuple[ProphylaxisPlan, ...] = (ProphylaxisPlan(drug=ProphylaxisDrug.NVP, duration_weeks=6),)
    high_risk_prophylaxis: tuple[ProphylaxisPlan, ...] = (
        ProphylaxisPlan(drug=ProphylaxisDrug.AZT_3TC_NVP, duration_weeks=6),
        ProphylaxisPlan(
            drug=ProphylaxisDrug.NVP,
            duration_weeks=52,
            from_week=6,
            until=ProphylaxisUntil.mother_suppressed_or_breastfeeding_ends,
        ),
    )
    # --- testing (WHO 2021) ---
    test_points: tuple[TestPoint, ...] = WHO_TEST_POINTS
    final_test_min_age_months: int = Field(18, ge=1)
    final_test_after_breastfeeding: Age = Age(months=3)
    final_test_window_days: int = Field(42, ge=1)
    antibody_valid_from_months: int = Field(18, ge=0)
    ask_feeding_status: bool = True
    at_once_window_days: int = Field(14, ge=1, description="confirmatory, repeat, entry NAT and ART start")
    #: a step of the regimen not recorded this many days after it should start is due, then overdue
    #: after the grace (WHO 2025: prophylaxis as soon as possible after birth)
    prophylaxis_within_days: int = Field(3, ge=0)
    ask_prophylaxis: bool = True
    grace_days: int = Field(14, ge=0)
    early_tolerance_days: int = Field(7, ge=0)
    # --- care of the HEI until HIV is excluded (WHO 2021, cotrimoxazole prophylaxis) ---
    #: a "Cotrimoxazole" item from 6 weeks (WHO: HIV-exposed infants from 4–6 weeks of age until HIV
    #: infection is excluded after breastfeeding ends), met by InfantCotrimoxazoleRecorded
    ask_cotrimoxazole: bool = True
    cotrimoxazole_from: Age = Age(weeks=6)
    cotrimoxazole_within_days: int = Field(14, ge=0)
    #: HEI clinic visits (InfantVisitRecorded, or any sample taken, meets the one whose window holds it)
    ask_hei_visits: bool = True
    hei_visits: tuple[VisitPoint, ...] = WHO_VISITS
    visit_window_days: int = Field(14, ge=0)
    #: the age of the PMTCT_FO snapshot (PEPFAR MER): reported, never a reason to close follow-up
    final_outcome_by_months: int = Field(24, ge=1)
    max_breastfeeding_months: int = Field(24, ge=0, description="older infants of a newly diagnosed mother are not HEI")

    @model_validator(mode="after")
    def _points_named_once(self) -> Self:
        codes = [p.code for p in self.test_points]
        repeated = sorted({c for c in codes if codes.count(c) > 1})
        if repeated:
            raise ValueError(f"test_points: each code once (repeated: {', '.join(repeated)})")
        return self

    def label(self, kind: ScheduleKind) -> str:
        """What the worklist calls an item of this kind: a test point of the preset by the preset's
        label, any other kind by its name (`labels.KIND_LABELS`); never a raw code."""
        for p in self.test_points:
            if p.code == kind.value:
                return p.label
        return labels.of_kind(kind)


@dataclass(frozen=True, slots=True)
class MotherAtDelivery:
    """The mother's HIV facts as they bear on her infant's risk: what the mother-care side knows of
    her (DeliveryRecorded, her tests, ART and viral loads) feeds `high_risk_reasons` through it."""

    delivered_on: date
    diagnosed_on: date | None = None
    art_start_date: date | None = None
    viral_load_copies: int | None = None
    viral_load_on: date | None = None
    #: her last negative HIV test before the diagnosis (a positive after it = incident infection)
    last_negative_test_on: date | None = None


def high_risk_reasons(m: MotherAtDelivery, rules: EidRules) -> list[HighRiskReason]:
    """High risk (WHO 2025 updated recommendations on HIV clinical management, infant postnatal
    prophylaxis, definition of high-risk infants): the mother has received < 4 weeks of ART at
    delivery; or a VL > 1000 copies/mL in the 4 weeks before delivery, if a VL is available; or an
    incident infection during pregnancy or breastfeeding; or she was first identified postpartum
    (or in labour). "No VL" counts only where the preset says so. Empty list = standard risk."""
    reasons: list[HighRiskReason] = []
    if m.art_start_date is None or m.art_start_date > m.delivered_on:
        reasons.append(HighRiskReason.no_art)
    elif m.delivered_on - m.art_start_date < timedelta(weeks=rules.high_risk_art_weeks):
        reasons.append(HighRiskReason.art_under_4_weeks)
    recent = (
        m.viral_load_on is not None
        and m.viral_load_copies is not None
        and m.viral_load_on <= m.delivered_on
        and m.delivered_on - m.viral_load_on <= timedelta(weeks=rules.viral_load_recent_weeks)
    )
    if not recent:
        # no VL in the recent window (none at all, or an older one): high risk only where the
        # preset says so (South Africa: "no VL result at delivery or in the 12 weeks before")
        if rules.no_viral_load_is_high_risk:
            reasons.append(HighRiskReason.no_viral_load)
    elif m.viral_load_copies is not None and m.viral_load_copies > rules.high_risk_viral_load_copies:
        reasons.append(HighRiskReason.viral_load_above_threshold)
    if (
        rules.incident_infection_is_high_risk
        and m.diagnosed_on is not None
        and m.last_negative_test_on is not None
        and m.last_negative_test_on < m.diagnosed_on
        and m.last_negative_test_on >= m.delivered_on - timedelta(weeks=rules.incident_negative_within_weeks)
    ):
        reasons.append(HighRiskReason.incident_infection)
    if m.diagnosed_on is not None and m.diagnosed_on >= m.delivered_on - timedelta(days=rules.labour_days):
        reasons.append(HighRiskReason.diagnosed_in_labour_or_postpartum)
    return reasons


def prophylaxis_for(high_risk: bool, rules: EidRules) -> list[ProphylaxisPlan]:
    """The preset's regimen for the risk (WHO 2025: standard NVP 6 weeks; high risk, breastfed:
    three drugs for 6 weeks, then one drug until the mother is suppressed or breastfeeding ends)."""
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
class ProphylaxisFact:
    """Prophylaxis given (InfantProphylaxisRecorded): the drug and the day it started."""

    started_on: date
    drug: ProphylaxisDrug


@dataclass(frozen=True, slots=True)
class InfantFacts:
    birth_date: date
    high_risk: bool
    #: the birth date, or the mother's diagnosis while breastfeeding (late entry)
    follow_up_from: date
    results: tuple[TestFact, ...] = ()
    feeding: tuple[FeedingFact, ...] = ()
    prophylaxis: tuple[ProphylaxisFact, ...] = ()
    mother_died_on: date | None = None
    died_on: date | None = None
    transferred_out_on: date | None = None
    #: a transfer in after the transfer out: she is in care at the receiving facility
    transferred_in_on: date | None = None
    art_started_on: date | None = None
    #: the days of clinic visits (InfantVisitRecorded) and of every ART record (InfantArtInitiated)
    visits: tuple[date, ...] = ()
    #: cotrimoxazole starts (InfantCotrimoxazoleRecorded)
    cotrimoxazole: tuple[date, ...] = ()
    #: the latest discharge the facility posted, and why
    discharged_on: date | None = None
    discharge_reason: DischargeReason | None = None

    @property
    def transferred_away_on(self) -> date | None:
        """The transfer out that stands (none after a later transfer in)."""
        out, back = self.transferred_out_on, self.transferred_in_on
        return out if out is not None and (back is None or back < out) else None

    def contacts(self) -> list[date]:
        """The days the child was seen at a clinic: visits, samples, cotrimoxazole and ART starts."""
        days = {*self.visits, *self.cotrimoxazole, *(r.sampled_on for r in self.results)}
        if self.art_started_on is not None:
            days.add(self.art_started_on)
        return sorted(days)

    @property
    def discharged_away_on(self) -> date | None:
        """The discharge that stands: none once she is seen again after it, or transferred in."""
        out = self.discharged_on
        if out is None:
            return None
        if any(day > out for day in self.contacts()) or (
            self.transferred_in_on is not None and self.transferred_in_on > out
        ):
            return None
        return out


def breastfeeding_stopped_on(f: InfantFacts) -> date | None:
    """The day breastfeeding stopped for good, or None while it continues (or nothing is known:
    the programmes assume breastfeeding, as most mothers in them breastfeed). Replacement feeding
    counts as stopped; a later breastfeeding record resumes it. The mother's death ends it."""
    stopped: date | None = None
    for fact in sorted(f.feeding, key=lambda x: (x.on, x.method.value)):
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
    #: a negative final test while breastfeeding is not known to have ended (WHO 2021: the final
    #: diagnosis needs the end of breastfeeding): neither uninfected nor unknown
    pending_feeding_status: bool = False
    #: a first positive NAT awaits confirmation (ART is needed meanwhile)
    positive_unconfirmed_on: date | None = None


_AT_ONCE = frozenset(
    {
        ScheduleKind.confirmatory_nat,
        ScheduleKind.repeat_test,
        ScheduleKind.entry_nat,
        ScheduleKind.nat_after_antibody,
    }
)


def _meets(slot: Slot, r: TestFact) -> bool:
    """Can this sample meet this at-once need? A NAT meets every NAT need; a repeat of an antibody
    test is met by either test."""
    if slot.kind not in _AT_ONCE:
        return False
    return r.test is InfantTest.NAT or (slot.kind is ScheduleKind.repeat_test and slot.test is InfantTest.antibody)


def infant_plan(f: InfantFacts, rules: EidRules) -> InfantPlan:
    """Everything the infant needs given the facts so far (rules 1–9 of the module docstring)."""
    birth, start = f.birth_date, f.follow_up_from
    at_once = timedelta(days=rules.at_once_window_days)
    tolerance = timedelta(days=rules.early_tolerance_days)
    grace = rules.grace_days
    slots: list[Slot] = []
    #: the (date, seq) after which a sample meets each at-once slot (the trigger is not its own answer)
    after: dict[int, tuple[date, int]] = {}

    def add(slot: Slot, opened_after: tuple[date, int] | None = None) -> Slot:
        slots.append(slot)
        if opened_after is not None:
            after[id(slot)] = opened_after
        return slot

    bf_stop = breastfeeding_stopped_on(f)
    provisional_final = max(add_months(birth, rules.final_test_min_age_months), start)
    final_start = provisional_final
    if bf_stop is not None:
        final_start = max(final_start, rules.final_test_after_breastfeeding.after(bf_stop))
    final_end = final_start + timedelta(days=rules.final_test_window_days)

    points = [
        (p, p.window_from.after(birth), p.window_to.after(birth))
        for p in rules.test_points
        if f.high_risk or not p.only_high_risk
    ]
    kept = [(p, b, e) for p, b, e in points if e >= start and b < final_start]
    if start > birth:
        next_begin = min([b for _, b, _ in kept] + [final_start])
        if next_begin - start > at_once:
            add(
                Slot(ScheduleKind.entry_nat, InfantTest.NAT, start, start + at_once, grace, routine=False),
                (start - tolerance, -1),
            )
    for p, b, e in kept:
        add(Slot(p.kind, p.test, b, e, grace, label=p.label))
    final = add(Slot(ScheduleKind.final_test, InfantTest.antibody, final_start, final_end, grace))
    feeding: Slot | None = None
    if rules.ask_feeding_status:
        feeding = Slot(
            ScheduleKind.record_feeding_status,
            None,
            provisional_final,
            provisional_final + timedelta(days=rules.final_test_window_days),
            grace,
            routine=False,
        )
        recorded = [x.on for x in f.feeding if x.on >= provisional_final - tolerance]
        if recorded:
            feeding.satisfied_on = min(recorded)
        elif bf_stop is not None:
            feeding.cancel_reason = "feeding_status_known"
        slots.append(feeding)

    if rules.ask_prophylaxis:
        regimen = prophylaxis_for(f.high_risk, rules)
        named = {step.drug for step in regimen}
        for n, step in enumerate(regimen):
            planned = birth + timedelta(weeks=step.from_week)
            over = planned + timedelta(weeks=step.duration_weeks)
            if over <= start:
                continue  # a step that would be over by the time she entered follow-up
            begins = max(planned, start)
            #: until the next step begins (or this one is over): the time a substitute counts for it
            until = birth + timedelta(weeks=regimen[n + 1].from_week) if n + 1 < len(regimen) else over
            slot = add(
                Slot(
                    ScheduleKind.infant_prophylaxis,
                    None,
                    begins,
                    begins + timedelta(days=rules.prophylaxis_within_days),
                    grace,
                    routine=False,
                    label=f"Prophylaxis: {step.drug.value} from week {step.from_week}",
                )
            )
            given = [g.started_on for g in f.prophylaxis if g.drug is step.drug and g.started_on >= begins - tolerance]
            if not given:
                # a drug the preset's regimen does not name at all, started while this step was due:
                # the clinician's substitute (WHO 2025 names alternatives where a drug is not
                # available); the step was given, as recorded, and is not asked for again
                given = [
                    g.started_on
                    for g in f.prophylaxis
                    if g.drug not in named and begins - tolerance <= g.started_on < max(until, begins + tolerance)
                ]
            if given:
                slot.satisfied_on = min(given)

    if rules.ask_cotrimoxazole:
        # WHO 2021 (cotrimoxazole prophylaxis): every HIV-exposed infant from 4–6 weeks of age until
        # HIV is excluded; the start is the item (one record meets it), what ends it is the outcome
        begins = max(rules.cotrimoxazole_from.after(birth), start)
        ctx = add(
            Slot(
                ScheduleKind.infant_cotrimoxazole,
                None,
                begins,
                begins + timedelta(days=rules.cotrimoxazole_within_days),
                grace,
                routine=False,
            )
        )
        started = [d for d in f.cotrimoxazole if d >= start - tolerance]
        if started:
            ctx.satisfied_on = min(started)

    if rules.ask_hei_visits:
        # the HEI clinic visits of the preset: a contact (a visit, a sample, a record of care) meets
        # the latest visit whose window has opened (with the early tolerance); visits it passes
        # were missed and are superseded: she is in care, nobody is sent after an old visit
        visits: list[Slot] = []
        window = timedelta(days=rules.visit_window_days)
        for v in rules.hei_visits:
            due = v.at.after(birth)
            if due + window < start:
                continue
            visits.append(
                add(Slot(ScheduleKind.hei_visit, None, due, due + window, grace, routine=False, label=v.label))
            )
        for day in f.contacts():
            reached = [s for s in visits if s.open and s.window_start - tolerance <= day]
            if not reached:
                continue
            chosen = max(reached, key=lambda s: s.window_start)
            chosen.satisfied_on = day
            for s in reached:
                if s is not chosen:
                    s.cancel_reason = "superseded"

    def at_once_slot(kind: ScheduleKind, test: InfantTest | None, r: TestFact) -> Slot | None:
        if any(s.kind is kind and s.open for s in slots):
            return None
        same_day = next((s for s in slots if s.kind is kind and s.window_start == r.sampled_on), None)
        if same_day is not None:  # another sample of that day calls for it again: one need, after both
            same_day.satisfied_on = None
            after[id(same_day)] = (r.sampled_on, r.seq)
            return same_day
        reported = max(r.sampled_on, r.reported_on or r.sampled_on)
        # keyed by the trigger's sample date (unique per open need), timed from the day it was reported
        return add(Slot(kind, test, r.sampled_on, reported + at_once, grace, routine=False), (r.sampled_on, r.seq))

    infected_on: date | None = None
    positive: TestFact | None = None  # the first positive diagnostic result, unresolved
    art: Slot | None = None
    discordant = False
    final_negative_on: date | None = None
    #: (from, to) of each period a positive was being resolved: routine NATs in it are moot
    resolving: list[tuple[date, date | None]] = []

    for r in sorted(f.results, key=lambda x: (x.sampled_on, x.seq)):
        if infected_on is not None:
            break
        order = (r.sampled_on, r.seq)
        diagnostic = is_diagnostic(birth, r, rules)
        for s in slots:
            if s.open and id(s) in after and after[id(s)] < order and _meets(s, r):
                s.satisfied_on = r.sampled_on
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
            if not diagnostic:
                at_once_slot(ScheduleKind.nat_after_antibody, InfantTest.NAT, r)
            elif positive is not None:
                infected_on = r.sampled_on
            else:
                positive, discordant = r, False
                resolving.append((r.sampled_on, None))
                at_once_slot(ScheduleKind.confirmatory_nat, InfantTest.NAT, r)
                if art is not None and not art.open and art.window_start == r.sampled_on:
                    art.cancel_reason = None  # positive again the same day: the same need
                elif art is None or not art.open:
                    reported = max(r.sampled_on, r.reported_on or r.sampled_on)
                    art = Slot(ScheduleKind.infant_art_start, None, r.sampled_on, reported + at_once, grace, False)
                    slots.append(art)
        elif r.result is TestResult.indeterminate:
            at_once_slot(ScheduleKind.repeat_test, r.test, r)
        elif positive is not None and diagnostic:
            if discordant:
                positive, discordant = None, False
                resolving[-1] = (resolving[-1][0], r.sampled_on)
                if art is not None and art.open:
                    art.cancel_reason = "positive_not_confirmed"
            else:
                discordant = True
                at_once_slot(ScheduleKind.repeat_test, InfantTest.NAT, r)

    uninfected_on: date | None = None
    pending_feeding = False
    if infected_on is not None:
        for s in slots:
            if s is not art and s.open:
                s.cancel_reason = "infected"
    else:
        for s in slots:
            if s.routine and s.open and s is not final:
                if any(s.window_end >= p and (c is None or s.window_start <= c) for p, c in resolving):
                    s.cancel_reason = "positive_result"
        if positive is not None:
            for maybe in (final, feeding, *(s for s in slots if s.kind is ScheduleKind.infant_prophylaxis)):
                if maybe is not None and maybe.open:
                    maybe.cancel_reason = "positive_result"
        elif final_negative_on is not None:
            if bf_stop is not None:
                uninfected_on = final_negative_on
                cancel_open(slots, "follow_up_complete")
            else:
                pending_feeding = True
    if art is not None and f.art_started_on is not None and art.cancel_reason in (None, "positive_not_confirmed"):
        art.cancel_reason = None
        art.satisfied_on = max(f.art_started_on, art.window_start)

    if f.died_on is not None:
        cancel_open(slots, "died")
    if f.transferred_away_on is not None:
        cancel_open(slots, TRANSFERRED_OUT)
    if f.discharged_away_on is not None:
        cancel_open(slots, "discharged")
    art_needed = art is not None and art.open
    return InfantPlan(
        frozen(slots),
        infected_on,
        uninfected_on,
        art_needed,
        bf_stop,
        pending_feeding,
        positive.sampled_on if positive is not None and infected_on is None else None,
    )


#: an outcome the facts establish, most informative first (PEPFAR MER PMTCT_FO: "died" is "died
#: without status known", so a known status outranks a death; a transfer out is "status unknown")
CLINICAL_OUTCOMES = (
    FinalOutcome.infected,
    FinalOutcome.uninfected,
    FinalOutcome.died,
    FinalOutcome.discharged,
    FinalOutcome.transferred_out,
)


def final_outcome(f: InfantFacts, plan: InfantPlan) -> tuple[FinalOutcome, date] | None:
    """The clinical outcome the facts establish now (WHO 2021 final diagnosis: infected; uninfected
    = a negative final test after breastfeeding ended; else died; else discharged by the facility,
    while she was not seen after it; else transferred out, while no transfer in followed), None if
    none yet. It is revised when the facts change: a child traced at
    25 months and found infected is infected, whatever the age snapshot said."""
    found = {
        FinalOutcome.infected: plan.infected_on,
        FinalOutcome.uninfected: plan.uninfected_on,
        FinalOutcome.died: f.died_on,
        FinalOutcome.discharged: f.discharged_away_on,
        FinalOutcome.transferred_out: f.transferred_away_on,
    }
    for outcome in CLINICAL_OUTCOMES:
        on = found[outcome]
        if on is not None:
            return outcome, on
    return None


def outcome_deadline(birth_date: date, rules: EidRules) -> date:
    """The age of the PMTCT_FO snapshot: an infant with no clinical outcome by then is reported LTFU
    (when lost at that moment) or unknown; nothing in follow-up is closed by it."""
    return add_months(birth_date, rules.final_outcome_by_months)


def deadline_outcome(lost: bool) -> FinalOutcome:
    return FinalOutcome.lost_to_follow_up if lost else FinalOutcome.unknown
