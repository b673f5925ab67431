"""Infant events posted before follow-up knows their infant (its delivery still on its way, or its
mother's positive status not recorded yet) are held as `pending` and applied, in the order they
happened, when the enrolment stream makes the infant an HEI (servicekit.pending)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from followup_support import FACILITY, at, days_ago, live_infant, new_mother, well_treated
from sqlalchemy import text

from pmtct_events.enrolment import HivStatus


def event(type: str, on, data: dict | None = None, **subject) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "facility_id": FACILITY,
        "occurred_at": at(on).isoformat(),
        **subject,
        "data": data or {},
    }


async def state(followup, event_id: str) -> dict:
    response = await followup.http.get(f"/v1/events/{event_id}", headers=followup.headers())
    assert response.status_code == 200, response.text
    return response.json()


async def test_events_for_an_infant_not_delivered_yet_are_held_and_applied_with_its_delivery(followup) -> None:
    ref = f"HEI-{uuid.uuid4().hex[:8]}"
    birth = days_ago(40)
    nat = event(
        "InfantTestResulted",
        birth + timedelta(days=30),
        {"test": "NAT", "result": "negative", "confirmatory": False},
        infant_ref=ref,
    )
    visit = event("InfantVisitRecorded", birth + timedelta(days=3), infant_ref=ref)

    body = (await followup.post([nat, visit])).json()
    assert (body["pending"], body["accepted"]) == (2, 0)
    assert {r["code"] for r in body["results"]} == {"awaiting_infant"}
    assert (await state(followup, nat["event_id"]))["status"] == "pending"
    async with followup.sessions() as session:
        query = text("SELECT body::text FROM intake_pending WHERE event_id = CAST(:e AS uuid)")
        stored = (await session.execute(query, {"e": nat["event_id"]})).scalar_one()
    assert ref not in stored, "a held infant event keeps no EMR record number in follow-up's schema"
    again = (await followup.post([visit])).json()["results"][0]
    assert (again["status"], again["code"]) == ("duplicate", "awaiting_infant")

    mother, baby = new_mother(), live_infant(followup.settings.hmac_key, FACILITY, ref)
    await followup.apply(mother.delivered(birth, [baby], **well_treated(birth)), settings=followup.settings)

    for posted in (visit, nat):
        done = await state(followup, posted["event_id"])
        assert (done["status"], done["ids"]) == ("accepted", {"infant_id": str(baby.infant_id)}), done
    names = await followup.emitted_names([baby.infant_id])
    assert names.index("InfantVisitRecorded") < names.index("InfantTestResulted"), "in the order they happened"
    record = await followup.infant(baby.infant_id)
    assert any(r["test"] == "NAT" for r in record["results"])
    # the same event resent naming the infant by its id now is the duplicate of the recorded one
    by_id = {k: v for k, v in nat.items() if k != "infant_ref"} | {"infant_id": str(baby.infant_id)}
    assert (await followup.post([by_id])).json()["results"][0]["status"] == "duplicate"


async def test_an_infant_followed_once_its_mother_is_known_positive_gets_the_events_held_for_it(followup) -> None:
    mother, baby = new_mother(), live_infant()
    birth = days_ago(60)
    await followup.apply(mother.delivered(birth, [baby], hiv_status=HivStatus.negative), settings=followup.settings)
    visit = event("InfantVisitRecorded", birth + timedelta(days=20), infant_id=str(baby.infant_id))

    held = (await followup.post([visit])).json()["results"][0]
    assert (held["status"], held["code"], held["infant_id"]) == ("pending", "awaiting_infant", str(baby.infant_id))

    # her positive test, dated before the delivery, reaches follow-up after it (a backlog)
    await followup.apply(mother.tested(birth - timedelta(days=100)), settings=followup.settings)

    assert (await state(followup, visit["event_id"]))["status"] == "accepted"
    assert "InfantVisitRecorded" in await followup.emitted_names([baby.infant_id])
