"""Schedule items and their lifecycle, shared by infant (EID) and mother (viral load) follow-up.

Pure: no I/O, no clock. Two forces move an item, and they are kept apart on purpose:

- *facts* (a delivery, a result, a death) change what the rules require. `reconcile` turns the
  requirements of `eid_schedule` / `mother_schedule` into stored items: new items are planned,
  items the facts meet become `satisfied`, items the facts make pointless become `cancelled`.
- *time* moves an open item `planned` → `due` (its window opened) → `overdue` (window end plus
  grace passed). `tick` is what the durable timers run; each transition is announced exactly once
  because it is a change of the stored status, committed with its event in one transaction.

An item's identity is its subject, kind and window start. A fact that moves a window (breastfeeding
stopped moves the final test) therefore retires the old item (deleted if never announced, else
cancelled) and plans a new one: an item id is never announced twice, even when the plan changes
after its due date was announced.

The items of a subject are a function of the set of facts known, not of the order they arrived in
(issue 17): `reconcile` gives every item the plan calls for the state the plan says, and an item
the plan no longer calls for is dropped if nothing was ever announced of it (no one saw it: it is
as if the facts had come in the order that never planned it), or cancelled `no_longer_required`
if it was (`Item.announced`), whatever it was before.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from uuid import UUID, uuid5

from pmtct_events.followup import InfantTest, ScheduleKind

from . import labels

#: namespace of deterministic item ids: the same requirement always gets the same id
ITEM_NAMESPACE = UUID("5b0d7c3e-8f3a-4f53-9a55-6a2f1f4f0e11")


class Status(StrEnum):
    planned = "planned"
    due = "due"
    overdue = "overdue"
    satisfied = "satisfied"
    cancelled = "cancelled"


OPEN: frozenset[Status] = frozenset({Status.planned, Status.due, Status.overdue})
#: the cancel reason of an item its subject's transfer out cancelled
TRANSFERRED_OUT = "transferred_out"
#: the cancel reason of an item whose subject a correction ended (`cases.InfantCase.end`)
ENTERED_IN_ERROR = "entered_in_error"
#: the cancel reason of an open item the facts no longer call for
NO_LONGER_REQUIRED = "no_longer_required"


class Transition(StrEnum):
    due = "due"
    overdue = "overdue"


def add_months(day: date, months: int) -> date:
    """Calendar months, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def item_id(subject_id: UUID, kind: ScheduleKind, window_start: date) -> UUID:
    return uuid5(ITEM_NAMESPACE, f"{subject_id}:{kind.value}:{window_start.isoformat()}")


@dataclass(frozen=True, slots=True)
class Requirement:
    """What the rules say the subject needs, given the facts so far."""

    kind: ScheduleKind
    test: InfantTest | None
    window_start: date
    window_end: date
    overdue_on: date
    satisfied_on: date | None = None
    cancel_reason: str | None = None
    #: what the worklist calls it (the preset's name of a test point), None for the kind's default
    label: str | None = None


@dataclass(slots=True)
class Item:
    """A requirement as stored, with its status. Its fields are `models.ScheduleItemBase`'s (a test
    holds them equal), written again here as a slots dataclass because every recompute builds and
    changes items: a pydantic Item made a recompute 1.7-1.9 times slower (see followup/models.py)."""

    item_id: UUID
    kind: ScheduleKind
    test: InfantTest | None
    window_start: date
    window_end: date
    overdue_on: date
    status: Status = Status.planned
    satisfied_on: date | None = None
    cancel_reason: str | None = None
    label: str | None = None
    #: set when this object differs from what was loaded (the repository writes only these)
    changed: bool = field(default=False, compare=False)
    #: its due (or overdue) was announced (`tick`; the repository loads it from the announcement
    #: stamps): someone was told of it, so it is never dropped, only cancelled (`reconcile`)
    announced: bool = field(default=False, compare=False)

    @property
    def open(self) -> bool:
        return self.status in OPEN


