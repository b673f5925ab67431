"""Test harness: real PostgreSQL and a real Kafka-protocol broker, started once per test run.

Order of preference: `PMTCT_TEST_DATABASE_URL` / `PMTCT_TEST_KAFKA` (external servers), then
testcontainers (postgres + apache/kafka) where a Docker engine answers, then the embedded
PostgreSQL and Tansu wheels. `PMTCT_TEST_CONTAINERS=0` skips the Docker probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy import Table, inspect
from sqlalchemy.dialects import postgresql

from pmtct_events import CloudEvent

from .devissuer import DevIssuer, JwksServer
from .localinfra import EmbeddedPostgres, TansuBroker


@dataclass
class Infra:
    admin_url: str
    bootstrap_servers: str
    is_tansu: bool
    kind: str
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()


def docker_available() -> bool:
    if os.environ.get("PMTCT_TEST_CONTAINERS", "1") == "0":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def start_containers() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    pg = PostgresContainer("postgres:17-alpine", driver=None).start()
    kafka = KafkaContainer("apache/kafka:3.9.0").with_kraft().start()
    infra = Infra(pg.get_connection_url(), kafka.get_bootstrap_server(), is_tansu=False, kind="testcontainers")
    infra._stops += [pg.stop, kafka.stop]
    return infra


def start_infra(workdir: Path) -> Infra:
    db_url = os.environ.get("PMTCT_TEST_DATABASE_URL")
    kafka = os.environ.get("PMTCT_TEST_KAFKA")
    if not db_url and not kafka and docker_available():
        return start_containers()
    stops: list[Callable[[], None]] = []
    if not db_url:
        pg = EmbeddedPostgres(workdir / "postgres").start()
        stops.append(pg.stop)
        db_url = pg.admin_url
    is_tansu = not kafka or os.environ.get("PMTCT_TEST_KAFKA_IS_TANSU") == "1"
    if not kafka:
        broker = TansuBroker(log_path=workdir / "tansu.log").start()
        stops.append(broker.stop)
        kafka = broker.bootstrap_servers
    return Infra(db_url, kafka, is_tansu=is_tansu, kind="embedded", _stops=stops)


@dataclass
class TestIssuer:
    issuer: DevIssuer
    server: JwksServer

    @property
    def jwks_url(self) -> str:
        return self.server.url

    def token(
        self,
        scopes: str,
        facilities: list[str] | None = None,
        client_id: str = "test-client",
        subject: str | None = None,
    ) -> str:
        return self.issuer.mint(client_id, scopes, facilities if facilities is not None else ["*"], subject=subject)

    def headers(
        self,
        scopes: str,
        facilities: list[str] | None = None,
        client_id: str = "test-client",
        subject: str | None = None,
    ) -> dict:
        return {"Authorization": f"Bearer {self.token(scopes, facilities, client_id, subject)}"}


@contextlib.contextmanager
def test_issuer(directory: Path) -> Iterator[TestIssuer]:
    issuer = DevIssuer(directory).ensure()
    server = JwksServer(issuer.jwks_path).start()
    try:
        yield TestIssuer(issuer, server)
    finally:
        server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    until: Callable[[list[ConsumerRecord]], bool] | None = None,
    timeout_s: float = 20,
    settle_s: float = 0.0,
) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning, read without a consumer group. Stops when
    `until(records)` holds (then reads `settle_s` longer to catch anything extra), or at the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # topic may not exist yet
                await asyncio.sleep(0.2)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if until is not None and settle_until is None and until(records):
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
        return records
    finally:
        await consumer.stop()


def envelopes(records: list[ConsumerRecord]) -> list[CloudEvent]:
    return [CloudEvent.from_kafka(r.key, r.value, r.headers or []) for r in records]


def _column(name: str, type_: Any, nullable: bool, primary_key: bool, default: bool) -> str:
    words = [name, type_.compile(dialect=postgresql.dialect())]
    words += [] if nullable else ["NOT NULL"]
    words += ["PRIMARY KEY"] if primary_key else []
    words += ["DEFAULT"] if default else []
    return " ".join(words)


def declared_columns(table: Table) -> list[str]:
    """A table model's columns, in order, as `migrated_columns` describes the live ones."""
    return [
        _column(c.name, c.type, bool(c.nullable), c.primary_key, c.server_default is not None) for c in table.columns
    ]


async def migrated_columns(session: Any, table_name: str) -> list[str]:
    """The columns of a table as the migrations created it (reflected from the session's schema):
    name, type as PostgreSQL spells it, nullability, primary key, whether it has a server default."""

    def reflect(connection: Any) -> list[str]:
        inspector = inspect(connection)
        pk = set(inspector.get_pk_constraint(table_name)["constrained_columns"])
        return [
            _column(c["name"], c["type"], c["nullable"], c["name"] in pk, c["default"] is not None)
            for c in inspector.get_columns(table_name)
        ]

    return await (await session.connection()).run_sync(reflect)
