"""A FHIR R4 transaction or batch Bundle, as an OpenMRS-style EMR sends it, as the platform's own
EMR events (the ones of docs/emr-intake.md): pure, no I/O, no clock (table-tested in
tests/enrolment/test_fhir_translation.py). `POST /fhir` (`fhir_door.py`) submits what this makes
through the one front door, so a bundle has exactly the effects of the same events posted as JSON.

What each resource becomes (docs/fhir-intake.md says the same for integrators):

- EpisodeOfCare, type `pmtct-programme`: `ClientEnrolled` at `period.start`. Her Patient gives
  `client_ref`, names, phone, birth date and national id; her `pregnancy-status`,
  `hiv-diagnosis-date` and `art-start-date` Observations in the bundle, and her `gestation-weeks` /
  `edd` of that day, are its data.
- Encounter, type `anc-visit`: `AncVisitRecorded` (`visit_number` from its `anc-visit-number`
  Observation, `gestation_weeks` from its `gestation-weeks` one).
- Encounter, type `delivery`: `DeliveryRecorded`; every infant Patient linked to her (Patient.link
  or a RelatedPerson `mother`) born that day is a baby (`infant_ref`, sex, its `birth-weight`;
  deceased at birth: stillbirth).
- Encounter, type `postnatal-visit`, an infant's: `InfantVisitRecorded`.
- Observation `hiv-test` / `infant-antibody`: a woman's `HivTestRecorded` (its setting from its
  Encounter's type), an infant's `InfantTestResulted` antibody; `infant-nat`: `InfantTestResulted`
  NAT; `viral-load`: `ViralLoadRecorded`.
- MedicationRequest / MedicationDispense `art`: a woman's `ArtInitiated`, an infant's
  `InfantArtInitiated`; `NVP` / `AZT` / `3TC`: an infant's `InfantProphylaxisRecorded`
  (`duration_weeks` from the supply or dosage duration).
- Patient, RelatedPerson, Location, Organization, Medication, Practitioner: read with the entries
  that name them, no event of their own, but for a woman's death: a woman's Patient with
  `deceasedDateTime` (or `deceasedBoolean` true: then at its `meta.lastUpdated`, when the EMR
  recorded it) is `ClientDied`, unless her delivery in the bundle that day says she died at it.
- Her leaving to another facility, `ClientTransferredOut`: an EpisodeOfCare `finished` whose
  reason is a `discontinuation-reason` Observation of hers answered `transferred-out` (at
  `period.end`; KenyaEMR's discontinuation form, CIEL 161555 = 159492), such an Observation alone
  (at its time), or an Encounter whose `hospitalization.dischargeDisposition` is `transferred-out`
  (at `period.end`, `to_facility_id` from `hospitalization.destination`).
- A pregnancy ended without a delivery, `PregnancyEnded`: a Condition coded `miscarriage`,
  `abortion` or `ectopic` (at `onsetDateTime`, else `recordedDate`), or an Observation so coded
  answered `yes` (or with no answer: the finding itself; at its time).

A Patient is an infant when it is linked to a mother in the bundle or was born less than five
years before what is recorded; her identifiers give `client_ref` (the EMR's record number) and
`national_id`, an infant's its `infant_ref`. The facility of an entry is the Location or
Organization it names (through its Encounter, or its Patient's record-number identifier location),
as a registered facility id: the reference's `identifier` or the bundle's Location/Organization
with an identifier of system `FACILITY_SYSTEM`, or a reference `Location/<facility id>`; failing
that, the token's facility when it carries exactly one.

Each event's `event_id` is derived from the resource it stands for: its type and id, not its
`meta.versionId` (a uuid5), so posting the same resource again is a duplicate whatever its version
(OpenMRS bumps the version on any save), and a new version with other clinical content is the
platform's `conflict`, which the door answers `correction_required` (fhir_door.py). A result
Observation, a MedicationRequest or a MedicationDispense posted again with status `entered-in-error`
voids the event it produced: an `EventVoided` (its own event_id derived the same way) naming that
event's event_id (servicekit.corrections); an Observation read into another event (the gestation of
an enrolment or a visit) entered in error is refused `entered_in_error`, as is an Encounter.

Every primitive is checked for its FHIR JSON type first (`json_type_problem`: a decimal or an
integer is a JSON number, a boolean true or false, everything else a string), since the R4 models
read `"12"` as the number 12: a value of the wrong type is refused naming its element.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from functools import lru_cache
from importlib import import_module
from typing import Any

from pydantic import BaseModel, ValidationError

from .fhir_concepts import Concepts, Target, describe

#: the identifier system of a platform facility id (the same as referrals' FHIR view)
FACILITY_SYSTEM = "https://pmtct.org/fhir/facility"
#: the namespace of the event ids derived from resource versions
EVENT_NAMESPACE = uuid.UUID("5b0d7c36-2a4f-4c1e-9a57-8f3e1d2c6b90")
#: OpenMRS FHIR2 puts the location of a patient identifier in this extension
OPENMRS_IDENTIFIER_LOCATION = "http://fhir.openmrs.org/ext/patient/identifier#location"
#: younger than this (years) on the day of what is recorded: an infant, not a woman
INFANT_AGE_YEARS = 5

#: resources that become events
EVENT_RESOURCES = frozenset(
    {"EpisodeOfCare", "Encounter", "Observation", "MedicationRequest", "MedicationDispense", "Condition"}
)
#: resources read as context for others
CONTEXT_RESOURCES = frozenset({"Patient", "RelatedPerson", "Location", "Organization", "Medication", "Practitioner"})
SUPPORTED = EVENT_RESOURCES | CONTEXT_RESOURCES
#: Observation statuses that record a result (R4 observation-status)
RESULT_STATUSES = frozenset({"final", "amended", "corrected"})
REGIMEN = re.compile(r"^[A-Za-z0-9/+\-]{1,40}$")
RESULTS = {Target.positive: "positive", Target.negative: "negative", Target.indeterminate: "indeterminate"}
SETTINGS = {Target.anc_visit: "anc", Target.delivery: "labour_delivery", Target.postnatal_visit: "postnatal"}
OBSERVATION_CODES = (
    Target.hiv_test,
    Target.infant_nat,
    Target.infant_antibody,
    Target.viral_load,
    Target.gestation_weeks,
    Target.edd,
    Target.pregnancy_status,
    Target.art_start_date,
    Target.hiv_diagnosis_date,
    Target.anc_visit_number,
    Target.birth_weight,
    Target.discontinuation_reason,
    Target.miscarriage,
    Target.abortion,
    Target.ectopic,
)
#: how a pregnancy ended without a delivery: ConceptMap target -> PregnancyEnded.outcome
LOSSES = {Target.miscarriage: "miscarriage", Target.abortion: "abortion", Target.ectopic: "ectopic"}
PROPHYLAXIS = {Target.nevirapine: "NVP", Target.zidovudine: "AZT", Target.lamivudine: "3TC"}
WEEKS = {"wk": 1.0, "week": 1.0, "weeks": 1.0, "d": 1 / 7, "day": 1 / 7, "days": 1 / 7, "mo": 30.4375 / 7}


@dataclass(frozen=True, slots=True)
class Setup:
    """What translation needs to know besides the bundle."""

    concepts: Concepts
    #: the facility registry's ids
    facilities: frozenset[str]
    #: the token's facility claims (`*`: every facility)
    token_facilities: frozenset[str]
    #: the programme's time zone: a date without a time is noon of that day there
    zone: tzinfo
    #: identifier systems, or type texts, naming the EMR's record number (first match wins)
    record_number: tuple[str, ...] = ("OpenMRS ID",)
    #: identifier systems, or type texts, naming a national id
    national_id: tuple[str, ...] = ("National ID",)


@dataclass(frozen=True, slots=True)
class Refused:
    """An entry the platform will not take, and why (an issue of the answer's OperationOutcome)."""

    index: int
    code: str
    detail: str
    #: R4 issue-type
    issue_type: str
    status: int

    @property
    def expression(self) -> str:
        return f"Bundle.entry[{self.index}]"


@dataclass(slots=True)
class Planned:
    """One platform event, the entry it stands for, and the entries folded into its data."""

    event: dict[str, Any]
    owner: int
    parts: tuple[int, ...] = ()


@dataclass(slots=True)
class Translation:
    bundle_type: str
    entries: int
    events: list[Planned] = field(default_factory=list)
    refused: dict[int, Refused] = field(default_factory=dict)
    #: entries with no event of their own that nothing refused: why
    context: dict[int, str] = field(default_factory=dict)
    #: a baby's record number -> its Patient (`Patient/<id>`): the answer names a delivery's
    #: infants by their resources, never by a record number (fhir_door.withhold)
    infant_patients: dict[str, str] = field(default_factory=dict)

    def entries_of(self, planned: Planned) -> tuple[int, ...]:
        return (planned.owner, *planned.parts)


class BundleRefused(ValueError):
    """The body is not a Bundle the door takes at all (not a transaction or batch Bundle)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class _Refuse(Exception):
    def __init__(self, code: str, detail: str, issue_type: str = "processing", status: int = 422) -> None:
        super().__init__(detail)
        self.code, self.detail, self.issue_type, self.status = code, detail, issue_type, status


def event_id(resource: Mapping[str, Any], key: str, event_type: str) -> str:
    """The platform event_id of `resource`'s event: the same for every version of the resource
    (its `meta.versionId` is not part of it), so a re-save with the same content is a duplicate."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{key}|{event_type}"))


