"""Corrections of mother events (issue 17) against the real database, on the simulated calendar: a
ClientEventVoided (enrolment's, naming the CloudEvent ids the voided event had produced) through
the consumer's handler, time through the durable timers, what follow-up announces read back from
its outbox. Follow-up recomputes the mother and her infants from the events that stand."""

from __future__ import annotations

from datetime import timedelta

from followup_support import FACILITY, SIM_START, at, live_infant, new_mother, well_treated
from sqlalchemy import text

from pmtct_events.enrolment import ArtInitiated, HivStatus

B = SIM_START


async def rows(followup, sql: str, **params) -> list[dict]:
    async with followup.sessions() as session:
        return [dict(r._mapping) for r in await session.execute(text(sql), params)]


async def infant_row(followup, infant_id) -> dict:
    [row] = await rows(followup, "SELECT * FROM infants WHERE infant_id = :i", i=infant_id)
    return row


async def open_items(followup, subject_id) -> list[str]:
    found = await rows(
        followup,
        "SELECT kind FROM schedule_items WHERE subject_id = :s AND status IN ('planned', 'due', 'overdue')"
        " ORDER BY window_start, kind",
        s=subject_id,
    )
    return [r["kind"] for r in found]


async def test_a_voided_positive_test_ends_her_infants_follow_up_and_withdraws_its_overdue_tests(followup) -> None:
    mother, baby = new_mother(), live_infant()
    positive = mother.tested(B - timedelta(days=100), "positive", "anc")
    delivered = mother.delivered(B, [baby], hiv_status=HivStatus.unknown)
    _, test_id, _ = await followup.apply(
        mother.enrolled(B - timedelta(days=200), HivStatus.unknown, on_art=False), positive, delivered
    )
    assert (await infant_row(followup, baby.infant_id))["high_risk_reasons"] == ["no_art"]
    await followup.fire(B + timedelta(days=120), [baby.infant_id])
    announced = await followup.emitted([baby.infant_id])
    overdue = [p for n, p in announced if n == "InfantTestOverdue"]
    assert overdue, "the timers announced the tests she missed"
    [lost] = [p for n, p in announced if n == "ClientLostToFollowUp"]

    before = len(await followup.emitted([baby.infant_id, mother.client_id]))
    await followup.apply(mother.voided(B + timedelta(days=121), positive, test_id))

    after = (await followup.emitted([baby.infant_id, mother.client_id]))[before:]
    voided_on = (B + timedelta(days=121)).isoformat()
    withdrawn = [p for n, p in after if n == "AnnouncementWithdrawn"]
    tests = [p for p in withdrawn if p["announcement"] == "InfantTestOverdue"]
    assert sorted((p["item_id"], p["announcement"], p["reason"], p["met_on"]) for p in tests) == sorted(
        (p["item_id"], "InfantTestOverdue", "entered_in_error", voided_on) for p in overdue
    )
    assert [(p["announcement"], p["reason"], p["announced_for"]) for p in withdrawn if not p["item_id"]] == [
        ("ClientLostToFollowUp", "entered_in_error", lost["lost_on"])
    ], "she was lost from a follow-up she never needed"
    care = [p for n, p in announced if n == "InfantCareOverdue"]
    assert care, "the HEI visits she missed were announced (referrals traces them)"
    assert sorted((p["item_id"], p["reason"]) for p in withdrawn if p["announcement"] == "InfantCareOverdue") == sorted(
        (p["item_id"], "entered_in_error") for p in care
    )
    # every announcement of them, due as well as overdue (referrals took a sample collection's
    # referral from the due test, and cancels it with the withdrawal)
    for name in ("InfantTestDue", "InfantCareDue"):
        announced_due = [p for n, p in announced if n == name]
        assert announced_due, f"the timers announced {name}"
        assert sorted(
            (p["item_id"], p["reason"], p["announced_for"], p["met_on"]) for p in withdrawn if p["announcement"] == name
        ) == sorted((p["item_id"], "entered_in_error", p["window_start"], voided_on) for p in announced_due)
    assert [n for n, _ in after if n != "AnnouncementWithdrawn"] == [], "no outcome, nothing due"
    row = await infant_row(followup, baby.infant_id)
    assert (row["in_follow_up"], row["high_risk_reasons"], row["final_outcome"], row["next_timer_on"]) == (
        False,
        [],
        None,
        None,
    )
    assert await open_items(followup, baby.infant_id) == []
    hers = await open_items(followup, mother.client_id)
    assert not {"mother_art_start", "mother_viral_load"} & set(hers), "no ART start or viral load: not known positive"
    assert "mother_hiv_test_anc1" in hers, "the test she had at ANC1 was entered in error: she is to be tested"
    [m] = await rows(
        followup, "SELECT hiv_status, positive_since FROM mothers WHERE client_id = :c", c=mother.client_id
    )
    assert m == {"hiv_status": "unknown", "positive_since": None}

    # redelivered: changes nothing
    await followup.apply(mother.voided(B + timedelta(days=121), positive, test_id))
    assert len(await followup.emitted([baby.infant_id, mother.client_id])) == before + len(after)


