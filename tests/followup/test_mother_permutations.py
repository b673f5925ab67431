"""The permutation property of a mother's follow-up: any order of the same facts gives one end
state. Her case is driven as the consumer drives it (each event applied, then her plan
recomputed), in every order hypothesis tries; the end state is her case's facts and, for every
item her final plan requires, its status (`drive`: items the plan no longer requires are history).

Driven as the stream drives it now (`drive_as_the_stream`: a fact dated on or before her latest
rebuilds her case from her events in the order they happened, `corrections.rebuild`), every item
is the same, the history too: the items an earlier view of the facts planned are not kept.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.cases import MotherCase, Pregnancy
from followup.corrections import Standing, happened, out_of_order, replay
from followup.eid_schedule import EidRules
from followup.mother_schedule import MotherRules, mother_plan
from followup.schedule import Item, Status, item_id, restate, tick
from followup.stream import apply_to_mother
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
    ClientDied,
    ClientEnrolled,
    ClientEvent,
    ClientTransferredOut,
    DeliveredInfant,
    DeliveryRecorded,
    HivTestRecorded,
    InfantSex,
    PregnancyEnded,
    ViralLoadRecorded,
)
from pmtct_events.followup import ScheduleKind
from servicekit.clock import Clock

CLIENT = uuid4()
FIRST, SECOND = uuid4(), uuid4()
START = date(2031, 1, 6)
END = START + timedelta(days=900)
RULES = MotherRules()
CLOCK = Clock()


def at(days: int) -> datetime:
    return datetime.combine(START + timedelta(days=days), time(9), tzinfo=UTC)


def common(days: int, episode: UUID, facility: str = "FAC-ZA-001") -> dict:
    return {"client_id": CLIENT, "facility_id": facility, "occurred_at": at(days), "episode_id": episode}


def enrolled(days: int, episode: UUID, facility: str = "FAC-ZA-001", **kw) -> ClientEnrolled:
    values = {"status_at_enrolment": "pregnant", "age_years": 25, "hiv_status": "negative", "on_art": False}
    return ClientEnrolled(**common(days, episode, facility), **{**values, **kw})


def hiv_test(days: int, result: str, episode: UUID = SECOND, setting: str = "anc") -> HivTestRecorded:
    return HivTestRecorded(**common(days, episode), result=result, setting=setting)


def delivered(days: int, episode: UUID = SECOND) -> DeliveryRecorded:
    baby = DeliveredInfant(infant_id=uuid4(), sex=InfantSex.male, outcome=BirthOutcome.live_birth)
    return DeliveryRecorded(
        **common(days, episode), place="facility", skilled_attendant=True, maternal_outcome="alive", infants=[baby]
    )


#: a miscarriage, then a new pregnancy: inconclusive at ANC1, negative, not retested, positive at
#: 34 weeks, ART, an unsuppressed viral load, a transfer and an enrolment elsewhere, a delivery
JOURNEY: list[ClientEvent] = [
    enrolled(0, FIRST, gestation_weeks=8),
    PregnancyEnded(**common(30, FIRST), outcome="miscarriage", gestation_weeks=12),
    enrolled(120, SECOND, gestation_weeks=10),
    hiv_test(120, "indeterminate"),
    hiv_test(134, "negative"),
    AncVisitRecorded(**common(160, SECOND), visit_number=2, gestation_weeks=16),
    hiv_test(288, "positive"),
    ArtInitiated(**common(289, SECOND)),
    ViralLoadRecorded(**common(300, SECOND), copies_per_ml=2400, suppressed=False),
    ClientTransferredOut(**common(305, SECOND), to_facility_id="FAC-ZA-002"),
    enrolled(310, SECOND, "FAC-ZA-002", hiv_status="positive", on_art=True),
    delivered(330),
]


def drive(events: list[ClientEvent]) -> MotherCase:
    mother = MotherCase(CLIENT, events[0].facility_id)
    for event in events:
        apply_to_mother(mother, event, CLOCK.local_day(event.occurred_at))
        mother.recompute(RULES)
    tick(mother.items, END)
    return mother


def end_state(mother: MotherCase) -> tuple:
    facts = mother.facts()
    required = {item_id(CLIENT, r.kind, r.window_start) for r in mother_plan(facts, RULES)}
    items = sorted(
        (i.kind.value, i.window_start, i.window_end, i.overdue_on, i.status.value, i.satisfied_on, i.cancel_reason)
        for i in mother.items
        if i.item_id in required
    )
    return facts, mother.facility_id, mother.hiv_status, tuple(items)


EXPECTED = end_state(drive(JOURNEY))


def test_the_journey_in_the_order_it_happened_ends_where_a_mentor_mother_expects() -> None:
    facts, facility, _, items = EXPECTED
    assert facility == "FAC-ZA-002", "she is followed where she enrolled last"
    assert facts.transferred_out_on is None, "the transfer out was followed by her enrolment elsewhere"
    assert facts.pregnancy_from == START + timedelta(days=120), "her current pregnancy is the second"
    by_kind = {row[0]: row for row in items}
    assert by_kind["mother_hiv_retest_inconclusive"][4] == "satisfied"
    assert by_kind["mother_hiv_retest_third_trimester"][5] == START + timedelta(days=288)
    assert by_kind["mother_art_start"][4] == "satisfied"
    assert by_kind["mother_adherence_support"][4] == "overdue", "no repeat viral load was taken"
    assert by_kind["mother_repeat_viral_load"][4] == "overdue"


@settings(max_examples=150, deadline=None)
@given(order=st.permutations(JOURNEY))
def test_any_order_of_a_mothers_facts_gives_one_end_state(order: list[ClientEvent]) -> None:
    assert end_state(drive(list(order))) == EXPECTED


def drive_and_void(events: list[ClientEvent], voided: set[int]) -> MotherCase:
    """`drive`, then a ClientEventVoided of the events at `voided` (their positions in `events`):
    her case replayed from the rest (`corrections.replay`) and taken on (`MotherCase.correct`)."""
    mother = MotherCase(CLIENT, events[0].facility_id)
    kept: list[Standing] = []
    for n, event in enumerate(events):
        apply_to_mother(mother, event, CLOCK.local_day(event.occurred_at))
        mother.recompute(RULES)
        if n not in voided:
            kept.append(Standing(uuid4(), event, CLOCK.local_day(event.occurred_at)))
    folded = replay(CLIENT, mother.facility_id, kept, [], EidRules(), RULES)
    mother.correct(folded.mother, START + timedelta(days=400))
    tick(mother.items, END)
    return mother


@settings(max_examples=150, deadline=None)
@given(order=st.permutations(JOURNEY), voided=st.sets(st.integers(0, len(JOURNEY) - 1), max_size=4))
def test_void_then_recompute_is_as_if_the_voided_events_were_never_posted(
    order: list[ClientEvent], voided: set[int]
) -> None:
    remaining = [e for n, e in enumerate(order) if n not in voided]
    if not remaining:
        return
    # the replay is in the order they happened: what the stream makes of the rest in any order
    assert end_state(drive_and_void(list(order), voided)) == end_state(drive_as_the_stream(remaining))


#: each event of the journey keeps one CloudEvent id, whatever order it is posted in
EVENT_IDS = {id(e): UUID(int=n + 1) for n, e in enumerate(JOURNEY)}


def drive_as_the_stream(events: list[ClientEvent]) -> MotherCase:
    """As `stream.on_enrolment_event` applies them: each event kept, applied, and when it is dated
    on or before her latest, her case rebuilt from the kept events in the order they happened
    (nothing announced yet: every item only an earlier view called for is dropped)."""
    mother = MotherCase(CLIENT, events[0].facility_id)
    kept: list[Standing] = []
    for event in events:
        day = CLOCK.local_day(event.occurred_at)
        kept.append(Standing(EVENT_IDS[id(event)], event, day))
        last_seen_on = mother.attendance.last_seen_on
        apply_to_mother(mother, event, day)
        if out_of_order(last_seen_on, day):
            mother.rebuild(replay(CLIENT, mother.facility_id, kept, [], EidRules(), RULES).mother)
        mother.recompute(RULES)
    tick(mother.items, END)
    return mother


def every_item(mother: MotherCase) -> tuple:
    items = sorted(
        (i.kind.value, i.window_start, i.window_end, i.overdue_on, i.status.value, i.satisfied_on, i.cancel_reason)
        for i in mother.items
    )
    return mother.facts(), mother.facility_id, mother.hiv_status, tuple(items)


IN_ORDER = every_item(drive_as_the_stream(JOURNEY))


def test_the_stream_in_the_order_it_happened_is_the_plain_fold() -> None:
    """In the order they happened the rebuilds change nothing: the same items as the plain fold."""
    assert IN_ORDER == every_item(drive(JOURNEY))


@settings(max_examples=150, deadline=None)
@given(order=st.permutations(JOURNEY))
def test_any_order_of_a_mothers_facts_gives_the_same_items_history_and_all(order: list[ClientEvent]) -> None:
    assert every_item(drive_as_the_stream(list(order))) == IN_ORDER


def test_a_viral_load_dated_after_her_delivery_arriving_before_it_does_not_meet_the_pregnancy_item() -> None:
    """The case the backlog test found: posted before the delivery, a viral load taken after it
    gave her items the state that order makes; now every order gives what the plain fold of the
    order they happened gives."""
    positive = enrolled(0, SECOND, gestation_weeks=20, hiv_status="positive", on_art=True, art_start_date=START)
    birth = delivered(140)
    after = ViralLoadRecorded(**common(150, SECOND), copies_per_ml=40, suppressed=True)
    for e in (positive, birth, after):
        EVENT_IDS.setdefault(id(e), uuid4())
    expected = every_item(drive_as_the_stream([positive, birth, after]))
    assert every_item(drive_as_the_stream([positive, after, birth])) == expected
    assert every_item(drive_as_the_stream([after, birth, positive])) == expected
    assert expected == every_item(drive([positive, birth, after]))


def test_her_events_of_one_instant_are_replayed_enrolment_first_then_care_then_delivery_and_exits() -> None:
    instant = at(100)
    values = {"client_id": CLIENT, "facility_id": "FAC-ZA-001", "occurred_at": instant, "episode_id": SECOND}
    died = ClientDied(**values)
    birth = delivered(100)
    test = HivTestRecorded(**values, result="negative", setting="anc")
    enrolment = enrolled(100, SECOND, gestation_weeks=20)
    earlier = hiv_test(99, "negative")
    events = [Standing(UUID(int=n), e, START) for n, e in enumerate((died, birth, test, enrolment, earlier))]
    order = [type(s.event).__name__ for s in happened(events)]
    assert order == ["HivTestRecorded", "ClientEnrolled", "HivTestRecorded", "DeliveryRecorded", "ClientDied"]
    assert happened(events)[0].event is earlier
    assert happened(list(reversed(events))) == happened(events)


def item(kind: str, status: Status, day: int = 0) -> Item:
    start = START + timedelta(days=day)
    return Item(item_id(CLIENT, ScheduleKind(kind), start), ScheduleKind(kind), None, start, start, start, status)


@pytest.mark.parametrize(
    ("status", "announced", "kept"),
    [
        # an item only an earlier view of her facts called for ...
        (Status.planned, False, None),  # never announced: dropped
        (Status.satisfied, False, None),  # met, never announced: dropped (the items that stand say it)
        (Status.cancelled, False, None),
        (Status.due, True, (Status.cancelled, "no_longer_required")),  # announced: stays, cancelled
        (Status.overdue, True, (Status.cancelled, "no_longer_required")),
        # announced, then met: cancelled too, as when the fact that made it pointless came first
        # (schedule.reconcile: the same facts in any order end alike)
        (Status.satisfied, True, (Status.cancelled, "no_longer_required")),
    ],
)
def test_a_rebuild_drops_what_only_an_earlier_view_called_for_unless_announced(
    status: Status, announced: bool, kept: tuple | None
) -> None:
    earlier = item("mother_hiv_test_delivery", status)
    earlier.announced = announced
    stands = item("mother_viral_load", Status.planned, 10)
    out = restate([earlier, item("mother_viral_load", Status.due, 10)], [stands], rebuild=True)
    assert [i.item_id for i in out if i.item_id == stands.item_id], "the item that stands stays"
    assert next(i for i in out if i.item_id == stands.item_id).status is Status.due, "time moved it: kept"
    found = [(i.status, i.cancel_reason) for i in out if i.item_id == earlier.item_id]
    assert found == ([kept] if kept else [])


def test_two_records_of_one_pregnancy_are_one_pregnancy_first_seen_when_the_earlier_was() -> None:
    """Enrolment names an event's episode by the events it had when it arrived: a transfer-in posted
    before her first enrolment names one of its own. Records whose EDDs agree within 28 days, with no
    loss between, are one pregnancy (`MotherCase.current_pregnancy`); farther apart, or after a
    loss, the latest stands alone."""
    edd = date(2031, 6, 1)
    for later_edd, lost_on, seen_from in (
        (edd + timedelta(days=10), None, START),  # the same pregnancy, dated a little differently
        (edd + timedelta(days=60), None, START + timedelta(days=70)),  # another pregnancy
        (edd + timedelta(days=10), START + timedelta(days=20), START + timedelta(days=70)),  # after a loss
    ):
        mother = MotherCase(CLIENT, "FAC-A")
        mother.pregnancies = {
            "first": Pregnancy(START, edd, START, lost_on),
            "transfer": Pregnancy(START + timedelta(days=70), later_edd, START + timedelta(days=70)),
        }
        current = mother.current_pregnancy()
        assert current is not None and current.seen_from == seen_from, (later_edd, lost_on)
        assert current.edd == (edd if seen_from == START else later_edd)
