"""The FHIR translation as a table (enrolment/fhir_translate.py, pure): OpenMRS FHIR2-shaped
bundles (tests/enrolment/fixtures/fhir/) in, the platform's events out, each expected event written
here by hand; then one case per refusal. No database, no broker."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from enrolment import fhir_concepts
from enrolment.fhir_concepts import ConceptMapError, Target
from enrolment.fhir_translate import BundleRefused, Setup, Translation, event_id, translate
from servicekit.clock import zone_of

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
SITE_MAP = FIXTURES / "site-conceptmap.json"
ZA = zone_of("Africa/Johannesburg")
FACILITIES = frozenset({"FAC-ZA-001", "FAC-ZA-002", "FAC-ZA-003"})
MOTHER = "Patient/3b7e41b6-5c1f-4b8a-9f0e-2d4c6a8e1f01"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def setup(concepts: fhir_concepts.Concepts | None = None, token: frozenset[str] = frozenset({"FAC-ZA-002"})) -> Setup:
    return Setup(
        concepts=concepts or fhir_concepts.load(SITE_MAP),
        facilities=FACILITIES,
        token_facilities=token,
        zone=ZA,
    )


def events(t: Translation) -> list[dict[str, Any]]:
    return [p.event for p in t.events]


def eid(resource_type: str, rid: str, version: str, event_type: str) -> str:
    return event_id({"meta": {"versionId": version}}, f"{resource_type}/{rid}", event_type)


# --- the fixtures, event by event ------------------------------------------------------------------


def test_an_anc1_enrolment_bundle_is_her_enrolment_visit_test_and_art_start() -> None:
    t = translate(fixture("anc1-enrolment.json"), setup())
    assert t.refused == {}
    assert events(t) == [
        {
            "event_id": eid("EpisodeOfCare", "9f2d8a41-7b3c-4e5d-a6f7-081920a3b4c5", "1713081600000", "ClientEnrolled"),
            "type": "ClientEnrolled",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-04-14T09:15:00+02:00",
            "client_ref": "10004KM",
            "data": {
                "given_name": "Lerato",
                "family_name": "Ndlovu",
                "birth_date": "1996-04-11",
                "phone": "+27 82 555 0177",
                "national_id": "9604110000081",
                "status_at_enrolment": "pregnant",
                "hiv_status": "unknown",
                "on_art": False,
                "gestation_weeks": 14,
            },
        },
        {
            "event_id": eid("Encounter", "e1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8", "1713081600000", "AncVisitRecorded"),
            "type": "AncVisitRecorded",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-04-14T09:20:00+02:00",
            "client_ref": "10004KM",
            "data": {"visit_number": 1, "gestation_weeks": 14},
        },
        {
            "event_id": eid("Observation", "3e4f5061-7283-49a4-b5c6-d7e8f90a1b2c", "1713085200000", "HivTestRecorded"),
            "type": "HivTestRecorded",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-04-14T09:40:00+02:00",
            "client_ref": "10004KM",
            "data": {"result": "positive", "setting": "anc"},
        },
        {
            "event_id": eid(
                "MedicationRequest", "4f506172-8394-4ab5-c6d7-e8f90a1b2c3d", "1713087000000", "ArtInitiated"
            ),
            "type": "ArtInitiated",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-04-14T10:30:00+02:00",
            "client_ref": "10004KM",
            "data": {"regimen": "TDF/3TC/DTG"},
        },
    ]
    # the enrolment reads her Patient and the pregnancy-status and gestation Observations; the
    # visit its number and gestation; the ART start its Medication
    owners = {p.event["type"]: sorted(t.entries_of(p)) for p in t.events}
    assert owners == {
        "ClientEnrolled": [1, 2, 5, 6],
        "AncVisitRecorded": [1, 3, 4, 5],
        "HivTestRecorded": [1, 7],
        "ArtInitiated": [1, 8, 9],
    }
    assert t.context == {0: "Location: read with the entries that name it"}


def test_a_delivery_bundle_lists_the_baby_linked_to_her() -> None:
    t = translate(fixture("delivery.json"), setup())
    assert t.refused == {}
    assert events(t) == [
        {
            "event_id": eid("Encounter", "1a2b3c4d-5e6f-4071-8283-9e0f1a2b3c45", "1792483200000", "DeliveryRecorded"),
            "type": "DeliveryRecorded",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-10-20T04:30:00+02:00",
            "client_ref": "10004KM",
            "data": {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [
                    {"infant_ref": "10005LN", "sex": "female", "outcome": "live_birth", "birth_weight_g": 3100}
                ],
            },
        }
    ]


def test_infant_care_and_her_viral_load() -> None:
    t = translate(fixture("infant-and-mother-care.json"), setup())
    assert t.refused == {}
    assert events(t) == [
        {
            "event_id": eid(
                "Observation", "3c4d5e6f-7081-4293-a4a5-1a2b3c4d5e67", "1792573200000", "InfantTestResulted"
            ),
            "type": "InfantTestResulted",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-10-20T09:00:00+02:00",
            "infant_ref": "10005LN",
            "data": {"test": "NAT", "result": "negative", "confirmatory": False},
        },
        {
            "event_id": eid(
                "MedicationRequest",
                "4d5e6f70-8192-43a4-b5b6-2b3c4d5e6f78",
                "1792490400000",
                "InfantProphylaxisRecorded",
            ),
            "type": "InfantProphylaxisRecorded",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-10-20T12:00:00+02:00",
            "infant_ref": "10005LN",
            "data": {"drug": "NVP", "duration_weeks": 6, "started_on": "2026-10-20"},
        },
        {
            "event_id": eid(
                "Observation", "5e6f7081-92a3-44b5-b6c7-3c4d5e6f7089", "1786370400000", "ViralLoadRecorded"
            ),
            "type": "ViralLoadRecorded",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-08-10T08:30:00+02:00",
            "client_ref": "10004KM",
            "data": {"copies_per_ml": 40},
        },
    ]


def test_a_bumped_version_id_with_the_same_content_is_the_same_event() -> None:
    """OpenMRS bumps `meta.versionId` on every save: the event_id is the resource's, not its
    version's, so a re-save is the same event (a duplicate), and a changed one the same event_id
    with other content (the platform's conflict, answered correction_required by the door)."""
    first = events(translate(fixture("anc1-enrolment.json"), setup()))
    bundle = fixture("anc1-enrolment.json")
    for entry in bundle["entry"]:
        entry["resource"]["meta"]["versionId"] = "1713099999999"
    bumped = events(translate(bundle, setup()))
    assert bumped == first
    bundle["entry"][7]["resource"]["valueCodeableConcept"] = {
        "coding": [{"system": "https://cielterminology.org", "code": "664"}]  # negative
    }
    changed = events(translate(bundle, setup()))
    assert [e["event_id"] for e in changed] == [e["event_id"] for e in first]
    assert [e == f for e, f in zip(changed, first, strict=True)] == [True, True, False, True]


# --- the variants OpenMRS and other senders produce ------------------------------------------------


def _delivery_with_link_instead_of_related_person() -> dict[str, Any]:
    bundle = fixture("delivery.json")
    del bundle["entry"][3]  # the RelatedPerson
    bundle["entry"][2]["resource"]["link"] = [{"other": {"reference": MOTHER}, "type": "seealso"}]
    return bundle


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Patient.link names the mother as well as a RelatedPerson does
        (_delivery_with_link_instead_of_related_person, {"infant_ref": "10005LN", "birth_weight_g": 3100}),
    ],
)
def test_the_mother_infant_link(change: Any, expected: dict[str, Any]) -> None:
    [delivery] = events(translate(change(), setup()))
    [baby] = delivery["data"]["infants"]
    assert {k: baby[k] for k in expected} == expected