def _model(resource_type: str) -> Any:
    return getattr(import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)


#: JSON type names, as a refusal says them
_JSON_TYPES = {
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
    dict: "an object",
    list: "an array",
}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


@lru_cache(maxsize=256)
def _fields(model: type[BaseModel]) -> dict[str, tuple[Any, bool]]:
    """A model's fields by their JSON name: (the element's type, whether it repeats)."""
    out: dict[str, tuple[Any, bool]] = {}
    for name, info in model.model_fields.items():
        kind, repeats = info.annotation, False
        while True:
            origin = typing.get_origin(kind)
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            if origin in (typing.Union, types.UnionType) and len(args) == 1:
                kind = args[0]
            elif origin in (list, typing.List) and args:  # noqa: UP006 (the R4 models say typing.List)
                kind, repeats = args[0], True
            elif origin is typing.Annotated:
                kind = args[0]
            else:
                break
        out[info.alias or name] = (kind, repeats)
    return out


def _expected(kind: Any) -> tuple[type | tuple[type, ...], str] | None:
    """The JSON type a primitive element must have, or None for an element that is not one."""
    if kind is bool:
        return bool, "true or false"
    if kind in (int, Decimal, float):
        return (int, float), "a number"
    if kind in (str, date, datetime, time) or (isinstance(kind, type) and issubclass(kind, str)):
        return str, "a string"
    return None


def json_type_problem(model: type[BaseModel], value: Mapping[str, Any], where: str) -> str | None:
    """The first element of `value` (a resource or element as JSON) whose JSON type is not the one
    FHIR's JSON format gives its type (http://hl7.org/fhir/R4/json.html#primitive), or None."""
    fields = _fields(model)
    for key, v in value.items():
        if key not in fields or v is None:
            continue
        kind, repeats = fields[key]
        items = list(enumerate(v)) if repeats and isinstance(v, list) else [(None, v)]
        if repeats and not isinstance(v, list):
            return f"{where}.{key} must be an array, not {_json_type(v)}."
        for i, item in items:
            at = f"{where}.{key}" + (f"[{i}]" if i is not None else "")
            expected = _expected(kind)
            if expected is not None:
                wanted, said = expected
                if isinstance(item, bool) and wanted is not bool or not isinstance(item, wanted):
                    return f"{at} must be {said} in FHIR JSON, not {_json_type(item)}."
                continue
            klass = getattr(kind, "get_model_klass", None)
            sub = (
                klass()
                if callable(klass)
                else (kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None)
            )
            if sub is None:
                continue
            if not isinstance(item, dict):
                return f"{at} must be an object, not {_json_type(item)}."
            found = json_type_problem(sub, item, at)
            if found is not None:
                return found
    return None


def _validation_detail(resource_type: str, exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"] if p != "__root__") or resource_type
    return f"not a valid R4 {resource_type}: {where}: {first['msg']}"


# --- the bundle's resources and references -------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    index: int
    resource: dict[str, Any]
    key: str  # "Type/id", or the fullUrl when the resource has no id

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])


