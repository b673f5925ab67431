"""One EMR intake pipeline: the same bad events posted to both `POST /v1/events` endpoints
(enrolment's mother events, follow-up's infant events) get the same code from each.

Both services run in-process against the real PostgreSQL and broker. The infant that follow-up's
events name is delivered the way a clinic's is: posted to enrolment, published by its relay, and
consumed by follow-up (which then knows it), so the conflict case has a recorded event on each side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from enrolment.main import build_app as build_enrolment
from enrolment.settings import Settings as EnrolmentSettings
from followup.main import build_app as build_followup
from followup.settings import Settings as FollowupSettings
from pmtct_tools.testing import Infra, TestIssuer
from servicekit import bootstrap
from servicekit.intake import Code, codes_table

FACILITY = "FAC-ZA-001"
#: in the facility registry, but not in the posting token's claims
OTHER_FACILITY = "FAC-ZA-002"
NOW = datetime.now(UTC).replace(microsecond=0)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "emr-intake.md"


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Endpoint:
    """One service's intake endpoint and how to build a valid event for it."""

    name: str
    http: httpx.AsyncClient
    issuer: TestIssuer
    #: a fresh valid event (new event_id) of this service
    good: Callable[[], dict[str, Any]]
    #: the name of a numeric field in that event's `data`
    number: str

    def headers(self, scopes: str = "events:write", facilities: list[str] | None = None) -> dict[str, str]:
        return self.issuer.headers(scopes, facilities or [FACILITY], f"emr-{self.name}")

    async def post(self, events: list[Any], **headers: Any) -> httpx.Response:
        """As an EMR's JSON library may write it: NaN and Infinity as the bare words Python writes."""
        body = json.dumps({"events": events}).encode()
        return await self.post_raw(body, "application/json", self.headers(**headers))

    async def post_raw(self, body: bytes, content_type: str, auth: dict[str, str] | None = None) -> httpx.Response:
        auth = self.headers() if auth is None else auth
        return await self.http.post("/v1/events", content=body, headers={**auth, "content-type": content_type})


@dataclass
class Both:
    enrolment: Endpoint
    followup: Endpoint


@pytest.fixture(scope="module")
async def both(migrated: Infra, issuer: TestIssuer) -> AsyncIterator[Both]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": migrated.bootstrap_servers,
        "kafka_idempotent_producer": not migrated.is_tansu,
        "auth_jwks_url": issuer.jwks_url,
        "auth_issuer": "pmtct-dev-issuer",
        "relay_poll_interval_s": 0.2,
        "hmac_key": key(),
        "log_json": True,
    }
    enrolment_settings = EnrolmentSettings(
        database_url=bootstrap.service_url(migrated.admin_url, "enrolment"), pii_key=key(), **common
    )
    followup_settings = FollowupSettings(database_url=bootstrap.service_url(migrated.admin_url, "followup"), **common)
    enrolment_app, followup_app = build_enrolment(enrolment_settings), build_followup(followup_settings)
    async with enrolment_app.router.lifespan_context(enrolment_app), followup_app.router.lifespan_context(followup_app):
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=enrolment_app), base_url="http://enrolment") as e,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=followup_app), base_url="http://followup") as f,
        ):

            def mother() -> dict[str, Any]:
                return {
                    "event_id": str(uuid.uuid4()),
                    "type": "ClientEnrolled",
                    "facility_id": FACILITY,
                    "occurred_at": ago(200),
                    "client_ref": f"ANC-{uuid.uuid4().hex[:10].upper()}",
                    "data": {
                        "birth_date": "1996-04-11",
                        "status_at_enrolment": "pregnant",
                        "hiv_status": "negative",
                        "on_art": False,
                        "gestation_weeks": 14,
                    },
                }

            enrolment = Endpoint("enrolment", e, issuer, mother, "gestation_weeks")
            infant_id = await _a_delivered_infant(enrolment)

            def infant() -> dict[str, Any]:
                return {
                    "event_id": str(uuid.uuid4()),
                    "type": "InfantProphylaxisRecorded",
                    "facility_id": FACILITY,
                    "occurred_at": ago(20),
                    "infant_id": infant_id,
                    "data": {"drug": "NVP", "duration_weeks": 6},
                }

            followup = Endpoint("followup", f, issuer, infant, "duration_weeks")
            await _until_followup_knows(followup)
            yield Both(enrolment, followup)