def test_a_site_that_maps_no_encounter_types_gets_them_refused_naming_the_code() -> None:
    t = translate(fixture("anc1-enrolment.json"), setup(fhir_concepts.load(None)))
    [refused] = t.refused.values()
    assert (refused.index, refused.code, refused.issue_type) == (3, "unknown_code", "code-invalid")
    assert "http://fhir.openmrs.org/code-system/encounter-type|2549af50-75c8-4aeb-87ca-4bb2cef6c69a" in refused.detail
    # and without the visit, its number and gestation are no event of their own
    assert [e["type"] for e in events(t)] == ["ClientEnrolled", "HivTestRecorded", "ArtInitiated"]


def test_snomed_encounter_types_need_no_site_map() -> None:
    bundle = fixture("anc1-enrolment.json")
    bundle["entry"][3]["resource"]["type"] = [
        {"coding": [{"system": "http://snomed.info/sct", "code": "424441002", "display": "Prenatal initial visit"}]}
    ]
    assert "AncVisitRecorded" in [e["type"] for e in events(translate(bundle, setup(fhir_concepts.load(None))))]


def test_a_date_without_time_is_noon_in_the_programme_zone() -> None:
    bundle = fixture("infant-and-mother-care.json")
    bundle["entry"][6]["resource"]["effectiveDateTime"] = "2026-08-10"
    vl = events(translate(bundle, setup()))[-1]
    assert vl["occurred_at"] == "2026-08-10T12:00:00+02:00"