class _Bundle:
    def __init__(self, entries: list[_Entry], full_urls: dict[str, int]) -> None:
        self.entries = entries
        self.by_index = {e.index: e for e in entries}
        self.by_key: dict[str, _Entry] = {}
        for e in entries:
            self.by_key[e.key] = e
            rid = e.resource.get("id")
            if rid:
                self.by_key[f"{e.type}/{rid}"] = e
        for url, index in full_urls.items():
            if index in self.by_index:
                self.by_key[url] = self.by_index[index]

    def resolve(self, reference: Any) -> _Entry | None:
        """The bundle entry a Reference (as JSON) names: `Type/id`, a fullUrl, or a URL ending in `Type/id`."""
        if not isinstance(reference, dict):
            return None
        ref = reference.get("reference")
        if not isinstance(ref, str):
            return None
        found = self.by_key.get(ref)
        if found is None:
            m = re.search(r"([A-Za-z]+/[A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$", ref)
            found = self.by_key.get(m.group(1)) if m else None
        return found

    def of_type(self, resource_type: str) -> Iterator[_Entry]:
        return (e for e in self.entries if e.type == resource_type)


# --- dates -----------------------------------------------------------------------------------------


def _instant(value: Any, zone: tzinfo, what: str) -> datetime:
    """A FHIR date or dateTime as an aware instant: a day without a time is noon there."""
    if not isinstance(value, str) or not value:
        raise _Refuse("missing_field", f"{what} is required.", "required")
    if len(value) < 10:
        raise _Refuse("invalid_value", f"{what} {value!r} is not a whole day.", "value")
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(12), tzinfo=zone)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Refuse("invalid_value", f"{what} {value!r} is not a date or dateTime.", "value") from None
    if parsed.tzinfo is None:
        raise _Refuse("invalid_value", f"{what} {value!r} has a time but no UTC offset.", "value")
    return parsed


def _day(value: Any, zone: tzinfo, what: str) -> date:
    return _instant(value, zone, what).astimezone(zone).date()


# --- the translation -------------------------------------------------------------------------------


