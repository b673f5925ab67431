"""Platform events as enrolment and follow-up publish them, and how the referral tests read the
referrals that follow, for the tests of automatic referrals (as events arrive, and in batches)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from conftest import FACILITY, Api
from sqlalchemy import text

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import ClientEnrolled, HivStatus, HivTestRecorded
from pmtct_events.followup import ClientLostToFollowUp, InfantTestDue, InfantTestOverdue, InfantTestResulted
from referrals import handlers
from referrals.repository import ReferralsUnit
from referrals.settings import Settings
from servicekit import uow


async def apply(api: Api, event: Event, settings: Settings | None = None) -> CloudEvent:
    """Apply one event as the consumer does (its handler in a unit of work of its own, committed),
    with handlers bound to `settings` (default: the service's)."""
    ce = CloudEvent.from_event(event)
    handle = handlers.build(settings or api.settings)[type(event)]
    async with uow.begin(api.sessions, ReferralsUnit) as unit:
        await handlers.preload(unit, [event])
        with unit.handling(ce):
            await handle(event, unit)
        await unit.commit()
    return ce


def ago(days: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def referrals_of(api: Api, subject_id: UUID) -> list[dict[str, Any]]:
    response = await api.http.get("/v1/referrals", params={"subject_id": str(subject_id)}, headers=api.national)
    return response.json()["items"]


def by_service(found: list[dict[str, Any]]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for r in sorted(found, key=lambda r: r["requested_at"]):
        out.setdefault(r["referral_service"], []).append((r["status"], r["outcome_code"]))
    return out


def infant_event(cls: type[Event], infant_id: UUID, client_id: UUID, **data: Any) -> Event:
    return cls(
        facility_id=FACILITY,
        occurred_at=data.pop("occurred_at", ago()),
        infant_id=infant_id,
        client_id=client_id,
        **data,
    )


def due(infant_id: UUID, client_id: UUID) -> InfantTestDue:
    return infant_event(
        InfantTestDue,
        infant_id,
        client_id,
        item_id=uuid4(),
        kind="nat_6_weeks",
        test="NAT",
        window_start=date.today(),
        window_end=date.today() + timedelta(days=28),
    )


def overdue(infant_id: UUID, client_id: UUID) -> InfantTestOverdue:
    return infant_event(
        InfantTestOverdue,
        infant_id,
        client_id,
        item_id=uuid4(),
        kind="nat_6_weeks",
        test="NAT",
        window_end=date.today() - timedelta(days=14),
        overdue_on=date.today(),
    )


def result(infant_id: UUID, client_id: UUID, outcome: str = "negative") -> InfantTestResulted:
    return infant_event(
        InfantTestResulted, infant_id, client_id, test="NAT", result=outcome, confirmatory=False, age_days=60
    )


def enrolled(mother: UUID, when: datetime, hiv_status: str = "unknown", on_art: bool = False) -> ClientEnrolled:
    return ClientEnrolled(
        facility_id=FACILITY,
        occurred_at=when,
        client_id=mother,
        status_at_enrolment="pregnant",
        age_years=24,
        hiv_status=hiv_status,
        on_art=on_art,
    )


def positive_test(mother: UUID, when: datetime, before: HivStatus = HivStatus.unknown) -> HivTestRecorded:
    return HivTestRecorded(
        facility_id=FACILITY, occurred_at=when, client_id=mother, result="positive", setting="anc", status_before=before
    )


def lost(mother: UUID) -> ClientLostToFollowUp:
    return ClientLostToFollowUp(
        facility_id=FACILITY,
        occurred_at=ago(),
        subject_type="client",
        subject_id=mother,
        client_id=mother,
        last_seen_on=date.today() - timedelta(days=90),
    )


async def processed(api: Api, *sent: CloudEvent, timeout_s: float = 30) -> None:
    """Wait until the referrals consumer has applied these events (their ids are in its inbox)."""
    ids = [ce.id for ce in sent]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with api.sessions() as session:
            done = (
                await session.execute(
                    text("SELECT count(*) FROM inbox WHERE consumer = 'referrals' AND event_id = ANY(:ids)"),
                    {"ids": ids},
                )
            ).scalar_one()
        if done == len(ids):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the referrals consumer did not apply {len(ids)} event(s) in {timeout_s}s")


async def until(
    api: Api, subject_id: UUID, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await referrals_of(api, subject_id)
        if done(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)
