"""The two aggregates of follow-up: an infant case (an HEI from entry to final outcome) and a
mother case (her viral-load follow-up). Pure: the repository loads and saves them, the use cases
feed them facts (`recompute`) and time (`tick`), and the cases raise the events that follow
(`announce`, `conclude`, `follow_up_started`; built by `announcements.py`), which the unit of work
writes to the outbox as it commits.

Each case is always changed under its database row lock, so what `tick` announces is announced
once, and nothing is announced for an item the facts have already satisfied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from uuid import UUID

from pmtct_events.enrolment import HivStatus, HivTestResult
from pmtct_events.followup import (
    DischargeReason,
    FeedingMethod,
    FinalOutcome,
    HighRiskReason,
    InfantArtInitiated,
    InfantCotrimoxazoleRecorded,
    InfantFeedingRecorded,
    InfantProphylaxisRecorded,
    InfantTest,
    InfantTestResulted,
    InfantVisitRecorded,
    ProphylaxisDrug,
    ProphylaxisPlan,
    ResumedBecause,
    SubjectType,
    TestResult,
    WithdrawalReason,
)
from servicekit.clock import Clock
from servicekit.uow import Aggregate

from . import announcements
from .eid_schedule import (
    CLINICAL_OUTCOMES,
    EidRules,
    FeedingFact,
    InfantFacts,
    InfantPlan,
    ProphylaxisFact,
    TestFact,
    add_months,
    breastfeeding_stopped_on,
    deadline_outcome,
    final_outcome,
    infant_plan,
    outcome_deadline,
    prophylaxis_for,
)
from .mother_schedule import MotherFacts, MotherRules, mother_plan
from .schedule import (
    ENTERED_IN_ERROR,
    Attendance,
    Item,
    Status,
    Transition,
    check_lost,
    due_snapshot,
    next_wakeup,
    overdue_snapshot,
    reconcile,
    restate,
    tick,
    unneeded_items,
    voided_items,
    withdrawn_items,
)

#: an infant event that is not in the catalog: EMRs post it, follow-up turns it into a final outcome
INFANT_OUTCOME_RECORDED = "InfantOutcomeRecorded"


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An infant event an EMR posted and follow-up accepted: the infant's history."""

    type: str
    on: date
    reported_on: date
    data: Mapping[str, Any]
    #: the EMR's event_id (what a void names)
    event_id: UUID | None = None


