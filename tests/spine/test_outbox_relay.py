"""The outbox and its relay against the real PostgreSQL and broker (README, "Delivery guarantees")."""

from __future__ import annotations

from collections import defaultdict

import pytest
from spine_support import record_application, running, started_producer, wait_for
from sqlalchemy import text

from pmtct_tools.testing import envelopes, read_topic
from servicekit import kafka, outbox
from servicekit.consumer import EventConsumer
from servicekit.db import connect
from servicekit.relay import OutboxRelay


async def test_a_rolled_back_transaction_publishes_nothing(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    with pytest.raises(RuntimeError):
        async with spine.sessions() as session, session.begin():
            lost = await outbox.add(session, spine.event("k", 0))
            raise RuntimeError("the state change failed")
    async with spine.sessions() as session, session.begin():
        kept = await outbox.add(session, spine.event("k", 1))

    async with started_producer(spine.settings) as producer, running(OutboxRelay(spine.settings, producer).run()):
        records = await read_topic(
            spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 1, settle_s=1.0
        )
    ids = [ce.id for ce in envelopes(records)]
    assert ids == [kept[0].id]
    assert lost[0].id not in ids


async def test_one_transactions_events_get_outbox_ids_in_the_order_they_were_given(spine) -> None:
    events = [spine.event(f"key-{i % 7}", i // 7) for i in range(300)]
    async with spine.sessions() as session, session.begin():
        given = await outbox.add(session, events)
        stored = (await session.execute(text("SELECT event_id FROM outbox ORDER BY id"))).scalars().all()
    assert stored[-300:] == [ce.id for ce in given]


async def test_a_relay_killed_between_publishing_and_marking_resends_and_the_inbox_applies_once(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    async with spine.sessions() as session, session.begin():
        sent = await outbox.add(session, [spine.event("mother-1", i) for i in range(3)])

    async with started_producer(spine.settings) as producer:
        crashed = OutboxRelay(spine.settings, producer)
        conn = await connect(spine.settings.database_url, spine.settings.schema)
        rows = await crashed.fetch_pending(conn, 100)
        await crashed.publish(rows)
        conn.terminate()  # dies here: published, never marked
        assert await spine.unpublished() == 3

        async with running(OutboxRelay(spine.settings, producer).run()):
            records = await read_topic(
                spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 6
            )
            # the new relay marks what it re-sent once the broker has acknowledged it (the records
            # can be read a moment before that)
            await wait_for(lambda: _none_unpublished(spine))

        assert sorted(str(ce.id) for ce in envelopes(records)) == sorted(str(ce.id) for ce in sent * 2)
        consumer = EventConsumer(
            spine.settings, "spine-once", [spine.topic], {spine.Event: record_application}, spine.sessions, producer
        )
        await consumer.process_batch(records)

    applied = await spine.applied()
    assert sorted(seq for _, _, seq in applied) == [0, 1, 2]


async def test_per_key_order_holds_for_10000_events_over_6_partitions_with_two_relays(spine) -> None:
    settings = spine.settings.model_copy(update={"relay_batch_size": 400})
    await kafka.ensure_topics(settings, [spine.topic])
    keys = [f"client-{i}" for i in range(100)]
    async with started_producer(settings) as p1, started_producer(settings) as p2:
        relays = [OutboxRelay(settings, p1), OutboxRelay(settings, p2)]
        async with running(*(r.run() for r in relays)):
            for batch in range(50):
                async with spine.sessions() as session, session.begin():
                    await outbox.add(session, [spine.event(k, batch * 2 + j) for j in range(2) for k in keys])
            records = await read_topic(
                settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 10_000, timeout_s=120
            )
            assert sum(r.is_leader for r in relays) == 1

    assert len(records) == 10_000
    partitions = {r.partition for r in records}
    assert len(partitions) == 6
    by_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in records:
        by_key[r.key.decode()].append((r.partition, r.offset, envelopes([r])[0].data["seq"]))
    for key, seen in by_key.items():
        assert len({p for p, _, _ in seen}) == 1, f"{key} spread over partitions"
        in_offset_order = [seq for _, _, seq in sorted(seen)]
        assert in_offset_order == list(range(100)), f"{key} out of order"


async def _none_unpublished(spine) -> bool:
    return await spine.unpublished() == 0
