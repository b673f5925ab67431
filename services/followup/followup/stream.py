"""The enrolment stream: every mother event updates the mother's case and, through it, her
infants' (a delivery makes them HIV-exposed, her diagnosis or death changes their plan). One
consumer batch is one unit of work (`repository.FollowupUnit`): its mothers are held up front,
changed in memory by each event, and written once as the unit commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
    ClientDied,
    ClientEnrolled,
    ClientEvent,
    ClientEventVoided,
    ClientTransferredOut,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    HivTestResult,
    MaternalOutcome,
    PregnancyEnded,
    StatusAtEnrolment,
    ViralLoadRecorded,
)
from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.intake import Attempt

from . import corrections
from . import repository as repo
from .cases import (
    InfantCase,
    MotherCase,
    Pregnancy,
    breastfeeding_until,
    exposure_start,
    move_items,
)
from .eid_schedule import MotherAtDelivery, breastfeeding_stopped_on, high_risk_reasons
from .intake import INTAKE, InfantBatch, infant_keys
from .mother_schedule import GESTATION_WEEKS
from .settings import Settings

log = logging.getLogger(__name__)


async def preload(uow: repo.FollowupUnit, events: Sequence[ClientEvent]) -> None:
    """The consumer's batch preload: hold (lock, or create) the mothers of a batch's events in one
    statement; each handler then finds its mother in the unit's identity map."""
    await uow.mothers.hold((e.client_id, e.facility_id) for e in events)
    await uow.caseloads.get_many(e.client_id for e in events if isinstance(e, (ClientEnrolled, ClientTransferredOut)))


async def on_enrolment_event(event: ClientEvent, uow: repo.FollowupUnit, settings: Settings) -> None:
    """Apply a mother event: update her case; when it changes what her infants depend on (a
    delivery, her diagnosis, her death), start follow-up for infants it makes HIV-exposed and
    recompute theirs; then recompute her own viral-load schedule. Infants are saved here, under
    her lock; her row and items when the unit commits (`Mothers.flush`: the events of a batch
    after this one see her case as it left it). The events raised go to the outbox then too.

    Each event is kept with its CloudEvent id (`Mothers.keep`): a ClientEventVoided naming it
    recomputes her case from the events that stand (`corrections`), and so does an event dated on
    or before her latest (`corrections.rebuild`): her case does not depend on the order her facts
    arrived in."""
    if isinstance(event, ClientEventVoided):
        await corrections.on_client_event_voided(event, uow, settings)
        return
    day = settings.clock.local_day(event.occurred_at)
    mothers = uow.mothers
    mother = (await mothers.hold([(event.client_id, event.facility_id)]))[event.client_id]
    cause = uow.cause.id if uow.cause is not None else None
    if cause is not None:
        mothers.keep(mother.client_id, cause, event)
    infant_inputs = infant_inputs_of(mother)
    last_seen_on = mother.attendance.last_seen_on
    newborns = apply_to_mother(mother, event, day)
    rebuilt = cause is not None and mother.facts_from_events and corrections.out_of_order(last_seen_on, day)
    if rebuilt:
        # dated before what she had: her case as if her facts had come in the order they happened
        await corrections.rebuild(mother, uow, settings)
    for row in newborns:
        row["delivery_event_id"] = cause
    if newborns:
        await mothers.add_infants(mother.client_id, newborns, settings.timezone)
    followed: set[UUID] = set()
    if newborns or infant_inputs != infant_inputs_of(mother):
        infants = await mothers.infants_of(mother.client_id, settings.timezone)
        for infant in infants.values():
            was_followed = infant.in_follow_up
            moved = move_with_mother(infant, mother)
            if follow_infant(infant, mother, event, settings) or moved:
                # what only an earlier view of her facts called for (a high risk her earlier facts,
                # arrived late, rule out) is dropped by its recompute if never announced
                infant.withdraw(settings.clock)
                wakeup = infant.next_wakeup(settings.eid, settings.lost_to_follow_up_days)
                uow.infants.save(infant, wakeup, settings.timer_settle_s)
            if infant.in_follow_up and not was_followed:
                followed.add(infant.infant_id)
        mother.breastfeeding_until = breastfeeding_until(mother, list(infants.values()))
    mother.recompute(settings.mother_viral_load)
    mother.withdraw(settings.clock)
    mothers.touch(mother, mother.next_wakeup(settings.lost_to_follow_up_days), settings.timer_settle_s)
    if followed:
        await release_held(uow, settings, followed)


