"""Use cases of the followup service: follow the enrolment stream, take EMR infant events, answer
reads. The durable timers are in `timers.py`.

Each use case runs in one transaction: lock the cases (mother before infants), apply the facts,
save, and write the resulting events to the outbox, so a state change and its events commit
together or not at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
    ClientDied,
    ClientEnrolled,
    ClientEvent,
    ClientTransferredOut,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    HivTestResult,
    MaternalOutcome,
    StatusAtEnrolment,
    ViralLoadRecorded,
)
from pmtct_events.followup import (
    ClientLostToFollowUp,
    ClientViralLoadDue,
    ClientViralLoadOverdue,
    FinalOutcome,
    InfantArtInitiated,
    InfantFeedingRecorded,
    InfantFinalOutcomeRecorded,
    InfantFollowUpStarted,
    InfantProphylaxisRecorded,
    InfantTest,
    InfantTestDue,
    InfantTestOverdue,
    InfantTestResulted,
    InfantVisitRecorded,
    ScheduleItem,
    SubjectType,
)
from servicekit import outbox
from servicekit.app import Runtime
from servicekit.auth import Principal
from servicekit.identifiers import ref_hash
from servicekit.ingest import EventStatus, check_batch_size, fingerprint, is_conflict
from servicekit.problems import Problem

from . import repository as repo
from .cases import (
    InfantCase,
    MotherCase,
    RecordedEvent,
    TickReport,
    breastfeeding_until,
    exposure_start,
)
from .eid_schedule import MotherAtDelivery, breastfeeding_stopped_on, high_risk_reasons
from .schedule import Item, Transition
from .schemas import (
    INFANT_EVENT,
    EventResult,
    FinalOutcomePublic,
    InfantEventBase,
    InfantPublic,
    InfantRecordPublic,
    IngestReply,
    ScheduleItemPublic,
    TestResultPublic,
    Urgency,
    Worklist,
    WorklistEntry,
)
from .settings import Settings

log = logging.getLogger(__name__)

GESTATION_WEEKS = 40

# --- the enrolment stream ------------------------------------------------------------------------


async def prepare_enrolment_events(session: AsyncSession, items: Sequence[tuple[CloudEvent, Event]]) -> None:
    """The consumer's batch hook: lock (or create) the mothers of a transaction's events at once,
    so that each event finds its mother held (`repo.hold_mothers`) and her row is written once."""
    await repo.hold_mothers(session, ((e.client_id, e.facility_id) for _, e in items))  # type: ignore[attr-defined]


async def on_enrolment_event(session: AsyncSession, ce: CloudEvent, event: ClientEvent, settings: Settings) -> None:
    """Apply a mother event: update her case; when it changes what her infants depend on (a
    delivery, her diagnosis, her death), start follow-up for infants it makes HIV-exposed and
    recompute theirs; then recompute her own viral-load schedule. Her row and items are written as
    the transaction commits (the events of a batch before it see her case as they left it)."""
    day = settings.clock.local_day(event.occurred_at)
    held = await repo.hold_mothers(session, [(event.client_id, event.facility_id)])
    mother = held.cases[event.client_id]
    diagnosed_before = mother.positive_since
    infant_inputs = (mother.positive_since, mother.died_on, mother.delivered_on)
    newborns = apply_to_mother(mother, event, day)
    if newborns:
        await repo.add_infants(session, mother.client_id, newborns)
    out: list[Event] = []
    if newborns or infant_inputs != (mother.positive_since, mother.died_on, mother.delivered_on):
        infants = await repo.lock_infants_of(session, mother.client_id, settings.timezone)
        for infant in infants.values():
            delivery = event if isinstance(event, DeliveryRecorded) and infant.facts.birth_date == day else None
            changed, events = follow_infant(infant, mother, event, delivery, diagnosed_before, settings)
            if changed:
                out += events
                wakeup = infant.next_wakeup(settings.eid, settings.lost_to_follow_up_days)
                await repo.save_infant(session, infant, wakeup, settings.timer_settle_s)
        mother.breastfeeding_until = breastfeeding_until(mother, list(infants.values()))
    mother.recompute(settings.mother_viral_load)
    repo.keep_mother(session, mother, mother.next_wakeup(settings.lost_to_follow_up_days), settings.timer_settle_s)
    await outbox.add(session, out, correlation_id=ce.correlation_id or ce.id, causation_id=ce.id)


def apply_to_mother(mother: MotherCase, event: ClientEvent, day: date) -> list[dict[str, Any]]:
    """Update what follow-up knows of the mother; returns the rows of newly delivered infants."""
    mother.attendance.seen(day)
    newborns: list[dict[str, Any]] = []
    match event:
        case ClientEnrolled():
            if mother.facility_id != event.facility_id:
                mother.facility_id = event.facility_id
                for item in mother.items:  # her open follow-ups move to the facility she enrolled at
                    item.changed = item.changed or item.open
            if mother.transferred_out_on is not None and day >= mother.transferred_out_on:
                mother.transferred_out_on = None  # enrolled again (transfer in): back in care
            if event.hiv_status is HivStatus.positive:
                _mark_positive(mother, event.hiv_status_known_since or day)
            elif mother.hiv_status is HivStatus.unknown:
                mother.hiv_status = event.hiv_status
            if event.on_art:
                _art_started(mother, event.art_start_date or day)
            if event.status_at_enrolment is StatusAtEnrolment.pregnant:
                mother.edd = event.edd or _edd(day, event.gestation_weeks) or mother.edd
        case AncVisitRecorded():
            if mother.edd is None:
                mother.edd = _edd(day, event.gestation_weeks)
        case HivTestRecorded():
            if event.result is HivTestResult.positive:
                _mark_positive(mother, day)
            elif event.result is HivTestResult.negative and mother.hiv_status is not HivStatus.positive:
                mother.hiv_status = HivStatus.negative
        case ArtInitiated():
            _art_started(mother, day)
        case ViralLoadRecorded():
            _viral_load(mother, day, event.copies_per_ml)
        case DeliveryRecorded():
            if mother.delivered_on is None or day > mother.delivered_on:
                mother.delivered_on = day
            if event.mother_hiv_status is HivStatus.positive:
                _mark_positive(mother, event.mother_diagnosed_on or mother.positive_since or day)
            if event.mother_art_start_date is not None:
                _art_started(mother, event.mother_art_start_date)
            if event.mother_latest_viral_load is not None:
                _viral_load(mother, event.mother_latest_viral_load.on, event.mother_latest_viral_load.copies_per_ml)
            if event.maternal_outcome is MaternalOutcome.died:
                _died(mother, day)
            newborns = [
                {
                    "infant_id": i.infant_id,
                    "client_id": event.client_id,
                    "facility_id": event.facility_id,
                    "ref_hash": i.ref_hash,
                    "birth_date": day,
                    "sex": i.sex.value,
                    "birth_weight_g": i.birth_weight_g,
                }
                for i in event.infants
                if i.outcome is BirthOutcome.live_birth
            ]
        case ClientTransferredOut():
            mother.transferred_out_on = day
        case ClientDied():
            _died(mother, day)
    return newborns


def _mark_positive(mother: MotherCase, on: date) -> None:
    mother.hiv_status = HivStatus.positive
    if mother.positive_since is None or on < mother.positive_since:
        mother.positive_since = on


def _art_started(mother: MotherCase, on: date) -> None:
    if mother.art_start_date is None or on < mother.art_start_date:
        mother.art_start_date = on


def _viral_load(mother: MotherCase, on: date, copies: int) -> None:
    if (on, copies) not in mother.viral_loads:
        mother.viral_loads = sorted([*mother.viral_loads, (on, copies)])


def _died(mother: MotherCase, on: date) -> None:
    if mother.died_on is None or on < mother.died_on:
        mother.died_on = on


def _edd(day: date, gestation_weeks: int | None) -> date | None:
    return None if gestation_weeks is None else day + timedelta(weeks=GESTATION_WEEKS - gestation_weeks)


def follow_infant(
    infant: InfantCase,
    mother: MotherCase,
    event: ClientEvent,
    delivery: DeliveryRecorded | None,
    diagnosed_before: date | None,
    settings: Settings,
) -> tuple[bool, list[Event]]:
    """What a mother event means for one of her infants: a mother's death ends breastfeeding; a
    positive mother (at delivery, or diagnosed while breastfeeding) starts its follow-up."""
    rules = settings.eid
    changed = False
    out: list[Event] = []
    mother_died_on = max(mother.died_on, infant.facts.birth_date) if mother.died_on else None
    if mother_died_on is not None and infant.facts.mother_died_on != mother_died_on:
        infant.facts = replace(infant.facts, mother_died_on=mother_died_on)
        changed = True
    if not infant.in_follow_up:
        start = exposure_start(infant.facts.birth_date, mother, breastfeeding_stopped_on(infant.facts), rules)
        if start is None or infant.facts.died_on is not None:
            return changed, out
        context = _context_at_delivery(infant, mother, delivery, diagnosed_before)
        reasons = high_risk_reasons(context, rules)
        decided = infant.start_follow_up(start, reasons, rules)
        out.append(
            InfantFollowUpStarted(
                facility_id=infant.facility_id,
                occurred_at=event.occurred_at,
                infant_id=infant.infant_id,
                client_id=infant.client_id,
                birth_date=infant.facts.birth_date,
                high_risk=bool(reasons),
                prophylaxis=infant.prophylaxis,
                plan=[_schedule_item(i) for i in infant.items if i.open],
                high_risk_reasons=reasons,
                follow_up_from=start,
            )
        )
        if decided is not None:
            out.append(outcome_event(infant, *decided, settings))
        return True, out
    if changed:
        decided = infant.recompute(rules)
        if decided is not None:
            out.append(outcome_event(infant, *decided, settings))
    return changed, out


def _context_at_delivery(
    infant: InfantCase, mother: MotherCase, delivery: DeliveryRecorded | None, diagnosed_before: date | None
) -> MotherAtDelivery:
    """The delivery event's account of the mother when it has one, else follow-up's own record.
    A diagnosis first known from this very delivery is dated by the delivery's own field, or unknown."""
    birth = infant.facts.birth_date
    vl = mother.latest_viral_load(birth)
    if delivery is not None:
        if delivery.mother_latest_viral_load is not None:
            vl = (delivery.mother_latest_viral_load.on, delivery.mother_latest_viral_load.copies_per_ml)
        return MotherAtDelivery(
            delivered_on=birth,
            diagnosed_on=delivery.mother_diagnosed_on or diagnosed_before,
            art_start_date=delivery.mother_art_start_date or mother.art_start_date,
            viral_load_copies=vl[1] if vl else None,
            viral_load_on=vl[0] if vl else None,
        )
    return MotherAtDelivery(
        delivered_on=birth,
        diagnosed_on=mother.positive_since,
        art_start_date=mother.art_start_date,
        viral_load_copies=vl[1] if vl else None,
        viral_load_on=vl[0] if vl else None,
    )


