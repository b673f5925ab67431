"""A reporting service of its own for the MER cohort: a private database, a private broker, its own
facility registry, a fixed clock, served over real HTTP in this process (so that a browser can open
the dashboard), and a DHIS2 stand-in beside it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaProducer

from pmtct_events import CloudEvent, Event
from pmtct_tools.dhis2_standin import Dhis2Standin, Metadata
from pmtct_tools.localinfra import TansuBroker, free_port
from pmtct_tools.testing import Infra, TestIssuer
from reporting import dhis2
from reporting.indicators import DataSet
from reporting.main import build_app
from reporting.settings import Settings
from servicekit import bootstrap, migrations
from servicekit.clock import Clock
from servicekit.db import asyncpg_dsn

#: the service's "now": the dashboard opens on September 2026, the last complete month
TODAY = datetime(2026, 10, 15, 9, tzinfo=UTC)


def standin_metadata(facilities_csv: str) -> Metadata:
    """What the ministry's DHIS2 knows: the metadata of the shipped mappings and the registry's org units."""
    meta = Metadata()
    for data_set in DataSet:
        mapping = dhis2.load_mapping(None, data_set)
        meta.data_sets.add(mapping.dataSet)
        meta.data_elements |= {m.dataElement for m in mapping.dataValues}
        meta.category_option_combos |= {
            m.categoryOptionCombo or mapping.defaultCategoryOptionCombo for m in mapping.dataValues
        }
        meta.attribute_option_combos |= {
            mapping.attributeOptionCombo or "default",
            *mapping.attributeOptionCombos.values(),
        }
    meta.org_units = {line.split(",")[-1] for line in facilities_csv.strip().splitlines()[1:]}
    return meta


@dataclass
class Served:
    url: str
    settings: Settings
    broker: str
    database_url: str
    dhis2: Dhis2Standin
    producer: AIOKafkaProducer
    issuer: TestIssuer
    app: Any = None

    @property
    def runtime(self):
        return self.app.state.runtime

    @property
    def reader(self) -> dict[str, str]:
        return self.issuer.headers("reports:read reports:submit", ["*"], client_id="ministry-data-manager")

    async def publish(self, events: Sequence[Event]) -> list[uuid.UUID]:
        ids = []
        for event in events:
            ce = CloudEvent.from_event(event)
            await self.producer.send(event.topic(), ce.value(), key=ce.key, headers=ce.headers())
            ids.append(ce.id)
        await self.producer.flush()
        return ids

    async def applied(self, ids: Sequence[uuid.UUID], timeout_s: float = 90) -> None:
        """Wait until the reporting consumer has applied every one of `ids` (its inbox has them)."""
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            await conn.execute("SET search_path TO reporting")
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                seen = await conn.fetchval(
                    "SELECT count(*) FROM inbox WHERE consumer = 'reporting' AND event_id = ANY($1::uuid[])", list(ids)
                )
                if seen == len(ids):
                    return
                assert asyncio.get_running_loop().time() < deadline, f"applied {seen} of {len(ids)}"
                await asyncio.sleep(0.2)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def serve_reporting(
    infra: Infra, issuer: TestIssuer, workdir: Path, facilities_csv: str, **overrides: Any
) -> AsyncIterator[Served]:
    database = f"pmtct_mer_{uuid.uuid4().hex[:8]}"
    await bootstrap.bootstrap(infra.admin_url, ("reporting",), database=database)
    url = bootstrap.service_url(infra.admin_url, "reporting", database)
    await asyncio.to_thread(migrations.upgrade, "reporting", url)
    broker = await asyncio.to_thread(lambda: TansuBroker(log_path=workdir / "tansu.log").start())
    registry = workdir / "facilities.csv"
    registry.write_text(facilities_csv)
    async with Dhis2Standin.serving(standin_metadata(facilities_csv)) as dhis2:
        values: dict[str, Any] = {
            "database_url": url,
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "kafka_idempotent_producer": False,
            "auth_jwks_url": issuer.jwks_url,
            "auth_issuer": "pmtct-dev-issuer",
            "timezone": "UTC",
            "PMTCT_FACILITIES": str(registry),
            "dhis2_url": dhis2.url,
            "dhis2_username": dhis2.username,
            "dhis2_password": dhis2.password,
            "dhis2_retry_initial_s": 0.05,
            "dhis2_retry_attempts": 3,
            # the schedule is driven by hand in the tests (submissions.scheduled_push)
            "dhis2_push_day": 0,
            "log_json": True,
            **overrides,
        }
        settings = Settings(**values).use_clock(Clock.fixed(TODAY))
        app = build_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{base}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("the reporting service never got ready")
            yield Served(base, settings, broker.bootstrap_servers, url, dhis2, producer, issuer, app)
        finally:
            await producer.stop()
            server.should_exit = True
            await task
            await asyncio.to_thread(broker.stop)
            conn = await asyncpg.connect(asyncpg_dsn(infra.admin_url))
            with contextlib.suppress(Exception):
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await conn.close()
