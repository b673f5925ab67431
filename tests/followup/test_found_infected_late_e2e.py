"""Through the real services (enrolment, follow-up, referrals and reporting as processes, on the
real broker): a baby silent for 24 months is reported lost at the age snapshot, which closes
nothing; traced and found infected at 25 months, she gets the infant-ART item and referral at
once (WHO 2021 infant diagnosis algorithm, note c: start ART without delay at the first positive
NAT), her tracing referral completes, and reporting counts her infected (HEI_INFECTED: the
birth cohort's infants infected at any age)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from pmtct_tools import testing
from pmtct_tools.testing import unique

pytestmark = pytest.mark.e2e

FACILITY = "FAC-ZA-003"
BORN_DAYS_AGO = 765  # 25 months


def ago(days: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def emr_event(type_: str, occurred_at: str, data: dict[str, Any], **subject: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid4()),
        "type": type_,
        "facility_id": FACILITY,
        "occurred_at": occurred_at,
        "data": data,
        **subject,
    }


async def post(http: httpx.AsyncClient, url: str, headers: dict, *events: dict[str, Any]) -> list[dict[str, Any]]:
    response = await http.post(f"{url}/v1/events", json={"events": list(events)}, headers=headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


async def until(what: str, read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float = 120):
    """Poll `read` until `done` holds (the services work asynchronously, through the broker)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await read()
        if done(found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} never happened: {found}")
        await asyncio.sleep(0.5)


def of(referrals: list[dict], service: str) -> list[dict]:
    return [r for r in referrals if r["referral_service"] == service]


def infected_now(report: dict) -> int:
    """HEI_INFECTED: the birth cohort's infants found infected at any age (PMTCT_FO takes the facts
    as they stood at 18 months, so a diagnosis at 25 months is not in it)."""
    [found] = [i for i in report["indicators"] if i["code"] == "HEI_INFECTED"]
    return found["numerator"]


async def test_a_baby_found_infected_at_25_months_after_24_silent_months(platform, issuer: testing.TestIssuer) -> None:
    emr = issuer.headers("events:write", [FACILITY])
    worker = issuer.headers("worklist:read", [FACILITY])
    tracer = issuer.headers("referrals:read", [FACILITY])
    reader = issuer.headers("reports:read", ["*"], client_id="ministry-dashboard")
    born = (datetime.now(UTC) - timedelta(days=BORN_DAYS_AGO)).date()
    # the birth-cohort figures count the cohort born 24 months before the period: her birth month + 24
    month = born.month - 1 + 24
    fo_period = f"{born.year + month // 12}-{month % 12 + 1:02d}"
    mother = {"client_ref": unique("ANC")}

    async with httpx.AsyncClient(timeout=30) as http:

        async def infant() -> dict:
            response = await http.get(f"{platform.url('followup')}/v1/infants/{infant_id}", headers=worker)
            return response.json()

        async def referrals() -> list[dict]:
            response = await http.get(
                f"{platform.url('referrals')}/v1/referrals", params={"subject_id": infant_id}, headers=tracer
            )
            return response.json()["items"]

        async def report() -> dict:
            response = await http.get(
                f"{platform.url('reporting')}/v1/indicators", params={"period": fo_period}, headers=reader
            )
            assert response.status_code == 200, response.text
            return response.json()

        infected_before = infected_now(await report())
        # A mother on ART for years, suppressed; her baby's delivery is posted, then nothing for 25 months.
        [_, _, delivered] = await post(
            http,
            platform.url("enrolment"),
            emr,
            emr_event(
                "ClientEnrolled",
                ago(BORN_DAYS_AGO + 120),
                {
                    "age_years": 29,
                    "status_at_enrolment": "pregnant",
                    "hiv_status": "positive",
                    "hiv_status_known_since": (born - timedelta(days=1500)).isoformat(),
                    "on_art": True,
                    "art_start_date": (born - timedelta(days=1400)).isoformat(),
                    "gestation_weeks": 22,
                },
                **mother,
            ),
            emr_event("ViralLoadRecorded", ago(BORN_DAYS_AGO + 20), {"copies_per_ml": 40}, **mother),
            emr_event(
                "DeliveryRecorded",
                ago(BORN_DAYS_AGO),
                {
                    "place": "facility",
                    "skilled_attendant": True,
                    "maternal_outcome": "alive",
                    "infants": [{"infant_ref": unique("HEI"), "sex": "female", "outcome": "live_birth"}],
                },
                **mother,
            ),
        )
        infant_id = delivered["infants"][0]["infant_id"]

        # 24 silent months: overdue tests, a community tracing referral, the age snapshot (lost)
        silent = await until(
            "the age snapshot", infant, lambda r: (r.get("final_outcome") or {}).get("outcome") == "lost_to_follow_up"
        )
        assert silent["status"] == "lost_to_follow_up"
        assert any(i["kind"] == "final_test" and i["status"] == "overdue" for i in silent["plan"]), (
            "the snapshot cancels nothing: the final test is still needed"
        )
        [tracing] = of(await until("tracing", referrals, lambda f: of(f, "community_tracing")), "community_tracing")
        assert tracing["status"] == "requested"

        # traced at 25 months: a positive NAT today, and its confirmatory NAT three days later
        # posted the same day (the clinic's second sample, taken at once)
        today = datetime.now(UTC).date()
        await post(
            http,
            platform.url("followup"),
            emr,
            emr_event(
                "InfantTestResulted",
                ago(0.2),
                {"test": "NAT", "result": "positive", "confirmatory": False},
                infant_id=infant_id,
            ),
        )
        found = await until(
            "the infant-ART item", infant, lambda r: any(i["kind"] == "infant_art_start" for i in r["plan"])
        )
        [art_item] = [i for i in found["plan"] if i["kind"] == "infant_art_start"]
        assert art_item["status"] in ("planned", "due") and art_item["window_start"] <= today.isoformat()
        assert found["art_needed"] is True
        worklist = (
            await http.get(f"{platform.url('followup')}/v1/worklist", params={"facility_id": FACILITY}, headers=worker)
        ).json()
        assert any(e["item_id"] == art_item["item_id"] and e["label"] == "Start ART" for e in worklist["items"])

        traced = await until(
            "the infant-ART referral and the tracing closed",
            referrals,
            lambda f: of(f, "infant_art") and all(r["status"] == "completed" for r in of(f, "community_tracing")),
        )
        [art_referral] = of(traced, "infant_art")
        assert (art_referral["status"], art_referral["reason_code"]) == ("requested", "positive_infant_test")
        assert [(r["status"], r["outcome_code"]) for r in of(traced, "community_tracing")] == [
            ("completed", "test_resulted")
        ]

        await post(
            http,
            platform.url("followup"),
            emr,
            emr_event(
                "InfantTestResulted",
                ago(0.1),
                {"test": "NAT", "result": "positive", "confirmatory": True},
                infant_id=infant_id,
            ),
        )
        infected = await until("infected", infant, lambda r: r["status"] == "infected")
        assert infected["final_outcome"]["outcome"] == "infected"
        assert any(i["kind"] == "infant_art_start" and i["status"] in ("planned", "due") for i in infected["plan"])

        await until("reporting counts her infected", report, lambda r: infected_now(r) == infected_before + 1)
