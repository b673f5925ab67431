"""The referrals service in-process against the shared test PostgreSQL and broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from pmtct_events import CloudEvent, Event
from pmtct_tools.testing import Infra, TestIssuer
from referrals import repository, timers
from referrals.main import build_app
from referrals.settings import Settings
from servicekit import bootstrap

FACILITY = "FAC-ZA-001"
OTHER_FACILITY = "FAC-ZA-002"
THIRD_FACILITY = "FAC-KE-001"


@pytest.fixture(scope="session")
def referrals_settings(migrated: Infra, issuer: TestIssuer) -> Settings:
    return Settings(
        database_url=bootstrap.service_url(migrated.admin_url, "referrals"),
        kafka_bootstrap_servers=migrated.bootstrap_servers,
        kafka_idempotent_producer=not migrated.is_tansu,
        auth_jwks_url=issuer.jwks_url,
        auth_issuer="pmtct-dev-issuer",
        relay_poll_interval_s=0.2,
        timer_interval_s=0.5,
        log_json=True,
        # push delivery to the tests' local receivers (http), quickly retried
        push_allow_http=True,
        push_poll_interval_s=0.1,
        push_timeout_s=30,
        push_backoff_initial_s=0.1,
        push_backoff_max_s=1,
        push_pause_after_failures=8,
    )


@dataclass
class Api:
    """The in-process service, its HTTP client and a token factory."""

    app: Any
    http: httpx.AsyncClient
    issuer: TestIssuer
    settings: Settings

    def auth(
        self,
        scopes: str = "referrals:write referrals:read",
        facilities: list[str] | None = None,
        client: str = "clinic",
    ) -> dict[str, str]:
        return self.issuer.headers(scopes, facilities if facilities is not None else [FACILITY], client_id=client)

    @property
    def national(self) -> dict[str, str]:
        return self.auth("referrals:read", ["*"], client="ministry")

    @property
    def sessions(self):
        return self.app.state.runtime.sessions

    async def known(self, subject_id: str | UUID, facility_id: str = FACILITY) -> None:
        """Make a subject known at a facility, as an event about her there does (the consumer's
        preload calls the same): only such a subject may be referred by hand."""
        async with self.sessions() as session, session.begin():
            await repository.learn_subjects(session, [(UUID(str(subject_id)), facility_id)])

    async def create(self, headers: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
        body = referral_body(**overrides)
        await self.known(body["subject_id"], body["from_facility_id"])
        response = await self.http.post("/v1/referrals", json=body, headers=headers or self.auth())
        assert response.status_code == 201, response.text
        return response.json()

    async def act(
        self, referral_id: str | UUID, action: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/referrals/{referral_id}/{action}", json=body or None, headers=headers or self.auth()
        )


def referral_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject_type": "client",
        "subject_id": str(uuid4()),
        "from_facility_id": FACILITY,
        "to_facility_id": OTHER_FACILITY,
        "referral_service": "family_planning",
        "reason_code": "postnatal_contraception",
        "urgency": "routine",
        "due_by": (date.today() + timedelta(days=14)).isoformat(),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def feed_types(api: Api, referral_id: str | UUID) -> list[str]:
    """The event names of a referral's feed entries, in feed order (read straight from the table)."""
    async with api.sessions() as session:
        rows = await session.execute(
            text("SELECT event_type FROM feed_entry WHERE referral_id = :id ORDER BY position"), {"id": referral_id}
        )
        return [t.split(".")[-2] for (t,) in rows.all()]


async def expire_now(api: Api, referral_id: str | UUID) -> dict[str, Any]:
    """Run an expiry pass and return the referral once it is expired: the in-process service's
    own timer loop may be the one that expires it, a moment later."""
    await timers.expire_past_due(api.sessions, api.settings, date.today())
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        detail = (await api.http.get(f"/v1/referrals/{referral_id}", headers=api.national)).json()
        if detail["status"] == "expired" or asyncio.get_running_loop().time() > deadline:
            return detail
        await asyncio.sleep(0.1)


async def backdate_due(api: Api, referral_id: str | UUID, days: int = 30) -> None:
    """Move a referral's due-by date into the past, as if time had passed."""
    async with api.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE referral SET due_by = due_by - CAST(:days AS integer) WHERE id = :id"),
            {"id": referral_id, "days": days},
        )


@pytest.fixture(scope="module")
async def api(referrals_settings: Settings, issuer: TestIssuer) -> AsyncIterator[Api]:
    app = build_app(referrals_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            yield Api(app, http, issuer, referrals_settings)


class Emr:
    """Writes platform events straight into their topics, as enrolment and follow-up would."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, event: Event, event_id: UUID | None = None) -> CloudEvent:
        ce = CloudEvent.from_event(event, event_id=event_id)
        await self.producer.send_and_wait(event.topic(), ce.value(), key=ce.key, headers=ce.headers())
        return ce


@pytest.fixture(scope="module")
async def emr(api: Api) -> AsyncIterator[Emr]:
    producer = AIOKafkaProducer(bootstrap_servers=api.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield Emr(producer)
    finally:
        await producer.stop()