async def _a_delivered_infant(enrolment: Endpoint) -> str:
    """An HIV-positive mother on ART, delivered 30 days ago of a live baby: her infant's id."""
    ref = f"ANC-{uuid.uuid4().hex[:10].upper()}"
    enrolled = {
        **enrolment.good(),
        "client_ref": ref,
        "occurred_at": ago(200),
        "data": {
            "birth_date": "1994-02-03",
            "status_at_enrolment": "pregnant",
            "hiv_status": "positive",
            "hiv_status_known_since": ago(400)[:10],
            "on_art": True,
            "art_start_date": ago(390)[:10],
            "gestation_weeks": 12,
        },
    }
    delivered = {
        "event_id": str(uuid.uuid4()),
        "type": "DeliveryRecorded",
        "facility_id": FACILITY,
        "occurred_at": ago(30),
        "client_ref": ref,
        "data": {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": [{"infant_ref": f"HEI-{uuid.uuid4().hex[:8]}", "sex": "male", "outcome": "live_birth"}],
        },
    }
    response = await enrolment.post([enrolled, delivered])
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted"], results
    return results[1]["infants"][0]["infant_id"]


async def _until_followup_knows(followup: Endpoint, timeout_s: float = 60) -> None:
    """Post valid infant events until one is accepted: the delivery has reached follow-up (until
    then each is held, `pending`, and applied when it does)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        [result] = (await followup.post([followup.good()])).json()["results"]
        if result["status"] == "accepted":
            return
        assert (result["status"], result["code"]) == ("pending", "awaiting_infant"), result
        assert asyncio.get_running_loop().time() < deadline, "follow-up never heard of the delivery"
        await asyncio.sleep(0.3)


# --- the same bad events ---------------------------------------------------------------------------


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != field}


def _number(endpoint: Endpoint, value: float) -> dict[str, Any]:
    event = endpoint.good()
    return {**event, "data": {**event["data"], endpoint.number: value}}


#: name -> (how to make the bad event from a service's endpoint, the code both must answer)
PER_EVENT: dict[str, tuple[Callable[[Endpoint], Any], Code]] = {
    "occurred_at in the future": (lambda ep: {**ep.good(), "occurred_at": ago(-2)}, Code.occurred_in_future),
    "a type neither service has": (lambda ep: {**ep.good(), "type": "PatientWeighed"}, Code.unknown_event_type),
    "no type": (lambda ep: _without(ep.good(), "type"), Code.missing_field),
    "an event_id that is not a UUID": (lambda ep: {**ep.good(), "event_id": "emr-17"}, Code.invalid_value),
    "a missing field": (lambda ep: _without(ep.good(), "facility_id"), Code.missing_field),
    "an extra field": (lambda ep: {**ep.good(), "notes": "seen by sister"}, Code.unknown_field),
    "an extra data field": (
        lambda ep: {**(e := ep.good()), "data": {**e["data"], "nickname": "Nono"}},
        Code.unknown_field,
    ),
    "NaN for a number": (lambda ep: _number(ep, float("nan")), Code.invalid_value),
    "Infinity for a number": (lambda ep: _number(ep, float("inf")), Code.invalid_value),
    "text for a number": (lambda ep: _number(ep, "6"), Code.invalid_value),  # type: ignore[arg-type]
    "a time without a zone": (lambda ep: {**ep.good(), "occurred_at": "2026-01-05T10:00:00"}, Code.invalid_value),
    "an event that is not an object": (lambda ep: [1, 2], Code.invalid_value),
    "a facility not in the token": (
        lambda ep: {**ep.good(), "facility_id": OTHER_FACILITY},
        Code.facility_forbidden,
    ),
    "a facility not in the registry": (
        lambda ep: {**ep.good(), "facility_id": "FAC-XX-999"},
        Code.unknown_facility,
    ),
    # corrections (servicekit.corrections): the same checks, in the same words, for both
    "a replacement of an event never recorded": (
        lambda ep: {**ep.good(), "replaces": str(uuid.uuid4())},
        Code.unknown_voided_event,
    ),
    "a void that names no event": (
        lambda ep: {**_void(), "data": {"reason": "entered_in_error"}},
        Code.missing_field,
    ),
    "a void naming an event_id that is not a UUID": (
        lambda ep: {**_void(), "data": {"voided_event_id": "emr-17", "reason": "entered_in_error"}},
        Code.invalid_value,
    ),
}


def _void() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "EventVoided", "facility_id": FACILITY, "occurred_at": ago(1)}


@pytest.mark.parametrize("name", list(PER_EVENT))
async def test_the_same_bad_event_gets_the_same_code_from_both_endpoints(both: Both, name: str) -> None:
    make, expected = PER_EVENT[name]
    answers = {}
    for endpoint in (both.enrolment, both.followup):
        response = await endpoint.post([make(endpoint)])
        assert response.status_code == 200, (endpoint.name, response.text)
        [result] = response.json()["results"]
        assert result["status"] == "rejected" and result["reason"], (endpoint.name, result)
        answers[endpoint.name] = result["code"]

    assert answers == {"enrolment": expected.value, "followup": expected.value}


async def test_the_same_event_id_with_other_content_is_a_conflict_on_both(both: Both) -> None:
    answers = {}
    for endpoint in (both.enrolment, both.followup):
        original = endpoint.good()
        first = (await endpoint.post([original])).json()["results"][0]
        assert first["status"] == "accepted", (endpoint.name, first)
        again = (await endpoint.post([original])).json()["results"][0]
        assert again["status"] == "duplicate", (endpoint.name, again)
        changed = {**original, "occurred_at": ago(21)}
        [result] = (await endpoint.post([changed])).json()["results"]
        answers[endpoint.name] = (result["status"], result["code"])

    assert answers == {"enrolment": ("rejected", "conflict"), "followup": ("rejected", "conflict")}


#: name -> (how to post it, the HTTP status and problem code both must answer)
WHOLE_REQUEST: dict[str, tuple[Callable[[Endpoint], Any], int, Code]] = {
    "more events than the batch limit": (
        lambda ep: ep.post([ep.good() for _ in range(1001)]),
        413,
        Code.batch_too_large,
    ),
    "no events": (lambda ep: ep.post([]), 422, Code.empty_batch),
    "a body that is not JSON": (lambda ep: ep.post_raw(b"{events: [", "application/json"), 400, Code.malformed_json),
    "a body that is not UTF-8": (
        lambda ep: ep.post_raw(b'{"events": [{"type": "\xff"}]}', "application/json"),
        400,
        Code.malformed_json,
    ),
    "a JSON body sent as text": (
        lambda ep: ep.post_raw(b'{"events": []}', "text/plain"),
        415,
        Code.unsupported_media_type,
    ),
    "a bare list": (lambda ep: ep.post_raw(b"[]", "application/json"), 422, Code.validation_failed),
    "no token": (lambda ep: ep.post_raw(b'{"events": [{}]}', "application/json", auth={}), 401, Code.unauthorized),
    "a token without events:write": (
        lambda ep: ep.post([ep.good()], scopes="worklist:read clients:read"),
        403,
        Code.insufficient_scope,
    ),
}


@pytest.mark.parametrize("name", list(WHOLE_REQUEST))
async def test_the_same_bad_request_gets_the_same_problem_from_both_endpoints(both: Both, name: str) -> None:
    send, status, expected = WHOLE_REQUEST[name]
    answers = {}
    for endpoint in (both.enrolment, both.followup):
        response = await send(endpoint)
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        answers[endpoint.name] = (response.status_code, response.json()["code"])

    assert answers == {"enrolment": (status, expected.value), "followup": (status, expected.value)}
    assert expected.status == status


async def test_both_endpoints_document_the_batch_reply_and_every_problem_they_answer(both: Both) -> None:
    for endpoint in (both.enrolment, both.followup):
        schema = (await endpoint.http.get("/openapi.json")).json()
        post = schema["paths"]["/v1/events"]["post"]
        for status in ("400", "401", "403", "413", "415", "422", "503"):
            assert "application/problem+json" in post["responses"][status]["content"], (endpoint.name, status)
        reply = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        properties = schema["components"]["schemas"][reply]["properties"]
        assert {"batch_id", "accepted", "duplicate", "rejected", "results"} <= set(properties), endpoint.name
        codes = schema["components"]["schemas"]["Code"]["enum"]
        assert set(codes) == {c.value for c in Code}, endpoint.name


def test_the_integration_guide_has_every_code_with_its_meaning_and_action() -> None:
    assert codes_table() in DOCS.read_text(), "docs/emr-intake.md: paste servicekit.intake.codes_table()"
