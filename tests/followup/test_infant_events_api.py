"""POST /v1/events, GET /v1/infants/{id} and GET /v1/worklist over HTTP, on real dates, with the
in-process service's consumer, relay and live timers running."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from followup_support import FACILITY, at, days_ago, live_infant, new_mother, well_treated
from sqlalchemy import text

from pmtct_events import FOLLOWUP_TOPIC
from pmtct_events.enrolment import HivStatus
from pmtct_tools.testing import envelopes, read_topic

NAT_NEGATIVE = {"test": "NAT", "result": "negative", "confirmatory": False}


def infant_event(infant_id, type: str, on: date | datetime, data: dict | None = None, **fields) -> dict:
    occurred = on if isinstance(on, datetime) else at(on)
    event = {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "facility_id": FACILITY,
        "occurred_at": occurred.isoformat(),
        "infant_id": str(infant_id) if infant_id else None,
        "data": data if data is not None else {},
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


async def born(followup, days: int, *, hiv_status: HivStatus = HivStatus.positive, infant=None):
    """A mother and her baby delivered `days` ago, through the consumer's handler (real settle delay)."""
    mother, baby = new_mother(), infant or live_infant()
    birth = days_ago(days)
    treated = well_treated(birth) if hiv_status is HivStatus.positive else {}
    await followup.apply(mother.delivered(birth, [baby], hiv_status=hiv_status, **treated), settings=followup.settings)
    return mother, baby, birth


async def test_each_infant_event_type_is_accepted_and_published_as_its_catalog_event(followup) -> None:
    mother, baby, birth = await born(followup, 60)
    events = [
        infant_event(baby.infant_id, "InfantProphylaxisRecorded", birth, {"drug": "NVP", "duration_weeks": 6}),
        infant_event(
            baby.infant_id, "InfantFeedingRecorded", birth + timedelta(days=7), {"method": "exclusive_breastfeeding"}
        ),
        infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=14)),
        infant_event(baby.infant_id, "InfantTestResulted", birth + timedelta(days=42), NAT_NEGATIVE),
        infant_event(baby.infant_id, "InfantArtInitiated", birth + timedelta(days=43)),
        infant_event(
            baby.infant_id, "InfantOutcomeRecorded", birth + timedelta(days=50), {"outcome": "transferred_out"}
        ),
    ]
    results = await followup.accept(events)
    assert {r["infant_id"] for r in results} == {str(baby.infant_id)}

    expected = [
        "InfantFollowUpStarted",
        "InfantProphylaxisRecorded",
        "InfantFeedingRecorded",
        "InfantVisitRecorded",
        "InfantTestResulted",
        "InfantArtInitiated",
        "InfantFinalOutcomeRecorded",
    ]
    key = str(baby.infant_id).encode()

    def mine(records):
        return [r for r in records if r.key == key]

    records = await read_topic(
        followup.infra.bootstrap_servers, FOLLOWUP_TOPIC, until=lambda rs: len(mine(rs)) >= len(expected)
    )
    published = envelopes(mine(records))
    assert [ce.event_name for ce in published] == expected
    assert all(ce.subject == str(baby.infant_id) and ce.facility_id == FACILITY for ce in published)
    tested = next(ce.data for ce in published if ce.event_name == "InfantTestResulted")
    assert tested["age_days"] == 42 and tested["first_virologic"] is True
    assert tested["client_id"] == str(mother.client_id)
    outcome = published[-1].data
    assert (outcome["outcome"], outcome["age_days"]) == ("transferred_out", 50)

    record = await followup.infant(baby.infant_id)
    assert record["status"] == "transferred_out"
    assert [(r["test"], r["result"], r["age_days"]) for r in record["results"]] == [("NAT", "negative", 42)]
    assert [r["type"] for r in record["records"]] == [
        "InfantProphylaxisRecorded",
        "InfantFeedingRecorded",
        "InfantVisitRecorded",
        "InfantArtInitiated",
        "InfantOutcomeRecorded",
    ]
    assert all(i["status"] in ("satisfied", "cancelled") for i in record["plan"])


async def test_an_infant_named_by_its_emr_reference_at_its_birth_facility_is_found_by_keyed_hash(followup) -> None:
    ref = f"HEI-{uuid.uuid4().hex[:8]}"
    _, baby, birth = await born(followup, 30, infant=live_infant(followup.settings.hmac_key, FACILITY, ref))
    by_ref = infant_event(None, "InfantVisitRecorded", birth + timedelta(days=3), infant_ref=ref)
    elsewhere = {**by_ref, "event_id": str(uuid.uuid4()), "facility_id": "FAC-ZA-004"}

    response = await followup.post([by_ref, elsewhere], facilities=[FACILITY, "FAC-ZA-004"])
    first, second = response.json()["results"]
    assert (first["status"], first["infant_id"]) == ("accepted", str(baby.infant_id))
    # the record number names no infant at that facility (yet): held until a delivery there does
    assert (second["status"], second["code"]) == ("pending", "awaiting_infant")