def with_events(facts: InfantFacts, events: Sequence[RecordedEvent]) -> InfantFacts:
    """The infant facts a history establishes (results, feeding, ART start, death, transfers).
    Order-free: the same events in any order give the same facts (results sampled the same day
    are told apart by their content, not by when they arrived)."""
    results: list[TestFact] = []
    feeding: list[FeedingFact] = []
    given: list[ProphylaxisFact] = []
    firsts: dict[str, date] = {}
    lasts: dict[str, date] = {}
    visits: set[date] = set()
    cotrimoxazole: set[date] = set()
    discharges: list[tuple[date, str]] = []
    for e in events:
        if e.type == InfantTestResulted.event_name:
            results.append(
                TestFact(
                    e.on,
                    InfantTest(e.data["test"]),
                    TestResult(e.data["result"]),
                    bool(e.data.get("confirmatory")),
                    e.reported_on,
                )
            )
        elif e.type == InfantFeedingRecorded.event_name:
            feeding.append(FeedingFact(e.on, FeedingMethod(e.data["method"])))
        elif e.type == InfantProphylaxisRecorded.event_name:
            started = e.data.get("started_on")
            given.append(
                ProphylaxisFact(date.fromisoformat(started) if started else e.on, ProphylaxisDrug(e.data["drug"]))
            )
        elif e.type == InfantArtInitiated.event_name:
            firsts["art"] = min(firsts.get("art", e.on), e.on)
            # every ART record is a day the child was seen at the clinic, not only the first: a
            # second record (a restart, or the first posted late) is a contact of its own
            visits.add(e.on)
        elif e.type == InfantVisitRecorded.event_name:
            visits.add(e.on)
        elif e.type == InfantCotrimoxazoleRecorded.event_name:
            started = e.data.get("started_on")
            cotrimoxazole.add(date.fromisoformat(started) if started else e.on)
        elif e.type == INFANT_OUTCOME_RECORDED:
            outcome = e.data["outcome"]
            firsts[outcome] = min(firsts.get(outcome, e.on), e.on)
            lasts[outcome] = max(lasts.get(outcome, e.on), e.on)
            if outcome == FinalOutcome.discharged.value:
                discharges.append((e.on, e.data.get("reason") or DischargeReason.other.value))
    # same-day results in a canonical order: a confirmatory after the first, then by test and result
    ordered = sorted(
        results,
        key=lambda r: (
            r.sampled_on,
            r.confirmatory,
            r.test.value,
            _RESULT_ORDER[r.result],
            r.reported_on or r.sampled_on,
        ),
    )
    return replace(
        facts,
        results=tuple(replace(r, seq=i) for i, r in enumerate(ordered)),
        feeding=tuple(sorted(feeding, key=lambda x: (x.on, x.method.value))),
        prophylaxis=tuple(sorted(given, key=lambda x: (x.started_on, x.drug.value))),
        art_started_on=firsts.get("art"),
        died_on=firsts.get("died"),
        transferred_out_on=lasts.get("transferred_out"),
        transferred_in_on=lasts.get("transferred_in"),
        visits=tuple(sorted(visits)),
        cotrimoxazole=tuple(sorted(cotrimoxazole)),
        discharged_on=max(discharges)[0] if discharges else None,
        discharge_reason=DischargeReason(max(discharges)[1]) if discharges else None,
    )


#: same-day results: a positive is read before a negative of the same kind (a positive and a
#: negative NAT of one day are a discordant pair whichever was posted first)
_RESULT_ORDER = {TestResult.positive: 0, TestResult.indeterminate: 1, TestResult.negative: 2}


def kept_items(items: list[Item], dropped: set[UUID], new: list[Item]) -> list[Item]:
    """A case's items become `new` (`reconcile`, `restate`): the ids of the items it left out are
    added to `dropped` (the repository deletes them as it writes the case), those it has taken
    out of it (an item planned again in the same unit). Returns `new`."""
    ids = {i.item_id for i in new}
    dropped |= {i.item_id for i in items} - ids
    dropped -= ids
    return new


