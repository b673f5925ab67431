"""The mother's follow-up against the real database, on the simulated calendar: her events
through the consumer's handler, time through the durable timers, what follow-up announces read
back from its outbox, and the Mentor Mother's worklist."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from followup_support import FACILITY, SIM_START, at, live_infant, new_mother, well_treated
from sqlalchemy import text

from followup.schedule import add_months
from pmtct_events.enrolment import AncVisitRecorded, ArtInitiated, ClientTransferredOut, HivStatus, PregnancyEnded

B = SIM_START


async def worklist(followup, as_of: date, facility: str = FACILITY) -> list[dict]:
    response = await followup.http.get(
        "/v1/worklist",
        params={"facility_id": facility, "as_of": as_of.isoformat(), "limit": 1000},
        headers=followup.headers("worklist:read", [facility]),
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def hers(items: list[dict], client_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(i["action"], i["urgency"]) for i in items if i["subject_id"] == str(client_id)]


async def test_an_inconclusive_test_calls_for_a_retest_due_in_14_days(followup) -> None:
    mother = new_mother()
    await followup.apply(
        mother.enrolled(B, HivStatus.unknown, gestation_weeks=12), mother.tested(B, "indeterminate", "anc")
    )
    only = [mother.client_id]

    await followup.fire(B + timedelta(days=13), only)
    assert "mother_hiv_retest_inconclusive" not in hers(await worklist(followup, B + timedelta(days=13)), only[0])
    await followup.fire(B + timedelta(days=14), only)

    due = [p for n, p in await followup.emitted(only) if n == "ClientHivTestDue"]
    assert [(p["kind"], p["window_start"]) for p in due] == [
        ("mother_hiv_test_anc1", B.isoformat()),
        ("mother_hiv_retest_inconclusive", (B + timedelta(days=14)).isoformat()),
    ]
    assert ("mother_hiv_retest_inconclusive", "due") in hers(await worklist(followup, B + timedelta(days=14)), only[0])


async def test_a_known_positive_woman_not_on_art_has_an_urgent_art_start_on_the_worklist_until_art_starts(
    followup,
) -> None:
    mother = new_mother()
    await followup.apply(mother.enrolled(B, HivStatus.positive, on_art=False, hiv_status_known_since=B))

    assert hers(await worklist(followup, B), mother.client_id)[0] == ("mother_art_start", "due")
    await followup.apply(
        ArtInitiated(facility_id=FACILITY, occurred_at=at(B + timedelta(days=2)), client_id=mother.client_id)
    )
    assert "mother_art_start" not in {
        a for a, _ in hers(await worklist(followup, B + timedelta(days=2)), mother.client_id)
    }


async def test_a_miscarriage_ends_that_pregnancys_viral_load_and_the_next_pregnancy_gets_its_own(followup) -> None:
    mother = new_mother()
    first, second = uuid.uuid4(), uuid.uuid4()
    enrolled = mother.enrolled(B, gestation_weeks=10).model_copy(update={"episode_id": first})
    lost = PregnancyEnded(
        facility_id=FACILITY,
        occurred_at=at(B + timedelta(weeks=4)),
        client_id=mother.client_id,
        episode_id=first,
        outcome="miscarriage",
        gestation_weeks=14,
    )
    again = mother.enrolled(B + timedelta(weeks=30), gestation_weeks=8).model_copy(update={"episode_id": second})

    async def viral_loads() -> list[tuple]:
        async with followup.sessions() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT window_start, status, cancel_reason FROM schedule_items WHERE subject_id = :s"
                        " AND kind = 'mother_viral_load' ORDER BY window_start"
                    ),
                    {"s": mother.client_id},
                )
            ).all()
        return [(r.window_start, r.status, r.cancel_reason) for r in rows]

    first_edd = B + timedelta(weeks=30)
    second_edd = B + timedelta(weeks=30 + 32)
    await followup.apply(enrolled, lost)
    assert await viral_loads() == [(first_edd - timedelta(weeks=6), "cancelled", "pregnancy_ended")]
    await followup.apply(again)
    # the lost pregnancy's viral load, never announced, is not kept once the next pregnancy is her
    # current one (schedule.reconcile): posted the other way round it would never have been planned
    assert await viral_loads() == [(second_edd - timedelta(weeks=6), "planned", None)]
    items = await followup.items(mother.client_id)
    assert items["mother_viral_load"]["window_start"] == second_edd - timedelta(weeks=6)


async def test_an_unsuppressed_viral_load_at_30_weeks_calls_for_adherence_support_then_a_repeat(followup) -> None:
    mother = new_mother()
    edd = B + timedelta(weeks=20)
    thirty_weeks = edd - timedelta(weeks=10)
    await followup.apply(mother.enrolled(B, gestation_weeks=20), mother.viral_load(thirty_weeks, 2400))
    only = [mother.client_id]

    await followup.fire(thirty_weeks, only)
    urgent = hers(await worklist(followup, thirty_weeks), mother.client_id)
    assert urgent[0] == ("mother_adherence_support", "due"), "an at-once action, first on her list"
    repeat_on = add_months(thirty_weeks, 3)
    await followup.fire(repeat_on, only)

    emitted = await followup.emitted(only)
    support = [p for n, p in emitted if n == "ClientAdherenceSupportDue"]
    assert [(p["window_start"], p["window_end"], p["copies_per_ml"]) for p in support] == [
        (thirty_weeks.isoformat(), repeat_on.isoformat(), 2400)
    ]
    repeats = [p for n, p in emitted if n == "ClientViralLoadDue" and p["kind"] == "mother_repeat_viral_load"]
    assert [p["window_start"] for p in repeats] == [repeat_on.isoformat()]


async def test_her_open_items_move_with_her_to_the_facility_she_transfers_to(followup) -> None:
    mother = new_mother()
    elsewhere = "FAC-MW-002"
    await followup.apply(
        mother.enrolled(B, HivStatus.unknown, gestation_weeks=12),
        AncVisitRecorded(
            facility_id=FACILITY, occurred_at=at(B + timedelta(days=1)), client_id=mother.client_id, visit_number=2
        ),
    )
    moved = mother.enrolled(B + timedelta(days=20), HivStatus.unknown).model_copy(update={"facility_id": elsewhere})
    await followup.apply(
        ClientTransferredOut(facility_id=FACILITY, occurred_at=at(B + timedelta(days=10)), client_id=mother.client_id),
        moved,
    )

    as_of = B + timedelta(days=21)
    assert hers(await worklist(followup, as_of), mother.client_id) == []
    assert ("mother_hiv_test_anc1", "overdue") in hers(await worklist(followup, as_of, elsewhere), mother.client_id)


async def test_her_infants_follow_up_moves_with_her(followup) -> None:
    mother, baby = new_mother(), live_infant()
    elsewhere = "FAC-MW-002"
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    moved = mother.enrolled(B + timedelta(days=20), status_at_enrolment="postnatal", gestation_weeks=None)
    await followup.apply(
        ClientTransferredOut(facility_id=FACILITY, occurred_at=at(B + timedelta(days=10)), client_id=mother.client_id),
        moved.model_copy(update={"facility_id": elsewhere}),
    )

    as_of = B + timedelta(weeks=5)
    there = [i["action"] for i in await worklist(followup, as_of, elsewhere) if i["subject_id"] == str(baby.infant_id)]
    assert "nat_6_weeks" in there, there
    assert not [i for i in await worklist(followup, as_of) if i["subject_id"] == str(baby.infant_id)]


async def _her_items(followup, client_id: uuid.UUID) -> list[tuple]:
    async with followup.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT kind, window_start, window_end, status, satisfied_on, cancel_reason FROM schedule_items"
                " WHERE subject_id = :s ORDER BY window_start, kind"
            ),
            {"s": client_id},
        )
        return [tuple(r) for r in rows]


async def test_a_viral_load_after_her_delivery_posted_before_it_ends_as_in_the_order_they_happened(followup) -> None:
    """Issue 17, "any order": a viral load taken ten days after her delivery, posted before the
    delivery (in its own unit or in the delivery's batch): she is rebuilt from her events in the
    order they happened, every row as in that order (her late-pregnancy viral load met late, on
    the day it was taken)."""
    edd = B + timedelta(weeks=20)
    ends: list[list[tuple]] = []
    for order in ("happened", "viral load first", "viral load first, one batch"):
        mother = new_mother()
        enrolled = mother.enrolled(B, gestation_weeks=20, art_start_date=B - timedelta(days=200))
        birth = mother.delivered(edd, [live_infant()], diagnosed_on=B - timedelta(days=200))
        after = mother.viral_load(edd + timedelta(days=10), 40)
        if order == "happened":
            await followup.apply(enrolled, birth, after)
        elif order == "viral load first":
            await followup.apply(enrolled, after, birth)
        else:
            await followup.apply(enrolled)
            await followup.apply_together(after, birth)
        ends.append(await _her_items(followup, mother.client_id))
    assert ends[1] == ends[0] and ends[2] == ends[0], ends
    late = [r for r in ends[0] if r[0] == "mother_viral_load" and r[1] < edd]
    assert [(r[3], r[4]) for r in late] == [("satisfied", edd + timedelta(days=10))], ends[0]


async def test_her_met_anc1_test_is_at_the_facility_that_follows_her_whichever_enrolment_arrived_first(
    followup,
) -> None:
    """Her items are her record, read where she is followed: a met item moves with her like an open
    one (issue 17, any order). Posted in order, the ANC1 test was met at her first facility before
    she transferred; posted the other way round, it was met after the transfer-in had placed her at
    the second: both end at the second facility, met on the day of her test."""
    elsewhere = "FAC-MW-002"
    ends = []
    for transfer_in_first in (False, True):
        mother = new_mother()
        first = mother.enrolled(B, HivStatus.unknown, gestation_weeks=12)
        test = mother.tested(B, "negative", "anc")
        moved = mother.enrolled(B + timedelta(days=20), HivStatus.unknown, gestation_weeks=15)
        moved = moved.model_copy(update={"facility_id": elsewhere})
        await followup.apply(*((moved, first, test) if transfer_in_first else (first, test, moved)))
        async with followup.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT kind, window_start, facility_id, status, satisfied_on FROM schedule_items"
                    " WHERE subject_id = :s ORDER BY window_start, kind"
                ),
                {"s": mother.client_id},
            )
            ends.append([tuple(r) for r in rows])
    assert ends[0] == ends[1]
    assert ("mother_hiv_test_anc1", B, elsewhere, "satisfied", B) in ends[0]
    assert {r[2] for r in ends[0]} == {elsewhere}
