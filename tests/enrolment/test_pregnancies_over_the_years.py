"""A woman is one client across facilities and years, with a sequence of pregnancies: posted to
the real enrolment service, a miscarriage ends one and her next pregnancy is enrolled at the same
facility; every fact published carries the episode it belongs to and where in her care it
happened, so reporting counts it where it happened."""

from __future__ import annotations

from pmtct_events import catalog

PURPOSE = "ANC follow-up"


async def test_a_miscarriage_then_a_new_pregnancy_at_the_same_facility_are_two_episodes_of_one_client(
    enrolment, emr
) -> None:
    ref = emr.ref()
    loss = emr.event(
        "PregnancyEnded", {"outcome": "miscarriage", "gestation_weeks": 11}, client_ref=ref, occurred_at=emr.ago(320)
    )
    results = await enrolment.accept(
        [
            emr.enrolment(ref, at=emr.ago(350), gestation_weeks=8, national_id=None),
            loss,
            emr.enrolment(ref, at=emr.ago(200), gestation_weeks=10, national_id=None),  # the next pregnancy
            emr.anc_visit(ref, emr.ago(150), visit_number=2),
            emr.anc_visit(ref, emr.ago(120), visit_number=3),
            emr.hiv_test(ref, emr.ago(120), result="negative"),
        ]
    )
    client_id = results[0]["client_id"]
    assert {r["client_id"] for r in results} == {client_id}, "one woman, one client"

    published = [catalog.parse(ce) for ce in await enrolment.catalog_events({client_id}, expected=6)]
    by_type = {type(e).__name__: e for e in published}
    first, second = [e for e in published if type(e).__name__ == "ClientEnrolled"]
    assert (first.pregnancy_number, second.pregnancy_number) == (1, 2)
    assert first.episode_id != second.episode_id
    assert second.transfer_in is False, "a new pregnancy is a new ANC1, not a transfer"
    assert by_type["PregnancyEnded"].episode_id == first.episode_id
    test = by_type["HivTestRecorded"]
    assert (test.episode_id, test.anc_visit_number, test.period.value) == (second.episode_id, 3, "pregnancy")

    reader = enrolment.headers("clients:read", ["FAC-ZA-001"])
    body = (await enrolment.http.get(f"/v1/clients/{client_id}", params={"purpose": PURPOSE}, headers=reader)).json()
    assert [(e["pregnancy_number"], e["ended_by"]) for e in body["status"]["episodes"]] == [
        (1, "pregnancy_loss"),
        (2, None),
    ]
    assert body["status"]["pregnancy"] == "pregnant"


async def test_an_anc1_after_a_loss_opens_the_next_pregnancy_and_other_visits_need_one(enrolment, emr) -> None:
    ref = emr.ref()
    await enrolment.accept(
        [
            emr.enrolment(ref, at=emr.ago(400), gestation_weeks=6, national_id=None),
            emr.event("PregnancyEnded", {"outcome": "ectopic"}, client_ref=ref, occurred_at=emr.ago(380)),
        ]
    )

    response = await enrolment.post(
        [
            emr.anc_visit(ref, emr.ago(250), visit_number=2),
            emr.anc_visit(ref, emr.ago(240), visit_number=1, gestation_weeks=9),
            emr.event(
                "PregnancyEnded",
                {"outcome": "miscarriage", "gestation_weeks": 30},
                client_ref=ref,
                occurred_at=emr.ago(100),
            ),
        ]
    )

    results = response.json()["results"]
    assert [(r["status"], r["code"]) for r in results] == [
        ("rejected", "not_pregnant"),
        ("accepted", None),
        ("rejected", "gestation_out_of_range"),
    ]
    published = [catalog.parse(ce) for ce in await enrolment.catalog_events({results[1]["client_id"]}, expected=3)]
    [visit] = [e for e in published if type(e).__name__ == "AncVisitRecorded"]
    assert (visit.opens_episode, visit.pregnancy_number) == (True, 2)


async def test_art_started_after_delivery_is_postnatal_art(enrolment, emr) -> None:
    ref = emr.ref()
    results = await enrolment.accept(
        [
            emr.enrolment(ref, at=emr.ago(400), national_id=None),
            emr.delivery(ref, emr.ago(220)),
            emr.hiv_test(ref, emr.ago(100), result="positive", setting="postnatal"),
            emr.art(ref, emr.ago(99)),
        ]
    )

    published = [catalog.parse(ce) for ce in await enrolment.catalog_events({results[0]["client_id"]}, expected=4)]
    [art] = [e for e in published if type(e).__name__ == "ArtInitiated"]
    assert (art.period.value, art.pregnancy_number) == ("postnatal", 1)
