"""A scratch service ("spinetest") with its own schema, role, outbox and inbox, so the runtime is
proven on its own, against the real PostgreSQL and broker, before any service uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar

import asyncpg
import pytest
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from servicekit import bootstrap, outbox
from servicekit.db import asyncpg_dsn, create_engine, sessionmaker
from servicekit.settings import ServiceSettings
from servicekit.testing import Infra, unique

SCHEMA = "spinetest"


class Pinged(Event):
    """A scratch event: `seq` numbers the events of one key so tests can check order."""

    service: ClassVar[str] = SCHEMA
    key_field: ClassVar[str] = "stream"
    event_name: ClassVar[str] = "Pinged"
    stream: str
    seq: int = Field(ge=0)
    poison: bool = False


def event_type_on(topic: str) -> type[Pinged]:
    """A Pinged published to its own topic, so tests sharing the broker never see each other."""
    return type("Pinged", (Pinged,), {"__module__": __name__, "topic": classmethod(lambda cls: topic)})


@pytest.fixture(scope="session")
def spine_db(migrated: Infra) -> str:
    async def setup() -> str:
        await bootstrap.bootstrap(migrated.admin_url, (SCHEMA,))
        url = bootstrap.service_url(migrated.admin_url, SCHEMA)
        conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": SCHEMA})
        try:
            await conn.execute("DROP TABLE IF EXISTS inbox, outbox, applied CASCADE")
            await conn.execute("DROP FUNCTION IF EXISTS outbox_notify() CASCADE")
            for statement in outbox.DDL:
                await conn.execute(statement)
            # no unique key on purpose: a double application must show up as two rows
            await conn.execute("CREATE TABLE applied (event_id uuid NOT NULL, key text NOT NULL, seq int NOT NULL)")
        finally:
            await conn.close()
        return url

    return asyncio.run(setup())


@pytest.fixture
async def spine(spine_db: str, migrated: Infra) -> AsyncIterator[Spine]:
    settings = ServiceSettings(
        service_name=SCHEMA,
        database_url=spine_db,
        kafka_bootstrap_servers=migrated.bootstrap_servers,
        kafka_idempotent_producer=not migrated.is_tansu,
        relay_poll_interval_s=0.1,
        consumer_max_attempts=3,
        consumer_backoff_initial_s=0.01,
        consumer_backoff_max_s=0.05,
    )
    engine = create_engine(spine_db, SCHEMA, pool_size=5)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE outbox, inbox, applied"))
    s = Spine(settings, sessionmaker(engine), unique("pmtct.spinetest"))
    yield s
    await engine.dispose()


class Spine:
    def __init__(self, settings: ServiceSettings, sessions, topic: str) -> None:
        self.settings = settings
        self.sessions = sessions
        self.topic = topic
        self.Event = event_type_on(topic)

    def event(self, key: str, seq: int, poison: bool = False) -> Pinged:
        from datetime import UTC, datetime

        return self.Event(facility_id="FAC-ZA-001", occurred_at=datetime.now(UTC), stream=key, seq=seq, poison=poison)

    async def applied(self) -> list[tuple]:
        async with self.sessions() as session:
            rows = await session.execute(text("SELECT event_id, key, seq FROM applied"))
            return [tuple(r) for r in rows]

    async def unpublished(self) -> int:
        async with self.sessions() as session:
            return (await session.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()


async def record_application(session: AsyncSession, ce: CloudEvent, event: Pinged) -> None:
    """The scratch consumer's handler: poison events always fail, others leave one row."""
    if event.poison:
        raise RuntimeError(f"cannot apply poison event {event.stream}/{event.seq}")
    await session.execute(
        text("INSERT INTO applied (event_id, key, seq) VALUES (:e, :k, :s)"),
        {"e": ce.id, "k": event.stream, "s": event.seq},
    )
