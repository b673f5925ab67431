"""The test harness's own paths: containers where Docker runs."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pmtct_tools.testing import docker_available, start_containers
from servicekit.db import asyncpg_dsn


@pytest.mark.skipif(not docker_available(), reason="no Docker engine answers here: the testcontainers path cannot run")
def test_testcontainers_start_a_real_postgres_and_kafka() -> None:
    infra = start_containers()
    try:

        async def probe() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(infra.admin_url))
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
            await admin.start()
            await admin.list_topics()
            await admin.close()

        asyncio.run(probe())
    finally:
        infra.stop()