async def test_an_infant_born_after_a_voided_positive_test_is_not_followed_because_of_it(followup) -> None:
    mother, baby = new_mother(), live_infant()
    positive = mother.tested(B - timedelta(days=30), "positive", "anc")
    _, test_id = await followup.apply(mother.enrolled(B - timedelta(days=200), HivStatus.unknown), positive)
    await followup.apply(mother.voided(B - timedelta(days=29), positive, test_id))
    await followup.apply(mother.delivered(B, [baby], hiv_status=HivStatus.unknown))

    assert await followup.emitted([baby.infant_id]) == []
    assert (await infant_row(followup, baby.infant_id))["in_follow_up"] is False


async def test_a_voided_negative_test_takes_back_the_incident_infection_that_made_her_infant_high_risk(
    followup,
) -> None:
    mother, baby = new_mother(), live_infant()
    negative = mother.tested(B - timedelta(days=100), "negative", "anc")
    ids = await followup.apply(
        mother.enrolled(B - timedelta(days=200), HivStatus.unknown, on_art=False),
        negative,
        mother.tested(B - timedelta(days=60), "positive", "anc"),
        ArtInitiated(facility_id=FACILITY, occurred_at=at(B - timedelta(days=58)), client_id=mother.client_id),
        mother.viral_load(B - timedelta(days=14), 40),
        mother.delivered(
            B,
            [baby],
            diagnosed_on=B - timedelta(days=60),
            art_start_date=B - timedelta(days=58),
            viral_load=(B - timedelta(days=14), 40),
        ),
    )
    started = await infant_row(followup, baby.infant_id)
    assert started["high_risk_reasons"] == ["incident_infection"]

    await followup.apply(mother.voided(B + timedelta(days=2), negative, ids[1]))

    row = await infant_row(followup, baby.infant_id)
    assert (row["in_follow_up"], row["high_risk"], row["high_risk_reasons"]) == (True, False, [])
    assert row["prophylaxis"] == [{"drug": "NVP", "duration_weeks": 6, "from_week": 0, "until": None}]
    assert "nat_6_weeks" in await open_items(followup, baby.infant_id)


async def test_a_voided_viral_load_is_due_again_and_announced_overdue_when_its_time_has_passed(followup) -> None:
    mother = new_mother()
    load = mother.viral_load(B + timedelta(weeks=20, days=3), 40)
    _, load_id = await followup.apply(mother.enrolled(B, gestation_weeks=14), load)
    [vl] = await rows(
        followup,
        "SELECT * FROM schedule_items WHERE subject_id = :s AND kind = 'mother_viral_load'",
        s=mother.client_id,
    )
    assert vl["status"] == "satisfied"

    await followup.apply(mother.voided(B + timedelta(weeks=21), load, load_id))
    [again] = await rows(followup, "SELECT * FROM schedule_items WHERE item_id = :i", i=vl["item_id"])
    assert (again["status"], again["satisfied_on"]) == ("planned", None)

    await followup.fire(again["overdue_on"], [mother.client_id])
    names = [(n, p.get("item_id")) for n, p in await followup.emitted([mother.client_id])]
    assert ("ClientViralLoadOverdue", str(vl["item_id"])) in names


