"""The Mentor Mothers' programme figures (reporting's `GET /v1/programme`), exact on a cohort
written by hand: three mothers, two Mentor Mothers and a CMM at one facility, a month's records
posted through follow-up and counted by reporting, through the real services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mentoring_support import Programme, event, eventually

pytestmark = pytest.mark.e2e

FACILITY = "FAC-KE-002"  # no other test posts Mentor Mothers' records here


def when(days_ago: int, second: int = 0) -> datetime:
    """A moment this month (the period the figures are asked for): `days_ago`, but not before the
    1st; `second` orders records of one day."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(now - timedelta(days=days_ago, minutes=5), month_start) + timedelta(seconds=second)


def rec(type_: str, days_ago: int, client_id: str, data: dict, second: int = 0) -> dict:
    return event(type_, when(days_ago, second), data, facility=FACILITY, client_id=client_id)


async def test_the_programme_figures_of_a_hand_written_month(platform, issuer) -> None:
    programme = Programme(platform, issuer)
    mm_a = await programme.staff("mentor_mother", facility=FACILITY)
    mm_b = await programme.staff("mentor_mother", facility=FACILITY)
    cmm = await programme.staff("community_mentor_mother", facility=FACILITY, prefix="CMM")
    coordinator = await programme.staff("site_coordinator", facility=FACILITY, prefix="SC")
    m1, _ = await programme.mother(60, facility=FACILITY)
    m2, _ = await programme.mother(50, facility=FACILITY)
    m3, _ = await programme.mother(40, facility=FACILITY)
    by = programme.app(coordinator, FACILITY)
    for client, mentor in ((m1, mm_a), (m2, mm_a), (m3, mm_b)):
        await programme.assign(client, mentor, by)

    def contact(kind: str, days_ago: int, client: str, **data) -> dict:
        return rec("ContactRecorded", days_ago, client, {"kind": kind, **data})

    def group(kind: str, topic: str, attendance: int, present: list[str]) -> dict:
        data = {"kind": kind, "topic": topic, "attendance": attendance, "client_ids": present}
        return event("GroupSessionHeld", when(3), data, facility=FACILITY)

    def disclosure(days_ago: int, client: str, to: str, status: str, second: int = 0) -> dict:
        return rec("DisclosureRecorded", days_ago, client, {"to": to, "status": status}, second)

    def index(type_: str, client: str, ref: str, second: int, **data) -> dict:
        return rec(type_, 2, client, {"contact_ref": ref, **data}, second)

    def tracing(client: str, outcome: str, second: int) -> dict:
        return rec("TracingAttemptRecorded", 1, client, {"outcome": outcome}, second)

    a = await programme.records(
        mm_a,
        contact("one_to_one_education", 5, m1, topics=["pmtct"]),
        contact("home_visit", 4, m1),
        contact("adherence_counselling", 4, m2, topics=["viral_load"]),
        contact("disclosure_support", 3, m1, topics=["disclosure"]),
        group("group_session", "infant_feeding", 12, [m1, m2]),
        disclosure(3, m1, "partner", "not_disclosed"),
        disclosure(2, m1, "partner", "disclosed", second=1),  # later the same month: her latest
        disclosure(3, m2, "partner", "not_disclosed"),
        disclosure(3, m1, "family", "disclosed"),
        index("IndexContactElicited", m1, "P1", 1, relationship="partner"),
        index("IndexContactInvited", m1, "P1", 2),
        index("IndexContactTested", m1, "P1", 3, result="positive"),
        index("IndexContactLinked", m1, "P1", 4),
        index("IndexContactElicited", m1, "C1", 1, relationship="child"),
        index("IndexContactTested", m1, "C1", 2, result="negative"),
        index("IndexContactElicited", m2, "P2", 1, relationship="partner"),
        facility=FACILITY,
    )
    b = await programme.records(
        mm_b,
        contact("phone_follow_up", 5, m3),
        contact("couples_session", 4, m3, topics=["partner_testing"]),
        group("support_group", "stigma", 5, [m3]),
        disclosure(3, m3, "family", "not_disclosed"),
        index("IndexContactElicited", m3, "P3", 1, relationship="partner"),
        index("IndexContactTested", m3, "P3", 2, result="positive", known_positive=True),
        facility=FACILITY,
    )
    c = await programme.records(
        cmm,
        tracing(m2, "not_found", 1),
        tracing(m2, "found_back_in_care", 2),
        tracing(m3, "found_refused", 1),
        facility=FACILITY,
    )
    assert (a["accepted"], b["accepted"], c["accepted"]) == (16, 6, 3), (a, b, c)
    period = f"{when(0).year}-{when(0).month:02d}"

    async def arrived() -> dict | None:
        f = await programme.figures(FACILITY, period, min_contacts=4)
        return f if f["tracing"]["traced"] == 2 and f["interactions_total"] == 25 else None

    f = await eventually(arrived, "reporting has the month's records", timeout_s=90)

    by_kind = {r["key"]: r["count"] for r in f["interactions_by_kind"]}
    assert by_kind == {
        "one_to_one_education": 1,
        "home_visit": 1,
        "adherence_counselling": 1,
        "disclosure_support": 1,
        "phone_follow_up": 1,
        "couples_session": 1,
        "group_session": 12,  # everyone present counts, enrolled or not
        "support_group": 5,
        "tracing_visit": 2,  # found (back in care, refusing); not the attempt that did not find her
    }
    assert {r["month"] for r in f["interactions_by_kind"]} == {period}
    assert {r["key"]: r["count"] for r in f["interactions_by_staff"]} == {mm_a: 16, mm_b: 7, cmm: 2}
    # m1: 3 contacts + a group; m2: 1 contact + a group + found; m3: 2 contacts + a group + found
    assert f["reached"] == {"at_least_one": 3, "at_least_n": 2, "n": 4}
    assert f["disclosure"] == {
        "partner": {"recorded": 2, "disclosed": 1, "rate": 0.5},
        "family": {"recorded": 2, "disclosed": 1, "rate": 0.5},
    }
    assert f["index_testing"] == [
        {
            "relationship": "child",
            "elicited": 1,
            "invited": 0,
            "tested": 1,
            "new_positive": 0,
            "known_positive": 0,
            "linked": 0,
            "uptake": 1.0,
            "yield": 0.0,
        },
        {
            "relationship": "partner",
            "elicited": 3,
            "invited": 1,
            "tested": 1,
            "new_positive": 1,
            "known_positive": 1,
            "linked": 1,
            "uptake": 0.3333,
            "yield": 1.0,
        },
    ]
    assert f["children_tested"] == 1
    assert f["tracing"] == {
        "attempts": {"found_back_in_care": 1, "found_refused": 1, "not_found": 1},
        "traced": 2,
        "returned_to_care": 1,
        "confirmed_lost": 0,
        "returned_rate": 0.5,
    }
    caseloads = {c["staff_id"]: c["clients"] for c in f["caseloads"]}
    assert (caseloads.get(mm_a), caseloads.get(mm_b), caseloads.get(cmm)) == (2, 1, None)
