"""The FHIR R4 referral API a receiving EMR or a ministry system works with: the capability
statement, ServiceRequest and Task searches with paging, the facility registry as Organization and
Location, Task updates with If-Match that drive the referral's lifecycle, and OperationOutcome for
every error. Resources are checked with fhir.resources' R4B models (R4's elements for these)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from conftest import FACILITY, OTHER_FACILITY, THIRD_FACILITY, Api, feed_types
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

FHIR_JSON = "application/fhir+json"
SERVICES = (
    "family_planning",
    "tb_screening",
    "psychosocial_support",
    "partner_family_testing",
    "community_organisation",
)


def outcome_code(response: Any) -> str:
    """The problem code of an error, which must be an OperationOutcome."""
    assert response.headers["content-type"] == FHIR_JSON, response.text
    outcome = OperationOutcome.model_validate(response.json())
    return outcome.issue[0].details.coding[0].code


async def search_all(api: Api, path: str, params: dict[str, Any], headers: dict[str, str]) -> list[dict]:
    """Every resource of a search, following the Bundle's next links."""
    found: list[dict] = []
    url: str | None = path
    first = True
    while url is not None:
        response = await api.http.get(url, params=params if first else None, headers=headers)
        first = False
        assert response.status_code == 200, response.text
        bundle = Bundle.model_validate(response.json())
        assert bundle.type == "searchset"
        found += [e.resource.model_dump(mode="json") for e in bundle.entry or []]
        url = next((link.url for link in bundle.link or [] if link.relation == "next"), None)
    return found


async def test_metadata_is_a_capability_statement_of_what_is_served(api: Api) -> None:
    response = await api.http.get("/fhir/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    cs = CapabilityStatement.model_validate(response.json())
    assert cs.fhirVersion == "4.0.1" and cs.kind == "instance" and cs.format == ["json"]
    resources = {r.type: r for r in cs.rest[0].resource}
    assert set(resources) == {"ServiceRequest", "Task", "Organization", "Location"}
    assert {i.code for i in resources["Task"].interaction} == {"read", "search-type", "update", "patch"}
    assert {i.code for i in resources["ServiceRequest"].interaction} == {"read", "search-type"}
    assert {"performer", "requester", "status", "subject", "_lastUpdated", "_count"} <= {
        p.name for p in resources["ServiceRequest"].searchParam
    }
    assert {"owner", "requester", "status", "subject", "_lastUpdated"} <= {
        p.name for p in resources["Task"].searchParam
    }


async def test_a_receiving_facility_pages_through_its_active_service_requests(api: Api) -> None:
    receiver = api.auth("referrals:read", [OTHER_FACILITY], client="receiving-emr")
    subject = str(uuid4())
    made = [await api.create(subject_id=subject, referral_service=s) for s in SERVICES]
    closed = made.pop()
    declined = await api.act(closed["id"], "decline", api.auth(facilities=[OTHER_FACILITY]), outcome_code="no_capacity")
    assert declined.status_code == 200
    elsewhere = await api.create(subject_id=subject, referral_service="art_initiation", to_facility_id=THIRD_FACILITY)

    params = {"performer": f"Organization/{OTHER_FACILITY}", "status": "active", "subject": f"Patient/{subject}"}
    pages = await search_all(api, "/fhir/ServiceRequest", {**params, "_count": "2"}, receiver)
    ids = [sr["id"] for sr in pages]
    assert sorted(ids) == sorted(r["id"] for r in made) and len(ids) == len(set(ids))
    assert ids == [sr["id"] for sr in await search_all(api, "/fhir/ServiceRequest", params, receiver)]
    for sr in pages:
        resource = ServiceRequest.model_validate(sr)
        assert resource.performer[0].reference == f"Organization/{OTHER_FACILITY}" and resource.status == "active"
    # the referring facility finds them by requester; the receiver does not see the third facility's
    mine = await search_all(
        api, "/fhir/ServiceRequest", {"requester": FACILITY, "subject": f"Patient/{subject}"}, api.auth()
    )
    assert {sr["id"] for sr in mine} == {r["id"] for r in [*made, closed, elsewhere]}
    revoked = await search_all(api, "/fhir/ServiceRequest", {**params, "status": "revoked"}, receiver)
    assert [sr["id"] for sr in revoked] == [closed["id"]]


async def test_last_updated_finds_what_changed_since(api: Api) -> None:
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    subject = str(uuid4())
    quiet = await api.create(subject_id=subject)
    moved = await api.create(subject_id=subject, referral_service="tb_screening")
    before = (await api.http.get(f"/fhir/Task/{moved['id']}", headers=both)).json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)  # a later transaction: now() moves on
    await api.act(moved["id"], "accept", both)
    since = (await api.http.get(f"/fhir/Task/{moved['id']}", headers=both)).json()["meta"]["lastUpdated"]
    assert since > before
    subject_param = {"subject": f"Patient/{subject}"}
    changed = await search_all(api, "/fhir/Task", {**subject_param, "_lastUpdated": f"ge{since}"}, both)
    assert [t["id"] for t in changed] == [moved["id"]]
    earlier = await search_all(api, "/fhir/Task", {**subject_param, "_lastUpdated": f"lt{since}"}, both)
    assert [t["id"] for t in earlier] == [quiet["id"]]
    bad = await api.http.get("/fhir/Task", params={"_lastUpdated": "ge-yesterday"}, headers=both)
    assert bad.status_code == 400 and outcome_code(bad) == "invalid_search_parameter"
    # the shape of a date but no day of the calendar (these were 500s)
    for impossible in ("ge2026-02-30", "ge2026-13-45", "eq2026-99"):
        for resource in ("/fhir/Task", "/fhir/ServiceRequest"):
            reply = await api.http.get(resource, params={"_lastUpdated": impossible}, headers=both)
            assert (reply.status_code, outcome_code(reply)) == (400, "invalid_search_parameter"), impossible


