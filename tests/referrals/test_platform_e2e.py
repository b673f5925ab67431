"""Through the real broker with the enrolment, follow-up and referrals services running as
processes: an EMR posts events, and referrals open and close by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from pmtct_tools import testing
from pmtct_tools.testing import unique

pytestmark = pytest.mark.e2e

FACILITY = "FAC-ZA-003"


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


async def post_events(
    platform, issuer: testing.TestIssuer, service: str, *events: dict[str, Any]
) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=platform.url(service), timeout=30) as http:
        response = await http.post(
            "/v1/events", json={"events": list(events)}, headers=issuer.headers("events:write", [FACILITY])
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


async def referrals_until(
    platform, issuer: testing.TestIssuer, subject_id: str, done: Callable[[list[dict]], bool], timeout_s: float = 90
) -> list[dict]:
    """The subject's referrals, polled from the referrals process until `done` holds."""
    headers = issuer.headers("referrals:read", [FACILITY])
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(base_url=platform.url("referrals"), timeout=10) as http:
        while True:
            response = await http.get("/v1/referrals", params={"subject_id": subject_id}, headers=headers)
            found = response.json()["items"]
            if done(found):
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"referrals of {subject_id} never got there: {found}")
            await asyncio.sleep(0.5)


def of(found: list[dict], service: str) -> list[dict]:
    return [r for r in found if r["referral_service"] == service]


async def test_an_overdue_infant_gets_exactly_one_tracing_referral_closed_when_the_result_arrives(
    platform, issuer: testing.TestIssuer
) -> None:
    client_ref, infant_ref = unique("ANC"), unique("HEI")
    # A mother on ART for a year, suppressed before delivery; her baby born twelve weeks ago has
    # no 6-week NAT on record: its window (4-8 weeks) plus the grace period is over.
    mother = {"client_ref": client_ref}
    [enrolled, _, delivered] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "ClientEnrolled",
            ago(140),
            {
                "age_years": 27,
                "status_at_enrolment": "pregnant",
                "hiv_status": "positive",
                "hiv_status_known_since": (datetime.now(UTC) - timedelta(days=500)).date().isoformat(),
                "on_art": True,
                "art_start_date": (datetime.now(UTC) - timedelta(days=400)).date().isoformat(),
                "gestation_weeks": 20,
            },
            **mother,
        ),
        emr_event("ViralLoadRecorded", ago(100), {"copies_per_ml": 40}, **mother),
        emr_event(
            "DeliveryRecorded",
            ago(84),
            {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [{"infant_ref": infant_ref, "sex": "female", "outcome": "live_birth"}],
            },
            **mother,
        ),
    )
    infant_id = delivered["infants"][0]["infant_id"]

    traced = await referrals_until(platform, issuer, infant_id, lambda f: len(of(f, "community_tracing")) >= 1)
    [tracing] = of(traced, "community_tracing")
    assert (tracing["status"], tracing["origin"], tracing["subject_type"]) == ("requested", "automatic", "infant")
    assert tracing["client_id"] == enrolled["client_id"]
    assert tracing["reason_code"].endswith("_overdue")

    await post_events(
        platform,
        issuer,
        "followup",
        emr_event(
            "InfantTestResulted",
            ago(0.1),
            {"test": "NAT", "result": "negative", "confirmatory": False},
            infant_id=infant_id,
        ),
    )
    closed = await referrals_until(
        platform, issuer, infant_id, lambda f: all(r["status"] == "completed" for r in of(f, "community_tracing"))
    )
    [tracing] = of(closed, "community_tracing")
    assert (tracing["status"], tracing["outcome_code"]) == ("completed", "test_resulted")
    assert all(r["status"] == "completed" for r in of(closed, "eid_sample_collection"))


async def test_a_positive_mother_without_art_gets_an_art_referral_closed_when_art_starts(
    platform, issuer: testing.TestIssuer
) -> None:
    mother = {"client_ref": unique("ANC")}
    # Posted late by an offline clinic: tested positive 8 days ago, no ART start since, and the
    # ART wait (PMTCT_ART_INITIATION_WAIT_DAYS, default 7) counts from the test.
    [enrolled, _] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "ClientEnrolled",
            ago(8.5),
            {"age_years": 22, "status_at_enrolment": "pregnant", "hiv_status": "unknown", "on_art": False},
            **mother,
        ),
        emr_event("HivTestRecorded", ago(8), {"result": "positive", "setting": "anc"}, **mother),
    )
    client_id = enrolled["client_id"]

    opened = await referrals_until(platform, issuer, client_id, lambda f: len(of(f, "art_initiation")) == 1)
    [art] = of(opened, "art_initiation")
    assert (art["status"], art["reason_code"], art["urgency"]) == ("requested", "new_hiv_diagnosis", "urgent")

    await post_events(platform, issuer, "enrolment", emr_event("ArtInitiated", ago(0.01), {}, client_id=client_id))
    closed = await referrals_until(
        platform, issuer, client_id, lambda f: of(f, "art_initiation")[0]["status"] == "completed"
    )
    assert [(r["status"], r["outcome_code"]) for r in of(closed, "art_initiation")] == [("completed", "art_initiated")]


def voiding(event_id: str) -> dict[str, Any]:
    """The EMR voids an event it posted, entered in error (docs/emr-intake.md, Corrections)."""
    return emr_event("EventVoided", ago(0.01), {"voided_event_id": event_id, "reason": "entered_in_error"})


