"""The database helpers the services share: set-based SQL (one statement per lookup or insert, whatever
the size) and the connection pool's liveness check."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest
from spine_support import SCHEMA
from sqlalchemy import Boolean, Column, Date, DateTime, Integer, MetaData, Table, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError

from servicekit.db import any_of, asyncpg_dsn, create_engine, insert_rows, pairs_in

scratch = Table(
    "helper_scratch",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("ref", Text),
    Column("at", DateTime(timezone=True)),
    Column("on_day", Date),
    Column("count", Integer),
    Column("flag", Boolean),
    Column("doc", JSONB),
)


async def test_rows_inserted_in_one_statement_read_back_as_given_and_are_found_by_array_lookups(spine) -> None:
    rows = [
        {
            "id": uuid.uuid4(),
            "facility_id": f"FAC-{i % 3}",
            "ref": None if i == 4 else f"R{i}",
            "at": datetime(2026, 1, 1, i, tzinfo=UTC),
            "on_day": date(2026, 1, 1 + i),
            "count": i,
            "flag": i % 2 == 0,
            "doc": {"i": i, "nested": [1, {"x": None}]} if i != 5 else None,
        }
        for i in range(10)
    ]
    async with spine.sessions() as session, session.begin():
        await session.execute(text("DROP TABLE IF EXISTS helper_scratch"))
        await session.execute(
            text(
                "CREATE TABLE helper_scratch (seq bigserial, id uuid PRIMARY KEY, facility_id text NOT NULL,"
                " ref text, at timestamptz, on_day date, count int, flag boolean, doc jsonb)"
            )
        )
        await insert_rows(session, scratch, rows)
        await insert_rows(session, scratch, [])
        stored = (await session.execute(select(scratch).order_by(text("seq")))).mappings().all()
        picked = (
            await session.execute(select(scratch.c.count).where(any_of(scratch.c.id, [rows[2]["id"], rows[7]["id"]])))
        ).scalars()
        paired = (
            await session.execute(
                select(scratch.c.count).where(
                    pairs_in((scratch.c.facility_id, scratch.c.ref), [("FAC-1", "R1"), ("FAC-0", "R1")])
                )
            )
        ).scalars()
        picked, paired = sorted(picked), list(paired)
        await session.execute(text("DROP TABLE helper_scratch"))
    assert [dict(r) for r in stored] == rows
    assert picked == [2, 7]
    assert paired == [1]


async def _backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(admin_url: str, pid: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def test_a_pooled_connection_that_died_while_idle_is_replaced_before_anyone_uses_it(spine_db, migrated) -> None:
    """After a quiet spell (a database restart, a network timeout), the next transaction gets a live
    connection: the idle one is checked first."""
    engine = create_engine(spine_db, SCHEMA, pool_size=1, ping_after_idle_s=0.05)
    try:
        dead = await _backend_pid(engine)
        await _terminate(migrated.admin_url, dead)
        await asyncio.sleep(0.1)
        assert await _backend_pid(engine) != dead
    finally:
        await engine.dispose()


async def test_a_connection_in_steady_use_is_not_checked_and_its_failure_renews_the_pool(spine_db, migrated) -> None:
    """In steady use no check precedes a transaction; if the server dropped the connection, that one
    transaction fails as disconnected (callers retry) and the next one connects afresh."""
    engine = create_engine(spine_db, SCHEMA, pool_size=1, ping_after_idle_s=60)
    try:
        dead = await _backend_pid(engine)
        await _terminate(migrated.admin_url, dead)
        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert await _backend_pid(engine) != dead
    finally:
        await engine.dispose()