async def test_the_facility_registry_is_organizations_and_locations(api: Api) -> None:
    headers = api.auth("referrals:read")
    r = await api.create()
    sr = ServiceRequest.model_validate((await api.http.get(f"/fhir/ServiceRequest/{r['id']}", headers=headers)).json())
    org = await api.http.get(f"/fhir/{sr.requester.reference}", headers=headers)
    assert org.status_code == 200
    organization = Organization.model_validate(org.json())
    assert organization.id == FACILITY and organization.name == "Gugulethu Community Health Centre"
    loc = Location.model_validate((await api.http.get(f"/fhir/Location/{OTHER_FACILITY}", headers=headers)).json())
    assert loc.managingOrganization.reference == f"Organization/{OTHER_FACILITY}"
    in_cape = await search_all(api, "/fhir/Organization", {"address-state": "Western Cape", "_count": "1"}, headers)
    assert {FACILITY, OTHER_FACILITY} <= {o["id"] for o in in_cape}
    assert all(o["address"][0]["state"] == "Western Cape" for o in in_cape)
    named = await search_all(api, "/fhir/Location", {"name": "khayelitsha"}, headers)
    assert [loc["id"] for loc in named] == [OTHER_FACILITY]
    by_dhis2 = await search_all(api, "/fhir/Organization", {"identifier": "Gq7ZiXsM0nA"}, headers)
    assert [o["id"] for o in by_dhis2] == [FACILITY]
    missing = await api.http.get("/fhir/Organization/FAC-XX-999", headers=headers)
    assert missing.status_code == 404 and outcome_code(missing) == "not_found"


async def put_status(api: Api, task: dict, headers: dict[str, str], version: str, **changes: Any) -> Any:
    return await api.http.put(
        f"/fhir/Task/{task['id']}",
        json={**task, **changes},
        headers={**headers, "If-Match": f'W/"{version}"', "Content-Type": FHIR_JSON},
    )


async def test_the_receiving_facility_accepts_and_completes_a_task_with_if_match(api: Api) -> None:
    receiver = api.auth(facilities=[OTHER_FACILITY], client="receiving-emr")
    r = await api.create()
    read = await api.http.get(f"/fhir/Task/{r['id']}", headers=receiver)
    assert read.headers["etag"] == 'W/"1"'
    task = read.json()

    accepted = await put_status(api, task, receiver, "1", status="accepted")
    assert accepted.status_code == 200 and accepted.headers["etag"] == 'W/"2"'
    assert Task.model_validate(accepted.json()).status == "accepted"
    # the same change again (a retried request) changes nothing
    again = await put_status(api, accepted.json(), receiver, "2", status="accepted")
    assert again.status_code == 200 and again.headers["etag"] == 'W/"2"'
    # stale: made against version 1; nothing changes
    stale = await put_status(api, task, receiver, "1", status="completed")
    assert stale.status_code == 412 and outcome_code(stale) == "version_conflict"
    assert (await api.http.get(f"/v1/referrals/{r['id']}", headers=receiver)).json()["status"] == "accepted"

    patch = [
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output", "value": [
            {"type": {"text": "outcome"}, "valueCodeableConcept": {"coding": [{"code": "service_provided"}]}}
        ]},
    ]  # fmt: skip
    done = await api.http.patch(
        f"/fhir/Task/{r['id']}",
        json=patch,
        headers={**receiver, "If-Match": 'W/"2"', "Content-Type": "application/json-patch+json"},
    )
    assert done.status_code == 200, done.text
    completed = Task.model_validate(done.json())
    assert (
        completed.status == "completed"
        and completed.output[0].valueCodeableConcept.coding[0].code == "service_provided"
    )
    # the JSON API and the feed show the same lifecycle, with the same events as the JSON API raises
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=receiver)).json()
    assert (detail["status"], detail["outcome_code"], detail["version"]) == ("completed", "service_provided", 3)
    assert [h["action"] for h in detail["history"]] == ["request", "accept", "complete"]
    assert await feed_types(api, r["id"]) == ["ReferralCreated", "ReferralAccepted", "ReferralCompleted"]
    # a completed referral changes no more
    reopen = await put_status(api, done.json(), receiver, "3", status="accepted")
    assert reopen.status_code == 409 and outcome_code(reopen) == "invalid_transition"


