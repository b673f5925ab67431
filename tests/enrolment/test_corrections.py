"""Corrections at enrolment's intake (servicekit.corrections, docs/emr-intake.md "Corrections"): an
EMR voids a mother event it posted (`EventVoided`) or replaces it (`replaces`); enrolment publishes
ClientEventVoided with the CloudEvent ids the voided event had published, decides her later events
without it, keeps it in her history marked voided, and refuses what the vocabulary says."""

from __future__ import annotations

import json
import uuid
from typing import Any


def void(emr, event_id: str, *, at: str | None = None, **extra: Any) -> dict:
    return emr.event(
        "EventVoided",
        {"voided_event_id": event_id, "reason": "entered_in_error"},
        occurred_at=at or emr.ago(1),
        **extra,
    )


async def state(enrolment, event_id: str) -> dict:
    response = await enrolment.http.get(f"/v1/events/{event_id}", headers=enrolment.headers())
    assert response.status_code == 200, response.text
    return response.json()


async def published_ids(enrolment, event_id: str) -> list[str]:
    rows = await enrolment.fetch(
        "SELECT published_ids::text[] AS ids FROM client_events WHERE event_id = $1", uuid.UUID(event_id)
    )
    return list(rows[0]["ids"] or [])


async def test_voiding_a_positive_test_publishes_its_ids_and_her_later_events_are_decided_without_it(
    enrolment, emr
) -> None:
    ref = emr.ref()
    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(100))])
    client_id = enrolled["client_id"]
    test = emr.hiv_test(ref, emr.ago(90), result="positive")
    await enrolment.accept([test])
    [test_ce_id] = await published_ids(enrolment, test["event_id"])
    voiding = void(emr, test["event_id"])

    [answer] = await enrolment.accept([voiding])

    assert answer["client_id"] == client_id
    events = await enrolment.catalog_events({client_id}, expected=3)
    assert [e.type for e in events] == [
        "org.pmtct.enrolment.ClientEnrolled.v1",
        "org.pmtct.enrolment.HivTestRecorded.v1",
        "org.pmtct.enrolment.ClientEventVoided.v1",
    ]
    assert str(events[1].id) == test_ce_id, "the intake remembered the CloudEvent id the test was published with"
    voided = events[2].data
    assert voided["voided_event_id"] == test["event_id"] and voided["voided_type"] == "HivTestRecorded"
    assert voided["voided_ids"] == [test_ce_id] and voided["reason"] == "entered_in_error"
    assert voided["replaced_by_event_id"] is None and voided["episode_id"] == events[1].data["episode_id"]
    # the history keeps it, marked voided by which event and when
    told = await state(enrolment, test["event_id"])
    assert (told["status"], told["voided_by"]) == ("voided", voiding["event_id"]) and told["voided_at"]
    assert (await state(enrolment, voiding["event_id"]))["status"] == "accepted"
    # without her positive test she is not known positive: an ART start now waits for one
    art = (await enrolment.post([emr.art(ref, emr.ago(80))])).json()["results"][0]
    assert (art["status"], art["code"]) == ("pending", "awaiting_earlier_event")
    # and a test after it is decided on what remains: her status before it is the enrolment's negative
    later = emr.hiv_test(ref, emr.ago(70), result="negative")
    await enrolment.accept([later])
    [_, _, _, retest] = await enrolment.catalog_events({client_id}, expected=4)
    assert retest.data["status_before"] == "negative", "the voided positive test is not hers any more"


async def test_a_resend_is_duplicate_a_second_void_already_voided_and_a_void_of_a_void_refused(enrolment, emr) -> None:
    ref = emr.ref()
    visit = emr.anc_visit(ref, emr.ago(60))
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(100)), visit])
    first = void(emr, visit["event_id"])
    await enrolment.accept([first])

    body = (await enrolment.post([first, void(emr, visit["event_id"])])).json()

    again, second = body["results"]
    assert again["status"] == "duplicate"
    assert (second["status"], second["code"]) == ("rejected", "already_voided")
    assert first["event_id"] in second["reason"]
    # a void of a void is refused; a void naming an event of a facility the token does not act for is not found
    assert (await enrolment.post([void(emr, first["event_id"])])).json()["results"][0]["code"] == (
        "unknown_voided_event"
    )
    other = emr.anc_visit(ref, emr.ago(50), visit_number=3)
    await enrolment.accept([other])
    elsewhere = void(emr, other["event_id"], facility_id="FAC-ZA-002")
    refused = (await enrolment.post([elsewhere], facilities=["FAC-ZA-002"])).json()["results"][0]
    assert refused["code"] == "unknown_voided_event"


async def test_voiding_an_enrolment_while_her_later_events_stand_lists_them(enrolment, emr) -> None:
    ref = emr.ref()
    enrolled = emr.enrolment(ref, at=emr.ago(100))
    visit = emr.anc_visit(ref, emr.ago(80))
    test = emr.hiv_test(ref, emr.ago(80), result="negative")
    await enrolment.accept([enrolled, visit, test])

    refused = (await enrolment.post([void(emr, enrolled["event_id"])])).json()["results"][0]

    assert (refused["status"], refused["code"]) == ("rejected", "void_dependents_first")
    assert visit["event_id"] in refused["reason"] and test["event_id"] in refused["reason"]
    # voided latest first, then the enrolment goes too, and her record number enrols her afresh
    await enrolment.accept([void(emr, test["event_id"]), void(emr, visit["event_id"])])
    await enrolment.accept([void(emr, enrolled["event_id"])])
    again = emr.enrolment(ref, at=emr.ago(99))
    [result] = await enrolment.accept([again])
    rows = await enrolment.fetch(
        "SELECT payload->>'transfer_in' AS t FROM client_events WHERE event_id = $1", uuid.UUID(again["event_id"])
    )
    assert rows[0]["t"] == "false", "all she had was voided: a fresh enrolment, not a transfer in"
    assert result["client_id"]


