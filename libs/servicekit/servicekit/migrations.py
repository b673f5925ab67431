"""Alembic, once for all services: each service keeps its migrations in `<service>/migrations`,
in its own schema, with its own version table, and runs them as its own role."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.ext.asyncio import create_async_engine

from . import corrections, outbox, pending
from .db import sqlalchemy_url


def config(service: str, url: str) -> Config:
    location = Path(str(resources.files(service))) / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["schema"] = service
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Run in a thread if called from async code: the env runs its own event loop."""
    command.upgrade(config(service, url), revision)


def run_env(context, target_metadata: MetaData | None = None) -> None:
    """The body of every service's `migrations/env.py`."""
    cfg = context.config
    schema = cfg.attributes.get("schema")
    url = sqlalchemy_url(cfg.get_main_option("sqlalchemy.url"))

    def do_run(connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(
            url, poolclass=pool.NullPool, connect_args={"server_settings": {"search_path": schema}}
        )
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run_async())


def create_runtime_tables(op) -> None:
    """Outbox (with its NOTIFY trigger) and inbox: call from a service's first migration."""
    for statement in outbox.DDL:
        op.execute(statement)


def drop_runtime_tables(op) -> None:
    for statement in outbox.DROP_DDL:
        op.execute(statement)


def create_pending_table(op) -> None:
    """The table of held EMR events (`servicekit.pending`): in each service whose intake holds events."""
    for statement in pending.DDL:
        op.execute(statement)


def add_correction_columns(op, table: str) -> None:
    """The correction columns (`servicekit.corrections.ADD_COLUMNS`) on a service's table of
    accepted EMR events: what each published, and whether (when, by what) it was voided."""
    for name, kind in corrections.ADD_COLUMNS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def drop_correction_columns(op, table: str) -> None:
    for name, _ in corrections.ADD_COLUMNS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {name}")


def drop_pending_table(op) -> None:
    for statement in pending.DROP_DDL:
        op.execute(statement)