def reconcile(subject_id: UUID, items: list[Item], required: Iterable[Requirement]) -> list[Item]:
    """Bring stored items in line with the requirements: the items stand exactly as the facts now
    say, whatever order the facts arrived in. Returns the full list, changed ones marked; an item
    left out of it is to be deleted (the caller notes it: `dropped`).

    - every required item takes the state its requirement says: satisfied (on the day the facts
      say), cancelled (for the reason they say), or open, keeping how far time has moved it
      (planned, due, overdue). A cancelled or met item required open again (a transfer in after a
      transfer out, a positive result not confirmed, a result the facts now say met another
      item) is planned again, and announced again when its time comes;
    - an item no longer required at all (the facts moved its window, changed which result
      triggered it, ended breastfeeding before it) is dropped if it was never announced (nothing
      was said of it: every order of the same facts ends without it), and cancelled
      `no_longer_required` if it was (`Item.announced`), even if it was met: what met it meets the
      item that stands, and a met-then-unneeded item and an unneeded-then-met one end alike.
    """
    by_id = {i.item_id: i for i in items}
    wanted: set[UUID] = set()
    for r in required:
        iid = item_id(subject_id, r.kind, r.window_start)
        wanted.add(iid)
        current = by_id.get(iid)
        if current is None:
            by_id[iid] = _new(iid, r)
            continue
        if current.label != r.label:
            current.label, current.changed = r.label, True
        if (current.window_end, current.overdue_on) != (r.window_end, r.overdue_on):
            current.window_end, current.overdue_on, current.changed = r.window_end, r.overdue_on, True
        if r.satisfied_on is not None:
            if (current.status, current.satisfied_on) != (Status.satisfied, r.satisfied_on):
                _set(current, Status.satisfied, satisfied_on=r.satisfied_on, cancel_reason=None)
        elif r.cancel_reason is not None:
            if (current.status, current.cancel_reason) != (Status.cancelled, r.cancel_reason):
                _set(current, Status.cancelled, cancel_reason=r.cancel_reason, satisfied_on=None)
        elif not current.open:
            _set(current, Status.planned, cancel_reason=None, satisfied_on=None)
    out: list[Item] = []
    for iid, item in by_id.items():
        if iid not in wanted:
            if not item.announced:
                continue
            no_longer_required(item)
        out.append(item)
    return sorted(out, key=lambda i: (i.window_start, i.kind.value))


def no_longer_required(item: Item) -> None:
    """An announced item the facts no longer call for: cancelled `no_longer_required`, whatever
    it was (met or not), so it ends the same whichever came first, its result or the fact that
    made it pointless."""
    if (item.status, item.cancel_reason, item.satisfied_on) != (Status.cancelled, NO_LONGER_REQUIRED, None):
        _set(item, Status.cancelled, cancel_reason=NO_LONGER_REQUIRED, satisfied_on=None)


def _new(iid: UUID, r: Requirement) -> Item:
    status = Status.satisfied if r.satisfied_on else Status.cancelled if r.cancel_reason else Status.planned
    return Item(
        iid,
        r.kind,
        r.test,
        r.window_start,
        r.window_end,
        r.overdue_on,
        status,
        r.satisfied_on,
        r.cancel_reason if status is Status.cancelled else None,
        r.label,
        changed=True,
    )


def _set(item: Item, status: Status, **fields) -> None:
    item.status = status
    for name, value in fields.items():
        setattr(item, name, value)
    item.changed = True


def tick(items: list[Item], today: date) -> list[tuple[Item, Transition]]:
    """Move open items forward in time. An item found past its overdue date while still planned
    (a backfilled delivery) is announced due and then overdue, in that order, so every overdue
    item has exactly one due announcement before it."""
    out: list[tuple[Item, Transition]] = []
    for item in items:
        if item.status is Status.planned and today >= item.window_start:
            _set(item, Status.due)
            item.announced = True
            out.append((item, Transition.due))
        if item.status is Status.due and today >= item.overdue_on:
            _set(item, Status.overdue)
            item.announced = True
            out.append((item, Transition.overdue))
    return out


def overdue_snapshot(items: Iterable[Item]) -> dict[UUID, date]:
    """The items announced overdue, with the overdue day they were announced for: what
    `withdrawn_items` compares the items with after the facts changed them."""
    return {i.item_id: i.overdue_on for i in items if i.status is Status.overdue}


def due_snapshot(items: Iterable[Item]) -> dict[UUID, date]:
    """The items announced due (due, or overdue since: every overdue item was announced due first,
    `tick`), with the first day of the window they were announced for: what `voided_items` compares
    the items with after a correction, so that the due announcement is withdrawn too."""
    return {i.item_id: i.window_start for i in items if i.status in (Status.due, Status.overdue)}


def withdrawn_items(announced: dict[UUID, date], items: Iterable[Item]) -> list[tuple[Item, date]]:
    """The withdraw rule for items: an item announced overdue (in `announced`, by
    `overdue_snapshot`) that the facts now say was met *before* the day it was overdue for was not
    overdue at all. A back-dated result arrived after the timer had announced it: the announcement is
    withdrawn (with the automatic referral it opened). An item met on or after its overdue day was
    really overdue and stays announced (its referral is completed by the result). Returns the
    withdrawn items with the overdue day they had been announced for."""
    out: list[tuple[Item, date]] = []
    for i in items:
        overdue_on = announced.get(i.item_id)
        if overdue_on is None or i.status is not Status.satisfied or i.satisfied_on is None:
            continue
        if i.satisfied_on < overdue_on:
            out.append((i, overdue_on))
    return out


