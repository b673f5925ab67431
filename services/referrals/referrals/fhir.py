"""The FHIR view of a referral, as FHIR R4 models one (ServiceRequest and Task resources; the
Task's status moves requested → accepted → in-progress → completed, or rejected / cancelled): a
ServiceRequest for the order and a Task that tracks its fulfilment, `owner` being the fulfilling
organisation.

Built and validated with the `fhir.resources` R4B models: R4B is R4 with a few additions, and for
ServiceRequest, Task and Bundle it keeps R4's elements and codes, so the output is valid R4.
`fhir.resources` 8 does not check codes against their value sets, so the status maps below keep
to the R4 value sets themselves (tests check them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from pmtct_events.referrals import ReferralStatus, Urgency
from servicekit.problems import Problem

from .models import Referral

FHIR_JSON = "application/fhir+json"
BASE = "https://pmtct.org/fhir"
SERVICE_SYSTEM = f"{BASE}/CodeSystem/referral-service"
REASON_SYSTEM = f"{BASE}/CodeSystem/referral-reason"
STATUS_SYSTEM = f"{BASE}/CodeSystem/referral-status"
OUTCOME_SYSTEM = f"{BASE}/CodeSystem/referral-outcome"

#: R4 request-status (http://hl7.org/fhir/R4/valueset-request-status.html)
REQUEST_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.requested: "active",
    ReferralStatus.accepted: "active",
    ReferralStatus.completed: "completed",
    ReferralStatus.declined: "revoked",
    ReferralStatus.cancelled: "revoked",
    ReferralStatus.expired: "revoked",
}

#: R4 task-status (http://hl7.org/fhir/R4/valueset-task-status.html); `businessStatus` keeps ours
TASK_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.requested: "requested",
    ReferralStatus.accepted: "accepted",
    ReferralStatus.completed: "completed",
    ReferralStatus.declined: "rejected",
    ReferralStatus.cancelled: "cancelled",
    ReferralStatus.expired: "cancelled",
}

#: R4 request-priority
PRIORITY: dict[Urgency, str] = {Urgency.routine: "routine", Urgency.urgent: "urgent", Urgency.emergency: "stat"}


def statuses_for_task_status(code: str) -> list[ReferralStatus]:
    """Our statuses behind a FHIR Task status (a search parameter)."""
    return [s for s, fhir_code in TASK_STATUS.items() if fhir_code == code]


def _coded(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def _display(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _organization(facility_id: str) -> dict[str, str]:
    return {"reference": f"Organization/{facility_id}"}


def _common(r: Referral) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "meta": {"versionId": str(r.version), "lastUpdated": r.updated_at.isoformat()},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{r.id}"}],
        "intent": "order",
        "priority": PRIORITY[r.urgency],
        "authoredOn": r.requested_at.isoformat(),
        "requester": _organization(r.from_facility_id),
    }


def service_request(r: Referral) -> ServiceRequest:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        **_common(r),
        "status": REQUEST_STATUS[r.status],
        "category": [_coded("http://snomed.info/sct", "3457005", "Patient referral")],
        "code": _coded(SERVICE_SYSTEM, r.referral_service.value, _display(r.referral_service.value)),
        "subject": {"reference": f"Patient/{r.subject_id}"},
        "occurrencePeriod": {"start": r.requested_at.isoformat(), "end": r.due_by.isoformat()},
        "reasonCode": [_coded(REASON_SYSTEM, r.reason_code)],
    }
    if r.to_facility_id:
        resource["performer"] = [_organization(r.to_facility_id)]
    return ServiceRequest.model_validate(resource)


def task(r: Referral) -> Task:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        **_common(r),
        "status": TASK_STATUS[r.status],
        "businessStatus": _coded(STATUS_SYSTEM, r.status.value, _display(r.status.value)),
        "code": _coded("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request"),
        "basedOn": [{"reference": f"ServiceRequest/{r.id}"}],
        "focus": {"reference": f"ServiceRequest/{r.id}"},
        "for": {"reference": f"Patient/{r.subject_id}"},
        "lastModified": r.updated_at.isoformat(),
        "owner": _organization(r.receiving_facility_id),
        "restriction": {"period": {"end": r.due_by.isoformat()}},
    }
    if r.accepted_at or r.closed_at:
        period = {"start": (r.accepted_at or r.closed_at).isoformat()}  # type: ignore[union-attr]
        if r.closed_at:
            period["end"] = r.closed_at.isoformat()
        resource["executionPeriod"] = period
    if r.outcome_code and r.status in (ReferralStatus.declined, ReferralStatus.cancelled):
        resource["statusReason"] = _coded(OUTCOME_SYSTEM, r.outcome_code)
    elif r.status is ReferralStatus.expired:
        resource["statusReason"] = {"text": "expired: the due-by date passed with the referral still open"}
    if r.outcome_code and r.status is ReferralStatus.completed:
        resource["output"] = [
            {"type": {"text": "outcome"}, "valueCodeableConcept": _coded(OUTCOME_SYSTEM, r.outcome_code)}
        ]
    return Task.model_validate(resource)


def search_bundle(tasks: Iterable[Task], self_url: str) -> Bundle:
    entries = [
        {"fullUrl": f"Task/{t.id}", "resource": t.model_dump(mode="json"), "search": {"mode": "match"}} for t in tasks
    ]
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": self_url}],
            "entry": entries,
        }
    )


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A Task search in our terms; None = no condition. Parameters combine with AND, the
    comma-separated values of one parameter with OR (FHIR search)."""

    referral_ids: frozenset[UUID] | None
    owner: str | None
    statuses: frozenset[ReferralStatus] | None
    subject_id: UUID | None


def _reference_ids(value: str, resource_type: str, name: str) -> frozenset[UUID]:
    prefix = f"{resource_type}/"
    try:
        return frozenset(UUID(v.removeprefix(prefix)) for v in value.split(","))
    except ValueError:
        raise Problem(400, "invalid_search_parameter", f"{name}: {value!r} is not a {resource_type} id.") from None


def _both(a: frozenset | None, b: frozenset | None) -> frozenset | None:
    return b if a is None else a if b is None else a & b


def task_query(
    *,
    ids: str | None,
    focus: str | None,
    owner: str | None,
    status: str | None,
    business_status: str | None,
    patient: str | None,
) -> TaskQuery:
    """The Task search parameters `_id`, `focus`, `owner`, `status`, `business-status`, `patient`."""
    statuses = None
    if status:
        statuses = frozenset(s for code in status.split(",") for s in statuses_for_task_status(code))
    if business_status:
        try:
            wanted = frozenset(ReferralStatus(code) for code in business_status.split(","))
        except ValueError:
            raise Problem(
                400, "invalid_search_parameter", f"business-status: {business_status!r} is not a referral status."
            ) from None
        statuses = _both(statuses, wanted)
    subjects = _reference_ids(patient, "Patient", "patient") if patient else None
    if subjects is not None and len(subjects) != 1:
        raise Problem(400, "invalid_search_parameter", "patient: give one patient.")
    return TaskQuery(
        referral_ids=_both(
            _reference_ids(ids, "Task", "_id") if ids else None,
            _reference_ids(focus, "ServiceRequest", "focus") if focus else None,
        ),
        owner=owner.removeprefix("Organization/") if owner else None,
        statuses=statuses,
        subject_id=next(iter(subjects)) if subjects else None,
    )