@dataclass(slots=True)
class Withdrawals:
    """What later facts showed was never needed, found as the case changes (`seen`, `recompute`)
    and raised as AnnouncementWithdrawn by `withdraw`, where the caller has the clock. Not stored."""

    #: (item, the overdue day it was announced for)
    items: list[tuple[Item, date]] = field(default_factory=list)
    #: (the lost day withdrawn, the day of the contact that shows she was not lost)
    lost: tuple[date, date] | None = None
    #: corrections: (item, the overdue day it was announced for, the day of the void) of items the
    #: voided facts had called for; and (the lost day, the day of the void) of a loss they had made
    in_error: list[tuple[Item, date, date]] = field(default_factory=list)
    lost_in_error: tuple[date, date] | None = None
    #: corrections: (item, the window's first day it was announced due for, the day of the void) of
    #: items the voided facts had called for and that had been announced due (or overdue since)
    due_in_error: list[tuple[Item, date, date]] = field(default_factory=list)
    #: (item, the day it was announced for, whether the due announcement) of open items the facts
    #: no longer call for (`schedule.unneeded_items`)
    unneeded: list[tuple[Item, date, bool]] = field(default_factory=list)

    def raise_for(
        self,
        case: Aggregate,
        subject_type: SubjectType,
        subject_id: UUID,
        client_id: UUID,
        facility_id: str,
        clock: Clock,
    ) -> None:
        now = clock.now()
        subject = (subject_type, subject_id, client_id, facility_id)
        met, in_error = WithdrawalReason.met_before_overdue, WithdrawalReason.entered_in_error
        for item, overdue_on in self.items:
            case.raise_event(
                *announcements.item_withdrawn(
                    *subject, item, now, reason=met, announced_for=overdue_on, met_on=item.satisfied_on
                )
            )
        today = clock.today()
        for item, announced_for, due in self.unneeded:
            case.raise_event(
                *announcements.item_withdrawn(
                    *subject,
                    item,
                    now,
                    reason=WithdrawalReason.no_longer_required,
                    announced_for=announced_for,
                    met_on=today,
                    due=due,
                )
            )
        if self.lost is not None:
            case.raise_event(announcements.loss_withdrawn(*subject, *self.lost, now))
        for item, overdue_on, voided_on in self.in_error:
            case.raise_event(
                *announcements.item_withdrawn(
                    *subject, item, now, reason=in_error, announced_for=overdue_on, met_on=voided_on
                )
            )
        for item, due_on, voided_on in self.due_in_error:
            case.raise_event(
                *announcements.item_withdrawn(
                    *subject, item, now, reason=in_error, announced_for=due_on, met_on=voided_on, due=True
                )
            )
        if self.lost_in_error is not None:
            lost_on, voided_on = self.lost_in_error
            case.raise_event(
                announcements.loss_withdrawn(
                    subject_type, subject_id, client_id, facility_id, lost_on, voided_on, now, in_error=True
                )
            )
        self.items, self.lost, self.in_error, self.lost_in_error = [], None, [], None
        self.due_in_error, self.unneeded = [], []


@dataclass(slots=True)
class TickReport:
    transitions: list[tuple[Item, Transition]] = field(default_factory=list)
    #: the day a lost-to-follow-up episode began, when one began now
    lost_on: date | None = None
    #: a final outcome decided by the deadline rule
    outcome: tuple[FinalOutcome, date] | None = None


