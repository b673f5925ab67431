"""The `pmtct` command: run the platform, mint dev tokens, migrate, inspect dead letters.

Only the commands that need them import the dev tools (`dev`: embedded PostgreSQL and Tansu, from
`pmtct-tools[local]`), the simulator (`simulate`) or a service (`replay`), so `pmtct db migrate` and
`pmtct dlq ...` run in the production image, which has none of the local infrastructure."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from servicekit.settings import PORTS, SERVICES

app = typer.Typer(help="PMTCT event platform", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database bootstrap and migrations", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics: list and replay", no_args_is_help=True)
dhis2_app = typer.Typer(help="DHIS2 submission of the reporting figures", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")
app.add_typer(dhis2_app, name="dhis2")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The local runner's data and keys (default: $PMTCT_DATA_DIR, else the nearest .pmtct above the"
        " current directory, else the repository's .pmtct)",
    ),
]


def _existing_data_dir(explicit: Path | None, needs: str = "issuer") -> Path:
    from .datadir import DataDirNotFound, existing

    try:
        return existing(explicit, needs=needs)
    except DataDirNotFound as exc:
        typer.echo(f"pmtct: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def dev(
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Do not feed demo EMR traffic")] = False,
    data_dir: DataDir = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Add to every port (8001-8004, 9092)")] = 0,
) -> None:
    """Start the whole platform on this machine (what `make run` does)."""
    from .datadir import for_runner
    from .devrunner import run
    from .localinfra import LocalInfraMissing

    try:
        code = run(for_runner(data_dir), demo=not no_demo, port_offset=port_offset)
    except LocalInfraMissing as exc:
        typer.echo(f"pmtct dev: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def token(
    client_id: Annotated[str, typer.Option("--client-id")],
    scope: Annotated[str, typer.Option("--scope", help='Space-separated scopes, e.g. "events:write clients:read"')],
    facility: Annotated[list[str], typer.Option("--facility", help="Facility id (repeat); * for all")],
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds")] = 12 * 3600,
    subject: Annotated[
        str | None, typer.Option("--subject", help="The token's sub: a staff member's staff id (her app's token)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Mint a token from the local runner's dev issuer (the one its services trust)."""
    from servicekit.auth import SCOPES

    from .devissuer import DevIssuer

    unknown = [s for s in scope.split() if s not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {unknown}; known: {' '.join(SCOPES)}", param_hint="--scope")
    found = _existing_data_dir(data_dir)
    typer.echo(DevIssuer(found / "issuer").ensure().mint(client_id, scope, facility, ttl, subject=subject))


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise typer.BadParameter("set DATABASE_URL to an administrator connection string")
    return url


@db_app.command("bootstrap")
def db_bootstrap() -> None:
    """Create the database, one schema and one login role per service (DATABASE_URL = admin)."""
    from servicekit import bootstrap

    asyncio.run(bootstrap.bootstrap(_admin_url()))
    typer.echo("bootstrapped schemas and roles: " + ", ".join(SERVICES))


@db_app.command("migrate")
def db_migrate(services: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Bootstrap, then run each service's migrations as its own role."""
    from servicekit import bootstrap, migrations

    chosen = tuple(services or SERVICES)
    asyncio.run(bootstrap.bootstrap(_admin_url()))
    for service in chosen:
        migrations.upgrade(service, bootstrap.service_url(_admin_url(), service))
        typer.echo(f"migrated {service}")


Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar=["PMTCT_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"],
        help="Kafka bootstrap servers (default: the services' PMTCT_KAFKA_BOOTSTRAP_SERVERS)",
    ),
]
DlqTopic = Annotated[
    list[str] | None, typer.Option("--topic", help="A topic or its .dlq topic (repeat); default: every .dlq topic")
]
IdleSeconds = Annotated[float, typer.Option("--idle-seconds", help="Stop reading after this long without records")]


