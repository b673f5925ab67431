"""Database bootstrap: one database, one schema and one login role per service.

Each role owns its schema and nothing else; `public` is closed, so a service that reaches for
another service's tables gets "permission denied". Idempotent: safe to run on every start.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import asyncpg

from .db import asyncpg_dsn, database_name, with_user
from .settings import SERVICES

#: the platform's database when the admin URL names none of its own (the server's maintenance database)
DATABASE = "pmtct"
_MAINTENANCE = frozenset({"", "postgres", "template0", "template1"})


def database_for(admin_url: str) -> str:
    """The platform's database: the one `DATABASE_URL` names, unless that is the server's
    maintenance database (`postgres`, as an administrator's URL usually is), then `pmtct`."""
    named = urlsplit(admin_url).path.lstrip("/")
    return DATABASE if named in _MAINTENANCE else named


def role_name(service: str) -> str:
    return f"pmtct_{service}"


def role_password(service: str) -> str | None:
    """Set in deployments (`PMTCT_DB_PASSWORD_<SERVICE>`); the embedded dev server trusts its socket."""
    return os.environ.get(f"PMTCT_DB_PASSWORD_{service.upper()}")


def service_url(admin_url: str, service: str, database: str | None = None) -> str:
    return with_user(admin_url, role_name(service), role_password(service), database or database_for(admin_url))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def bootstrap(admin_url: str, services: tuple[str, ...] = SERVICES, database: str | None = None) -> None:
    database = database or database_for(admin_url)
    try:
        admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    except asyncpg.InvalidCatalogNameError:  # DATABASE_URL names the database to create
        admin = await asyncpg.connect(asyncpg_dsn(with_admin_database(admin_url, "postgres")))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f"CREATE DATABASE {_ident(database)}")
    finally:
        await admin.close()
    target = admin_url if database_name(admin_url) == database else with_admin_database(admin_url, database)
    conn = await asyncpg.connect(asyncpg_dsn(target))
    try:
        await conn.execute(f"REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC")
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for service in services:
            role = role_name(service)
            password = role_password(service)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            secret = f" PASSWORD {_literal(password)}" if password else ""
            await conn.execute(f"{verb} ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{secret}")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(service)} AUTHORIZATION {_ident(role)}")
            await conn.execute(f"ALTER ROLE {_ident(role)} SET search_path = {_ident(service)}")
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {_ident(role)}")
    finally:
        await conn.close()


def with_admin_database(admin_url: str, database: str) -> str:
    from urllib.parse import urlunsplit

    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