@dataclass(slots=True)
class InfantCase(Aggregate):
    """A live-born infant of a mother the platform follows. It is in follow-up (an HEI) from birth
    when the mother was positive at delivery, or from her diagnosis while breastfeeding."""

    infant_id: UUID
    client_id: UUID
    facility_id: str
    facts: InfantFacts
    in_follow_up: bool = True
    high_risk_reasons: list[HighRiskReason] = field(default_factory=list)
    prophylaxis: list[ProphylaxisPlan] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    attendance: Attendance = field(default_factory=Attendance)
    final_outcome: FinalOutcome | None = None
    final_outcome_on: date | None = None
    events: list[RecordedEvent] = field(default_factory=list)
    plan: InfantPlan | None = None
    #: set by `recompute` when an ended follow-up is resumed (raised by `conclude`)
    resumed: ResumedBecause | None = None
    withdrawals: Withdrawals = field(default_factory=Withdrawals, compare=False)
    #: the DeliveryRecorded (CloudEvent id) that registered it (None: registered before corrections)
    delivery_event_id: UUID | None = None
    #: its delivery was voided: it was never born on the platform (`end`); its events are refused
    voided: bool = False
    #: the day of a void being applied (`corrections`): what the recompute no longer plans, and
    #: had announced, is withdrawn `entered_in_error`
    correcting: date | None = field(default=None, compare=False)
    #: ids of stored items its plan no longer calls for and nothing announced (deleted on save)
    dropped: set[UUID] = field(default_factory=set, compare=False)

    def seen(self, on: date) -> None:
        """A contact on `on` (`Attendance.seen`): a loss it shows was never real is to be withdrawn."""
        lost = self.attendance.seen(on)
        if lost is not None:
            self.withdrawals.lost = (lost, on)

    def withdraw(self, clock: Clock) -> None:
        """Raise AnnouncementWithdrawn for what the facts applied since showed was not needed."""
        self.withdrawals.raise_for(self, SubjectType.infant, self.infant_id, self.client_id, self.facility_id, clock)

    def follow_up_started(self, occurred_at: Any) -> None:
        """Raise InfantFollowUpStarted (after `start_follow_up`), with its plan as it now stands."""
        self.raise_event(announcements.follow_up_started(self, occurred_at))

    def conclude(self, decided: tuple[FinalOutcome, date] | None, clock: Clock) -> None:
        """Raise what `recompute` or `start_follow_up` just decided: her follow-up resumed after it
        had ended (InfantFollowUpResumed), and the final outcome, if any."""
        if self.resumed is not None:
            self.raise_event(announcements.resumed_event(self, self.resumed, clock))
            self.resumed = None
        if decided is not None:
            self.raise_event(announcements.outcome_event(self, *decided, clock))

    def announce(self, report: TickReport, clock: Clock) -> None:
        """Raise what a `tick` found: tests due or overdue, lost to follow-up, a deadline outcome."""
        self.raise_event(*announcements.infant_announcements(self, report, clock))

    def record(self, event: RecordedEvent) -> None:
        self.events.append(event)
        self.facts = with_events(self.facts, self.events)
        self.seen(event.on)

    def take_back(self, event_id: UUID, on: date) -> list[RecordedEvent]:
        """An event of hers voided on `on` (InfantEventVoided): her facts without it; the next
        recompute withdraws, `entered_in_error`, what it no longer plans and had announced. Returns
        what was taken out (`put_back` undoes it)."""
        removed = [e for e in self.events if e.event_id == event_id]
        self.events = [e for e in self.events if e.event_id != event_id]
        self.facts = with_events(self.facts, self.events)
        self.correcting = on
        return removed

    def put_back(self, removed: Sequence[RecordedEvent]) -> None:
        self.events = [*self.events, *removed]
        self.facts = with_events(self.facts, self.events)
        self.correcting = None

    def start_follow_up(
        self, start: date, reasons: list[HighRiskReason], rules: EidRules
    ) -> tuple[FinalOutcome, date] | None:
        """The infant becomes an HEI from `start` (its birth, or its mother's diagnosis)."""
        self.in_follow_up = True
        self.high_risk_reasons = list(reasons)
        self.prophylaxis = prophylaxis_for(bool(reasons), rules)
        self.facts = replace(self.facts, high_risk=bool(reasons), follow_up_from=start)
        self.seen(start)
        return self.recompute(rules)

    def revise_risk(self, reasons: list[HighRiskReason], rules: EidRules) -> None:
        """Her mother's facts, as they now stand, make the infant high risk or not (its regimen and
        test points follow: `recompute`)."""
        self.high_risk_reasons = list(reasons)
        self.prophylaxis = prophylaxis_for(bool(reasons), rules)
        self.facts = replace(self.facts, high_risk=bool(reasons))

    def recompute(self, rules: EidRules) -> tuple[FinalOutcome, date] | None:
        """Apply the facts to the schedule; returns the clinical outcome when the facts just
        established or revised it (a later fact revises an earlier outcome or the age snapshot)."""
        if not self.in_follow_up:
            return None
        plan = self._replan(rules)
        decided = final_outcome(self.facts, plan)
        if decided is None and self.final_outcome in CLINICAL_OUTCOMES:
            # a transfer in after the transfer out, or a contact after a discharge: she is in care
            # again, with no outcome yet; the consumers hear it (InfantFollowUpResumed: referrals
            # follow her again at the facility that has her; the age snapshot may be next)
            self.resumed = (
                ResumedBecause.entered_in_error
                if self.correcting is not None
                else ResumedBecause.seen_after_discharge
                if self.final_outcome is FinalOutcome.discharged
                else ResumedBecause.transferred_in
            )
            self.final_outcome = self.final_outcome_on = None
        if decided is not None and decided != (self.final_outcome, self.final_outcome_on):
            self.final_outcome, self.final_outcome_on = decided
            return decided
        return None

    def _replan(self, rules: EidRules) -> InfantPlan:
        self.plan = infant_plan(self.facts, rules)
        announced, due = overdue_snapshot(self.items), due_snapshot(self.items)
        self.items = kept_items(self.items, self.dropped, reconcile(self.infant_id, self.items, self.plan.requirements))
        self.withdrawals.items += [(i, on) for i, on in withdrawn_items(announced, self.items) if i.test is not None]
        self.withdrawals.unneeded += unneeded_items(due, announced, self.items)
        if self.correcting is not None:
            self.withdrawals.in_error += [(i, on, self.correcting) for i, on in voided_items(announced, self.items)]
            self.withdrawals.due_in_error += [(i, on, self.correcting) for i, on in voided_items(due, self.items)]
        return self.plan

    def end(self, on: date, *, voided: bool) -> None:
        """Her follow-up ends because the facts it stood on were voided on `on` (a correction): her
        mother's positive status was entered in error (`voided` False: she is not HIV-exposed after
        all), or the delivery that registered her was (`voided`: she was never born on the
        platform). No schedule, no final outcome: her open items are cancelled `entered_in_error`
        and what had been announced of them (due, overdue, a loss) is withdrawn with that reason."""
        announced, due = overdue_snapshot(self.items), due_snapshot(self.items)
        for item in self.items:
            if item.open:
                item.status, item.cancel_reason, item.changed = Status.cancelled, ENTERED_IN_ERROR, True
        self.withdrawals.in_error += [(i, announced[i.item_id], on) for i in self.items if i.item_id in announced]
        self.withdrawals.due_in_error += [(i, due[i.item_id], on) for i in self.items if i.item_id in due]
        if self.attendance.lost_since is not None:
            self.withdrawals.lost_in_error = (self.attendance.lost_since, on)
            self.attendance.lost_since = self.attendance.lost_last_seen_on = None
        self.in_follow_up, self.voided = False, voided
        self.high_risk_reasons, self.prophylaxis, self.plan, self.resumed = [], [], None, None
        self.final_outcome = self.final_outcome_on = None
        self.facts = replace(self.facts, high_risk=False)

    def deadline(self, rules: EidRules) -> date | None:
        """The day of the age snapshot (PMTCT_FO), while no outcome was recorded."""
        if not self.in_follow_up or self.final_outcome is not None:
            return None
        return outcome_deadline(self.facts.birth_date, rules)

    def tick(self, today: date, rules: EidRules, silence_days: int) -> TickReport:
        """Time passes: items fall due or overdue, a silence becomes a loss to follow-up, and at the
        age snapshot an infant with no clinical outcome is reported LTFU or unknown. Nothing is
        cancelled by time: the child still needs what she needed (build rule 1 of issue 13)."""
        report = TickReport(transitions=tick(self.items, today))
        report.lost_on = check_lost(self.items, self.attendance, silence_days, today)
        due_by = self.deadline(rules)
        if due_by is not None and today >= due_by:
            report.outcome = (deadline_outcome(self.attendance.lost_since is not None), due_by)
            self.final_outcome, self.final_outcome_on = report.outcome
        return report

    def next_wakeup(self, rules: EidRules, silence_days: int) -> date | None:
        return next_wakeup(self.items, self.attendance, silence_days, self.deadline(rules))


