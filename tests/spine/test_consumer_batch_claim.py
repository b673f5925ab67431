"""The consumer claims a whole batch in the inbox in one statement; dedupe still holds."""

from __future__ import annotations

import logging

from spine_support import publish, record_application, started_producer
from sqlalchemy import text

from pmtct_events import dlq_topic
from pmtct_tools.testing import read_topic, unique
from servicekit import kafka
from servicekit.consumer import EventConsumer


async def test_a_message_twice_in_one_batch_is_applied_once_and_a_redelivered_batch_not_at_all(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    async with started_producer(spine.settings) as producer:
        await publish(spine, producer, [spine.event("k", i) for i in range(5)])
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


async def test_the_batch_hook_sees_each_transactions_new_messages_once_before_their_handlers(spine) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    calls: list[list[int]] = []
    seen_by_handlers: list[int] = []

    prepared: dict[int, set[int]] = {}

    async def preload(uow, events) -> None:
        calls.append([event.seq for event in events])
        prepared[id(uow)] = {event.seq for event in events}

    async def handler(event, uow) -> None:
        assert event.seq in prepared.get(id(uow), ()), "a handler ran before its batch was preloaded"
        seen_by_handlers.append(event.seq)
        await record_application(event, uow)

    async with started_producer(spine.settings) as producer:
        await publish(spine, producer, [spine.event("k", i) for i in range(4)])
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 4)
        consumer = EventConsumer(
            spine.settings,
            unique("spine-group"),
            [spine.topic],
            {spine.Event: handler},
            spine.sessions,
            producer,
            preload,
        )

        await consumer.process_batch(records[:2])  # one transaction, one call
        await consumer.process_batch(records)  # the first two are duplicates: only the others are preloaded
        await consumer.process_batch(records)  # nothing new: no call
        await consumer.process_one(consumer.decode(records[0]))  # a duplicate on the one-by-one path: no call

    assert calls == [[0, 1], [2, 3]]
    assert seen_by_handlers == [0, 1, 2, 3]


async def test_one_polls_records_of_several_partitions_apply_in_one_transaction_beside_an_unreadable_one(
    spine,
) -> None:
    await kafka.ensure_topics(spine.settings, [spine.topic])
    transactions: list[list[tuple[str, int]]] = []

    async def preload(uow, events) -> None:
        transactions.append(sorted((event.stream, event.seq) for event in events))

    async with started_producer(spine.settings) as producer:
        await publish(spine, producer, [spine.event(key, i) for key in ("a", "b", "c", "d") for i in range(2)])
        await (await producer.send(spine.topic, key=b"e", value=b"{not json", headers=[("ce_id", b"unreadable")]))
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 9)
        assert len({r.partition for r in records}) > 1, "the keys should spread over partitions"
        consumer = EventConsumer(
            spine.settings,
            unique("spine-group"),
            [spine.topic],
            {spine.Event: record_application},
            spine.sessions,
            producer,
            preload,
        )

        await consumer.process_batch(records)

        dead = await read_topic(
            spine.settings.kafka_bootstrap_servers, dlq_topic(spine.topic), until=lambda rs: len(rs) >= 1
        )
    expected = [(key, i) for key in ("a", "b", "c", "d") for i in range(2)]
    assert transactions == [expected], "the readable records apply together, not one by one"
    assert sorted((k, s) for _, k, s in await spine.applied()) == expected
    assert [dict(r.headers)["ce_id"] for r in dead] == [b"unreadable"]


async def test_a_failed_batch_is_logged_with_its_reason_at_warning_and_without_the_records_values(
    spine, caplog
) -> None:
    """The line said "batch of 3 failed; applying one by one" at INFO, with no reason. It says the
    exception's type and SQLSTATE now, never its message: PostgreSQL's repeats the value it refused,
    and SQLAlchemy's adds the statement's parameters (personal data, in a real handler)."""
    await kafka.ensure_topics(spine.settings, [spine.topic])
    failed: list[int] = []

    async def handler(event, uow) -> None:
        if event.seq == 1 and not failed:  # fails in the batch, applies on its own
            failed.append(event.seq)
            await uow.session.execute(text("SELECT CAST(CAST(:v AS text) AS int)"), {"v": "Nomsa Dlamini"})
        await record_application(event, uow)

    async with started_producer(spine.settings) as producer:
        await publish(spine, producer, [spine.event("k", i) for i in range(3)])
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 3)
        consumer = EventConsumer(
            spine.settings, unique("spine-group"), [spine.topic], {spine.Event: handler}, spine.sessions, producer
        )
        with caplog.at_level(logging.INFO, logger="servicekit.consumer"):
            await consumer.process_batch(records)

    assert sorted(seq for _, _, seq in await spine.applied()) == [0, 1, 2]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "one by one" in r.getMessage()]
    assert lines == [
        (
            "WARNING",
            f"{consumer.name}: batch of 3 failed (DBAPIError (SQLSTATE 22P02 InvalidTextRepresentationError));"
            " applying one by one",
        )
    ]
    assert "Nomsa" not in caplog.text


async def test_a_record_that_keeps_failing_is_logged_and_dead_lettered_without_its_values_in_the_log(
    spine, caplog
) -> None:
    """Each failed attempt and the dead letter were logged with the error's text (`%r`): a database
    error's repeats the refused value and the statement's parameters."""
    await kafka.ensure_topics(spine.settings, [spine.topic])

    async def handler(event, uow) -> None:
        await uow.session.execute(text("SELECT CAST(CAST(:v AS text) AS int)"), {"v": "Nomsa Dlamini"})

    async with started_producer(spine.settings) as producer:
        await publish(spine, producer, [spine.event("k", 0)])
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 1)
        consumer = EventConsumer(
            spine.settings, unique("spine-group"), [spine.topic], {spine.Event: handler}, spine.sessions, producer
        )
        with caplog.at_level(logging.INFO, logger="servicekit.consumer"):
            await consumer.process_one(consumer.decode(records[0]))

    why = "DBAPIError (SQLSTATE 22P02 InvalidTextRepresentationError)"
    said = [r.getMessage() for r in caplog.records if r.name == "servicekit.consumer"]
    attempts = spine.settings.consumer_max_attempts
    assert [m.split(" failed: ")[1] for m in said if " failed: " in m] == [why] * (attempts - 1)
    assert [m.endswith(f"after {attempts} attempt(s): {why}") for m in said if "dead-lettered" in m] == [True]
    assert "Nomsa" not in caplog.text
