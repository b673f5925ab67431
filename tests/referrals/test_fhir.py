"""The FHIR R4 view: ServiceRequest and Task resources that validate with fhir.resources."""

from __future__ import annotations

from uuid import uuid4

import pytest
from conftest import FACILITY, OTHER_FACILITY, THIRD_FACILITY, Api
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from referrals import fhir

# R4 value sets (fhir.resources does not check codes, so the tests do)
TASK_STATUS = {
    "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
    "in-progress", "on-hold", "failed", "completed", "entered-in-error",
}  # fmt: skip
REQUEST_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
PRIORITY = {"routine", "urgent", "asap", "stat"}
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def both(api: Api) -> dict[str, str]:
    return api.auth(facilities=[FACILITY, OTHER_FACILITY])


async def test_a_referral_is_a_valid_service_request(api: Api) -> None:
    r = await api.create(urgency="emergency")
    response = await api.http.get(f"/fhir/ServiceRequest/{r['id']}", headers=api.auth("referrals:read"))
    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    sr = ServiceRequest.model_validate(response.json())
    assert sr.id == r["id"] and sr.status in REQUEST_STATUS and sr.priority in PRIORITY
    assert (sr.status, sr.intent, sr.priority) == ("active", "order", "stat")
    assert sr.subject.reference == f"Patient/{r['subject_id']}"
    assert sr.requester.reference == f"Organization/{FACILITY}"
    assert [p.reference for p in sr.performer] == [f"Organization/{OTHER_FACILITY}"]
    assert sr.code.coding[0].code == "family_planning" and sr.code.coding[0].system == fhir.SERVICE_SYSTEM
    assert str(sr.occurrencePeriod.end) == r["due_by"]


@pytest.mark.parametrize(
    "actions, task_status, request_status",
    [
        ((), "requested", "active"),
        (("accept",), "accepted", "active"),
        (("accept", "complete"), "completed", "completed"),
        (("decline",), "rejected", "revoked"),
        (("cancel",), "cancelled", "revoked"),
    ],
)
async def test_a_referral_s_task_follows_its_status(
    api: Api, both: dict[str, str], actions: tuple[str, ...], task_status: str, request_status: str
) -> None:
    r = await api.create()
    for action in actions:
        assert (await api.act(r["id"], action, both, outcome_code="reason_given")).status_code == 200
    task = Task.model_validate((await api.http.get(f"/fhir/Task/{r['id']}", headers=both)).json())
    sr = ServiceRequest.model_validate((await api.http.get(f"/fhir/ServiceRequest/{r['id']}", headers=both)).json())
    assert task.status in TASK_STATUS and sr.status in REQUEST_STATUS
    assert (task.status, sr.status) == (task_status, request_status)
    assert task.businessStatus.coding[0].code == (
        {"rejected": "declined"}.get(task_status, task_status) if actions else "requested"
    )
    assert task.focus.reference == f"ServiceRequest/{r['id']}"
    assert task.for_fhir.reference == f"Patient/{r['subject_id']}"
    assert task.owner.reference == f"Organization/{OTHER_FACILITY}"
    assert task.intent == "order" and task.meta.versionId == str(1 + len(actions))
    if task_status in ("rejected", "cancelled"):
        assert task.statusReason.coding[0].code == "reason_given"
    if task_status == "completed":
        assert task.output[0].valueCodeableConcept.coding[0].code == "reason_given"
        assert task.executionPeriod.end is not None


async def test_a_task_search_by_owner_status_focus_and_patient_is_a_valid_searchset(api: Api, both) -> None:
    subject = str(uuid4())
    open_one = await api.create(subject_id=subject)
    done = await api.create(subject_id=subject, referral_service="tb_screening")
    await api.act(done["id"], "complete", both)
    at_home = await api.create(subject_id=subject, referral_service="psychosocial_support", to_facility_id=None)

    async def search(**params: str) -> list[str]:
        response = await api.http.get("/fhir/Task", params={"patient": f"Patient/{subject}", **params}, headers=both)
        assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
        bundle = Bundle.model_validate(response.json())
        assert bundle.type == "searchset"
        tasks = [Task.model_validate(e.resource.model_dump()) for e in bundle.entry or []]
        return sorted(t.id for t in tasks)

    assert await search() == sorted([open_one["id"], done["id"], at_home["id"]])
    assert await search(status="requested") == sorted([open_one["id"], at_home["id"]])
    assert await search(status="completed") == [done["id"]]
    assert await search(**{"business-status": "completed"}) == [done["id"]]
    assert await search(owner=f"Organization/{FACILITY}") == [at_home["id"]]
    assert await search(owner=OTHER_FACILITY, status="requested") == [open_one["id"]]
    assert await search(focus=f"ServiceRequest/{done['id']}") == [done["id"]]
    assert await search(_id=f"{open_one['id']},{done['id']}", status="completed") == [done["id"]]


async def test_an_automatic_referral_task_is_owned_by_the_referring_facility(api: Api) -> None:
    r = await api.create(to_facility_id=None, referral_service="community_tracing")
    task = Task.model_validate((await api.http.get(f"/fhir/Task/{r['id']}", headers=api.auth())).json())
    assert task.owner.reference == f"Organization/{FACILITY}"


async def test_fhir_reads_are_facility_scoped_and_bad_searches_are_400(api: Api) -> None:
    r = await api.create()
    stranger = api.auth("referrals:read", [THIRD_FACILITY])
    assert (await api.http.get(f"/fhir/ServiceRequest/{r['id']}", headers=stranger)).status_code == 404
    found = await api.http.get("/fhir/Task", params={"_id": r["id"]}, headers=stranger)
    assert Bundle.model_validate(found.json()).entry is None
    bad = await api.http.get("/fhir/Task", params={"patient": "Patient/not-a-uuid"}, headers=api.auth())
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert bad.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_search_parameter"
    bad = await api.http.get("/fhir/Task", params={"business-status": "lost"}, headers=api.auth())
    assert bad.status_code == 400


@pytest.mark.parametrize("status", list(fhir.TASK_STATUS))
def test_every_referral_status_maps_to_r4_task_and_request_codes(status) -> None:
    assert fhir.TASK_STATUS[status] in TASK_STATUS
    assert fhir.REQUEST_STATUS[status] in REQUEST_STATUS
    assert fhir.VALUE_SETS["task-status"] == TASK_STATUS and fhir.VALUE_SETS["request-status"] == REQUEST_STATUS