async def test_a_voided_unsuppressed_viral_load_withdraws_her_adherence_support_due(followup) -> None:
    """Her adherence support was announced due (referrals opened psychosocial support from it):
    the viral load it stood on was entered in error, so the announcement is withdrawn so."""
    mother = new_mother()
    load = mother.viral_load(B + timedelta(weeks=20, days=3), 2400)
    _, load_id = await followup.apply(mother.enrolled(B, gestation_weeks=14), load)
    await followup.fire(B + timedelta(weeks=21), [mother.client_id])
    [support] = [p for n, p in await followup.emitted([mother.client_id]) if n == "ClientAdherenceSupportDue"]
    before = len(await followup.emitted([mother.client_id]))

    await followup.apply(mother.voided(B + timedelta(weeks=22), load, load_id))

    after = (await followup.emitted([mother.client_id]))[before:]
    withdrawn = [
        (p["announcement"], p["item_id"], p["reason"], p["announced_for"], p["met_on"])
        for n, p in after
        if n == "AnnouncementWithdrawn"
    ]
    voided_on = (B + timedelta(weeks=22)).isoformat()
    assert (
        "ClientAdherenceSupportDue",
        support["item_id"],
        "entered_in_error",
        support["window_start"],
        voided_on,
    ) in withdrawn
    assert "mother_adherence_support" not in await open_items(followup, mother.client_id)


async def test_a_voided_delivery_ends_its_infants_and_their_events_are_refused_unknown_infant(followup) -> None:
    mother, baby = new_mother(), live_infant()
    delivered = mother.delivered(B, [baby], **well_treated(B))
    _, delivery_id = await followup.apply(mother.enrolled(B - timedelta(days=200)), delivered)
    fed = await followup.record(
        baby.infant_id, "InfantFeedingRecorded", B + timedelta(days=3), {"method": "mixed_feeding"}
    )
    assert fed["status"] == "accepted"
    before = len(await followup.emitted([baby.infant_id]))

    await followup.apply(mother.voided(B + timedelta(days=5), delivered, delivery_id))

    row = await infant_row(followup, baby.infant_id)
    assert row["voided_at"] is not None and row["in_follow_up"] is False and row["final_outcome"] is None
    assert await open_items(followup, baby.infant_id) == []
    cancelled = await rows(
        followup, "SELECT DISTINCT cancel_reason FROM schedule_items WHERE subject_id = :s", s=baby.infant_id
    )
    assert cancelled == [{"cancel_reason": "entered_in_error"}]
    [m] = await rows(followup, "SELECT delivered_on FROM mothers WHERE client_id = :c", c=mother.client_id)
    assert m["delivered_on"] is None
    assert len(await followup.emitted([baby.infant_id])) == before, "nothing announced for an infant never born"

    later = await followup.record(baby.infant_id, "InfantVisitRecorded", B + timedelta(days=6))
    assert (later["status"], later["code"]) == ("rejected", "unknown_infant")
    await followup.fire(B + timedelta(days=400), [baby.infant_id])
    assert len(await followup.emitted([baby.infant_id])) == before, "no timers, no final outcome"


