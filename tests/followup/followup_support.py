"""Helpers of the follow-up tests: the service in-process against the real test PostgreSQL and
broker, and a midwife's register that writes the mother events follow-up consumes.

(A module of its own name, not `conftest`: several test folders have a conftest, and a plain
`from conftest import` would find whichever was imported first.)

Mother events are fed through `apply`, which runs the consumer's handler directly in a transaction
(fast and deterministic); the end-to-end tests post them to the real enrolment process instead.

Simulated calendar: tests that move time by hand (`fire(today=...)`) date their mothers and
infants in 2031, so that the live timers of any running follow-up process (this in-process app,
the `platform` processes), which act as of the real date, leave those subjects alone.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from followup import intake, stream, timers
from followup.repository import FollowupUnit
from followup.settings import Settings
from pmtct_events import CloudEvent
from pmtct_events.enrolment import (
    BirthOutcome,
    ClientDied,
    ClientEnrolled,
    ClientEvent,
    ClientEventVoided,
    DeliveredInfant,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    InfantSex,
    StatusAtEnrolment,
    ViralLoadRecorded,
    ViralLoadResult,
)
from pmtct_tools.testing import Infra, TestIssuer
from servicekit import bootstrap, facilities, uow
from servicekit.auth import Principal
from servicekit.identifiers import ref_hash

FACILITY = "FAC-ZA-003"
#: day one of the simulated calendar
SIM_START = date(2031, 3, 3)


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def days_ago(days: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=days)


@dataclass
class Mother:
    client_id: UUID
    facility_id: str = FACILITY

    def enrolled(self, on: date, hiv_status: HivStatus = HivStatus.positive, **kw: Any) -> ClientEnrolled:
        values: dict[str, Any] = {
            "status_at_enrolment": StatusAtEnrolment.pregnant,
            "age_years": 27,
            "hiv_status": hiv_status,
            "on_art": hiv_status is HivStatus.positive,
            "gestation_weeks": 14,
        }
        values.update(kw)
        return ClientEnrolled(facility_id=self.facility_id, occurred_at=at(on), client_id=self.client_id, **values)

    def delivered(
        self,
        on: date,
        infants: list[DeliveredInfant],
        hiv_status: HivStatus = HivStatus.positive,
        diagnosed_on: date | None = None,
        art_start_date: date | None = None,
        viral_load: tuple[date, int] | None = None,
        **kw: Any,
    ) -> DeliveryRecorded:
        return DeliveryRecorded(
            facility_id=self.facility_id,
            occurred_at=at(on),
            client_id=self.client_id,
            place="facility",
            skilled_attendant=True,
            maternal_outcome="alive",
            infants=infants,
            mother_hiv_status=hiv_status,
            mother_diagnosed_on=diagnosed_on,
            mother_art_start_date=art_start_date,
            mother_latest_viral_load=ViralLoadResult(on=viral_load[0], copies_per_ml=viral_load[1])
            if viral_load
            else None,
            **kw,
        )

    def tested(self, on: date, result: str = "positive", setting: str = "postnatal") -> HivTestRecorded:
        return HivTestRecorded(
            facility_id=self.facility_id, occurred_at=at(on), client_id=self.client_id, result=result, setting=setting
        )

    def viral_load(self, on: date, copies: int = 40) -> ViralLoadRecorded:
        return ViralLoadRecorded(
            facility_id=self.facility_id,
            occurred_at=at(on),
            client_id=self.client_id,
            copies_per_ml=copies,
            suppressed=copies < 1000,
        )

    def died(self, on: date) -> ClientDied:
        return ClientDied(facility_id=self.facility_id, occurred_at=at(on), client_id=self.client_id)

    def voided(self, on: date, voided: ClientEvent, *ids: UUID) -> ClientEventVoided:
        """Enrolment's ClientEventVoided of `voided`, whose acceptance published `ids` (CloudEvent ids)."""
        return ClientEventVoided(
            facility_id=self.facility_id,
            occurred_at=at(on, 15),
            client_id=self.client_id,
            voided_event_id=uuid.uuid4(),
            voided_type=voided.event_name,
            voided_ids=ids,
        )


def new_mother(facility_id: str = FACILITY) -> Mother:
    return Mother(uuid.uuid4(), facility_id)


def live_infant(
    key: str | None = None, facility_id: str = FACILITY, ref: str | None = None, outcome: str = "live_birth"
) -> DeliveredInfant:
    return DeliveredInfant(
        infant_id=uuid.uuid4(),
        ref_hash=ref_hash(key, facility_id, ref) if key and ref else None,
        sex=InfantSex.female,
        birth_weight_g=3000,
        outcome=BirthOutcome(outcome),
    )


def well_treated(on: date) -> dict[str, Any]:
    """A mother diagnosed and on ART for a year with a suppressed viral load two weeks before
    delivery: standard risk."""
    year_ago = on - timedelta(days=365)
    return {"diagnosed_on": year_ago, "art_start_date": year_ago, "viral_load": (on - timedelta(days=14), 40)}