async def test_a_batch_posted_twice_is_all_duplicates_and_publishes_nothing_new(followup) -> None:
    _, baby, birth = await born(followup, 20)
    events = [infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=d)) for d in (1, 2, 3)]
    await followup.accept(events)
    emitted = await followup.emitted([baby.infant_id])

    again = await followup.post(events)
    body = again.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (0, 3, 0)
    assert all(r["infant_id"] == str(baby.infant_id) for r in body["results"])
    assert await followup.emitted([baby.infant_id]) == emitted


async def test_two_posts_of_the_same_batch_racing_each_other_apply_every_event_once(followup) -> None:
    _, baby, birth = await born(followup, 20)
    events = [infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=d)) for d in (1, 2)]

    first, second = await asyncio.gather(followup.post(events), followup.post(events))
    statuses = sorted(r["status"] for response in (first, second) for r in response.json()["results"])
    assert statuses == ["accepted", "accepted", "duplicate", "duplicate"]
    assert (await followup.emitted_names([baby.infant_id])).count("InfantVisitRecorded") == 2


async def test_the_same_event_id_with_different_content_is_a_conflict_before_and_within_a_batch(followup) -> None:
    _, baby, birth = await born(followup, 20)
    original = infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=1))
    await followup.accept([original])
    changed = {**original, "occurred_at": at(birth + timedelta(days=2)).isoformat()}
    twin = infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=3))
    twin_changed = {**twin, "occurred_at": at(birth + timedelta(days=4)).isoformat()}

    body = (await followup.post([changed, twin, twin, twin_changed])).json()
    assert [(r["status"], r["code"]) for r in body["results"]] == [
        ("rejected", "conflict"),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "conflict"),
    ]


def _bad_cases(infant_id, dead_id, negative_id, birth: date) -> list[tuple[str, dict, str]]:
    ok = infant_event(infant_id, "InfantTestResulted", birth + timedelta(days=40), NAT_NEGATIVE)
    now = datetime.now(UTC)

    def variant(**changes) -> dict:
        event = {**ok, "event_id": str(uuid.uuid4()), **changes}
        return {k: v for k, v in event.items() if v is not None}

    return [
        ("an unknown event type", variant(type="InfantWeighed"), "unknown_event_type"),
        ("no type at all", variant(type=None), "missing_field"),
        ("a field of the wrong type", variant(data={**NAT_NEGATIVE, "confirmatory": "yes"}), "invalid_value"),
        ("an unknown field", variant(weight_g=3200), "unknown_field"),
        ("an unknown data field", variant(data={**NAT_NEGATIVE, "lab": "X"}), "unknown_field"),
        ("a missing data field", variant(data={"test": "NAT", "result": "negative"}), "missing_field"),
        ("an unknown test", variant(data={**NAT_NEGATIVE, "test": "PCR2"}), "invalid_value"),
        (
            "a prophylaxis of 60 weeks",
            variant(type="InfantProphylaxisRecorded", data={"drug": "NVP", "duration_weeks": 60}),
            "invalid_value",
        ),
        (
            "an outcome the EMR cannot post",
            variant(type="InfantOutcomeRecorded", data={"outcome": "uninfected"}),
            "invalid_value",
        ),
        ("a time without a zone", variant(occurred_at="2026-01-01T10:00:00"), "invalid_value"),
        ("an event_id that is not a UUID", variant(event_id="emr-17"), "invalid_value"),
        ("a non-object event", [1, 2], "invalid_value"),
        ("an unknown facility", variant(facility_id="FAC-XX-999"), "unknown_facility"),
        ("a facility the client may not act for", variant(facility_id="FAC-KE-001"), "facility_forbidden"),
        ("both infant_id and infant_ref", variant(infant_ref="HEI-1"), "subject_identifier_ambiguous"),
        ("neither infant_id nor infant_ref", variant(infant_id=None), "subject_identifier_missing"),
        # held (`pending`), not rejected: the delivery, or the mother's positive status, may be on its way
        ("an infant nobody delivered", variant(infant_id=str(uuid.uuid4())), "awaiting_infant"),
        ("an infant ref nobody delivered", variant(infant_id=None, infant_ref="HEI-NOBODY"), "awaiting_infant"),
        ("an infant of an HIV-negative mother", variant(infant_id=str(negative_id)), "awaiting_infant"),
        ("a date in the future", variant(occurred_at=(now + timedelta(days=2)).isoformat()), "occurred_in_future"),
        ("a date before birth", variant(occurred_at=at(birth - timedelta(days=1)).isoformat()), "before_birth"),
        ("a date after the infant's death", variant(infant_id=str(dead_id)), "event_after_death"),
    ]


