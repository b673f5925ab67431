"""A mother who transfers out of one facility and enrols at another: the two EMRs post on their
own, so the referrals service may consume her enrolment there before her transfer out from here.
Either order leaves her a current client, referred automatically again (issue 19: the fault suite
found her ended `transferred_out` when the transfer came second); a transfer out after her latest
enrolment still ends her."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from conftest import FACILITY, Api
from sqlalchemy import text

from pmtct_events import CloudEvent
from pmtct_events.enrolment import ClientEnrolled, ClientEvent, ClientTransferredOut, HivStatus
from referrals import handlers
from referrals.repository import ReferralsUnit
from servicekit import uow

ELSEWHERE = "FAC-KE-001"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def enrolled(mother: UUID, facility: str, days: int) -> ClientEnrolled:
    return ClientEnrolled(
        facility_id=facility,
        occurred_at=START + timedelta(days=days),
        client_id=mother,
        status_at_enrolment="pregnant",
        age_years=26,
        hiv_status=HivStatus.positive,
        on_art=True,
        art_start_date=(START - timedelta(days=100)).date(),
    )


def transferred(mother: UUID, days: int) -> ClientTransferredOut:
    return ClientTransferredOut(
        facility_id=FACILITY, occurred_at=START + timedelta(days=days), client_id=mother, to_facility_id=ELSEWHERE
    )


async def consume(api: Api, *events: ClientEvent) -> None:
    """Each event in its own unit, through the service's handlers, as its consumer applies them."""
    table = handlers.build(api.settings)
    for event in events:
        async with uow.begin(api.sessions, ReferralsUnit) as unit:
            await handlers.preload(unit, [event])
            with unit.handling(CloudEvent.from_event(event)):
                await table[type(event)](event, unit)
            await unit.commit()


async def ended(api: Api, mother: UUID) -> str | None:
    async with api.sessions() as session:
        return await session.scalar(text("SELECT ended FROM subject_state WHERE subject_id = :id"), {"id": mother})


async def test_a_transfer_out_consumed_after_her_enrolment_elsewhere_leaves_her_in_care(api: Api) -> None:
    first, second = uuid4(), uuid4()
    await consume(api, enrolled(first, FACILITY, 0), transferred(first, 40), enrolled(first, ELSEWHERE, 55))
    await consume(api, enrolled(second, FACILITY, 0), enrolled(second, ELSEWHERE, 55), transferred(second, 40))
    assert (await ended(api, first), await ended(api, second)) == (None, None)


async def test_a_transfer_out_after_her_latest_enrolment_still_ends_her(api: Api) -> None:
    mother = uuid4()
    await consume(api, enrolled(mother, FACILITY, 0), enrolled(mother, ELSEWHERE, 55), transferred(mother, 70))
    assert await ended(api, mother) == "transferred_out"