#: two records of hers whose expected delivery dates are this close are one pregnancy: dating by LMP
#: or ultrasound is off by up to about two weeks each way (enrolment's PREGNANCY_DATING_TOLERANCE_DAYS)
SAME_PREGNANCY_EDD_DAYS = 28


def _same_pregnancy(earlier: Pregnancy, later: Pregnancy) -> bool:
    if earlier.lost_on is not None and earlier.lost_on <= later.seen_from:
        return False
    if earlier.edd is None or later.edd is None:
        return False
    return abs((later.edd - earlier.edd).days) <= SAME_PREGNANCY_EDD_DAYS


@dataclass(slots=True)
class Pregnancy:
    """One pregnancy of hers as follow-up knows it, from the events of its episode (enrolment names
    the episode on each event): first seen, expected date (from the earliest-dated event giving
    one), and the day it was lost, if it was."""

    seen_from: date
    edd: date | None = None
    edd_from: date | None = None
    lost_on: date | None = None

    def saw(self, day: date, edd: date | None) -> None:
        self.seen_from = min(self.seen_from, day)
        if edd is not None and (self.edd_from is None or (day, edd) < (self.edd_from, self.edd or edd)):
            self.edd, self.edd_from = edd, day

    def as_json(self) -> dict[str, str | None]:
        return {
            "seen_from": self.seen_from.isoformat(),
            "edd": self.edd.isoformat() if self.edd else None,
            "edd_from": self.edd_from.isoformat() if self.edd_from else None,
            "lost_on": self.lost_on.isoformat() if self.lost_on else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pregnancy:
        def day(key: str) -> date | None:
            return date.fromisoformat(data[key]) if data.get(key) else None

        seen = day("seen_from")
        assert seen is not None
        return cls(seen, day("edd"), day("edd_from"), day("lost_on"))


@dataclass(slots=True)
class MotherCase(Aggregate):
    """What follow-up knows of a mother (a projection of the enrolment events) and her follow-up:
    HIV retesting while she is not known positive, ART start and viral loads once she is
    (`mother_schedule`). Each field is kept so that the same facts in any order give the same
    case (earliest days, sets of results), so her plan does not depend on arrival order."""

    client_id: UUID
    facility_id: str
    hiv_status: HivStatus = HivStatus.unknown
    positive_since: date | None = None
    #: the day the platform first had word she was positive (her ART start is due from then)
    positive_seen_on: date | None = None
    art_start_date: date | None = None
    #: the expected delivery date of her current pregnancy (kept for reads; `pregnancies` decides)
    edd: date | None = None
    delivered_on: date | None = None
    breastfeeding_until: date | None = None
    #: (date taken, copies/mL), in date order
    viral_loads: list[tuple[date, int]] = field(default_factory=list)
    #: (day, result) of her HIV tests, and a status known at enrolment as a test on its day; in order
    hiv_tests: list[tuple[date, HivTestResult]] = field(default_factory=list)
    #: her pregnancies by episode id ("" for events recorded before episodes were named)
    pregnancies: dict[str, Pregnancy] = field(default_factory=dict)
    died_on: date | None = None
    #: her latest enrolment (at `facility_id`), and a transfer out after it
    enrolled_on: date | None = None
    transferred_out_on: date | None = None
    items: list[Item] = field(default_factory=list)
    attendance: Attendance = field(default_factory=Attendance)
    withdrawals: Withdrawals = field(default_factory=Withdrawals, compare=False)
    #: her facts are a fold of the mother events follow-up keeps (False: kept before corrections
    #: existed, migration 0009; a void cannot take them back)
    facts_from_events: bool = field(default=True, compare=False)
    #: ids of stored items her plan no longer calls for and nothing announced (deleted on save)
    dropped: set[UUID] = field(default_factory=set, compare=False)

    def seen(self, on: date) -> None:
        """A contact on `on` (`Attendance.seen`): a loss it shows was never real is to be withdrawn."""
        lost = self.attendance.seen(on)
        if lost is not None:
            self.withdrawals.lost = (lost, on)

    def withdraw(self, clock: Clock) -> None:
        """Raise AnnouncementWithdrawn for what the facts applied since showed was not needed."""
        self.withdrawals.raise_for(self, SubjectType.client, self.client_id, self.client_id, self.facility_id, clock)

    def take_facts(self, other: MotherCase) -> None:
        """Her facts become `other`'s (a fold of the events that stand, `corrections.replay`); her
        items, her loss to follow-up and what is to be withdrawn stay hers. Her open items move
        with her if the facts now place her at another facility."""
        if other.facility_id != self.facility_id:
            move_items(self.items)
        for name in MOTHER_FACT_FIELDS:
            setattr(self, name, getattr(other, name))
        self.attendance.last_seen_on = other.attendance.last_seen_on

    def current_pregnancy(self) -> Pregnancy | None:
        """Her latest pregnancy, with the earlier records of the same pregnancy merged into it.

        Records are kept by the episode id enrolment named on each event, and enrolment names an
        episode by the events it had when each arrived: a transfer-in enrolment posted before her
        first enrolment names an episode of its own. Two records whose expected dates agree within
        `SAME_PREGNANCY_EDD_DAYS`, with no loss between them, are one pregnancy, first seen when the
        earlier was: so her plan is dated by the facts, whatever order they came in."""
        found = sorted(self.pregnancies.values(), key=lambda p: (p.seen_from, p.edd or date.min))
        if not found:
            return None
        latest = found[-1]
        merged = Pregnancy(latest.seen_from, latest.edd, latest.edd_from, latest.lost_on)
        for earlier in reversed(found[:-1]):
            if not _same_pregnancy(earlier, merged):
                break
            merged.seen_from = min(merged.seen_from, earlier.seen_from)
            if earlier.edd is not None:
                merged.saw(earlier.edd_from or earlier.seen_from, earlier.edd)
            if earlier.lost_on is not None:
                merged.lost_on = min(merged.lost_on or earlier.lost_on, earlier.lost_on)
        return merged

    def facts(self) -> MotherFacts:
        current = self.current_pregnancy()
        return MotherFacts(
            positive_since=self.positive_since,
            positive_seen_on=self.positive_seen_on,
            art_start_date=self.art_start_date,
            pregnancy_from=current.seen_from if current else None,
            edd=current.edd if current else self.edd,
            pregnancy_lost_on=current.lost_on if current else None,
            delivered_on=self.delivered_on,
            breastfeeding_until=self.breastfeeding_until,
            hiv_tests=tuple(self.hiv_tests),
            viral_loads=tuple(self.viral_loads),
            died_on=self.died_on,
            transferred_out_on=self.transferred_out_on,
        )

    def latest_viral_load(self, on_or_before: date) -> tuple[date, int] | None:
        earlier = [vl for vl in self.viral_loads if vl[0] <= on_or_before]
        return max(earlier) if earlier else None

    def seroconverted_on(self) -> date | None:
        """An incident infection: her first positive test, when a negative test came before it (in
        pregnancy or breastfeeding, it makes her infant high risk: WHO 2025 updated recommendations
        on HIV clinical management). Plain data for the infant rules."""
        positive = min((on for on, r in self.hiv_tests if r is HivTestResult.positive), default=None)
        if positive is None or not any(on < positive for on, r in self.hiv_tests if r is HivTestResult.negative):
            return None
        return positive

    def last_negative_before(self, day: date | None) -> date | None:
        """Her last negative HIV test before `day` (her diagnosis): with a positive after it, an
        incident infection (the infant rules' `MotherAtDelivery.last_negative_test_on`)."""
        if day is None:
            return None
        return max((on for on, r in self.hiv_tests if r is HivTestResult.negative and on < day), default=None)

    def recompute(self, rules: MotherRules) -> None:
        current = self.current_pregnancy()
        if current is not None and current.edd is not None:
            self.edd = current.edd
        announced, due = overdue_snapshot(self.items), due_snapshot(self.items)
        self.items = kept_items(
            self.items, self.dropped, reconcile(self.client_id, self.items, mother_plan(self.facts(), rules))
        )
        self.withdrawals.items += withdrawn_items(announced, self.items)
        self.withdrawals.unneeded += unneeded_items(due, announced, self.items)

    def correct(self, folded: MotherCase, on: date) -> None:
        """A void on `on`: her facts and items become `folded`'s (her case replayed from the events
        that stand, `corrections.replay`: as if the voided one had never been posted). Her items
        keep how far time moved them where both are open (`schedule.restate`); an item a voided
        result had met is open again (announced again when its time comes); one only the voided
        facts called for is cancelled `entered_in_error`, its due and overdue withdrawn with that reason."""
        announced, due = overdue_snapshot(self.items), due_snapshot(self.items)
        self.take_facts(folded)
        self.items = restate(self.items, folded.items)
        self.withdrawals.items += withdrawn_items(announced, self.items)
        self.withdrawals.in_error += [(i, d, on) for i, d in voided_items(announced, self.items)]
        self.withdrawals.due_in_error += [(i, d, on) for i, d in voided_items(due, self.items)]

    def rebuild(self, folded: MotherCase) -> None:
        """A fact dated before facts applied to her arrived (a back-dated or out-of-order fact):
        her facts and items become `folded`'s (her case replayed from the events that stand in
        the order they happened, `corrections.replay`), so they depend on the facts, not on the
        order they came in. Her items keep how far time moved them where both are open
        (`schedule.restate`); one only an earlier view of the facts called for is dropped (noted in
        `dropped`), unless it was announced (it stays, cancelled `no_longer_required`). An
        announced overdue item the facts now say was met in time is withdrawn (`withdrawn_items`)."""
        before = overdue_snapshot(self.items)
        self.take_facts(folded)
        self.items = kept_items(self.items, self.dropped, restate(self.items, folded.items, rebuild=True))
        self.withdrawals.items += withdrawn_items(before, self.items)

    def announce(self, report: TickReport, clock: Clock) -> None:
        """Raise what a `tick` found: tests, viral loads and adherence support due or overdue, lost."""
        self.raise_event(*announcements.mother_announcements(self, report, clock))

    def tick(self, today: date, silence_days: int) -> TickReport:
        report = TickReport(transitions=tick(self.items, today))
        report.lost_on = check_lost(self.items, self.attendance, silence_days, today)
        return report

    def next_wakeup(self, silence_days: int) -> date | None:
        return next_wakeup(self.items, self.attendance, silence_days)


def move_items(items: Sequence[Item]) -> None:
    """Her (or her infant's) follow-up moved to another facility (an enrolment there, a transfer
    in): every item is written again at the facility that follows her now, met and cancelled ones
    too. The items are her record, read where she is followed (`queries`: a case is read by the
    facility that has it), so a met ANC1 test is at the facility of her latest enrolment whichever
    of her enrolments arrived first (issue 17, any order)."""
    for item in items:
        item.changed = True


#: the fields of a mother case that are facts (a fold of her events), as against her follow-up
MOTHER_FACT_FIELDS = (
    "facility_id",
    "hiv_status",
    "positive_since",
    "positive_seen_on",
    "art_start_date",
    "edd",
    "delivered_on",
    "viral_loads",
    "hiv_tests",
    "pregnancies",
    "died_on",
    "enrolled_on",
    "transferred_out_on",
)


def exposure_start(birth_date: date, mother: MotherCase, stopped_on: date | None, rules: EidRules) -> date | None:
    """When a live-born infant becomes an HIV-exposed infant (WHO): at birth if its mother was positive at or
    before delivery; at her diagnosis if she was diagnosed later while still breastfeeding it
    (breastfeeding assumed unless it is known to have stopped, up to `max_breastfeeding_months`)."""
    diagnosed = mother.positive_since
    if diagnosed is None:
        return None
    if diagnosed <= birth_date:
        return birth_date
    if stopped_on is not None and stopped_on <= diagnosed:
        return None
    if diagnosed > add_months(birth_date, rules.max_breastfeeding_months):
        return None
    return diagnosed


def breastfeeding_until(mother: MotherCase, infants: Sequence[InfantCase]) -> date | None:
    """The day the last infant of her latest delivery stopped breastfeeding (or died); None while
    one still breastfeeds. A delivery with no live-born infant means no breastfeeding at all."""
    if mother.delivered_on is None:
        return None
    latest = [i for i in infants if i.facts.birth_date == mother.delivered_on]
    if not latest:
        return mother.delivered_on
    ends: list[date] = []
    for infant in latest:
        known = [d for d in (breastfeeding_stopped_on(infant.facts), infant.facts.died_on) if d is not None]
        if not known:
            return None
        ends.append(min(known))
    return max(ends)
