"""Property tests: whatever facts arrive, in whatever order and however late, and however time
passes, the schedule stays sound.

The cases are driven exactly as the service drives them: a fact is recorded and the case
recomputed (the POST and the consumer), time is a tick (the durable timers). Time never goes back;
a fact arrives on or after the day it happened (EMRs post late, never early).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup.cases import INFANT_OUTCOME_RECORDED, InfantCase, MotherCase, RecordedEvent
from followup.eid_schedule import EidRules, InfantFacts, final_outcome, infant_plan
from followup.mother_schedule import MotherRules
from followup.schedule import Status, Transition
from followup.schedule import item_id as id_of
from pmtct_events.enrolment import HivStatus
from pmtct_events.followup import FinalOutcome, HighRiskReason, InfantTest

B = date(2030, 1, 1)
END = B + timedelta(days=1000)  # well past the 24-month outcome deadline
RULES = EidRules()
SILENCE = 90
ENDED = {Status.satisfied, Status.overdue, Status.cancelled}

days = st.integers(min_value=0, max_value=800)
result = st.fixed_dictionaries(
    {
        "test": st.sampled_from([t.value for t in InfantTest]),
        "result": st.sampled_from(["positive", "negative", "indeterminate"]),
        "confirmatory": st.booleans(),
    }
)
feeding = st.fixed_dictionaries(
    {
        "method": st.sampled_from(
            ["exclusive_breastfeeding", "replacement_feeding", "mixed_feeding", "breastfeeding_stopped"]
        )
    }
)
#: facts of a typical journey, so that examples also reach "uninfected" and "infected"
typical = st.sampled_from(
    [
        ("InfantTestResulted", 42, {"test": "NAT", "result": "negative", "confirmatory": False}),
        ("InfantTestResulted", 44, {"test": "NAT", "result": "positive", "confirmatory": False}),
        ("InfantTestResulted", 60, {"test": "NAT", "result": "positive", "confirmatory": True}),
        ("InfantTestResulted", 275, {"test": "NAT", "result": "negative", "confirmatory": False}),
        ("InfantFeedingRecorded", 300, {"method": "breastfeeding_stopped"}),
        ("InfantTestResulted", 550, {"test": "antibody", "result": "negative", "confirmatory": False}),
        ("InfantTestResulted", 600, {"test": "antibody", "result": "negative", "confirmatory": False}),
        ("InfantArtInitiated", 70, {}),
    ]
)
#: an infant event an EMR posts
fact = st.one_of(
    typical,
    st.tuples(st.just("InfantTestResulted"), days, result),
    st.tuples(st.just("InfantFeedingRecorded"), days, feeding),
    st.tuples(st.just("InfantArtInitiated"), days, st.just({})),
    st.tuples(st.just("InfantVisitRecorded"), days, st.just({})),
    st.tuples(
        st.just(INFANT_OUTCOME_RECORDED),
        days,
        st.fixed_dictionaries({"outcome": st.sampled_from(["died", "transferred_out"])}),
    ),
)
step = st.one_of(
    fact,
    st.tuples(st.just("mother_died"), days, st.just({})),
    st.tuples(st.just("tick"), days, st.just({})),
)


class Ledger:
    """Every announcement and final outcome a case produced, in order."""

    def __init__(self) -> None:
        self.announcements: list[tuple[object, Transition, Status]] = []
        self.outcomes: list[FinalOutcome] = []
        #: how often each item was planned again after a cancellation (a transfer in, a positive
        #: not confirmed): each such item may be announced once more
        self.reopened: Counter = Counter()

    def recompute(self, case: InfantCase) -> None:
        before = {i.item_id: i.status for i in case.items}
        decided = case.recompute(RULES)
        for i in case.items:
            if before.get(i.item_id) is Status.cancelled and i.status is Status.planned:
                self.reopened[i.item_id] += 1
        if decided is not None:
            self.outcomes.append(decided[0])

    def tick(self, case: InfantCase, today: date) -> None:
        before = {i.item_id: i.status for i in case.items}
        report = case.tick(today, RULES, SILENCE)
        for item, transition in report.transitions:
            self.announcements.append((item.item_id, transition, before[item.item_id]))
        if report.outcome is not None:
            self.outcomes.append(report.outcome[0])


def run_infant(high_risk: bool, entry_days: int, steps: list) -> tuple[InfantCase, Ledger]:
    start = B + timedelta(days=entry_days)
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", InfantFacts(birth_date=B, high_risk=high_risk, follow_up_from=B))
    ledger = Ledger()
    decided = case.start_follow_up(start, [HighRiskReason.no_viral_load] if high_risk else [], RULES)
    if decided:
        ledger.outcomes.append(decided[0])
    today = start
    for kind, offset, data in steps:
        on = B + timedelta(days=offset)
        if kind == "tick":
            today = max(today, on)
            ledger.tick(case, today)
            continue
        if case.facts.died_on is not None and on > case.facts.died_on:
            continue  # the POST rejects events after a recorded death
        today = max(today, on)
        if kind == "mother_died":
            case.facts = replace(case.facts, mother_died_on=on)
        else:
            case.record(RecordedEvent(kind, on, today, data))
        ledger.recompute(case)
    ledger.tick(case, END)
    return case, ledger


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    high_risk=st.booleans(), entry_days=st.one_of(st.just(0), st.integers(0, 700)), steps=st.lists(step, max_size=30)
)
def test_any_sequence_of_facts_ends_every_item_satisfied_overdue_or_cancelled_and_one_final_outcome(
    high_risk: bool, entry_days: int, steps: list
) -> None:
    case, ledger = run_infant(high_risk, entry_days, steps)

    ids = [i.item_id for i in case.items]
    assert len(ids) == len(set(ids)), "an item is stored once"
    assert case.plan is not None
    required = [id_of(case.infant_id, r.kind, r.window_start) for r in case.plan.requirements]
    assert len(required) == len(set(required)), "the rules require each item once (one need, one id)"
    assert all(i.status in ENDED for i in case.items), [(i.kind, i.status) for i in case.items]

    counts = Counter((item_id, t) for item_id, t, _ in ledger.announcements)
    assert all(n <= 1 + ledger.reopened[item_id] for (item_id, _), n in counts.items()), (
        "no item is announced due (or overdue) twice, unless the facts planned it again"
    )
    for item_id, transition, status_before in ledger.announcements:
        assert status_before in (Status.planned, Status.due), "nothing is announced for a satisfied or cancelled item"
        if transition is Transition.overdue:
            assert (item_id, Transition.due) in counts, "an overdue item was announced due first"

    assert ledger.outcomes, "an outcome by the end: a clinical one, or the age snapshot"
    assert case.final_outcome is ledger.outcomes[-1], "the outcome recorded is the last one announced"
    clinical = final_outcome(case.facts, infant_plan(case.facts, RULES))
    if clinical is not None:
        assert (case.final_outcome, case.final_outcome_on) == clinical, "a clinical fact revises the outcome"


vl_steps = st.lists(
    st.one_of(
        st.tuples(st.just("vl"), days),
        st.tuples(st.just("stopped"), days),
        st.tuples(st.just("died"), days),
        st.tuples(st.just("transferred_out"), days),
        st.tuples(st.just("tick"), days),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(diagnosed_days=st.integers(-300, 400), pregnant=st.booleans(), steps=vl_steps)
def test_any_sequence_of_mother_facts_ends_every_viral_load_item_satisfied_overdue_or_cancelled(
    diagnosed_days: int, pregnant: bool, steps: list
) -> None:
    mother = MotherCase(
        uuid4(),
        "FAC-ZA-001",
        hiv_status=HivStatus.positive,
        positive_since=B + timedelta(days=diagnosed_days),
        edd=B + timedelta(days=4) if pregnant else None,
        delivered_on=B,
    )
    rules = MotherRules()
    mother.recompute(rules)
    announced: Counter = Counter()
    today = B
    for kind, offset in steps:
        on = B + timedelta(days=offset)
        today = max(today, on)
        if kind == "tick":
            for item, transition in mother.tick(today, SILENCE).transitions:
                announced[(item.item_id, transition)] += 1
            continue
        if kind == "vl":
            mother.viral_loads = sorted([*mother.viral_loads, (on, 40)])
        elif kind == "stopped":
            mother.breastfeeding_until = on
        elif kind == "died":
            mother.died_on = mother.died_on or on
        else:
            mother.transferred_out_on = on
        mother.recompute(rules)
    for item, transition in mother.tick(END, SILENCE).transitions:
        announced[(item.item_id, transition)] += 1
    assert all(i.status in ENDED for i in mother.items)
    assert all(n == 1 for n in announced.values())


def end_state(case: InfantCase) -> tuple:
    """The items the final plan requires, as they stand, and the outcome."""
    assert case.plan is not None
    required = {id_of(case.infant_id, r.kind, r.window_start) for r in case.plan.requirements}
    items = sorted(
        (i.kind.value, i.window_start, i.window_end, i.overdue_on, i.status.value, i.satisfied_on, i.cancel_reason)
        for i in case.items
        if i.item_id in required
    )
    return tuple(items), case.final_outcome, case.final_outcome_on, case.plan.art_needed


def facts_only(steps: list) -> list:
    """Facts of the infant's own events (no ticks, no mother's death), none after a recorded death
    (the POST refuses them), each with an event id."""
    died = min((B + timedelta(days=o) for k, o, d in steps if d.get("outcome") == "died"), default=None)
    return [
        (uuid4(), kind, offset, data)
        for kind, offset, data in steps
        if kind not in ("tick", "mother_died") and (died is None or B + timedelta(days=offset) <= died)
    ]


def drive_infant(high_risk: bool, events: list, voided: set | frozenset = frozenset()) -> InfantCase:
    """Record `events` (in their order) as the POST does, then void those in `voided` (an
    InfantEventVoided each, as follow-up's intake does), then time to the end."""
    case = InfantCase(uuid4(), uuid4(), "FAC-ZA-001", InfantFacts(birth_date=B, high_risk=high_risk, follow_up_from=B))
    case.infant_id = UUID(int=1)  # one id for both runs: item ids are derived from it
    case.start_follow_up(B, [HighRiskReason.no_viral_load] if high_risk else [], RULES)
    for event_id, kind, offset, data in events:
        on = B + timedelta(days=offset)
        case.record(RecordedEvent(kind, on, on, data, event_id))
        case.recompute(RULES)
    for event_id in voided:
        case.take_back(event_id, END)
        case.recompute(RULES)
        case.correcting = None
    case.tick(END, RULES, SILENCE)
    return case


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(high_risk=st.booleans(), steps=st.lists(fact, max_size=20), data=st.data())
def test_void_then_recompute_is_as_if_the_voided_infant_events_were_never_posted(
    high_risk: bool, steps: list, data: st.DataObject
) -> None:
    events = facts_only(steps)
    voided = data.draw(st.sets(st.sampled_from([e[0] for e in events]), max_size=4)) if events else set()
    remaining = data.draw(st.permutations([e for e in events if e[0] not in voided]))
    assert end_state(drive_infant(high_risk, events, voided)) == end_state(drive_infant(high_risk, remaining))
