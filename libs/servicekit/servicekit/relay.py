"""The outbox relay: publishes outbox rows to Kafka in id order, in batches.

Woken by LISTEN/NOTIFY (the outbox trigger), with a polling fallback. Only one replica per
service publishes at a time: the holder of a Postgres session advisory lock. A relay that dies
between publishing and marking re-sends on the next run; consumers' inboxes absorb the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from . import metrics
from .db import connect
from .settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingRow:
    id: int
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


_FETCH_PENDING = (
    "SELECT o.id, o.topic, o.aggregate_id, o.payload::text AS payload, o.headers::text AS headers"
    " FROM (SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1) AS p"
    " JOIN outbox AS o ON o.id = p.id ORDER BY o.id"
)


def leader_lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"pmtct-outbox-relay:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class OutboxRelay:
    def __init__(self, settings: ServiceSettings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.schema = settings.schema
        self.channel = f"{self.schema}_outbox"
        self._wake = asyncio.Event()
        self.is_leader = False

    async def fetch_pending(self, conn: asyncpg.Connection, limit: int) -> list[PendingRow]:
        # The ids first, then the rows of those ids: a plan that reads every unpublished row and
        # sorts them (a bitmap scan, chosen when the statistics think few are unpublished) then
        # sorts bare ids, and only the `limit` rows sent are read whole and turned into text.
        rows = await conn.fetch(_FETCH_PENDING, limit)
        return [
            PendingRow(
                id=r["id"],
                topic=r["topic"],
                key=r["aggregate_id"].encode(),
                value=r["payload"].encode(),  # jsonb's text form is already the JSON the consumers read
                headers=[(k, v.encode()) for k, v in orjson.loads(r["headers"]).items()],
            )
            for r in rows
        ]

    async def publish(self, rows: list[PendingRow]) -> None:
        """Send in order and wait for every ack (`acks=all`)."""
        futures = [await self.producer.send(r.topic, value=r.value, key=r.key, headers=r.headers) for r in rows]
        await asyncio.gather(*futures)

    async def mark_published(self, conn: asyncpg.Connection, rows: list[PendingRow]) -> None:
        await conn.execute(
            "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])", [r.id for r in rows]
        )
        metrics.OUTBOX_PUBLISHED.labels(self.schema).inc(len(rows))

    async def publish_once(self, conn: asyncpg.Connection) -> int:
        rows = await self.fetch_pending(conn, self.settings.relay_batch_size)
        if rows:
            await self.publish(rows)
            await self.mark_published(conn, rows)
        return len(rows)

    async def _observe(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS age"
            " FROM outbox WHERE published_at IS NULL"
        )
        metrics.OUTBOX_BACKLOG.labels(self.schema).set(row["n"])
        metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(float(row["age"]))

    async def _prune(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < clock_timestamp() - make_interval(secs => $1)",
            self.settings.outbox_retention_hours * 3600,
        )

    async def run(self) -> None:
        """Run until cancelled; reconnects after database or broker failures."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.settings.database_url, self.schema)
                await conn.add_listener(self.channel, lambda *_: self._wake.set())
                await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(self.settings.relay_poll_interval_s)
            finally:
                self.is_leader = False
                metrics.RELAY_LEADER.labels(self.schema).set(0)
                if conn is not None:
                    await _close(conn)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        key = leader_lock_key(self.schema)
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            await asyncio.sleep(self.settings.relay_poll_interval_s)
        self.is_leader = True
        metrics.RELAY_LEADER.labels(self.schema).set(1)
        log.info("outbox relay for %s is leader", self.schema)
        ticks = 0
        while True:
            self._wake.clear()
            sent = await self.publish_once(conn)
            if sent >= self.settings.relay_batch_size:
                continue
            ticks += 1
            if ticks % 10 == 1:
                await self._observe(conn)
            if ticks % 600 == 1:
                await self._prune(conn)
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_interval_s)
            except TimeoutError:
                pass


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()