def infant_inputs_of(mother: MotherCase) -> tuple[Any, ...]:
    """What her infants' follow-up depends on: when one of these changes, theirs is recomputed
    (her diagnosis, death, delivery and facility; her ART, viral loads and tests, which decide
    whether an infant is high risk)."""
    return (
        mother.positive_since,
        mother.died_on,
        mother.delivered_on,
        mother.facility_id,
        mother.art_start_date,
        tuple(mother.viral_loads),
        tuple(mother.hiv_tests),
    )


#: who "posts" the held infant events the stream releases (the intake's Attempt needs a caller; the
#: facilities were checked when they were posted)
RELEASER = Principal(client_id="followup:held-events", scopes=frozenset())
NO_REGISTRY = FacilityRegistry([])


async def release_held(uow: repo.FollowupUnit, settings: Settings, infant_ids: set[UUID]) -> int:
    """Infant events held for infants now in follow-up (servicekit.pending), decided in this unit
    through the intake's own decide/write path, in the order they happened."""
    by_id, _ = await repo.resolve_infants(uow.session, infant_ids, ())
    keys = {k for i in by_id.values() for k in infant_keys(i.infant_id, i.ref_hash)}
    attempt = Attempt(settings, NO_REGISTRY, RELEASER, settings.clock.now(), uuid4())
    return await INTAKE.release(InfantBatch(attempt, settings), uow, keys)


def apply_to_mother(mother: MotherCase, event: ClientEvent, day: date) -> list[dict[str, Any]]:
    """Update what follow-up knows of the mother; returns the rows of newly delivered infants."""
    mother.seen(day)
    newborns: list[dict[str, Any]] = []
    match event:
        case ClientEnrolled():
            if mother.enrolled_on is None or day >= mother.enrolled_on:
                mother.enrolled_on = day  # her latest enrolment is where she is followed
                if mother.facility_id != event.facility_id:
                    mother.facility_id = event.facility_id
                    move_items(mother.items)  # her follow-up moves to the facility she enrolled at
            if mother.transferred_out_on is not None and day >= mother.transferred_out_on:
                mother.transferred_out_on = None  # enrolled again (transfer in): back in care
            if event.hiv_status is HivStatus.positive:
                _mark_positive(mother, event.hiv_status_known_since or day, day)
            elif event.hiv_status is HivStatus.negative:
                _tested(mother, event.hiv_status_known_since or day, HivTestResult.negative)
            if event.on_art:
                _art_started(mother, event.art_start_date or day)
            if event.status_at_enrolment is StatusAtEnrolment.pregnant:
                _pregnancy(mother, event, day, event.edd or _edd(day, event.gestation_weeks))
        case AncVisitRecorded():
            _pregnancy(mother, event, day, _edd(day, event.gestation_weeks))
        case PregnancyEnded():
            pregnancy = _pregnancy(mother, event, day, None)
            pregnancy.lost_on = min(pregnancy.lost_on or day, day)
        case HivTestRecorded():
            _tested(mother, day, event.result)
            if event.result is HivTestResult.positive:
                _mark_positive(mother, day, day)
        case ArtInitiated():
            _art_started(mother, day)
        case ViralLoadRecorded():
            _viral_load(mother, day, event.copies_per_ml)
        case DeliveryRecorded():
            if mother.delivered_on is None or day > mother.delivered_on:
                mother.delivered_on = day
            if reads_delivery_account(mother):
                if event.mother_hiv_status is HivStatus.positive:
                    _mark_positive(mother, event.mother_diagnosed_on or mother.positive_since or day, day)
                if event.mother_art_start_date is not None:
                    _art_started(mother, event.mother_art_start_date)
                if event.mother_latest_viral_load is not None:
                    vl = event.mother_latest_viral_load
                    _viral_load(mother, vl.on, vl.copies_per_ml)
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
            # a transfer out dated before her latest enrolment was followed by it: she is back in care
            if mother.enrolled_on is None or day >= mother.enrolled_on:
                mother.transferred_out_on = max(mother.transferred_out_on or day, day)
        case ClientDied():
            _died(mother, day)
    return newborns


def reads_delivery_account(mother: MotherCase) -> bool:
    """Whether a delivery's own account of her (`mother_hiv_status`, `mother_diagnosed_on`,
    `mother_art_start_date`, `mother_latest_viral_load`) is folded into her case: only when follow-up
    knows no enrolment of hers by then (her facts in the order they happened). Enrolment writes that
    account as it knew her when the delivery arrived, from the events it had recorded then, so it
    depends on their arrival order (a positive test dated before the delivery and posted after it is
    not in it; a test voided later still is); follow-up receives those same events and keeps them,
    so an infant's exposure and high risk (`mother_at_delivery`) follow her facts dated on or before
    the birth instead, whatever order they came in. Pure."""
    return mother.enrolled_on is None


