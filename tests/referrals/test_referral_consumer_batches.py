"""Several events for one subject in one consumer batch: the batch loads its subjects once
(`handlers.preload`) and writes once, as its unit of work commits, and what an early event changes
is what a later one in the same batch sees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka.structs import ConsumerRecord
from conftest import FACILITY, Api, feed_types
from referral_events import (
    ago,
    apply,
    by_service,
    due,
    enrolled,
    infant_event,
    lost,
    positive_test,
    referrals_of,
    result,
)
from sqlalchemy import text
from sqlalchemy.event import listen

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    ClientDied,
    ClientTransferredOut,
)
from pmtct_events.followup import (
    InfantArtInitiated,
    InfantVisitRecorded,
)
from referrals import handlers, timers
from referrals.repository import NeedAlreadyOpen, ReferralsUnit
from servicekit import uow


def record(ce: CloudEvent, topic: str, offset: int) -> ConsumerRecord:
    value, key = ce.value(), ce.key
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), ce.headers())


async def one_batch(api: Api, *events: Event) -> list[CloudEvent]:
    """Apply the events as the referrals consumer applies one poll: one unit of work, preloaded once.
    Fails if the batch fell back to one transaction per message."""
    consumer = api.app.state.runtime.consumers[0]
    preloaded: list[int] = []
    preload = consumer.preload

    async def counting(uow: Any, batch: Sequence[Event]) -> None:
        preloaded.append(len(batch))
        await preload(uow, batch)

    sent = [CloudEvent.from_event(e) for e in events]
    consumer.preload = counting
    try:
        await consumer.process_batch(
            [record(ce, e.topic(), i) for i, (ce, e) in enumerate(zip(sent, events, strict=True))]
        )
    finally:
        consumer.preload = preload
    assert preloaded == [len(events)], f"not applied as one batch: preload calls {preloaded}"
    return sent


def anc_visit(mother: UUID) -> AncVisitRecorded:
    return AncVisitRecorded(facility_id=FACILITY, occurred_at=ago(), client_id=mother, visit_number=3)


def art(mother: UUID) -> ArtInitiated:
    return ArtInitiated(facility_id=FACILITY, occurred_at=ago(), client_id=mother, regimen="TDF/3TC/DTG")


async def test_a_referral_opened_in_a_batch_is_closed_by_a_later_contact_in_the_same_batch(api: Api) -> None:
    mother = uuid4()
    await one_batch(api, lost(mother), anc_visit(mother))
    [r] = await referrals_of(api, mother)
    assert (r["referral_service"], r["status"], r["outcome_code"]) == (
        "community_tracing",
        "completed",
        "returned_to_care",
    )
    assert await feed_types(api, r["id"]) == ["ReferralCreated", "ReferralCompleted"]


async def test_a_contact_before_the_loss_in_a_batch_leaves_the_tracing_referral_open(api: Api) -> None:
    mother = uuid4()
    await one_batch(api, anc_visit(mother), lost(mother), lost(mother))
    assert by_service(await referrals_of(api, mother)) == {"community_tracing": [("requested", None)]}


async def test_an_infant_referred_and_met_within_one_batch_is_referred_again_by_what_follows(api: Api) -> None:
    baby, mother = uuid4(), uuid4()
    await one_batch(
        api,
        due(baby, mother),
        due(baby, mother),  # a repeat alert: the referral is open already
        result(baby, mother, "positive"),  # meets the EID need, opens an infant ART one
        infant_event(InfantVisitRecorded, baby, mother),
        infant_event(InfantArtInitiated, baby, mother),  # meets the infant ART need
        result(baby, mother, "positive"),  # confirmatory: on ART already, nothing opens
    )
    assert by_service(await referrals_of(api, baby)) == {
        "eid_sample_collection": [("completed", "test_resulted")],
        "infant_art": [("completed", "art_initiated")],
    }


async def test_art_started_in_the_batch_that_diagnoses_her_means_no_art_referral(api: Api) -> None:
    mother = uuid4()
    await one_batch(api, enrolled(mother, ago(10)), positive_test(mother, ago(9)), art(mother))
    async with api.sessions() as session:
        waits = await session.execute(
            text("SELECT count(*) FROM art_wait WHERE client_id = :id AND ended_at IS NULL"), {"id": mother}
        )
        assert waits.scalar_one() == 0  # ended by the ART start (kept, should it be voided)
    await timers.open_due_art_referrals(api.sessions, api.settings)
    assert await referrals_of(api, mother) == []


async def test_a_death_in_a_batch_cancels_what_the_batch_opened_and_stops_what_follows_until_she_enrols_again(
    api: Api,
) -> None:
    mother = uuid4()
    await api.create(subject_id=str(mother))
    await one_batch(
        api,
        enrolled(mother, ago(5)),
        lost(mother),
        ClientDied(facility_id=FACILITY, occurred_at=ago(), client_id=mother),
        lost(mother),  # she has died: nothing opens
    )
    assert by_service(await referrals_of(api, mother)) == {
        "family_planning": [("cancelled", "died")],
        "community_tracing": [("cancelled", "died")],
    }
    transferred = uuid4()
    await one_batch(
        api,
        ClientTransferredOut(facility_id=FACILITY, occurred_at=ago(1), client_id=transferred),
        lost(transferred),  # left: nothing opens
        enrolled(transferred, ago()),  # transferred back in: a current client again
        lost(transferred),
    )
    assert by_service(await referrals_of(api, transferred)) == {"community_tracing": [("requested", None)]}


async def test_contacts_in_a_batch_complete_the_tracing_for_loss_once_and_leave_other_needs_open(api: Api) -> None:
    mother = uuid4()
    await one_batch(api, lost(mother))
    manual = await api.create(subject_id=str(mother))
    await one_batch(api, anc_visit(mother), anc_visit(mother))
    found = await referrals_of(api, mother)
    assert by_service(found) == {
        "community_tracing": [("completed", "returned_to_care")],
        "family_planning": [("requested", None)],
    }
    [tracing] = [r for r in found if r["id"] != manual["id"]]
    assert await feed_types(api, tracing["id"]) == ["ReferralCreated", "ReferralCompleted"]


async def test_art_recorded_just_after_the_timer_referred_her_completes_that_referral(api: Api) -> None:
    """The batch loaded her while her ART wait was still running; the timer then took the wait and
    opened the referral before her ART start was applied: the start still meets it."""
    mother = uuid4()
    await one_batch(api, enrolled(mother, ago(1)), positive_test(mother, ago(1)))
    table = handlers.build(api.settings)
    event = art(mother)
    ce = CloudEvent.from_event(event)
    async with uow.begin(api.sessions, ReferralsUnit) as unit:
        await handlers.preload(unit, [event])
        async with api.sessions() as timer, timer.begin():
            await timer.execute(
                text("UPDATE art_wait SET due_at = now() - interval '1 minute' WHERE client_id = :id"), {"id": mother}
            )
        await until_referred(api, mother, lambda f: len(f) == 1)
        with unit.handling(ce):
            await table[ArtInitiated](event, unit)
        await unit.commit()
    assert by_service(await referrals_of(api, mother)) == {"art_initiation": [("completed", "art_initiated")]}


async def until_referred(api: Api, subject_id: UUID, done: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Run the ART timer until `done` holds for the subject's referrals (the service's own timer
    loop may be the one that opens it)."""
    for _ in range(100):
        await timers.open_due_art_referrals(api.sessions, api.settings)
        if done(await referrals_of(api, subject_id)):
            return
    raise AssertionError("the timer did not refer her")


