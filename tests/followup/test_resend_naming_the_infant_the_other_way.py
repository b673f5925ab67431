"""An honest resend naming the infant by `infant_id` instead of the `infant_ref` it was first posted
with (or the other way round) was answered `conflict`: it is the same event, a duplicate."""

from __future__ import annotations

import uuid
from datetime import timedelta

from followup_support import FACILITY, at, live_infant
from test_infant_events_api import born


async def test_a_resend_naming_the_same_infant_by_infant_id_instead_of_infant_ref_is_a_duplicate(followup) -> None:
    ref = f"HEI-{uuid.uuid4().hex[:8]}"
    _, baby, birth = await born(followup, 30, infant=live_infant(followup.settings.hmac_key, FACILITY, ref))
    by_ref = {
        "event_id": str(uuid.uuid4()),
        "type": "InfantVisitRecorded",
        "facility_id": FACILITY,
        "occurred_at": at(birth + timedelta(days=3)).isoformat(),
        "infant_ref": ref,
        "data": {},
    }
    [first] = await followup.accept([by_ref])
    by_id = {k: v for k, v in by_ref.items() if k != "infant_ref"} | {"infant_id": str(baby.infant_id)}
    other_day = {**by_id, "occurred_at": at(birth + timedelta(days=4)).isoformat()}

    body = (await followup.post([by_id, by_ref, other_day])).json()
    assert [(r["status"], r["code"], r["infant_id"]) for r in body["results"]] == [
        ("duplicate", None, first["infant_id"]),
        ("duplicate", None, first["infant_id"]),
        ("rejected", "conflict", None),  # other content under the same event_id is still a conflict
    ]
