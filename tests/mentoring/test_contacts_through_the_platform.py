"""Through the real services: what a Mentor Mother's app posts (`POST /v1/contacts` on follow-up)
and what it does: interactions counted once by reporting, a CMM's tracing outcome closing the
tracing referral and returning the infant to follow-up, a partner's positive test referred for ART
until linked, and a record for another facility's client refused."""

from __future__ import annotations

from datetime import date

import pytest
from mentoring_support import FACILITY, OTHER, Programme, ago, event, eventually, of

pytestmark = pytest.mark.e2e


@pytest.fixture
def programme(platform, issuer) -> Programme:
    return Programme(platform, issuer)


def contact(kind: str, days_ago: float, client_id: str, **data) -> dict:
    return event("ContactRecorded", ago(days_ago), {"kind": kind, **data}, client_id=client_id)


def month(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


async def interactions_of(programme: Programme, staff_id: str, months: set[str]) -> int:
    total = 0
    for m in sorted(months):
        figures = await programme.figures(FACILITY, m)
        total += sum(r["count"] for r in figures["interactions_by_staff"] if r["key"] == staff_id)
    return total


async def test_a_days_contacts_with_last_weeks_backfill_posted_twice_are_counted_once(programme: Programme) -> None:
    mm = await programme.staff("mentor_mother")
    first, _ = await programme.mother(30)
    second, _ = await programme.mother(20)
    today = [
        contact("home_visit", 0.2, first, topics=["infant_feeding", "art_adherence"]),
        contact("adherence_counselling", 0.1, second, topics=["viral_load"]),
        contact("phone_follow_up", 0.05, first),
    ]
    last_week = [contact("one_to_one_education", 7, second, topics=["pmtct"]), contact("couples_session", 6, first)]
    batch = today + last_week  # the app was offline last week: it sends those with today's

    async def accepted() -> dict | None:
        async with programme.http("followup") as http:
            r = await http.post("/v1/contacts", json={"events": batch}, headers=programme.app(mm))
        body = r.json()
        # her clients' enrolments are on their way to follow-up: until then they are unknown_client (a
        # retry after one of them arrived finds the other's contacts recorded: duplicates, same ids)
        return body if body["accepted"] + body["duplicate"] == 5 else None

    reply = await eventually(accepted, "follow-up knows her clients")
    assert [r["client_id"] for r in reply["results"]] == [first, second, first, second, first]
    again = await programme.records(mm, *batch)
    assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 5, 0)

    # one more contact for each client after the repeat: when reporting has these, it has seen
    # anything the repeat could have caused (events of a client travel in order)
    await programme.records(mm, contact("home_visit", 0.01, first), contact("home_visit", 0.01, second))
    months = {month(ago(d).date()) for d in (0.01, 0.05, 0.1, 0.2, 6, 7)}

    async def counted() -> int | None:
        n = await interactions_of(programme, mm, months)
        return n if n >= 7 else None

    assert await eventually(counted, "reporting counted her contacts") == 7


async def test_a_cmms_found_back_in_care_completes_the_tracing_referral_and_three_not_found_confirm_lost(
    programme: Programme,
) -> None:
    cmm = await programme.staff("community_mentor_mother", prefix="CMM")
    # born 200 days ago, no visit since: the 6-week NAT long overdue, silent for more than 90 days
    mother, infant = await programme.mother(200)
    other_mother, other_infant = await programme.mother(200)
    assert infant is not None and other_infant is not None

    async def on_the_tracing_list() -> dict | None:
        async with programme.http("followup") as http:
            r = await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(cmm))
        tasks = {t["subject_id"]: t for t in r.json()["tracing"]}
        return tasks if {infant, other_infant} <= set(tasks) else None

    tasks = await eventually(on_the_tracing_list, "both infants are lost and on the CMM's tracing list", timeout_s=90)
    assert (tasks[infant]["subject_type"], tasks[infant]["client_id"], tasks[infant]["attempts"]) == (
        "infant",
        mother,
        0,
    )
    for subject in (infant, other_infant):
        [opened] = of(
            await programme.referrals(subject, lambda f: len(of(f, "community_tracing")) == 1), "community_tracing"
        )
        assert opened["status"] == "requested"

    def attempt(days_ago: float, outcome: str, subject: str, client: str, **data) -> dict:
        return event(
            "TracingAttemptRecorded",
            ago(days_ago),
            {"outcome": outcome, "infant_id": subject, **data},
            client_id=client,
        )

    found = attempt(0.05, "found_back_in_care", infant, mother, returned_on=ago(0).date().isoformat())
    # posted in any order: taken in the order they happened
    reply = await programme.records(
        cmm,
        found,
        attempt(0.1, "not_found", infant, mother),
        attempt(2, "not_found", other_infant, other_mother),
        attempt(1, "not_found", other_infant, other_mother),
    )
    assert reply["accepted"] == 4
    async with programme.http("followup") as http:
        worklist = (await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(cmm))).json()
    [still] = [t for t in worklist["tracing"] if t["subject_id"] == other_infant]
    assert (still["attempts"], still["failed_attempts"]) == (2, 2)
    third = await programme.records(cmm, attempt(0.01, "not_found", other_infant, other_mother))
    assert third["accepted"] == 1

    closed = await programme.referrals(infant, lambda f: of(f, "community_tracing")[0]["status"] != "requested")
    [tracing] = of(closed, "community_tracing")
    assert (tracing["status"], tracing["outcome_code"]) == ("completed", "found_back_in_care")
    lost = await programme.referrals(other_infant, lambda f: of(f, "community_tracing")[0]["status"] != "requested")
    [tracing] = of(lost, "community_tracing")
    assert (tracing["status"], tracing["outcome_code"]) == ("declined", "confirmed_lost")
    async with programme.http("followup") as http:
        record = (await http.get(f"/v1/infants/{infant}", headers=programme.app(cmm))).json()
        worklist = (await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(cmm))).json()
    assert (record["status"], record["lost_since"], record["last_seen_on"]) == (
        "active",
        None,
        ago(0).date().isoformat(),
    )
    assert {infant, other_infant}.isdisjoint(t["subject_id"] for t in worklist["tracing"])


