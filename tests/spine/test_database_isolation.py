"""Each service's role can use only its own schema (README, "Services and topics": one schema, one role per service)."""

from __future__ import annotations

import itertools

import asyncpg
import pytest

from servicekit import bootstrap
from servicekit.db import asyncpg_dsn
from servicekit.settings import SERVICES


@pytest.mark.parametrize("own, other", list(itertools.permutations(SERVICES, 2)))
async def test_a_service_role_is_denied_another_services_schema(migrated, own: str, other: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(bootstrap.service_url(migrated.admin_url, own)))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema"):
            await conn.fetch(f"SELECT * FROM {other}.outbox LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {other}.intruder (id int)")
    finally:
        await conn.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_role_uses_its_own_schema_and_cannot_write_public(migrated, service: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(bootstrap.service_url(migrated.admin_url, service)))
    try:
        assert await conn.fetchval("SELECT current_schema()") == service
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE false") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.intruder (id int)")
    finally:
        await conn.close()