def restate(stored: list[Item], replayed: Iterable[Item], rebuild: bool = False) -> list[Item]:
    """A correction (a void): the stored items take the state of `replayed` (the same subject's
    items replayed from the facts that stand, as if the voided ones had never been posted), changed
    ones marked. Where both are open the stored one keeps how far time moved it (planned, due,
    overdue: announced once); one the replay has open but is met or cancelled here is planned
    again (the timers announce it again); one the replay does not have was called for only by the
    voided facts: cancelled `entered_in_error` (unless it was cancelled already).

    With `rebuild` (after an out-of-order fact, not a void) one the replay does not have was called
    for only by an earlier view of the facts: as `reconcile` says of an item no longer required,
    it is dropped (left out of the list: the caller deletes it) unless it was announced, then it
    stays, cancelled `no_longer_required`."""
    by_id = {i.item_id: i for i in stored}
    out: list[Item] = []
    for r in replayed:
        current = by_id.pop(r.item_id, None)
        if current is None:
            out.append(replace(r, changed=True))
            continue
        if (current.window_end, current.overdue_on, current.label) != (r.window_end, r.overdue_on, r.label):
            current.window_end, current.overdue_on, current.label, current.changed = (
                r.window_end,
                r.overdue_on,
                r.label,
                True,
            )
        if not (current.open and r.open):
            state = (Status.planned if r.open else r.status, r.satisfied_on, r.cancel_reason)
            if (current.status, current.satisfied_on, current.cancel_reason) != state:
                _set(current, state[0], satisfied_on=state[1], cancel_reason=state[2])
        out.append(current)
    for item in by_id.values():
        if rebuild:
            if not item.announced:
                continue
            no_longer_required(item)
        elif item.status is not Status.cancelled:
            _set(item, Status.cancelled, cancel_reason=ENTERED_IN_ERROR, satisfied_on=None)
        out.append(item)
    return sorted(out, key=lambda i: (i.window_start, i.kind.value))


def unneeded_items(
    due: dict[UUID, date], overdue: dict[UUID, date], items: Iterable[Item]
) -> list[tuple[Item, date, bool]]:
    """The withdraw rule of an item the facts no longer call for: one announced (due, by
    `due_snapshot`; overdue, by `overdue_snapshot`) and still open when it was taken, that the facts
    since cancel `no_longer_required` (`reconcile`: her positive status was known before the test
    fell due) was never needed: each of its announcements is withdrawn (what it opened, a
    sample collection, an HIV-testing or tracing referral, is not needed either). One met before
    it became unneeded is not in `due` (met is not open): its announcements stood and were answered.
    Returns (item, the day the announcement was for, whether it is the due one)."""
    out: list[tuple[Item, date, bool]] = []
    for i in items:
        if i.item_id not in due or (i.status, i.cancel_reason) != (Status.cancelled, NO_LONGER_REQUIRED):
            continue
        out.append((i, due[i.item_id], True))
        if i.item_id in overdue:
            out.append((i, overdue[i.item_id], False))
    return out


def voided_items(announced: dict[UUID, date], items: Iterable[Item]) -> list[tuple[Item, date]]:
    """The withdraw rule of a correction: an item announced overdue (in `announced`, by
    `overdue_snapshot`; or due, by `due_snapshot`) that the facts left after a void no longer call
    for (cancelled) was asked for by an event entered in error: its announcement is withdrawn
    (`entered_in_error`), due as well as overdue. One still open stays announced; one met is
    `withdrawn_items`' to judge."""
    return [(i, announced[i.item_id]) for i in items if i.item_id in announced and i.status is Status.cancelled]


@dataclass(slots=True)
class Attendance:
    """Contact with the programme, and the lost-to-follow-up episode it may be in."""

    last_seen_on: date | None = None
    #: the clinical day the subject became lost (`lost_on`: her last contact, or her first overdue
    #: item if later, plus the lost-to-follow-up period), set when ClientLostToFollowUp is announced,
    #: whatever day that is; cleared by a later contact (back in care, or the loss withdrawn)
    lost_since: date | None = None
    #: the last contact known when the loss was announced
    lost_last_seen_on: date | None = None

    def seen(self, on: date) -> date | None:
        """A contact on `on`. If she was lost, the episode ends: she is back in care when the contact
        is on or after the day she became lost; a contact *before* that day (a back-dated visit that
        arrived after the loss was announced) shows she was never lost, and the lost day is returned:
        the loss is to be withdrawn (`cases`)."""
        if self.last_seen_on is None or on > self.last_seen_on:
            self.last_seen_on = on
        withdrawn = None
        if self.lost_since is not None and (self.lost_last_seen_on is None or on > self.lost_last_seen_on):
            if on < self.lost_since:
                withdrawn = self.lost_since
            self.lost_since = self.lost_last_seen_on = None
        return withdrawn


