"""`pmtct dlq list|replay` against the real broker: a consumer of the followup service's database
dead-letters a message it cannot apply, the operator lists it, fixes the cause, replays it, and the
event is applied exactly once however often it is replayed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from prometheus_client import REGISTRY

from followup.settings import Settings
from pmtct_events import CloudEvent
from pmtct_events.enrolment import AncVisitRecorded
from pmtct_tools.testing import unique
from servicekit import kafka
from servicekit.consumer import EventConsumer
from servicekit.db import create_engine, sessionmaker

PMTCT = str(Path(sys.executable).parent / "pmtct")


async def pmtct(*args: str) -> str:
    """The real command line, as an operator runs it (environment = the service's)."""
    proc = await asyncio.create_subprocess_exec(
        PMTCT,
        *args,
        "--idle-seconds",
        "1",
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"pmtct {' '.join(args)} failed: {err.decode()}"
    return out.decode()


async def listed(topic: str | None, ce_id: UUID) -> dict:
    args = ["dlq", "list", "--json", "--id", str(ce_id)] + (["--topic", topic] if topic else [])
    rows = [json.loads(line) for line in (await pmtct(*args)).splitlines()]
    assert len(rows) == 1, rows
    return rows[0]


async def wait_for(condition, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def duplicates_skipped(consumer: str) -> float:
    labels = {"consumer": consumer, "event_type": "AncVisitRecorded", "outcome": "duplicate"}
    return REGISTRY.get_sample_value("pmtct_events_processed_total", labels) or 0.0


def visit(client_id: UUID, number: int) -> CloudEvent:
    event = AncVisitRecorded(
        facility_id="FAC-ZA-001", occurred_at=datetime.now(UTC), client_id=client_id, visit_number=number
    )
    return CloudEvent.from_event(event, correlation_id=str(uuid4()))


async def test_a_dead_letter_is_listed_replayed_after_the_fix_and_applied_exactly_once(settings_env, monkeypatch):
    settings_env("followup")
    monkeypatch.setenv("PMTCT_CONSUMER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PMTCT_CONSUMER_BACKOFF_INITIAL_S", "0.05")
    settings = Settings()
    topic = unique("pmtct.dlqdrill")
    consumer_name = unique("followup-dlqdrill")
    applied: list[UUID] = []
    broken = True

    async def schedule_visit(event: AncVisitRecorded, uow) -> None:
        if broken and event.visit_number == 13:
            raise RuntimeError("no schedule rule for ANC visit 13")
        applied.append(uow.cause.id)

    engine = create_engine(settings.database_url, settings.schema, pool_size=2)
    producer = kafka.producer(settings)
    await producer.start()
    await kafka.ensure_topics(settings, [topic])
    consumer = EventConsumer(
        settings, consumer_name, [topic], {AncVisitRecorded: schedule_visit}, sessionmaker(engine), producer
    )
    task = asyncio.create_task(consumer.run())
    try:
        client = uuid4()
        poison, behind = visit(client, 13), visit(client, 14)
        for ce in (poison, behind):
            await (await producer.send(topic, value=ce.value(), key=ce.key, headers=ce.headers()))

        await wait_for(lambda: behind.id in applied)  # the partition kept moving past the poison message
        row = await listed(topic, poison.id)
        assert row["status"] == "pending"
        assert row["type"] == "org.pmtct.enrolment.AncVisitRecorded.v1"
        assert row["original_topic"] == topic
        assert isinstance(row["original_partition"], int) and isinstance(row["original_offset"], int)
        assert row["consumer"] == consumer_name
        assert row["attempts"] == 2
        assert "no schedule rule for ANC visit 13" in row["error"]
        assert row["dead_lettered_at"] is not None
        assert (await listed(None, poison.id))["consumer"] == consumer_name  # found among every .dlq topic

        broken = False  # the fix is deployed
        out = await pmtct("dlq", "replay", "--topic", topic)
        assert f"replayed {poison.id}" in out and "1 replayed" in out
        await wait_for(lambda: poison.id in applied)

        skipped = duplicates_skipped(consumer_name)
        out = await pmtct("dlq", "replay", "--topic", topic, "--id", str(poison.id))  # again, on purpose
        assert "1 replayed" in out
        await wait_for(lambda: duplicates_skipped(consumer_name) > skipped)  # the inbox absorbed it

        assert applied.count(poison.id) == 1
        assert applied.count(behind.id) == 1
        assert (await listed(topic, poison.id))["status"] == "replayed"
        assert "0 replayed" in await pmtct("dlq", "replay", "--topic", topic)  # nothing left pending
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await engine.dispose()