def translate(body: Any, setup: Setup) -> Translation:
    """The platform events of a transaction or batch Bundle (as JSON), and the entries refused.
    Raises `BundleRefused` when the body is not such a Bundle at all."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise BundleRefused("not_a_bundle", f"POST /fhir takes a Bundle (type transaction or batch), not {found!r}.")
    bundle_type = body.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise BundleRefused(
            "unsupported_bundle_type", f"Bundle.type must be transaction or batch, not {bundle_type!r}.", 422
        )
    raw_entries = body.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise BundleRefused("empty_bundle", "The Bundle has no entries.", 422)
    shell = {k: v for k, v in body.items() if k != "entry"}
    try:
        _model("Bundle").model_validate(shell)
    except ValidationError as exc:
        raise BundleRefused("invalid_resource", _validation_detail("Bundle", exc)) from None
    out = Translation(bundle_type=bundle_type, entries=len(raw_entries))

    entries: list[_Entry] = []
    full_urls: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_checked_entry(index, raw, bundle_type))
        except _Refuse as r:
            out.refused[index] = Refused(index, r.code, r.detail, r.issue_type, r.status)
            continue
        url = raw.get("fullUrl")
        if isinstance(url, str):
            full_urls[url] = index
    bundle = _Bundle(entries, full_urls)
    _Translator(bundle, setup, out).run()
    return out


def _checked_entry(index: int, raw: Any, bundle_type: str) -> _Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("resource"), dict):
        raise _Refuse("invalid_resource", "A Bundle entry must carry a resource.", "required", 400)
    resource = raw["resource"]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise _Refuse("invalid_resource", "The resource has no resourceType.", "required", 400)
    if rtype not in SUPPORTED:
        raise _Refuse(
            "unsupported_resource_type",
            f"{rtype} is not a resource this door takes (it takes {', '.join(sorted(SUPPORTED))}).",
            "not-supported",
        )
    method = (raw.get("request") or {}).get("method") if isinstance(raw.get("request"), dict) else None
    if method not in (None, "POST", "PUT"):
        raise _Refuse(
            "unsupported_method",
            f"request.method {method} is not taken here: entries are recorded (POST or PUT);"
            " an entry recorded in error is voided by its event (docs/emr-intake.md).",
            "not-supported",
        )
    if bundle_type == "transaction" and method is None:
        raise _Refuse("invalid_resource", "A transaction entry needs request.method (POST or PUT).", "required", 400)
    wrong_type = json_type_problem(_model(rtype), resource, rtype)
    if wrong_type is not None:
        raise _Refuse("invalid_resource", f"not a valid R4 {rtype}: {wrong_type}", "structure", 400)
    try:
        _model(rtype).model_validate(resource)
    except ValidationError as exc:
        raise _Refuse("invalid_resource", _validation_detail(rtype, exc), "structure", 400) from None
    rid = resource.get("id")
    url = raw.get("fullUrl")
    if isinstance(rid, str) and rid:
        key = f"{rtype}/{rid}"
    elif isinstance(url, str) and url:
        key = url
    else:
        raise _Refuse(
            "invalid_resource",
            f"The {rtype} has neither an id nor a fullUrl: its events' ids are derived from it"
            " (a repost is a duplicate).",
            "required",
            400,
        )
    return _Entry(index, resource, key)


class _Translator:
    def __init__(self, bundle: _Bundle, setup: Setup, out: Translation) -> None:
        self.b = bundle
        self.s = setup
        self.out = out
        self.zone = setup.zone
        #: infant Patient index -> mother Patient index, from Patient.link and RelatedPerson
        self.mother_of: dict[int, int] = {}
        #: infant Patient index -> the RelatedPerson entry that links it to her
        self.linked_by: dict[int, int] = {}
        #: entries folded into an event (they answer as that event does)
        self.folded: set[int] = set()

    # the whole bundle ---------------------------------------------------------------------------

    def run(self) -> None:
        self._links()
        # folded observations first: an enrolment, a visit and a delivery read them
        for e in self.b.entries:
            if e.type in CONTEXT_RESOURCES:
                self.out.context[e.index] = f"{e.type}: read with the entries that name it"
        for e in self.b.entries:
            if e.type not in EVENT_RESOURCES and e.type != "Patient":
                continue
            try:
                planned = self._events_of(e)
            except _Refuse as r:
                self.out.refused[e.index] = Refused(e.index, r.code, r.detail, r.issue_type, r.status)
                continue
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                # valid R4, but in a shape this reading did not foresee: refused, never a 500
                self.out.refused[e.index] = Refused(
                    e.index, "invalid_resource", f"{e.type} could not be read ({type(exc).__name__}).", "structure", 400
                )
                continue
            self.out.events.extend(planned)
        for p in self.out.events:
            for part in p.parts:
                self.out.context.pop(part, None)
        for e in self.b.entries:
            if e.type in EVENT_RESOURCES and e.index not in self.out.refused and e.index not in self.folded:
                if not any(p.owner == e.index for p in self.out.events):
                    self.out.context.setdefault(e.index, f"{e.type}: no event of its own")
        # an observation folded into an event answers as that event; its "no event" note goes
        for p in self.out.events:
            for part in p.parts:
                self.out.context.pop(part, None)

    def _links(self) -> None:
        try:
            self._read_links()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            pass  # a link that cannot be read links nothing: the delivery then lists no baby for it

    def _read_links(self) -> None:
        for e in self.b.of_type("Patient"):
            for link in e.resource.get("link") or ():
                other = self.b.resolve(link.get("other"))
                if other is not None and other.type == "Patient" and other.index != e.index:
                    if self._is_infant_age(e, other):
                        self.mother_of[e.index] = other.index
        for e in self.b.of_type("RelatedPerson"):
            relations = {self.s.concepts.lookup(r) for r in e.resource.get("relationship") or ()}
            if Target.mother not in relations:
                continue
            child = self.b.resolve(e.resource.get("patient"))
            mother = self._patient_with_identifier(e.resource.get("identifier") or ())
            if child is not None and mother is not None and child.index != mother.index:
                self.mother_of[child.index] = mother.index
                self.linked_by[child.index] = e.index

    def _is_infant_age(self, infant: _Entry, mother: _Entry) -> bool:
        a, b = infant.resource.get("birthDate"), mother.resource.get("birthDate")
        return not (isinstance(a, str) and isinstance(b, str)) or a > b

    def _patient_with_identifier(self, identifiers: Sequence[Any]) -> _Entry | None:
        wanted = {(i.get("system"), i.get("value")) for i in identifiers if isinstance(i, dict) and i.get("value")}
        values = {v for _, v in wanted}
        for p in self.b.of_type("Patient"):
            for i in p.resource.get("identifier") or ():
                if (i.get("system"), i.get("value")) in wanted or (not i.get("system") and i.get("value") in values):
                    return p
        return None

    # one entry ----------------------------------------------------------------------------------

    def _events_of(self, e: _Entry) -> list[Planned]:
        found: list[Planned | None]
        if e.type == "Patient":
            found = [self._death(e)]
        elif e.type == "EpisodeOfCare":
            found = [self._enrolment(e), self._programme_left(e)]
        elif e.type == "Encounter":
            found = self._encounter_events(e)
        elif e.type == "Observation":
            found = [self._observation(e)]
        elif e.type == "Condition":
            found = [self._condition(e)]
        else:
            found = [self._medication(e)]
        return [p for p in found if p is not None]

    # her death, her transfer out, a pregnancy lost ----------------------------------------------

    def _death(self, patient: _Entry) -> Planned | None:
        """A woman's Patient marked deceased: `ClientDied` (an infant's death is follow-up's, not read here)."""
        p = patient.resource
        when = p.get("deceasedDateTime")
        if not isinstance(when, str):
            if p.get("deceasedBoolean") is not True:
                return None
            when = (p.get("meta") or {}).get("lastUpdated")
            if not isinstance(when, str):
                raise _Refuse(
                    "missing_field",
                    "Her death needs a date: Patient.deceasedDateTime (or, with deceasedBoolean, meta.lastUpdated).",
                    "required",
                )
        at = _instant(when, self.zone, "Patient.deceasedDateTime")
        day = at.astimezone(self.zone).date()
        if self._is_infant(patient, day):
            return None
        for encounter in self.b.of_type("Encounter"):
            kind = self.s.concepts.lookup(_merged(encounter.resource.get("type")))
            subject = self.b.resolve(encounter.resource.get("subject"))
            start = (encounter.resource.get("period") or {}).get("start")
            if kind == Target.delivery and subject is not None and subject.index == patient.index:
                if isinstance(start, str) and _day(start, self.zone, "Encounter.period.start") == day:
                    return None  # her delivery that day says she died (maternal_outcome died)
        event = self._base(patient, "ClientDied", at, self._facility(patient, patient)) | {
            "client_ref": self._ref_of(patient),
            "data": {},
        }
        return Planned(event, patient.index)

    def _left_for_transfer(self, patient: _Entry) -> list[_Entry]:
        """Her `discontinuation-reason` Observations answered `transferred-out`, in bundle order."""
        found = []
        for o, _ in self._observations_of(patient, Target.discontinuation_reason):
            answer = self.s.concepts.lookup(o.resource.get("valueCodeableConcept"))
            if answer == Target.transferred_out:
                found.append(o)
        return found

    def _programme_left(self, e: _Entry) -> Planned | None:
        """A finished EpisodeOfCare whose reason (an Observation of hers) is a transfer out."""
        r = e.resource
        if r.get("status") != "finished":
            return None
        mother = self._patient(e, "patient")
        reasons = self._left_for_transfer(mother)
        if not reasons:
            return None  # finished for another reason (her death is her Patient's)
        end = (r.get("period") or {}).get("end") or self._observed_value(reasons[0])
        at = _instant(end, self.zone, "EpisodeOfCare.period.end")
        for o in reasons:
            self.folded.add(o.index)
        event = self._base(e, "ClientTransferredOut", at, self._facility(e, mother)) | {
            "client_ref": self._ref_of(mother),
            "data": {},
        }
        return Planned(event, e.index, (mother.index, *(o.index for o in reasons)))

    def _observed_value(self, o: _Entry) -> Any:
        r = o.resource
        return r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued")

    def _transfer_observation(self, e: _Entry) -> Planned | None:
        """A `discontinuation-reason` Observation answered `transferred-out`, with no finished
        EpisodeOfCare of hers in the bundle to carry it."""
        if e.index in self.folded:
            return None
        if self.s.concepts.lookup(e.resource.get("valueCodeableConcept")) != Target.transferred_out:
            return None  # another reason to leave (her death is her Patient's): not an event here
        patient = self._patient(e)
        for episode in self.b.of_type("EpisodeOfCare"):
            subject = self.b.resolve(episode.resource.get("patient"))
            if episode.resource.get("status") == "finished" and subject is not None and subject.index == patient.index:
                return None  # the EpisodeOfCare's event (_programme_left)
        at = _instant(self._observed_value(e), self.zone, "Observation.effectiveDateTime")
        if self._is_infant(patient, at.astimezone(self.zone).date()):
            raise _Refuse("wrong_subject", "A transfer out read here is a woman's.", "business-rule")
        event = self._base(e, "ClientTransferredOut", at, self._facility(e, patient)) | {
            "client_ref": self._ref_of(patient),
            "data": {},
        }
        return Planned(event, e.index, (patient.index,))

    def _pregnancy_lost(self, e: _Entry, loss: Target, value: Any, what: str) -> Planned:
        patient = self._patient(e)
        at = _instant(value, self.zone, what)
        if self._is_infant(patient, at.astimezone(self.zone).date()):
            raise _Refuse(
                "wrong_subject", "A pregnancy outcome is a woman's; this Patient is an infant.", "business-rule"
            )
        event = self._base(e, "PregnancyEnded", at, self._facility(e, patient)) | {
            "client_ref": self._ref_of(patient),
            "data": {"outcome": LOSSES[loss]},
        }
        return Planned(event, e.index, (patient.index,))

    def _condition(self, e: _Entry) -> Planned | None:
        r = e.resource
        loss = self._coded(e, r.get("code"), "code", list(LOSSES))
        verification = {c.get("code") for c in (r.get("verificationStatus") or {}).get("coding") or ()}
        if "entered-in-error" in verification:
            raise _Refuse(
                "entered_in_error",
                "A Condition entered in error is voided through its event (EventVoided), not posted.",
                "not-supported",
            )
        if verification & {"refuted", "unconfirmed", "provisional", "differential"}:
            return None  # not (yet) what happened
        value = r.get("onsetDateTime") or r.get("recordedDate")
        return self._pregnancy_lost(e, loss, value, "Condition.onsetDateTime")

    def _coded(self, e: _Entry, concept: Any, what: str, allowed: Sequence[Target]) -> Target:
        target = self.s.concepts.lookup(concept)
        if target is None or target not in allowed:
            known = f" ({target.value} here is not one of {', '.join(t.value for t in allowed)})" if target else ""
            raise _Refuse(
                "unknown_code",
                f"{e.type}.{what}: no code the ConceptMap ({self.s.concepts.url}) maps here:"
                f" {describe(concept)}{known}.",
                "code-invalid",
            )
        return target

    def _patient(self, e: _Entry, field_name: str = "subject") -> _Entry:
        ref = e.resource.get(field_name)
        found = self.b.resolve(ref)
        if found is None or found.type != "Patient":
            named = ref.get("reference") if isinstance(ref, dict) else None
            raise _Refuse(
                "subject_not_in_bundle",
                f"{e.type}.{field_name} ({named or 'none'}) names no Patient of this bundle: send the Patient with it"
                " (its identifiers name her or the infant to the platform).",
                "required",
            )
        return found

    def _is_infant(self, patient: _Entry, on: date) -> bool:
        if patient.index in self.mother_of:
            return True
        born = patient.resource.get("birthDate")
        if isinstance(born, str) and len(born) >= 4:
            try:
                year = int(born[:4])
            except ValueError:
                return False
            return on.year - year < INFANT_AGE_YEARS
        return False

    def _identifier(self, patient: _Entry, wanted: Sequence[str]) -> dict[str, Any] | None:
        identifiers = [i for i in patient.resource.get("identifier") or () if isinstance(i, dict) and i.get("value")]
        for name in wanted:
            for i in identifiers:
                kind = i.get("type") or {}
                texts = {kind.get("text")} | {c.get("display") for c in kind.get("coding") or ()}
                if i.get("system") == name or name in texts:
                    return i
        return None

    def _ref_of(self, patient: _Entry) -> str:
        found = self._identifier(patient, self.s.record_number)
        if found is None:
            raise _Refuse(
                "record_number_missing",
                f"Patient/{patient.resource.get('id')} (Bundle.entry[{patient.index}]) has no identifier naming the EMR"
                f" record number ({' or '.join(self.s.record_number)}; PMTCT_FHIR_RECORD_NUMBER_IDENTIFIERS).",
                "required",
            )
        return str(found["value"]).strip()

    # facilities ---------------------------------------------------------------------------------

    def _facility_of_reference(self, ref: Any) -> str | None:
        if not isinstance(ref, dict):
            return None
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("system") == FACILITY_SYSTEM and ident.get("value"):
            return str(ident["value"])
        found = self.b.resolve(ref)
        if found is not None and found.type in ("Location", "Organization"):
            for i in found.resource.get("identifier") or ():
                if i.get("system") == FACILITY_SYSTEM and i.get("value"):
                    return str(i["value"])
            part_of = found.resource.get("managingOrganization") or found.resource.get("partOf")
            if part_of is not None and part_of is not ref:
                via = self._facility_of_reference(part_of)
                if via is not None:
                    return via
        named = ref.get("reference")
        if isinstance(named, str):
            m = re.fullmatch(r"(?:Location|Organization)/(.+)", named)
            if m and m.group(1) in self.s.facilities:
                return m.group(1)
        return None

    def _facility(self, e: _Entry, patient: _Entry | None) -> str:
        r = e.resource
        candidates: list[Any] = []
        if e.type == "Encounter":
            candidates += [loc.get("location") for loc in r.get("location") or ()] + [r.get("serviceProvider")]
        if e.type == "EpisodeOfCare":
            candidates.append(r.get("managingOrganization"))
        if e.type == "MedicationDispense":
            candidates.append(r.get("location"))
        encounter = self.b.resolve(r.get("encounter") or r.get("context"))
        if encounter is not None and encounter.type == "Encounter":
            candidates += [loc.get("location") for loc in encounter.resource.get("location") or ()]
            candidates.append(encounter.resource.get("serviceProvider"))
        if patient is not None:
            record = self._identifier(patient, self.s.record_number)
            for ext in (record or {}).get("extension") or ():
                if ext.get("url") == OPENMRS_IDENTIFIER_LOCATION:
                    candidates.append(ext.get("valueReference"))
            candidates.append(patient.resource.get("managingOrganization"))
        for c in candidates:
            found = self._facility_of_reference(c)
            if found is not None:
                return found
        claims = self.s.token_facilities - {"*"}
        if len(claims) == 1 and "*" not in self.s.token_facilities:
            return next(iter(claims))
        raise _Refuse(
            "facility_unresolved",
            f"No facility for this {e.type}: name a Location or Organization with an identifier of system"
            f" {FACILITY_SYSTEM} (the platform's facility id), or post with a token for one facility.",
            "required",
        )

    # the events ---------------------------------------------------------------------------------

    def _base(self, e: _Entry, event_type: str, at: datetime, facility: str) -> dict[str, Any]:
        return {
            "event_id": event_id(e.resource, e.key, event_type),
            "type": event_type,
            "facility_id": facility,
            "occurred_at": at.isoformat(),
        }

    def _void(self, e: _Entry, voided_type: str, at: datetime, facility: str, parts: tuple[int, ...]) -> Planned:
        """The void of the event `e` produced as `voided_type` (it is re-posted `entered-in-error`),
        dated when it was marked so (`meta.lastUpdated`), else when the voided fact happened."""
        updated = (e.resource.get("meta") or {}).get("lastUpdated")
        when = _instant(updated, self.zone, "meta.lastUpdated") if updated else at
        data = {"voided_event_id": event_id(e.resource, e.key, voided_type), "reason": "entered_in_error"}
        return Planned(self._base(e, "EventVoided", when, facility) | {"data": data}, e.index, parts)

    def _observations_of(self, patient: _Entry, *targets: Target) -> list[tuple[_Entry, Target]]:
        """The patient's result Observations of these kinds in the bundle, in bundle order."""
        found = []
        for o in self.b.of_type("Observation"):
            if o.index in self.out.refused or o.resource.get("status") not in RESULT_STATUSES:
                continue
            subject = self.b.resolve(o.resource.get("subject"))
            if subject is None or subject.index != patient.index:
                continue
            target = self.s.concepts.lookup(o.resource.get("code"))
            if target in targets:
                found.append((o, target))
        return found

    def _observed_day(self, o: _Entry) -> date:
        r = o.resource
        value = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued")
        return _day(value, self.zone, "Observation.effective[x]")

    def _enrolment(self, e: _Entry) -> Planned:
        r = e.resource
        self._coded(e, _merged(r.get("type")), "type", [Target.pmtct_programme])
        mother = self._patient(e, "patient")
        at = _instant((r.get("period") or {}).get("start"), self.zone, "EpisodeOfCare.period.start")
        day = at.astimezone(self.zone).date()
        facility = self._facility(e, mother)
        p = mother.resource
        data: dict[str, Any] = {}
        name = next((n for n in p.get("name") or () if n.get("use") in (None, "official", "usual")), None)
        if name:
            given = " ".join(g for g in name.get("given") or () if g).strip()
            if given:
                data["given_name"] = given
            if name.get("family"):
                data["family_name"] = name["family"]
        if isinstance(p.get("birthDate"), str) and len(p["birthDate"]) == 10:
            data["birth_date"] = p["birthDate"]
        phone = next(
            (t.get("value") for t in p.get("telecom") or () if t.get("system") in ("phone", "sms", None)), None
        )
        if phone:
            data["phone"] = phone
        national = self._identifier(mother, self.s.national_id)
        if national is not None:
            data["national_id"] = str(national["value"]).strip()
        parts: list[int] = [mother.index]
        status, hiv, known_since, art_start, gestation, edd = None, "unknown", None, None, None, None
        for o, target in self._observations_of(
            mother,
            Target.pregnancy_status,
            Target.hiv_diagnosis_date,
            Target.art_start_date,
            Target.gestation_weeks,
            Target.edd,
        ):
            try:
                if target == Target.pregnancy_status:
                    answer = self._coded(
                        o, o.resource.get("valueCodeableConcept"), "valueCodeableConcept", [Target.yes, Target.no]
                    )
                    status = "pregnant" if answer == Target.yes else "postnatal"
                elif target == Target.hiv_diagnosis_date:
                    hiv, known_since = (
                        "positive",
                        _day(o.resource.get("valueDateTime"), self.zone, "Observation.valueDateTime").isoformat(),
                    )
                elif target == Target.art_start_date:
                    art_start = _day(
                        o.resource.get("valueDateTime"), self.zone, "Observation.valueDateTime"
                    ).isoformat()
                elif self._observed_day(o) != day:
                    continue  # a gestation or EDD of another day is a visit's, not the enrolment's
                elif target == Target.gestation_weeks:
                    gestation = _whole_number(o.resource, "Observation.valueQuantity")
                else:
                    edd = _day(o.resource.get("valueDateTime"), self.zone, "Observation.valueDateTime").isoformat()
            except _Refuse as refusal:
                self.out.refused[o.index] = Refused(
                    o.index, refusal.code, refusal.detail, refusal.issue_type, refusal.status
                )
                continue
            parts.append(o.index)
            self.folded.add(o.index)
        if status is None:
            if gestation is None and edd is None:
                raise _Refuse(
                    "missing_field",
                    "Her enrolment needs her pregnancy status: a pregnancy-status Observation (CIEL 5272, LOINC"
                    " 82810-3) in the bundle, or her gestation or EDD of that day.",
                    "required",
                )
            status = "pregnant"
        data.update(status_at_enrolment=status, hiv_status=hiv, on_art=art_start is not None)
        if known_since:
            data["hiv_status_known_since"] = known_since
        if art_start:
            data["art_start_date"] = art_start
        if gestation is not None:
            data["gestation_weeks"] = gestation
        if edd:
            data["edd"] = edd
        event = self._base(e, "ClientEnrolled", at, facility) | {"client_ref": self._ref_of(mother), "data": data}
        return Planned(event, e.index, tuple(parts))

    def _encounter_events(self, e: _Entry) -> list[Planned | None]:
        """An Encounter's event, and her transfer out when it discharged her to another facility."""
        r = e.resource
        disposition = (r.get("hospitalization") or {}).get("dischargeDisposition")
        if disposition is None or self.s.concepts.lookup(disposition) != Target.transferred_out:
            return [self._encounter(e)]
        patient = self._patient(e)
        period = r.get("period") or {}
        at = _instant(period.get("end") or period.get("start"), self.zone, "Encounter.period.end")
        if self._is_infant(patient, at.astimezone(self.zone).date()):
            raise _Refuse("wrong_subject", "A transfer out read here is a woman's.", "business-rule")
        data: dict[str, Any] = {}
        to = self._facility_of_reference((r.get("hospitalization") or {}).get("destination"))
        if to is not None:
            data["to_facility_id"] = to
        left = self._base(e, "ClientTransferredOut", at, self._facility(e, patient)) | {
            "client_ref": self._ref_of(patient),
            "data": data,
        }
        kind = self.s.concepts.lookup(_merged(r.get("type")))
        visit = self._encounter(e) if kind in (Target.anc_visit, Target.delivery, Target.postnatal_visit) else None
        return [visit, Planned(left, e.index, (patient.index,))]

    def _encounter(self, e: _Entry) -> Planned | None:
        r = e.resource
        kind = self._coded(
            e, _merged(r.get("type")), "type", [Target.anc_visit, Target.delivery, Target.postnatal_visit]
        )
        patient = self._patient(e)
        at = _instant((r.get("period") or {}).get("start"), self.zone, "Encounter.period.start")
        day = at.astimezone(self.zone).date()
        facility = self._facility(e, patient)
        infant = self._is_infant(patient, day)
        if kind == Target.postnatal_visit:
            if not infant:
                return None  # her postnatal visit: the setting of what is recorded at it
            event = self._base(e, "InfantVisitRecorded", at, facility) | {
                "infant_ref": self._ref_of(patient),
                "data": {},
            }
            return Planned(event, e.index, (patient.index,))
        if infant:
            raise _Refuse(
                "wrong_subject",
                f"An {kind.value} Encounter is a woman's; Patient/{patient.resource.get('id')} is an infant.",
                "business-rule",
            )
        parts: list[int] = [patient.index]
        if kind == Target.anc_visit:
            visit, gestation = None, None
            for o in self._of_encounter(e, Target.anc_visit_number, Target.gestation_weeks):
                target = self.s.concepts.lookup(o.resource.get("code"))
                number = _whole_number(o.resource, "Observation.value[x]")
                if target == Target.anc_visit_number:
                    visit = number
                else:
                    gestation = number
                parts.append(o.index)
                self.folded.add(o.index)
            if visit is None:
                raise _Refuse(
                    "missing_field",
                    "An ANC visit needs its visit number: an anc-visit-number Observation (CIEL 1425) of this"
                    " Encounter in the bundle.",
                    "required",
                )
            data: dict[str, Any] = {"visit_number": visit}
            if gestation is not None:
                data["gestation_weeks"] = gestation
            event = self._base(e, "AncVisitRecorded", at, facility) | {
                "client_ref": self._ref_of(patient),
                "data": data,
            }
            return Planned(event, e.index, tuple(parts))
        # a delivery
        babies = []
        for child_index, mother_index in sorted(self.mother_of.items()):
            child = self.b.by_index[child_index]
            if mother_index != patient.index or child.resource.get("birthDate") != day.isoformat():
                continue
            babies.append(self._baby(child, day))
            parts.append(child_index)
            if child_index in self.linked_by:
                parts.append(self.linked_by[child_index])
            for o, _ in self._observations_of(child, Target.birth_weight):
                parts.append(o.index)
                self.folded.add(o.index)
        deceased = patient.resource.get("deceasedDateTime")
        died = patient.resource.get("deceasedBoolean") is True or (
            isinstance(deceased, str) and _day(deceased, self.zone, "Patient.deceasedDateTime") == day
        )
        data = {
            "place": "facility",
            "skilled_attendant": bool(r.get("participant")),
            "maternal_outcome": "died" if died else "alive",
            "infants": babies,
        }
        event = self._base(e, "DeliveryRecorded", at, facility) | {"client_ref": self._ref_of(patient), "data": data}
        return Planned(event, e.index, tuple(parts))

    def _baby(self, child: _Entry, day: date) -> dict[str, Any]:
        c = child.resource
        sex = c.get("gender") if c.get("gender") in ("female", "male") else "unknown"
        deceased = c.get("deceasedDateTime")
        stillborn = c.get("deceasedBoolean") is True or (
            isinstance(deceased, str) and _day(deceased, self.zone, "Patient.deceasedDateTime") == day
        )
        ref = self._ref_of(child)
        self.out.infant_patients[ref] = f"Patient/{c.get('id') or child.key}"
        baby: dict[str, Any] = {
            "infant_ref": ref,
            "sex": sex,
            "outcome": "stillbirth" if stillborn else "live_birth",
        }
        for o, _ in self._observations_of(child, Target.birth_weight):
            baby["birth_weight_g"] = _grams(o.resource)
        return baby

    def _of_encounter(self, encounter: _Entry, *targets: Target) -> list[_Entry]:
        found = []
        for o in self.b.of_type("Observation"):
            if o.index in self.out.refused or o.resource.get("status") not in RESULT_STATUSES:
                continue
            at = self.b.resolve(o.resource.get("encounter"))
            if (
                at is not None
                and at.index == encounter.index
                and self.s.concepts.lookup(o.resource.get("code")) in targets
            ):
                found.append(o)
        return found

    def _setting(self, o: _Entry) -> str:
        encounter = self.b.resolve(o.resource.get("encounter"))
        if encounter is None or encounter.type != "Encounter":
            return "other"
        kind = self.s.concepts.lookup(_merged(encounter.resource.get("type")))
        return SETTINGS.get(kind, "other") if kind else "other"

    def _observation(self, e: _Entry) -> Planned | None:
        r = e.resource
        kind = self._coded(e, r.get("code"), "code", OBSERVATION_CODES)
        status = r.get("status")
        voiding = status == "entered-in-error"
        results = (Target.hiv_test, Target.infant_nat, Target.infant_antibody, Target.viral_load)
        if voiding and kind not in results:
            raise _Refuse(
                "entered_in_error",
                "This Observation is read into her enrolment, a visit or a delivery: void that event (EventVoided)"
                " or post the corrected one with replaces.",
                "not-supported",
            )
        if status not in RESULT_STATUSES and not voiding:
            return None  # registered, preliminary, cancelled: no result yet
        if kind == Target.discontinuation_reason:
            return self._transfer_observation(e)
        if kind in LOSSES:
            answer = r.get("valueCodeableConcept")
            if (
                answer is not None
                and self._coded(e, answer, "valueCodeableConcept", [Target.yes, Target.no]) == Target.no
            ):
                return None  # asked, and it was not
            if r.get("valueBoolean") is False:
                return None
            return self._pregnancy_lost(e, kind, self._observed_value(e), "Observation.effectiveDateTime")
        if kind not in results:
            return None  # read with her enrolment, a visit or a delivery
        patient = self._patient(e)
        value = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
        at = _instant(value, self.zone, "Observation.effectiveDateTime")
        day = at.astimezone(self.zone).date()
        facility = self._facility(e, patient)
        infant = self._is_infant(patient, day)
        if voiding:  # the event it produced: the same type as when it was posted
            if kind == Target.viral_load:
                voided = "ViralLoadRecorded"
            else:
                voided = "InfantTestResulted" if infant else "HivTestRecorded"
            return self._void(e, voided, at, facility, (patient.index,))
        if kind == Target.viral_load:
            if infant:
                raise _Refuse("wrong_subject", "The platform takes viral loads of women only.", "business-rule")
            copies = _whole_number(r, "Observation.valueQuantity")
            event = self._base(e, "ViralLoadRecorded", at, facility) | {
                "client_ref": self._ref_of(patient),
                "data": {"copies_per_ml": copies},
            }
            return Planned(event, e.index, (patient.index,))
        result = RESULTS[
            self._coded(
                e,
                r.get("valueCodeableConcept"),
                "valueCodeableConcept",
                [Target.positive, Target.negative, Target.indeterminate],
            )
        ]
        if infant:
            test = "NAT" if kind == Target.infant_nat else "antibody"
            event = self._base(e, "InfantTestResulted", at, facility) | {
                "infant_ref": self._ref_of(patient),
                "data": {"test": test, "result": result, "confirmatory": False},
            }
            return Planned(event, e.index, (patient.index,))
        if kind == Target.infant_nat:
            raise _Refuse(
                "wrong_subject",
                "A NAT (early infant diagnosis) is an infant's; this Patient is a woman.",
                "business-rule",
            )
        event = self._base(e, "HivTestRecorded", at, facility) | {
            "client_ref": self._ref_of(patient),
            "data": {"result": result, "setting": self._setting(e)},
        }
        return Planned(event, e.index, (patient.index,))

    def _medication(self, e: _Entry) -> Planned | None:
        r = e.resource
        voiding = r.get("status") == "entered-in-error"
        if e.type == "MedicationRequest":
            if r.get("priorPrescription") is not None or r.get("status") in ("cancelled", "draft"):
                return None  # a renewal, or not given: only a start is an event
            value = r.get("authoredOn")
            what = "MedicationRequest.authoredOn"
        else:
            if r.get("status") not in (None, "completed") and not voiding:
                return None
            value = r.get("whenHandedOver") or r.get("whenPrepared")
            what = "MedicationDispense.whenHandedOver"
        concept = r.get("medicationCodeableConcept")
        parts: list[int] = []
        if concept is None:
            medication = self.b.resolve(r.get("medicationReference"))
            if medication is None or medication.type != "Medication":
                raise _Refuse(
                    "medication_not_in_bundle",
                    f"{e.type}.medicationReference names no Medication of this bundle.",
                    "required",
                )
            concept = medication.resource.get("code")
            parts.append(medication.index)
        drug = self._coded(e, concept, "medication[x]", [Target.art, *PROPHYLAXIS])
        patient = self._patient(e)
        parts.append(patient.index)
        at = _instant(value, self.zone, what)
        day = at.astimezone(self.zone).date()
        facility = self._facility(e, patient)
        if voiding:  # the start it recorded, voided
            if self._is_infant(patient, day):
                voided = "InfantArtInitiated" if drug == Target.art else "InfantProphylaxisRecorded"
            else:
                voided = "ArtInitiated"
            return self._void(e, voided, at, facility, tuple(parts))
        if self._is_infant(patient, day):
            if drug == Target.art:
                event = self._base(e, "InfantArtInitiated", at, facility) | {
                    "infant_ref": self._ref_of(patient),
                    "data": {},
                }
                return Planned(event, e.index, tuple(parts))
            data = {
                "drug": PROPHYLAXIS[drug],
                "duration_weeks": _duration_weeks(r, e.type),
                "started_on": day.isoformat(),
            }
            event = self._base(e, "InfantProphylaxisRecorded", at, facility) | {
                "infant_ref": self._ref_of(patient),
                "data": data,
            }
            return Planned(event, e.index, tuple(parts))
        if drug != Target.art:
            raise _Refuse(
                "wrong_subject",
                f"{PROPHYLAXIS[drug]} alone is an infant's prophylaxis, not a woman's ART"
                " regimen (map her regimen's code to art).",
                "business-rule",
            )
        data = {}
        text = (concept or {}).get("text")
        if isinstance(text, str) and REGIMEN.fullmatch(text.strip()):
            data["regimen"] = text.strip()
        event = self._base(e, "ArtInitiated", at, facility) | {"client_ref": self._ref_of(patient), "data": data}
        return Planned(event, e.index, tuple(parts))


