"""Every kind of FHIR resource the referrals service serves is valid per the FHIR R4 JSON Schema
that HL7 publishes (tests/referrals/data/), not only per fhir.resources' models: the capability
statement, ServiceRequest, Task in each state, search Bundles, Organization, Location and
OperationOutcome."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import FACILITY, OTHER_FACILITY, Api
from jsonschema import Draft6Validator

SCHEMA = Path(__file__).parent / "data" / "fhir-r4.schema.json.gz"


@cache
def definitions() -> dict[str, Any]:
    schema = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    return schema["definitions"]


def problems(resource: dict[str, Any]) -> list[str]:
    validator = Draft6Validator({"$ref": f"#/definitions/{resource['resourceType']}", "definitions": definitions()})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(resource)]


def test_the_schema_does_reject_what_is_not_r4() -> None:
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    assert problems(task) == []
    assert problems({**task, "status": "started"}) != []  # not a task-status code
    assert problems({**task, "colour": "red"}) != []  # not an element of Task
    assert problems({**task, "authoredOn": "yesterday"}) != []  # not a dateTime


@pytest.fixture(scope="module")
def both(api: Api) -> dict[str, str]:
    return api.auth(facilities=[FACILITY, OTHER_FACILITY])


async def served(api: Api, path: str, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = await api.http.get(path, params=params, headers=headers)
    assert response.headers["content-type"] == "application/fhir+json", response.text
    return response.json()


async def test_every_resource_served_is_valid_r4(api: Api, both: dict[str, str]) -> None:
    done = await api.create()
    await api.act(done["id"], "accept", both)
    await api.act(done["id"], "complete", both, outcome_code="service_provided")
    declined = await api.create(subject_id=done["subject_id"], referral_service="tb_screening")
    await api.act(declined["id"], "decline", both, outcome_code="no_capacity")
    at_home = await api.create(referral_service="psychosocial_support", to_facility_id=None, urgency="emergency")

    resources = [await served(api, "/fhir/metadata", {})]
    for r in (done, declined, at_home):
        resources.append(await served(api, f"/fhir/ServiceRequest/{r['id']}", both))
        resources.append(await served(api, f"/fhir/Task/{r['id']}", both))
    resources.append(await served(api, "/fhir/Task", both, subject=f"Patient/{done['subject_id']}", _count="1"))
    resources.append(await served(api, "/fhir/ServiceRequest", both, requester=FACILITY, _count="3"))
    resources.append(await served(api, "/fhir/Organization", both, _count="3"))
    resources.append(await served(api, "/fhir/Location", both, _count="3"))
    resources.append(await served(api, f"/fhir/Organization/{FACILITY}", both))
    resources.append(await served(api, f"/fhir/Location/{OTHER_FACILITY}", both))
    resources.append(await served(api, "/fhir/Task/not-a-referral", both))  # OperationOutcome 404
    resources.append(await served(api, "/fhir/Task", both, colour="red"))  # OperationOutcome 400
    stale = await api.http.put(
        f"/fhir/Task/{done['id']}",
        json=resources[2],
        headers={**both, "If-Match": 'W/"1"', "Content-Type": "application/fhir+json"},
    )
    resources.append(stale.json())  # OperationOutcome 412

    kinds = {r["resourceType"] for r in resources}
    assert kinds == {"CapabilityStatement", "ServiceRequest", "Task", "Bundle", "Organization", "Location",
                     "OperationOutcome"}  # fmt: skip
    bundles = [r for r in resources if r["resourceType"] == "Bundle"]
    in_bundles = {e["resource"]["resourceType"] for b in bundles for e in b.get("entry", [])}
    assert in_bundles == {"Task", "ServiceRequest", "Organization", "Location"}
    for resource in resources:
        assert problems(resource) == [], (resource["resourceType"], problems(resource))
