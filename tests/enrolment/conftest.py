"""The enrolment service in-process against the real test PostgreSQL and broker, and an EMR that
builds events the way a partner clinic posts them.

One app (with its outbox relay publishing to the real broker) serves the whole session. Every
name, phone number, national id and record number the EMR invents is remembered, so the privacy
test can look for each of them on every topic.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord

from enrolment.main import build_app
from enrolment.settings import Settings
from pmtct_events import ENROLMENT_TOPIC, CloudEvent
from pmtct_tools.testing import Infra, TestIssuer, read_topic
from servicekit import bootstrap
from servicekit.db import asyncpg_dsn

TABLES = ("clients", "registrations", "client_events", "infants", "personal_data_reads", "outbox")
NOW = datetime.now(UTC).replace(microsecond=0)


def days_ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


@dataclass
class Emr:
    """Builds EMR events. Unique names and numbers per call; all of them are remembered."""

    facility_id: str = "FAC-ZA-001"
    posted_pii: set[str] = field(default_factory=set)

    @staticmethod
    def ago(days: float) -> str:
        """An occurred_at `days` before the start of the test session."""
        return days_ago(days)

    def _remember(self, *values: str | None) -> None:
        self.posted_pii.update(v for v in values if v)

    def ref(self, prefix: str = "ANC") -> str:
        value = f"{prefix}-{uuid.uuid4().hex[:12].upper()}"
        self._remember(value)
        return value

    def event(
        self,
        type: str,
        data: dict | None = None,
        *,
        client_ref: str | None = None,
        client_id: str | None = None,
        facility_id: str | None = None,
        occurred_at: str | None = None,
        event_id: str | None = None,
    ) -> dict:
        out: dict[str, Any] = {
            "event_id": event_id or str(uuid.uuid4()),
            "type": type,
            "facility_id": facility_id or self.facility_id,
            "occurred_at": occurred_at or days_ago(200),
            "data": data if data is not None else {},
        }
        if client_ref is not None:
            out["client_ref"] = client_ref
        if client_id is not None:
            out["client_id"] = client_id
        return out

    def enrolment(
        self, client_ref: str | None = None, *, at: str | None = None, facility_id: str | None = None, **data: Any
    ) -> dict:
        tag = uuid.uuid4().hex[:8]
        body = {
            "given_name": f"Nomsa{tag}",
            "family_name": f"Dlamini{tag}",
            "birth_date": "1996-04-11",
            "phone": f"+27 82 {secrets.randbelow(10**7):07d}",
            "national_id": f"NID{uuid.uuid4().hex[:13].upper()}",
            "status_at_enrolment": "pregnant",
            "hiv_status": "negative",
            "on_art": False,
            "gestation_weeks": 14,
        }
        body.update(data)
        body = {k: v for k, v in body.items() if v is not None}
        self._remember(body.get("given_name"), body.get("family_name"), body.get("phone"), body.get("national_id"))
        return self.event(
            "ClientEnrolled",
            body,
            client_ref=client_ref or self.ref(),
            facility_id=facility_id,
            occurred_at=at or days_ago(200),
        )

    def anc_visit(self, client_ref: str, at: str, visit_number: int = 2, **data: Any) -> dict:
        return self.event(
            "AncVisitRecorded", {"visit_number": visit_number, **data}, client_ref=client_ref, occurred_at=at
        )

    def hiv_test(self, client_ref: str, at: str, result: str = "positive", setting: str = "anc") -> dict:
        return self.event(
            "HivTestRecorded", {"result": result, "setting": setting}, client_ref=client_ref, occurred_at=at
        )

    def art(self, client_ref: str, at: str, regimen: str | None = "TDF/3TC/DTG") -> dict:
        return self.event(
            "ArtInitiated", {"regimen": regimen} if regimen else {}, client_ref=client_ref, occurred_at=at
        )

    def viral_load(self, client_ref: str, at: str, copies: int = 40) -> dict:
        return self.event("ViralLoadRecorded", {"copies_per_ml": copies}, client_ref=client_ref, occurred_at=at)

    def infant(self, outcome: str = "live_birth", **extra: Any) -> dict:
        return {"infant_ref": self.ref("HEI"), "sex": "female", "birth_weight_g": 3100, "outcome": outcome, **extra}

    def delivery(self, client_ref: str, at: str, infants: list[dict] | None = None, **data: Any) -> dict:
        body = {
            "place": "facility",
            "skilled_attendant": True,
            "maternal_outcome": "alive",
            "infants": infants if infants is not None else [self.infant()],
            **data,
        }
        return self.event("DeliveryRecorded", body, client_ref=client_ref, occurred_at=at)

    def transfer_out(self, client_ref: str, at: str, to_facility_id: str | None = "FAC-ZA-002") -> dict:
        data = {"to_facility_id": to_facility_id} if to_facility_id else {}
        return self.event("ClientTransferredOut", data, client_ref=client_ref, occurred_at=at)

    def died(self, client_ref: str, at: str) -> dict:
        return self.event("ClientDied", {}, client_ref=client_ref, occurred_at=at)


@dataclass
class EnrolmentService:
    http: httpx.AsyncClient
    settings: Settings
    issuer: TestIssuer
    infra: Infra
    database_url: str

    def headers(
        self, scopes: str = "events:write", facilities: list[str] | None = None, client_id: str = "emr-test"
    ) -> dict:
        return self.issuer.headers(scopes, facilities if facilities is not None else ["*"], client_id)

    async def post(
        self,
        events: list[dict],
        *,
        facilities: list[str] | None = None,
        scopes: str = "events:write",
        client_id: str = "emr-test",
    ) -> httpx.Response:
        return await self.http.post(
            "/v1/events", json={"events": events}, headers=self.headers(scopes, facilities, client_id)
        )

    async def post_raw(self, body: bytes) -> httpx.Response:
        """Post a body as given, to see how the service copes with what is not a well-formed batch."""
        return await self.http.post(
            "/v1/events", content=body, headers={**self.headers(), "content-type": "application/json"}
        )

    async def accept(self, events: list[dict], **kwargs: Any) -> list[dict]:
        """Post and insist that every event is accepted; returns the results."""
        response = await self.post(events, **kwargs)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        outcomes = [(r["status"], r["code"], r["reason"]) for r in results]
        assert [r["status"] for r in results] == ["accepted"] * len(events), outcomes
        return results

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def counts(self) -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        finally:
            await conn.close()

    async def wait_published(self, timeout_s: float = 20) -> None:
        """Until the relay has published every outbox row."""
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            rows = await self.fetch("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
            if rows[0]["n"] == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the outbox relay did not publish within the timeout")

    async def catalog_records(
        self, keys: set[str], expected: int, settle_s: float = 0.0, timeout_s: float = 30
    ) -> list[ConsumerRecord]:
        """Records on the enrolment topic whose key is one of `keys`, once `expected` have arrived."""

        def mine(records: list[ConsumerRecord]) -> list[ConsumerRecord]:
            return [r for r in records if r.key is not None and r.key.decode() in keys]

        until: Callable[[list[ConsumerRecord]], bool] = lambda rs: len(mine(rs)) >= expected  # noqa: E731
        records = await read_topic(
            self.infra.bootstrap_servers, ENROLMENT_TOPIC, until=until, timeout_s=timeout_s, settle_s=settle_s
        )
        return mine(records)

    async def catalog_events(self, keys: set[str], expected: int, settle_s: float = 0.0) -> list[CloudEvent]:
        records = await self.catalog_records(keys, expected, settle_s)
        return [CloudEvent.from_kafka(r.key, r.value, r.headers or []) for r in records]


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def service_settings(infra: Infra, issuer: TestIssuer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": bootstrap.service_url(infra.admin_url, "enrolment"),
        "kafka_bootstrap_servers": infra.bootstrap_servers,
        "kafka_idempotent_producer": not infra.is_tansu,
        "auth_jwks_url": issuer.jwks_url,
        "auth_issuer": "pmtct-dev-issuer",
        "relay_poll_interval_s": 0.2,
        "hmac_key": new_key(),
        "pii_key": new_key(),
        "log_json": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def emr() -> Emr:
    return Emr()


@pytest.fixture(scope="session")
async def enrolment(migrated: Infra, issuer: TestIssuer) -> AsyncIterator[EnrolmentService]:
    settings = service_settings(migrated, issuer)
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrolment", timeout=60) as http:
            yield EnrolmentService(http, settings, issuer, migrated, settings.database_url)