def _mark_positive(mother: MotherCase, on: date, seen_on: date) -> None:
    """Positive since `on`, as the platform first heard on `seen_on` (the event's day)."""
    mother.hiv_status = HivStatus.positive
    if mother.positive_since is None or on < mother.positive_since:
        mother.positive_since = on
    if mother.positive_seen_on is None or seen_on < mother.positive_seen_on:
        mother.positive_seen_on = seen_on


def _tested(mother: MotherCase, on: date, result: HivTestResult) -> None:
    if result is HivTestResult.negative and mother.hiv_status is HivStatus.unknown:
        mother.hiv_status = HivStatus.negative
    if (on, result) not in mother.hiv_tests:
        mother.hiv_tests = sorted([*mother.hiv_tests, (on, result)])


def _pregnancy(mother: MotherCase, event: ClientEvent, day: date, edd: date | None) -> Pregnancy:
    """The pregnancy of the event's episode, seen on `day` (with the EDD the event dates it by)."""
    key = str(event.episode_id) if event.episode_id is not None else ""
    pregnancy = mother.pregnancies.get(key)
    if pregnancy is None:
        pregnancy = mother.pregnancies[key] = Pregnancy(day)
    pregnancy.saw(day, edd)
    return pregnancy


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


def move_with_mother(infant: InfantCase, mother: MotherCase) -> bool:
    """An infant still in follow-up moves with its mother to the facility she enrolled at (a
    transfer): its items go to that facility (its open ones to its worklist). True when it moved."""
    if infant.facility_id == mother.facility_id or infant.final_outcome is not None or not infant.in_follow_up:
        return False
    infant.facility_id = mother.facility_id
    move_items(infant.items)
    return True


def follow_infant(
    infant: InfantCase,
    mother: MotherCase,
    event: ClientEvent,
    settings: Settings,
) -> bool:
    """What a mother event means for one of her infants: a mother's death ends breastfeeding; a
    positive mother (at delivery, or diagnosed while breastfeeding) starts its follow-up. The
    infant raises what follows (InfantFollowUpStarted, a final outcome); True when it changed."""
    rules = settings.eid
    changed = False
    mother_died_on = max(mother.died_on, infant.facts.birth_date) if mother.died_on else None
    if mother_died_on is not None and infant.facts.mother_died_on != mother_died_on:
        infant.facts = replace(infant.facts, mother_died_on=mother_died_on)
        changed = True
    if not infant.in_follow_up:
        start = exposure_start(infant.facts.birth_date, mother, breastfeeding_stopped_on(infant.facts), rules)
        if start is None or infant.facts.died_on is not None:
            return changed
        decided = infant.start_follow_up(
            start, high_risk_reasons(mother_at_delivery(infant.facts.birth_date, mother), rules), rules
        )
        infant.follow_up_started(event.occurred_at)
        infant.conclude(decided, settings.clock)
        return True
    # a fact of hers dated before the birth may arrive after it (a backlog in any order): whether the
    # infant is high risk follows her facts, whenever they arrive
    reasons = high_risk_reasons(mother_at_delivery(infant.facts.birth_date, mother), rules)
    if infant.final_outcome is None and reasons != infant.high_risk_reasons:
        infant.revise_risk(reasons, rules)
        changed = True
    if changed:
        infant.conclude(infant.recompute(rules), settings.clock)
    return changed


def mother_at_delivery(birth: date, mother: MotherCase) -> MotherAtDelivery:
    """The mother at her infant's birth, from what follow-up holds of her facts (the delivery's own
    account of her only when follow-up knew no enrolment of hers: `reads_delivery_account`). Each
    is kept so that the same facts in any order give the same record (`MotherCase`), so the
    infant's risk does not depend on the order they arrived in."""
    vl = mother.latest_viral_load(birth)
    return MotherAtDelivery(
        delivered_on=birth,
        diagnosed_on=mother.positive_since,
        art_start_date=mother.art_start_date,
        viral_load_copies=vl[1] if vl else None,
        viral_load_on=vl[0] if vl else None,
        last_negative_test_on=mother.last_negative_before(mother.positive_since),
    )