def _schedule_item(i: Item) -> ScheduleItem:
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


# --- POST /v1/events: EMR infant events ----------------------------------------------------------


@dataclass(slots=True)
class Checked:
    """A posted event that passed validation and authorization, waiting for the domain checks."""

    index: int
    event: InfantEventBase
    content_hash: str
    ref_hash: str | None


_RETRYABLE = {"40001", "40P01", "23505"}  # serialization failure, deadlock, a concurrent same event_id


async def ingest(rt: Runtime, principal: Principal, raw_events: Sequence[Any]) -> IngestReply:
    settings: Settings = rt.settings  # type: ignore[assignment]
    check_batch_size(len(raw_events), settings.max_batch_events)
    checked = [check(i, raw, principal, rt, settings) for i, raw in enumerate(raw_events)]
    batch_id = uuid4()
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            async with rt.sessions() as session, session.begin():
                results = await apply_batch(session, checked, settings, batch_id)
            break
        except DBAPIError as exc:
            if attempt == attempts or _sqlstate(exc) not in _RETRYABLE:
                raise
            log.info("infant batch retried after %s", _sqlstate(exc))
    return IngestReply.of(batch_id, results)


def _sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if state:
            return str(state)
    return None


def check(index: int, raw: Any, principal: Principal, rt: Runtime, settings: Settings) -> Checked | EventResult:
    """Contract, facility and naming checks that need no database."""
    event_id = _event_id(raw)
    try:
        event = INFANT_EVENT.validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] in ("union_tag_invalid", "union_tag_not_found"):
            kind = raw.get("type") if isinstance(raw, dict) else None
            return EventResult.rejection(
                index,
                event_id,
                "unknown_type",
                f"Unknown infant event type {kind!r}; expected one of InfantProphylaxisRecorded, "
                "InfantFeedingRecorded, InfantTestResulted, InfantArtInitiated, InfantVisitRecorded, "
                "InfantOutcomeRecorded.",
            )
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        return EventResult.rejection(index, event_id, "invalid_event", f"{where}: {first['msg']}")
    if event.facility_id not in rt.registry:
        return EventResult.rejection(
            index, event.event_id, "unknown_facility", f"Facility {event.facility_id!r} is not registered."
        )
    if not principal.may_act_for(event.facility_id):
        return EventResult.rejection(
            index, event.event_id, "facility_forbidden", f"This client may not post for facility {event.facility_id!r}."
        )
    if (event.infant_id is None) == (event.infant_ref is None):
        return EventResult.rejection(
            index, event.event_id, "infant_not_named", "Name the infant by exactly one of infant_id or infant_ref."
        )
    if event.occurred_at > settings.clock.now() + timedelta(seconds=settings.clock_skew_s):
        return EventResult.rejection(index, event.event_id, "future_date", "occurred_at is in the future.")
    hashed = None
    if event.infant_ref is not None:
        if not settings.hmac_key:
            return EventResult.rejection(
                index,
                event.event_id,
                "infant_ref_unsupported",
                "This deployment cannot resolve infant_ref; use infant_id.",
            )
        hashed = ref_hash(settings.hmac_key, event.facility_id, event.infant_ref)
    # a deployment without the key takes infant_id only (above): its events hold no record number
    # for the key to hide, and the unkeyed HMAC keeps telling duplicates from conflicts
    return Checked(index, event, fingerprint(settings.hmac_key or "", event), hashed)