async def test_a_rejection_needs_its_reason_and_only_the_receiver_rejects(api: Api) -> None:
    receiver = api.auth(facilities=[OTHER_FACILITY], client="receiving-emr")
    r = await api.create()
    task = (await api.http.get(f"/fhir/Task/{r['id']}", headers=receiver)).json()
    no_reason = await put_status(api, task, receiver, "1", status="rejected")
    assert no_reason.status_code == 422 and outcome_code(no_reason) == "outcome_required"
    by_referrer = await put_status(api, task, api.auth(), "1", status="rejected", statusReason={"text": "no_capacity"})
    assert by_referrer.status_code == 403 and outcome_code(by_referrer) == "facility_forbidden"
    stranger = api.auth(facilities=[THIRD_FACILITY])
    hidden = await put_status(api, task, stranger, "1", status="accepted")
    assert hidden.status_code == 404 and outcome_code(hidden) == "referral_not_found"
    reason = {"coding": [{"system": "https://pmtct.org/fhir/CodeSystem/referral-outcome", "code": "no_capacity"}]}
    rejected = await put_status(api, task, receiver, "1", status="rejected", statusReason=reason)
    assert rejected.status_code == 200
    assert Task.model_validate(rejected.json()).statusReason.coding[0].code == "no_capacity"
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=receiver)).json()
    assert (detail["status"], detail["outcome_code"]) == ("declined", "no_capacity")
    assert await feed_types(api, r["id"]) == ["ReferralCreated", "ReferralDeclined"]


async def test_task_update_errors_are_operation_outcomes(api: Api) -> None:
    receiver = api.auth(facilities=[OTHER_FACILITY], client="receiving-emr")
    r = await api.create()
    task = (await api.http.get(f"/fhir/Task/{r['id']}", headers=receiver)).json()
    no_match = await api.http.put(f"/fhir/Task/{r['id']}", json={**task, "status": "accepted"}, headers=receiver)
    assert no_match.status_code == 428 and outcome_code(no_match) == "if_match_required"
    not_a_task = await put_status(api, {"id": r["id"], "resourceType": "Patient"}, receiver, "1")
    assert not_a_task.status_code == 400 and outcome_code(not_a_task) == "invalid_resource"
    invalid = await put_status(api, task, receiver, "1", status="accepted", intent=7)
    assert invalid.status_code == 400 and outcome_code(invalid) == "invalid_resource"
    other_id = await put_status(api, task, receiver, "1", status="accepted", id=str(uuid4()))
    assert other_id.status_code == 400 and outcome_code(other_id) == "id_mismatch"
    nul = await put_status(api, task, receiver, "1", status="accepted", note=[{"text": "seen\u0000"}])
    assert nul.status_code == 422 and outcome_code(nul) == "invalid_task"
    odd = await put_status(api, task, receiver, "1", status="on-hold")
    assert odd.status_code == 409 and outcome_code(odd) == "invalid_transition"
    not_json_patch = await api.http.patch(f"/fhir/Task/{r['id']}", json=[], headers={**receiver, "If-Match": 'W/"1"'})
    assert not_json_patch.status_code == 415 and outcome_code(not_json_patch) == "unsupported_media_type"
    bad_patch = await api.http.patch(
        f"/fhir/Task/{r['id']}",
        json=[{"op": "replace", "path": "/nothing/here", "value": 1}],
        headers={**receiver, "If-Match": 'W/"1"', "Content-Type": "application/json-patch+json"},
    )
    assert bad_patch.status_code == 400 and outcome_code(bad_patch) == "invalid_patch"
    read_only = api.auth("referrals:read", [OTHER_FACILITY])
    no_scope = await put_status(api, task, read_only, "1", status="accepted")
    assert no_scope.status_code == 403 and outcome_code(no_scope) == "insufficient_scope"
    assert (await api.http.get(f"/v1/referrals/{r['id']}", headers=receiver)).json()["version"] == 1
    # reads and searches too
    assert outcome_code(await api.http.get("/fhir/Task")) == "unauthorized"
    assert outcome_code(await api.http.get("/fhir/Patient/1", headers=receiver)) == "not_found"
    assert outcome_code(await api.http.get("/fhir/Task/not-a-uuid", headers=receiver)) == "not_found"
    unknown = await api.http.get("/fhir/Task", params={"colour": "red"}, headers=receiver)
    assert unknown.status_code == 400 and outcome_code(unknown) == "invalid_search_parameter"
    bad_status = await api.http.get("/fhir/ServiceRequest", params={"status": "requested"}, headers=receiver)
    assert bad_status.status_code == 400 and outcome_code(bad_status) == "invalid_search_parameter"
    bad_page = await api.http.get("/fhir/ServiceRequest", params={"_page": "!!"}, headers=receiver)
    assert bad_page.status_code == 400 and outcome_code(bad_page) == "invalid_search_parameter"
    # the JSON API keeps problem+json
    plain = await api.http.get(f"/v1/referrals/{uuid4()}", headers=receiver)
    assert plain.headers["content-type"] == "application/problem+json"
