"""Mother events applied as the consumer applies a batch (one transaction, the `prepare` hook, then
each event in order) leave the same cases, schedules and events as the same events one by one:
later events of a batch see what earlier ones did to their mother and her infants."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from followup_support import SIM_START, Mother, live_infant, new_mother, well_treated
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from followup import stream
from followup.repository import FollowupUnit
from followup.schedule import add_months
from pmtct_events import CloudEvent
from pmtct_events.enrolment import ClientEvent, DeliveredInfant, HivStatus
from servicekit import uow

B = SIM_START
#: bookkeeping columns, not what the events established
_STAMPS = {
    "client_id",
    "infant_id",
    "subject_id",
    "item_id",
    "settle_until",
    "updated_at",
    "created_at",
    # the CloudEvent id of each twin's delivery
    "delivery_event_id",
}


async def test_one_batch_with_enrolment_delivery_and_later_events_gives_the_schedule_of_one_by_one(followup) -> None:
    def programme(mother: Mother, baby: DeliveredInfant) -> list[ClientEvent]:
        return [
            mother.enrolled(B - timedelta(days=180)),
            mother.viral_load(B - timedelta(days=30), copies=2000),
            mother.delivered(B, [baby], **well_treated(B)),
            mother.viral_load(add_months(B, 3)),
            mother.died(add_months(B, 17)),
        ]

    one_by_one, batched = await _twins(followup, programme)

    assert batched == one_by_one
    mother_items, infant_items = batched["mother_items"], batched["infant_items"]
    assert {i["status"] for i in mother_items} >= {"satisfied", "cancelled"}
    # her death moved the final test; the one it replaces, never announced, is not kept
    assert [(i["kind"], i["status"]) for i in infant_items if i["kind"] == "final_test"] == [
        ("final_test", "planned"),
    ]


async def test_a_mother_diagnosed_later_in_the_batch_of_her_delivery_starts_her_infants_follow_up(followup) -> None:
    def programme(mother: Mother, baby: DeliveredInfant) -> list[ClientEvent]:
        return [
            mother.enrolled(B - timedelta(days=180), hiv_status=HivStatus.negative),
            mother.delivered(B, [baby], hiv_status=HivStatus.negative),
            mother.tested(add_months(B, 5)),
            mother.viral_load(add_months(B, 6)),
        ]

    one_by_one, batched = await _twins(followup, programme)

    assert batched == one_by_one
    started = [p for name, p in batched["emitted"] if name == "InfantFollowUpStarted"]
    assert [p["follow_up_from"] for p in started] == [add_months(B, 5).isoformat()]


async def test_a_batch_of_several_mothers_interleaved_gives_each_her_own_schedule(followup) -> None:
    pairs = [(new_mother(), live_infant()) for _ in range(3)]
    events: list[ClientEvent] = []
    for mother, _ in pairs:
        events.append(mother.enrolled(B - timedelta(days=150)))
    for mother, baby in pairs:
        events += [mother.delivered(B, [baby], **well_treated(B)), mother.viral_load(add_months(B, 3))]
    await followup.apply_together(*events)

    twins = [(new_mother(), live_infant()) for _ in range(3)]
    for (mother, baby), (twin, twin_baby) in zip(pairs, twins, strict=True):
        await followup.apply(
            twin.enrolled(B - timedelta(days=150)),
            twin.delivered(B, [twin_baby], **well_treated(B)),
            twin.viral_load(add_months(B, 3)),
        )
        assert await _state(followup, mother, baby) == await _state(followup, twin, twin_baby)


async def test_a_batch_holds_its_mothers_locked_from_its_preload_until_it_commits(followup) -> None:
    known, first_seen = new_mother(), new_mother()
    await followup.apply(known.enrolled(B))
    events = [known.viral_load(B + timedelta(days=20)), first_seen.enrolled(B)]
    async with uow.begin(followup.sessions, FollowupUnit) as unit:
        await stream.preload(unit, events)
        assert await _locked_elsewhere(followup, known.client_id)
        for event in events:
            with unit.handling(CloudEvent.from_event(event)):
                await stream.on_enrolment_event(event, unit, followup.sim)
        assert await _locked_elsewhere(followup, known.client_id)
        await unit.commit()

    assert not await _locked_elsewhere(followup, known.client_id)
    assert (await _mother_row(followup, known.client_id))["viral_loads"] == [
        {"on": (B + timedelta(days=20)).isoformat(), "copies": 40}
    ]
    assert (await _mother_row(followup, first_seen.client_id))["last_seen_on"] == B


async def _locked_elsewhere(followup, client_id: UUID) -> bool:
    """Whether another transaction holds the mother's row lock (as the POST path and timers ask)."""
    try:
        async with followup.sessions() as session, session.begin():
            await session.execute(
                text("SELECT 1 FROM mothers WHERE client_id = :c FOR UPDATE NOWAIT"), {"c": client_id}
            )
    except DBAPIError:
        return True
    return False


async def test_an_event_that_changes_nothing_still_restarts_the_settle_delay(followup) -> None:
    mother = new_mother()
    await followup.apply(mother.enrolled(B))
    before = await _mother_row(followup, mother.client_id)

    await followup.apply(mother.enrolled(B), settings=followup.settings.model_copy(update={"timer_settle_s": 600}))

    after = await _mother_row(followup, mother.client_id)
    assert after["settle_until"] > before["settle_until"] + timedelta(seconds=500)
    assert _facts(after) == _facts(before)


async def _twins(followup, programme) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state a programme leaves applied one by one, and applied to a twin in one batch."""
    mother, baby = new_mother(), live_infant()
    await followup.apply(*programme(mother, baby))
    twin, twin_baby = new_mother(), live_infant()
    await followup.apply_together(*programme(twin, twin_baby))
    return await _state(followup, mother, baby), await _state(followup, twin, twin_baby)


async def _state(followup, mother: Mother, baby: DeliveredInfant) -> dict[str, Any]:
    """What follow-up holds and announced about a mother and her infant, without their ids."""
    async with followup.sessions() as session:

        async def rows(sql: str, key: UUID) -> list[dict[str, Any]]:
            return [_facts(r._mapping) for r in await session.execute(text(sql), {"key": key})]

        items = "SELECT * FROM schedule_items WHERE subject_id = :key ORDER BY window_start, kind"
        state = {
            "mother": await rows("SELECT * FROM mothers WHERE client_id = :key", mother.client_id),
            "infant": await rows("SELECT * FROM infants WHERE infant_id = :key", baby.infant_id),
            "mother_items": await rows(items, mother.client_id),
            "infant_items": await rows(items, baby.infant_id),
        }
    names = {str(mother.client_id): "mother", str(baby.infant_id): "baby"}
    state["emitted"] = [
        (name, _named(payload, names)) for name, payload in await followup.emitted([mother.client_id, baby.infant_id])
    ]
    return state


def _named(value: Any, names: dict[str, str]) -> Any:
    """A payload with its subjects' ids replaced by their roles and item ids left out."""
    if isinstance(value, dict):
        return {k: _named(v, names) for k, v in value.items() if k != "item_id"}
    if isinstance(value, list):
        return [_named(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


async def _mother_row(followup, client_id: UUID) -> dict[str, Any]:
    async with followup.sessions() as session:
        row = (await session.execute(text("SELECT * FROM mothers WHERE client_id = :c"), {"c": client_id})).one()
    return dict(row._mapping)


def _facts(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in _STAMPS}