async def test_an_index_clients_partner_who_tests_positive_is_referred_for_art_until_linked(
    programme: Programme,
) -> None:
    mm = await programme.staff("mentor_mother")
    index_client, _ = await programme.mother(40)
    partner = {"contact_ref": "PARTNER-0017"}

    async def elicited() -> dict | None:
        async with programme.http("followup") as http:
            r = await http.post(
                "/v1/contacts",
                json={
                    "events": [
                        event(
                            "IndexContactElicited",
                            ago(3),
                            {**partner, "relationship": "partner"},
                            client_id=index_client,
                        ),
                        event("IndexContactInvited", ago(3), partner, client_id=index_client),
                    ]
                },
                headers=programme.app(mm),
            )
        body = r.json()
        return body if body["accepted"] == 2 else None

    reply = await eventually(elicited, "follow-up knows the index client")
    contact_id = reply["results"][0]["contact_id"]
    assert reply["results"][1]["contact_id"] == contact_id and "PARTNER" not in contact_id
    [testing] = of(
        await programme.referrals(contact_id, lambda f: len(of(f, "partner_family_testing")) == 1),
        "partner_family_testing",
    )
    assert (testing["subject_type"], testing["client_id"], testing["reason_code"]) == (
        "contact",
        index_client,
        "index_contact_partner",
    )

    await programme.records(
        mm, event("IndexContactTested", ago(1), {**partner, "result": "positive"}, client_id=index_client)
    )
    tested = await programme.referrals(contact_id, lambda f: len(of(f, "art_initiation")) == 1)
    [testing] = of(tested, "partner_family_testing")
    [art] = of(tested, "art_initiation")
    assert (testing["status"], testing["outcome_code"]) == ("completed", "contact_tested_positive")
    assert (art["status"], art["subject_type"], art["reason_code"]) == (
        "requested",
        "contact",
        "index_contact_positive",
    )

    await programme.records(mm, event("IndexContactLinked", ago(0.1), partner, client_id=index_client))
    linked = await programme.referrals(contact_id, lambda f: of(f, "art_initiation")[0]["status"] == "completed")
    assert [(r["status"], r["outcome_code"]) for r in of(linked, "art_initiation")] == [("completed", "art_initiated")]
    async with programme.http("followup") as http:
        contacts = (await http.get(f"/v1/clients/{index_client}/index-contacts", headers=programme.app(mm))).json()
    assert [(c["relationship"], c["result"], c["linked_on"]) for c in contacts] == [
        ("partner", "positive", ago(0.1).date().isoformat())
    ]


async def test_a_cmm_posting_for_a_client_of_another_facility_or_with_another_facilitys_token_is_refused(
    programme: Programme,
) -> None:
    cmm = await programme.staff("community_mentor_mother", prefix="CMM")
    elsewhere, _ = await programme.mother(None, facility=OTHER)
    attempt = event("TracingAttemptRecorded", ago(0.1), {"outcome": "not_found"}, client_id=elsewhere)

    async def refused() -> dict | None:
        body = await programme.records(cmm, attempt)
        result = body["results"][0]
        return result if result["code"] != "unknown_client" else None  # her enrolment on its way

    result = await eventually(refused, "follow-up knows the client")
    assert (result["status"], result["code"]) == ("rejected", "not_enrolled_at_facility")
    assert FACILITY in result["reason"] and cmm in result["reason"]

    async with programme.http("followup") as http:
        r = await http.post("/v1/contacts", json={"events": [attempt]}, headers=programme.app(cmm, OTHER))
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "facility_forbidden" and cmm in r.json()["detail"]
