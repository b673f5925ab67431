"""Automatic referrals and automatic loop closure, from enrolment and follow-up events written to
the real broker and consumed by the in-process referrals service."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, timedelta
from uuid import UUID, uuid4

import pytest
from conftest import FACILITY, Api, Emr, feed_types
from referral_events import (
    ago,
    apply,
    by_service,
    due,
    enrolled,
    infant_event,
    lost,
    overdue,
    positive_test,
    processed,
    referrals_of,
    result,
    until,
)
from sqlalchemy import text

from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    ClientDied,
    ClientTransferredOut,
    HivStatus,
)
from pmtct_events.followup import (
    ClientLostToFollowUp,
    InfantArtInitiated,
    InfantCareOverdue,
    InfantFinalOutcomeRecorded,
    InfantFollowUpResumed,
    InfantVisitRecorded,
)
from referrals import timers


async def test_a_due_infant_test_opens_one_eid_referral_however_often_it_is_delivered(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    event = due(infant, mother)
    ce = await emr.send(event)
    await emr.send(event, event_id=ce.id)  # redelivery of the same event
    await processed(api, ce, await emr.send(due(infant, mother)))  # and a second alert for the same need
    found = await referrals_of(api, infant)
    assert len(found) == 1
    r = found[0]
    assert (r["referral_service"], r["status"], r["origin"]) == ("eid_sample_collection", "requested", "automatic")
    assert (r["subject_type"], r["client_id"], r["reason_code"]) == ("infant", str(mother), "nat_6_weeks_due")
    assert r["due_by"] == (date.today() + timedelta(days=28)).isoformat()


async def test_an_overdue_infant_is_traced_and_the_result_closes_eid_and_tracing(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    await emr.send(due(infant, mother))
    await emr.send(overdue(infant, mother))
    await emr.send(overdue(infant, mother))
    opened = await until(api, infant, lambda f: len(f) == 2)
    assert by_service(opened) == {
        "eid_sample_collection": [("requested", None)],
        "community_tracing": [("requested", None)],
    }
    await emr.send(result(infant, mother))
    closed = await until(api, infant, lambda f: all(r["status"] == "completed" for r in f))
    assert by_service(closed) == {
        "eid_sample_collection": [("completed", "test_resulted")],
        "community_tracing": [("completed", "test_resulted")],
    }


async def test_a_positive_infant_is_referred_for_art_until_art_starts(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    await emr.send(result(infant, mother, "positive"))
    opened = await until(api, infant, lambda f: len(f) == 1)
    assert by_service(opened) == {"infant_art": [("requested", None)]}
    assert opened[0]["urgency"] == "urgent"
    await emr.send(infant_event(InfantArtInitiated, infant, mother))
    closed = await until(api, infant, lambda f: f[0]["status"] == "completed")
    assert by_service(closed) == {"infant_art": [("completed", "art_initiated")]}
    await processed(api, await emr.send(result(infant, mother, "positive")))  # confirmatory: already on ART
    assert by_service(await referrals_of(api, infant))["infant_art"] == [("completed", "art_initiated")]


async def test_a_mother_lost_to_follow_up_is_traced_until_she_is_seen_again(api: Api, emr: Emr) -> None:
    mother = uuid4()
    await emr.send(lost(mother))
    await until(api, mother, lambda f: len(f) == 1)
    await emr.send(AncVisitRecorded(facility_id=FACILITY, occurred_at=ago(), client_id=mother, visit_number=3))
    closed = await until(api, mother, lambda f: f[0]["status"] == "completed")
    assert by_service(closed) == {"community_tracing": [("completed", "returned_to_care")]}


async def test_a_positive_mother_without_art_after_the_wait_is_referred_and_art_closes_it(api: Api, emr: Emr) -> None:
    mother = uuid4()
    await emr.send(enrolled(mother, ago(10)))
    await emr.send(positive_test(mother, ago(8)))  # an offline clinic's backlog: 8 days, no ART
    opened = await until(api, mother, lambda f: len(f) == 1)
    assert by_service(opened) == {"art_initiation": [("requested", None)]}
    assert opened[0]["reason_code"] == "new_hiv_diagnosis"
    await emr.send(ArtInitiated(facility_id=FACILITY, occurred_at=ago(), client_id=mother, regimen="TDF/3TC/DTG"))
    closed = await until(api, mother, lambda f: f[0]["status"] == "completed")
    assert by_service(closed) == {"art_initiation": [("completed", "art_initiated")]}


async def test_a_mother_who_starts_art_within_the_wait_is_never_referred(api: Api, emr: Emr) -> None:
    mother = uuid4()
    sent = [
        await emr.send(enrolled(mother, ago(3), hiv_status="positive", on_art=False)),
        await emr.send(ArtInitiated(facility_id=FACILITY, occurred_at=ago(1), client_id=mother)),
    ]
    await processed(api, *sent)
    await timers.open_due_art_referrals(api.sessions, api.settings)
    assert await referrals_of(api, mother) == []


async def test_a_known_positive_on_art_or_a_retest_of_a_known_positive_is_not_referred(api: Api, emr: Emr) -> None:
    """Known positive by her facts, whatever a test's `status_before` said on arrival: on ART since
    her enrolment, she is not referred; retested after a positive test, she is referred once (her
    retest posted first, then the first test; tests/referrals/test_referrals_in_any_order.py shows
    her wait counting from the first in every order)."""
    on_art, known = uuid4(), uuid4()
    sent = [
        await emr.send(enrolled(on_art, ago(30), hiv_status="positive", on_art=True)),
        await emr.send(positive_test(on_art, ago(20), before=HivStatus.unknown)),
        await emr.send(enrolled(known, ago(40))),
        await emr.send(positive_test(known, ago(10), before=HivStatus.unknown)),
        await emr.send(positive_test(known, ago(30), before=HivStatus.unknown)),
    ]
    await processed(api, *sent)
    await timers.open_due_art_referrals(api.sessions, api.settings)
    assert await referrals_of(api, on_art) == []
    assert [(r["referral_service"], r["reason_code"]) for r in await referrals_of(api, known)] == [
        ("art_initiation", "new_hiv_diagnosis")
    ]


@pytest.mark.parametrize("ending", ["died", "transferred_out"])
async def test_death_or_transfer_cancels_what_is_open_with_the_reason_and_opens_nothing_more(
    api: Api, emr: Emr, ending: str
) -> None:
    mother = uuid4()
    await emr.send(enrolled(mother, ago(10), hiv_status="positive"))
    await until(api, mother, lambda f: len(f) == 1)
    manual = await api.create(subject_id=str(mother))
    event = (
        ClientDied(facility_id=FACILITY, occurred_at=ago(), client_id=mother)
        if ending == "died"
        else ClientTransferredOut(
            facility_id=FACILITY, occurred_at=ago(), client_id=mother, to_facility_id="FAC-KE-001"
        )
    )
    await emr.send(event)
    found = await until(api, mother, lambda f: all(r["status"] == "cancelled" for r in f))
    assert by_service(found) == {
        "art_initiation": [("cancelled", ending)],
        "family_planning": [("cancelled", ending)],
    }
    assert manual["id"] in {r["id"] for r in found}
    await emr.send(
        ClientLostToFollowUp(
            facility_id=FACILITY,
            occurred_at=ago(),
            subject_type="client",
            subject_id=mother,
            client_id=mother,
            last_seen_on=date.today(),
        )
    )
    await asyncio.sleep(1.5)
    assert len(await referrals_of(api, mother)) == 2


async def test_an_infant_s_death_cancels_its_open_referrals(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    await emr.send(due(infant, mother))
    await until(api, infant, lambda f: len(f) == 1)
    await emr.send(
        infant_event(InfantFinalOutcomeRecorded, infant, mother, outcome="died", birth_date=date.today(), age_days=70)
    )
    found = await until(api, infant, lambda f: f[0]["status"] == "cancelled")
    assert by_service(found) == {"eid_sample_collection": [("cancelled", "died")]}


async def test_an_automatic_referral_s_event_carries_its_cause_and_reaches_the_feed(api: Api, emr: Emr) -> None:
    infant, mother = uuid4(), uuid4()
    ce = await emr.send(overdue(infant, mother))
    [r] = await until(api, infant, lambda f: len(f) == 1)
    async with api.sessions() as session:
        headers = (
            await session.execute(text("SELECT headers FROM outbox WHERE aggregate_id = :id"), {"id": r["id"]})
        ).scalar_one()
    assert headers["ce_causationid"] == str(ce.id)
    assert headers["ce_correlationid"] == str(ce.id)
    assert await feed_types(api, r["id"]) == ["ReferralCreated"]  # the consumer's commit fed the feed too


async def test_the_art_wait_is_configurable_and_with_0_days_a_fresh_diagnosis_is_referred_at_once(api: Api) -> None:
    no_wait = api.settings.model_copy(update={"art_initiation_wait_days": 0})
    mother = uuid4()
    await apply(api, positive_test(mother, ago(0)), no_wait)
    await timers.open_due_art_referrals(api.sessions, no_wait)
    [r] = await referrals_of(api, mother)
    assert (r["referral_service"], r["status"]) == ("art_initiation", "requested")
    assert r["due_by"] == (date.today() + timedelta(days=no_wait.art_initiation_due_days)).isoformat()


async def test_a_due_by_counts_from_the_programme_local_day_of_the_event_not_its_utc_day(api: Api) -> None:
    """An InfantTestOverdue at 00:30 in Johannesburg (22:30 UTC the evening before), back-dated a
    day: the tracing referral is due `tracing_due_days` after the local day it happened on."""
    local = api.settings.model_copy(update={"timezone": "Africa/Johannesburg"})
    clock = local.clock
    day = clock.today() - timedelta(days=1)
    at = (clock.local_midnight(day) + timedelta(minutes=30)).astimezone(UTC)
    assert at.date() == day - timedelta(days=1), "posted in UTC, the instant carries the day before"
    infant, mother = uuid4(), uuid4()
    event = overdue(infant, mother).model_copy(update={"occurred_at": at})
    await apply(api, event, local)
    [r] = await referrals_of(api, infant)
    assert r["due_by"] == (day + timedelta(days=local.tracing_due_days)).isoformat()


def care_overdue(infant_id: UUID, client_id: UUID, kind: str, facility_id: str = FACILITY) -> InfantCareOverdue:
    return InfantCareOverdue(
        facility_id=facility_id,
        occurred_at=ago(),
        infant_id=infant_id,
        client_id=client_id,
        item_id=uuid4(),
        kind=kind,
        window_end=date.today() - timedelta(days=14),
        overdue_on=date.today(),
        label="HEI visit at 10 weeks" if kind == "hei_visit" else "Cotrimoxazole",
    )


async def test_a_missed_hei_visit_is_traced_and_her_next_visit_completes_it(api: Api, emr: Emr) -> None:
    """Issue 13 build 8: HEI visits overdue like tests, traced when missed; a missed cotrimoxazole
    start is a record for the clinic (its worklist), not a missing child: no tracing for it."""
    infant, mother = uuid4(), uuid4()
    await emr.send(care_overdue(infant, mother, "infant_cotrimoxazole"))
    await emr.send(care_overdue(infant, mother, "hei_visit"))
    [traced] = await until(api, infant, lambda f: len(f) == 1)
    await asyncio.sleep(1)
    assert len(await referrals_of(api, infant)) == 1
    assert (traced["referral_service"], traced["reason_code"]) == ("community_tracing", "hei_visit_overdue")
    await emr.send(infant_event(InfantVisitRecorded, infant, mother))
    found = await until(api, infant, lambda f: f[0]["status"] == "completed")
    assert by_service(found) == {"community_tracing": [("completed", "returned_to_care")]}


@pytest.mark.parametrize(
    "ending, because", [("transferred_out", "transferred_in"), ("discharged", "seen_after_discharge")]
)
async def test_an_infant_ended_by_transfer_or_discharge_is_referred_again_once_follow_up_resumes(
    api: Api, emr: Emr, ending: str, because: str
) -> None:
    """Issue 13: an infant's transfer out ends her automatic referrals only until a transfer in
    (InfantFollowUpResumed): then a missed test at the receiving facility is traced there."""
    infant, mother = uuid4(), uuid4()
    await emr.send(overdue(infant, mother))
    await until(api, infant, lambda f: len(f) == 1)
    extra = {"discharge_reason": "caregiver_declined"} if ending == "discharged" else {}
    await emr.send(
        infant_event(
            InfantFinalOutcomeRecorded, infant, mother, outcome=ending, birth_date=date.today(), age_days=70, **extra
        )
    )
    found = await until(api, infant, lambda f: f[0]["status"] == "cancelled")
    assert by_service(found) == {"community_tracing": [("cancelled", ending)]}
    await emr.send(overdue(infant, mother))  # ended: nothing is opened for her
    await asyncio.sleep(1.5)
    assert len(await referrals_of(api, infant)) == 1
    receiving = "FAC-ZA-002" if ending == "transferred_out" else FACILITY
    resumed = InfantFollowUpResumed(
        facility_id=receiving, occurred_at=ago(), infant_id=infant, client_id=mother, because=because
    )
    await emr.send(resumed)
    await emr.send(care_overdue(infant, mother, "hei_visit", facility_id=receiving))
    found = await until(api, infant, lambda f: len(f) == 2)
    opened = [r for r in found if r["status"] == "requested"]
    assert [(r["reason_code"], r["from_facility_id"]) for r in opened] == [("hei_visit_overdue", receiving)]
