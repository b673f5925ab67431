"""The consumer loop: inbox dedupe, offsets after the DB commit, retries and dead letters."""

from __future__ import annotations

import asyncio
import json

from spine_support import publish, record_application, wait_for

from pmtct_events import dlq_topic
from pmtct_tools.testing import read_topic, unique
from servicekit import kafka
from servicekit.consumer import EventConsumer


async def test_a_consumer_that_dies_after_its_db_commit_and_before_its_offset_commit_does_not_apply_twice(
    spine,
) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    group = unique("spine-group")
    producer = kafka.producer(spine.settings)
    await producer.start()
    try:
        sent = await publish(spine, producer, [spine.event(f"k{i}", i) for i in range(20)])
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 20)
        first = EventConsumer(
            spine.settings, group, [spine.topic], {spine.Event: record_application}, spine.sessions, producer
        )
        await first.process_batch(records)  # applied and committed in the DB; then it dies: no offset commit
        assert len(await spine.applied()) == 20

        second = EventConsumer(
            spine.settings, group, [spine.topic], {spine.Event: record_application}, spine.sessions, producer
        )
        task = asyncio.create_task(second.run())
        try:

            async def all_redelivered_and_committed() -> bool:
                c = second._consumer
                if c is None or not c.assignment():
                    return False
                committed = [await c.committed(tp) or 0 for tp in c.assignment()]
                return sum(committed) >= 20

            await wait_for(all_redelivered_and_committed, 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await producer.stop()

    applied = await spine.applied()
    assert len(applied) == 20
    assert sorted(str(e) for e, _, _ in applied) == sorted(str(ce.id) for ce in sent)


async def test_a_poison_message_reaches_the_dlq_after_the_configured_attempts_and_the_partition_keeps_moving(
    spine,
) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    producer = kafka.producer(spine.settings)
    await producer.start()
    try:
        key = "one-partition"
        sent = await publish(
            spine,
            producer,
            [spine.event(key, 0), spine.event(key, 1, poison=True), spine.event(key, 2), spine.event(key, 3)],
        )
        # a record that is not a CloudEvent at all: dead-lettered at once, without retries
        garbage = await producer.send(spine.topic, key=key.encode(), value=b"{not json", headers=[("ce_id", b"x")])
        await garbage
        await publish(spine, producer, [spine.event(key, 4)])

        consumer = EventConsumer(
            spine.settings,
            unique("spine-dlq"),
            [spine.topic],
            {spine.Event: record_application},
            spine.sessions,
            producer,
        )
        task = asyncio.create_task(consumer.run())
        try:

            async def behind_the_poison_applied() -> bool:
                return len(await spine.applied()) >= 4

            await wait_for(behind_the_poison_applied)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        dead = await read_topic(
            spine.settings.kafka_bootstrap_servers, dlq_topic(spine.topic), until=lambda rs: len(rs) >= 2, settle_s=0.5
        )
    finally:
        await producer.stop()

    assert sorted(seq for _, _, seq in await spine.applied()) == [0, 2, 3, 4]
    assert len(dead) == 2
    headers = [dict((k, v.decode()) for k, v in r.headers) for r in dead]
    poison = next(h for h in headers if h.get("ce_id") == str(sent[1].id))
    assert poison["dlq_attempts"] == str(spine.settings.consumer_max_attempts)
    assert "cannot apply poison event" in poison["dlq_error"]
    assert poison["dlq_original_topic"] == spine.topic
    assert poison["ce_type"] == sent[1].type
    broken = next(h for h in headers if h.get("ce_id") == "x")
    assert broken["dlq_attempts"] == "1"
    assert "envelope" in broken["dlq_error"]
    poisoned_record = next(r for r in dead if dict(r.headers).get("ce_id") == str(sent[1].id).encode())
    assert json.loads(poisoned_record.value)["seq"] == 1
