"""An honest resend naming the woman by `client_id` instead of the `client_ref` it was first posted
with (or the other way round) was answered `conflict`: it is the same event, a duplicate (as
follow-up answers for an infant named both ways, tests/followup/test_resend_naming_the_infant_the_other_way.py)."""

from __future__ import annotations


async def test_a_resend_naming_the_same_woman_by_client_ref_instead_of_client_id_is_a_duplicate(enrolment, emr) -> None:
    ref = emr.ref()
    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(120))])
    client_id = enrolled["client_id"]
    by_ref = emr.anc_visit(ref, emr.ago(100), gestation_weeks=20)
    by_id = {k: v for k, v in by_ref.items() if k != "client_ref"} | {"client_id": client_id}
    [first] = await enrolment.accept([by_id])
    assert first["client_id"] == client_id

    other_day = {**by_ref, "occurred_at": emr.ago(99)}
    body = (await enrolment.post([by_ref, by_id, other_day])).json()
    assert [(r["status"], r["code"], r["client_id"]) for r in body["results"]] == [
        ("duplicate", None, client_id),
        ("duplicate", None, client_id),
        ("rejected", "conflict", None),  # other content under the same event_id is still a conflict
    ]


async def test_a_resend_naming_the_woman_by_client_id_after_a_post_by_client_ref_is_a_duplicate(enrolment, emr) -> None:
    ref = emr.ref()
    [enrolled] = await enrolment.accept([emr.enrolment(ref, at=emr.ago(150))])
    by_ref = emr.hiv_test(ref, emr.ago(140), result="negative")
    [first] = await enrolment.accept([by_ref])
    by_id = {k: v for k, v in by_ref.items() if k != "client_ref"} | {"client_id": enrolled["client_id"]}
    [again] = (await enrolment.post([by_id])).json()["results"]
    assert (again["status"], again["client_id"]) == ("duplicate", first["client_id"])
