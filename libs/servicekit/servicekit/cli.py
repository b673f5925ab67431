"""The `pmtct` command: run the platform, mint dev tokens, migrate, inspect dead letters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from .settings import SERVICES

app = typer.Typer(help="PMTCT event platform", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database bootstrap and migrations", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics: list and replay", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the local runner keeps its data and keys")]
DEFAULT_DATA_DIR = Path(".pmtct")


@app.command()
def dev(
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Do not feed demo EMR traffic")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Start the whole platform on this machine (what `make run` does)."""
    from .devrunner import run

    raise typer.Exit(run(data_dir, demo=not no_demo))


@app.command()
def token(
    client_id: Annotated[str, typer.Option("--client-id")],
    scope: Annotated[str, typer.Option("--scope", help='Space-separated scopes, e.g. "events:write clients:read"')],
    facility: Annotated[list[str], typer.Option("--facility", help="Facility id (repeat); * for all")],
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds")] = 12 * 3600,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Mint a token from the local runner's dev issuer."""
    from .auth import SCOPES
    from .devissuer import DevIssuer

    unknown = [s for s in scope.split() if s not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {unknown}; known: {' '.join(SCOPES)}", param_hint="--scope")
    typer.echo(DevIssuer(data_dir / "issuer").ensure().mint(client_id, scope, facility, ttl))


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise typer.BadParameter("set DATABASE_URL to an administrator connection string")
    return url


@db_app.command("bootstrap")
def db_bootstrap() -> None:
    """Create the database, one schema and one login role per service (DATABASE_URL = admin)."""
    from . import bootstrap

    asyncio.run(bootstrap.bootstrap(_admin_url()))
    typer.echo("bootstrapped schemas and roles: " + ", ".join(SERVICES))


@db_app.command("migrate")
def db_migrate(services: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Bootstrap, then run each service's migrations as its own role."""
    from . import bootstrap, migrations

    chosen = tuple(services or SERVICES)
    asyncio.run(bootstrap.bootstrap(_admin_url()))
    for service in chosen:
        migrations.upgrade(service, bootstrap.service_url(_admin_url(), service))
        typer.echo(f"migrated {service}")


@app.command()
def schemas(out: Annotated[Path | None, typer.Option(help="libs/events directory")] = None) -> None:
    """Regenerate the JSON Schemas and the AsyncAPI document from the event models."""
    from pmtct_events import schemagen

    schemagen.main([str(out)] if out else [])


def main() -> None:
    app()