def _event_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return str(value)[:64] if value is not None else None


async def apply_batch(
    session: AsyncSession, checked: Sequence[Checked | EventResult], settings: Settings, batch_id: UUID | None = None
) -> list[EventResult]:
    ok = [c for c in checked if isinstance(c, Checked)]
    by_id, by_hash = await repo.resolve_infants(
        session,
        (c.event.infant_id for c in ok if c.event.infant_id is not None),
        (c.ref_hash for c in ok if c.ref_hash is not None),
    )
    keys = {c.index: by_id.get(c.event.infant_id) if c.event.infant_id else by_hash.get(c.ref_hash or "") for c in ok}
    mothers = await repo.lock_mothers(session, (k.client_id for k in keys.values() if k is not None))
    cases = await repo.lock_infants(session, (k.infant_id for k in keys.values() if k is not None), settings.timezone)
    # read under the locks: a concurrent post of the same events has committed or not started
    known = await repo.known_events(session, (c.event.event_id for c in ok))
    today = settings.clock.today()
    results: list[EventResult] = []
    rows: list[dict[str, Any]] = []
    out: list[Event] = []
    touched: dict[UUID, InfantCase] = {}
    for c in checked:
        if isinstance(c, EventResult):
            results.append(c)
            continue
        e = c.event
        prior = known.get(e.event_id)
        if prior is not None:
            recorded_hash, infant_id = prior
            if is_conflict(c.content_hash, recorded_hash):
                results.append(EventResult.conflict(c.index, e.event_id))
            else:
                results.append(
                    EventResult(
                        index=c.index, event_id=str(e.event_id), status=EventStatus.duplicate, infant_id=infant_id
                    )
                )
            continue
        key = keys[c.index]
        case = cases.get(key.infant_id) if key is not None else None
        if case is None:
            named = f"infant_id {e.infant_id}" if e.infant_id else f"infant_ref at {e.facility_id}"
            results.append(
                EventResult.rejection(
                    c.index,
                    e.event_id,
                    "unknown_infant",
                    f"No delivery with this {named} is known to follow-up. If its delivery was posted to "
                    "enrolment moments ago, retry shortly.",
                )
            )
            continue
        day = settings.clock.local_day(e.occurred_at)
        problem = domain_problem(case, e, day)
        if problem is not None:
            results.append(EventResult.rejection(c.index, e.event_id, *problem, infant_id=case.infant_id))
            continue
        catalog = catalog_event(case, e, day)
        if catalog is not None:
            out.append(catalog)
        case.record(RecordedEvent(e.type, day, today, e.data.model_dump(mode="json")))  # type: ignore[attr-defined]
        touched[case.infant_id] = case
        rows.append(
            {
                "event_id": e.event_id,
                "content_hash": c.content_hash,
                "infant_id": case.infant_id,
                "facility_id": e.facility_id,
                "type": e.type,  # type: ignore[attr-defined]
                "occurred_at": e.occurred_at,
                "data": e.data.model_dump(mode="json"),  # type: ignore[attr-defined]
            }
        )
        known[e.event_id] = (c.content_hash, case.infant_id)
        results.append(
            EventResult(index=c.index, event_id=str(e.event_id), status=EventStatus.accepted, infant_id=case.infant_id)
        )
    for case in touched.values():
        decided = case.recompute(settings.eid)
        if decided is not None:
            out.append(outcome_event(case, *decided, settings))
        await repo.save_infant(
            session, case, case.next_wakeup(settings.eid, settings.lost_to_follow_up_days), settings.timer_settle_s
        )
    for client_id in sorted({c.client_id for c in touched.values()}):
        mother = mothers[client_id]
        siblings = [c for c in cases.values() if c.client_id == client_id]
        until = breastfeeding_until(mother, siblings)
        if until != mother.breastfeeding_until:
            mother.breastfeeding_until = until
            mother.recompute(settings.mother_viral_load)
            await repo.save_mother(session, mother, mother.next_wakeup(settings.lost_to_follow_up_days), None)
    await repo.add_events(session, rows)
    await outbox.add(session, out, correlation_id=batch_id)
    return sorted(results, key=lambda r: r.index)


