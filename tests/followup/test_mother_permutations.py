"""The permutation property of a mother's follow-up: any order of the same facts gives one end
state. Her case is driven as the consumer drives it (each event applied, then her plan
recomputed), in every order hypothesis tries; the end state is her case's facts and, for every
item her final plan requires, its status (items the plan no longer requires are history: an item
planned then cancelled in one order may never exist in another).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from followup.cases import MotherCase, Pregnancy
from followup.corrections import Standing, replay
from followup.eid_schedule import EidRules
from followup.mother_schedule import MotherRules, mother_plan
from followup.schedule import item_id, tick
from followup.stream import apply_to_mother
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
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
    assert end_state(drive_and_void(list(order), voided)) == end_state(drive(remaining))


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
