"""The followup service's reads: an infant's record and a facility's worklist."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.followup import InfantTestResulted, ScheduleKind
from servicekit import pending
from servicekit.auth import Principal
from servicekit.problems import Problem

from . import repository as repo
from .eid_schedule import CLINICAL_OUTCOMES, EidRules
from .schemas import (
    FinalOutcomePublic,
    InfantPublic,
    InfantRecordPublic,
    ScheduleItemPublic,
    TestResultPublic,
    Urgency,
    Worklist,
    WorklistEntry,
)
from .settings import Settings

CLINICAL = frozenset(o.value for o in CLINICAL_OUTCOMES)

log = logging.getLogger(__name__)

# --- reads ---------------------------------------------------------------------------------------


async def infant_record(
    session: AsyncSession, infant_id: UUID, principal: Principal, settings: Settings
) -> InfantPublic:
    found = await repo.infant_record(session, infant_id)
    if found is None:
        raise Problem(404, "unknown_infant", f"No infant {infant_id} is known to follow-up.")
    row, items, events = found
    if not principal.may_act_for(row.facility_id):
        raise Problem(403, "facility_forbidden", f"This client may not read infants of facility {row.facility_id!r}.")
    if not row.in_follow_up:
        status = "not_in_follow_up"
    elif row.final_outcome in CLINICAL:
        status = row.final_outcome
    elif row.lost_since:
        status = "lost_to_follow_up"
    elif row.pending_feeding_status:
        status = "final_test_pending_feeding_status"
    else:
        status = "active"
    results = [
        TestResultPublic(
            event_id=e.event_id,
            sampled_at=e.occurred_at,
            age_days=max((settings.clock.local_day(e.occurred_at) - row.birth_date).days, 0),
            test=e.data["test"],
            result=e.data["result"],
            confirmatory=e.data["confirmatory"],
        )
        for e in events
        if e.type == InfantTestResulted.event_name
    ]
    records = [
        InfantRecordPublic(event_id=e.event_id, type=e.type, occurred_at=e.occurred_at, data=e.data)
        for e in events
        if e.type != InfantTestResulted.event_name
    ]
    return InfantPublic(
        infant_id=row.infant_id,
        client_id=row.client_id,
        facility_id=row.facility_id,
        birth_date=row.birth_date,
        sex=row.sex,
        in_follow_up=row.in_follow_up,
        follow_up_from=row.follow_up_from,
        status=status,
        high_risk=row.high_risk,
        high_risk_reasons=row.high_risk_reasons,
        prophylaxis_plan=row.prophylaxis,
        breastfeeding_stopped_on=row.breastfeeding_stopped_on,
        art_needed=row.art_needed,
        art_started_on=row.art_started_on,
        final_outcome=FinalOutcomePublic(outcome=row.final_outcome, on=row.final_outcome_on)
        if row.final_outcome
        else None,
        last_seen_on=row.last_seen_on,
        lost_since=row.lost_since,
        plan=[ScheduleItemPublic.model_validate(i._mapping) for i in items],
        results=results,
        records=records,
    )


async def worklist(
    session: AsyncSession, facility_id: str, as_of: date, limit: int, rules: EidRules | None = None
) -> Worklist:
    """`rules`: the clinical preset's infant rules, which name the items (WHO's by default)."""
    rules = rules or EidRules()
    rows = await repo.worklist(session, facility_id, as_of, limit + 1)
    entries = [worklist_entry(r, as_of, rules) for r in rows[:limit]]
    return Worklist(
        facility_id=facility_id, as_of=as_of, count=len(entries), truncated=len(rows) > limit, items=entries
    )


def worklist_entry(r: Any, as_of: date, rules: EidRules) -> WorklistEntry:
    """A worklist row (a schedule item's shown columns) as the day `as_of` sees it; `rules` name
    the items that have no label of their own."""
    return WorklistEntry(
        item_id=r.item_id,
        subject_type=r.subject_type,
        subject_id=r.subject_id,
        client_id=r.client_id,
        action=r.kind,
        label=r.label or rules.label(ScheduleKind(r.kind)),
        test=r.test,
        window_start=r.window_start,
        window_end=r.window_end,
        overdue_on=r.overdue_on,
        urgency=Urgency.overdue if as_of >= r.overdue_on else Urgency.due,
        days_overdue=max((as_of - r.overdue_on).days, 0),
        days_left_in_window=max((r.window_end - as_of).days, 0),
    )


async def accepted_event(session: AsyncSession, event_id: UUID) -> pending.EventState | None:
    """An infant event recorded here (GET /v1/events/{event_id}), with its infant's id."""
    row = await repo.recorded_event(session, event_id)
    if row is None:
        return None
    return pending.EventState(
        event_id=row.event_id,
        type=row.type,
        facility_id=row.facility_id,
        occurred_at=row.occurred_at,
        status="accepted",
        ids={"infant_id": str(row.infant_id)},
    )