@dataclass
class FollowupService:
    http: httpx.AsyncClient
    settings: Settings
    #: the same settings without the settle delay, for tests that drive time by hand
    sim: Settings
    sessions: async_sessionmaker[AsyncSession]
    issuer: TestIssuer
    infra: Infra

    def units(self) -> AbstractAsyncContextManager[FollowupUnit]:
        """A new unit of work of the followup service (what `Runtime.begin` gives the service)."""
        return uow.begin(self.sessions, FollowupUnit)

    def headers(self, scopes: str = "events:write", facilities: list[str] | None = None) -> dict:
        return self.issuer.headers(scopes, facilities if facilities is not None else [FACILITY], "emr-followup-test")

    async def apply(self, *events: ClientEvent, settings: Settings | None = None) -> list[UUID]:
        """As the consumer would: each event in its own transaction, through the real handler.
        Returns the CloudEvent ids they came in with (what a ClientEventVoided names)."""
        ids: list[UUID] = []
        for event in events:
            ce = CloudEvent.from_event(event)
            ids.append(ce.id)
            async with uow.begin(self.sessions, FollowupUnit) as unit:
                with unit.handling(ce):
                    await stream.on_enrolment_event(event, unit, settings or self.sim)
                await unit.commit()
        return ids

    async def apply_together(self, *events: ClientEvent, settings: Settings | None = None) -> None:
        """As the consumer applies one batch: one unit of work, its preload, then the handler for
        each event in order, one commit."""
        async with uow.begin(self.sessions, FollowupUnit) as unit:
            await stream.preload(unit, events)
            for event in events:
                with unit.handling(CloudEvent.from_event(event)):
                    await stream.on_enrolment_event(event, unit, settings or self.sim)
            await unit.commit()

    async def record(
        self, infant_id: UUID, type: str, on: date, data: dict | None = None, replaces: UUID | str | None = None
    ) -> dict:
        """An infant event posted through the intake pipeline as of the day after it (simulated-
        calendar dates are in the real future), with the simulation's settings; `replaces`: a
        corrected event, replacing that accepted one."""
        raw = {
            "event_id": str(uuid.uuid4()),
            "type": type,
            "facility_id": FACILITY,
            "occurred_at": at(on).isoformat(),
            "infant_id": str(infant_id),
            "data": data or {},
        }
        if replaces is not None:
            raw["replaces"] = str(replaces)
        return await self.post_raw(raw, on)

    async def void(self, event_id: UUID | str, on: date) -> dict:
        """An EventVoided of an accepted infant event, posted through the intake pipeline."""
        raw = {
            "event_id": str(uuid.uuid4()),
            "type": "EventVoided",
            "facility_id": FACILITY,
            "occurred_at": at(on, 15).isoformat(),
            "data": {"voided_event_id": str(event_id), "reason": "entered_in_error"},
        }
        return await self.post_raw(raw, on)

    async def post_raw(self, raw: dict, on: date) -> dict:
        poster = Principal("emr-followup-test", frozenset({"events:write"}), frozenset({"*"}))
        registry = facilities.load(self.sim.facilities_path)
        now = at(on) + timedelta(days=1)
        reply = await intake.record(self.units, self.sim, registry, poster, [raw], now=now)
        [result] = reply.results
        return result.model_dump(mode="json")

    async def fire(self, today: date, only: list[UUID]) -> int:
        return await timers.fire(self.sessions, self.sim, today=today, only=only)

    async def post(
        self, events: list[dict], facilities: list[str] | None = None, scopes: str = "events:write"
    ) -> httpx.Response:
        return await self.http.post("/v1/events", json={"events": events}, headers=self.headers(scopes, facilities))

    async def accept(self, events: list[dict], **kw: Any) -> list[dict]:
        response = await self.post(events, **kw)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * len(events), results
        return results

    async def infant(self, infant_id: UUID) -> dict:
        response = await self.http.get(f"/v1/infants/{infant_id}", headers=self.headers("worklist:read"))
        assert response.status_code == 200, response.text
        return response.json()

    async def items(self, subject_id: UUID) -> dict[str, dict]:
        """The subject's schedule items by kind (the latest window of each kind wins)."""
        async with self.sessions() as session:
            rows = await session.execute(
                text("SELECT * FROM schedule_items WHERE subject_id = :s ORDER BY window_start"), {"s": subject_id}
            )
            return {r.kind: dict(r._mapping) for r in rows}

    async def emitted(self, aggregate_ids: list[UUID]) -> list[tuple[str, dict]]:
        """Events this service wrote to its outbox about these subjects, in outbox order."""
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT event_type, payload FROM outbox WHERE aggregate_id = ANY(:ids) ORDER BY id",
                ),
                {"ids": [str(i) for i in aggregate_ids]},
            )
            return [(r.event_type.split(".")[-2], r.payload) for r in rows]

    async def emitted_names(self, aggregate_ids: list[UUID]) -> list[str]:
        return [name for name, _ in await self.emitted(aggregate_ids)]

    async def wait_for(self, predicate, timeout_s: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await predicate():
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.1)


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def service_settings(infra: Infra, issuer: TestIssuer, **overrides: Any) -> Settings:
    """Short settle delay and fast loops: the in-process replica of a module's tests. (Module scope,
    so that it is not a second replica while the end-to-end tests kill and restart the process.)"""
    values: dict[str, Any] = {
        "database_url": bootstrap.service_url(infra.admin_url, "followup"),
        "kafka_bootstrap_servers": infra.bootstrap_servers,
        "kafka_idempotent_producer": not infra.is_tansu,
        "auth_jwks_url": issuer.jwks_url,
        "auth_issuer": "pmtct-dev-issuer",
        "relay_poll_interval_s": 0.2,
        "timer_interval_s": 0.2,
        "timer_settle_s": 2.0,
        "hmac_key": new_key(),
        "log_json": True,
    }
    values.update(overrides)
    return Settings(**values)
