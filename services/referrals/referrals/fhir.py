"""The FHIR R4 view of the referrals service: a referral is a ServiceRequest (the order) and a
Task that tracks its fulfilment (`owner` the fulfilling organisation; status requested → accepted
→ completed, or rejected / cancelled); the facility registry is Organization and Location
(mCSD-style: a facility is both); errors are OperationOutcome; `/fhir/metadata` is the
CapabilityStatement (errors: `servicekit.fhir`).
A receiving facility updates a Task (PUT, or PATCH with a JSON Patch) against
the version it read (If-Match); `task_change` reads which lifecycle action the update stands for,
and `api.update_task` runs it as the JSON API's actions run (same rules, events, feed).

Searches (`referral_query`, `facility_query`) take the parameters listed in `SEARCH_PARAMS`, the
CapabilityStatement says the same; a parameter this server does not know is a 400 rather than
silently ignored (a receiving EMR that asks for `performer=` must never get every referral).
Pages follow one stable order (newest request first, then id; fields that never change), and the
`next` link carries the last referral's key, so a page never repeats or skips one while others
are written.

Built and validated with the `fhir.resources` R4B models: R4B is R4 with a few additions, and for
these resources it keeps R4's elements and codes, so the output is valid R4 (fhirVersion 4.0.1).
`fhir.resources` 8 does not check codes against their value sets, so the status maps below keep
to the R4 value sets themselves (tests check them).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from pmtct_events.referrals import ReferralStatus, Urgency
from servicekit.facilities import Facility
from servicekit.problems import Problem

from . import rules
from .models import Referral
from .rules import Action

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

#: a referral cancelled because the fact it was opened for was voided never had a reason to exist:
#: its ServiceRequest is `entered-in-error` (R4 request-status), not `revoked`; its Task stays
#: `cancelled`, with the reason (Task.status is what the receiving side acts on)
IN_ERROR = "entered-in-error"

#: what the platform's own reasons mean, shown with their code (a ministry reads `statusReason.text`)
OUTCOME_DISPLAY: dict[str, str] = {
    rules.OUTCOME_NOT_NEEDED: "Not needed: facts recorded later show the need was met before it was due",
    rules.OUTCOME_ENTERED_IN_ERROR: "Entered in error: the fact it was made for was voided by the EMR",
}


def is_in_error(r: Referral) -> bool:
    """Cancelled because the fact (or announcement) it was opened for was voided, entered in error."""
    return r.status is ReferralStatus.cancelled and r.outcome_code == rules.OUTCOME_ENTERED_IN_ERROR


def request_status(r: Referral) -> str:
    """Its ServiceRequest.status: by its status (`REQUEST_STATUS`), `entered-in-error` if it is."""
    return IN_ERROR if is_in_error(r) else REQUEST_STATUS[r.status]


#: R4 request-priority
PRIORITY: dict[Urgency, str] = {Urgency.routine: "routine", Urgency.urgent: "urgent", Urgency.emergency: "stat"}


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
        "status": request_status(r),
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
        resource["statusReason"] = _coded(OUTCOME_SYSTEM, r.outcome_code, OUTCOME_DISPLAY.get(r.outcome_code))
    elif r.status is ReferralStatus.expired:
        resource["statusReason"] = {"text": "expired: the due-by date passed with the referral still open"}
    if r.outcome_code and r.status is ReferralStatus.completed:
        resource["output"] = [
            {"type": {"text": "outcome"}, "valueCodeableConcept": _coded(OUTCOME_SYSTEM, r.outcome_code)}
        ]
    return Task.model_validate(resource)


# --- the facility registry as Organization and Location (mCSD: a facility is both) ----------------

DHIS2_SYSTEM = "https://dhis2.org/orgUnit"
FACILITY_SYSTEM = f"{BASE}/facility"


def organization(f: Facility) -> Organization:
    return Organization.model_validate(
        {
            "resourceType": "Organization",
            "id": f.facility_id,
            "identifier": [
                {"system": FACILITY_SYSTEM, "value": f.facility_id},
                {"system": DHIS2_SYSTEM, "value": f.dhis2_org_unit},
            ],
            "active": True,
            "type": [
                {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}],
                    "text": "Healthcare Provider",
                }
            ],
            "name": f.name,
            "address": [{"district": f.district, "state": f.province, "country": f.country}],
        }
    )


def location(f: Facility) -> Location:
    return Location.model_validate(
        {
            "resourceType": "Location",
            "id": f.facility_id,
            "identifier": [
                {"system": FACILITY_SYSTEM, "value": f.facility_id},
                {"system": DHIS2_SYSTEM, "value": f.dhis2_org_unit},
            ],
            "status": "active",
            "mode": "instance",
            "name": f.name,
            "physicalType": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "bu"}],
                "text": "Building",
            },
            "address": {"district": f.district, "state": f.province, "country": f.country},
            "managingOrganization": _organization(f.facility_id),
        }
    )


@dataclass(frozen=True, slots=True)
class FacilityQuery:
    """An Organization or Location search: `_id`, `name` (starts with, any case), `identifier`
    (`[system|]value`, the facility id or its DHIS2 org unit), `address-state` (province),
    `address-country`, and for a Location `organization`."""

    ids: frozenset[str] | None = None
    name: str | None = None
    identifier: str | None = None
    state: str | None = None
    country: str | None = None
    organization: str | None = None

    def matches(self, f: Facility) -> bool:
        if self.ids is not None and f.facility_id not in self.ids:
            return False
        if self.name is not None and not f.name.casefold().startswith(self.name.casefold()):
            return False
        if self.identifier is not None:
            system, bar, value = self.identifier.rpartition("|")
            pairs = {(FACILITY_SYSTEM, f.facility_id), (DHIS2_SYSTEM, f.dhis2_org_unit)}
            if not any(v == value and (not bar or not system or s == system) for s, v in pairs):
                return False
        if self.state is not None and f.province.casefold() != self.state.casefold():
            return False
        if self.country is not None and f.country.casefold() != self.country.casefold():
            return False
        return self.organization is None or self.organization.removeprefix("Organization/") == f.facility_id


# --- the capability statement ---------------------------------------------------------------------

_REFERRAL_SEARCH = [
    ("_id", "token", "the referral id"),
    ("_lastUpdated", "date", "when the referral last changed (prefixes gt, ge, lt, le, eq)"),
    ("status", "token", "the FHIR status"),
    ("subject", "reference", "Patient/<subject id>: the mother's client_id or the infant's infant_id"),
    ("patient", "reference", "as subject"),
    ("requester", "reference", "Organization/<facility id>: the referring facility"),
]
SEARCH_PARAMS: dict[str, list[tuple[str, str, str]]] = {
    "ServiceRequest": [*_REFERRAL_SEARCH, ("performer", "reference", "Organization/<facility id>: referred to")],
    "Task": [
        *_REFERRAL_SEARCH,
        ("owner", "reference", "Organization/<facility id>: the facility that fulfils it"),
        ("focus", "reference", "ServiceRequest/<referral id>"),
        ("business-status", "token", "the platform's referral status"),
    ],
    "Organization": [
        ("_id", "token", "the facility id"),
        ("name", "string", "the name starts with this, in any case"),
        ("identifier", "token", "[system|]value: the facility id or its DHIS2 org unit"),
        ("address-state", "string", "the province"),
        ("address-country", "string", "the ISO country code"),
    ],
    "Location": [
        ("_id", "token", "the facility id"),
        ("name", "string", "the name starts with this, in any case"),
        ("identifier", "token", "[system|]value: the facility id or its DHIS2 org unit"),
        ("address-state", "string", "the province"),
        ("address-country", "string", "the ISO country code"),
        ("organization", "reference", "Organization/<facility id>"),
    ],
}


def capability_statement(base_url: str, software_version: str) -> CapabilityStatement:
    def resource(kind: str, updatable: bool) -> dict[str, Any]:
        interactions = ["read", "search-type"] + (["update", "patch"] if updatable else [])
        entry: dict[str, Any] = {
            "type": kind,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned" if kind in ("ServiceRequest", "Task") else "no-version",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [
                {"name": name, "type": type_, "documentation": doc} for name, type_, doc in SEARCH_PARAMS[kind]
            ]
            + [{"name": "_count", "type": "number", "documentation": "page size (the next link continues)"}],
        }
        if updatable:
            entry["conditionalUpdate"] = False
            entry["documentation"] = (
                'PUT or PATCH (JSON Patch) with If-Match: W/"<versionId>". Only status, statusReason and '
                "output are taken: accepted (accept), in-progress (accept; the platform has no separate "
                "started state), rejected with statusReason (decline), completed with an output "
                "valueCodeableConcept (complete), cancelled with statusReason (cancel, the referring side)."
            )
        return entry

    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-04",
            "publisher": "PMTCT event platform",
            "kind": "instance",
            "software": {"name": "PMTCT referrals service", "version": software_version},
            "implementation": {"description": "Closed-loop referrals of the PMTCT event platform", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "patchFormat": ["application/json-patch+json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "description": "OAuth2 client credentials; bearer JWT with scope referrals:read "
                        "(and referrals:write to update a Task) and a facilities claim",
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "OAuth",
                                    }
                                ]
                            }
                        ],
                    },
                    "resource": [
                        resource("ServiceRequest", False),
                        resource("Task", True),
                        resource("Organization", False),
                        resource("Location", False),
                    ],
                }
            ],
        }
    )


# --- searches ----------------------------------------------------------------------------------------


def searchset(resources: Iterable[Any], self_url: str, next_url: str | None) -> Bundle:
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    entries = [
        {
            "fullUrl": f"{r.get_resource_type()}/{r.id}",
            "resource": r.model_dump(mode="json"),
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    return Bundle.model_validate({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})


def _bad(name: str, detail: str) -> Problem:
    return Problem(400, "invalid_search_parameter", f"{name}: {detail}")


@dataclass(frozen=True, slots=True)
class Bound:
    """One `_lastUpdated` condition: `op` is one of >=, <."""

    op: str
    at: datetime


_DATE_PRECISION = (
    (re.compile(r"^\d{4}$"), "%Y", "year"),
    (re.compile(r"^\d{4}-\d{2}$"), "%Y-%m", "month"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d", "day"),
)


def _date_range(value: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date(Time) value stands for, [start, end) at its precision."""
    for pattern, fmt, unit in _DATE_PRECISION:
        if pattern.match(value):
            try:
                start = datetime.strptime(value, fmt).replace(tzinfo=UTC)
            except ValueError:  # the shape of a date, not a day of the calendar: 2026-02-30, 2026-13
                raise _bad("_lastUpdated", f"{value!r} is not a date of the calendar.") from None
            if unit == "year":
                end = start.replace(year=start.year + 1)
            elif unit == "month":
                end = (start + timedelta(days=32)).replace(day=1)
            else:
                end = start + timedelta(days=1)
            return start, end
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad("_lastUpdated", f"{value!r} is not a FHIR date or dateTime.") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    has_fraction = "." in value.split("T")[-1]
    return at, at + (timedelta(microseconds=1) if has_fraction else timedelta(seconds=1))


