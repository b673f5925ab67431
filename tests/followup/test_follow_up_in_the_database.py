"""The follow-up use cases against the real database, on the simulated calendar (see conftest):
mother events through the consumer's handler, infant events through the POST's transaction, time
through the durable timers' pass, events read back from the outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from followup_support import FACILITY, SIM_START, live_infant, new_mother, well_treated
from sqlalchemy import text

from followup.schedule import add_months
from pmtct_events.enrolment import HivStatus

B = SIM_START
NAT = {"test": "NAT", "result": "negative", "confirmatory": False}


def weeks(n: float):
    return B + timedelta(weeks=n)


async def test_a_positive_mothers_delivery_starts_follow_up_with_its_prophylaxis_and_plan(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.enrolled(B - timedelta(days=200)), mother.delivered(B, [baby], **well_treated(B)))

    [(name, started)] = await followup.emitted([baby.infant_id])
    assert name == "InfantFollowUpStarted"
    assert started["client_id"] == str(mother.client_id) and started["birth_date"] == B.isoformat()
    assert started["high_risk"] is False
    assert started["prophylaxis"] == [{"drug": "NVP", "duration_weeks": 6, "from_week": 0, "until": None}]
    assert [(p["kind"], p["window_start"], p["label"]) for p in started["plan"]] == [
        ("infant_prophylaxis", B.isoformat(), "Prophylaxis: NVP from week 0"),
        ("nat_6_weeks", weeks(4).isoformat(), "NAT at 6 weeks"),
        ("hei_visit", weeks(6).isoformat(), "HEI visit at 6 weeks"),
        ("infant_cotrimoxazole", weeks(6).isoformat(), "Cotrimoxazole"),
        ("hei_visit", weeks(10).isoformat(), "HEI visit at 10 weeks"),
        ("hei_visit", weeks(14).isoformat(), "HEI visit at 14 weeks"),
        ("hei_visit", add_months(B, 6).isoformat(), "HEI visit at 6 months"),
        ("hei_visit", add_months(B, 9).isoformat(), "HEI visit at 9 months"),
        ("nat_9_months", add_months(B, 9).isoformat(), "NAT at 9 months"),
        ("hei_visit", add_months(B, 12).isoformat(), "HEI visit at 12 months"),
        ("hei_visit", add_months(B, 15).isoformat(), "HEI visit at 15 months"),
        ("final_test", add_months(B, 18).isoformat(), "Final HIV test"),
        ("hei_visit", add_months(B, 18).isoformat(), "HEI visit at 18 months"),
        ("record_feeding_status", add_months(B, 18).isoformat(), "Record feeding status"),
    ]


async def test_a_high_risk_infant_gets_enhanced_prophylaxis_a_birth_nat_and_its_reasons(followup) -> None:
    mother, baby = new_mother(), live_infant()
    # diagnosed and started on ART ten days before the birth (enrolment dates every positive status)
    started_on = B - timedelta(days=10)
    await followup.apply(mother.delivered(B, [baby], diagnosed_on=started_on, art_start_date=started_on))

    [(_, started)] = await followup.emitted([baby.infant_id])
    assert started["high_risk"] is True
    assert started["high_risk_reasons"] == ["art_under_4_weeks"], "WHO 2025: no VL is not a reason by itself"
    assert started["prophylaxis"] == [
        {"drug": "AZT+3TC+NVP", "duration_weeks": 6, "from_week": 0, "until": None},
        {"drug": "NVP", "duration_weeks": 52, "from_week": 6, "until": "mother_suppressed_or_breastfeeding_ends"},
    ]
    [birth_nat] = [p for p in started["plan"] if p["kind"] == "nat_birth"]
    assert birth_nat["window_start"] == B.isoformat()
    assert [(p["label"], p["window_start"]) for p in started["plan"] if p["kind"] == "infant_prophylaxis"] == [
        ("Prophylaxis: AZT+3TC+NVP from week 0", B.isoformat()),
        ("Prophylaxis: NVP from week 6", weeks(6).isoformat()),
    ]


async def test_an_hiv_negative_mothers_infant_is_not_followed_and_a_stillbirth_is_not_an_infant(followup) -> None:
    mother, baby, stillborn = new_mother(), live_infant(), live_infant(outcome="stillbirth")
    await followup.apply(mother.delivered(B, [baby, stillborn], hiv_status=HivStatus.negative))

    assert await followup.emitted([baby.infant_id, stillborn.infant_id]) == []
    record = await followup.infant(baby.infant_id)
    assert record["status"] == "not_in_follow_up" and record["plan"] == []
    response = await followup.http.get(f"/v1/infants/{stillborn.infant_id}", headers=followup.headers("worklist:read"))
    assert response.status_code == 404 and response.json()["code"] == "unknown_infant"


async def test_a_mother_diagnosed_while_breastfeeding_starts_her_infants_follow_up_at_her_diagnosis(followup) -> None:
    mother, baby = new_mother(), live_infant()
    diagnosed = add_months(B, 5)
    await followup.apply(mother.delivered(B, [baby], hiv_status=HivStatus.negative), mother.tested(diagnosed))

    [(name, started)] = await followup.emitted([baby.infant_id])
    assert name == "InfantFollowUpStarted"
    assert started["follow_up_from"] == diagnosed.isoformat() and started["high_risk"] is True
    assert "diagnosed_in_labour_or_postpartum" in started["high_risk_reasons"]
    tests = [p for p in started["plan"] if p["test"] is not None]
    assert [(p["kind"], p["window_start"]) for p in tests][:2] == [
        ("entry_nat", diagnosed.isoformat()),
        ("nat_9_months", add_months(B, 9).isoformat()),
    ]


async def test_a_mother_diagnosed_when_her_child_is_past_breastfeeding_age_does_not_make_it_exposed(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], hiv_status=HivStatus.negative), mother.tested(add_months(B, 25)))
    assert await followup.emitted([baby.infant_id]) == []


async def test_timers_announce_due_then_overdue_once_however_often_they_run(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    only = [baby.infant_id]

    for day in (weeks(3), weeks(4), weeks(4), weeks(5), weeks(10), weeks(11), weeks(12)):
        await followup.fire(day, only)

    names = await followup.emitted_names(only)
    # weeks 4: the 6-week NAT due; week 10: it is overdue, and so are the 6-week HEI visit and the
    # cotrimoxazole start (each announced due first), and the 10-week visit falls due
    assert names == [
        "InfantFollowUpStarted",
        "InfantTestDue",
        "InfantTestOverdue",
        "InfantCareDue",
        "InfantCareOverdue",
        "InfantCareDue",
        "InfantCareOverdue",
        "InfantCareDue",
    ]
    items = await followup.items(baby.infant_id)
    assert items["nat_6_weeks"]["status"] == "overdue"
    assert items["nat_6_weeks"]["due_announced_at"] <= items["nat_6_weeks"]["overdue_announced_at"]


async def test_a_result_before_the_overdue_date_means_no_overdue_and_a_late_result_corrects_the_record(
    followup,
) -> None:
    mother, on_time, late = new_mother(), live_infant(), live_infant()
    await followup.apply(mother.delivered(B, [on_time, late], **well_treated(B)))
    only = [on_time.infant_id, late.infant_id]
    await followup.fire(weeks(5), only)
    assert (await followup.record(on_time.infant_id, "InfantTestResulted", weeks(6), NAT))["status"] == "accepted"
    await followup.fire(weeks(11), only)
    await followup.record(late.infant_id, "InfantTestResulted", weeks(11), NAT)
    await followup.fire(weeks(12), only)

    def tests(names: list[str]) -> list[str]:
        return [n for n in names if not n.startswith("InfantCare")]  # the HEI visits and cotrimoxazole

    assert tests(await followup.emitted_names([on_time.infant_id])) == [
        "InfantFollowUpStarted",
        "InfantTestDue",
        "InfantTestResulted",
    ]
    assert tests(await followup.emitted_names([late.infant_id])) == [
        "InfantFollowUpStarted",
        "InfantTestDue",
        "InfantTestOverdue",
        "InfantTestResulted",
    ]
    on_time_items = await followup.items(on_time.infant_id)
    assert on_time_items["nat_6_weeks"]["status"] == "satisfied"
    assert (await followup.items(late.infant_id))["nat_6_weeks"]["status"] == "satisfied"


async def test_two_timer_passes_racing_over_the_same_infants_announce_each_item_exactly_once(followup) -> None:
    mother = new_mother()
    babies = [live_infant() for _ in range(6)]
    await followup.apply(mother.delivered(B, babies, art_start_date=B - timedelta(days=3)))
    only = [b.infant_id for b in babies]

    await asyncio.gather(*(followup.fire(weeks(12), only) for _ in range(4)))
    await followup.fire(weeks(12), only)

    names = await followup.emitted_names(only)
    # each high-risk infant: a birth NAT and a 6-week NAT, each due then overdue
    assert names.count("InfantTestDue") == 2 * len(babies)
    assert names.count("InfantTestOverdue") == 2 * len(babies)
    async with followup.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT payload->>'item_id' AS item, event_type, count(*) AS n FROM outbox"
                " WHERE aggregate_id = ANY(:ids) AND event_type ILIKE '%InfantTest%due.v1' GROUP BY 1, 2"
            ),
            {"ids": [str(i) for i in only]},
        )
        assert all(r.n == 1 for r in rows)


async def test_a_confirmed_positive_gives_one_infected_outcome_and_an_art_start_action(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    positive = {"test": "NAT", "result": "positive", "confirmatory": False}
    await followup.record(baby.infant_id, "InfantTestResulted", weeks(6), positive)
    await followup.record(baby.infant_id, "InfantTestResulted", weeks(7), {**positive, "confirmatory": True})
    await followup.record(baby.infant_id, "InfantOutcomeRecorded", weeks(9), {"outcome": "died"})

    outcomes = [p for n, p in await followup.emitted([baby.infant_id]) if n == "InfantFinalOutcomeRecorded"]
    assert [(o["outcome"], o["age_days"]) for o in outcomes] == [("infected", 49)]
    record = await followup.infant(baby.infant_id)
    assert record["status"] == "infected"
    assert record["art_needed"] is False  # died: no ART start to chase any more
    tested = [p for n, p in await followup.emitted([baby.infant_id]) if n == "InfantTestResulted"]
    assert [(t["first_virologic"], t["age_days"]) for t in tested] == [(True, 42), (False, 49)]


async def test_a_mothers_death_stops_breastfeeding_and_moves_her_infants_final_test(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    await followup.apply(mother.died(add_months(B, 17)))

    finals = {
        r["window_start"]: r["status"]
        for r in (await followup.infant(baby.infant_id))["plan"]
        if r["kind"] == "final_test"
    }
    # the 18-month test it replaces was never announced: it is not kept (schedule.reconcile), as
    # if her death had been known before it was planned
    assert finals == {add_months(add_months(B, 17), 3).isoformat(): "planned"}


async def test_an_infant_silent_after_an_overdue_test_is_lost_once_and_ltfu_is_its_final_outcome(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    only = [baby.infant_id]
    overdue_on = weeks(8) + timedelta(days=14)
    for day in (
        overdue_on,
        overdue_on + timedelta(days=89),
        overdue_on + timedelta(days=90),
        overdue_on + timedelta(days=200),
    ):
        await followup.fire(day, only)
    for day in (add_months(B, 23), add_months(B, 24), add_months(B, 25)):
        await followup.fire(day, only)

    emitted = await followup.emitted(only)
    lost = [p for n, p in emitted if n == "ClientLostToFollowUp"]
    assert [(p["subject_type"], p["subject_id"], p["last_seen_on"]) for p in lost] == [
        ("infant", str(baby.infant_id), B.isoformat())
    ]
    outcomes = [p["outcome"] for n, p in emitted if n == "InfantFinalOutcomeRecorded"]
    assert outcomes == ["lost_to_follow_up"]
    assert (await followup.infant(baby.infant_id))["status"] == "lost_to_follow_up"


async def test_a_positive_mother_gets_viral_loads_due_and_overdue_while_breastfeeding(followup) -> None:
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))
    only = [mother.client_id]
    three_months = add_months(B, 3)
    await followup.fire(three_months, only)
    await followup.fire(three_months + timedelta(days=42), only)
    await followup.apply(mother.viral_load(add_months(B, 6)))
    await followup.fire(add_months(B, 6) + timedelta(days=60), only)

    emitted = await followup.emitted(only)
    assert [(n, p["window_end"]) for n, p in emitted] == [
        ("ClientViralLoadDue", (three_months + timedelta(days=28)).isoformat()),
        ("ClientViralLoadOverdue", (three_months + timedelta(days=28)).isoformat()),
    ]
    assert all(p["kind"] == "mother_viral_load" for _, p in emitted)


async def test_worklist_lists_a_facilitys_mothers_and_infants_most_urgent_first(followup) -> None:
    facility = "FAC-MW-002"
    mother = new_mother(facility)
    overdue_baby, due_baby = live_infant(facility_id=facility), live_infant(facility_id=facility)
    born = B - timedelta(weeks=7)
    await followup.apply(mother.delivered(born, [overdue_baby], **well_treated(born)))
    other = new_mother(facility)
    await followup.apply(other.delivered(B, [due_baby], art_start_date=B - timedelta(days=3)))
    as_of = B + timedelta(weeks=5)

    response = await followup.http.get(
        "/v1/worklist",
        params={"facility_id": facility, "as_of": as_of.isoformat()},
        headers=followup.headers("worklist:read", [facility]),
    )
    assert response.status_code == 200, response.text
    mine = {mother.client_id, overdue_baby.infant_id, other.client_id, due_baby.infant_id}
    items = [i for i in response.json()["items"] if i["subject_id"] in {str(s) for s in mine}]
    got = [(i["subject_id"], i["action"], i["urgency"], i["days_overdue"]) for i in items]
    older, younger = str(overdue_baby.infant_id), str(due_baby.infant_id)
    assert got[:2] == [(older, "infant_prophylaxis", "overdue", 67), (younger, "infant_prophylaxis", "overdue", 18)]
    # the 12-week-old's 6-week NAT, 6-week HEI visit and cotrimoxazole start: equally overdue (by item id)
    assert sorted(got[2:5]) == [
        (older, "hei_visit", "overdue", 14),
        (older, "infant_cotrimoxazole", "overdue", 14),
        (older, "nat_6_weeks", "overdue", 14),
    ]
    assert got[5:] == [
        (younger, "nat_birth", "overdue", 7),
        (older, "hei_visit", "due", 0),  # the 10-week visit, overdue sooner than the 5-week-old's NAT
        (younger, "nat_6_weeks", "due", 0),
    ]
    assert [i["label"] for i in items][5:] == ["NAT at birth", "HEI visit at 10 weeks", "NAT at 6 weeks"]
    assert {i["label"] for i in items[2:5]} == {"NAT at 6 weeks", "HEI visit at 6 weeks", "Cotrimoxazole"}


async def test_every_part_of_the_worklist_query_can_be_served_by_an_index(followup) -> None:
    """With sequential scans priced out, a Seq Scan in the plan means no index can serve that part.
    Which index the planner picks depends on the data, so the test does not name them."""
    from followup.repository import WORKLIST_SQL

    async with followup.sessions() as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = await session.execute(
            text("EXPLAIN " + WORKLIST_SQL.text), {"facility_id": FACILITY, "as_of": B, "limit": 100}
        )
        lines = "\n".join(r[0] for r in plan)
    assert "Seq Scan" not in lines, lines