async def test_an_event_held_for_an_infant_of_a_voided_delivery_is_refused_unknown_infant(followup) -> None:
    mother, baby = new_mother(), live_infant()
    delivered = mother.delivered(B, [baby], hiv_status=HivStatus.unknown)
    _, delivery_id = await followup.apply(mother.enrolled(B - timedelta(days=200), HivStatus.unknown), delivered)
    held = await followup.record(baby.infant_id, "InfantVisitRecorded", B + timedelta(days=3))
    assert held["status"] == "pending"

    await followup.apply(mother.voided(B + timedelta(days=5), delivered, delivery_id))

    [row] = await rows(followup, "SELECT status, code FROM intake_pending WHERE event_id = :e", e=held["event_id"])
    assert row == {"status": "rejected", "code": "unknown_infant"}


# --- infant events voided or replaced at follow-up's own intake (servicekit.corrections) ----------

POSITIVE_NAT = {"test": "NAT", "result": "positive", "confirmatory": False}
NEGATIVE_NAT = {"test": "NAT", "result": "negative", "confirmatory": False}


async def followed_infant(followup):
    mother, baby = new_mother(), live_infant()
    await followup.apply(mother.enrolled(B - timedelta(days=200)), mother.delivered(B, [baby], **well_treated(B)))
    return mother, baby


async def outbox(followup, subject_id) -> list[dict]:
    return await rows(
        followup,
        "SELECT event_id, event_type, payload FROM outbox WHERE aggregate_id = :s ORDER BY id",
        s=str(subject_id),
    )


def named(found: list[dict], name: str) -> list[dict]:
    return [r for r in found if r["event_type"].split(".")[-2] == name]


async def test_a_voided_positive_nat_takes_back_her_art_referral_need_and_publishes_what_it_had_published(
    followup,
) -> None:
    _, baby = await followed_infant(followup)
    nat = await followup.record(baby.infant_id, "InfantTestResulted", B + timedelta(weeks=6), POSITIVE_NAT)
    assert {"infant_art_start", "confirmatory_nat"} <= set(await open_items(followup, baby.infant_id))
    [resulted] = named(await outbox(followup, baby.infant_id), "InfantTestResulted")

    void = await followup.void(nat["event_id"], B + timedelta(weeks=7))

    assert (void["status"], void["infant_id"]) == ("accepted", str(baby.infant_id))
    [voided] = named(await outbox(followup, baby.infant_id), "InfantEventVoided")
    assert voided["payload"]["voided_event_id"] == nat["event_id"]
    assert voided["payload"]["voided_type"] == "InfantTestResulted"
    assert voided["payload"]["voided_ids"] == [str(resulted["event_id"])]
    row = await infant_row(followup, baby.infant_id)
    assert (row["art_needed"], row["final_outcome"]) == (False, None)
    still = await open_items(followup, baby.infant_id)
    assert "infant_art_start" not in still and "confirmatory_nat" not in still
    assert "nat_6_weeks" in still, "the 6-week NAT is to be done again"

    state = await followup.http.get(f"/v1/events/{nat['event_id']}", headers=followup.headers())
    assert state.status_code == 200, state.text
    assert (state.json()["status"], state.json()["voided_by"]) == ("voided", void["event_id"])
    again = await followup.void(nat["event_id"], B + timedelta(weeks=7))
    assert (again["status"], again["code"]) == ("rejected", "already_voided")


async def test_a_voided_negative_nat_is_due_again_and_announced_overdue_once_its_time_has_passed(followup) -> None:
    _, baby = await followed_infant(followup)
    nat = await followup.record(baby.infant_id, "InfantTestResulted", B + timedelta(weeks=6), NEGATIVE_NAT)
    [item] = await rows(
        followup, "SELECT * FROM schedule_items WHERE subject_id = :s AND kind = 'nat_6_weeks'", s=baby.infant_id
    )
    assert item["status"] == "satisfied"

    await followup.void(nat["event_id"], B + timedelta(weeks=7))
    [again] = await rows(followup, "SELECT * FROM schedule_items WHERE item_id = :i", i=item["item_id"])
    assert (again["status"], again["satisfied_on"]) == ("planned", None)
    await followup.fire(again["overdue_on"], [baby.infant_id])
    overdue = [r["payload"]["item_id"] for r in named(await outbox(followup, baby.infant_id), "InfantTestOverdue")]
    assert overdue == [str(item["item_id"])]


