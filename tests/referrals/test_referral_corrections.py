"""Corrections (issue 17): a fact the EMR voids as entered in error (ClientEventVoided on
pmtct.enrolment.v1, InfantEventVoided on pmtct.followup.v1, naming the CloudEvents the voided event
had published) takes back what it did to referrals. The automatic referrals it opened are cancelled
`entered_in_error`, those it closed are reopened as they were, manual referrals are not cancelled,
and a redelivered void changes nothing. Events go through the real broker to the in-process
referrals service; the feed, FHIR and webhook views are read as a ministry reads them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import FACILITY, Api, Emr, feed_types
from referral_events import (
    ago,
    by_service,
    due,
    enrolled,
    overdue,
    positive_test,
    processed,
    referrals_of,
    result,
    until,
)
from sqlalchemy import text
from test_push import Receiver, subscribe
from test_push import until as eventually

from pmtct_events import CloudEvent
from pmtct_events.enrolment import (
    ArtInitiated,
    ClientDied,
    ClientEventVoided,
    DeliveredInfant,
    DeliveryRecorded,
)
from pmtct_events.followup import (
    AnnouncementWithdrawn,
    ClientAdherenceSupportDue,
    ClientLostToFollowUp,
    InfantCareOverdue,
    InfantEventVoided,
    WithdrawalReason,
    WithdrawnAnnouncement,
)
from referrals import timers


def mother_void(mother: UUID, voided: Iterable[CloudEvent], voided_type: str) -> ClientEventVoided:
    return ClientEventVoided(
        facility_id=FACILITY,
        occurred_at=ago(),
        client_id=mother,
        voided_event_id=uuid4(),
        voided_type=voided_type,
        voided_ids=[ce.id for ce in voided],
    )


def infant_void(infant: UUID, mother: UUID, voided: Iterable[CloudEvent], voided_type: str) -> InfantEventVoided:
    return InfantEventVoided(
        facility_id=FACILITY,
        occurred_at=ago(),
        infant_id=infant,
        client_id=mother,
        voided_event_id=uuid4(),
        voided_type=voided_type,
        voided_ids=[ce.id for ce in voided],
    )


def art_started(mother: UUID) -> ArtInitiated:
    return ArtInitiated(facility_id=FACILITY, occurred_at=ago(), client_id=mother, regimen="TDF/3TC/DTG")


async def detail(api: Api, referral_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/v1/referrals/{referral_id}", headers=api.national)
    assert response.status_code == 200, response.text
    return response.json()


async def diagnosed_and_referred(api: Api, emr: Emr, mother: UUID) -> tuple[CloudEvent, dict[str, Any]]:
    """She tested positive 8 days ago (an offline clinic's backlog) with no ART: referred at once."""
    await emr.send(enrolled(mother, ago(10)))
    test = await emr.send(positive_test(mother, ago(8)))
    [referral] = await until(api, mother, lambda f: len(f) == 1)
    assert (referral["referral_service"], referral["status"]) == ("art_initiation", "requested")
    return test, referral


async def test_a_voided_positive_test_cancels_her_art_referral_entered_in_error_once(api: Api, emr: Emr) -> None:
    mother = uuid4()
    test, referral = await diagnosed_and_referred(api, emr, mother)
    manual = await api.create(subject_id=str(mother))  # family planning, by hand
    void = await emr.send(mother_void(mother, [test], "HivTestRecorded"))
    found = await until(api, mother, lambda f: any(r["status"] == "cancelled" for r in f))
    assert by_service(found) == {
        "art_initiation": [("cancelled", "entered_in_error")],
        "family_planning": [("requested", None)],  # a manual referral is never touched
    }
    cancelled = await detail(api, referral["id"])
    assert cancelled["version"] == 2 and cancelled["closed_at"] is not None
    assert (await detail(api, manual["id"]))["version"] == 1

    # the same void delivered again, and published again under another id: nothing more happens
    await emr.send(mother_void(mother, [test], "HivTestRecorded"), event_id=void.id)
    await processed(api, void, await emr.send(mother_void(mother, [test], "HivTestRecorded")))
    assert (await detail(api, referral["id"]))["version"] == 2
    assert await feed_types(api, referral["id"]) == ["ReferralCreated", "ReferralCancelled"]


async def test_a_positive_test_voided_within_the_art_wait_never_opens_a_referral(api: Api, emr: Emr) -> None:
    mother = uuid4()
    test = await emr.send(positive_test(mother, ago(3)))  # 3 days into the 7-day wait
    await processed(api, test)
    await processed(api, await emr.send(mother_void(mother, [test], "HivTestRecorded")))
    # her wait would be over now: nothing is due for her
    async with api.sessions() as session, session.begin():
        waits = await session.execute(text("SELECT count(*) FROM art_wait WHERE client_id = :c"), {"c": mother})
        assert waits.scalar_one() == 0
    await timers.open_due_art_referrals(api.sessions, api.settings)
    assert await referrals_of(api, mother) == []


async def test_a_voided_art_start_reopens_the_referral_it_completed_as_it_was(api: Api, emr: Emr) -> None:
    mother = uuid4()
    _, referral = await diagnosed_and_referred(api, emr, mother)
    accepted = await api.act(referral["id"], "accept")
    assert accepted.status_code == 200, accepted.text
    art = await emr.send(art_started(mother))
    [done] = await until(api, mother, lambda f: f[0]["status"] == "completed")
    assert (done["outcome_code"], done["version"]) == ("art_initiated", 3)

    void = await emr.send(mother_void(mother, [art], "ArtInitiated"))
    [reopened] = await until(api, mother, lambda f: f[0]["status"] != "completed")
    assert (reopened["status"], reopened["outcome_code"], reopened["closed_at"]) == ("accepted", None, None)
    assert reopened["version"] == 4 and reopened["accepted_at"] == accepted.json()["accepted_at"]
    assert [h["action"] for h in (await detail(api, referral["id"]))["history"]] == [
        "request",
        "accept",
        "complete",
        "reopen",
    ]
    await emr.send(mother_void(mother, [art], "ArtInitiated"), event_id=void.id)
    await processed(api, void, await emr.send(mother_void(mother, [art], "ArtInitiated")))
    assert (await detail(api, referral["id"]))["version"] == 4
    assert await feed_types(api, referral["id"]) == [
        "ReferralCreated",
        "ReferralAccepted",
        "ReferralCompleted",
        "ReferralReopened",
    ]

    # she is not on ART any more: the corrected ART start, recorded next, completes it again
    await emr.send(art_started(mother))
    [again] = await until(api, mother, lambda f: f[0]["status"] == "completed")
    assert (again["outcome_code"], again["version"]) == ("art_initiated", 5)


async def test_a_voided_art_start_leaves_her_on_art_while_another_stands(api: Api, emr: Emr) -> None:
    """Two ART records (a second one posted for the same start): voiding the one that completed her
    ART referral leaves it met; voiding the other too reopens it."""
    mother = uuid4()
    _, referral = await diagnosed_and_referred(api, emr, mother)
    first = await emr.send(art_started(mother))
    await until(api, mother, lambda f: f[0]["status"] == "completed")
    second = await emr.send(art_started(mother))
    await processed(api, second, await emr.send(mother_void(mother, [first], "ArtInitiated")))
    met = await detail(api, referral["id"])
    assert (met["status"], met["outcome_code"], met["version"]) == ("completed", "art_initiated", 2)

    await emr.send(mother_void(mother, [second], "ArtInitiated"))
    [reopened] = await until(api, mother, lambda f: f[0]["status"] == "requested")
    assert (reopened["outcome_code"], reopened["version"]) == (None, 3)


async def wait_is_over(api: Api, mother: UUID) -> None:
    """Time passes: her ART wait's 7 days are over (its due moment moved into the past)."""
    async with api.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE art_wait SET due_at = now() - interval '1 minute' WHERE client_id = :c"), {"c": mother}
        )


