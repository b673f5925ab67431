"""`schedule.reconcile` as a table: a subject's items are a function of the set of facts known,
not of the order they arrived in (issue 17, any order). Every item the plan calls for takes the
state the plan says (keeping how far time moved it while it is open); one the plan no longer calls
for is dropped when nothing was ever announced of it — posted in another order the same facts
would never have planned it — and cancelled `no_longer_required` when it was (a due or overdue
announcement was published: someone was told), whatever it was before, so that met-then-unneeded
and unneeded-then-met end alike.

The three cases the backlog test (tests/e2e/test_backlog_any_order.py) found are rows here: a met
ANC1 test an earlier view of her pregnancy planned (a transfer-in enrolment posted first names a
pregnancy of its own), breastfeeding viral loads planned before her infant's feeding was known, an
infant's confirmatory NAT and ART start that her late-arriving earlier facts no longer call for.
"""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from followup.cases import kept_items
from followup.schedule import Item, Requirement, Status, item_id, reconcile, tick
from pmtct_events.followup import ScheduleKind

SUBJECT = UUID(int=17)
START = date(2031, 3, 1)
MET = START + timedelta(days=3)
LATER = START + timedelta(days=5)
KIND = ScheduleKind.mother_viral_load

#: what the plan says of the item: None (no longer called for), "open", ("met", day), ("cancelled", reason)
Plan = None | str | tuple[str, object]


def stored(
    status: Status, satisfied_on: date | None = None, reason: str | None = None, announced: bool = False
) -> Item:
    i = Item(item_id(SUBJECT, KIND, START), KIND, None, START, START + timedelta(days=28), START + timedelta(days=42))
    i.status, i.satisfied_on, i.cancel_reason, i.announced = status, satisfied_on, reason, announced
    return i


def requirement(plan: Plan) -> list[Requirement]:
    if plan is None:
        return []
    met = plan[1] if isinstance(plan, tuple) and plan[0] == "met" else None
    reason = plan[1] if isinstance(plan, tuple) and plan[0] == "cancelled" else None
    assert met is None or isinstance(met, date)
    assert reason is None or isinstance(reason, str)
    return [Requirement(KIND, None, START, START + timedelta(days=28), START + timedelta(days=42), met, reason, None)]


@pytest.mark.parametrize(
    ("item", "plan", "expected"),
    [
        # no longer called for, never announced: not kept (the repository deletes it)
        (stored(Status.planned), None, None),
        (stored(Status.satisfied, MET), None, None),  # a met ANC1 test of an earlier view of her pregnancy
        (stored(Status.cancelled, reason="no_longer_required"), None, None),
        (stored(Status.cancelled, reason="delivered"), None, None),
        # no longer called for, announced: kept, cancelled, met or not
        (stored(Status.due, announced=True), None, (Status.cancelled, None, "no_longer_required")),
        (stored(Status.overdue, announced=True), None, (Status.cancelled, None, "no_longer_required")),
        (stored(Status.satisfied, MET, announced=True), None, (Status.cancelled, None, "no_longer_required")),
        (stored(Status.planned, announced=True), None, (Status.cancelled, None, "no_longer_required")),
        # called for: as the plan says, an open one keeping how far time moved it
        (stored(Status.due, announced=True), "open", (Status.due, None, None)),
        (stored(Status.overdue, announced=True), "open", (Status.overdue, None, None)),
        (stored(Status.satisfied, MET), "open", (Status.planned, None, None)),  # what met it meets another
        (stored(Status.cancelled, reason="transferred_out"), "open", (Status.planned, None, None)),  # transfer in
        (stored(Status.planned), ("met", MET), (Status.satisfied, MET, None)),
        (stored(Status.satisfied, LATER), ("met", MET), (Status.satisfied, MET, None)),  # an earlier result
        (stored(Status.due, announced=True), ("cancelled", "delivered"), (Status.cancelled, None, "delivered")),
        (stored(Status.cancelled, reason="delivered"), ("met", MET), (Status.satisfied, MET, None)),
    ],
)
def test_an_item_stands_as_the_plan_says_and_one_it_no_longer_has_goes_unless_announced(
    item: Item, plan: Plan, expected: tuple | None
) -> None:
    dropped: set[UUID] = set()
    out = kept_items([item], dropped, reconcile(SUBJECT, [item], requirement(plan)))
    found = [(i.status, i.satisfied_on, i.cancel_reason) for i in out]
    assert found == ([expected] if expected else [])
    assert dropped == (set() if expected else {item.item_id})


def test_an_item_planned_again_in_the_same_unit_is_not_deleted() -> None:
    item = stored(Status.planned)
    dropped: set[UUID] = set()
    items = kept_items([item], dropped, reconcile(SUBJECT, [item], []))
    assert dropped == {item.item_id}
    items = kept_items(items, dropped, reconcile(SUBJECT, items, requirement("open")))
    assert dropped == set() and [i.status for i in items] == [Status.planned]


def test_announced_then_met_then_unneeded_ends_as_announced_then_unneeded_then_met() -> None:
    """The two orders of a result and of the fact that makes the item pointless, after its due
    was announced: one end."""
    ends = []
    for plans in (["open", ("met", MET), None], ["open", None, None]):
        items: list[Item] = []
        dropped: set[UUID] = set()
        for n, plan in enumerate(plans):
            items = kept_items(items, dropped, reconcile(SUBJECT, items, requirement(plan)))
            if n == 0:
                assert [t for _, t in tick(items, START)] == ["due"]
        ends.append([(i.status, i.satisfied_on, i.cancel_reason, i.announced) for i in items])
    assert ends[0] == ends[1] == [(Status.cancelled, None, "no_longer_required", True)]


def test_tick_marks_what_it_announces() -> None:
    items = reconcile(SUBJECT, [], requirement("open"))
    assert not items[0].announced
    tick(items, START - timedelta(days=1))
    assert not items[0].announced
    tick(items, START)
    assert items[0].announced