#: items that are records the clinic keeps, not visits the child missed: they never make her lost
NOT_VISITS: frozenset[ScheduleKind] = frozenset(
    {ScheduleKind.infant_prophylaxis, ScheduleKind.record_feeding_status, ScheduleKind.infant_cotrimoxazole}
)


def lost_on(items: Iterable[Item], attendance: Attendance, silence_days: int) -> date | None:
    """The day a subject counts as lost to follow-up: `silence_days` without contact after its
    earliest open item became overdue (counted from the last contact if that was later). A subject
    with nothing overdue is never lost: a quiet baby between its 6-week and 9-month tests is fine."""
    overdue_dates = [i.overdue_on for i in items if i.open and i.kind not in NOT_VISITS]
    if not overdue_dates:
        return None
    start = min(overdue_dates)
    if attendance.last_seen_on is not None and attendance.last_seen_on > start:
        start = attendance.last_seen_on
    return start + timedelta(days=silence_days)


def check_lost(items: list[Item], attendance: Attendance, silence_days: int, today: date) -> date | None:
    """Start a lost-to-follow-up episode if one is due today; returns the day it began, once."""
    if attendance.lost_since is not None:
        return None
    when = lost_on(items, attendance, silence_days)
    if when is None or today < when:
        return None
    attendance.lost_since = when  # the clinical day, not the day the timer ran
    attendance.lost_last_seen_on = attendance.last_seen_on
    return when


def next_wakeup(items: Iterable[Item], attendance: Attendance, silence_days: int, *others: date | None) -> date | None:
    """The earliest day a timer has something to do for this subject (None: nothing, ever)."""
    items = list(items)
    dates: list[date] = list(d for d in others if d is not None)
    for i in items:
        if i.status is Status.planned:
            dates.append(i.window_start)
        if i.status in (Status.planned, Status.due):
            dates.append(i.overdue_on)
    if attendance.lost_since is None:
        when = lost_on(items, attendance, silence_days)
        if when is not None:
            dates.append(when)
    return min(dates) if dates else None


@dataclass(slots=True)
class Slot:
    """A requirement being worked out by a rule function (mutable until frozen into a Requirement)."""

    kind: ScheduleKind
    test: InfantTest | None
    window_start: date
    window_end: date
    grace_days: int
    #: routine slots supersede each other; "at once" slots (confirmatory, repeat) do not
    routine: bool = True
    satisfied_on: date | None = None
    cancel_reason: str | None = None
    label: str | None = None

    @property
    def open(self) -> bool:
        return self.satisfied_on is None and self.cancel_reason is None

    def requirement(self) -> Requirement:
        return Requirement(
            self.kind,
            self.test,
            self.window_start,
            self.window_end,
            self.window_end + timedelta(days=self.grace_days),
            self.satisfied_on,
            self.cancel_reason,
            self.label or labels.of_kind(self.kind),
        )


def match_routine(slots: list[Slot], on: date, accepts, early_tolerance_days: int) -> Slot | None:
    """A sample taken `on` meets the latest-opening open routine slot that `accepts` it and whose
    window has opened (less a small tolerance for an early visit). Earlier open routine slots are
    then superseded: a 6-week NAT never done cannot be done any more once the 9-month NAT is."""
    tolerance = timedelta(days=early_tolerance_days)
    candidates = [s for s in slots if s.routine and s.open and accepts(s) and s.window_start - tolerance <= on]
    if not candidates:
        return None
    chosen = max(candidates, key=lambda s: s.window_start)
    chosen.satisfied_on = on
    for s in slots:
        if s.routine and s.open and accepts(s) and s.window_start < chosen.window_start:
            s.cancel_reason = "superseded"
    return chosen


def cancel_open(slots: Iterable[Slot], reason: str) -> None:
    for s in slots:
        if s.open:
            s.cancel_reason = reason


def frozen(slots: Iterable[Slot]) -> list[Requirement]:
    return [s.requirement() for s in slots]


__all__ = [
    "ENTERED_IN_ERROR",
    "NO_LONGER_REQUIRED",
    "OPEN",
    "Attendance",
    "Item",
    "Requirement",
    "Slot",
    "Status",
    "Transition",
    "add_months",
    "cancel_open",
    "check_lost",
    "frozen",
    "item_id",
    "lost_on",
    "match_routine",
    "next_wakeup",
    "no_longer_required",
    "overdue_snapshot",
    "reconcile",
    "restate",
    "tick",
    "due_snapshot",
    "voided_items",
    "withdrawn_items",
]
