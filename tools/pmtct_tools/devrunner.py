"""`pmtct dev`: the whole platform on this machine, nothing to install by hand.

Embedded PostgreSQL and the Tansu broker unless `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` name
real ones; bootstrap roles and schemas, migrate, start the four services as separate processes,
print their URLs and a dev token, feed demo traffic, stop everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import asyncpg
import httpx

from pmtct_events import TOPICS
from servicekit import bootstrap, kafka, migrations
from servicekit.db import asyncpg_dsn
from servicekit.settings import PORTS, SERVICES, ServiceSettings

from . import datadir
from .devissuer import DevIssuer, JwksServer
from .localinfra import (
    EmbeddedPostgres,
    PortTaken,
    TansuBroker,
    die_with_parent,
    free_port,
    port_is_free,
    stop_process,
)

log = logging.getLogger("pmtct.dev")

DEV_SCOPES = "events:write clients:read worklist:read referrals:write referrals:read reports:read admin"


def dev_key(directory: Path, name: str) -> str:
    """A random key generated on first run and kept in the data directory (never in the repo)."""
    return _kept(directory / "keys" / name, lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())


def dev_db_password(directory: Path, service: str) -> str:
    """The password of a service's database login, generated on first run into the data directory."""
    return _kept(bootstrap.local_password_path(directory, service), lambda: secrets.token_urlsafe(24))


def _kept(path: Path, make) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(0o600)
        path.write_text(make())
    return path.read_text().strip()


