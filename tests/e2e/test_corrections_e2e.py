"""Corrections through the real services as processes (`platform`, issue 17's must-show): an EMR
voids a positive HIV test entered in error, and every service recomputes as if it had never been
posted — her ART referral is cancelled `entered_in_error`, reporting no longer counts her in
PMTCT_STAT_POS, and the baby she delivers afterwards is not followed as high risk because of it
(with only her negative test standing, the baby is not HIV-exposed at all). Also: a negative test
replaced by a positive one opens the ART referral; voiding the ART start that completed the ART
referral opens it again.

The must-show mother is the only woman at FAC-ZA-003 (no other test posts there), so the
indicators of her quarter are hers alone and are written by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from pmtct_tools.devrunner import Platform
from pmtct_tools.testing import TestIssuer

pytestmark = pytest.mark.e2e

#: the must-show mother's facility: nobody else posts there
ALONE = "FAC-ZA-003"
#: the other two cases' facility
CLINIC = "FAC-ZA-001"
NOW = datetime.now(UTC).replace(microsecond=0)
T = TypeVar("T")


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def quarter(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


@dataclass
class Emr:
    facility_id: str

    def event(self, type: str, data: dict[str, Any], days: float, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "type": type,
            "facility_id": self.facility_id,
            "occurred_at": ago(days),
            **extra,
            "data": data,
        }

    def enrolled(self, ref: str, days: float, gestation_weeks: int = 20) -> dict[str, Any]:
        data = {
            "birth_date": "1998-03-09",
            "status_at_enrolment": "pregnant",
            "hiv_status": "unknown",
            "on_art": False,
            "gestation_weeks": gestation_weeks,
        }
        return self.event("ClientEnrolled", data, days, client_ref=ref)

    def test(self, ref: str, days: float, result: str, **extra: Any) -> dict[str, Any]:
        return self.event("HivTestRecorded", {"result": result, "setting": "anc"}, days, client_ref=ref, **extra)

    def void(self, voided: dict[str, Any], days: float = 0) -> dict[str, Any]:
        data = {"voided_event_id": voided["event_id"], "reason": "entered_in_error"}
        return self.event("EventVoided", data, days)


@dataclass
class Platforms:
    platform: Platform
    issuer: TestIssuer

    async def post(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Post to the front door; every event must be accepted."""
        headers = self.issuer.headers("events:write", [ALONE, CLINIC], "emr-corrections")
        async with httpx.AsyncClient(base_url=self.platform.url("enrolment"), timeout=60) as http:
            response = await http.post("/v1/events", json={"events": events}, headers=headers)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * len(events), results
        return results

    async def get(self, service: str, path: str, scope: str, **params: Any) -> Any:
        headers = self.issuer.headers(scope, ["*"], client_id="ministry", subject="SC-ZA-003-01")
        async with httpx.AsyncClient(base_url=self.platform.url(service), timeout=60) as http:
            response = await http.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def referrals(self, client_id: str) -> list[tuple[str, str, str | None]]:
        """Her referrals, oldest first: (service, status, outcome_code)."""
        reply = await self.get("referrals", "/v1/referrals", "referrals:read", subject_id=client_id)
        items = sorted(reply["items"], key=lambda r: r["requested_at"])
        return [(r["referral_service"], r["status"], r["outcome_code"]) for r in items]

    async def indicators(self, facility_id: str, period: str) -> dict[str, tuple[int, int | None, dict[str, int]]]:
        reply = await self.get(
            "reporting", "/v1/indicators", "reports:read", facility_id=facility_id, period=period, data_set="mer"
        )
        return {i["code"]: (i["numerator"], i["denominator"], i["disaggregations"]) for i in reply["indicators"]}

    async def infant(self, infant_id: str) -> dict[str, Any]:
        headers = self.issuer.headers("worklist:read", [ALONE, CLINIC], client_id="clinic-app")
        async with httpx.AsyncClient(base_url=self.platform.url("followup"), timeout=60) as http:
            response = await http.get(f"/v1/infants/{infant_id}", headers=headers)
        assert response.status_code in (200, 404), response.text
        return response.json()