def test_known_positive_on_art_at_enrolment() -> None:
    bundle = fixture("anc1-enrolment.json")
    base = bundle["entry"][6]["resource"]
    for n, (code, value) in enumerate([("160554", "2024-05-03"), ("159599", "2024-05-10")]):
        obs = copy.deepcopy(base)
        obs["id"] = f"obs-history-{n}"
        obs["code"] = {"coding": [{"system": "https://cielterminology.org", "code": code}]}
        del obs["valueCodeableConcept"]
        obs["valueDateTime"] = value
        bundle["entry"].append(
            {"fullUrl": f"urn:uuid:history-{n}", "resource": obs, "request": {"method": "POST", "url": "Observation"}}
        )
    enrolled = events(translate(bundle, setup()))[0]["data"]
    assert (
        enrolled["hiv_status"],
        enrolled["hiv_status_known_since"],
        enrolled["on_art"],
        enrolled["art_start_date"],
    ) == (
        "positive",
        "2024-05-03",
        True,
        "2024-05-10",
    )


def test_facility_from_the_token_when_the_bundle_names_none() -> None:
    bundle = fixture("infant-and-mother-care.json")
    del bundle["entry"][0]
    for e in bundle["entry"]:
        for ident in e["resource"].get("identifier") or ():
            ident.pop("extension", None)
    vl = events(translate(bundle, setup(token=frozenset({"FAC-ZA-003"}))))[-1]
    assert vl["facility_id"] == "FAC-ZA-003"
    t = translate(bundle, setup(token=frozenset({"FAC-ZA-001", "FAC-ZA-003"})))
    assert {r.code for r in t.refused.values()} == {"facility_unresolved"}


# --- refusals: each names its entry ----------------------------------------------------------------


def _entry(bundle: dict[str, Any], index: int) -> dict[str, Any]:
    return bundle["entry"][index]["resource"]


def _unknown_observation_code(b: dict[str, Any]) -> None:
    _entry(b, 7)["code"] = {"coding": [{"system": "http://loinc.org", "code": "99999-9"}], "text": "?"}


def _unknown_answer(b: dict[str, Any]) -> None:
    _entry(b, 7)["valueCodeableConcept"] = {"coding": [{"system": "https://cielterminology.org", "code": "1067"}]}


def _invalid_observation(b: dict[str, Any]) -> None:
    _entry(b, 7)["status"] = 7


def _allergy(b: dict[str, Any]) -> None:
    b["entry"][7]["resource"] = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": MOTHER}}


def _delete(b: dict[str, Any]) -> None:
    b["entry"][7]["request"] = {"method": "DELETE", "url": "Observation/3e4f5061-7283-49a4-b5c6-d7e8f90a1b2c"}


def _no_patient(b: dict[str, Any]) -> None:
    _entry(b, 7)["subject"] = {"reference": "Patient/not-in-this-bundle"}