@dataclass
class Platform:
    """Infrastructure and service processes started by `pmtct dev` (and by end-to-end tests)."""

    data_dir: Path
    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    broker_port: int = 9092
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    issuer: DevIssuer | None = None
    jwks_server: JwksServer | None = None
    #: applied last to every service's environment (tests tune intervals here)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: stops the embedded PostgreSQL if this process is killed (see `EmbeddedPostgres.guardian`)
    guardian: subprocess.Popen | None = None
    #: the services' database passwords, by service (generated for the embedded PostgreSQL; with
    #: `DATABASE_URL`, `PMTCT_DB_PASSWORD_<SERVICE>` as in a deployment)
    db_passwords: dict[str, str] = field(default_factory=dict)
    #: supervision: restarts so far, and when a dead service may be started again
    restarts: dict[str, int] = field(default_factory=dict)
    _restart_at: dict[str, float] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        if self.database_url:
            return self.database_url
        assert self.postgres is not None
        return self.postgres.admin_url

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        assert self.broker is not None
        return self.broker.bootstrap_servers

    def check_ports(self) -> None:
        """Before anything starts: every port this platform listens on is free, or `PortTaken`."""
        wanted = dict(self.ports)
        if not self.kafka_bootstrap_servers:
            wanted["the dev broker"] = self.broker_port
        taken = [f"{port} ({name})" for name, port in wanted.items() if not port_is_free(port)]
        if taken:
            raise PortTaken(
                f"port {', '.join(taken)} taken (another `pmtct dev`?): stop what listens there,"
                " or move every port with --port-offset N"
            )

    def start_infrastructure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres").start()
            self.guardian = self.postgres.guardian()
            # the services' logins need the passwords generated into the data directory
            self.postgres.require_passwords()
            self.db_passwords = {s: dev_db_password(self.data_dir, s) for s in SERVICES}
        if not self.kafka_bootstrap_servers:
            self.broker = TansuBroker(self.broker_port, self.data_dir / "tansu.log").start()
        self.issuer = DevIssuer(self.data_dir / "issuer").ensure()
        self.jwks_server = JwksServer(self.issuer.jwks_path, free_port(8009)).start()

    def kafka_settings(self) -> ServiceSettings:
        """The services' Kafka settings (partitions, retention: `PMTCT_KAFKA_*` as they read them)."""
        env = {k: v for k, v in self.service_env(SERVICES[0]).items() if k.startswith("PMTCT_KAFKA_")}
        settings = ServiceSettings(service_name="dev")
        overrides: dict[str, object] = {"kafka_bootstrap_servers": self.bootstrap_servers}
        for name in ("kafka_topic_partitions", "kafka_replication_factor"):
            if f"PMTCT_{name.upper()}" in env:
                overrides[name] = int(env[f"PMTCT_{name.upper()}"])
        return settings.model_copy(update=overrides)

    def create_topics(self) -> None:
        """Every event topic and its dead-letter topic, with the configured partitions, before any
        service produces (a broker that auto-creates a topic on first use gives it its own count)."""
        asyncio.run(kafka.ensure_topics(self.kafka_settings(), list(TOPICS)))

    def republish_outboxes(self) -> int:
        """Mark every outbox row unpublished, so each relay publishes again everything its service
        keeps: what a new, empty dev broker needs. Consumers skip what they already applied (inbox)."""

        async def run() -> int:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_admin_url))
            try:
                total = 0
                for service in ("enrolment", "followup", "referrals"):
                    exists = await conn.fetchval("SELECT to_regclass($1)", f"{service}.outbox")
                    if exists is None:
                        continue
                    status = await conn.execute(
                        f'UPDATE "{service}".outbox SET published_at = NULL WHERE published_at IS NOT NULL'
                    )
                    total += int(status.split()[-1])
                return total
            finally:
                await conn.close()

        return asyncio.run(run())

    @property
    def database_admin_url(self) -> str:
        """The administrator's URL to the platform's database (not the maintenance database)."""
        return bootstrap.with_admin_database(self.admin_url, bootstrap.database_for(self.admin_url))

    def migrate(self, services: tuple[str, ...] = SERVICES) -> None:
        asyncio.run(bootstrap.bootstrap(self.admin_url, services, passwords=self.db_passwords))
        for service in services:
            migrations.upgrade(service, self.service_url(service))

    def service_url(self, service: str) -> str:
        """The service's own login (with its password) to the platform's database."""
        return bootstrap.service_url(self.admin_url, service, password=self.db_passwords.get(service))

    def service_env(self, service: str) -> dict[str, str]:
        assert self.jwks_server is not None
        env = dict(os.environ)
        env.update(
            PMTCT_DATABASE_URL=self.service_url(service),
            PMTCT_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            PMTCT_AUTH_JWKS_URL=self.jwks_server.url,
            PMTCT_AUTH_ISSUER="pmtct-dev-issuer",
        )
        # least privilege: only enrolment decrypts personal data; only it and follow-up hash EMR refs
        if service == "enrolment":
            env["PMTCT_PII_KEY"] = dev_key(self.data_dir, "pii.key")
            # the front door forwards infant events to follow-up's intake
            env["PMTCT_FOLLOWUP_URL"] = self.url("followup")
        if service in ("enrolment", "followup"):
            env["PMTCT_HMAC_KEY"] = dev_key(self.data_dir, "hmac.key")
        if self.broker is not None:
            env["PMTCT_KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # Tansu has no InitProducerId
            # the dev broker forgets everything when it stops: the outboxes are what is kept
            env.setdefault("PMTCT_OUTBOX_RETENTION_HOURS", str(10 * 365 * 24))
        env.setdefault("PMTCT_LOG_JSON", "true")
        # the services listen without a gateway in front: /metrics needs the scrape token
        env.setdefault("PMTCT_METRICS_TOKEN", dev_key(self.data_dir, "metrics.token"))
        env.update(self.extra_env)
        return env

    def start_service(self, service: str) -> subprocess.Popen:
        port = self.ports[service]
        if not port_is_free(port):
            raise RuntimeError(f"port {port} for {service} is taken; stop what uses it")
        log_file = open(self.data_dir / f"{service}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"{service}.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "5",
            ],
            env=self.service_env(service),
            stdout=log_file,
            stderr=log_file,
            preexec_fn=die_with_parent,
        )
        self.processes[service] = proc
        return proc

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def wait_ready(self, services: tuple[str, ...] = SERVICES, timeout_s: float = 60) -> dict[str, float]:
        started = time.monotonic()
        ready: dict[str, float] = {}
        with httpx.Client(timeout=2) as client:
            while len(ready) < len(services):
                for service in services:
                    if service in ready:
                        continue
                    proc = self.processes.get(service)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(
                            f"{service} exited with {proc.returncode}; see {self.data_dir / (service + '.log')}"
                        )
                    try:
                        if client.get(self.url(service) + "/readyz").status_code == 200:
                            ready[service] = time.monotonic() - started
                    except httpx.HTTPError:
                        pass
                if time.monotonic() - started > timeout_s:
                    missing = sorted(set(services) - set(ready))
                    raise TimeoutError(f"not ready after {timeout_s}s: {', '.join(missing)}")
                time.sleep(0.2)
        return ready

    def supervise(self, now: float | None = None, say=print) -> None:
        """One round of supervision (`run` calls it every second): start again a dead broker
        (topics, then the outboxes published again) and each dead service, with backoff."""
        now = time.monotonic() if now is None else now
        if self.broker is not None and self.broker.proc is not None and self.broker.proc.poll() is not None:
            code = self.broker.proc.returncode
            say(f"the dev broker exited with {code}; starting it again on {self.broker.bootstrap_servers}", flush=True)
            self.broker.proc = None
            self.broker = TansuBroker(self.broker_port, self.data_dir / "tansu.log").start()
            self.create_topics()
            say(f"  topics created again; {self.republish_outboxes()} outbox rows published again", flush=True)
        for service, proc in list(self.processes.items()):
            if proc.poll() is None:
                continue
            due = self._restart_at.get(service)
            if due is None:
                count = self.restarts.get(service, 0)
                delay = min(2.0**count, 30.0)
                self._restart_at[service] = now + delay
                say(
                    f"{service} exited with {proc.returncode}; starting it again in {delay:.0f}s"
                    f" (see {self.data_dir / (service + '.log')})",
                    flush=True,
                )
                continue
            if now < due:
                continue
            try:
                self.start_service(service)
            except RuntimeError as exc:  # its port is still taken: try again later
                say(f"{service}: {exc}", flush=True)
                self._restart_at[service] = now + 5
                continue
            del self._restart_at[service]
            self.restarts[service] = self.restarts.get(service, 0) + 1

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            stop_process(proc, 15)
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.jwks_server is not None:
            self.jwks_server.stop()
        if self.guardian is not None:
            self.guardian.kill()  # a normal stop: PostgreSQL is stopped below
            self.guardian.wait(5)
            self.guardian = None
        if self.postgres is not None:
            self.postgres.stop()


