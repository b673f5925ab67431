"""One async engine per service, bound to the service's schema through `search_path`."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from functools import cache
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Table,
    TextClause,
    TypeDecorator,
    any_,
    bindparam,
    event,
    func,
    select,
    text,
    tuple_,
    types,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")


def sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+asyncpg"
    return f"{scheme}://{rest}"


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants `postgresql://`; a Unix-socket host stays in the `host` query parameter."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def with_user(url: str, user: str, password: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    auth = user if password is None else f"{user}:{password}"
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, f"{auth}@{host}", path, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def socket_host(url: str) -> str | None:
    return parse_qs(urlsplit(url).query).get("host", [None])[0]


def _json_text(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


#: a pooled connection idle this long is checked before use (see `_ping_when_idle`)
PING_AFTER_IDLE_S = 5.0


def create_engine(
    url: str, schema: str, pool_size: int = 10, ping_after_idle_s: float = PING_AFTER_IDLE_S
) -> AsyncEngine:
    """json/jsonb columns go through orjson both ways: event payloads are read and written on every
    event, and the stdlib codec was a visible share of a consumer's time."""
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        # an error's message never carries the statement's parameters (personal data could be among them)
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": schema, "application_name": f"pmtct-{schema}"}},
    )
    _ping_when_idle(engine, ping_after_idle_s)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Check a pooled connection before use only when it sat idle for `idle_s` or more.

    SQLAlchemy's `pool_pre_ping` checks every checkout, and on asyncpg a check is three round trips
    (BEGIN, a query, ROLLBACK): as many as a consumer batch's own statements. A connection in steady
    use does not go stale unnoticed: if the server goes away under it, its statement fails with a
    disconnect error, SQLAlchemy invalidates the whole pool, and the caller retries (consumers do on
    their own). The idle connections are the ones a database restart or a network timeout leaves
    dead behind a quiet spell, and those are checked; a dead one is replaced before the caller sees it.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["pmtct_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _check_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("pmtct_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return  # new, or in steady use
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection idle {time.monotonic() - since:.0f} s is gone") from exc


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def connect(url: str, schema: str | None = None) -> asyncpg.Connection:
    settings = {"search_path": schema} if schema else {}
    return await asyncpg.connect(asyncpg_dsn(url), server_settings=settings)


def any_of(column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column = ANY(:array)`: one statement text whatever the number of values, where `IN (...)`
    renders a new one per length (SQLAlchemy re-renders it on every execution and asyncpg prepares
    every new text again)."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def pairs_in(columns: Sequence[ColumnElement[Any]], rows: Collection[tuple[Any, ...]]) -> ColumnElement[bool]:
    """`(a, b) IN (SELECT unnest(:as), unnest(:bs))`: the many-column form of `any_of`."""
    arrays = [
        func.unnest(bindparam(None, [row[i] for row in rows], type_=ARRAY(c.type))) for i, c in enumerate(columns)
    ]
    return tuple_(*columns).in_(select(*arrays))


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...], on_conflict: str = "") -> tuple[TextClause, frozenset[str]]:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays, selected, as_json = [], [], set()
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, TypeDecorator):
            raise TypeError(f"{table.name}.{name}: insert_rows does not apply type decorators")
        if isinstance(kind, JSON | JSONB):
            as_json.add(name)
            arrays.append(f"CAST(:{name} AS text[])")
            selected.append(f"CAST({name} AS {kind.compile(dialect=dialect)})")
        elif isinstance(kind, types.ARRAY):
            # an array per row: unnest would flatten an array of arrays, so each goes as JSON text
            as_json.add(name)
            item = kind.item_type.compile(dialect=dialect)
            arrays.append(f"CAST(:{name} AS text[])")
            selected.append(
                f"CASE WHEN {name} IS NULL THEN NULL ELSE ARRAY(SELECT CAST(_x AS {item})"
                f" FROM jsonb_array_elements_text(CAST({name} AS jsonb)) WITH ORDINALITY AS _a(_x, _i) ORDER BY _i) END"
            )
        else:
            arrays.append(f"CAST(:{name} AS {kind.compile(dialect=dialect)}[])")
            selected.append(name)
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(selected)}"
        f" FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({', '.join(columns)}, n) ORDER BY n"
        + (f" {on_conflict}" if on_conflict else "")
    )
    return statement, frozenset(as_json)


async def insert_rows(
    session: AsyncSession | AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], on_conflict: str = ""
) -> None:
    """Insert rows (dicts with the same keys) in one statement that takes one array per column: a
    statement per row (executemany) costs PostgreSQL a statement per row. Rows keep their order.
    `on_conflict`: an `ON CONFLICT ...` clause (an upsert; `EXCLUDED` names the row offered), which
    no two rows may hit with the same key."""
    if not rows:
        return
    await session.execute(*rows_insert(table, rows, on_conflict))


def rows_insert(
    table: Table, rows: Sequence[dict[str, Any]], on_conflict: str = ""
) -> tuple[TextClause, dict[str, list[Any]]]:
    """The statement of `insert_rows` and its parameters, for a synchronous session to execute (a
    read model written on the session's synchronous face, inside `run_sync`); `rows` not empty."""
    columns = tuple(rows[0])
    statement, as_json = _unnest_insert(table, columns, on_conflict)
    arrays = {c for c in as_json if isinstance(table.c[c].type, types.ARRAY)}
    return statement, {
        c: [r[c] if c not in as_json or (c in arrays and r[c] is None) else _json_text(r[c]) for r in rows]
        for c in columns
    }