async def test_bad_infant_events_get_their_specific_code_and_reason_and_write_nothing(followup) -> None:
    _, baby, birth = await born(followup, 60)
    _, dead, _ = await born(followup, 60)
    _, unexposed, _ = await born(followup, 60, hiv_status=HivStatus.negative)
    await followup.accept(
        [infant_event(dead.infant_id, "InfantOutcomeRecorded", birth + timedelta(days=20), {"outcome": "died"})]
    )
    cases = _bad_cases(baby.infant_id, dead.infant_id, unexposed.infant_id, birth)
    good = infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=5))
    before = await followup.emitted([baby.infant_id, dead.infant_id, unexposed.infant_id])

    response = await followup.post([c[1] for c in cases] + [good], facilities=[FACILITY])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for (name, _, code), result in zip(cases, results, strict=False):
        status = "pending" if code.startswith("awaiting_") else "rejected"
        assert (result["status"], result["code"]) == (status, code), name
        assert result["reason"], name
    assert results[-1]["status"] == "accepted"

    after = await followup.emitted([baby.infant_id, dead.infant_id, unexposed.infant_id])
    assert [n for n, _ in after[len(before) :]] == ["InfantVisitRecorded"]
    async with followup.sessions() as session:
        ids = [str(c[1]["event_id"]) for c in cases if isinstance(c[1], dict) and "event_id" in c[1]]
        stored = await session.execute(
            text("SELECT count(*) FROM infant_events WHERE event_id::text = ANY(:ids)"), {"ids": ids}
        )
        assert stored.scalar_one() == 0


@pytest.mark.parametrize(
    "name, body, headers, status, code",
    [
        ("malformed JSON", b"{events: [", "events:write", 400, "malformed_json"),
        ("no events", b'{"events": []}', "events:write", 422, "empty_batch"),
        ("events is not a list", b'{"events": {}}', "events:write", 422, "validation_failed"),
        ("an unknown top-level field", b'{"events": [{}], "x": 1}', "events:write", 422, "validation_failed"),
        ("no token", b'{"events": [{}]}', None, 401, "unauthorized"),
        ("a token without events:write", b'{"events": [{}]}', "worklist:read", 403, "insufficient_scope"),
    ],
)
async def test_a_batch_that_cannot_be_read_is_refused_whole_with_a_problem(
    followup, name, body, headers, status, code
) -> None:
    h = {"content-type": "application/json", **(followup.headers(headers) if headers else {})}
    response = await followup.http.post("/v1/events", content=body, headers=h)
    assert response.status_code == status, (name, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_a_batch_of_more_than_1000_events_is_too_large(followup) -> None:
    events = [{"event_id": str(uuid.uuid4())} for _ in range(1001)]
    response = await followup.post(events)
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"


async def test_reads_are_scoped_to_the_facilities_of_the_token(followup) -> None:
    _, baby, _ = await born(followup, 10)
    other = followup.headers("worklist:read", ["FAC-KE-001"])
    cases = [
        (f"/v1/infants/{baby.infant_id}", other, 403, "facility_forbidden"),
        (f"/v1/infants/{uuid.uuid4()}", followup.headers("worklist:read"), 404, "unknown_infant"),
        (f"/v1/infants/{baby.infant_id}", followup.headers("events:write"), 403, "insufficient_scope"),
        ("/v1/infants/not-a-uuid", followup.headers("worklist:read"), 422, "validation_failed"),
        (f"/v1/worklist?facility_id={FACILITY}", other, 403, "facility_forbidden"),
        ("/v1/worklist?facility_id=FAC-XX-1", followup.headers("worklist:read"), 404, "unknown_facility"),
        (
            f"/v1/worklist?facility_id={FACILITY}&as_of=someday",
            followup.headers("worklist:read"),
            422,
            "validation_failed",
        ),
    ]
    for url, headers, status, code in cases:
        response = await followup.http.get(url, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), url


async def test_the_worklist_is_as_of_today_by_default(followup) -> None:
    _, baby, _ = await born(followup, 35)
    response = await followup.http.get(
        "/v1/worklist", params={"facility_id": FACILITY}, headers=followup.headers("worklist:read")
    )
    body = response.json()
    assert body["as_of"] == datetime.now(UTC).date().isoformat()
    mine = [i for i in body["items"] if i["subject_id"] == str(baby.infant_id)]
    assert [(i["action"], i["urgency"]) for i in mine] == [("infant_prophylaxis", "overdue"), ("nat_6_weeks", "due")]


async def test_backfill_a_delivery_ten_weeks_ago_raises_its_overdue_at_once_unless_the_result_comes_with_it(
    followup,
) -> None:
    with_result = await born(followup, 70)
    _, baby, birth = with_result
    await followup.accept(
        [infant_event(baby.infant_id, "InfantTestResulted", birth + timedelta(days=42), NAT_NEGATIVE)]
    )
    _, alone, _ = await born(followup, 70)

    async def overdue_raised() -> bool:
        return "InfantTestOverdue" in await followup.emitted_names([alone.infant_id])

    await followup.wait_for(overdue_raised, timeout_s=30)
    await followup.wait_for(lambda: _settled(followup, [baby.infant_id]), timeout_s=30)

    def tests(names: list[str]) -> list[str]:
        return [n for n in names if not n.startswith("InfantCare")]  # HEI visits, cotrimoxazole: their own

    assert tests(await followup.emitted_names([alone.infant_id])) == [
        "InfantFollowUpStarted",
        "InfantTestDue",
        "InfantTestOverdue",
    ]
    assert tests(await followup.emitted_names([baby.infant_id])) == ["InfantFollowUpStarted", "InfantTestResulted"]
    # the sample taken at 6 weeks met the 6-week HEI visit too: no visit overdue for the tested baby
    assert "InfantCareOverdue" in await followup.emitted_names([alone.infant_id])
    assert (await followup.items(baby.infant_id))["nat_6_weeks"]["status"] == "satisfied"


async def _settled(followup, infant_ids) -> bool:
    """The timers have passed over these infants since their last input (nothing left due today)."""
    async with followup.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT count(*) FROM infants WHERE infant_id = ANY(:ids)"
                " AND (settle_until > now() OR next_timer_on <= CURRENT_DATE)"
            ),
            {"ids": infant_ids},
        )
        return rows.scalar_one() == 0


