"""A receiving clinic's EMR closes the loop through the real services (processes, broker) and
only the FHIR API: it searches the active ServiceRequests for its facility, accepts the Task and
completes it with an outcome; the ministry feed, the Kafka topic and the JSON API show the same
changes, and an update made against a stale version gets 412 and changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.task import Task

from pmtct_events import REFERRALS_TOPIC
from pmtct_tools import testing
from pmtct_tools.testing import Infra, envelopes, read_topic, unique

pytestmark = pytest.mark.e2e

REFERRING, RECEIVING = "FAC-ZA-003", "FAC-ZA-004"
FHIR_JSON = "application/fhir+json"


async def test_a_receiving_emr_accepts_and_completes_a_referral_through_fhir_only(
    platform, issuer: testing.TestIssuer, migrated: Infra
) -> None:
    # The referring clinic enrols a mother and refers her (its EMR uses the platform's JSON API).
    async with httpx.AsyncClient(base_url=platform.url("enrolment"), timeout=30) as http:
        enrolled = await http.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "event_id": str(uuid4()),
                        "type": "ClientEnrolled",
                        "facility_id": REFERRING,
                        "occurred_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                        "client_ref": unique("ANC"),
                        "data": {
                            "age_years": 24,
                            "status_at_enrolment": "pregnant",
                            "hiv_status": "negative",
                            "on_art": False,
                        },
                    }
                ]
            },  # fmt: skip
            headers=issuer.headers("events:write", [REFERRING]),
        )
    [result] = enrolled.json()["results"]
    client_id = result["client_id"]
    referrer = issuer.headers("referrals:write referrals:read", [REFERRING], client_id="referring-emr")
    receiving = issuer.headers("referrals:write referrals:read", [RECEIVING], client_id="receiving-emr")
    async with httpx.AsyncClient(base_url=platform.url("referrals"), timeout=30) as http:
        body = {
            "subject_type": "client",
            "subject_id": client_id,
            "from_facility_id": REFERRING,
            "to_facility_id": RECEIVING,
            "referral_service": "family_planning",
            "reason_code": "postnatal_contraception",
            "due_by": (date.today() + timedelta(days=14)).isoformat(),
        }
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # the referrals service learns of her from the enrolment event, seconds later
            created = await http.post("/v1/referrals", json=body, headers=referrer)
            if created.status_code != 422 or asyncio.get_running_loop().time() > deadline:
                break
            assert created.json()["code"] == "unknown_subject"
            await asyncio.sleep(0.5)
        assert created.status_code == 201, created.text
        referral_id = created.json()["id"]

        # The receiving EMR, FHIR only: its active referrals for this mother ...
        found = await http.get(
            "/fhir/ServiceRequest",
            params={"performer": f"Organization/{RECEIVING}", "status": "active", "subject": f"Patient/{client_id}"},
            headers=receiving,
        )
        bundle = Bundle.model_validate(found.json())
        assert [e.resource.id for e in bundle.entry] == [referral_id]
        # ... the Task that tracks it, accepted against the version read ...
        tasks = Bundle.model_validate(
            (await http.get("/fhir/Task", params={"focus": f"ServiceRequest/{referral_id}"}, headers=receiving)).json()
        )
        task = tasks.entry[0].resource.model_dump(mode="json")
        assert task["status"] == "requested" and task["meta"]["versionId"] == "1"
        put = {**receiving, "If-Match": 'W/"1"', "Content-Type": FHIR_JSON}
        accepted = await http.put(f"/fhir/Task/{referral_id}", json={**task, "status": "accepted"}, headers=put)
        assert accepted.status_code == 200 and accepted.headers["etag"] == 'W/"2"', accepted.text
        # ... a second update against version 1 (another workstation's stale copy): 412, no change
        stale = await http.put(f"/fhir/Task/{referral_id}", json={**task, "status": "completed"}, headers=put)
        assert stale.status_code == 412
        assert OperationOutcome.model_validate(stale.json()).issue[0].code == "conflict"
        assert (await http.get(f"/fhir/Task/{referral_id}", headers=receiving)).json()["meta"]["versionId"] == "2"
        # ... and completed with its outcome.
        done = {
            **accepted.json(),
            "status": "completed",
            "output": [
                {"type": {"text": "outcome"}, "valueCodeableConcept": {"coding": [{"code": "service_provided"}]}}
            ],
        }
        completed = await http.put(
            f"/fhir/Task/{referral_id}", json=done, headers={**put, "If-Match": accepted.headers["etag"]}
        )
        assert completed.status_code == 200, completed.text
        assert Task.model_validate(completed.json()).status == "completed"

        # The platform's other views show the same three changes.
        detail = (await http.get(f"/v1/referrals/{referral_id}", headers=referrer)).json()
        assert (detail["status"], detail["outcome_code"], detail["version"]) == ("completed", "service_provided", 3)
        assert [h["action"] for h in detail["history"]] == ["request", "accept", "complete"]
        ministry = issuer.headers("referrals:read", ["*"], client_id="ministry")
        feed, after = [], ""
        while True:
            page = (await http.get("/v1/feed", params={"after": after, "limit": 1000}, headers=ministry)).json()
            feed += [e for e in page["entries"] if e["referral_id"] == referral_id]
            after = page["next_cursor"]
            if not page["has_more"]:
                break
    names = [e["type"].split(".")[-2] for e in feed]
    assert names == ["ReferralCreated", "ReferralAccepted", "ReferralCompleted"]
    assert [e["version"] for e in feed] == [1, 2, 3]

    records = await read_topic(
        migrated.bootstrap_servers,
        REFERRALS_TOPIC,
        until=lambda rs: {e.id for e in envelopes(rs)} >= {e["event_id"] for e in feed},
        timeout_s=60,
    )
    on_kafka = [ce for ce in envelopes(records) if ce.data.get("referral_id") == referral_id]
    assert [str(ce.id) for ce in on_kafka] == [e["event_id"] for e in feed]
    assert [ce.data for ce in on_kafka] == [e["data"] for e in feed]
    assert on_kafka[-1].data["status"] == "completed" and on_kafka[-1].data["outcome_code"] == "service_provided"
