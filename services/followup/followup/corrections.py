"""Corrections of mother events (issue 17): a ClientEventVoided names the CloudEvent ids of the
catalog events a voided EMR event had produced (`voided_ids`); follow-up recomputes the mother's
case, and her infants', from the events that stand, as if the voided one had never been posted.

Follow-up keeps every mother event it applies with its CloudEvent id (`mother_events`, written by
`repository.Mothers.keep`). A void marks the events it names voided, then:

- `replay` (pure) folds the events that stand, in the order they happened (`happened`), through
  the stream's own fold (`stream.apply_to_mother`), and decides for each of her infants what the stream would have
  decided: whether and from when it is HIV-exposed, and its high-risk reasons (from her facts
  dated on or before the birth: the delivery's own account of her, as known when it arrived, only
  when she had no enrolment by then, `stream.reads_delivery_account`);
- her case takes the replayed facts and items (`MotherCase.correct`, `schedule.restate`): an item
  a voided viral load had met is open again (announced again when its time comes); what only the
  voided facts called for, and had been announced overdue, is withdrawn (AnnouncementWithdrawn,
  `entered_in_error`);
- an infant a voided delivery registered was never born on the platform: it is ended (no
  schedule, no announcements, no final outcome; `InfantCase.end`), leaves her list, and its events
  held or posted later are refused `unknown_infant`;
- an infant no longer HIV-exposed (her only positive status was voided) is ended the same way but
  stays known (a later positive status starts its follow-up again); one still exposed gets its
  start and high-risk reasons as the facts that stand say (an infant born after a voided positive
  test is not high risk because of it) and its plan recomputed.

A void applied already changes nothing (no kept event is left to mark): redelivery is harmless.
Mothers whose facts were kept before corrections existed (`facts_from_events` false, migration
0009) cannot be recomputed from events; the void is logged and her facts stay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pmtct_events.enrolment import EVENTS as ENROLMENT_EVENTS
from pmtct_events.enrolment import ClientEvent, ClientEventVoided
from pmtct_events.followup import HighRiskReason

from . import repository as repo
from . import stream
from .cases import InfantCase, MotherCase, breastfeeding_until, exposure_start
from .eid_schedule import EidRules, breastfeeding_stopped_on, high_risk_reasons, prophylaxis_for
from .mother_schedule import MotherRules
from .settings import Settings

log = logging.getLogger(__name__)

#: the mother events by type name, to read kept events back
_MODELS: Mapping[str, type[ClientEvent]] = {m.event_name: m for m in ENROLMENT_EVENTS}  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Standing:
    """A kept mother event that is not voided: its CloudEvent id, the event, its local day."""

    event_id: UUID
    event: ClientEvent
    day: date


@dataclass(frozen=True, slots=True)
class Newborn:
    """What `replay` needs of one of her infants."""

    infant_id: UUID
    birth_date: date
    #: the DeliveryRecorded (CloudEvent id) that registered it; None: registered before corrections
    delivery_event_id: UUID | None
    #: a known end of breastfeeding (an infant not followed now: the stream's exposure rule takes it)
    breastfeeding_stopped_on: date | None = None


#: the order of her events that happened at the same instant (then their ids): her enrolment
#: first, then what was seen in care, her delivery, and what ends her follow-up
SAME_INSTANT_ORDER: Mapping[str, int] = {
    name: n
    for n, name in enumerate(
        (
            "ClientEnrolled",
            "AncVisitRecorded",
            "HivTestRecorded",
            "ArtInitiated",
            "ViralLoadRecorded",
            "PregnancyEnded",
            "DeliveryRecorded",
            "ClientTransferredOut",
            "ClientDied",
        )
    )
}


def happened(events: Sequence[Standing]) -> list[Standing]:
    """Her events in the order they happened: by occurred_at, then `SAME_INSTANT_ORDER`, then event
    id; the same set of events in any arrival order gives one order. Pure."""
    return sorted(
        events,
        key=lambda s: (
            s.event.occurred_at,
            SAME_INSTANT_ORDER.get(s.event.event_name, len(SAME_INSTANT_ORDER)),
            str(s.event_id),
        ),
    )


#: an infant's exposure as the events say: (follow-up start, high-risk reasons); None = not exposed
Exposure = tuple[date, list[HighRiskReason]] | None


@dataclass(slots=True)
class Replay:
    mother: MotherCase
    exposure: dict[UUID, Exposure]


def replay(
    client_id: UUID,
    facility_id: str,
    events: Sequence[Standing],
    infants: Sequence[Newborn],
    rules: EidRules,
    mother_rules: MotherRules,
    breastfeeding_until: date | None = None,
) -> Replay:
    """Her case as the events that stand make it, replayed in the order they happened (`happened`)
    as the stream applies them (her facts folded and her plan recomputed after each), and each
    infant's exposure as the stream would have decided it: from the event that first made it
    HIV-exposed after its delivery was known, high risk or not by all her facts.
    `breastfeeding_until`: what her infants' facts say of it (the stream learns it from them, not
    from her events). Pure."""
    events = happened(events)
    mother = MotherCase(client_id, events[0].event.facility_id if events else facility_id)
    mother.breastfeeding_until = breastfeeding_until
    exposure: dict[UUID, Exposure] = {i.infant_id: None for i in infants}
    born = {i.infant_id for i in infants if i.delivery_event_id is None}
    for s in events:
        stream.apply_to_mother(mother, s.event, s.day)
        mother.recompute(mother_rules)
        born |= {i.infant_id for i in infants if i.delivery_event_id == s.event_id}
        for infant in infants:
            if infant.infant_id not in born or exposure[infant.infant_id] is not None:
                continue
            start = exposure_start(infant.birth_date, mother, infant.breastfeeding_stopped_on, rules)
            if start is None:
                continue
            exposure[infant.infant_id] = (start, [])
    # whether an exposed infant is high risk follows all her facts, as the stream decides it again
    # with each of them (stream.follow_infant)
    for infant in infants:
        found = exposure[infant.infant_id]
        if found is not None:
            context = stream.mother_at_delivery(infant.birth_date, mother)
            exposure[infant.infant_id] = (found[0], high_risk_reasons(context, rules))
    return Replay(mother, exposure)


def standing(
    rows: Sequence[tuple[UUID, str, Mapping[str, Any]]], local_day: Callable[[datetime], date]
) -> list[Standing]:
    """Kept events as `replay` takes them (`Mothers.standing_events`' rows)."""
    out: list[Standing] = []
    for event_id, type_, data in rows:
        event = _MODELS[type_].model_validate(data)
        out.append(Standing(event_id, event, local_day(event.occurred_at)))
    return out


def out_of_order(last_seen_on: date | None, day: date) -> bool:
    """A fact of hers on `day` may have happened before facts applied to her already (seen last
    on `last_seen_on`): on or before that day (the same day's may be earlier in it). Pure."""
    return last_seen_on is not None and day <= last_seen_on


async def rebuild(mother: MotherCase, uow: repo.FollowupUnit, settings: Settings) -> None:
    """After a fact of hers that is `out_of_order`: her case replayed from her events that stand in
    the order they happened (`replay`, as a void does) and taken on (`MotherCase.rebuild`), so it
    ends as if they had come in that order; items only the earlier view called for and never
    announced are dropped (deleted as she is written). Her infants follow from her facts as the stream decides them."""
    mothers = uow.mothers
    kept = standing(await mothers.standing_events(mother.client_id), settings.clock.local_day)
    folded = replay(
        mother.client_id,
        mother.facility_id,
        kept,
        [],
        settings.eid,
        settings.mother_viral_load,
        mother.breastfeeding_until,
    ).mother
    mother.rebuild(folded)


def correct_infant(infant: InfantCase, mother: MotherCase, exposure: Exposure, on: date, settings: Settings) -> bool:
    """One infant after a void of her mother's events, on `on`: ended if no longer HIV-exposed,
    started if exposed now (as the stream starts it), else its start, high-risk reasons and
    prophylaxis as the events that stand say and its plan recomputed; what its plan no longer
    calls for, and had been announced, is withdrawn `entered_in_error`. True when it changed."""
    rules = settings.eid
    mother_died_on = max(mother.died_on, infant.facts.birth_date) if mother.died_on else None
    changed = infant.facts.mother_died_on != mother_died_on
    infant.facts = replace(infant.facts, mother_died_on=mother_died_on)
    if exposure is None:
        if infant.in_follow_up:
            infant.end(on, voided=False)
            return True
        return changed
    start, reasons = exposure
    if not infant.in_follow_up:
        infant.correcting = on
        decided = infant.start_follow_up(start, reasons, rules)
        infant.follow_up_started(settings.clock.now())
        infant.conclude(decided, settings.clock)
        infant.correcting = None
        return True
    if (start, reasons) != (infant.facts.follow_up_from, infant.high_risk_reasons):
        infant.high_risk_reasons = list(reasons)
        infant.prophylaxis = prophylaxis_for(bool(reasons), rules)
        infant.facts = replace(infant.facts, high_risk=bool(reasons), follow_up_from=start)
    infant.correcting = on
    infant.conclude(infant.recompute(rules), settings.clock)
    infant.correcting = None
    return True


async def on_client_event_voided(event: ClientEventVoided, uow: repo.FollowupUnit, settings: Settings) -> None:
    """Apply a ClientEventVoided (see the module): under her lock, her kept events it names are
    marked voided and her case and her infants' recomputed from the rest; nothing when it was
    applied already."""
    mothers = uow.mothers
    mother = (await mothers.hold([(event.client_id, event.facility_id)]))[event.client_id]
    by = uow.cause.id if uow.cause is not None else event.voided_event_id
    voided = await mothers.void_events(mother.client_id, event.voided_ids, by)
    if not voided:
        return
    if not mother.facts_from_events:
        log.warning(
            "client %s: a void of facts kept before corrections existed cannot be applied (%s, %d ids)",
            mother.client_id,
            event.voided_type,
            len(voided),
        )
        return
    clock, rules = settings.clock, settings.eid
    on = clock.local_day(event.occurred_at)
    infants = await mothers.infants_of(mother.client_id, settings.timezone)
    gone = [i for i in infants.values() if i.delivery_event_id in voided]
    for infant in gone:
        infant.end(on, voided=True)
        infant.withdraw(clock)
        uow.infants.save(infant, None, settings.timer_settle_s)
    await mothers.void_infants(mother.client_id, [i.infant_id for i in gone], by)
    rest = [i for i in infants.values() if i.delivery_event_id not in voided]
    kept = standing(await mothers.standing_events(mother.client_id), clock.local_day)
    newborns = [
        Newborn(
            i.infant_id,
            i.facts.birth_date,
            i.delivery_event_id,
            None if i.in_follow_up else breastfeeding_stopped_on(i.facts),
        )
        for i in rest
    ]
    folded = replay(
        mother.client_id,
        mother.facility_id,
        kept,
        newborns,
        rules,
        settings.mother_viral_load,
        None if gone else mother.breastfeeding_until,
    )
    mother.correct(folded.mother, on)
    for infant in rest:
        if correct_infant(infant, mother, folded.exposure[infant.infant_id], on, settings):
            stream.move_with_mother(infant, mother)
            infant.withdraw(clock)
            uow.infants.save(
                infant, infant.next_wakeup(rules, settings.lost_to_follow_up_days), settings.timer_settle_s
            )
    until = breastfeeding_until(mother, rest)
    if until != mother.breastfeeding_until:
        mother.breastfeeding_until = until
        mother.recompute(settings.mother_viral_load)
    mother.withdraw(clock)
    mothers.touch(mother, mother.next_wakeup(settings.lost_to_follow_up_days), settings.timer_settle_s)
    if gone:
        # what was held for them is refused now (`unknown_infant`), through the intake's own path
        await stream.release_held(uow, settings, {i.infant_id for i in gone})