async def test_voiding_a_delivery_frees_its_infant_refs_for_the_corrected_delivery(enrolment, emr) -> None:
    ref = emr.ref()
    baby = emr.infant()
    delivery = emr.delivery(ref, emr.ago(30), infants=[baby])
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(200), hiv_status="positive", on_art=True), delivery])
    twice = emr.delivery(ref, emr.ago(29), infants=[{**baby}])
    assert (await enrolment.post([twice])).json()["results"][0]["code"] in {"infant_ref_taken", "delivery_too_soon"}

    # replaced in one step: the corrected delivery (another weight) names the same baby by the same record number
    corrected = emr.delivery(ref, emr.ago(30), infants=[{**baby, "birth_weight_g": 2900}])
    corrected["replaces"] = delivery["event_id"]
    [answer] = await enrolment.accept([corrected])

    assert answer["infants"][0]["infant_ref"] == baby["infant_ref"]
    # the same baby: the infant_id the EMR was given for her stands, now registered by the corrected delivery
    [first] = await enrolment.fetch(
        "SELECT result FROM client_events WHERE event_id = $1", uuid.UUID(delivery["event_id"])
    )
    assert answer["infants"][0]["infant_id"] == json.loads(first["result"])["infant_ids"][0]
    rows = await enrolment.fetch(
        "SELECT delivery_event_id::text AS d, voided_at IS NOT NULL AS voided FROM infants WHERE client_id = $1",
        uuid.UUID(answer["client_id"]),
    )
    assert [(r["d"], r["voided"]) for r in rows] == [(corrected["event_id"], False)]
    events = await enrolment.catalog_events({answer["client_id"]}, expected=4)
    names = [e.type.split(".")[3] for e in events]
    assert names == ["ClientEnrolled", "DeliveryRecorded", "ClientEventVoided", "DeliveryRecorded"]
    assert events[2].data["replaced_by_event_id"] == corrected["event_id"]
    assert events[2].data["voided_ids"] == [str(events[1].id)]
    told = await state(enrolment, delivery["event_id"])
    assert (told["status"], told["voided_by"]) == ("voided", corrected["event_id"])


async def test_a_replacement_must_have_the_type_and_the_woman_of_what_it_replaces(enrolment, emr) -> None:
    ref, other = emr.ref(), emr.ref()
    test = emr.hiv_test(ref, emr.ago(50), result="negative")
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(100)), emr.enrolment(other, at=emr.ago(100)), test])

    body = (
        await enrolment.post(
            [
                {**emr.anc_visit(ref, emr.ago(50)), "replaces": test["event_id"]},
                {**emr.hiv_test(other, emr.ago(50), result="positive"), "replaces": test["event_id"]},
            ]
        )
    ).json()

    kind, woman = body["results"]
    assert (kind["code"], woman["code"]) == ("replacement_type_mismatch", "replacement_subject_mismatch")
    assert (await state(enrolment, test["event_id"]))["status"] == "accepted", "refused: nothing voided"


async def test_a_replacement_the_rules_refuse_voids_nothing(enrolment, emr) -> None:
    ref = emr.ref()
    test = emr.hiv_test(ref, emr.ago(50), result="positive")
    art = emr.art(ref, emr.ago(40))
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(100)), test, art])

    # a negative replacing the positive test her ART start follows would leave the start on nothing
    negative = {**emr.hiv_test(ref, emr.ago(50), result="negative"), "replaces": test["event_id"]}
    refused = (await enrolment.post([negative])).json()["results"][0]
    assert (refused["code"], art["event_id"] in refused["reason"]) == ("void_dependents_first", True)
    # and a plain void of it too
    refused = (await enrolment.post([void(emr, test["event_id"])])).json()["results"][0]
    assert (refused["code"], art["event_id"] in refused["reason"]) == ("void_dependents_first", True)
    assert (await state(enrolment, test["event_id"]))["status"] == "accepted"


async def test_a_dry_run_of_a_void_answers_as_the_real_one_and_records_nothing(enrolment, emr) -> None:
    ref = emr.ref()
    test = emr.hiv_test(ref, emr.ago(50), result="positive")
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(100)), test])
    voiding = void(emr, test["event_id"])
    before = await enrolment.counts()

    rehearsed = await enrolment.http.post(
        "/v1/events", params={"dry_run": "true"}, json={"events": [voiding]}, headers=enrolment.headers()
    )

    result = rehearsed.json()["results"][0]
    assert (rehearsed.json()["dry_run"], result["status"]) == (True, "accepted")
    assert await enrolment.counts() == before
    assert (await state(enrolment, test["event_id"]))["status"] == "accepted"
    [real] = await enrolment.accept([voiding])
    assert real["client_id"] == result["client_id"]
