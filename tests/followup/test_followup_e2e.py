"""Through the real broker with the services as real processes (`platform`): deliveries posted to
the enrolment service's API reach the follow-up process over `pmtct.enrolment.v1`, and its
announcements come out on `pmtct.followup.v1`.

The follow-up process runs with its production defaults: timers wait 15 s after a subject's last
input before announcing (`timer_settle_s`), hence the generous timeouts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pmtct_events import FOLLOWUP_TOPIC, CloudEvent
from pmtct_tools.testing import envelopes, read_topic

pytestmark = pytest.mark.e2e

FACILITY = "FAC-UG-001"
NOW = datetime.now(UTC).replace(microsecond=0)


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def emr_event(type: str, client_ref: str, days: int, data: dict) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "facility_id": FACILITY,
        "occurred_at": ago(days),
        "client_ref": client_ref,
        "data": data,
    }


def positive_mother_delivering(delivered_days_ago: int, viral_load: bool = True) -> list[dict]:
    """An HIV-positive mother on ART for a year, her delivery `delivered_days_ago`; without a viral
    load her baby is high risk (a NAT at birth as well as at 6 weeks)."""
    ref = f"ANC-{uuid.uuid4().hex[:10]}"
    enrolled = delivered_days_ago + 150
    events = [
        emr_event(
            "ClientEnrolled",
            ref,
            enrolled,
            {
                "given_name": "Achieng",
                "family_name": f"E2E{uuid.uuid4().hex[:6]}",
                "age_years": 26,
                "status_at_enrolment": "pregnant",
                "hiv_status": "positive",
                "hiv_status_known_since": (NOW - timedelta(days=enrolled + 700)).date().isoformat(),
                "on_art": True,
                "art_start_date": (NOW - timedelta(days=enrolled + 365)).date().isoformat(),
                "gestation_weeks": 18,
            },
        )
    ]
    if viral_load:
        events.append(emr_event("ViralLoadRecorded", ref, delivered_days_ago + 14, {"copies_per_ml": 50}))
    events.append(
        emr_event(
            "DeliveryRecorded",
            ref,
            delivered_days_ago,
            {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [{"infant_ref": f"HEI-{uuid.uuid4().hex[:10]}", "sex": "male", "outcome": "live_birth"}],
            },
        )
    )
    return events


async def deliver(platform, issuer, mothers: list[list[dict]]) -> list[str]:
    """Post the mothers' events to the enrolment process; returns the new infant ids."""
    events = [e for mother in mothers for e in mother]
    async with httpx.AsyncClient(base_url=platform.url("enrolment"), timeout=60) as http:
        response = await http.post(
            "/v1/events", json={"events": events}, headers=issuer.headers("events:write", [FACILITY])
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return [i["infant_id"] for r in results for i in (r.get("infants") or [])]


def followup_events(records, infant_ids: set[str]) -> list[CloudEvent]:
    return [ce for ce in envelopes(records) if ce.subject in infant_ids]


async def read_followup(platform, infant_ids: set[str], until, timeout_s: float = 90) -> list[CloudEvent]:
    records = await read_topic(
        platform.bootstrap_servers,
        FOLLOWUP_TOPIC,
        until=lambda rs: until(followup_events(rs, infant_ids)),
        timeout_s=timeout_s,
    )
    return followup_events(records, infant_ids)


async def test_a_delivery_posted_to_the_enrolment_process_starts_follow_up_and_announces_the_test_due(
    platform, issuer
) -> None:
    [infant_id] = await deliver(platform, issuer, [positive_mother_delivering(35)])

    def started_and_due(events: list[CloudEvent]) -> bool:
        names = {ce.event_name for ce in events}
        return {"InfantFollowUpStarted", "InfantTestDue"} <= names

    events = await read_followup(platform, {infant_id}, started_and_due)
    by_name = {ce.event_name: ce for ce in events}
    assert started_and_due(events), [ce.event_name for ce in events]
    started, due = by_name["InfantFollowUpStarted"], by_name["InfantTestDue"]
    assert started.type == "org.pmtct.followup.InfantFollowUpStarted.v1"
    assert started.source == "/services/followup" and started.facility_id == FACILITY
    assert started.causation_id is not None  # the DeliveryRecorded it came from
    assert started.data["high_risk"] is False
    assert (due.data["kind"], due.data["test"]) == ("nat_6_weeks", "NAT")
    assert due.data["item_id"] in {item["item_id"] for item in started.data["plan"]}
    assert [ce.event_name for ce in events].index("InfantFollowUpStarted") < [ce.event_name for ce in events].index(
        "InfantTestDue"
    ), "per-infant order on the wire"


def expected_announcements(started: CloudEvent) -> set[tuple[str, str]]:
    """A delivery twelve weeks ago: every planned test whose overdue date has passed is due and overdue."""
    today = NOW.date().isoformat()
    return {
        (name, item["item_id"])
        for item in started.data["plan"]
        if item["overdue_on"] <= today and item["test"] is not None  # an action without a test is the worklist's
        for name in ("InfantTestDue", "InfantTestOverdue")
    }


async def restart_followup(platform) -> None:
    platform.start_service("followup")
    await asyncio.to_thread(platform.wait_ready, ("followup",), 90)


def kill_followup(platform) -> None:
    process = platform.processes["followup"]
    process.kill()
    process.wait(10)


async def test_killing_the_follow_up_process_mid_stream_neither_drops_nor_repeats_a_due_or_overdue(
    platform, issuer
) -> None:
    """Killed (SIGKILL) twice: once while it consumes a burst of deliveries, once while its timers
    announce; more deliveries arrive while it is down and after. Every infant ends with each of its
    due and overdue announcements exactly once: one distinct CloudEvent id per (item, kind). (The
    relay is at-least-once on the wire: a copy re-sent after a kill carries the same id, and
    consumers deduplicate on it.)"""
    infants: set[str] = set()

    def burst(n: int) -> list[list[dict]]:
        return [positive_mother_delivering(84, viral_load=i % 2 == 0) for i in range(n)]

    try:
        first = set(await deliver(platform, issuer, burst(10)))
        infants |= first
        await read_followup(platform, first, lambda evs: any(ce.event_name == "InfantFollowUpStarted" for ce in evs))
        kill_followup(platform)

        infants |= set(await deliver(platform, issuer, burst(6)))
        await restart_followup(platform)
        await read_followup(platform, infants, lambda evs: any(ce.event_name == "InfantTestDue" for ce in evs))
        kill_followup(platform)
        await restart_followup(platform)
        infants |= set(await deliver(platform, issuer, burst(6)))
    finally:
        if platform.processes["followup"].poll() is not None:
            await restart_followup(platform)

    def complete(events: list[CloudEvent]) -> bool:
        started = {ce.subject: ce for ce in events if ce.event_name == "InfantFollowUpStarted"}
        if set(started) != infants:
            return False
        announced = {(ce.event_name, ce.data["item_id"]) for ce in events if "item_id" in ce.data}
        return all(expected_announcements(s) <= announced for s in started.values())

    events = await read_followup(platform, infants, complete, timeout_s=150)
    assert complete(events), "every infant started and every due and overdue announced"

    distinct_ids: dict[tuple[str, str], set] = defaultdict(set)
    started_ids: dict[str, set] = defaultdict(set)
    for ce in events:
        if ce.event_name in ("InfantTestDue", "InfantTestOverdue"):
            distinct_ids[(ce.event_name, ce.data["item_id"])].add(ce.id)
        if ce.event_name == "InfantFollowUpStarted":
            started_ids[ce.subject].add(ce.id)
    repeated = {key: ids for key, ids in distinct_ids.items() if len(ids) > 1}
    assert not repeated, f"announced more than once: {repeated}"
    assert all(len(ids) == 1 for ids in started_ids.values()), "each infant's follow-up started once"
    expected = set().union(*(expected_announcements(ce) for ce in events if ce.event_name == "InfantFollowUpStarted"))
    assert set(distinct_ids) == expected
    high_risk = sum(ce.data["high_risk"] for ce in events if ce.event_name == "InfantFollowUpStarted")
    assert len(expected) == 2 * len(infants) + 2 * high_risk  # 6-week NAT for all, birth NAT for the high-risk