@pytest.mark.parametrize("ending", ["ArtInitiated", "ClientDied"])
async def test_an_art_start_or_death_voided_within_the_wait_lets_the_wait_run_again(
    api: Api, emr: Emr, ending: str
) -> None:
    """Diagnosed 3 days ago; an ART start (or a death) recorded the next day ended her wait with no
    referral. Voided, it never happened: she is referred for ART once her 7 days are over."""
    mother = uuid4()
    await emr.send(enrolled(mother, ago(10)))
    await emr.send(positive_test(mother, ago(3)))
    if ending == "ArtInitiated":
        fact = await emr.send(ArtInitiated(facility_id=FACILITY, occurred_at=ago(2), client_id=mother))
    else:
        fact = await emr.send(ClientDied(facility_id=FACILITY, occurred_at=ago(2), client_id=mother))
    await processed(api, fact)
    await wait_is_over(api, mother)
    await timers.open_due_art_referrals(api.sessions, api.settings)
    assert await referrals_of(api, mother) == []  # the wait had ended

    await processed(api, await emr.send(mother_void(mother, [fact], ending)))
    await wait_is_over(api, mother)
    await timers.open_due_art_referrals(api.sessions, api.settings)
    [referral] = await until(api, mother, lambda f: len(f) == 1)
    assert (referral["referral_service"], referral["status"], referral["reason_code"]) == (
        "art_initiation",
        "requested",
        "new_hiv_diagnosis",
    )