async def test_a_replaced_result_is_voided_then_the_corrected_one_recorded_in_that_order(followup) -> None:
    _, baby = await followed_infant(followup)
    wrong = await followup.record(baby.infant_id, "InfantTestResulted", B + timedelta(weeks=6), POSITIVE_NAT)

    right = await followup.record(
        baby.infant_id, "InfantTestResulted", B + timedelta(weeks=6), NEGATIVE_NAT, replaces=wrong["event_id"]
    )

    assert right["status"] == "accepted", right
    names = [r["event_type"].split(".")[-2] for r in await outbox(followup, baby.infant_id)]
    assert names[-2:] == ["InfantEventVoided", "InfantTestResulted"]
    [voided] = named(await outbox(followup, baby.infant_id), "InfantEventVoided")
    assert voided["payload"]["replaced_by_event_id"] == right["event_id"]
    [item] = await rows(
        followup, "SELECT * FROM schedule_items WHERE subject_id = :s AND kind = 'nat_6_weeks'", s=baby.infant_id
    )
    assert (item["status"], item["satisfied_on"]) == ("satisfied", B + timedelta(weeks=6))
    assert "infant_art_start" not in await open_items(followup, baby.infant_id)


async def test_voiding_the_confirmatory_nat_takes_back_the_infected_outcome_and_she_is_followed_again(
    followup,
) -> None:
    _, baby = await followed_infant(followup)
    await followup.record(baby.infant_id, "InfantTestResulted", B + timedelta(weeks=6), POSITIVE_NAT)
    confirmatory = await followup.record(
        baby.infant_id, "InfantTestResulted", B + timedelta(weeks=7), {**POSITIVE_NAT, "confirmatory": True}
    )
    assert (await infant_row(followup, baby.infant_id))["final_outcome"] == "infected"
    found = await outbox(followup, baby.infant_id)
    [outcome] = named(found, "InfantFinalOutcomeRecorded")
    confirmed = named(found, "InfantTestResulted")[-1]

    await followup.void(confirmatory["event_id"], B + timedelta(weeks=8))

    found = await outbox(followup, baby.infant_id)
    [voided] = named(found, "InfantEventVoided")
    assert sorted(voided["payload"]["voided_ids"]) == sorted([str(confirmed["event_id"]), str(outcome["event_id"])])
    [resumed] = named(found, "InfantFollowUpResumed")
    assert resumed["payload"]["because"] == "entered_in_error"
    row = await infant_row(followup, baby.infant_id)
    assert (row["final_outcome"], row["art_needed"]) == (None, True), "one positive NAT: ART at once, confirm it"
    assert "confirmatory_nat" in await open_items(followup, baby.infant_id)


async def test_an_infant_of_a_voided_delivery_registered_again_by_the_corrected_delivery_is_followed_again(
    followup,
) -> None:
    mother, baby = new_mother(), live_infant()
    wrong = mother.delivered(B - timedelta(days=1), [baby], **well_treated(B))
    _, delivery_id = await followup.apply(mother.enrolled(B - timedelta(days=200)), wrong)
    await followup.apply(mother.voided(B + timedelta(days=2), wrong, delivery_id))
    assert (await infant_row(followup, baby.infant_id))["voided_at"] is not None

    await followup.apply(mother.delivered(B, [baby], **well_treated(B)))

    row = await infant_row(followup, baby.infant_id)
    assert (row["voided_at"], row["in_follow_up"], row["birth_date"]) == (None, True, B)
    assert "nat_6_weeks" in await open_items(followup, baby.infant_id)
    fed = await followup.record(
        baby.infant_id, "InfantFeedingRecorded", B + timedelta(days=3), {"method": "mixed_feeding"}
    )
    assert fed["status"] == "accepted"