def run(data_dir: Path, demo: bool = True, port_offset: int = 0) -> int:
    platform = Platform(
        data_dir=data_dir.resolve(),
        database_url=os.environ.get("DATABASE_URL") or None,
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        ports={service: port + port_offset for service, port in PORTS.items()},
        broker_port=9092 + port_offset,
    )
    stopping = False

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C too, explicitly: Python installs its own SIGINT handler only when SIGINT was not
    # ignored at start, and a job started in the background of a shell (`nohup make run &`, a CI
    # runner) inherits it ignored, so Ctrl-C / SIGINT to its group stopped nothing
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    try:
        platform.check_ports()
    except PortTaken as exc:
        print(f"pmtct dev: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        print(f"pmtct dev: data in {platform.data_dir}", flush=True)
        platform.start_infrastructure()
        where_pg = "embedded PostgreSQL" if platform.postgres else "DATABASE_URL"
        where_kafka = f"Tansu at {platform.bootstrap_servers}" if platform.broker else platform.bootstrap_servers
        print(f"  database: {where_pg}; broker: {where_kafka}", flush=True)
        platform.migrate()
        platform.create_topics()
        if platform.broker is not None:
            again = platform.republish_outboxes()
            if again:
                print(f"  a new dev broker: {again} outbox rows published again", flush=True)
        for service in SERVICES:
            platform.start_service(service)
        platform.wait_ready()
        datadir.write_runner(platform.data_dir, platform.bootstrap_servers, {s: platform.url(s) for s in SERVICES})
        print(f"ready in {time.monotonic() - started:.1f}s", flush=True)
        assert platform.issuer is not None
        token = platform.issuer.mint("dev-console", DEV_SCOPES, ["*"])
        for service in SERVICES:
            print(f"  {service:<10} {platform.url(service)}   docs: {platform.url(service)}/docs", flush=True)
        # no token in an address (it would end in logs and browser history): the dashboard's
        # sign-in form takes the dev token below and keeps it in an HttpOnly cookie
        print(f"  dashboard  {platform.url('reporting')}/   (sign in with the dev token below)", flush=True)
        print("\nDev token (all scopes, all facilities, 12 h):\n" + token, flush=True)
        print("Mint others with: pmtct token --client-id ID --scope '...' --facility F\n", flush=True)
        if demo:
            feed_demo(platform)
        print("Ctrl-C stops everything.", flush=True)
        while True:
            platform.supervise()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except PortTaken as exc:
        print(f"pmtct dev: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        datadir.clear_runner(platform.data_dir)
        platform.stop()
        print("stopped.", flush=True)


def feed_demo(platform: Platform) -> None:
    """Demo EMR traffic through the public APIs: a small synthetic programme (pmtct-emrsim), once
    per data directory. A restart with the data kept does not post it again (every event would be
    a duplicate, and the referral desk would refer its mothers by hand a second time)."""
    loaded = datadir.demo_loaded(platform.data_dir)
    if loaded is not None:
        print(
            f"demo already loaded ({loaded.get('events')} EMR events on {loaded.get('loaded_on')},"
            f" {platform.data_dir / datadir.DEMO_FILE}); --no-demo to skip this message",
            flush=True,
        )
        return
    try:
        from emrsim.posting import Endpoints
        from emrsim.runner import demo_seed, simulate_demo
    except ImportError:
        print("(no demo data: the EMR simulator, pmtct-emrsim, is not installed)", flush=True)
        return
    assert platform.issuer is not None
    endpoints = Endpoints(platform.url("enrolment"), platform.url("followup"))
    today = date.today()
    tally = simulate_demo(endpoints, platform.url("referrals"), platform.issuer.mint, today)
    if sum(tally.answered.values()) < sum(tally.intended.values()):
        print("demo: some events got no answer; the next start posts the demo again", flush=True)
        return
    datadir.mark_demo_loaded(platform.data_dir, today.isoformat(), demo_seed(today), sum(tally.intended.values()))