def _no_visit_number(b: dict[str, Any]) -> None:
    _entry(b, 4)["status"] = "preliminary"


def _nat_for_a_woman(b: dict[str, Any]) -> None:
    _entry(b, 7)["code"] = {"coding": [{"system": "http://loinc.org", "code": "44871-2"}]}


def _no_id(b: dict[str, Any]) -> None:
    del _entry(b, 7)["id"]
    del b["entry"][7]["fullUrl"]


@pytest.mark.parametrize(
    ("change", "index", "code", "issue_type", "status"),
    [
        (_unknown_observation_code, 7, "unknown_code", "code-invalid", 422),
        (_unknown_answer, 7, "unknown_code", "code-invalid", 422),
        (_invalid_observation, 7, "invalid_resource", "structure", 400),
        (_allergy, 7, "unsupported_resource_type", "not-supported", 422),
        (_delete, 7, "unsupported_method", "not-supported", 422),
        (_no_patient, 7, "subject_not_in_bundle", "required", 422),
        (_no_visit_number, 3, "missing_field", "required", 422),
        (_nat_for_a_woman, 7, "wrong_subject", "business-rule", 422),
        (_no_id, 7, "invalid_resource", "required", 400),
    ],
)
def test_a_refused_entry_is_named_with_its_code(
    change: Any, index: int, code: str, issue_type: str, status: int
) -> None:
    bundle = fixture("anc1-enrolment.json")
    change(bundle)
    t = translate(bundle, setup())
    assert {i: (r.code, r.issue_type, r.status) for i, r in t.refused.items()} == {index: (code, issue_type, status)}
    assert t.refused[index].expression == f"Bundle.entry[{index}]"


def test_the_unknown_code_is_named_in_the_reason() -> None:
    bundle = fixture("anc1-enrolment.json")
    _unknown_observation_code(bundle)
    [refused] = translate(bundle, setup()).refused.values()
    assert "http://loinc.org|99999-9" in refused.detail


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        ({"resourceType": "Patient", "id": "x"}, "not_a_bundle", 400),
        ([1, 2], "not_a_bundle", 400),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{}]}, "unsupported_bundle_type", 422),
        ({"resourceType": "Bundle", "type": "batch", "entry": []}, "empty_bundle", 422),
        ({"resourceType": "Bundle", "type": "batch", "timestamp": "yesterday", "entry": [{}]}, "invalid_resource", 400),
    ],
)
def test_not_a_bundle_the_door_takes(body: Any, code: str, status: int) -> None:
    with pytest.raises(BundleRefused) as refused:
        translate(body, setup())
    assert (refused.value.code, refused.value.status) == (code, status)


# --- the ConceptMap ------------------------------------------------------------------------------


def test_the_default_map_knows_every_code_it_documents() -> None:
    default = fhir_concepts.load(None)
    assert default.table[("https://cielterminology.org", "856")] == Target.viral_load
    assert default.table[(None, "856AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")] == Target.viral_load
    assert default.table[("http://loinc.org", "25836-8")] == Target.viral_load
    assert default.table[("http://snomed.info/sct", "10828004")] == Target.positive
    # every target of the vocabulary is reachable from the shipped map
    assert set(default.table.values()) == set(Target)
    # the site map adds its encounter types and keeps every default code
    site = fhir_concepts.load(SITE_MAP)
    assert site.table[
        ("http://fhir.openmrs.org/code-system/encounter-type", "2678423c-0523-4d76-b0da-18177b439eed")
    ] == (Target.delivery)
    assert set(default.table.items()) <= set(site.table.items())