def last_updated(values: list[str]) -> list[Bound]:
    """`_lastUpdated` (repeatable, ANDed) as bounds on the time of the last change."""
    bounds: list[Bound] = []
    for raw in values:
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in ("eq", "gt", "ge", "lt", "le") else ("eq", raw)
        start, end = _date_range(value)
        if prefix in ("eq", "ge"):
            bounds.append(Bound(">=", start))
        if prefix == "gt":
            bounds.append(Bound(">=", end))
        if prefix in ("eq", "le"):
            bounds.append(Bound("<", end))
        if prefix == "lt":
            bounds.append(Bound("<", start))
    return bounds


@dataclass(frozen=True, slots=True)
class ReferralQuery:
    """A ServiceRequest or Task search in our terms; None = no condition. Parameters combine with
    AND, the comma-separated values of one parameter with OR (FHIR search)."""

    referral_ids: frozenset[UUID] | None = None
    requester: frozenset[str] | None = None
    receiver: frozenset[str] | None = None
    statuses: frozenset[ReferralStatus] | None = None
    #: ServiceRequest `entered-in-error` / `revoked` (both cancelled): True, a cancelled referral is
    #: found only if it is in error; False, only if it is not; None, either
    cancelled_in_error: bool | None = None
    subject_id: UUID | None = None
    updated: tuple[Bound, ...] = ()