async def test_cotrimoxazole_a_discharge_and_a_visit_after_it_through_the_api(followup) -> None:
    """Issue 13: cotrimoxazole recorded meets its item; a discharge posted by the facility ends
    follow-up with its reason (a discharge without one is refused); a visit after it resumes it."""
    mother, baby, birth = await born(followup, 70)
    refused = await followup.post(
        [infant_event(baby.infant_id, "InfantOutcomeRecorded", birth + timedelta(days=60), {"outcome": "discharged"})],
        facilities=[FACILITY],
    )
    assert [(r["status"], r["code"]) for r in refused.json()["results"]] == [("rejected", "invalid_value")]
    ctx_started = birth + timedelta(days=43)
    await followup.accept(
        [
            infant_event(
                baby.infant_id,
                "InfantCotrimoxazoleRecorded",
                birth + timedelta(days=45),
                {"started_on": str(ctx_started)},
            ),
            infant_event(
                baby.infant_id,
                "InfantOutcomeRecorded",
                birth + timedelta(days=60),
                {"outcome": "discharged", "reason": "caregiver_declined"},
            ),
        ]
    )
    record = await followup.infant(baby.infant_id)
    assert record["status"] == "discharged"
    assert record["final_outcome"]["outcome"] == "discharged"
    plan = {(i["kind"], i["label"]): i for i in record["plan"]}
    assert plan[("infant_cotrimoxazole", "Cotrimoxazole")]["status"] == "satisfied"
    assert plan[("hei_visit", "HEI visit at 14 weeks")]["cancel_reason"] == "discharged"
    assert all(i["label"] for i in record["plan"])

    await followup.accept([infant_event(baby.infant_id, "InfantVisitRecorded", birth + timedelta(days=65))])
    record = await followup.infant(baby.infant_id)
    assert (record["status"], record["final_outcome"]) == ("active", None)
    plan = {(i["kind"], i["label"]): i for i in record["plan"]}
    assert plan[("hei_visit", "HEI visit at 10 weeks")]["status"] == "satisfied"
    assert plan[("hei_visit", "HEI visit at 14 weeks")]["status"] in ("planned", "due")

    names = [
        "InfantCotrimoxazoleRecorded",
        "InfantFinalOutcomeRecorded",
        "InfantVisitRecorded",
        "InfantFollowUpResumed",
    ]
    key = str(baby.infant_id).encode()

    def mine(records):
        return [r for r in records if r.key == key and envelopes([r])[0].event_name in names]

    records = await read_topic(followup.infra.bootstrap_servers, FOLLOWUP_TOPIC, until=lambda rs: len(mine(rs)) >= 4)
    published = {ce.event_name: ce.data for ce in envelopes(mine(records))}
    assert published["InfantCotrimoxazoleRecorded"]["started_on"] == str(ctx_started)
    assert (
        published["InfantFinalOutcomeRecorded"]["outcome"],
        published["InfantFinalOutcomeRecorded"]["discharge_reason"],
    ) == (
        "discharged",
        "caregiver_declined",
    )
    assert published["InfantFollowUpResumed"]["because"] == "seen_after_discharge"
    assert published["InfantFollowUpResumed"]["client_id"] == str(mother.client_id)
