"""A private platform for the reporting cohort: the four real services as processes, with their
own database and their own broker, beside the session's shared ones.

Indicators are sums per facility and month, and every test of the session posts to the same demo
facilities in the same months; numbers written down by hand can only be exact where nothing else
posts. So the cohort runs on the same `Platform` the `platform` fixture uses, with the same
PostgreSQL server and token issuer, but in a database and on a broker of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import TansuBroker, free_port
from pmtct_tools.testing import Infra, TestIssuer
from servicekit import bootstrap, migrations
from servicekit.db import asyncpg_dsn
from servicekit.settings import SERVICES


@dataclass
class PrivatePlatform(Platform):
    database: str = "pmtct"

    def service_env(self, service: str) -> dict[str, str]:
        env = super().service_env(service)
        env["PMTCT_DATABASE_URL"] = bootstrap.service_url(self.admin_url, service, self.database)
        return env

    def service_url(self, service: str) -> str:
        """The service's own database login, as its process has it."""
        return bootstrap.service_url(self.admin_url, service, self.database)


async def _drop_database(admin_url: str, database: str) -> None:
    """Best effort: on the embedded server the whole cluster goes away with the session anyway."""
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def cohort_platform(
    migrated: Infra, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivatePlatform]:
    data_dir = tmp_path_factory.mktemp("cohort-platform")
    database = f"pmtct_cohort_{uuid.uuid4().hex[:8]}"
    asyncio.run(bootstrap.bootstrap(migrated.admin_url, SERVICES, database=database))
    for service in SERVICES:
        migrations.upgrade(service, bootstrap.service_url(migrated.admin_url, service, database))
    broker = TansuBroker(log_path=data_dir / "tansu.log").start()
    p = PrivatePlatform(
        data_dir=data_dir,
        database_url=migrated.admin_url,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        ports={s: free_port() for s in SERVICES},
        database=database,
    )
    p.jwks_server = issuer.server
    p.issuer = issuer.issuer
    p.extra_env = {
        "PMTCT_PII_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "PMTCT_HMAC_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "PMTCT_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "PMTCT_RELAY_POLL_INTERVAL_S": "0.2",
    }
    try:
        for s in SERVICES:
            p.start_service(s)
        p.wait_ready(timeout_s=90)
        yield p
    finally:
        p.jwks_server = None  # owned by the issuer fixture
        p.stop()
        broker.stop()
        asyncio.run(_drop_database(migrated.admin_url, database))


@pytest.fixture(scope="session")
async def mer_served(migrated: Infra, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory):
    """The MER cohort (`mer_cohort.py`, its late facts not yet posted) on a reporting service of its own
    (`mer_support.serve_reporting`), for the tests that only read it: the hand counts and the dashboard."""
    import mer_cohort
    from mer_support import serve_reporting

    async with serve_reporting(migrated, issuer, tmp_path_factory.mktemp("mer"), mer_cohort.FACILITIES) as served:
        built = mer_cohort.build()
        await served.applied(await served.publish(built.events))
        yield served
