"""Scale-out safety: consumers rebalancing mid-stream and relay leadership passing on."""

from __future__ import annotations

import asyncio
from collections import Counter

from spine_support import record_application, running, started_producer, wait_for

from pmtct_tools.testing import unique
from servicekit import kafka, outbox
from servicekit.consumer import EventConsumer
from servicekit.relay import OutboxRelay


async def test_a_second_consumer_joining_mid_stream_applies_nothing_twice_and_loses_nothing(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    group = unique("spine-rebalance")
    total = 3000
    async with started_producer(spine.settings) as producer:

        def member() -> EventConsumer:
            return EventConsumer(
                spine.settings.model_copy(update={"consumer_batch_size": 50}),
                group,
                [spine.topic],
                {spine.Event: record_application},
                spine.sessions,
                producer,
            )

        first, second = member(), member()
        async with running(OutboxRelay(spine.settings, producer).run(), first.run()):
            async with spine.sessions() as session, session.begin():
                await outbox.add(session, [spine.event(f"k{i % 60}", i) for i in range(total // 2)])

            async def some_applied() -> bool:
                return len(await spine.applied()) > 100

            await wait_for(some_applied, 60)

            async with running(second.run()):

                async def second_has_partitions() -> bool:
                    return second._consumer is not None and bool(second._consumer.assignment())

                await wait_for(second_has_partitions, 60)
                async with spine.sessions() as session, session.begin():
                    await outbox.add(session, [spine.event(f"k{i % 60}", i) for i in range(total // 2, total)])

                async def all_applied() -> bool:
                    return len({seq for _, _, seq in await spine.applied()}) >= total

                await wait_for(all_applied, 120)
                await asyncio.sleep(1)  # time for any straggling duplicate to show up

    seqs = Counter(seq for _, _, seq in await spine.applied())
    assert len(seqs) == total
    assert [s for s, n in seqs.items() if n > 1] == []


async def test_when_the_relay_leader_dies_another_replica_takes_over(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    async with started_producer(spine.settings) as producer:
        leader, standby = OutboxRelay(spine.settings, producer), OutboxRelay(spine.settings, producer)
        leader_task = asyncio.create_task(leader.run())

        async def leads() -> bool:
            return leader.is_leader

        await wait_for(leads)
        async with running(standby.run()):
            await asyncio.sleep(0.5)
            assert not standby.is_leader
            leader_task.cancel()
            await asyncio.gather(leader_task, return_exceptions=True)
            async with spine.sessions() as session, session.begin():
                await outbox.add(session, [spine.event("after-failover", i) for i in range(5)])

            async def drained() -> bool:
                return await spine.unpublished() == 0

            await wait_for(drained, 30)
            assert standby.is_leader
