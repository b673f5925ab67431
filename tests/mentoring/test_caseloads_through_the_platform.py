"""Through the real services (enrolment, follow-up as processes, the real broker): staff,
caseloads, a Mentor Mother's worklist and the one audited read of whom its rows are about."""

from __future__ import annotations

import pytest
from mentoring_support import FACILITY, OTHER, Programme, ago, event, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def programme(platform, issuer) -> Programme:
    return Programme(platform, issuer)


async def test_a_mentor_mothers_token_sees_only_her_caseload_and_reads_only_its_personal_data(
    programme: Programme,
) -> None:
    mine_mm, other_mm = await programme.staff("mentor_mother"), await programme.staff("mentor_mother")
    coordinator = await programme.staff("site_coordinator", prefix="SC")
    hers, hers_infant = await programme.mother(60, given_name="Thandiwe", family_name="Banda", phone="+265 991 000 111")
    not_hers, _ = await programme.mother(45, given_name="Grace", family_name="Phiri")
    await programme.assign(hers, mine_mm, programme.app(coordinator))
    await programme.assign(not_hers, other_mm, programme.app(coordinator))

    async with programme.http("followup") as http:
        r = await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(mine_mm))
    assert r.status_code == 200, r.text
    worklist = r.json()
    assert (worklist["staff_id"], worklist["role"], worklist["facility_id"]) == (mine_mm, "mentor_mother", FACILITY)
    assert worklist["client_ids"] == [hers]
    assert worklist["items"], "a baby of two months with no 6-week NAT on record is due or overdue"
    assert {i["client_id"] for i in worklist["items"]} == {hers}
    assert hers_infant in {i["subject_id"] for i in worklist["items"]}

    # her site coordinator reads the same worklist by her staff id; another Mentor Mother may not
    async with programme.http("followup") as http:
        by_coordinator = await http.get("/v1/worklist", params={"mentor": mine_mm}, headers=programme.app(coordinator))
        by_peer = await http.get("/v1/worklist", params={"mentor": mine_mm}, headers=programme.app(other_mm))
    assert by_coordinator.status_code == 200 and by_coordinator.json()["client_ids"] == [hers]
    assert by_peer.status_code == 403 and by_peer.json()["code"] == "not_coordinator"

    async def read() -> dict | None:
        async with programme.http("enrolment") as http:
            r = await http.post(
                "/v1/caseload/personal-data",
                json={"client_ids": [hers, not_hers], "purpose": "home visits today"},
                headers=programme.app(mine_mm),
            )
        # the caseload is on its way from follow-up: until it arrives nothing of hers is readable
        return r.json() if r.status_code == 200 else None

    body = await eventually(read, "enrolment knows her caseload")
    [client] = body["clients"]
    assert (client["client_id"], client["given_name"], client["family_name"]) == (hers, "Thandiwe", "Banda")
    assert client["phone"] == "+265 991 000 111" and client["client_ref"].startswith("ANC-")
    assert body["not_in_caseload"] == [not_hers]

    async with programme.http("enrolment") as http:
        audit = await http.get("/v1/audit", params={"caller": mine_mm}, headers=programme.admin)
    assert [(a["client_id"], a["access"], a["purpose"]) for a in audit.json()] == [
        (hers, "caseload", "home visits today")
    ]


async def test_a_mother_who_enrols_is_put_in_a_mentor_mothers_caseload_by_the_rule(programme: Programme) -> None:
    coordinator = await programme.staff("site_coordinator", prefix="SC")
    client, _ = await programme.mother(None)

    async def assigned() -> dict | None:
        async with programme.http("followup") as http:
            r = await http.get(f"/v1/clients/{client}/mentor", headers=programme.app(coordinator))
        return r.json() if r.status_code == 200 else None

    assignment = await eventually(assigned, "the enrolment reached follow-up")
    assert (assignment["reason"], assignment["facility_id"]) == ("rule", FACILITY)
    async with programme.http("followup") as http:
        staff = (
            await http.get("/v1/staff", params={"facility_id": FACILITY}, headers=programme.app(coordinator))
        ).json()
    mentors = {s["staff_id"] for s in staff if s["role"] == "mentor_mother" and s["active"]}
    assert assignment["staff_id"] in mentors


async def test_a_token_for_another_facility_or_of_nobody_on_the_staff_is_refused_with_a_problem(
    programme: Programme,
) -> None:
    mm = await programme.staff("mentor_mother")
    async with programme.http("followup") as http:
        elsewhere = await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(mm, OTHER))
        stranger = await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app("MM-NOBODY"))
    assert elsewhere.status_code == 403
    assert elsewhere.headers["content-type"].startswith("application/problem+json")
    assert elsewhere.json()["code"] == "facility_forbidden" and FACILITY in elsewhere.json()["detail"]
    assert stranger.status_code == 403 and stranger.json()["code"] == "not_staff"


async def test_a_mentor_mother_who_leaves_hands_her_caseload_to_the_least_loaded_who_stays(
    programme: Programme,
) -> None:
    leaving = await programme.staff("mentor_mother", facility="FAC-KE-003")
    coordinator = await programme.staff("site_coordinator", facility="FAC-KE-003", prefix="SC")
    client, _ = await programme.mother(None, facility="FAC-KE-003")
    await programme.assign(client, leaving, programme.app(coordinator, "FAC-KE-003"))

    async with programme.http("followup") as http:
        r = await http.put(
            f"/v1/staff/{leaving}",
            json={"role": "mentor_mother", "facility_id": "FAC-KE-003", "active": False},
            headers=programme.admin,
        )
        assert r.status_code == 200 and r.json()["clients_reassigned"] == 1
        caseload = await http.get(f"/v1/staff/{leaving}/caseload", headers=programme.app(coordinator, "FAC-KE-003"))
        gone = await http.get("/v1/worklist", params={"mentor": "me"}, headers=programme.app(leaving, "FAC-KE-003"))
    assert caseload.json()["count"] == 0
    assert gone.status_code == 403 and gone.json()["code"] == "not_staff"


async def test_a_mother_who_transfers_out_leaves_her_mentor_mothers_caseload(programme: Programme) -> None:
    mm = await programme.staff("mentor_mother")
    coordinator = await programme.staff("site_coordinator", prefix="SC")
    client, _ = await programme.mother(30)
    await programme.assign(client, mm, programme.app(coordinator))
    await programme.post(
        "enrolment", event("ClientTransferredOut", ago(0.1), {"to_facility_id": OTHER}, client_id=client)
    )

    async def released() -> dict | None:
        async with programme.http("followup") as http:
            r = await http.get(f"/v1/clients/{client}/mentor", headers=programme.app(coordinator))
        body = r.json()
        return body if body["staff_id"] is None else None

    assignment = await eventually(released, "the transfer reached follow-up")
    assert (assignment["reason"], assignment["facility_id"]) == ("transferred", FACILITY)
    async with programme.http("followup") as http:
        caseload = (await http.get("/v1/staff/me/caseload", headers=programme.app(mm))).json()
    assert client not in {c["client_id"] for c in caseload["clients"]}