def domain_problem(case: InfantCase, e: InfantEventBase, day: date) -> tuple[str, str] | None:
    if not case.in_follow_up:
        return (
            "infant_not_in_follow_up",
            "This infant is not HIV-exposed as far as the platform knows (its mother was not HIV-positive "
            "at delivery), so follow-up takes no events for it.",
        )
    if day < case.facts.birth_date:
        return "before_birth", f"occurred_at is before the infant's birth on {case.facts.birth_date}."
    if case.facts.died_on is not None and day > case.facts.died_on:
        return "after_death", f"occurred_at is after the infant's recorded death on {case.facts.died_on}."
    return None


def catalog_event(case: InfantCase, e: InfantEventBase, day: date) -> Event | None:
    """The catalog event of a posted infant event; an outcome becomes InfantFinalOutcomeRecorded
    through the recompute instead (at most once per infant)."""
    common = {
        "facility_id": e.facility_id,
        "occurred_at": e.occurred_at,
        "infant_id": case.infant_id,
        "client_id": case.client_id,
    }
    data = e.data  # type: ignore[attr-defined]
    match e.type:  # type: ignore[attr-defined]
        case "InfantProphylaxisRecorded":
            return InfantProphylaxisRecorded(**common, drug=data.drug, duration_weeks=data.duration_weeks)
        case "InfantFeedingRecorded":
            return InfantFeedingRecorded(**common, method=data.method)
        case "InfantTestResulted":
            earlier_nat = any(r.test is InfantTest.NAT and r.sampled_on <= day for r in case.facts.results)
            return InfantTestResulted(
                **common,
                test=data.test,
                result=data.result,
                confirmatory=data.confirmatory,
                age_days=(day - case.facts.birth_date).days,
                first_virologic=data.test is InfantTest.NAT and not earlier_nat,
            )
        case "InfantArtInitiated":
            return InfantArtInitiated(**common)
        case "InfantVisitRecorded":
            return InfantVisitRecorded(**common)
    return None


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
    elif row.final_outcome:
        status = row.final_outcome
    elif row.lost_since:
        status = "lost_to_follow_up"
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


async def worklist(session: AsyncSession, facility_id: str, as_of: date, limit: int) -> Worklist:
    rows = await repo.worklist(session, facility_id, as_of, limit + 1)
    entries = [
        WorklistEntry(
            item_id=r.item_id,
            subject_type=r.subject_type,
            subject_id=r.subject_id,
            client_id=r.client_id,
            action=r.kind,
            test=r.test,
            window_start=r.window_start,
            window_end=r.window_end,
            overdue_on=r.overdue_on,
            urgency=Urgency.overdue if as_of >= r.overdue_on else Urgency.due,
            days_overdue=max((as_of - r.overdue_on).days, 0),
            days_left_in_window=max((r.window_end - as_of).days, 0),
        )
        for r in rows[:limit]
    ]
    return Worklist(
        facility_id=facility_id, as_of=as_of, count=len(entries), truncated=len(rows) > limit, items=entries
    )
