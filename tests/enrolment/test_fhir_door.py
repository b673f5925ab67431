"""`POST /fhir` (enrolment/fhir_door.py): bad input through the FHIR door is a 4xx OperationOutcome
that names the entry, and a transaction is all or nothing (nothing written, nothing published);
a batch answers entry by entry; a repost is a duplicate; a dry run writes nothing. The service runs
in-process against the real PostgreSQL and broker, with a site's ConceptMap (its OpenMRS encounter
types on top of the default map). Mother-only bundles: infant events go through the front door to
follow-up, which the end-to-end test (tests/e2e/test_fhir_intake_e2e.py) runs."""

from __future__ import annotations

import base64
import copy
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from enrolment.main import build_app
from enrolment.settings import Settings
from pmtct_events import ENROLMENT_TOPIC
from pmtct_tools.testing import Infra, TestIssuer, read_topic
from servicekit import bootstrap
from servicekit.db import asyncpg_dsn

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
FHIR_JSON = "application/fhir+json"


def fresh(name: str, facility: str = "FAC-ZA-002") -> dict[str, Any]:
    """A fixture bundle with ids and record numbers of its own (so each test posts new women)."""
    text = (FIXTURES / name).read_text()
    bundle = json.loads(text)
    tag = uuid.uuid4().hex[:8].upper()
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    for rid in ids:
        text = text.replace(rid, str(uuid.uuid5(uuid.NAMESPACE_URL, tag + rid)))
    for ref in ("10004KM", "10005LN", "9604110000081"):
        text = text.replace(ref, f"{ref}-{tag}")
    return json.loads(text.replace("FAC-ZA-002", facility))


TABLES = ("clients", "registrations", "client_events", "infants", "outbox")