async def statements_of_one_batch(api: Api, *events: Event) -> list[str]:
    """The statements the consumer's unit of work runs for one batch (inbox claims included)."""
    consumer = api.app.state.runtime.consumers[0]
    statements: list[str] = []

    class Counting(ReferralsUnit):
        def __init__(self, session: Any) -> None:
            super().__init__(session)
            listen(session.sync_session, "do_orm_execute", lambda ctx: statements.append(str(ctx.statement)))

    unit_of_work = consumer.unit_of_work
    consumer.unit_of_work = Counting
    try:
        await one_batch(api, *events)
    finally:
        consumer.unit_of_work = unit_of_work
    return statements


@pytest.mark.parametrize("subjects", [3, 40])
async def test_a_batch_costs_the_same_few_statements_however_many_referrals_it_opens_and_closes(
    api: Api, subjects: int
) -> None:
    mothers = [uuid4() for _ in range(subjects)]
    await one_batch(api, *(lost(m) for m in mothers))
    babies = [(uuid4(), uuid4()) for _ in range(subjects)]
    statements = await statements_of_one_batch(
        api,
        *(anc_visit(m) for m in mothers),  # closes each tracing referral
        *(due(b, m) for b, m in babies),  # opens an EID referral each
        *(anc_visit(uuid4()) for _ in range(subjects)),  # changes nothing
    )
    # claims, subjects' state and waits, their open referrals, the subjects known at the events'
    # facilities; referrals moved on and new ones, history; outbox; feed counter and entries
    assert len(statements) == 10, "\n".join(statements)
    for m in mothers:
        assert by_service(await referrals_of(api, m)) == {"community_tracing": [("completed", "returned_to_care")]}
    for b, _ in babies:
        assert by_service(await referrals_of(api, b)) == {"eid_sample_collection": [("requested", None)]}


async def test_a_need_opened_by_hand_after_the_batch_loaded_her_is_not_opened_twice(api: Api) -> None:
    """The batch loaded her with nothing open; a clinic then referred her for tracing by hand. The
    batch's automatic tracing referral finds the need open as it is written: the unit does not
    commit, and applied again (as the consumer replays a failed batch) it opens nothing."""
    mother = uuid4()
    event = lost(mother)
    await api.known(mother)  # known already: the clinic's referral does not wait for the batch's row
    async with uow.begin(api.sessions, ReferralsUnit) as unit:
        await handlers.preload(unit, [event])
        manual = await api.create(subject_id=str(mother), referral_service="community_tracing")
        with unit.handling(CloudEvent.from_event(event)):
            await handlers.build(api.settings)[type(event)](event, unit)
        with pytest.raises(NeedAlreadyOpen):
            await unit.commit()
    await apply(api, event)
    assert [r["id"] for r in await referrals_of(api, mother)] == [manual["id"]]
