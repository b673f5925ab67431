"""The consumer claims a whole batch in the inbox in one statement; dedupe still holds."""

from __future__ import annotations

from spine_support import record_application, started_producer

from servicekit import kafka, outbox
from servicekit.consumer import EventConsumer
from servicekit.db import connect
from servicekit.relay import OutboxRelay
from servicekit.testing import read_topic, unique


async def test_a_message_twice_in_one_batch_is_applied_once_and_a_redelivered_batch_not_at_all(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    async with started_producer(spine.settings) as producer:
        async with spine.sessions() as session, session.begin():
            await outbox.add(session, [spine.event("k", i) for i in range(5)])
        conn = await connect(spine.settings.database_url, spine.settings.schema)
        try:
            await OutboxRelay(spine.settings, producer).publish_once(conn)
        finally:
            await conn.close()
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 5)
        consumer = EventConsumer(
            spine.settings,
            unique("spine-group"),
            [spine.topic],
            {spine.Event: record_application},
            spine.sessions,
            producer,
        )

        await consumer.process_batch(records + records[:2])
        assert sorted(seq for _, _, seq in await spine.applied()) == [0, 1, 2, 3, 4]

        await consumer.process_batch(records)
        assert len(await spine.applied()) == 5