def test_codings_that_disagree_are_not_guessed() -> None:
    concepts = fhir_concepts.load(None)
    both = {
        "coding": [{"system": "http://loinc.org", "code": "25836-8"}, {"system": "http://loinc.org", "code": "8339-4"}]
    }
    assert concepts.lookup(both) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(resourceType="ValueSet"), "not a FHIR ConceptMap"),
        (lambda m: m["group"][0]["element"][0]["target"][0].update(code="no-such-target"), "is not a code of"),
        (lambda m: m["group"][0].update(target="http://example.org/other"), "maps to"),
        (
            lambda m: m["group"][0]["element"].append(
                {"code": "856", "target": [{"code": "edd", "equivalence": "equivalent"}]}
            ),
            "maps to both",
        ),
    ],
)
def test_a_bad_concept_map_is_refused(change: Any, message: str, tmp_path: Path) -> None:
    cm = json.loads(fhir_concepts.DEFAULT_MAP.read_text())
    change(cm)
    path = tmp_path / "map.json"
    path.write_text(json.dumps(cm))
    with pytest.raises(ConceptMapError, match=message):
        fhir_concepts.load(path)


def test_an_instant_keeps_the_offset_it_was_sent_with() -> None:
    bundle = fixture("infant-and-mother-care.json")
    bundle["entry"][6]["resource"]["effectiveDateTime"] = "2026-08-09T23:30:00Z"
    vl = events(translate(bundle, setup()))[-1]
    assert vl["occurred_at"] == "2026-08-09T23:30:00+00:00"


# --- the other shapes of infant care -------------------------------------------------------------


def _infant_bundle() -> dict[str, Any]:
    """The infant-care fixture without its own entries: the Location, the mother, the infant."""
    bundle = fixture("infant-and-mother-care.json")
    bundle["entry"] = bundle["entry"][:3]
    return bundle


def _add(bundle: dict[str, Any], resource: dict[str, Any]) -> None:
    bundle["entry"].append(
        {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource, "request": {"method": "POST", "url": "x"}}
    )


INFANT = "Patient/7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e01"
CIEL = "https://cielterminology.org"


def test_a_dispense_of_zidovudine_for_four_weeks() -> None:
    bundle = _infant_bundle()
    _add(
        bundle,
        {
            "resourceType": "MedicationDispense",
            "id": "d1",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": CIEL, "code": "86663"}]},
            "subject": {"reference": INFANT},
            "whenHandedOver": "2026-10-21T10:00:00+02:00",
            "daysSupply": {"value": 28, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"},
        },
    )
    [given] = events(translate(bundle, setup()))
    assert (given["type"], given["infant_ref"], given["data"]) == (
        "InfantProphylaxisRecorded",
        "10005LN",
        {"drug": "AZT", "duration_weeks": 4, "started_on": "2026-10-21"},
    )


def test_an_infant_postnatal_visit_and_antibody_test() -> None:
    bundle = _infant_bundle()
    _add(
        bundle,
        {
            "resourceType": "Encounter",
            "id": "v1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://fhir.openmrs.org/code-system/encounter-type",
                            "code": "af1f1b24-d2e8-4282-b308-0bf79b365584",
                        }
                    ]
                }
            ],
            "subject": {"reference": INFANT},
            "period": {"start": "2026-12-01T09:00:00+02:00"},
        },
    )
    _add(
        bundle,
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": CIEL, "code": "164860"}]},
            "subject": {"reference": INFANT},
            "encounter": {"reference": "Encounter/v1"},
            "effectiveDateTime": "2026-12-01T09:30:00+02:00",
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]},
        },
    )
    visit, test = events(translate(bundle, setup()))
    assert (visit["type"], visit["infant_ref"], visit["data"]) == ("InfantVisitRecorded", "10005LN", {})
    assert (test["type"], test["data"]) == (
        "InfantTestResulted",
        {"test": "antibody", "result": "negative", "confirmatory": False},
    )


def test_a_prophylaxis_without_a_duration_is_refused_and_a_renewal_is_no_event() -> None:
    bundle = _infant_bundle()
    nvp = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": CIEL, "code": "80586"}]},
        "subject": {"reference": INFANT},
        "authoredOn": "2026-10-20",
    }
    _add(bundle, nvp)
    _add(bundle, {**nvp, "id": "m2", "priorPrescription": {"reference": "MedicationRequest/m1"}})
    t = translate(bundle, setup())
    assert {i: r.code for i, r in t.refused.items()} == {3: "missing_field"}
    assert t.context[4] == "MedicationRequest: no event of its own"


