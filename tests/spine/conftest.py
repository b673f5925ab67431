"""A scratch service ("spinetest") with its own schema, role, outbox and inbox, so the runtime is
proven on its own, against the real PostgreSQL and broker, before any service uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from spine_support import SCHEMA, Spine
from sqlalchemy import text

from pmtct_tools.testing import Infra, unique
from servicekit import bootstrap, outbox
from servicekit.db import asyncpg_dsn, create_engine, sessionmaker
from servicekit.settings import ServiceSettings


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