async def test_a_referral_completed_by_a_person_is_not_reopened(api: Api, emr: Emr) -> None:
    mother = uuid4()
    test, referral = await diagnosed_and_referred(api, emr, mother)
    completed = await api.act(referral["id"], "complete", outcome_code="service_provided")
    assert completed.status_code == 200, completed.text
    await processed(api, await emr.send(mother_void(mother, [test], "HivTestRecorded")))
    after = await detail(api, referral["id"])
    assert (after["status"], after["outcome_code"], after["version"]) == ("completed", "service_provided", 2)


async def test_a_voided_death_reopens_what_it_cancelled_and_she_is_followed_again(api: Api, emr: Emr) -> None:
    mother = uuid4()
    _, referral = await diagnosed_and_referred(api, emr, mother)
    died = await emr.send(ClientDied(facility_id=FACILITY, occurred_at=ago(), client_id=mother))
    await until(api, mother, lambda f: f[0]["status"] == "cancelled")
    await emr.send(mother_void(mother, [died], "ClientDied"))
    [reopened] = await until(api, mother, lambda f: f[0]["status"] == "requested")
    assert (reopened["id"], reopened["outcome_code"], reopened["version"]) == (referral["id"], None, 3)
    await emr.send(  # alive and followed: a loss to follow-up is traced again
        ClientLostToFollowUp(
            facility_id=FACILITY,
            occurred_at=ago(),
            subject_type="client",
            subject_id=mother,
            client_id=mother,
            last_seen_on=date.today(),
        )
    )
    found = await until(api, mother, lambda f: len(f) == 2)
    assert by_service(found) == {"art_initiation": [("requested", None)], "community_tracing": [("requested", None)]}


async def test_a_voided_positive_infant_result_cancels_infant_art_and_reopens_sample_collection(
    api: Api, emr: Emr
) -> None:
    infant, mother = uuid4(), uuid4()
    await emr.send(due(infant, mother))
    await until(api, infant, lambda f: len(f) == 1)
    positive = await emr.send(result(infant, mother, "positive"))
    found = await until(api, infant, lambda f: len(f) == 2)
    assert by_service(found) == {
        "eid_sample_collection": [("completed", "test_resulted")],
        "infant_art": [("requested", None)],
    }
    await emr.send(infant_void(infant, mother, [positive], "InfantTestResulted"))
    found = await until(api, infant, lambda f: all(r["status"] != "completed" for r in f))
    assert by_service(found) == {
        "eid_sample_collection": [("requested", None)],  # her sample is still to be taken
        "infant_art": [("cancelled", "entered_in_error")],
    }


async def test_a_voided_delivery_cancels_its_infants_automatic_referrals(api: Api, emr: Emr) -> None:
    mother, first, second, earlier = uuid4(), uuid4(), uuid4(), uuid4()
    delivery = await emr.send(
        DeliveryRecorded(
            facility_id=FACILITY,
            occurred_at=ago(50),
            client_id=mother,
            place="facility",
            skilled_attendant=True,
            maternal_outcome="alive",
            infants=[
                DeliveredInfant(infant_id=first, sex="female", outcome="live_birth"),
                DeliveredInfant(infant_id=second, sex="male", outcome="live_birth"),
            ],
            mother_hiv_status="positive",
        )
    )
    await processed(api, delivery)
    await emr.send(due(first, mother))
    await emr.send(overdue(second, mother))
    await emr.send(due(earlier, mother))  # a child of an earlier delivery of hers
    for infant in (first, second, earlier):
        await until(api, infant, lambda f: len(f) == 1)
    manual = await api.create(subject_type="infant", subject_id=str(second), client_id=str(mother))

    void = await emr.send(mother_void(mother, [delivery], "DeliveryRecorded"))
    await processed(api, void)
    assert by_service(await referrals_of(api, first)) == {"eid_sample_collection": [("cancelled", "entered_in_error")]}
    assert by_service(await referrals_of(api, second)) == {
        "community_tracing": [("cancelled", "entered_in_error")],
        "family_planning": [("requested", None)],  # by hand: not touched
    }
    assert by_service(await referrals_of(api, earlier)) == {"eid_sample_collection": [("requested", None)]}
    assert (await detail(api, manual["id"]))["version"] == 1
    # she was never born on the platform: a late alert for her opens nothing
    await processed(api, await emr.send(overdue(first, mother)))
    assert len(await referrals_of(api, first)) == 1


