"""The FHIR door end to end, through the four services as real processes: a woman's ANC1, delivery
and her baby's first care posted as OpenMRS FHIR2-style transaction bundles at one facility, and
the same care posted as the platform's JSON events (written here by hand) for another woman at
another facility, end in the same follow-up schedules, the same referrals and the same change in
the indicators. The platform runs with a site's ConceptMap (its OpenMRS encounter types on top of
the shipped map, `PMTCT_FHIR_CONCEPT_MAP`: tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pmtct_tools import testing

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent.parent / "enrolment" / "fixtures" / "fhir"
BUNDLE_AT, JSON_AT = "FAC-ZA-004", "FAC-MW-002"
FHIR_JSON = "application/fhir+json"
SCOPES = "events:write clients:read worklist:read referrals:read reports:read"


def fresh(name: str, tag: str) -> dict[str, Any]:
    """A fixture bundle with resource ids and record numbers of this run, at `BUNDLE_AT`."""
    text = (FIXTURES / name).read_text()
    for rid in {e["resource"]["id"] for e in json.loads(text)["entry"]}:
        text = text.replace(rid, str(uuid.uuid5(uuid.NAMESPACE_URL, tag + rid)))
    for ref in ("10004KM", "10005LN", "9604110000081"):
        text = text.replace(ref, f"{ref}-{tag}")
    return json.loads(text.replace("FAC-ZA-002", BUNDLE_AT))


def event(type_: str, at: str, data: dict[str, Any], **subject: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "facility_id": JSON_AT,
        "occurred_at": at,
        "data": data,
        **subject,
    }


async def until(
    what: str, probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float = 120
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await probe()
        if done(found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} never got there: {found}")
        await asyncio.sleep(1)


class Platform:
    def __init__(self, platform: Any, issuer: testing.TestIssuer) -> None:
        self.p = platform
        self.headers = issuer.headers(SCOPES, [BUNDLE_AT, JSON_AT])

    async def get(self, service: str, path: str, **params: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.p.url(service), timeout=30) as http:
            return await http.get(path, params=params, headers=self.headers)

    async def bundle(self, body: dict[str, Any]) -> list[str]:
        async with httpx.AsyncClient(base_url=self.p.url("enrolment"), timeout=60) as http:
            r = await http.post("/fhir", content=json.dumps(body), headers={**self.headers, "content-type": FHIR_JSON})
        assert r.status_code == 200, r.text
        return [e["response"]["status"] for e in r.json()["entry"]]

    async def events(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.p.url("enrolment"), timeout=60) as http:
            r = await http.post("/v1/events", json={"events": list(events)}, headers=self.headers)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["status"] for x in results] == ["accepted"] * len(events), results
        return results

    async def client_id(self, facility: str, client_ref: str) -> str:
        r = await self.get("enrolment", "/v1/clients", facility_id=facility, client_ref=client_ref, purpose="e2e test")
        assert r.status_code == 200, r.text
        return str(r.json()["client_id"])

    async def worklist(self, facility: str, client_id: str) -> list[dict[str, Any]]:
        r = await self.get("followup", "/v1/worklist", facility_id=facility)
        return [i for i in r.json()["items"] if i["client_id"] == client_id]

    async def infant_of(self, facility: str, client_id: str) -> str:
        items = await until(
            "the infant's follow-up",
            lambda: self.worklist(facility, client_id),
            lambda items: any(i["subject_type"] == "infant" for i in items),
        )
        return next(i["subject_id"] for i in items if i["subject_type"] == "infant")

    async def referrals(self, subject_id: str) -> list[dict[str, Any]]:
        r = await self.get("referrals", "/v1/referrals", subject_id=subject_id)
        keep = (
            "subject_type",
            "referral_service",
            "reason_code",
            "urgency",
            "status",
            "origin",
            "due_by",
            "outcome_code",
        )
        return sorted(({k: x[k] for k in keep} for x in r.json()["items"]), key=json.dumps)

    async def indicators(self, facility: str) -> dict[str, tuple[int, int | None, dict[str, int]]]:
        r = await self.get("reporting", "/v1/indicators", facility_id=facility, period="2026")
        assert r.status_code == 200, r.text
        return {i["code"]: (i["numerator"], i["denominator"], i["disaggregations"]) for i in r.json()["indicators"]}


def plan(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    drop = {"item_id", "subject_id", "client_id"}
    return sorted(({k: v for k, v in i.items() if k not in drop} for i in items), key=json.dumps)


def infant_record(found: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in found.items() if k not in ("infant_id", "client_id", "facility_id", "records", "results")}
    out["plan"] = plan(found["plan"])
    out["results"] = [{k: v for k, v in r.items() if k != "event_id"} for r in found["results"]]
    out["records"] = [{k: v for k, v in r.items() if k != "event_id"} for r in found["records"]]
    return out


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for code, (num, den, dis) in after.items():
        b_num, b_den, b_dis = before.get(code, (0, 0, {}))
        out[code] = (
            num - b_num,
            None if den is None else den - (b_den or 0),
            {k: v - b_dis.get(k, 0) for k, v in dis.items() if v - b_dis.get(k, 0)},
        )
    return out


async def test_bundles_and_the_same_json_events_have_the_same_effects(platform, issuer: testing.TestIssuer) -> None:
    api = Platform(platform, issuer)
    tag = uuid.uuid4().hex[:8].upper()
    mother_ref, infant_ref = f"ANC-{tag}", f"HEI-{tag}"
    before = {f: await api.indicators(f) for f in (BUNDLE_AT, JSON_AT)}

    # 1. ANC1: enrolled pregnant at 14 weeks, tested positive, no ART yet (the ART start is left out)
    anc1 = fresh("anc1-enrolment.json", tag)
    anc1["entry"] = anc1["entry"][:8]
    assert await api.bundle(anc1) == ["200 OK"] + ["201 Created"] * 7
    await api.events(
        event(
            "ClientEnrolled",
            "2026-04-14T09:15:00+02:00",
            {
                "given_name": "Lerato",
                "family_name": "Ndlovu",
                "birth_date": "1996-04-11",
                "phone": "+27 82 555 0177",
                "national_id": f"NID-{tag}",
                "status_at_enrolment": "pregnant",
                "hiv_status": "unknown",
                "on_art": False,
                "gestation_weeks": 14,
            },
            client_ref=mother_ref,
        ),
        event(
            "AncVisitRecorded",
            "2026-04-14T09:20:00+02:00",
            {"visit_number": 1, "gestation_weeks": 14},
            client_ref=mother_ref,
        ),
        event(
            "HivTestRecorded",
            "2026-04-14T09:40:00+02:00",
            {"result": "positive", "setting": "anc"},
            client_ref=mother_ref,
        ),
    )
    by_bundle = await api.client_id(BUNDLE_AT, f"10004KM-{tag}")
    by_json = await api.client_id(JSON_AT, mother_ref)

    # 2. the delivery of a girl of 3.1 kg
    assert await api.bundle(fresh("delivery.json", tag)) == ["200 OK"] + ["201 Created"] * 5
    await api.events(
        event(
            "DeliveryRecorded",
            "2026-10-20T04:30:00+02:00",
            {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [
                    {"infant_ref": infant_ref, "sex": "female", "birth_weight_g": 3100, "outcome": "live_birth"}
                ],
            },
            client_ref=mother_ref,
        )
    )
    infant_by_bundle = await api.infant_of(BUNDLE_AT, by_bundle)
    infant_by_json = await api.infant_of(JSON_AT, by_json)

    # 3. her birth NAT (negative), six weeks of nevirapine, and the mother's viral load in August
    assert await api.bundle(fresh("infant-and-mother-care.json", tag)) == ["200 OK"] + ["201 Created"] * 6
    await api.events(
        event(
            "InfantTestResulted",
            "2026-10-20T09:00:00+02:00",
            {"test": "NAT", "result": "negative", "confirmatory": False},
            infant_ref=infant_ref,
        ),
        event(
            "InfantProphylaxisRecorded",
            "2026-10-20T12:00:00+02:00",
            {"drug": "NVP", "duration_weeks": 6, "started_on": "2026-10-20"},
            infant_ref=infant_ref,
        ),
        event("ViralLoadRecorded", "2026-08-10T08:30:00+02:00", {"copies_per_ml": 40}, client_ref=mother_ref),
    )

    async def infant(infant_id: str) -> dict[str, Any]:
        r = await api.get("followup", f"/v1/infants/{infant_id}")
        return infant_record(r.json())

    # the same follow-up of the infant (plan, results, risk, prophylaxis) and of the mother
    expected = await until(
        "the JSON infant's NAT and prophylaxis",
        lambda: infant(infant_by_json),
        lambda f: len(f["results"]) == 1 and len(f["records"]) == 1,
    )
    assert expected["plan"] and expected["results"][0]["test"] == "NAT"
    await until("the same infant follow-up", lambda: infant(infant_by_bundle), lambda f: f == expected)
    mother_plan = plan(await api.worklist(JSON_AT, by_json))
    await until(
        "the same worklist", lambda: api.worklist(BUNDLE_AT, by_bundle), lambda items: plan(items) == mother_plan
    )

    # the same referrals: hers (positive, no ART: an ART initiation referral) and the infant's
    hers = await until(
        "her ART referral",
        lambda: api.referrals(by_json),
        lambda found: any(r["referral_service"] == "art_initiation" for r in found),
    )
    await until("the same referrals of hers", lambda: api.referrals(by_bundle), lambda found: found == hers)
    infants = await api.referrals(infant_by_json)
    await until("the same referrals of the infant", lambda: api.referrals(infant_by_bundle), lambda f: f == infants)

    # the same change in the indicators of 2026 at each facility
    async def changes() -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            delta(await api.indicators(BUNDLE_AT), before[BUNDLE_AT]),
            delta(await api.indicators(JSON_AT), before[JSON_AT]),
        )

    by_fhir, by_events = await until("the same indicators", changes, lambda pair: pair[0] == pair[1])
    assert by_events["PMTCT_STAT"][0] >= 1, by_events  # she counts: the comparison is not of two empty reports