def _merged(concepts: Any) -> dict[str, Any] | None:
    """The codings of a list of CodeableConcepts (Encounter.type, EpisodeOfCare.type) as one."""
    if not isinstance(concepts, list):
        return concepts if isinstance(concepts, dict) else None
    return {"coding": [c for concept in concepts if isinstance(concept, dict) for c in concept.get("coding") or ()]}


def _whole_number(resource: Mapping[str, Any], what: str) -> int:
    value = resource.get("valueInteger")
    if value is None:
        value = (resource.get("valueQuantity") or {}).get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refuse("missing_field", f"{what} (a number) is required.", "required")
    if value != int(value):
        raise _Refuse("invalid_value", f"{what} {value} is not a whole number.", "value")
    return int(value)


def _grams(resource: Mapping[str, Any]) -> int:
    q = resource.get("valueQuantity") or {}
    value, unit = q.get("value"), (q.get("code") or q.get("unit") or "g")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refuse("missing_field", "A birth weight needs valueQuantity.value.", "required")
    factor = {"g": 1, "kg": 1000}.get(str(unit).lower())
    if factor is None:
        raise _Refuse("invalid_value", f"A birth weight in {unit!r}: send g or kg (UCUM).", "value")
    return round(value * factor)


def _duration_weeks(resource: Mapping[str, Any], resource_type: str) -> int:
    durations: list[Any] = []
    if resource_type == "MedicationRequest":
        durations.append((resource.get("dispenseRequest") or {}).get("expectedSupplyDuration"))
    else:
        durations.append(resource.get("daysSupply"))
    for dosage in resource.get("dosageInstruction") or ():
        durations.append(((dosage.get("timing") or {}).get("repeat") or {}).get("boundsDuration"))
    for d in durations:
        if not isinstance(d, dict) or not isinstance(d.get("value"), int | float):
            continue
        unit = str(d.get("code") or d.get("unit") or "").lower()
        if unit in WEEKS:
            return max(1, round(d["value"] * WEEKS[unit]))
    raise _Refuse(
        "missing_field",
        f"An infant's prophylaxis needs how long it is given: {resource_type}"
        + (".dispenseRequest.expectedSupplyDuration" if resource_type == "MedicationRequest" else ".daysSupply")
        + " or dosageInstruction.timing.repeat.boundsDuration, in wk or d.",
        "required",
    )