def _kafka_settings(bootstrap_servers: str | None):
    """The broker to talk to: --bootstrap-servers (or PMTCT_KAFKA_BOOTSTRAP_SERVERS), else the running
    local runner's (its runner.json), else the services' default (localhost:9092)."""
    from servicekit.settings import ServiceSettings

    from .datadir import find_running

    settings = ServiceSettings(service_name="dlq")
    if not bootstrap_servers:
        runner = find_running()
        if runner is not None:
            bootstrap_servers = runner.bootstrap_servers
    return settings.model_copy(update={"kafka_bootstrap_servers": bootstrap_servers}) if bootstrap_servers else settings


@dlq_app.command("list")
def dlq_list(
    topic: DlqTopic = None,
    ce_id: Annotated[str | None, typer.Option("--id", help="Only this ce_id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    bootstrap_servers: Bootstrap = None,
    idle_seconds: IdleSeconds = 2.0,
) -> None:
    """List dead letters (from the beginning of each .dlq topic) and whether each was replayed."""
    import json

    from servicekit import dlq

    settings = _kafka_settings(bootstrap_servers)
    letters = asyncio.run(dlq.read(settings.kafka_bootstrap_servers, topic, idle_seconds))
    letters = [d for d in letters if ce_id is None or d.ce_id == ce_id]
    for d in letters:
        row = d.as_dict()
        if as_json:
            typer.echo(json.dumps(row))
            continue
        where = f"{d.original_topic}[{d.original_partition}]@{d.original_offset}"
        typer.echo(
            f"{d.status:<12} {d.ce_id or '-'}  {d.event_name or '-'}  from {where}  consumer={d.consumer or '-'}"
            f"  attempts={d.attempts}  at={row['dead_lettered_at']}"
        )
        typer.echo(f"{'':<12} {d.error_type or 'error'}: {d.error or '-'}")
    if not as_json:
        pending = sum(1 for d in letters if d.status == dlq.PENDING)
        typer.echo(f"{len(letters)} dead letter(s), {pending} pending")


@dlq_app.command("replay")
def dlq_replay(
    topic: DlqTopic = None,
    ce_id: Annotated[str | None, typer.Option("--id", help="Only this ce_id (replayed even if it was before)")] = None,
    consumer: Annotated[str | None, typer.Option("--consumer", help="Only what this consumer dead-lettered")] = None,
    include_replayed: Annotated[bool, typer.Option("--include-replayed", help="Also resend replayed ones")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed")] = False,
    bootstrap_servers: Bootstrap = None,
    idle_seconds: IdleSeconds = 2.0,
) -> None:
    """Republish pending dead letters to their original topics (same ce_id; inboxes make it safe)."""
    from servicekit import dlq

    settings = _kafka_settings(bootstrap_servers)
    letters = asyncio.run(dlq.read(settings.kafka_bootstrap_servers, topic, idle_seconds))
    chosen = dlq.select(letters, ce_id=ce_id, consumer=consumer, include_replayed=include_replayed)
    if ce_id is not None and not chosen:
        typer.echo(f"no dead letter with ce_id {ce_id}", err=True)
        raise typer.Exit(1)
    if not dry_run:
        chosen = asyncio.run(dlq.replay(settings, chosen))
    verb = "would replay" if dry_run else "replayed"
    for d in chosen:
        typer.echo(f"{verb} {d.ce_id} ({d.event_name}) to {d.original_topic}, dead-lettered by {d.consumer}")
    typer.echo(f"{len(chosen)} {verb}")


@app.command()
def simulate(
    facilities: Annotated[int, typer.Option("--facilities", help="How many facilities of the registry")] = 4,
    clients: Annotated[int, typer.Option("--clients", help="Mothers enrolled over the period")] = 200,
    months: Annotated[int, typer.Option("--months", help="Length of the period, ending yesterday")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same programme")] = 1,
    rate: Annotated[float | None, typer.Option("--rate", help="At most this many events per second")] = None,
    anchor: Annotated[str | None, typer.Option("--anchor", help="The simulated today, YYYY-MM-DD")] = None,
    enrolment_url: Annotated[
        str | None, typer.Option("--enrolment-url", help="Default: the running local runner's")
    ] = None,
    followup_url: Annotated[
        str | None, typer.Option("--followup-url", help="Default: the running local runner's")
    ] = None,
    referrals_url: Annotated[
        str | None, typer.Option("--referrals-url", help="Then work referrals as Mentor Mothers; '' to skip")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Post a synthetic PMTCT programme through the public APIs, as partner EMRs would (tokens
    from the local runner's dev issuer), then refer and act on referrals as Mentor Mothers do;
    exits 1 if any EMR answer differs from the intended one."""
    from datetime import date

    from emrsim.posting import Endpoints
    from emrsim.programme import ProgrammeParams
    from emrsim.runner import registry_facilities
    from emrsim.runner import simulate as run_simulation

    from .devissuer import DevIssuer

    params = ProgrammeParams(
        registry_facilities(facilities),
        clients=clients,
        months=months,
        seed=seed,
        anchor=date.fromisoformat(anchor) if anchor else date.today(),
    )
    from .datadir import running

    found = _existing_data_dir(data_dir)
    urls = {s: f"http://127.0.0.1:{p}" for s, p in PORTS.items()}
    runner = running(found)
    if runner is not None:
        urls.update(runner.urls)
    issuer = DevIssuer(found / "issuer").ensure()
    endpoints = Endpoints(enrolment_url or urls["enrolment"], followup_url or urls["followup"])
    referrals = urls["referrals"] if referrals_url is None else referrals_url
    tally = run_simulation(params, endpoints, issuer.mint, rate=rate, referrals_url=referrals or None)
    raise typer.Exit(0 if tally.matches else 1)


@app.command()
def replay(
    service: Annotated[str, typer.Argument(help="The service whose read model to rebuild: reporting")],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A running local runner's data directory (its database)")
    ] = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Rebuild a service's read model from the topics, with a progress bar: the same numbers as before.
    Connects as the service does (PMTCT_DATABASE_URL), or to the running local runner (found as
    `pmtct token` finds it, or --data-dir), never to whatever PostgreSQL happens to be on localhost."""
    if service != "reporting":
        raise typer.BadParameter("only reporting keeps a read model rebuilt from the topics", param_hint="SERVICE")
    from reporting.replay import main as rebuild_reporting

    from .datadir import running

    if data_dir is None and os.environ.get("PMTCT_DATABASE_URL"):
        raise typer.Exit(rebuild_reporting(bootstrap_servers=bootstrap_servers))
    found = _existing_data_dir(data_dir, needs="postgres/postmaster.pid")
    runner = running(found)
    if bootstrap_servers is None and runner is not None:
        bootstrap_servers = runner.bootstrap_servers
    raise typer.Exit(rebuild_reporting(data_dir=found, bootstrap_servers=bootstrap_servers))


@dhis2_app.command("push")
def dhis2_push(
    period: Annotated[str, typer.Option("--period", help="2026-09 (202609), 2026Q3, 2026, FY2026 (2025Oct), FY2026Q4")],
    data_set: Annotated[str, typer.Option("--data-set", help="mer (the ministry's MER data set) or programme")] = "mer",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="DHIS2 checks the import and saves nothing")] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A running local runner's data directory (its database)")
    ] = None,
) -> None:
    """Send a data set's figures for a period to DHIS2 (POST /api/dataValueSets) and print its import summary.
    Connects as the reporting service does (PMTCT_DATABASE_URL, PMTCT_DHIS2_URL, PMTCT_DHIS2_TOKEN or
    PMTCT_DHIS2_USERNAME / PMTCT_DHIS2_PASSWORD), or to the running local runner's database (found as
    `pmtct replay` finds it, or --data-dir); every push is kept in the submission history."""
    if data_set not in ("mer", "programme"):
        raise typer.BadParameter("mer or programme", param_hint="--data-set")
    from reporting.submissions import main as push_reporting

    if data_dir is None and os.environ.get("PMTCT_DATABASE_URL"):
        raise typer.Exit(push_reporting(period, data_set, dry_run, None, echo=typer.echo))
    found = _existing_data_dir(data_dir, needs="postgres/postmaster.pid")
    raise typer.Exit(push_reporting(period, data_set, dry_run, found, echo=typer.echo))


@app.command()
def schemas(out: Annotated[Path | None, typer.Option(help="libs/events directory")] = None) -> None:
    """Regenerate the JSON Schemas and the AsyncAPI document from the event models."""
    from pmtct_events.schemagen import main as generate

    generate([str(out)] if out else [])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