async def until(what: str, probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 90) -> T:
    """`probe()` again until `ok` of it (the consumers are asynchronous), or fail saying what was seen."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        seen = await probe()
        if ok(seen):
            return seen
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: still {seen!r} after {timeout_s:g} s")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def services(platform: Platform, issuer: TestIssuer) -> Platforms:
    return Platforms(platform, issuer)


ART = "art_initiation"


async def test_voiding_a_positive_test_cancels_her_art_referral_drops_her_from_stat_pos_and_her_baby_is_not_high_risk(
    services: Platforms,
) -> None:
    emr = Emr(ALONE)
    ref = f"GUG-{uuid.uuid4().hex[:8].upper()}"
    # ANC1 twelve days ago: the ART referral opens once a week has passed without an ART start
    # (referrals, PMTCT_ART_INITIATION_WAIT_DAYS)
    anc1 = emr.enrolled(ref, days=12, gestation_weeks=37)
    positive = emr.test(ref, days=11.99, result="positive")  # at her ANC1 visit: she is newly positive
    [enrolled, _] = await services.post([anc1, positive])
    client_id = enrolled["client_id"]
    period = quarter(datetime.fromisoformat(anc1["occurred_at"]).date())

    await until(
        "her ART referral opened by the positive test",
        lambda: services.referrals(client_id),
        lambda seen: [(s, st) for s, st, _ in seen if s == ART] == [(ART, "requested")],
    )
    figures = await until(
        "reporting counting her newly positive",
        lambda: services.indicators(ALONE, period),
        lambda f: f["PMTCT_STAT_POS"][:2] == (1, 1),
    )
    assert figures["PMTCT_STAT"][:2] == (1, 1)
    assert figures["PMTCT_STAT_POS"][2]["newly_positive"] == 1

    # the result was entered in error: voided
    await services.post([emr.void(positive)])

    referrals = await until(
        "her ART referral cancelled entered_in_error",
        lambda: services.referrals(client_id),
        lambda seen: any(s == ART and st == "cancelled" for s, st, _ in seen),
    )
    assert [r for r in referrals if r[0] == ART] == [(ART, "cancelled", "entered_in_error")]
    figures = await until(
        "reporting no longer counting her positive",
        lambda: services.indicators(ALONE, period),
        lambda f: f["PMTCT_STAT_POS"][0] == 0,
    )
    # her status at ANC1 is unknown now (no test that day stands): outside the STAT numerator, still a new ANC1
    assert (figures["PMTCT_STAT"][:2], figures["PMTCT_STAT_POS"][:2]) == ((0, 1), (0, 0))

    # a realistic rest of her pregnancy: a negative test, then the delivery
    negative = emr.test(ref, days=2, result="negative")
    born = emr.event(
        "DeliveryRecorded",
        {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": [{"infant_ref": f"HEI-{uuid.uuid4().hex[:8].upper()}", "sex": "male", "outcome": "live_birth"}],
        },
        1,
        client_ref=ref,
    )
    [_, delivered] = await services.post([negative, born])
    infant_id = delivered["infants"][0]["infant_id"]

    infant = await until(
        "follow-up knowing of her baby",
        lambda: services.infant(infant_id),
        lambda body: body.get("infant_id") == infant_id,
    )
    assert (infant["high_risk"], infant["high_risk_reasons"]) == (False, [])
    assert (infant["in_follow_up"], infant["status"]) == (False, "not_in_follow_up"), "her mother is negative"
    figures = await services.indicators(ALONE, period)
    assert (figures["PMTCT_STAT"][:2], figures["PMTCT_STAT_POS"][:2]) == ((0, 1), (0, 0))
    assert [r for r in await services.referrals(client_id) if r[0] == ART] == [(ART, "cancelled", "entered_in_error")]


async def test_a_negative_test_replaced_by_a_positive_one_opens_her_art_referral(services: Platforms) -> None:
    emr = Emr(CLINIC)
    ref = f"GUG-{uuid.uuid4().hex[:8].upper()}"
    negative = emr.test(ref, days=10, result="negative")
    [enrolled, _] = await services.post([emr.enrolled(ref, days=12), negative])
    client_id = enrolled["client_id"]

    await services.post([emr.test(ref, days=10, result="positive", replaces=negative["event_id"])])

    await until(
        "her ART referral opened by the corrected result",
        lambda: services.referrals(client_id),
        lambda seen: [(s, st) for s, st, _ in seen if s == ART] == [(ART, "requested")],
    )


async def test_voiding_the_art_start_that_completed_her_referral_opens_it_again(services: Platforms) -> None:
    emr = Emr(CLINIC)
    ref = f"GUG-{uuid.uuid4().hex[:8].upper()}"
    [enrolled, _] = await services.post([emr.enrolled(ref, days=10), emr.test(ref, days=9, result="positive")])
    client_id = enrolled["client_id"]
    await until(
        "her ART referral opened",
        lambda: services.referrals(client_id),
        lambda seen: [(s, st) for s, st, _ in seen if s == ART] == [(ART, "requested")],
    )
    start = emr.event("ArtInitiated", {"regimen": "TDF/3TC/DTG"}, 8, client_ref=ref)
    await services.post([start])
    await until(
        "her ART referral completed by the start",
        lambda: services.referrals(client_id),
        lambda seen: [(s, st) for s, st, _ in seen if s == ART] == [(ART, "completed")],
    )

    await services.post([emr.void(start)])

    referrals = await until(
        "her ART referral open again",
        lambda: services.referrals(client_id),
        lambda seen: [(s, st) for s, st, _ in seen if s == ART] == [(ART, "requested")],
    )
    assert [r for r in referrals if r[0] == ART] == [(ART, "requested", None)]


async def test_a_corrected_delivery_keeps_the_babys_infant_id_and_follows_her_from_the_corrected_facts(
    services: Platforms,
) -> None:
    emr = Emr(CLINIC)
    ref, baby = f"GUG-{uuid.uuid4().hex[:8].upper()}", f"HEI-{uuid.uuid4().hex[:8].upper()}"
    mother = emr.enrolled(ref, days=200, gestation_weeks=12)
    mother["data"] |= {
        "hiv_status": "positive",
        "hiv_status_known_since": ago(900)[:10],
        "on_art": True,
        "art_start_date": ago(880)[:10],
    }

    def delivery(sex: str, **extra: Any) -> dict[str, Any]:
        data = {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": [{"infant_ref": baby, "sex": sex, "outcome": "live_birth"}],
        }
        return emr.event("DeliveryRecorded", data, 20, client_ref=ref, **extra)

    wrong = delivery("male")
    [_, delivered] = await services.post([mother, wrong])
    first = delivered["infants"][0]["infant_id"]
    await until(
        "follow-up following her HIV-exposed baby",
        lambda: services.infant(first),
        lambda body: body.get("in_follow_up") is True,
    )

    # the baby is a girl: the corrected delivery replaces the wrong one, with the same record number
    [corrected] = await services.post([delivery("female", replaces=wrong["event_id"])])

    # the same baby: the infant_id the EMR was given stands, followed from the corrected facts
    assert corrected["infants"][0] == {"infant_ref": baby, "infant_id": first}
    followed = await until(
        "the corrected baby followed",
        lambda: services.infant(first),
        lambda body: body.get("in_follow_up") is True and body.get("sex") == "female",
    )
    assert followed["status"] == "active"
    # the EMR names her by her record number: it is the corrected baby's now
    [visit] = await services.post([emr.event("InfantVisitRecorded", {}, 10, infant_ref=baby)])
    assert visit["infant_id"] == first
