"""The physical limits of this machine, measured in the same run as the platform: how fast
PostgreSQL takes outbox-shaped rows and how fast the broker takes CloudEvents, with nothing of
the platform in between."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pmtct_events import CloudEvent
from pmtct_events.enrolment import ClientEnrolled
from servicekit import outbox
from servicekit.bootstrap import DATABASE, with_admin_database
from servicekit.db import asyncpg_dsn

RAW_SCHEMA = "bench_raw"
RAW_TOPIC = "bench.raw.v1"


@dataclass(frozen=True)
class Sample:
    """A typical message of the platform: an enrolment as the enrolment service publishes it."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_type: str

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


def sample_message() -> Sample:
    event = ClientEnrolled(
        client_id=uuid.uuid4(),
        facility_id="FAC-ZA-001",
        occurred_at=datetime(2026, 3, 2, 9, 15, tzinfo=UTC),
        status_at_enrolment="pregnant",
        age_years=27,
        hiv_status="positive",
        hiv_status_known_since=date(2024, 5, 3),
        on_art=True,
        art_start_date=date(2024, 5, 10),
        gestation_weeks=14,
        edd=date(2026, 9, 7),
    )
    ce = CloudEvent.from_event(
        event,
        correlation_id=str(uuid.uuid4()),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    return Sample(ce.key, ce.value(), list(ce.headers()), ce.type)


async def raw_pg_rows_per_s(
    admin_url: str, sample: Sample, *, seconds: float, batch: int = 100, connections: int = 8
) -> dict:
    """Batched inserts (one transaction per `batch` rows, like a POST of `batch` events) into a
    copy of the outbox table, trigger and indexes included, from `connections` concurrent
    connections, with the cluster's own durability settings (synchronous commit, fsync)."""
    url = asyncpg_dsn(with_admin_database(admin_url, DATABASE))
    setup = await asyncpg.connect(url)
    try:
        await setup.execute(f"DROP SCHEMA IF EXISTS {RAW_SCHEMA} CASCADE")
        await setup.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
        await setup.execute(f"SET search_path = {RAW_SCHEMA}")
        for ddl in outbox.DDL:
            await setup.execute(ddl)
        durability = {
            name: await setup.fetchval(f"SHOW {name}")
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes")
        }
    finally:
        await setup.close()

    headers = json.dumps({k: v.decode() for k, v in sample.headers})
    payload = sample.value.decode()
    insert = (
        "INSERT INTO outbox (event_id, topic, aggregate_type, aggregate_id, event_type, payload, headers, traceparent)"
        " VALUES ($1, $2, 'client', $3, $4, $5::jsonb, $6::jsonb, $7)"
    )
    deadline = time.perf_counter() + seconds
    counts = [0] * connections

    async def writer(n: int) -> None:
        conn = await asyncpg.connect(url, server_settings={"search_path": RAW_SCHEMA})
        try:
            while time.perf_counter() < deadline:
                rows = [
                    (uuid.uuid4(), RAW_TOPIC, str(uuid.uuid4()), sample.event_type, payload, headers, None)
                    for _ in range(batch)
                ]
                async with conn.transaction():
                    await conn.executemany(insert, rows)
                counts[n] += batch
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    cleanup = await asyncpg.connect(url)
    try:
        await cleanup.execute(f"DROP SCHEMA IF EXISTS {RAW_SCHEMA} CASCADE")
    finally:
        await cleanup.close()
    return {
        "rows_per_s": sum(counts) / elapsed,
        "rows": sum(counts),
        "seconds": elapsed,
        "rows_per_transaction": batch,
        "connections": connections,
        "durability": durability,
    }


async def raw_broker_msgs_per_s(bootstrap_servers: str, sample: Sample, *, seconds: float, window: int = 5000) -> dict:
    """Produce the sample message (same key, value and headers sizes) with `acks=all` and the
    platform's producer batching, keeping `window` sends in flight, for `seconds`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if RAW_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(RAW_TOPIC, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            futures = [
                await producer.send(RAW_TOPIC, value=sample.value, key=str(i).encode(), headers=sample.headers)
                for i in range(window)
            ]
            await asyncio.gather(*futures)
            sent += window
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"msgs_per_s": sent / elapsed, "messages": sent, "seconds": elapsed, "message_bytes": sample.size}
