"""The events the followup service announces about a case: schedule items as published, final
outcomes, and what a timer pass found due, overdue or lost (`infant_announcements`,
`mother_announcements`).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pmtct_events import Event
from pmtct_events.followup import (
    ClientLostToFollowUp,
    ClientViralLoadDue,
    ClientViralLoadOverdue,
    FinalOutcome,
    InfantFinalOutcomeRecorded,
    InfantTestDue,
    InfantTestOverdue,
    ScheduleItem,
    SubjectType,
)

from .cases import (
    InfantCase,
    MotherCase,
    TickReport,
)
from .schedule import Item, Transition
from .settings import Settings

log = logging.getLogger(__name__)

GESTATION_WEEKS = 40


def schedule_item(i: Item) -> ScheduleItem:
    return ScheduleItem(
        item_id=i.item_id,
        kind=i.kind,
        test=i.test,
        window_start=i.window_start,
        window_end=i.window_end,
        overdue_on=i.overdue_on,
    )


def outcome_event(
    infant: InfantCase, outcome: FinalOutcome, on: date, settings: Settings
) -> InfantFinalOutcomeRecorded:
    return InfantFinalOutcomeRecorded(
        facility_id=infant.facility_id,
        occurred_at=settings.clock.local_midnight(on),
        infant_id=infant.infant_id,
        client_id=infant.client_id,
        outcome=outcome,
        birth_date=infant.facts.birth_date,
        age_days=max((on - infant.facts.birth_date).days, 0),
    )


# --- announcements of the timers -----------------------------------------------------------------


def infant_announcements(infant: InfantCase, report: TickReport, settings: Settings, now: datetime) -> list[Event]:
    """The events of one timer tick of an infant, in order: due/overdue tests, lost, outcome.
    The ART-start action has no test, so it moves through the worklist without an event.

    A due, overdue or lost announcement occurs when the platform makes it (`now`): for a backfill
    that is later than the dates it carries, and what it asks for (a sample, a tracing visit)
    is to be done from now on. A final outcome occurs on the day it was established."""
    common = {"facility_id": infant.facility_id, "infant_id": infant.infant_id, "client_id": infant.client_id}
    out = [
        _item_announcement(InfantTestDue, InfantTestOverdue, item, transition, now, **common, test=item.test)
        for item, transition in report.transitions
        if item.test is not None
    ]
    last_seen = infant.attendance.lost_last_seen_on or infant.facts.follow_up_from
    out += _lost(report, SubjectType.infant, infant.infant_id, infant.client_id, infant.facility_id, last_seen, now)
    if report.outcome is not None:
        out.append(outcome_event(infant, *report.outcome, settings))
    return out


def mother_announcements(mother: MotherCase, report: TickReport, now: datetime) -> list[Event]:
    """The events of one timer tick of a mother: viral loads due or overdue, lost."""
    common = {"facility_id": mother.facility_id, "client_id": mother.client_id}
    out = [
        _item_announcement(ClientViralLoadDue, ClientViralLoadOverdue, item, transition, now, **common)
        for item, transition in report.transitions
    ]
    last_seen = mother.attendance.lost_last_seen_on or report.lost_on
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
        )
    ]
