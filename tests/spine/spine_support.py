"""Shared pieces of the spine tests: a scratch event type and service, and small async helpers."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field
from sqlalchemy import text

from pmtct_events import Event
from servicekit import kafka, outbox
from servicekit.db import connect
from servicekit.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.uow import UnitOfWork

SCHEMA = "spinetest"


class Pinged(Event):
    """A scratch event: `seq` numbers the events of one key so tests can check order."""

    service: ClassVar[str] = SCHEMA
    key_field: ClassVar[str] = "stream"
    event_name: ClassVar[str] = "Pinged"
    stream: str
    seq: int = Field(ge=0)
    poison: bool = False


def event_type_on(topic: str) -> type[Pinged]:
    """A Pinged published to its own topic, so tests sharing the broker never see each other."""
    return type("Pinged", (Pinged,), {"__module__": __name__, "topic": classmethod(lambda cls: topic)})


class Spine:
    def __init__(self, settings: ServiceSettings, sessions, topic: str) -> None:
        self.settings = settings
        self.sessions = sessions
        self.topic = topic
        self.Event = event_type_on(topic)

    def event(self, key: str, seq: int, poison: bool = False) -> Pinged:
        return self.Event(facility_id="FAC-ZA-001", occurred_at=datetime.now(UTC), stream=key, seq=seq, poison=poison)

    async def applied(self) -> list[tuple]:
        async with self.sessions() as session:
            rows = await session.execute(text("SELECT event_id, key, seq FROM applied"))
            return [tuple(r) for r in rows]

    async def unpublished(self) -> int:
        async with self.sessions() as session:
            return (await session.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()


async def record_application(event: Pinged, uow: UnitOfWork) -> None:
    """The scratch consumer's handler: poison events always fail, others leave one row."""
    if event.poison:
        raise RuntimeError(f"cannot apply poison event {event.stream}/{event.seq}")
    assert uow.cause is not None
    await uow.session.execute(
        text("INSERT INTO applied (event_id, key, seq) VALUES (:e, :k, :s)"),
        {"e": uow.cause.id, "k": event.stream, "s": event.seq},
    )


@contextlib.asynccontextmanager
async def running(*coroutines):
    """Run coroutines as tasks for the duration of the block, then cancel them."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def started_producer(settings: ServiceSettings):
    producer = kafka.producer(settings)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish(spine, producer, events) -> list:
    """Through the outbox and the relay's own publish path."""
    async with spine.sessions() as session, session.begin():
        sent = await outbox.add(session, events)
    relay = OutboxRelay(spine.settings, producer)
    conn = await connect(spine.settings.database_url, spine.settings.schema)
    try:
        while await relay.publish_once(conn):
            pass
    finally:
        await conn.close()
    return sent


async def wait_for(predicate, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
