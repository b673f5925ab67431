"""The one front door (enrolment's `POST /v1/events`, enrolment/frontdoor.py) and the dry run, through
the services as real processes (`platform`): a mixed batch is routed and answered in the order
posted; a dry run answers as the real post that follows it and records nothing; follow-up stopped,
the mother events are still recorded and the infant events are `service_unavailable`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from enrolment import frontdoor
from enrolment.schemas import EVENT_TYPES
from enrolment.settings import Settings as EnrolmentSettings
from followup.schemas import INFANT_EVENT_TYPES
from pmtct_tools.devrunner import Platform, dev_key
from pmtct_tools.localinfra import stop_process
from pmtct_tools.testing import Infra, TestIssuer
from servicekit import bootstrap, intake
from servicekit.db import asyncpg_dsn, create_engine, sessionmaker
from servicekit.intake import Code, EventStatus

pytestmark = pytest.mark.e2e

FACILITY = "FAC-ZA-001"
#: in the registry, not in the clinic's token
OTHER_FACILITY = "FAC-ZA-002"
NOW = datetime.now(UTC).replace(microsecond=0)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def event(type: str, data: dict[str, Any], days: float, facility_id: str = FACILITY, **subject: str) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "facility_id": facility_id,
        "occurred_at": ago(days),
        **subject,
        "data": data,
    }


def enrolled(client_ref: str, days: float = 200, hiv_status: str = "negative", **data: Any) -> dict:
    body: dict[str, Any] = {
        "given_name": "Lindiwe",
        "family_name": f"Front{uuid.uuid4().hex[:6]}",
        "birth_date": "1995-02-17",
        "status_at_enrolment": "pregnant",
        "hiv_status": hiv_status,
        "on_art": False,
        "gestation_weeks": 14,
        **data,
    }
    return event("ClientEnrolled", body, days, client_ref=client_ref)


def prophylaxis(days: float = 20, **subject: str) -> dict:
    return event("InfantProphylaxisRecorded", {"drug": "NVP", "duration_weeks": 6}, days, **subject)


def feeding(days: float = 19, **subject: str) -> dict:
    return event("InfantFeedingRecorded", {"method": "exclusive_breastfeeding"}, days, **subject)


@dataclass
class Door:
    platform: Platform
    issuer: TestIssuer
    infra: Infra

    def headers(self) -> dict[str, str]:
        return self.issuer.headers("events:write", [FACILITY], "emr-front-door")

    async def post(self, events: list[Any], *, service: str = "enrolment", dry_run: bool = False) -> dict:
        params = {"dry_run": "true"} if dry_run else None
        async with httpx.AsyncClient(base_url=self.platform.url(service), timeout=60) as http:
            response = await http.post("/v1/events", json={"events": events}, headers=self.headers(), params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def fetch(self, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(bootstrap.service_url(self.infra.admin_url, service)))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def metric(self, service: str, name: str) -> float:
        """The sum of a counter over its labels, as the service's /metrics shows it."""
        token = dev_key(self.platform.data_dir, "metrics.token")
        async with httpx.AsyncClient(base_url=self.platform.url(service), timeout=30) as http:
            text = (await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
        pattern = re.compile(rf"^{name}\{{.*\}} ([0-9.e+]+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))


@dataclass
class Family:
    """A mother follow-up knows, and her baby."""

    client_ref: str
    client_id: str
    infant_id: str
    infant_ref: str


@pytest.fixture(scope="module")
async def door(platform: Platform, issuer: TestIssuer, migrated: Infra) -> Door:
    return Door(platform, issuer, migrated)


@pytest.fixture(scope="module")
async def family(door: Door) -> AsyncIterator[Family]:
    """An HIV-positive mother delivered 30 days ago, posted through the front door, and the first
    infant event the front door routes once follow-up has heard of the baby."""
    client_ref, infant_ref = ref("ANC"), ref("HEI")
    mother = enrolled(
        client_ref, 200, "positive", hiv_status_known_since=ago(400)[:10], on_art=True, art_start_date=ago(390)[:10]
    )
    delivery = event(
        "DeliveryRecorded",
        {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": [{"infant_ref": infant_ref, "sex": "female", "outcome": "live_birth"}],
        },
        30,
        client_ref=client_ref,
    )
    reply = await door.post([mother, delivery])
    assert [r["status"] for r in reply["results"]] == ["accepted", "accepted"], reply
    infant_id = reply["results"][1]["infants"][0]["infant_id"]
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        [result] = (await door.post([event("InfantVisitRecorded", {}, 29, infant_id=infant_id)]))["results"]
        if result["status"] == "accepted":
            break
        assert result["status"] == "pending" or result["code"] == "unknown_infant", result
        assert asyncio.get_running_loop().time() < deadline, "follow-up never heard of the delivery"
        await asyncio.sleep(0.3)
    yield Family(client_ref, reply["results"][0]["client_id"], infant_id, infant_ref)


def outcome(result: dict) -> tuple[str, str | None]:
    return result["status"], result["code"]


async def test_a_mixed_batch_is_routed_and_answered_in_the_order_posted(door: Door, family: Family) -> None:
    newcomer = ref("ANC")
    batch = [
        prophylaxis(infant_id=family.infant_id),
        event("AncVisitRecorded", {"visit_number": 1}, 190, client_ref=family.client_ref),
        feeding(infant_ref=family.infant_ref),
        {**feeding(infant_id=family.infant_id), "notes": "seen by sister"},
        {**prophylaxis(infant_id=family.infant_id), "type": "InfantWeighed"},
        enrolled(newcomer, 100),
        event("HivTestRecorded", {"result": "negative", "setting": "anc"}, 99, client_ref=newcomer),
    ]
    reply = await door.post(batch)

    results = reply["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["event_id"] for r in results] == [e["event_id"] for e in batch]
    assert [outcome(r) for r in results] == [
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("rejected", "unknown_field"),
        ("rejected", "unknown_event_type"),
        ("accepted", None),
        ("accepted", None),
    ]
    assert [results[i]["infant_id"] for i in (0, 2)] == [family.infant_id, family.infant_id]
    assert results[1]["client_id"] == family.client_id
    assert results[5]["client_id"] == results[6]["client_id"] is not None
    # follow-up's own reason for its rejection, the front door's for a type nobody takes
    assert "notes is not a field" in results[3]["reason"]
    assert "not an event the platform takes" in results[4]["reason"]
    assert "ClientEnrolled" in results[4]["reason"] and "InfantOutcomeRecorded" in results[4]["reason"]
    assert (reply["accepted"], reply["duplicate"], reply["rejected"], reply["dry_run"]) == (5, 0, 2, False)

    # each recorded where it belongs
    infant_rows = await door.fetch(
        "followup",
        "SELECT event_id::text FROM infant_events WHERE event_id = ANY($1::uuid[])",
        [e["event_id"] for e in batch],
    )
    mother_rows = await door.fetch(
        "enrolment",
        "SELECT event_id::text FROM client_events WHERE event_id = ANY($1::uuid[])",
        [e["event_id"] for e in batch],
    )
    assert {r["event_id"] for r in infant_rows} == {batch[0]["event_id"], batch[2]["event_id"]}
    assert {r["event_id"] for r in mother_rows} == {batch[i]["event_id"] for i in (1, 5, 6)}

    again = await door.post(batch)
    assert [outcome(r) for r in again["results"]] == [
        ("duplicate", None),
        ("duplicate", None),
        ("duplicate", None),
        ("rejected", "unknown_field"),
        ("rejected", "unknown_event_type"),
        ("duplicate", None),
        ("duplicate", None),
    ]


async def test_the_trace_goes_on_into_follow_up(door: Door, family: Family) -> None:
    trace_id = uuid.uuid4().hex
    posted = prophylaxis(10, infant_id=family.infant_id)
    headers = {**door.headers(), "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    async with httpx.AsyncClient(base_url=door.platform.url("enrolment"), timeout=60) as http:
        response = await http.post("/v1/events", json={"events": [posted]}, headers=headers)
    assert response.json()["results"][0]["status"] == "accepted", response.text

    rows = await door.fetch(
        "followup",
        "SELECT traceparent FROM outbox WHERE event_type LIKE '%InfantProphylaxisRecorded%' AND aggregate_id = $1::text"
        " ORDER BY id DESC LIMIT 1",
        family.infant_id,
    )
    assert rows and rows[0]["traceparent"].split("-")[1] == trace_id


async def test_a_dry_run_answers_as_the_real_post_that_follows_and_records_nothing(door: Door, family: Family) -> None:
    recorded = event("AncVisitRecorded", {"visit_number": 2}, 170, client_ref=family.client_ref)
    assert (await door.post([recorded]))["results"][0]["status"] == "accepted"
    newcomer = ref("ANC")
    batch = [
        enrolled(newcomer, 90),
        event("HivTestRecorded", {"result": "negative", "setting": "anc"}, 89, client_ref=newcomer),
        prophylaxis(15, infant_id=family.infant_id),
        recorded,  # a duplicate
        {**recorded, "occurred_at": ago(171)},  # a conflict
        enrolled(ref("ANC"), 90, gestation_weeks=60),
        {**enrolled(ref("ANC"), 90), "facility_id": OTHER_FACILITY},
        feeding(infant_id=str(uuid.uuid4())),
    ]
    ids = [e["event_id"] for e in batch]
    intake_before = await door.metric("enrolment", "pmtct_intake_events_total")
    dry_before = await door.metric("enrolment", "pmtct_intake_dry_run_events_total")
    started = await door.fetch("enrolment", "SELECT now() AS t")
    listener = await asyncpg.connect(asyncpg_dsn(bootstrap.service_url(door.infra.admin_url, "enrolment")))
    notified: list[str] = []
    await listener.add_listener("enrolment_outbox", lambda *args: notified.append(args[1]))
    try:
        dry = await door.post(batch, dry_run=True)
        await asyncio.sleep(1.0)
    finally:
        await listener.close()

    assert dry["dry_run"] is True
    expected = [
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "conflict"),
        ("rejected", "gestation_out_of_range"),
        ("rejected", "facility_forbidden"),
    ]
    assert [outcome(r) for r in dry["results"][:7]] == expected
    # an infant follow-up does not know yet is held, as a real post would hold it (docs/emr-intake.md)
    assert (dry["results"][7]["status"], dry["results"][7]["code"]) == ("pending", "awaiting_infant")
    made_up = dry["results"][0]["client_id"]
    assert dry["results"][0]["provisional_ids"] == [made_up] == dry["results"][1]["provisional_ids"]
    assert dry["results"][2]["provisional_ids"] is None and dry["results"][2]["infant_id"] == family.infant_id
    assert dry["results"][3]["provisional_ids"] is None and dry["results"][3]["client_id"] == family.client_id

    # nothing recorded, nothing published, not counted as intake
    assert notified == [], "a dry run woke the relay"
    since = started[0]["t"]
    for service, table in (("enrolment", "client_events"), ("followup", "infant_events")):
        rows = await door.fetch(service, f"SELECT 1 FROM {table} WHERE event_id = ANY($1::uuid[])", ids[:3])
        assert rows == [], table
    assert await door.fetch("enrolment", "SELECT 1 FROM clients WHERE client_id = $1::uuid", made_up) == []
    assert await door.fetch("enrolment", "SELECT 1 FROM registrations WHERE client_ref = $1", newcomer) == []
    assert (
        await door.fetch(
            "enrolment",
            "SELECT 1 FROM outbox WHERE created_at >= $1 AND aggregate_id = ANY($2::text[])",
            since,
            [made_up, family.client_id],
        )
        == []
    )
    assert (
        await door.fetch(
            "followup",
            "SELECT 1 FROM outbox WHERE created_at >= $1 AND event_type LIKE '%InfantProphylaxisRecorded%'"
            " AND aggregate_id = $2::text",
            since,
            family.infant_id,
        )
        == []
    )
    assert await door.metric("enrolment", "pmtct_intake_events_total") == intake_before
    assert await door.metric("enrolment", "pmtct_intake_dry_run_events_total") == dry_before + 6  # its mother events

    real = await door.post(batch)
    assert real["dry_run"] is False
    assert [(r["status"], r["code"], r["reason"]) for r in real["results"]] == [
        (r["status"], r["code"], r["reason"]) for r in dry["results"]
    ]
    assert all(r["provisional_ids"] is None for r in real["results"])
    assert real["results"][0]["client_id"] != made_up  # the real post assigns its own
    assert await door.metric("enrolment", "pmtct_intake_events_total") == intake_before + 6


async def test_a_dry_run_on_follow_ups_own_door(door: Door, family: Family) -> None:
    posted = feeding(12, infant_id=family.infant_id)
    dry = await door.post([posted], service="followup", dry_run=True)
    assert dry["dry_run"] is True and outcome(dry["results"][0]) == ("accepted", None)
    assert (
        await door.fetch("followup", "SELECT 1 FROM infant_events WHERE event_id = $1::uuid", posted["event_id"]) == []
    )

    real = await door.post([posted], service="followup")
    assert real["dry_run"] is False and outcome(real["results"][0]) == ("accepted", None)
    assert real["results"][0]["infant_id"] == dry["results"][0]["infant_id"] == family.infant_id


async def test_follow_up_stopped_the_mother_events_are_recorded_and_the_infant_events_resent_later(
    door: Door, family: Family
) -> None:
    newcomer = ref("ANC")
    batch = [
        prophylaxis(8, infant_id=family.infant_id),
        enrolled(newcomer, 60),
        feeding(7, infant_ref=family.infant_ref),
    ]
    platform = door.platform
    stop_process(platform.processes["followup"], 15)
    try:
        reply = await door.post(batch)
        # an event enrolment does not hold, follow-up not there to be asked: 503, ask again later
        async with httpx.AsyncClient(base_url=platform.url("enrolment"), timeout=60) as http:
            lookup = await http.get(f"/v1/events/{uuid.uuid4()}", headers=door.headers())
        assert (lookup.status_code, lookup.json()["code"]) == (503, "service_unavailable")
        assert lookup.headers["retry-after"]
    finally:
        platform.start_service("followup")
        platform.wait_ready(("followup",))

    assert [outcome(r) for r in reply["results"]] == [
        ("rejected", "service_unavailable"),
        ("accepted", None),
        ("rejected", "service_unavailable"),
    ]
    assert "resend" in reply["results"][0]["reason"]
    assert Code.service_unavailable.action.value == "resend it later, unchanged"

    # what the code says to do: resend later, unchanged
    again = await door.post(batch)
    assert [outcome(r) for r in again["results"]] == [("accepted", None), ("duplicate", None), ("accepted", None)]


async def test_the_front_door_answers_get_event_for_infant_events_too(door: Door, family: Family) -> None:
    """One address for the EMR: enrolment's `GET /v1/events/{event_id}` answers for a mother event
    (its own records) and for an infant event (asked of follow-up with the caller's token)."""
    mother = enrolled(ref("ANC"), 50)
    given = prophylaxis(6, infant_id=family.infant_id)
    held = feeding(5, infant_ref=ref("HEI"))  # an infant follow-up does not know yet: held there
    reply = await door.post([mother, given, held])
    assert [r["status"] for r in reply["results"]] == ["accepted", "accepted", "pending"], reply

    async def state(event_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=door.platform.url("enrolment"), timeout=60) as http:
            return await http.get(f"/v1/events/{event_id}", headers=headers or door.headers())

    answers = [(await state(e["event_id"])).json() for e in (mother, given, held)]
    assert [(a["type"], a["status"]) for a in answers] == [
        ("ClientEnrolled", "accepted"),
        ("InfantProphylaxisRecorded", "accepted"),
        ("InfantFeedingRecorded", "pending"),
    ]
    assert answers[1]["ids"]["infant_id"] == family.infant_id
    assert answers[2]["code"] == "awaiting_infant"
    unknown = await state(str(uuid.uuid4()))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_event")
    # follow-up checks the caller's own token: another facility's client finds nothing
    other = await state(given["event_id"], door.issuer.headers("events:write", [OTHER_FACILITY], "emr-other"))
    assert (other.status_code, other.json()["code"]) == (404, "unknown_event")


async def test_a_void_of_a_held_event_voids_it_where_it_is_held(door: Door, family: Family) -> None:
    """An infant event posted before its delivery is held by follow-up, a mother event before her
    enrolment by enrolment: a void of either, through the front door, goes where it is held and
    voids it there; neither is applied when what it waited for arrives."""
    client_ref, infant_ref = ref("ANC"), ref("HEI")
    held_infant = feeding(5, infant_ref=infant_ref)
    held_mother = event("AncVisitRecorded", {"visit_number": 2}, 60, client_ref=client_ref)
    reply = await door.post([held_mother, held_infant])
    assert [outcome(r) for r in reply["results"]] == [("pending", "awaiting_client"), ("pending", "awaiting_infant")]
    voids = [
        event("EventVoided", {"voided_event_id": e["event_id"], "reason": "entered_in_error"}, 0.01)
        for e in (held_mother, held_infant)
    ]
    reply = await door.post(voids)
    assert [r["status"] for r in reply["results"]] == ["accepted", "accepted"], reply
    assert all("never applied" in r["reason"] for r in reply["results"])

    mother = enrolled(
        client_ref, 100, "positive", hiv_status_known_since=ago(400)[:10], on_art=True, art_start_date=ago(390)[:10]
    )
    delivery = event(
        "DeliveryRecorded",
        {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": [{"infant_ref": infant_ref, "sex": "female", "outcome": "live_birth"}],
        },
        10,
        client_ref=client_ref,
    )
    reply = await door.post([mother, delivery])
    assert [r["status"] for r in reply["results"]] == ["accepted", "accepted"], reply
    infant_id = reply["results"][1]["infants"][0]["infant_id"]
    # follow-up has heard of the baby once an event of hers is taken
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        [result] = (await door.post([event("InfantVisitRecorded", {}, 4, infant_id=infant_id)]))["results"]
        if result["status"] == "accepted":
            break
        assert asyncio.get_running_loop().time() < deadline, "follow-up never heard of the delivery"
        await asyncio.sleep(0.3)

    async with httpx.AsyncClient(base_url=door.platform.url("enrolment"), timeout=60) as http:
        states = [
            (await http.get(f"/v1/events/{e['event_id']}", headers=door.headers())).json()
            for e in (held_mother, held_infant)
        ]
    assert [(s["status"], s["voided_by"]) for s in states] == [("voided", v["event_id"]) for v in voids]
    visits = await door.fetch(
        "enrolment", "SELECT count(*) AS n FROM client_events WHERE event_id = $1::uuid", held_mother["event_id"]
    )
    feedings = await door.fetch(
        "followup", "SELECT count(*) AS n FROM infant_events WHERE event_id = $1::uuid", held_infant["event_id"]
    )
    assert (visits[0]["n"], feedings[0]["n"]) == (0, 0), "a voided held event is never applied"


async def test_follow_up_counts_no_dry_run_the_front_door_rehearses(door: Door, family: Family) -> None:
    """A FHIR transaction's all-or-nothing check is a dry run of the door's own (`X-PMTCT-Rehearsal`,
    its value a keyed hash of the token under the platform's HMAC key): follow-up's
    `pmtct_intake_dry_run_events_total` counts every other dry run, one whose EMR sends the header
    itself (`true`, or any value it can make without the key) included."""
    name = "pmtct_intake_dry_run_events_total"
    headers = door.headers()
    token = headers["Authorization"].partition(" ")[2]
    key = door.platform.service_env("followup")["PMTCT_HMAC_KEY"]  # the key follow-up runs with
    proof = intake.rehearsal_proof(key, token)
    other_token = door.issuer.headers("events:write", [FACILITY], "emr-other")["Authorization"].partition(" ")[2]
    before = await door.metric("followup", name)

    async def dry_run(extra: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=door.platform.url("followup"), timeout=60) as http:
            reply = await http.post(
                "/v1/events",
                json={"events": [feeding(4, infant_id=family.infant_id)]},
                params={"dry_run": "true"},
                headers={**headers, **extra},
            )
        assert reply.status_code == 200, reply.text

    await dry_run({"X-PMTCT-Rehearsal": str(proof)})
    assert await door.metric("followup", name) == before
    # the front door's own rehearsal, as the FHIR door forwards it
    settings = EnrolmentSettings.model_construct(
        followup_url=door.platform.url("followup"), followup_timeout_s=60.0, hmac_key=key
    )
    forwarded = await frontdoor.forward(
        settings, token, [feeding(4, infant_id=family.infant_id)], dry_run=True, counted=False
    )
    assert forwarded.results[0].status != EventStatus.rejected, forwarded
    assert await door.metric("followup", name) == before
    await dry_run({})
    await dry_run({"X-PMTCT-Rehearsal": "true"})
    # another token's proof is not this token's
    await dry_run({"X-PMTCT-Rehearsal": str(intake.rehearsal_proof(key, other_token))})
    assert await door.metric("followup", name) == before + 3


async def test_both_doors_declare_the_dry_run_every_status_and_every_code(door: Door) -> None:
    for service in ("enrolment", "followup"):
        async with httpx.AsyncClient(base_url=door.platform.url(service), timeout=30) as http:
            schema = (await http.get("/openapi.json")).json()
        post = schema["paths"]["/v1/events"]["post"]
        [dry_run] = [p for p in post["parameters"] if p["name"] == "dry_run"]
        assert dry_run["in"] == "query" and dry_run["schema"]["type"] == "boolean", service
        components = schema["components"]["schemas"]
        assert set(components["EventStatus"]["enum"]) == {s.value for s in EventStatus}, service
        assert set(components["Code"]["enum"]) == {c.value for c in Code}, service
        reply = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        assert "dry_run" in components[reply]["properties"], service
    async with httpx.AsyncClient(base_url=door.platform.url("enrolment"), timeout=30) as http:
        components_of_enrolment = (await http.get("/openapi.json")).json()["components"]["schemas"]
    items = components_of_enrolment["EventBatch"]["properties"]["events"]["items"]["anyOf"]
    assert [i["$ref"].split("/")[-1] for i in items] == ["EmrEvent", "InfantEvent"]
    assert components_of_enrolment["InfantEvent"]["properties"]["type"]["enum"] == list(INFANT_EVENT_TYPES)


def test_the_routing_registry_sends_every_mother_type_to_enrolment_and_every_infant_type_to_follow_up() -> None:
    assert frontdoor.INFANT_TYPES == INFANT_EVENT_TYPES
    doors = {t: d for t, d in frontdoor.ROUTES.items() if isinstance(d, frontdoor.Door)}
    assert {t for t, d in doors.items() if d is frontdoor.Door.enrolment} >= set(EVENT_TYPES)
    assert {t for t, d in doors.items() if d is frontdoor.Door.followup} >= set(INFANT_EVENT_TYPES)
    assert set(frontdoor.ROUTES) >= set(EVENT_TYPES) | set(INFANT_EVENT_TYPES)


async def test_a_type_routed_by_the_event_it_names_goes_where_that_event_is_recorded(
    door: Door, family: Family
) -> None:
    """The hook for corrections: `recorded_here(field)` asks enrolment's store."""
    [mine] = await door.fetch(
        "enrolment", "SELECT event_id::text FROM client_events WHERE client_id = $1::uuid LIMIT 1", family.client_id
    )
    engine = create_engine(bootstrap.service_url(door.infra.admin_url, "enrolment"), "enrolment", 2)
    try:
        async with sessionmaker(engine)() as session:
            doors = await frontdoor.recorded_here("voided_event_id")(
                session,
                [
                    {"data": {"voided_event_id": mine["event_id"]}},
                    {"data": {"voided_event_id": str(uuid.uuid4())}},
                    {"data": {"voided_event_id": "not-a-uuid"}},
                    {"data": "not an object"},
                ],
            )
    finally:
        await engine.dispose()
    assert doors == [
        frontdoor.Door.enrolment,
        frontdoor.Door.followup,
        frontdoor.Door.enrolment,
        frontdoor.Door.enrolment,
    ]