async def test_an_announcement_withdrawn_as_entered_in_error_cancels_its_referral_so(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    alert = overdue(infant, mother)
    await emr.send(alert)
    [tracing] = await until(api, infant, lambda f: len(f) == 1)
    await emr.send(
        AnnouncementWithdrawn(
            facility_id=FACILITY,
            occurred_at=ago(),
            subject_type="infant",
            subject_id=infant,
            client_id=mother,
            announcement=WithdrawnAnnouncement.InfantTestOverdue,
            reason=WithdrawalReason.entered_in_error,
            item_id=alert.item_id,
            kind=alert.kind,
            announced_for=alert.overdue_on,
            met_on=date.today(),
        )
    )
    found = await until(api, infant, lambda f: f[0]["status"] == "cancelled")
    assert by_service(found) == {"community_tracing": [("cancelled", "entered_in_error")]}


def withdrawn_in_error(
    subject: UUID, mother: UUID, announcement: WithdrawnAnnouncement, alert: Any
) -> AnnouncementWithdrawn:
    """Follow-up takes back an announcement of an item a void cancelled (entered in error)."""
    return AnnouncementWithdrawn(
        facility_id=FACILITY,
        occurred_at=ago(),
        subject_type="client" if subject == mother else "infant",
        subject_id=subject,
        client_id=mother,
        announcement=announcement,
        reason=WithdrawalReason.entered_in_error,
        item_id=alert.item_id,
        kind=alert.kind,
        announced_for=getattr(alert, "overdue_on", None) or alert.window_start,
        met_on=date.today(),
    )


async def test_every_announcement_withdrawn_in_error_cancels_what_it_opened(api: Api, emr: Emr) -> None:
    """An infant's test due (sample collection), its missed HEI visit (tracing) and her adherence
    support due (psychosocial support): each withdrawn `entered_in_error`, each referral it opened is
    cancelled so, and nothing of theirs stays open."""
    infant, mother = uuid4(), uuid4()
    test_due = due(infant, mother)
    visit_missed = InfantCareOverdue(
        facility_id=FACILITY,
        occurred_at=ago(),
        infant_id=infant,
        client_id=mother,
        item_id=uuid4(),
        kind="hei_visit",
        window_end=date.today() - timedelta(days=14),
        overdue_on=date.today(),
        label="HEI visit at 6 weeks",
    )
    support_due = ClientAdherenceSupportDue(
        facility_id=FACILITY,
        occurred_at=ago(),
        client_id=mother,
        item_id=uuid4(),
        kind="mother_adherence_support",
        window_start=date.today(),
        window_end=date.today() + timedelta(days=90),
        copies_per_ml=2400,
    )
    await processed(api, *[await emr.send(e) for e in (test_due, visit_missed, support_due)])
    assert by_service(await referrals_of(api, infant)) == {
        "eid_sample_collection": [("requested", None)],
        "community_tracing": [("requested", None)],
    }
    assert by_service(await referrals_of(api, mother)) == {"psychosocial_support": [("requested", None)]}

    withdrawals = [
        withdrawn_in_error(infant, mother, WithdrawnAnnouncement.InfantTestDue, test_due),
        withdrawn_in_error(infant, mother, WithdrawnAnnouncement.InfantCareOverdue, visit_missed),
        withdrawn_in_error(mother, mother, WithdrawnAnnouncement.ClientAdherenceSupportDue, support_due),
    ]
    sent = [await emr.send(w) for w in withdrawals]
    await processed(api, *sent)
    assert by_service(await referrals_of(api, infant)) == {
        "eid_sample_collection": [("cancelled", "entered_in_error")],
        "community_tracing": [("cancelled", "entered_in_error")],
    }
    assert by_service(await referrals_of(api, mother)) == {"psychosocial_support": [("cancelled", "entered_in_error")]}
    # redelivered: nothing more changes
    await processed(api, *[await emr.send(w, event_id=ce.id) for w, ce in zip(withdrawals, sent, strict=True)])
    for found in (await referrals_of(api, infant), await referrals_of(api, mother)):
        assert [r["version"] for r in found] == [2] * len(found)


async def test_the_ministry_sees_the_cancellation_in_error_and_the_reopening_in_feed_fhir_and_webhooks(
    api: Api, emr: Emr
) -> None:
    ministry = api.auth("referrals:read", ["*"], client="moh-registry")
    receiver = Receiver()
    await receiver.start()
    subscription = await subscribe(api, receiver, ministry, event_types=["ReferralCancelled", "ReferralReopened"])
    try:
        cancelled_mother, reopened_mother = uuid4(), uuid4()
        test, in_error = await diagnosed_and_referred(api, emr, cancelled_mother)
        _, reopened = await diagnosed_and_referred(api, emr, reopened_mother)
        start = (await api.http.get("/v1/feed", params={"limit": 1000}, headers=ministry)).json()
        cursor = start["next_cursor"]
        while start["has_more"]:
            start = (await api.http.get("/v1/feed", params={"after": cursor, "limit": 1000}, headers=ministry)).json()
            cursor = start["next_cursor"]
        art = await emr.send(art_started(reopened_mother))
        await until(api, reopened_mother, lambda f: f[0]["status"] == "completed")
        await emr.send(mother_void(cancelled_mother, [test], "HivTestRecorded"))
        await emr.send(mother_void(reopened_mother, [art], "ArtInitiated"))
        await until(api, cancelled_mother, lambda f: f[0]["status"] == "cancelled")
        await until(api, reopened_mother, lambda f: f[0]["status"] == "requested")

        # the feed: one entry per change, carrying the whole state
        page = (await api.http.get("/v1/feed", params={"after": cursor, "limit": 1000}, headers=ministry)).json()
        ours = {
            (e["referral_id"], e["type"].split(".")[-2]): e["data"]
            for e in page["entries"]
            if e["referral_id"] in (in_error["id"], reopened["id"])
        }
        assert set(ours) == {
            (in_error["id"], "ReferralCancelled"),
            (reopened["id"], "ReferralCompleted"),
            (reopened["id"], "ReferralReopened"),
        }
        gone = ours[(in_error["id"], "ReferralCancelled")]
        assert (gone["status"], gone["outcome_code"], gone["version"]) == ("cancelled", "entered_in_error", 2)
        back = ours[(reopened["id"], "ReferralReopened")]
        assert (back["status"], back["outcome_code"], back["closed_at"], back["version"]) == (
            "requested",
            None,
            None,
            3,
        )

        # FHIR: a ServiceRequest entered in error, its Task cancelled with the reason; the reopened one active
        sr = (await api.http.get(f"/fhir/ServiceRequest/{in_error['id']}", headers=ministry)).json()
        assert sr["status"] == "entered-in-error"
        task = (await api.http.get(f"/fhir/Task/{in_error['id']}", headers=ministry)).json()
        assert task["status"] == "cancelled"
        assert task["statusReason"]["coding"][0]["code"] == "entered_in_error"
        assert task["statusReason"]["text"].startswith("Entered in error")
        sr = (await api.http.get(f"/fhir/ServiceRequest/{reopened['id']}", headers=ministry)).json()
        assert (sr["status"], sr["meta"]["versionId"]) == ("active", "3")
        task = (await api.http.get(f"/fhir/Task/{reopened['id']}", headers=ministry)).json()
        assert task["status"] == "requested" and "statusReason" not in task and "output" not in task

        async def search(status: str) -> set[str]:
            params = {"status": status, "subject": f"Patient/{cancelled_mother}"}
            bundle = (await api.http.get("/fhir/ServiceRequest", params=params, headers=ministry)).json()
            return {e["resource"]["id"] for e in bundle.get("entry", [])}

        assert await search("entered-in-error") == {in_error["id"]}
        assert await search("revoked") == set()
        assert await search("revoked,entered-in-error") == {in_error["id"]}

        # webhooks: the subscriber to cancellations and reopenings gets exactly those
        async def delivered() -> bool:
            return {e["referral_id"] for e in receiver.accepted} >= {in_error["id"], reopened["id"]}

        await eventually(delivered, "the cancellation and the reopening pushed")
        pushed = {
            (e["referral_id"], e["type"].split(".")[-2])
            for e in receiver.accepted
            if e["referral_id"] in (in_error["id"], reopened["id"])
        }
        assert pushed == {(in_error["id"], "ReferralCancelled"), (reopened["id"], "ReferralReopened")}
    finally:
        await receiver.stop()
        await api.http.delete(f"/v1/subscriptions/{subscription['id']}", headers=ministry)