async def test_a_voided_positive_test_cancels_her_art_referral_and_a_voided_art_start_reopens_it(
    platform, issuer: testing.TestIssuer
) -> None:
    """Issue 17 through the real services: enrolment publishes ClientEventVoided with the CloudEvent
    ids the voided event had published, and referrals takes back what those did."""
    diagnosed = []
    for _ in range(2):
        mother = {"client_ref": unique("ANC")}
        [enrolled, test] = await post_events(
            platform,
            issuer,
            "enrolment",
            emr_event(
                "ClientEnrolled",
                ago(8.5),
                {"age_years": 22, "status_at_enrolment": "pregnant", "hiv_status": "unknown", "on_art": False},
                **mother,
            ),
            emr_event("HivTestRecorded", ago(8), {"result": "positive", "setting": "anc"}, **mother),
        )
        diagnosed.append((enrolled["client_id"], test["event_id"]))
    (mistyped, test_id), (treated, _) = diagnosed
    for client_id, _ in diagnosed:
        await referrals_until(platform, issuer, client_id, lambda f: len(of(f, "art_initiation")) == 1)

    # her positive test was entered in error: her ART referral is cancelled so
    await post_events(platform, issuer, "enrolment", voiding(test_id))
    found = await referrals_until(
        platform, issuer, mistyped, lambda f: of(f, "art_initiation")[0]["status"] == "cancelled"
    )
    assert [(r["status"], r["outcome_code"]) for r in of(found, "art_initiation")] == [
        ("cancelled", "entered_in_error")
    ]

    # the other's ART start was entered in error: her ART referral, completed by it, is open again
    [art] = await post_events(
        platform, issuer, "enrolment", emr_event("ArtInitiated", ago(0.02), {}, client_id=treated)
    )
    await referrals_until(platform, issuer, treated, lambda f: of(f, "art_initiation")[0]["status"] == "completed")
    await post_events(platform, issuer, "enrolment", voiding(art["event_id"]))
    found = await referrals_until(
        platform, issuer, treated, lambda f: of(f, "art_initiation")[0]["status"] == "requested"
    )
    [reopened] = of(found, "art_initiation")
    assert (reopened["outcome_code"], reopened["closed_at"], reopened["version"]) == (None, None, 3)


async def test_a_voided_positive_test_cancels_her_infants_sample_collection_and_tracing_and_nothing_stays_open(
    platform, issuer: testing.TestIssuer
) -> None:
    """Issue 17, between follow-up and referrals: her baby, 100 days old, became HIV-exposed when she
    tested positive while breastfeeding 20 days ago (at 80 days); its entry NAT is due (window
    80-94 days, overdue at 108: referrals collects the sample) and its 10-week HEI visit overdue
    (window 70-84 days, grace 14: traced). Her only positive test was entered in error: the baby is
    not HIV-exposed, follow-up ends its follow-up and withdraws the announcements (entered_in_error),
    and referrals cancels what they opened, and her ART referral, so: nothing stays open."""
    mother = {"client_ref": unique("ANC")}
    [enrolled, _, delivered, positive] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "ClientEnrolled",
            ago(290),
            {
                "age_years": 24,
                "status_at_enrolment": "pregnant",
                "hiv_status": "unknown",
                "on_art": False,
                "gestation_weeks": 12,
            },
            **mother,
        ),
        emr_event("HivTestRecorded", ago(289), {"result": "negative", "setting": "anc"}, **mother),
        emr_event(
            "DeliveryRecorded",
            ago(100),
            {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [{"infant_ref": unique("HEI"), "sex": "male", "outcome": "live_birth"}],
            },
            **mother,
        ),
        emr_event("HivTestRecorded", ago(20), {"result": "positive", "setting": "postnatal"}, **mother),
    )
    client_id, infant_id = enrolled["client_id"], delivered["infants"][0]["infant_id"]

    def announced(found: list[dict]) -> bool:
        return len(of(found, "eid_sample_collection")) == 1 and len(of(found, "community_tracing")) == 1

    found = await referrals_until(platform, issuer, infant_id, announced)
    [sample], [tracing] = of(found, "eid_sample_collection"), of(found, "community_tracing")
    assert (sample["status"], sample["reason_code"]) == ("requested", "entry_nat_due")
    assert (tracing["status"], tracing["reason_code"]) == ("requested", "hei_visit_overdue")
    await referrals_until(platform, issuer, client_id, lambda f: len(of(f, "art_initiation")) == 1)

    await post_events(platform, issuer, "enrolment", voiding(positive["event_id"]))

    found = await referrals_until(
        platform, issuer, infant_id, lambda f: all(r["status"] == "cancelled" for r in f), timeout_s=120
    )
    assert sorted((r["referral_service"], r["status"], r["outcome_code"]) for r in found) == [
        ("community_tracing", "cancelled", "entered_in_error"),
        ("eid_sample_collection", "cancelled", "entered_in_error"),
    ]
    hers = await referrals_until(
        platform, issuer, client_id, lambda f: of(f, "art_initiation")[0]["status"] == "cancelled"
    )
    assert [(r["status"], r["outcome_code"]) for r in of(hers, "art_initiation")] == [("cancelled", "entered_in_error")]