@dataclass
class Door:
    http: httpx.AsyncClient
    issuer: TestIssuer
    infra: Infra
    database_url: str
    pii_key: str = ""

    def headers(self, facilities: list[str]) -> dict[str, str]:
        return self.issuer.headers("events:write", facilities, "openmrs-test")

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def counts(self) -> dict[str, int]:
        return {t: (await self.fetch(f"SELECT count(*) AS n FROM {t}"))[0]["n"] for t in TABLES}


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="module")
async def door(migrated: Infra, issuer: TestIssuer) -> AsyncIterator[Door]:
    settings = Settings(
        database_url=bootstrap.service_url(migrated.admin_url, "enrolment"),
        kafka_bootstrap_servers=migrated.bootstrap_servers,
        kafka_idempotent_producer=not migrated.is_tansu,
        auth_jwks_url=issuer.jwks_url,
        auth_issuer="pmtct-dev-issuer",
        relay_poll_interval_s=0.2,
        hmac_key=_key(),
        pii_key=_key(),
        fhir_concept_map=FIXTURES / "site-conceptmap.json",
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolment", timeout=60) as http:
            key = settings.pii_key.get_secret_value() if settings.pii_key else ""
            yield Door(http, issuer, migrated, settings.database_url, key)


async def post(
    door: Door, body: Any, *, dry_run: bool = False, facilities: list[str] | None = None, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await door.http.post(
        "/fhir",
        content=content,
        params={"dry_run": "true"} if dry_run else None,
        headers={"content-type": FHIR_JSON, **door.headers(facilities or ["FAC-ZA-002"]), **headers},
    )


def statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    bundle = response.json()
    return [e["response"]["status"] for e in bundle["entry"]]


def issues(response: httpx.Response) -> list[tuple[str, str, list[str]]]:
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [(i["code"], i["details"]["coding"][0]["code"], i.get("expression", [])) for i in body["issue"]]


# --- a good transaction, its repost, its dry run --------------------------------------------------


async def test_a_transaction_is_recorded_and_its_repost_is_a_duplicate(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    before = await door.counts()
    rehearsed = await post(door, bundle, dry_run=True)
    assert statuses(rehearsed) == ["200 OK"] + ["201 Created"] * 9
    assert rehearsed.json()["meta"]["tag"][0]["code"] == "dry-run"
    assert await door.counts() == before  # the dry run wrote nothing

    first = await post(door, bundle)
    assert first.json()["type"] == "transaction-response"
    assert statuses(first) == ["200 OK"] + ["201 Created"] * 9
    after = await door.counts()
    assert (after["clients"] - before["clients"], after["client_events"] - before["client_events"]) == (1, 4)

    again = await post(door, bundle)
    assert statuses(again) == ["200 OK"] * 10
    assert await door.counts() == after


async def test_names_and_phone_stay_in_the_encrypted_store(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    assert statuses(await post(door, bundle)) == ["200 OK"] + ["201 Created"] * 9
    ref = bundle["entry"][1]["resource"]["identifier"][0]["value"]
    [client] = await door.fetch(
        "SELECT c.* FROM clients c JOIN registrations r ON r.client_id = c.client_id WHERE r.client_ref = $1", ref
    )
    row = json.dumps({k: str(v) for k, v in dict(client).items()})
    assert "Lerato" not in row and "Ndlovu" not in row and "555 0177" not in row
    records = await read_topic(door.infra.bootstrap_servers, ENROLMENT_TOPIC, settle_s=1.0, timeout_s=20)
    on_the_wire = b"".join(r.value or b"" for r in records)
    for secret in (
        ref,
        "Lerato",
        "Ndlovu",
        "+27 82 555 0177",
        bundle["entry"][1]["resource"]["identifier"][1]["value"],
    ):
        assert secret.encode() not in on_the_wire


# --- all or nothing ---------------------------------------------------------------------------------


async def test_a_transaction_with_an_entry_the_rules_refuse_writes_nothing(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    # a gestation of 60 weeks at enrolment: enrolment's rules refuse it
    bundle["entry"][5]["resource"]["valueQuantity"]["value"] = 60
    before = await door.counts()
    response = await post(door, bundle)
    assert response.status_code == 422
    # the enrolment is made of the Patient, the EpisodeOfCare and the two Observations folded into it
    assert issues(response) == [
        ("business-rule", "gestation_out_of_range", ["Bundle.entry[1]"]),
        ("business-rule", "gestation_out_of_range", ["Bundle.entry[2]"]),
        ("business-rule", "gestation_out_of_range", ["Bundle.entry[5]"]),
        ("business-rule", "gestation_out_of_range", ["Bundle.entry[6]"]),
    ]
    assert await door.counts() == before


async def test_as_a_batch_the_others_are_recorded(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    bundle["type"] = "batch"
    bundle["entry"][5]["resource"]["valueQuantity"]["value"] = 60
    response = await post(door, bundle)
    assert response.json()["type"] == "batch-response"
    # the enrolment's resources are refused; her visit, test and ART start are held for her
    # enrolment (pending): 202 Accepted
    refused, held = "422 Unprocessable Entity", "202 Accepted"
    assert statuses(response) == ["200 OK", refused, refused, held, held, refused, refused, held, held, held]
    [issue] = response.json()["entry"][2]["response"]["outcome"]["issue"]
    assert issue["details"]["coding"][0]["code"] == "gestation_out_of_range"
    assert issue["expression"] == ["Bundle.entry[2]"]


# --- bad input: a 4xx OperationOutcome naming the entry ----------------------------------------------


def _unknown_code(b: dict[str, Any]) -> None:
    b["entry"][7]["resource"]["code"] = {"coding": [{"system": "http://loinc.org", "code": "99999-9"}]}


def _wrong_resource_type(b: dict[str, Any]) -> None:
    b["entry"][7]["resource"] = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/x"},
    }


def _invalid_resource(b: dict[str, Any]) -> None:
    b["entry"][5]["resource"]["valueQuantity"] = {"value": "fourteen"}


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        (_unknown_code, 422, [("code-invalid", "unknown_code", ["Bundle.entry[7]"])]),
        (_wrong_resource_type, 422, [("not-supported", "unsupported_resource_type", ["Bundle.entry[7]"])]),
        (_invalid_resource, 400, [("structure", "invalid_resource", ["Bundle.entry[5]"])]),
    ],
)
async def test_a_bad_entry_refuses_the_transaction_naming_it(
    door: Door, change: Any, status: int, expected: list[tuple[str, str, list[str]]]
) -> None:
    bundle = fresh("anc1-enrolment.json")
    change(bundle)
    before = await door.counts()
    response = await post(door, bundle)
    assert response.status_code == status, response.text
    assert issues(response) == expected
    assert await door.counts() == before


async def test_the_unknown_code_is_named(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    _unknown_code(bundle)
    response = await post(door, bundle)
    assert "http://loinc.org|99999-9" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", FHIR_JSON, 400, "malformed_json"),
        (json.dumps({"resourceType": "Patient", "id": "p"}).encode(), FHIR_JSON, 400, "not_a_bundle"),
        (
            json.dumps({"resourceType": "Bundle", "type": "document", "entry": [{}]}).encode(),
            FHIR_JSON,
            422,
            "unsupported_bundle_type",
        ),
        (json.dumps({"resourceType": "Bundle", "type": "batch"}).encode(), FHIR_JSON, 422, "empty_bundle"),
        (b"<Bundle/>", "application/fhir+xml", 415, "unsupported_media_type"),
    ],
)
async def test_not_a_bundle_the_door_takes(door: Door, body: bytes, content_type: str, status: int, code: str) -> None:
    response = await post(door, body, **{"content-type": content_type})
    assert response.status_code == status, response.text
    [(_, found, _)] = issues(response)
    assert found == code


async def test_a_10_mb_bundle_is_413_never_500(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    bundle["entry"][1]["resource"]["text"]["div"] = (
        '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * (10 * 1024 * 1024) + "</div>"
    )
    before = await door.counts()
    response = await post(door, bundle)
    assert response.status_code == 413
    [(issue_type, code, _)] = issues(response)
    assert (issue_type, code) == ("too-long", "payload_too_large")
    assert await door.counts() == before


async def test_more_entries_than_a_batch_holds_is_413(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    location = bundle["entry"][0]
    bundle["entry"] = [copy.deepcopy(location) for _ in range(1001)]
    response = await post(door, bundle)
    assert response.status_code == 413
    assert issues(response)[0][1] == "batch_too_large"


async def test_no_token_is_an_operation_outcome(door: Door) -> None:
    response = await door.http.post(
        "/fhir", content=json.dumps(fresh("anc1-enrolment.json")), headers={"content-type": FHIR_JSON}
    )
    assert response.status_code == 401
    assert issues(response)[0][:2] == ("login", "unauthorized")


async def test_a_facility_the_token_does_not_hold(door: Door) -> None:
    response = await post(door, fresh("anc1-enrolment.json"), facilities=["FAC-ZA-001"])
    assert response.status_code == 422
    assert {code for _, code, _ in issues(response)} == {"facility_forbidden"}


async def test_openapi_declares_the_fhir_door(door: Door) -> None:
    schema = (await door.http.get("/openapi.json")).json()
    operation = schema["paths"]["/fhir"]["post"]
    assert FHIR_JSON in operation["requestBody"]["content"]
    for status in ("200", "400", "401", "403", "413", "415", "422", "503"):
        assert FHIR_JSON in operation["responses"][status]["content"], status
    assert "dry_run" in {p["name"] for p in operation["parameters"]}


async def test_the_docs_example_is_recorded_with_the_shipped_map(door: Door) -> None:
    """docs/fhir-intake.md's curl example posts docs/examples/fhir-anc1-bundle.json under `make run`
    (the shipped ConceptMap, a token for FAC-ZA-001): every entry is recorded (or, posted again, OK)."""
    example = json.loads((Path(__file__).parents[2] / "docs" / "examples" / "fhir-anc1-bundle.json").read_text())
    from enrolment import fhir_concepts
    from enrolment.fhir_translate import Setup, translate
    from servicekit.clock import zone_of

    shipped = Setup(fhir_concepts.load(None), frozenset({"FAC-ZA-001"}), frozenset({"FAC-ZA-001"}), zone_of("UTC"))
    assert translate(example, shipped).refused == {}
    found = statuses(await post(door, example, facilities=["FAC-ZA-001"]))
    assert found[0] == "200 OK" and set(found[1:]) <= {"201 Created", "200 OK"}


# --- findings of the review (issue 17) ---------------------------------------------------------------


def _personal(bundle: dict[str, Any]) -> list[str]:
    patient = bundle["entry"][1]["resource"]
    return [
        patient["name"][0]["given"][0],
        patient["name"][0]["family"],
        patient["telecom"][0]["value"],
        patient["identifier"][0]["value"],  # her OpenMRS ID
        patient["identifier"][1]["value"],  # her national id
        patient["birthDate"],
    ]


async def test_a_refused_enrolment_echoes_no_personal_value(
    door: Door, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad Patients through the door: no name, phone number, identifier or birth date of theirs
    comes back in an OperationOutcome or goes to the service's log, whoever wrote the reason."""
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    personal: list[str] = []
    # on ART since before she was born: enrolment's rule compares it with her birth date
    born_later = fresh("anc1-enrolment.json")
    for code in ("160554", "159599"):  # CIEL: HIV diagnosis date, ART start date
        history = copy.deepcopy(born_later["entry"][6]["resource"])
        history["id"] = str(uuid.uuid4())
        history["code"] = {"coding": [{"system": "https://cielterminology.org", "code": code}]}
        del history["valueCodeableConcept"]
        history["valueDateTime"] = "1990-01-01"
        born_later["entry"].append(
            {"resource": history, "request": {"method": "PUT", "url": f"Observation/{history['id']}"}}
        )
    # a birth date that is no day: the R4 parser refuses it
    no_day = fresh("anc1-enrolment.json")
    no_day["entry"][1]["resource"]["birthDate"] = "1996-02-30"
    # her visit without her enrolment, as a batch: held, its reason names her record number
    held = fresh("anc1-enrolment.json")
    held["type"] = "batch"
    del held["entry"][2]
    for bundle, status in ((born_later, 422), (no_day, 400), (held, 200)):
        response = await post(door, bundle)
        assert response.status_code == status, response.text
        answers.append(response.text)
        personal += _personal(bundle)
        rehearsed = await post(door, bundle, dry_run=True)
        answers.append(rehearsed.text)
    assert "before_birth" in answers[0] and "birthDate" in answers[2]
    assert "awaiting_client" in answers[4] and "[withheld]" in answers[4]
    logged = caplog.text + "".join(capsys.readouterr())
    for value in personal:
        for answer in answers:
            assert value not in answer, (value, answer)
        assert value not in logged, value


async def test_a_bumped_version_id_with_the_same_content_is_a_duplicate(door: Door) -> None:
    """OpenMRS bumps `meta.versionId` on every save: the same content again is `duplicate` (200 OK);
    changed content under a new version replaces the event recorded from the earlier one
    (`replaces`, servicekit.corrections), and that correction posted again is a duplicate too."""
    bundle = fresh("anc1-enrolment.json")
    assert statuses(await post(door, bundle)) == ["200 OK"] + ["201 Created"] * 9
    after = await door.counts()
    for entry in bundle["entry"]:
        entry["resource"]["meta"]["versionId"] = "1713099999999"
    assert statuses(await post(door, bundle)) == ["200 OK"] * 10
    assert await door.counts() == after

    # the visit's time corrected in the EMR: a new version of the Encounter
    encounter = bundle["entry"][3]["resource"]
    encounter["meta"]["versionId"] = "1713100000000"
    encounter["period"]["start"] = "2026-04-14T09:50:00+02:00"
    corrected = await post(door, bundle)
    assert statuses(corrected)[3] == "201 Created", corrected.text
    ref = bundle["entry"][1]["resource"]["identifier"][0]["value"]
    visits = await door.fetch(
        "SELECT e.event_id, e.occurred_at, e.voided_by FROM client_events e JOIN registrations r"
        " ON r.client_id = e.client_id WHERE r.client_ref = $1 AND e.type = 'AncVisitRecorded'"
        " ORDER BY e.voided_by NULLS LAST",
        ref,
    )
    assert len(visits) == 2 and visits[0]["voided_by"] == visits[1]["event_id"] and visits[1]["voided_by"] is None
    assert visits[1]["occurred_at"].isoformat() == "2026-04-14T07:50:00+00:00"
    # the same correction again (another save, same content): a duplicate
    encounter["meta"]["versionId"] = "1713100000001"
    assert statuses(await post(door, bundle))[3] == "200 OK"
    assert (
        len(
            await door.fetch(
                "SELECT 1 FROM client_events e JOIN registrations r ON r.client_id = e.client_id"
                " WHERE r.client_ref = $1 AND e.type = 'AncVisitRecorded'",
                ref,
            )
        )
        == 2
    )


def _dry_runs_counted() -> float:
    from prometheus_client import REGISTRY

    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "pmtct_intake_dry_run_events"
        for s in metric.samples
        if s.name.endswith("_total") and s.labels.get("service") == "enrolment"
    )


async def test_the_transaction_check_is_not_counted_as_a_dry_run(door: Door) -> None:
    """A transaction is checked by a dry run of the door's own: `pmtct_intake_dry_run_events_total`
    counts only the dry runs a caller asked for."""
    before = _dry_runs_counted()
    assert statuses(await post(door, fresh("anc1-enrolment.json"))) == ["200 OK"] + ["201 Created"] * 9
    assert _dry_runs_counted() == before
    assert statuses(await post(door, fresh("anc1-enrolment.json"), dry_run=True)) == ["200 OK"] + ["201 Created"] * 9
    assert _dry_runs_counted() == before + 4  # her enrolment, visit, test and ART start, once


async def test_a_held_entry_is_202_accepted_saying_what_it_waits_for(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    bundle["type"] = "batch"
    del bundle["entry"][2]  # her visit, test and ART start without her enrolment
    response = await post(door, bundle)
    found = statuses(response)
    assert found[2] == found[6] == found[8] == "202 Accepted", found
    [issue] = response.json()["entry"][2]["response"]["outcome"]["issue"]
    assert (issue["severity"], issue["code"]) == ("information", "informational")
    assert issue["details"]["coding"][0]["code"] == "awaiting_client"
    assert "held" in issue["diagnostics"] and "GET /v1/events/" in issue["diagnostics"]


async def test_a_value_of_the_wrong_json_type_is_named(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    bundle["entry"][5]["resource"]["valueQuantity"]["value"] = "14"
    response = await post(door, bundle)
    assert response.status_code == 400
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[5]"]
    assert "Observation.valueQuantity.value must be a number in FHIR JSON, not a string" in issue["diagnostics"]


async def _enrolled_through_fhir(door: Door) -> tuple[dict[str, Any], Any]:
    """A woman enrolled through the door, and a maker of later transaction bundles about her."""
    bundle = fresh("anc1-enrolment.json")
    assert statuses(await post(door, bundle)) == ["200 OK"] + ["201 Created"] * 9
    location, her = bundle["entry"][0], bundle["entry"][1]

    def later(*resources: dict[str, Any]) -> dict[str, Any]:
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ]
        return {"resourceType": "Bundle", "type": "transaction", "entry": [location, her, *entries]}

    return her, later


async def _her_events(door: Door, her: dict[str, Any]) -> list[str]:
    rows = await door.fetch(
        "SELECT e.type FROM client_events e JOIN registrations r ON r.client_id = e.client_id"
        " WHERE r.client_ref = $1 ORDER BY e.occurred_at",
        her["resource"]["identifier"][0]["value"],
    )
    return [r["type"] for r in rows]


async def test_a_lost_pregnancy_and_her_death_come_through_fhir(door: Door) -> None:
    """PregnancyEnded (a Condition) and ClientDied (Patient.deceasedDateTime) as an OpenMRS FHIR2 EMR
    sends them, recorded by the platform's rules like the same JSON events."""
    her, later = await _enrolled_through_fhir(door)
    lost = {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "57797005"}]},
        "subject": {"reference": f"Patient/{her['resource']['id']}"},
        "onsetDateTime": "2026-05-20",
    }
    answer = await post(door, later(lost))
    assert statuses(answer) == ["200 OK", "201 Created", "201 Created"]
    assert "PregnancyEnded" in answer.json()["entry"][2]["response"]["outcome"]["issue"][0]["diagnostics"]
    her["resource"] = {**her["resource"], "deceasedDateTime": "2026-06-10T06:00:00+02:00"}
    del her["resource"]["deceasedBoolean"]
    assert statuses(await post(door, later())) == ["200 OK", "201 Created"]
    assert (await _her_events(door, her))[-2:] == ["PregnancyEnded", "ClientDied"]


async def test_her_transfer_out_comes_through_fhir(door: Door) -> None:
    """ClientTransferredOut: an Encounter discharging her, disposition CIEL 159492 'transferred out'."""
    her, later = await _enrolled_through_fhir(door)
    left = {
        "resourceType": "Encounter",
        "id": str(uuid.uuid4()),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{her['resource']['id']}"},
        "period": {"start": "2026-06-01T09:00:00+02:00", "end": "2026-06-01T10:00:00+02:00"},
        "hospitalization": {
            "dischargeDisposition": {"coding": [{"code": "159492AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]},
            "destination": {"reference": "Location/FAC-ZA-003"},
        },
    }
    assert statuses(await post(door, later(left))) == ["200 OK", "201 Created", "201 Created"]
    assert (await _her_events(door, her))[-1] == "ClientTransferredOut"


async def test_a_result_or_an_art_start_reposted_entered_in_error_voids_the_event_it_produced(door: Door) -> None:
    bundle = fresh("anc1-enrolment.json")
    assert set(statuses(await post(door, bundle))) <= {"200 OK", "201 Created"}
    [ref] = [i["value"] for i in bundle["entry"][1]["resource"]["identifier"] if i["value"].startswith("10004KM")]
    [(client_id,)] = await door.fetch("SELECT client_id FROM registrations WHERE client_ref = $1", ref)

    def reposted(*indices: int) -> dict[str, Any]:
        """The Location, her Patient and these entries, marked entered in error, under a new version."""
        again = copy.deepcopy(bundle)
        entries = [again["entry"][i] for i in (0, 1, *indices)]
        for e in entries[2:]:
            if e["resource"]["resourceType"] != "Medication":
                e["resource"]["status"] = "entered-in-error"
                e["resource"]["meta"] = {"versionId": "2", "lastUpdated": "2026-11-20T10:00:00+02:00"}
        return {**again, "entry": entries}

    async def standing() -> list[tuple[str, bool]]:
        rows = await door.fetch(
            "SELECT type, voided_at IS NOT NULL AS voided FROM client_events WHERE client_id = $1 ORDER BY occurred_at",
            client_id,
        )
        return [(r["type"], r["voided"]) for r in rows]

    before = await standing()
    assert ("HivTestRecorded", False) in before and ("ArtInitiated", False) in before
    # the HIV test first: her ART start stands on it, so the platform says to void that first
    first = await post(door, reposted(7))
    assert first.status_code == 422 and ("conflict", "void_dependents_first", ["Bundle.entry[2]"]) in issues(first)

    voided_art = await post(door, reposted(8, 9))  # the ART start, then the test
    assert statuses(voided_art)[-1] == "201 Created", voided_art.text
    voided_test = await post(door, reposted(7))
    assert statuses(voided_test)[-1] == "201 Created", voided_test.text

    after = dict(await standing())
    assert (after["HivTestRecorded"], after["ArtInitiated"], after["EventVoided"]) == (True, True, False)
    # posted again, the same voids are duplicates
    assert statuses(await post(door, reposted(7)))[-1] == "200 OK"


async def test_her_patient_saved_again_with_a_new_name_and_phone_updates_her_personal_data_only(door: Door) -> None:
    """The same Patient under a new `meta.versionId`, her name and phone changed in the EMR: her
    encrypted personal data is updated and her enrolment is a duplicate (200 OK), not replaced (before,
    the enrolment's new content was a correction: a replacement that voided her enrolment, or was
    refused `void_dependents_first` for her later events). A change of the fact itself (her status
    at enrolment) is still a correction of it."""
    from enrolment.personal_data import PersonalDataCipher

    bundle = fresh("anc1-enrolment.json")
    assert statuses(await post(door, bundle)) == ["200 OK"] + ["201 Created"] * 9
    ref = bundle["entry"][1]["resource"]["identifier"][0]["value"]
    [(client_id,)] = await door.fetch("SELECT client_id FROM registrations WHERE client_ref = $1", ref)
    after = await door.counts()

    patient = bundle["entry"][1]["resource"]
    patient["meta"]["versionId"] = "1713190000000"
    patient["name"] = [{"family": "Mokoena", "given": ["Lerato", "Grace"]}]
    patient["telecom"] = [{"value": "+27 83 555 0199"}]
    episode = bundle["entry"][2]["resource"]
    episode["meta"]["versionId"] = "1713190000000"  # OpenMRS saves it again with her
    reply = await post(door, bundle)

    assert statuses(reply) == ["200 OK"] * 10, reply.text
    assert await door.counts() == after, "nothing recorded, nothing voided"
    [row] = await door.fetch("SELECT given_name, family_name, phone FROM clients WHERE client_id = $1", client_id)
    cipher = PersonalDataCipher(door.pii_key)
    assert [cipher.decrypt(client_id, c, row[c]) for c in ("given_name", "family_name", "phone")] == [
        "Lerato Grace",
        "Mokoena",
        "+27 83 555 0199",
    ]
    # saved again as it is now: a duplicate still
    assert statuses(await post(door, bundle)) == ["200 OK"] * 10


def test_a_delivery_names_its_infants_by_their_patients_not_their_record_numbers() -> None:
    """The answer gives each baby's infant_id beside its Patient, so twins can be told apart, and
    never repeats an infant's record number (an EMR identifier)."""
    from enrolment import fhir_concepts, fhir_door
    from enrolment.fhir_translate import Setup, translate
    from servicekit.clock import zone_of

    bundle = fresh("delivery.json")
    t = translate(
        bundle,
        Setup(
            fhir_concepts.load(FIXTURES / "site-conceptmap.json"),
            frozenset({"FAC-ZA-002"}),
            frozenset({"FAC-ZA-002"}),
            zone_of("Africa/Johannesburg"),
        ),
    )
    [delivery] = [p for p in t.events if p.event["type"] == "DeliveryRecorded"]
    [baby] = delivery.event["data"]["infants"]
    result = {
        "status": "accepted",
        "client_id": "c1",
        "infants": [{"infant_ref": baby["infant_ref"], "infant_id": "i1"}],
    }
    answer = fhir_door.withhold(
        fhir_door.response_bundle(t, [result if p is delivery else {"status": "accepted"} for p in t.events], False),
        fhir_door.personal_values(bundle),
    )
    text = json.dumps(answer)
    assert f"{t.infant_patients[baby['infant_ref']]} infant_id i1" in text
    assert baby["infant_ref"] not in text
