"""Events an EMR posts before what they depend on (a backlog in any order): held as `pending`, in
enrolment's own schema, and applied when her enrolment (or the earlier fact) arrives, in the order
they happened; a resend is a duplicate or a conflict; `GET /v1/events/{event_id}` says what became
of each; a held event expires with `pending_expired` (servicekit.pending)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker

from servicekit import pending
from servicekit.db import create_engine


async def state(enrolment, event_id: str, facilities: list[str] | None = None) -> dict:
    response = await enrolment.http.get(f"/v1/events/{event_id}", headers=enrolment.headers(facilities=facilities))
    assert response.status_code == 200, response.text
    return response.json()


async def test_events_before_her_enrolment_are_held_then_applied_in_the_order_they_happened(enrolment, emr) -> None:
    ref = emr.ref()
    visit = emr.anc_visit(ref, emr.ago(80), visit_number=2)
    test = emr.hiv_test(ref, emr.ago(90))
    art = emr.art(ref, emr.ago(90))
    before = await enrolment.counts()

    response = await enrolment.post([visit, art, test])

    body = response.json()
    assert (body["accepted"], body["pending"], body["rejected"]) == (0, 3, 0)
    assert {(r["status"], r["code"]) for r in body["results"]} == {("pending", "awaiting_client")}
    assert "held until her enrolment" in body["results"][0]["reason"]
    assert await enrolment.counts() == before, "nothing is recorded while it is held"
    held = await state(enrolment, visit["event_id"])
    assert (held["status"], held["code"], held["ids"]) == ("pending", "awaiting_client", {})
    assert held["expires_at"] > held["held_since"]

    # a resend of a held event is a duplicate, still held; other content under its id is a conflict
    again = (await enrolment.post([visit])).json()["results"][0]
    assert (again["status"], again["code"]) == ("duplicate", "awaiting_client")
    changed = {**visit, "data": {"visit_number": 3}}
    assert (await enrolment.post([changed])).json()["results"][0]["code"] == "conflict"

    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(100))])
    client_id = enrolled["client_id"]

    for event in (visit, test, art):
        done = await state(enrolment, event["event_id"])
        assert (done["status"], done["ids"]) == ("accepted", {"client_id": client_id}), done
        assert done["held_since"] is not None and done["decided_at"] is not None
    # recorded with the dates they happened (the test and the ART start on the same day: same-day
    # ART; the order of two rows of one instant is the publication's, asserted below)
    rows = await enrolment.fetch(
        "SELECT type, occurred_at FROM client_events WHERE client_id = $1", uuid.UUID(client_id)
    )
    days = {r["type"]: r["occurred_at"] for r in rows}
    assert len(rows) == 4 and days["ClientEnrolled"] < days["HivTestRecorded"] == days["ArtInitiated"]
    assert days["ArtInitiated"] < days["AncVisitRecorded"]
    # published in the order they happened: the ART start after the positive test it needs
    events = await enrolment.catalog_events({client_id}, expected=4)
    assert [e.event_name for e in events] == ["ClientEnrolled", "HivTestRecorded", "ArtInitiated", "AncVisitRecorded"]
    # and a resend now is the duplicate of the recorded event
    assert (await enrolment.post([visit])).json()["results"][0]["status"] == "duplicate"


async def test_an_art_start_before_the_positive_test_waits_for_it(enrolment, emr) -> None:
    ref = emr.ref()
    await enrolment.accept([emr.enrolment(ref, at=emr.ago(200))])
    art = emr.art(ref, emr.ago(50))

    held = (await enrolment.post([art])).json()["results"][0]
    assert (held["status"], held["code"]) == ("pending", "awaiting_earlier_event")
    assert "no positive HIV status" in held["reason"]

    await enrolment.accept([emr.hiv_test(ref, emr.ago(60))])

    assert (await state(enrolment, art["event_id"]))["status"] == "accepted"


async def test_a_held_event_expires_and_says_why(enrolment, emr) -> None:
    visit = emr.anc_visit(emr.ref(), emr.ago(10))
    assert (await enrolment.post([visit])).json()["results"][0]["status"] == "pending"
    engine = create_engine(enrolment.settings.database_url, "enrolment")
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        later = enrolment.settings.clock.now() + timedelta(days=enrolment.settings.intake_pending_ttl_days, hours=1)
        async with sessions() as session, session.begin():
            expired = await pending.expire_due(session, later)
    finally:
        await engine.dispose()

    assert visit["event_id"] in {str(h.event_id) for h in expired}
    gone = await state(enrolment, visit["event_id"])
    assert (gone["status"], gone["code"]) == ("expired", "pending_expired")
    assert "Held for 30 days" in gone["reason"] and "held until her enrolment" in gone["reason"]
    assert gone["expires_at"] is None


async def test_what_became_of_an_event_is_told_only_for_the_callers_facilities(enrolment, emr) -> None:
    enrolment_event = emr.enrolment(emr.ref(), at=emr.ago(30))
    [enrolled] = await enrolment.accept([enrolment_event])
    event_id = enrolment_event["event_id"]

    mine = await state(enrolment, str(event_id), facilities=[emr.facility_id])
    assert mine["ids"]["client_id"] == enrolled["client_id"]
    for facilities in (["FAC-ZA-002"], None):
        url = f"/v1/events/{event_id if facilities else '00000000-0000-0000-0000-000000000000'}"
        response = await enrolment.http.get(url, headers=enrolment.headers(facilities=facilities))
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "unknown_event"


def void(emr, event_id: str) -> dict:
    return emr.event("EventVoided", {"voided_event_id": event_id, "reason": "entered_in_error"}, occurred_at=emr.ago(1))


async def test_a_void_of_a_held_event_voids_it_where_it_is_held_and_it_is_never_applied(enrolment, emr) -> None:
    """A positive test entered in error for a woman whose enrolment is not posted yet: voided while
    held, it is never applied when her enrolment arrives (before, the void was refused
    `unknown_voided_event` and the EMR had to wait for the test to be applied, then void it)."""
    ref = emr.ref()
    test = emr.hiv_test(ref, emr.ago(90))
    visit = emr.anc_visit(ref, emr.ago(80), visit_number=2)
    held = (await enrolment.post([test, visit])).json()["results"]
    assert [r["status"] for r in held] == ["pending", "pending"]
    voiding = void(emr, test["event_id"])

    [answer] = (await enrolment.post([voiding])).json()["results"]

    assert answer["status"] == "accepted", answer
    assert "was held (awaiting_client), never applied" in answer["reason"]
    voided = await state(enrolment, test["event_id"])
    assert (voided["status"], voided["voided_by"], voided["ids"]) == ("voided", voiding["event_id"], {})
    assert voided["held_since"] is not None and voided["voided_at"] is not None
    # the same void again is a duplicate with the same answer; another void of it is refused
    [again] = (await enrolment.post([voiding])).json()["results"]
    assert (again["status"], again["reason"]) == ("duplicate", answer["reason"])
    [other] = (await enrolment.post([void(emr, test["event_id"])])).json()["results"]
    assert (other["status"], other["code"]) == ("rejected", "already_voided")
    assert voiding["event_id"] in other["reason"]

    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(100))])

    client_id = enrolled["client_id"]
    assert (await state(enrolment, visit["event_id"]))["status"] == "accepted"
    assert (await state(enrolment, test["event_id"]))["status"] == "voided"
    rows = await enrolment.fetch("SELECT type FROM client_events WHERE client_id = $1", uuid.UUID(client_id))
    assert sorted(r["type"] for r in rows) == ["AncVisitRecorded", "ClientEnrolled"]
    events = await enrolment.catalog_events({client_id}, expected=2, settle_s=1.0)
    assert [e.event_name for e in events] == ["ClientEnrolled", "AncVisitRecorded"], "nothing of the voided test"


async def test_a_dry_run_of_a_void_of_a_held_event_voids_nothing(enrolment, emr) -> None:
    ref = emr.ref()
    test = emr.hiv_test(ref, emr.ago(90))
    assert (await enrolment.post([test])).json()["results"][0]["status"] == "pending"
    response = await enrolment.http.post(
        "/v1/events?dry_run=true", json={"events": [void(emr, test["event_id"])]}, headers=enrolment.headers()
    )
    assert response.json()["results"][0]["status"] == "accepted"
    assert (await state(enrolment, test["event_id"]))["status"] == "pending"
