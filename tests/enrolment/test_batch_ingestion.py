"""Batch ingestion: every mother event type recorded once, published once, with its facts."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from pmtct_events import catalog
from pmtct_events.enrolment import DeliveryRecorded, HivStatus, HivTestRecorded
from pmtct_tools.testing import envelopes
from servicekit.identifiers import ref_hash

FACILITY = "FAC-ZA-001"


async def test_every_mother_event_type_is_accepted_stored_and_published_with_cloudevents_headers(
    enrolment, emr
) -> None:
    mother, widow = emr.ref(), emr.ref()
    events = [
        emr.enrolment(mother, at=emr.ago(200), hiv_status="unknown"),
        emr.hiv_test(mother, emr.ago(199)),
        emr.art(mother, emr.ago(198)),
        emr.viral_load(mother, emr.ago(120), copies=400),
        emr.anc_visit(mother, emr.ago(100), gestation_weeks=28),
        emr.delivery(mother, emr.ago(50)),
        emr.transfer_out(mother, emr.ago(20)),
        emr.enrolment(widow, at=emr.ago(90)),
        emr.died(widow, emr.ago(30)),
    ]
    response = await enrolment.post(events)
    assert response.status_code == 200, response.text
    batch = response.json()
    assert (batch["accepted"], batch["duplicate"], batch["rejected"]) == (9, 0, 0)
    results = batch["results"]
    client_id, widow_id = results[0]["client_id"], results[7]["client_id"]
    assert {r["client_id"] for r in results[:7]} == {client_id}
    infants = results[5]["infants"]
    posted_infant = events[5]["data"]["infants"][0]
    assert [i["infant_ref"] for i in infants] == [posted_infant["infant_ref"]]

    stored = await enrolment.fetch(
        "SELECT event_id::text, type, client_id::text FROM client_events WHERE event_id = ANY($1::uuid[])",
        [e["event_id"] for e in events],
    )
    assert sorted((r["event_id"], r["type"]) for r in stored) == sorted((e["event_id"], e["type"]) for e in events)
    registered = await enrolment.fetch(
        "SELECT client_id::text FROM registrations WHERE facility_id = $1 AND client_ref = ANY($2::text[])",
        FACILITY,
        [mother, widow],
    )
    assert {r["client_id"] for r in registered} == {client_id, widow_id}
    babies = await enrolment.fetch(
        "SELECT infant_id::text, ref_hash FROM infants WHERE client_id = $1", uuid.UUID(client_id)
    )
    assert [b["infant_id"] for b in babies] == [infants[0]["infant_id"]]
    [delivery_row] = await enrolment.fetch(
        "SELECT result::text FROM client_events WHERE event_id = $1", uuid.UUID(events[5]["event_id"])
    )
    assert posted_infant["infant_ref"] not in delivery_row["result"]  # record numbers are not kept with results

    records = await enrolment.catalog_records({client_id, widow_id}, expected=9)
    published = envelopes(records)
    assert len(published) == 9
    assert {r.key.decode() for r in records} == {client_id, widow_id}
    for record, ce in zip(records, published, strict=True):
        headers = dict(record.headers)
        assert headers["ce_specversion"] == b"1.0"
        assert headers["content-type"] == b"application/json"
        assert headers["ce_source"] == b"/services/enrolment"
        assert headers["ce_subject"] == record.key
        assert headers["ce_facilityid"] == FACILITY.encode()
        assert headers["ce_correlationid"] == batch["batch_id"].encode()
        assert headers["traceparent"].startswith(b"00-")
        assert uuid.UUID(headers["ce_id"].decode())
        assert ce.type == f"org.pmtct.enrolment.{ce.event_name}.v1"
    mine = [catalog.parse(ce) for ce in published if ce.subject == client_id]
    assert [type(e).__name__ for e in mine] == [
        "ClientEnrolled",
        "HivTestRecorded",
        "ArtInitiated",
        "ViralLoadRecorded",
        "AncVisitRecorded",
        "DeliveryRecorded",
        "ClientTransferredOut",
    ]
    assert [type(catalog.parse(ce)).__name__ for ce in published if ce.subject == widow_id] == [
        "ClientEnrolled",
        "ClientDied",
    ]
    test, delivery = mine[1], mine[5]
    assert isinstance(test, HivTestRecorded) and test.status_before is HivStatus.unknown
    assert isinstance(delivery, DeliveryRecorded)
    assert delivery.mother_hiv_status is HivStatus.positive
    assert delivery.mother_diagnosed_on.isoformat() == events[1]["occurred_at"][:10]
    assert delivery.mother_art_start_date.isoformat() == events[2]["occurred_at"][:10]
    assert delivery.mother_latest_viral_load.copies_per_ml == 400
    assert mine[3].suppressed is True
    # each mother event carries her age in whole years that day, from the birth date enrolment keeps
    # (born 1996-04-11); the birth date itself is on no event
    for e in (mine[1], mine[2], mine[4], mine[5]):
        day = e.occurred_at.date()
        assert e.age_years == day.year - 1996 - ((day.month, day.day) < (4, 11)), type(e).__name__
    assert all("birth_date" not in ce.data for ce in published if ce.subject == client_id)
    baby = delivery.infants[0]
    assert str(baby.infant_id) == infants[0]["infant_id"]
    assert baby.ref_hash == ref_hash(enrolment.settings.hmac_key, FACILITY, posted_infant["infant_ref"])
    assert baby.ref_hash == babies[0]["ref_hash"]


async def test_a_batch_posted_twice_is_all_duplicate_and_publishes_nothing_new(enrolment, emr) -> None:
    ref = emr.ref()
    events = [
        emr.enrolment(ref, at=emr.ago(150), hiv_status="positive", hiv_status_known_since="2020-01-10"),
        emr.art(ref, emr.ago(149)),
        emr.delivery(ref, emr.ago(10)),
    ]
    first = (await enrolment.post(events)).json()
    client_id = first["results"][0]["client_id"]
    await enrolment.wait_published()
    before = await enrolment.counts()
    assert len(await enrolment.catalog_events({client_id}, expected=3)) == 3

    again = await enrolment.post(events)

    assert again.status_code == 200
    second = again.json()
    assert (second["accepted"], second["duplicate"], second["rejected"]) == (0, 3, 0)
    assert [r["status"] for r in second["results"]] == ["duplicate"] * 3
    assert second["results"][2]["infants"] == first["results"][2]["infants"]
    assert {r["client_id"] for r in second["results"]} == {client_id}
    assert await enrolment.counts() == before
    await enrolment.wait_published()
    assert len(await enrolment.catalog_events({client_id}, expected=3, settle_s=1.5)) == 3


async def test_an_event_resent_with_another_utc_offset_is_still_a_duplicate(enrolment, emr) -> None:
    enrolled = emr.enrolment(at="2026-03-02T09:15:00+02:00")
    await enrolment.accept([enrolled])
    resent = {**enrolled, "occurred_at": "2026-03-02T07:15:00Z"}

    result = (await enrolment.post([resent])).json()["results"][0]

    assert result["status"] == "duplicate"


async def test_a_thousand_event_mixed_batch_is_accepted_in_one_request(enrolment, emr) -> None:
    events: list[dict] = []
    for i in range(125):
        ref = emr.ref()
        positive = i % 2 == 0
        events += [
            emr.enrolment(ref, at=emr.ago(280), hiv_status="unknown", gestation_weeks=12),
            emr.anc_visit(ref, emr.ago(250), visit_number=2, gestation_weeks=16),
            emr.hiv_test(ref, emr.ago(250), result="positive" if positive else "negative"),
            emr.anc_visit(ref, emr.ago(200), visit_number=3, gestation_weeks=24),
            emr.delivery(ref, emr.ago(90), infants=[emr.infant(), emr.infant(outcome="stillbirth")]),
            emr.hiv_test(ref, emr.ago(60), result="negative", setting="postnatal"),
        ]
        if positive:
            events += [emr.art(ref, emr.ago(249)), emr.viral_load(ref, emr.ago(100), copies=50 * i)]
        elif i % 4 == 1:
            events += [emr.hiv_test(ref, emr.ago(40), result="negative"), emr.transfer_out(ref, emr.ago(30))]
        else:
            events += [emr.hiv_test(ref, emr.ago(40), result="negative"), emr.died(ref, emr.ago(10))]
    assert len(events) == 1000
    random.Random(7).shuffle(events)  # arrival order must not matter: state follows occurred_at
    before = await enrolment.counts()

    started = time.perf_counter()
    response = await enrolment.post(events)
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text
    batch = response.json()
    rejected = [r for r in batch["results"] if r["status"] != "accepted"]
    assert rejected == []
    assert batch["accepted"] == 1000
    after = await enrolment.counts()
    assert after["client_events"] - before["client_events"] == 1000
    assert after["outbox"] - before["outbox"] == 1000
    assert after["clients"] - before["clients"] == 125
    assert after["infants"] - before["infants"] == 250
    assert elapsed < 30, f"a 1000-event batch took {elapsed:.1f}s"
    print(f"\n1000-event batch recorded in {elapsed:.2f}s ({1000 / elapsed:.0f} events/s in one request)")


async def test_the_same_woman_enrolled_at_two_facilities_with_one_national_id_is_one_client(enrolment, emr) -> None:
    first_ref, second_ref = emr.ref(), emr.ref()
    first = emr.enrolment(first_ref, at=emr.ago(300), national_id="8001015009087")
    [enrolled, _] = await enrolment.accept([first, emr.transfer_out(first_ref, emr.ago(200), "FAC-ZA-002")])
    again = emr.enrolment(
        second_ref, at=emr.ago(190), facility_id="FAC-ZA-002", national_id="800101 5009 087", given_name=None
    )

    [moved] = await enrolment.accept([again])

    assert moved["client_id"] == enrolled["client_id"]
    rows = await enrolment.fetch(
        "SELECT facility_id, client_ref FROM registrations WHERE client_id = $1 ORDER BY registered_at",
        uuid.UUID(enrolled["client_id"]),
    )
    assert [(r["facility_id"], r["client_ref"]) for r in rows] == [
        ("FAC-ZA-001", first_ref),
        ("FAC-ZA-002", second_ref),
    ]
    published = await enrolment.catalog_events({enrolled["client_id"]}, expected=3)
    enrolments = [catalog.parse(ce) for ce in published if ce.event_name == "ClientEnrolled"]
    assert [(e.facility_id, e.transfer_in) for e in enrolments] == [("FAC-ZA-001", False), ("FAC-ZA-002", True)]


async def test_an_hiv_test_dated_before_an_art_start_that_arrived_first_is_recorded_in_place(enrolment, emr) -> None:
    ref = emr.ref()
    [enrolled, _] = await enrolment.accept(
        [emr.enrolment(ref, at=emr.ago(200), hiv_status="positive"), emr.art(ref, emr.ago(150))]
    )

    [late] = await enrolment.accept([emr.hiv_test(ref, emr.ago(180), result="positive")])

    published = await enrolment.catalog_events({enrolled["client_id"]}, expected=3)
    test = next(catalog.parse(ce) for ce in published if ce.event_name == "HivTestRecorded")
    assert test.status_before is HivStatus.positive
    assert late["client_id"] == enrolled["client_id"]


async def test_within_a_batch_events_apply_by_when_they_happened_not_by_their_position(enrolment, emr) -> None:
    ref = emr.ref()
    # the ART start comes first in the batch, but the positive test that allows it happened earlier
    events = [
        emr.art(ref, emr.ago(100)),
        emr.hiv_test(ref, emr.ago(110), result="positive"),
        emr.enrolment(ref, at=emr.ago(120), hiv_status="negative", hiv_status_known_since=emr.ago(400)[:10]),
    ]

    results = await enrolment.accept(events)

    published = await enrolment.catalog_events({results[0]["client_id"]}, expected=3)
    assert [ce.event_name for ce in published] == ["ClientEnrolled", "HivTestRecorded", "ArtInitiated"]
    assert catalog.parse(published[1]).status_before is HivStatus.negative


async def test_status_before_each_test_follows_test_dates_not_arrival(enrolment, emr) -> None:
    ref = emr.ref()
    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(200), hiv_status="negative")])
    await enrolment.accept([emr.hiv_test(ref, emr.ago(100), result="positive")])  # seroconversion
    await enrolment.accept([emr.hiv_test(ref, emr.ago(80), result="positive", setting="labour_delivery")])
    await enrolment.accept([emr.hiv_test(ref, emr.ago(150), result="negative")])  # late, dated before both

    published = await enrolment.catalog_events({enrolled["client_id"]}, expected=4)
    tests = [catalog.parse(ce) for ce in published if ce.event_name == "HivTestRecorded"]
    assert [(t.result.value, t.status_before.value) for t in tests] == [
        ("positive", "negative"),
        ("positive", "positive"),
        ("negative", "negative"),
    ]


async def test_a_rejected_event_leaves_its_neighbours_in_the_batch_accepted(enrolment, emr) -> None:
    ref = emr.ref()
    before = await enrolment.counts()
    events = [
        emr.enrolment(ref, at=emr.ago(100)),
        emr.anc_visit(ref, emr.ago(90), gestation_weeks=60),
        emr.anc_visit(ref, emr.ago(80), gestation_weeks=20),
    ]

    results = (await enrolment.post(events)).json()["results"]

    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1]["code"] == "gestation_out_of_range"
    after = await enrolment.counts()
    assert after["client_events"] - before["client_events"] == 2
    assert after["outbox"] - before["outbox"] == 2


async def test_a_woman_who_transferred_out_can_enrol_again_and_a_new_pregnancy_can_be_enrolled(enrolment, emr) -> None:
    ref = emr.ref()
    results = await enrolment.accept(
        [
            emr.enrolment(ref, at=emr.ago(700)),
            emr.delivery(ref, emr.ago(500)),
            emr.enrolment(ref, at=emr.ago(300), national_id=None),  # her next pregnancy, same record number
            emr.transfer_out(ref, emr.ago(250)),
            emr.enrolment(
                ref, at=emr.ago(200), status_at_enrolment="postnatal", gestation_weeks=None, national_id=None
            ),
        ]
    )

    published = await enrolment.catalog_events({results[0]["client_id"]}, expected=5)
    enrolments = [catalog.parse(ce) for ce in published if ce.event_name == "ClientEnrolled"]
    assert [e.transfer_in for e in enrolments] == [False, False, True]


async def test_the_same_batch_posted_twice_at_once_is_recorded_once(enrolment, emr) -> None:
    known = emr.ref()
    [enrolled] = await enrolment.accept([emr.enrolment(known, at=emr.ago(300), hiv_status="positive")])
    fresh = emr.ref()
    events = [
        emr.enrolment(fresh, at=emr.ago(200)),
        emr.anc_visit(fresh, emr.ago(150)),
        emr.art(known, emr.ago(100)),
        emr.viral_load(known, emr.ago(50)),
    ]
    before = await enrolment.counts()

    first, second = await asyncio.gather(enrolment.post(events), enrolment.post(events))

    statuses = sorted(tuple(r["status"] for r in response.json()["results"]) for response in (first, second))
    assert statuses == [("accepted",) * 4, ("duplicate",) * 4]
    after = await enrolment.counts()
    assert after["client_events"] - before["client_events"] == 4
    assert after["outbox"] - before["outbox"] == 4
    assert after["clients"] - before["clients"] == 1
    assert {r["client_id"] for r in first.json()["results"][2:]} == {enrolled["client_id"]}


async def test_the_openapi_document_describes_each_emr_event_for_integrators(enrolment) -> None:
    schema = (await enrolment.http.get("/openapi.json")).json()

    components = schema["components"]["schemas"]
    # the front door's events: the mother events described here, the infant events by follow-up
    assert components["EventBatch"]["properties"]["events"]["items"] == {
        "anyOf": [{"$ref": "#/components/schemas/EmrEvent"}, {"$ref": "#/components/schemas/InfantEvent"}]
    }
    mapping = components["EmrEvent"]["discriminator"]["mapping"]
    assert set(mapping) == {
        "ClientEnrolled",
        "AncVisitRecorded",
        "HivTestRecorded",
        "ArtInitiated",
        "ViralLoadRecorded",
        "DeliveryRecorded",
        "PregnancyEnded",
        "ClientTransferredOut",
        "ClientDied",
        "EventVoided",
    }
    assert "national_id" in components["ClientEnrolledData"]["properties"]
    # a correction: the void names the event it voids, and every event may name the one it replaces
    assert set(components["EventVoidedData"]["required"]) == {"voided_event_id"}
    assert "replaces" in components["HivTestRecordedIn"]["properties"]