def _reference_ids(value: str, resource_type: str, name: str) -> frozenset[UUID]:
    prefix = f"{resource_type}/"
    try:
        return frozenset(UUID(v.removeprefix(prefix)) for v in value.split(","))
    except ValueError:
        raise _bad(name, f"{value!r} is not a {resource_type} id.") from None


def _organizations(value: str) -> frozenset[str]:
    return frozenset(v.removeprefix("Organization/") for v in value.split(","))


def _both(a: frozenset | None, b: frozenset | None) -> frozenset | None:
    return b if a is None else a if b is None else a & b


def _statuses(value: str, mapping: dict[ReferralStatus, str], name: str) -> frozenset[ReferralStatus]:
    codes = value.split(",")
    unknown = [c for c in codes if c not in VALUE_SETS[name]]
    if unknown:
        raise _bad("status", f"{', '.join(unknown)} is not a code of the R4 {name} value set.")
    return frozenset(s for s, fhir_code in mapping.items() if fhir_code in codes)


#: the R4 value sets of the status parameters (a code outside them is a 400; one of them that no
#: referral takes, e.g. Task `draft`, finds nothing)
VALUE_SETS = {
    "request-status": frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}),
    "task-status": frozenset(
        {
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        }  # fmt: skip
    ),
}


def referral_query(resource_type: str, params: dict[str, list[str]]) -> ReferralQuery:
    """The search parameters of a ServiceRequest or Task search (see SEARCH_PARAMS)."""
    known = {name for name, _, _ in SEARCH_PARAMS[resource_type]} | {"_count", "_page", "_format"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _bad(unknown[0], f"not a search parameter of {resource_type} here (see /fhir/metadata).")

    def one(name: str) -> str | None:
        values = params.get(name)
        if values and len(values) > 1:
            raise _bad(name, "give it once (comma-separate the values it may take).")
        return values[0] if values else None

    ids = None
    if (v := one("_id")) is not None:
        ids = _reference_ids(v, resource_type, "_id")
    if (v := one("focus")) is not None:
        ids = _both(ids, _reference_ids(v, "ServiceRequest", "focus"))
    statuses = None
    cancelled_in_error = None
    if (v := one("status")) is not None:
        if resource_type == "Task":
            statuses = _statuses(v, TASK_STATUS, "task-status")
        else:
            statuses = _statuses(v, REQUEST_STATUS, "request-status")
            in_error, revoked = IN_ERROR in v.split(","), REQUEST_STATUS[ReferralStatus.cancelled] in v.split(",")
            if in_error:
                statuses = statuses | {ReferralStatus.cancelled}
            if in_error != revoked:
                cancelled_in_error = in_error
    if (v := one("business-status")) is not None:
        try:
            wanted = frozenset(ReferralStatus(code) for code in v.split(","))
        except ValueError:
            raise _bad("business-status", f"{v!r} is not a referral status.") from None
        statuses = _both(statuses, wanted)
    subject = one("subject") or one("patient")
    subjects = _reference_ids(subject, "Patient", "subject") if subject else None
    if subjects is not None and len(subjects) != 1:
        raise _bad("subject", "give one patient.")
    requester = one("requester")
    receiver = one("performer") or one("owner")
    return ReferralQuery(
        referral_ids=ids,
        requester=_organizations(requester) if requester else None,
        receiver=_organizations(receiver) if receiver else None,
        statuses=statuses,
        cancelled_in_error=cancelled_in_error,
        subject_id=next(iter(subjects)) if subjects else None,
        updated=tuple(last_updated(params.get("_lastUpdated", []))),
    )


def facility_query(resource_type: str, params: dict[str, list[str]]) -> FacilityQuery:
    known = {name for name, _, _ in SEARCH_PARAMS[resource_type]} | {"_count", "_page", "_format"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _bad(unknown[0], f"not a search parameter of {resource_type} here (see /fhir/metadata).")

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[-1] if values else None

    ids = one("_id")
    return FacilityQuery(
        ids=frozenset(ids.split(",")) if ids else None,
        name=one("name"),
        identifier=one("identifier"),
        state=one("address-state"),
        country=one("address-country"),
        organization=one("organization"),
    )


def page_key(r: Referral) -> str:
    """The next page starts after this referral (search order: newest request first, then id)."""
    raw = f"{r.requested_at.isoformat()}|{r.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_key(value: str | None) -> tuple[datetime, UUID] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at, _, rid = raw.partition("|")
        return datetime.fromisoformat(at), UUID(rid)
    except (ValueError, UnicodeDecodeError):
        raise _bad("_page", "not a page of an earlier search: follow the Bundle's next link.") from None


def count(params: dict[str, list[str]], default: int = 50, maximum: int = 500) -> int:
    values = params.get("_count")
    if not values:
        return default
    if not values[-1].isdigit() or int(values[-1]) < 1:
        raise _bad("_count", f"{values[-1]!r} is not a positive whole number.")
    return min(int(values[-1]), maximum)


# --- Task updates by the receiving facility ---------------------------------------------------------


def _code_of(concept: CodeableConcept | None) -> str | None:
    if concept is None:
        return None
    for coding in concept.coding or []:
        if coding.code:
            return coding.code
    return concept.text


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What a Task update asks of a referral: an action (None: nothing changes) and its outcome."""

    action: Action | None
    outcome_code: str | None = None
    note: str | None = None


#: the Task status a receiving EMR writes -> the action on the referral, from its current status
_ACTION_OF_STATUS: dict[str, Action] = {
    "accepted": Action.accept,
    "in-progress": Action.accept,
    "rejected": Action.decline,
    "completed": Action.complete,
    "cancelled": Action.cancel,
}


def task_change(current: Referral, incoming: Task) -> TaskChange:
    """The change a PUT (or the result of a PATCH) of a referral's Task stands for. Only `status`,
    `statusReason`, `output` (the outcome) and `note` are taken; everything else is the platform's
    and is ignored. The same status as now changes nothing (an update repeated is harmless)."""
    if incoming.id is not None and incoming.id != str(current.id):
        raise Problem(400, "id_mismatch", f"The Task's id {incoming.id!r} is not the one in the URL.")
    status = incoming.status
    note = "; ".join(n.text for n in incoming.note or [] if n.text) or None
    if note is not None and len(note) > 2000:
        raise Problem(
            422, "note_too_long", "The Task's notes are kept as the referral's note: 2000 characters at most."
        )
    now = TASK_STATUS[current.status]
    if status == now or (status == "in-progress" and current.status is ReferralStatus.accepted):
        return TaskChange(None)
    action = _ACTION_OF_STATUS.get(status)
    if action is None:
        raise Problem(
            409,
            "invalid_transition",
            f"A Task cannot be set to {status!r} here; "
            "accepted, in-progress, rejected, completed and cancelled are the statuses a referral takes.",
            current_status=current.status.value,
        )
    outcome = None
    if action in (Action.decline, Action.cancel):
        outcome = _code_of(incoming.statusReason)
        if outcome is None:
            raise Problem(422, "outcome_required", f"To set a Task {status}, give the reason as statusReason.")
    elif action is Action.complete:
        for out in incoming.output or []:
            code = _code_of(getattr(out, "valueCodeableConcept", None))
            if code is not None:
                outcome = code
                break
    if outcome is not None and (len(outcome) > 64 or not re.fullmatch(r"[a-z0-9_]+", outcome)):
        raise Problem(
            422, "invalid_outcome_code", f"{outcome!r}: an outcome or reason code is lowercase letters, digits and _."
        )
    return TaskChange(action, outcome, note)


def etag(r: Referral) -> str:
    return f'W/"{r.version}"'


def parse_if_match(value: str | None) -> int:
    """The version an update was made against (If-Match: W/"3"); 428 when it is missing."""
    if value is None:
        raise Problem(
            428, "if_match_required", 'Give the version the update is made against: If-Match: W/"<versionId>".'
        )
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise Problem(400, "invalid_if_match", f'If-Match {value!r} is not a version (W/"<versionId>").')
    return int(tag)