def test_a_stillborn_baby_and_a_delivery_with_no_infant_linked() -> None:
    bundle = fixture("delivery.json")
    bundle["entry"][2]["resource"]["deceasedBoolean"] = True
    [delivery] = events(translate(bundle, setup()))
    assert delivery["data"]["infants"][0]["outcome"] == "stillbirth"
    del bundle["entry"][3]  # no RelatedPerson: no baby (enrolment answers live_birth_without_infants)
    [delivery] = events(translate(bundle, setup()))
    assert delivery["data"]["infants"] == []


# --- her death, her transfer out, a pregnancy lost: as an OpenMRS FHIR2 EMR sends them -------------

SNOMED = "http://snomed.info/sct"
LOCATION = "Location/8d6c993e-c2cc-11de-8d13-0010c6dffd0f"


def _her_bundle() -> dict[str, Any]:
    """The ANC1 fixture's Location and Patient only (she is enrolled already)."""
    bundle = fixture("anc1-enrolment.json")
    bundle["entry"] = bundle["entry"][:2]
    return bundle


def _of(t: Translation, event_type: str) -> list[dict[str, Any]]:
    return [e for e in events(t) if e["type"] == event_type]


def test_her_death_comes_through_fhir_as_client_died() -> None:
    bundle = _her_bundle()
    her = bundle["entry"][1]["resource"]
    del her["deceasedBoolean"]
    her["deceasedDateTime"] = "2026-09-03T04:10:00+02:00"
    t = translate(bundle, setup())
    assert t.refused == {}
    assert events(t) == [
        {
            "event_id": event_id(her, f"Patient/{her['id']}", "ClientDied"),
            "type": "ClientDied",
            "facility_id": "FAC-ZA-002",
            "occurred_at": "2026-09-03T04:10:00+02:00",
            "client_ref": "10004KM",
            "data": {},
        }
    ]
    # deceasedBoolean without a date: when the EMR recorded it (meta.lastUpdated)
    del her["deceasedDateTime"]
    her["deceasedBoolean"] = True
    her["meta"]["lastUpdated"] = "2026-09-04T08:00:00.000+02:00"
    [died] = events(translate(bundle, setup()))
    assert (died["type"], died["occurred_at"]) == ("ClientDied", "2026-09-04T08:00:00+02:00")
    # alive: no event
    her["deceasedBoolean"] = False
    assert events(translate(bundle, setup())) == []


