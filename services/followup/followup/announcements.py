"""The events a case of the followup service raises (`cases.InfantCase` / `MotherCase` call these
builders from their own methods): the start of follow-up with its plan, final outcomes, and what a
timer tick found due, overdue or lost. Pure: the clock gives the local midnight of a day and "now".
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pmtct_events import Event
from pmtct_events.followup import (
    AnnouncementWithdrawn,
    ClientAdherenceSupportDue,
    ClientHivTestDue,
    ClientHivTestOverdue,
    ClientLostToFollowUp,
    ClientViralLoadDue,
    ClientViralLoadOverdue,
    FinalOutcome,
    InfantCareDue,
    InfantCareOverdue,
    InfantFinalOutcomeRecorded,
    InfantFollowUpResumed,
    InfantFollowUpStarted,
    InfantTestDue,
    InfantTestOverdue,
    ResumedBecause,
    ScheduleItem,
    ScheduleKind,
    SubjectType,
    WithdrawalReason,
    WithdrawnAnnouncement,
)
from servicekit.clock import Clock

from .mother_schedule import HIV_TEST_KINDS, VIRAL_LOAD_KINDS
from .schedule import Item, Transition

if TYPE_CHECKING:
    from .cases import InfantCase, MotherCase, TickReport


def schedule_item(i: Item) -> ScheduleItem:
    return ScheduleItem(
        item_id=i.item_id,
        kind=i.kind,
        test=i.test,
        window_start=i.window_start,
        window_end=i.window_end,
        overdue_on=i.overdue_on,
        label=i.label,
    )


def follow_up_started(infant: InfantCase, occurred_at: datetime) -> InfantFollowUpStarted:
    """An infant just became an HEI: its prophylaxis and open test plan, and why it is high risk."""
    return InfantFollowUpStarted(
        facility_id=infant.facility_id,
        occurred_at=occurred_at,
        infant_id=infant.infant_id,
        client_id=infant.client_id,
        birth_date=infant.facts.birth_date,
        high_risk=bool(infant.high_risk_reasons),
        prophylaxis=infant.prophylaxis,
        plan=[schedule_item(i) for i in infant.items if i.open],
        high_risk_reasons=infant.high_risk_reasons,
        follow_up_from=infant.facts.follow_up_from,
    )


def outcome_event(infant: InfantCase, outcome: FinalOutcome, on: date, clock: Clock) -> InfantFinalOutcomeRecorded:
    """A final outcome occurs on the day it was established (its local midnight)."""
    return InfantFinalOutcomeRecorded(
        facility_id=infant.facility_id,
        occurred_at=clock.local_midnight(on),
        infant_id=infant.infant_id,
        client_id=infant.client_id,
        outcome=outcome,
        birth_date=infant.facts.birth_date,
        age_days=max((on - infant.facts.birth_date).days, 0),
        provisional=outcome in (FinalOutcome.lost_to_follow_up, FinalOutcome.unknown),
        discharge_reason=infant.facts.discharge_reason if outcome is FinalOutcome.discharged else None,
    )


def resumed_event(infant: InfantCase, because: ResumedBecause, clock: Clock) -> InfantFollowUpResumed:
    """Her follow-up had ended (transfer out, discharge) and goes on, at the facility that has her."""
    return InfantFollowUpResumed(
        facility_id=infant.facility_id,
        occurred_at=clock.now(),
        infant_id=infant.infant_id,
        client_id=infant.client_id,
        because=because,
    )


#: the infant's care items that are announced without being tests (the missed visit is traced)
CARE_KINDS = frozenset({ScheduleKind.hei_visit, ScheduleKind.infant_cotrimoxazole})


# --- announcements of the timers -----------------------------------------------------------------


def infant_announcements(infant: InfantCase, report: TickReport, clock: Clock) -> list[Event]:
    """The events of one timer tick of an infant, in order: due/overdue tests and care items (an
    HEI visit, the cotrimoxazole start), lost, outcome. The ART start, prophylaxis and feeding
    items move through the worklist without an event of their own.

    A due, overdue or lost announcement occurs when the platform makes it (`now`): for a backfill
    that is later than the dates it carries, and what it asks for (a sample, a tracing visit)
    is to be done from now on. A final outcome occurs on the day it was established."""
    now = clock.now()
    common = {"facility_id": infant.facility_id, "infant_id": infant.infant_id, "client_id": infant.client_id}
    out: list[Event] = []
    for item, transition in report.transitions:
        if item.test is not None:
            out.append(
                _item_announcement(
                    InfantTestDue, InfantTestOverdue, item, transition, now, **common, test=item.test, label=item.label
                )
            )
        elif item.kind in CARE_KINDS:
            out.append(
                _item_announcement(InfantCareDue, InfantCareOverdue, item, transition, now, **common, label=item.label)
            )
    last_seen = infant.attendance.lost_last_seen_on or infant.facts.follow_up_from
    out += _lost(report, SubjectType.infant, infant.infant_id, infant.client_id, infant.facility_id, last_seen, now)
    if report.outcome is not None:
        out.append(outcome_event(infant, *report.outcome, clock))
    return out


def mother_announcements(mother: MotherCase, report: TickReport, clock: Clock) -> list[Event]:
    """The events of one timer tick of a mother, in order: viral loads and HIV tests due or
    overdue, enhanced adherence support due, lost. The ART start has the referrals service's ART
    wait beside it, and adherence support past its window has the repeat viral load's overdue: they
    move through the worklist without an event of their own."""
    now = clock.now()
    common = {"facility_id": mother.facility_id, "client_id": mother.client_id}
    out: list[Event] = []
    for item, transition in report.transitions:
        if item.kind in VIRAL_LOAD_KINDS:
            out.append(_item_announcement(ClientViralLoadDue, ClientViralLoadOverdue, item, transition, now, **common))
        elif item.kind in HIV_TEST_KINDS:
            out.append(_item_announcement(ClientHivTestDue, ClientHivTestOverdue, item, transition, now, **common))
        elif item.kind is ScheduleKind.mother_adherence_support and transition is Transition.due:
            load = mother.latest_viral_load(item.window_start)
            out.append(
                ClientAdherenceSupportDue(
                    **common,
                    occurred_at=now,
                    item_id=item.item_id,
                    kind=item.kind,
                    window_start=item.window_start,
                    window_end=item.window_end,
                    copies_per_ml=load[1] if load else None,
                )
            )
    last_seen = mother.attendance.lost_last_seen_on
    out += _lost(report, SubjectType.client, mother.client_id, mother.client_id, mother.facility_id, last_seen, now)
    return out


def _item_announcement(
    due: type[Event], overdue: type[Event], item: Item, transition: Transition, now: datetime, **subject: Any
) -> Event:
    if transition is Transition.due:
        return due(
            **subject,
            occurred_at=now,
            item_id=item.item_id,
            kind=item.kind,
            window_start=item.window_start,
            window_end=item.window_end,
        )
    return overdue(
        **subject,
        occurred_at=now,
        item_id=item.item_id,
        kind=item.kind,
        window_end=item.window_end,
        overdue_on=item.overdue_on,
    )


def _lost(
    report: TickReport,
    subject_type: SubjectType,
    subject_id: UUID,
    client_id: UUID,
    facility_id: str,
    last_seen_on: date | None,
    now: datetime,
) -> list[Event]:
    if report.lost_on is None:
        return []
    return [
        ClientLostToFollowUp(
            facility_id=facility_id,
            occurred_at=now,
            subject_type=subject_type,
            subject_id=subject_id,
            client_id=client_id,
            last_seen_on=last_seen_on or report.lost_on,
            lost_on=report.lost_on,
        )
    ]


# --- withdrawals ---------------------------------------------------------------------------------


def withdrawn_announcement(kind: ScheduleKind, has_test: bool, due: bool = False) -> WithdrawnAnnouncement | None:
    """The announcement an item of `kind` had: its due one (`due`) or its overdue one. None: no
    event announces it (prophylaxis; adherence support is announced due, never overdue)."""
    w = WithdrawnAnnouncement
    if kind in CARE_KINDS:
        due_one, overdue_one = w.InfantCareDue, w.InfantCareOverdue
    elif kind in VIRAL_LOAD_KINDS:
        due_one, overdue_one = w.ClientViralLoadDue, w.ClientViralLoadOverdue
    elif kind in HIV_TEST_KINDS:
        due_one, overdue_one = w.ClientHivTestDue, w.ClientHivTestOverdue
    elif kind is ScheduleKind.mother_adherence_support:
        return w.ClientAdherenceSupportDue if due else None
    elif has_test:
        due_one, overdue_one = w.InfantTestDue, w.InfantTestOverdue
    else:
        return None
    return due_one if due else overdue_one


def item_withdrawn(
    subject_type: SubjectType,
    subject_id: UUID,
    client_id: UUID,
    facility_id: str,
    item: Item,
    now: datetime,
    *,
    reason: WithdrawalReason,
    announced_for: date,
    met_on: date | None,
    due: bool = False,
) -> list[Event]:
    """An announcement of `item` withdrawn for `reason`: its due one (`due`, announced for the
    window's first day) or its overdue one (announced for its overdue day), `met_on` the day it was
    met, or the day of the void (`entered_in_error`). Nothing where no event announced it, where it
    was not met (`met_on` None), or for a missed HEI visit met late (`met_before_overdue` withdraws
    no care overdue). The four uses: an overdue item met before its overdue day
    (`schedule.withdrawn_items`, `met_before_overdue`, `item.satisfied_on`); an overdue item, or one
    announced due (`due`, `schedule.due_snapshot`), that the facts left after a void no longer call
    for (`schedule.voided_items`, `entered_in_error`, the void's day: what it opened, a sample
    collection, adherence support, a tracing, is taken back with it); an open item announced due
    or overdue that the facts no longer call for (`schedule.unneeded_items`, `no_longer_required`,
    the day it was learnt)."""
    announcement = withdrawn_announcement(item.kind, item.test is not None, due)
    if announcement is None or met_on is None:
        return []
    if reason is WithdrawalReason.met_before_overdue and announcement is WithdrawnAnnouncement.InfantCareOverdue:
        return []
    return [
        AnnouncementWithdrawn(
            facility_id=facility_id,
            occurred_at=now,
            subject_type=subject_type,
            subject_id=subject_id,
            client_id=client_id,
            announcement=announcement,
            reason=reason,
            item_id=item.item_id,
            kind=item.kind,
            announced_for=announced_for,
            met_on=met_on,
        )
    ]


def loss_withdrawn(
    subject_type: SubjectType,
    subject_id: UUID,
    client_id: UUID,
    facility_id: str,
    lost_on: date,
    seen_on: date,
    now: datetime,
    in_error: bool = False,
) -> Event:
    """A contact dated before the day she became lost (`Attendance.seen`): the loss withdrawn.
    `in_error`: the follow-up she was lost from was ended by a correction (`seen_on` is then the
    void's day)."""
    return AnnouncementWithdrawn(
        facility_id=facility_id,
        occurred_at=now,
        subject_type=subject_type,
        subject_id=subject_id,
        client_id=client_id,
        announcement=WithdrawnAnnouncement.ClientLostToFollowUp,
        reason=WithdrawalReason.entered_in_error if in_error else WithdrawalReason.seen_before_lost,
        announced_for=lost_on,
        met_on=seen_on,
    )
