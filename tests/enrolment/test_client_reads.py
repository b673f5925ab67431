"""Reading a client: personal data only with `clients:read`, a stated purpose, and an audit entry."""

from __future__ import annotations

import uuid

PURPOSE = "tracing a missed ANC visit"


async def enrolled_woman(enrolment, emr, **data) -> tuple[dict, str]:
    ref = emr.ref()
    event = emr.enrolment(ref, at=emr.ago(120), **data)
    [result] = await enrolment.accept([event])
    return event, result["client_id"]


async def audit_of(enrolment, client_id: str) -> list[dict]:
    response = await enrolment.http.get(
        "/v1/audit", params={"client_id": client_id}, headers=enrolment.headers("admin", client_id="auditor")
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_reading_a_client_shows_her_personal_data_and_leaves_an_audit_entry(enrolment, emr) -> None:
    event, client_id = await enrolled_woman(
        enrolment, emr, hiv_status="positive", hiv_status_known_since="2021-02-03", on_art=True
    )
    reader = enrolment.headers("clients:read", ["FAC-ZA-001"], client_id="mentor-mother-app")

    response = await enrolment.http.get(f"/v1/clients/{client_id}", params={"purpose": PURPOSE}, headers=reader)

    assert response.status_code == 200, response.text
    body = response.json()
    data = event["data"]
    assert body["personal"] == {
        "given_name": data["given_name"],
        "family_name": data["family_name"],
        "phone": data["phone"],
        "national_id": data["national_id"],
        "birth_date": data["birth_date"],
        "birth_date_estimated": False,
    }
    assert body["registrations"][0]["client_ref"] == event["client_ref"]
    assert body["status"]["hiv_status"] == "positive"
    assert body["status"]["diagnosed_on"] == "2021-02-03"
    assert body["status"]["pregnancy"] == "pregnant"
    [entry] = await audit_of(enrolment, client_id)
    assert (entry["client_id"], entry["caller"], entry["purpose"], entry["access"]) == (
        client_id,
        "mentor-mother-app",
        PURPOSE,
        "by_client_id",
    )
    assert entry["read_at"]


async def test_a_client_is_found_by_the_emr_record_number_and_that_read_is_audited_too(enrolment, emr) -> None:
    event, client_id = await enrolled_woman(enrolment, emr)

    response = await enrolment.http.get(
        "/v1/clients",
        params={"facility_id": "FAC-ZA-001", "client_ref": event["client_ref"]},
        headers={**enrolment.headers("clients:read", ["FAC-ZA-001"]), "X-Purpose": "EMR reconciliation"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == client_id
    [entry] = await audit_of(enrolment, client_id)
    assert (entry["purpose"], entry["access"]) == ("EMR reconciliation", "by_client_ref")


async def test_personal_data_is_not_read_without_a_purpose_or_the_clients_read_scope(enrolment, emr) -> None:
    _, client_id = await enrolled_woman(enrolment, emr)

    no_purpose = await enrolment.http.get(f"/v1/clients/{client_id}", headers=enrolment.headers("clients:read"))
    writer_only = await enrolment.http.get(
        f"/v1/clients/{client_id}", params={"purpose": PURPOSE}, headers=enrolment.headers("events:write")
    )
    anonymous = await enrolment.http.get(f"/v1/clients/{client_id}", params={"purpose": PURPOSE})

    assert (no_purpose.status_code, no_purpose.json()["code"]) == (400, "purpose_required")
    assert (writer_only.status_code, writer_only.json()["code"]) == (403, "insufficient_scope")
    assert anonymous.status_code == 401
    assert await audit_of(enrolment, client_id) == []


async def test_a_caller_for_another_facility_cannot_read_her(enrolment, emr) -> None:
    event, client_id = await enrolled_woman(enrolment, emr)
    elsewhere = enrolment.headers("clients:read", ["FAC-KE-001"])

    by_id = await enrolment.http.get(f"/v1/clients/{client_id}", params={"purpose": PURPOSE}, headers=elsewhere)
    by_ref = await enrolment.http.get(
        "/v1/clients",
        params={"facility_id": "FAC-ZA-001", "client_ref": event["client_ref"], "purpose": PURPOSE},
        headers=elsewhere,
    )

    assert (by_id.status_code, by_id.json()["code"]) == (404, "unknown_client")
    assert (by_ref.status_code, by_ref.json()["code"]) == (403, "facility_forbidden")
    assert await audit_of(enrolment, client_id) == []


async def test_a_caller_sees_only_the_record_numbers_of_her_facilities_it_may_act_for(enrolment, emr) -> None:
    first, second = emr.ref(), emr.ref()
    nid = f"NID{uuid.uuid4().hex[:10]}"
    emr.posted_pii.add(nid)
    [enrolled] = await enrolment.accept([emr.enrolment(first, at=emr.ago(300), national_id=nid)])
    await enrolment.accept([emr.enrolment(second, at=emr.ago(200), facility_id="FAC-ZA-003", national_id=nid)])

    response = await enrolment.http.get(
        f"/v1/clients/{enrolled['client_id']}",
        params={"purpose": PURPOSE},
        headers=enrolment.headers("clients:read", ["FAC-ZA-003"]),
    )

    assert response.status_code == 200, response.text
    assert [(r["facility_id"], r["client_ref"]) for r in response.json()["registrations"]] == [("FAC-ZA-003", second)]


async def test_unknown_clients_are_not_found_and_the_audit_is_for_admins_only(enrolment) -> None:
    missing = await enrolment.http.get(
        f"/v1/clients/{uuid.uuid4()}", params={"purpose": PURPOSE}, headers=enrolment.headers("clients:read")
    )
    not_admin = await enrolment.http.get("/v1/audit", headers=enrolment.headers("clients:read"))

    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_client")
    assert (not_admin.status_code, not_admin.json()["code"]) == (403, "insufficient_scope")


async def test_names_phone_and_national_id_are_encrypted_at_rest(enrolment, emr) -> None:
    event, client_id = await enrolled_woman(enrolment, emr)

    [row] = await enrolment.fetch(
        "SELECT given_name, family_name, phone, national_id, national_id_hash FROM clients WHERE client_id = $1",
        uuid.UUID(client_id),
    )

    for column in ("given_name", "family_name", "phone", "national_id"):
        stored = bytes(row[column])
        assert event["data"][column].encode() not in stored
        assert len(stored) > len(event["data"][column])
    assert event["data"]["national_id"] not in row["national_id_hash"]
    [payload] = await enrolment.fetch(
        "SELECT payload::text FROM client_events WHERE client_id = $1", uuid.UUID(client_id)
    )
    for column in ("given_name", "family_name", "phone", "national_id"):
        assert event["data"][column] not in payload["payload"]