def test_a_finished_programme_with_a_transfer_out_reason_is_client_transferred_out() -> None:
    """KenyaEMR's discontinuation: the PMTCT EpisodeOfCare finished, and an Observation 'reason for
    program discontinuation' (CIEL 161555) answered 'transferred out' (CIEL 159492)."""
    bundle = fixture("anc1-enrolment.json")
    episode = bundle["entry"][2]["resource"]
    episode["status"] = "finished"
    episode["period"]["end"] = "2026-07-01T10:00:00+02:00"
    reason = copy.deepcopy(bundle["entry"][6]["resource"])
    reason["id"] = "obs-discontinued"
    reason["code"] = {"coding": [{"code": "161555AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, {"system": CIEL, "code": "161555"}]}
    reason["valueCodeableConcept"] = {"coding": [{"code": "159492AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}
    reason["effectiveDateTime"] = "2026-07-01T10:00:00+02:00"
    del reason["encounter"]
    _add(bundle, reason)
    t = translate(bundle, setup())
    assert t.refused == {}
    [left] = _of(t, "ClientTransferredOut")
    assert left == {
        "event_id": event_id(episode, f"EpisodeOfCare/{episode['id']}", "ClientTransferredOut"),
        "type": "ClientTransferredOut",
        "facility_id": "FAC-ZA-002",
        "occurred_at": "2026-07-01T10:00:00+02:00",
        "client_ref": "10004KM",
        "data": {},
    }
    assert [e["type"] for e in events(t)] == [
        "ClientEnrolled",
        "ClientTransferredOut",
        "AncVisitRecorded",
        "HivTestRecorded",
        "ArtInitiated",
    ]
    # the same Observation without the finished programme: the transfer out is the Observation's
    episode["status"] = "active"
    [alone] = _of(translate(bundle, setup()), "ClientTransferredOut")
    assert alone["event_id"] == event_id(reason, "Observation/obs-discontinued", "ClientTransferredOut")
    # another reason (CIEL 160034 died: her death is her Patient's): no event, nothing refused
    reason["valueCodeableConcept"] = {"coding": [{"system": CIEL, "code": "160034"}]}
    t = translate(bundle, setup())
    assert _of(t, "ClientTransferredOut") == [] and t.refused == {}


def test_an_encounter_discharging_her_to_another_facility_is_client_transferred_out() -> None:
    bundle = _her_bundle()
    _add(
        bundle,
        {
            "resourceType": "Encounter",
            "id": "enc-discharge",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": MOTHER},
            "period": {"start": "2026-08-01T09:00:00+02:00", "end": "2026-08-01T11:00:00+02:00"},
            "location": [{"location": {"reference": LOCATION}}],
            "hospitalization": {
                "dischargeDisposition": {"coding": [{"system": CIEL, "code": "159492"}], "text": "Transferred out"},
                "destination": {"reference": "Location/FAC-ZA-001"},
            },
        },
    )
    t = translate(bundle, setup())
    assert t.refused == {}
    [left] = events(t)
    assert (left["type"], left["occurred_at"], left["facility_id"], left["data"]) == (
        "ClientTransferredOut",
        "2026-08-01T11:00:00+02:00",
        "FAC-ZA-002",
        {"to_facility_id": "FAC-ZA-001"},
    )


@pytest.mark.parametrize(
    ("coding", "outcome"),
    [
        ({"system": SNOMED, "code": "17369002"}, "miscarriage"),
        ({"system": CIEL, "code": "48"}, "miscarriage"),
        ({"system": SNOMED, "code": "57797005"}, "abortion"),
        ({"system": SNOMED, "code": "34801009"}, "ectopic"),
    ],
)
def test_a_lost_pregnancy_condition_is_pregnancy_ended(coding: dict[str, str], outcome: str) -> None:
    bundle = _her_bundle()
    _add(
        bundle,
        {
            "resourceType": "Condition",
            "id": "cond-loss",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]
            },
            "verificationStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                ]
            },
            "code": {"coding": [coding]},
            "subject": {"reference": MOTHER},
            "onsetDateTime": "2026-05-20",
            "recordedDate": "2026-05-21T09:00:00+02:00",
        },
    )
    t = translate(bundle, setup())
    assert t.refused == {}
    [ended] = events(t)
    assert (ended["type"], ended["occurred_at"], ended["client_ref"], ended["data"]) == (
        "PregnancyEnded",
        "2026-05-20T12:00:00+02:00",
        "10004KM",
        {"outcome": outcome},
    )
    # refuted: not what happened
    bundle["entry"][-1]["resource"]["verificationStatus"]["coding"][0]["code"] = "refuted"
    assert events(translate(bundle, setup())) == []


def test_an_observation_of_miscarriage_answered_yes_is_pregnancy_ended() -> None:
    """As OpenMRS's examination form records it: CIEL 48 'Pregnancy, miscarriage', answers 1065 Yes / 1066 No."""
    bundle = _her_bundle()
    seen = copy.deepcopy(fixture("anc1-enrolment.json")["entry"][6]["resource"])
    seen["id"] = "obs-miscarriage"
    seen["code"] = {"coding": [{"code": "48AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "display": "Pregnancy, miscarriage"}]}
    del seen["encounter"]
    _add(bundle, seen)  # answered 1065 Yes, as the fixture's pregnancy status was
    [ended] = events(translate(bundle, setup()))
    assert (ended["type"], ended["data"]) == ("PregnancyEnded", {"outcome": "miscarriage"})
    seen["valueCodeableConcept"] = {"coding": [{"code": "1066AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}
    assert events(translate(bundle, setup())) == []
