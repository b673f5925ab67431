"""What a void of one of her events leaves standing on nothing (enrolment/domain.py `dependents`,
`unsupported`): the table of which of her events enrolment asks the EMR to void first
(`void_dependents_first`). Pure functions of her history: any order of the same facts, the same
answer."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest
from test_enrolment_rules import CLIENT, FAC, delivered, enrolled, hiv_test

from enrolment import domain
from enrolment.domain import ClientHistory
from pmtct_events import Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    ClientEnrolled,
    DeliveryRecorded,
    HivTestRecorded,
    ViralLoadRecorded,
)
from servicekit.clock import Clock


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC)


def art(day: str) -> ArtInitiated:
    return ArtInitiated(client_id=CLIENT, facility_id=FAC, occurred_at=at(day))


def load(day: str) -> ViralLoadRecorded:
    return ViralLoadRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at(day), copies_per_ml=40, suppressed=True)


def visit(day: str, number: int = 2) -> AncVisitRecorded:
    return AncVisitRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at(day), visit_number=number)


#: her facts by name, and the table: voiding the first name leaves the others listed on nothing
FACTS: dict[str, Event] = {
    "enrolled": enrolled("2026-01-10", hiv_status="unknown"),
    "positive": hiv_test("2026-02-01"),
    "negative": hiv_test("2026-01-20", "negative"),
    "visit": visit("2026-03-01"),
    "art": art("2026-02-03"),
    "load": load("2026-05-01"),
    "delivery": delivered("2026-07-20"),
    "re-enrolled": enrolled("2026-04-01", facility="FAC-ZA-002", hiv_status="unknown"),
    "known positive": enrolled("2025-12-01", hiv_status="positive"),
}

CASES = [
    # (her facts, the one voided, what must be voided first) — WHO 2021 consolidated HIV
    # guidelines: ART and viral load monitoring follow an HIV diagnosis
    (("enrolled", "negative", "positive", "art", "load"), "positive", {"art", "load"}),
    (("enrolled", "positive", "art"), "art", set()),
    (("enrolled", "positive", "visit", "delivery"), "positive", set()),
    (("enrolled", "positive", "art", "delivery"), "delivery", set()),
    (("enrolled", "negative", "visit"), "negative", set()),
    # another positive evidence still stands: the ART start does too
    (("known positive", "enrolled", "positive", "art"), "positive", set()),
    # her only enrolment: everything of hers stood on it
    (("enrolled", "negative", "visit", "delivery"), "enrolled", {"negative", "visit", "delivery"}),
    # another enrolment stands: what came after this one
    (("enrolled", "negative", "visit", "re-enrolled", "delivery"), "re-enrolled", {"delivery"}),
]


@pytest.mark.parametrize(("names", "voided", "first"), CASES, ids=[f"{c[1]} of {'+'.join(c[0])}" for c in CASES])
def test_what_a_void_leaves_on_nothing_whatever_the_order_of_her_facts(
    names: tuple[str, ...], voided: str, first: set[str]
) -> None:
    for order in itertools.permutations(names):
        her = ClientHistory(date(1996, 4, 11), False, [FACTS[n] for n in order], clock=Clock())
        found = domain.dependents(her, FACTS[voided])
        assert {n for n in names if any(FACTS[n] is e for e in found)} == first, order


def test_without_the_voided_fact_her_state_is_derived_afresh() -> None:
    her = ClientHistory(
        date(1996, 4, 11), False, [FACTS["enrolled"], FACTS["negative"], FACTS["positive"]], clock=Clock()
    )

    rest = domain.without(her, FACTS["positive"])

    assert domain.hiv_status_at(her, at("2026-03-01")).value == "positive"
    assert domain.hiv_status_at(rest, at("2026-03-01")).value == "negative"
    assert domain.diagnosed_on(rest, at("2026-03-01")) is None
    assert len(her.events) == 3, "her history itself is not changed"


def test_a_replacement_that_would_leave_her_art_start_on_nothing_is_found() -> None:
    her = ClientHistory(date(1996, 4, 11), False, [FACTS["enrolled"], FACTS["art"]], clock=Clock())

    assert domain.unsupported(her) == [FACTS["art"]]
    assert (
        domain.unsupported(ClientHistory(her.birth_date, False, [*her.events, FACTS["positive"]], clock=Clock())) == []
    )
    assert isinstance(FACTS["delivery"], DeliveryRecorded) and isinstance(FACTS["positive"], HivTestRecorded)
    assert isinstance(FACTS["enrolled"], ClientEnrolled)
