"""The referral lifecycle over HTTP: requested -> accepted -> completed, or declined / cancelled /
expired; every valid transition, every invalid one (409 with the current status)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from uuid import uuid4

import pytest
from conftest import FACILITY, OTHER_FACILITY, THIRD_FACILITY, Api, backdate_due, expire_now, feed_types, referral_body
from sqlalchemy import text

from referrals import timers

ACTIONS = ("accept", "complete", "decline", "cancel")

#: (path of actions from `requested`, the status it ends in)
STATES = {
    "requested": (),
    "accepted": ("accept",),
    "completed": ("accept", "complete"),
    "declined": ("decline",),
    "cancelled": ("cancel",),
    "expired": ("expire",),
}

VALID = {
    ("requested", "accept"): "accepted",
    ("requested", "complete"): "completed",
    ("requested", "decline"): "declined",
    ("requested", "cancel"): "cancelled",
    ("accepted", "complete"): "completed",
    ("accepted", "cancel"): "cancelled",
}
INVALID = [(state, action) for state in STATES for action in ACTIONS if (state, action) not in VALID]

OUTCOME = {"decline": "no_capacity", "cancel": "client_declined_service"}


async def referral_in(api: Api, state: str) -> dict:
    """A new referral from FAC-ZA-001 to FAC-ZA-002, brought into `state` by the receiving side or expiry."""
    r = await api.create()
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    for action in STATES[state]:
        if action == "expire":
            await backdate_due(api, r["id"])
            await expire_now(api, r["id"])
        else:
            response = await api.act(r["id"], action, both, outcome_code=OUTCOME.get(action))
            assert response.status_code == 200, response.text
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=api.national)).json()
    assert detail["status"] == state
    return detail


async def test_a_new_referral_is_requested_at_version_1_with_one_created_entry(api: Api) -> None:
    r = await api.create(note="Mother asked about an implant")
    assert (r["status"], r["version"], r["origin"]) == ("requested", 1, "manual")
    assert r["to_facility_id"] == OTHER_FACILITY and r["closed_at"] is None
    assert await feed_types(api, r["id"]) == ["ReferralCreated"]


@pytest.mark.parametrize("state, action", list(VALID))
async def test_every_valid_transition_moves_the_referral_and_publishes_one_change(
    api: Api, state: str, action: str
) -> None:
    r = await referral_in(api, state)
    receiving_and_referring = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    response = await api.act(r["id"], action, receiving_and_referring, outcome_code=OUTCOME.get(action))
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["status"] == VALID[(state, action)]
    assert after["version"] == r["version"] + 1
    assert (after["closed_at"] is None) == (after["status"] == "accepted")
    assert (await feed_types(api, r["id"]))[-1] == f"Referral{after['status'].capitalize()}"


@pytest.mark.parametrize("state", ["requested", "accepted"])
async def test_an_open_referral_past_its_due_date_expires_exactly_once(api: Api, state: str) -> None:
    r = await referral_in(api, state)
    await backdate_due(api, r["id"])
    # Two passes at once (two replicas) and the service's own timer loop: one expiry between them.
    await asyncio.gather(*(timers.expire_past_due(api.sessions, api.settings, date.today()) for _ in range(2)))
    detail = await expire_now(api, r["id"])
    assert (detail["status"], detail["version"]) == ("expired", r["version"] + 1)
    assert (await feed_types(api, r["id"])).count("ReferralExpired") == 1


async def test_a_referral_due_today_does_not_expire_today(api: Api) -> None:
    r = await api.create(due_by=date.today().isoformat())
    await timers.expire_past_due(api.sessions, api.settings, date.today())
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=api.national)).json()
    assert detail["status"] == "requested"


@pytest.mark.parametrize("state", ["completed", "declined", "cancelled"])
async def test_a_closed_referral_never_expires(api: Api, state: str) -> None:
    r = await referral_in(api, state)
    await backdate_due(api, r["id"])
    await timers.expire_past_due(api.sessions, api.settings, date.today())
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=api.national)).json()
    assert (detail["status"], detail["version"]) == (state, r["version"])


@pytest.mark.parametrize("state, action", INVALID)
async def test_every_invalid_transition_is_409_with_the_current_status(api: Api, state: str, action: str) -> None:
    r = await referral_in(api, state)
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    response = await api.act(r["id"], action, both, outcome_code=OUTCOME.get(action))
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["current_status"], problem["referral_id"]) == (
        "invalid_transition",
        state,
        r["id"],
    )
    assert state in problem["detail"]
    unchanged = (await api.http.get(f"/v1/referrals/{r['id']}", headers=api.national)).json()
    assert (unchanged["status"], unchanged["version"]) == (state, r["version"])


async def test_notes_stay_in_the_referrals_service_and_never_reach_the_feed_or_kafka(api: Api) -> None:
    r = await api.create(note="Lives behind the blue church, phone 0821234567")
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    await api.act(r["id"], "accept", both, note="Booked for Tuesday")
    detail = (await api.http.get(f"/v1/referrals/{r['id']}", headers=api.auth())).json()
    assert [h["note"] for h in detail["history"]] == [
        "Lives behind the blue church, phone 0821234567",
        "Booked for Tuesday",
    ]
    async with api.sessions() as session:
        feed = (await session.execute(text("SELECT data::text FROM feed_entry WHERE referral_id = :id"), r)).all()
        wire = (await session.execute(text("SELECT payload::text FROM outbox WHERE aggregate_id = :id"), r)).all()
    assert len(feed) == len(wire) == 2
    for (payload,) in feed + wire:
        assert "church" not in payload and "0821234567" not in payload and "Tuesday" not in payload


@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_declining_or_cancelling_needs_a_reason(api: Api, action: str) -> None:
    r = await api.create()
    response = await api.act(r["id"], action, api.auth(facilities=[FACILITY, OTHER_FACILITY]))
    assert response.status_code == 422 and response.json()["code"] == "outcome_required"


async def test_the_action_time_and_outcome_are_recorded(api: Api) -> None:
    r = await api.create(requested_at="2026-01-05T07:00:00Z", due_by=date.today().isoformat())
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    accepted = (await api.act(r["id"], "accept", both, at="2026-01-06T08:00:00+02:00")).json()
    assert accepted["accepted_at"] == "2026-01-06T06:00:00Z"
    done = (await api.act(r["id"], "complete", both, outcome_code="implant_inserted")).json()
    assert (done["status"], done["outcome_code"]) == ("completed", "implant_inserted")
    history = (await api.http.get(f"/v1/referrals/{r['id']}", headers=both)).json()["history"]
    assert [(h["action"], h["status"], h["actor"]) for h in history] == [
        ("request", "requested", "clinic"),
        ("accept", "accepted", "clinic"),
        ("complete", "completed", "clinic"),
    ]


@pytest.mark.parametrize(
    "at, code",
    [("2099-01-01T00:00:00Z", "occurred_in_future"), ("2020-01-01T00:00:00Z", "time_before_request")],
)
async def test_an_action_time_outside_the_referral_s_life_is_rejected(api: Api, at: str, code: str) -> None:
    r = await api.create()
    response = await api.act(r["id"], "accept", api.auth(facilities=[OTHER_FACILITY]), at=at)
    assert response.status_code == 422 and response.json()["code"] == code


async def test_a_second_open_referral_for_the_same_need_is_409_naming_the_open_one(api: Api) -> None:
    first = await api.create()
    again = await api.http.post(
        "/v1/referrals", json=referral_body(subject_id=first["subject_id"], to_facility_id=None), headers=api.auth()
    )
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["referral_id"]) == ("referral_already_open", first["id"])
    await api.act(first["id"], "cancel", outcome_code="entered_in_error")
    reopened = await api.create(subject_id=first["subject_id"])
    assert reopened["id"] != first["id"]


async def test_only_the_receiving_facility_accepts_or_declines_and_only_the_referrer_cancels(api: Api) -> None:
    r = await api.create()
    referrer, receiver = api.auth(facilities=[FACILITY]), api.auth(facilities=[OTHER_FACILITY])
    assert (await api.act(r["id"], "accept", referrer)).status_code == 403
    assert (await api.act(r["id"], "accept", receiver)).status_code == 200
    assert (await api.act(r["id"], "cancel", receiver, outcome_code="x")).status_code == 403
    assert (await api.act(r["id"], "complete", receiver)).status_code == 200


async def test_another_facility_can_neither_see_nor_touch_a_referral(api: Api) -> None:
    r = await api.create()
    stranger = api.auth(facilities=[THIRD_FACILITY])
    assert (await api.http.get(f"/v1/referrals/{r['id']}", headers=stranger)).status_code == 404
    response = await api.act(r["id"], "complete", stranger)
    assert response.status_code == 404 and response.json()["code"] == "referral_not_found"
    listed = (await api.http.get("/v1/referrals", params={"subject_id": r["subject_id"]}, headers=stranger)).json()
    assert listed["items"] == []


async def test_writing_needs_referrals_write_and_reading_needs_referrals_read(api: Api) -> None:
    read_only = api.auth("referrals:read")
    response = await api.http.post("/v1/referrals", json=referral_body(), headers=read_only)
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
    assert (await api.http.get("/v1/referrals", headers=api.auth("referrals:write"))).status_code == 403
    assert (await api.http.get("/v1/referrals")).status_code == 401


async def test_a_clinic_cannot_refer_from_a_facility_it_does_not_act_for(api: Api) -> None:
    response = await api.http.post(
        "/v1/referrals", json=referral_body(from_facility_id=THIRD_FACILITY), headers=api.auth()
    )
    assert response.status_code == 403 and response.json()["code"] == "facility_forbidden"


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"from_facility_id": "FAC-XX-999"}, "unknown_facility"),
        ({"to_facility_id": "FAC-XX-999"}, "unknown_facility"),
        ({"due_by": (date.today() - timedelta(days=1)).isoformat()}, "due_by_before_request"),
        ({"requested_at": "2099-01-01T00:00:00Z"}, "occurred_in_future"),
        ({"referral_service": "astrology"}, "validation_failed"),
        ({"reason_code": "Has Spaces"}, "validation_failed"),
        ({"urgency": "whenever"}, "validation_failed"),
        ({"client_name": "Thandi"}, "validation_failed"),
    ],
)
async def test_bad_referrals_are_rejected_with_a_specific_code(api: Api, overrides: dict, code: str) -> None:
    response = await api.http.post("/v1/referrals", json=referral_body(**overrides), headers=api.auth())
    assert response.status_code in (403, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_an_unknown_referral_is_404_and_an_unknown_action_is_422(api: Api) -> None:
    response = await api.act(uuid4(), "accept")
    assert response.status_code == 404 and response.json()["code"] == "referral_not_found"
    r = await api.create()
    response = await api.act(r["id"], "expire")
    assert response.status_code == 422


async def test_referrals_are_listed_by_facility_status_and_subject(api: Api) -> None:
    r = await api.create()
    other = await api.create(subject_id=r["subject_id"], referral_service="tb_screening", to_facility_id=None)
    await api.act(other["id"], "accept")
    by_subject = {"subject_id": r["subject_id"]}
    mine = (await api.http.get("/v1/referrals", params=by_subject, headers=api.auth())).json()["items"]
    assert {i["id"] for i in mine} == {r["id"], other["id"]}
    accepted = await api.http.get("/v1/referrals", params={**by_subject, "status": "accepted"}, headers=api.auth())
    assert [i["id"] for i in accepted.json()["items"]] == [other["id"]]
    receiving = api.auth(facilities=[OTHER_FACILITY])
    theirs = (await api.http.get("/v1/referrals", params=by_subject, headers=receiving)).json()["items"]
    assert [i["id"] for i in theirs] == [r["id"]]
    national = await api.http.get(
        "/v1/referrals", params={**by_subject, "facility_id": OTHER_FACILITY}, headers=api.national
    )
    assert [i["id"] for i in national.json()["items"]] == [r["id"]]
    forbidden = await api.http.get("/v1/referrals", params={"facility_id": THIRD_FACILITY}, headers=api.auth())
    assert forbidden.status_code == 403
