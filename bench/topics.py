"""What the benchmark reads from the broker: consumer lag, topic sizes, downstream effects as
they appear, and a clone of the topics' content (to grow the replay corpus quickly)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, TOPICS
from pmtct_events.envelope import header
from servicekit.bootstrap import DATABASE, with_admin_database
from servicekit.db import asyncpg_dsn
from servicekit.settings import SERVICES

#: the platform's consumer groups and what they read (services' main.py)
GROUPS: dict[str, tuple[str, ...]] = {
    "followup": (ENROLMENT_TOPIC,),
    "referrals": (ENROLMENT_TOPIC, FOLLOWUP_TOPIC),
    "reporting": TOPICS,
}


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        return await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()


async def topic_sizes(bootstrap: str, topics: Iterable[str] = TOPICS) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        sizes = {}
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            if not tps:
                sizes[topic] = 0
                continue
            begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            sizes[topic] = sum(end[tp] - begin[tp] for tp in tps)
        return sizes
    finally:
        await consumer.stop()


async def lag(bootstrap: str, groups: Iterable[str] = GROUPS) -> dict[str, int]:
    """Messages each consumer group has yet to commit, over all partitions of its topics (read
    with a group member that never joins, so the group is not disturbed)."""
    out = {}
    for group in groups:
        ends = await end_offsets(bootstrap, GROUPS[group])
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await reader.start()
        try:
            behind = 0
            for tp, end in ends.items():
                committed = await reader.committed(tp)
                behind += max(0, end - (committed or 0))
            out[group] = behind
        finally:
            await reader.stop()
    return out


async def unpublished(admin_url: str) -> dict[str, int]:
    """Outbox rows each service has not published yet."""
    conn = await asyncpg.connect(asyncpg_dsn(with_admin_database(admin_url, DATABASE)))
    try:
        return {
            schema: await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
            for schema in SERVICES
        }
    finally:
        await conn.close()


#: timer work that has come due and will be done without any new input (the services' own queries:
#: followup's `_claim`, referrals' `lock_due_art_waits` and `lock_past_due`; a follow-up subject waits
#: `timer_settle_s` after its last input before its timers run)
_TIMER_WORK = {
    "followup: infants": "SELECT count(*) FROM followup.infants WHERE next_timer_on <= $1",
    "followup: mothers": "SELECT count(*) FROM followup.mothers WHERE next_timer_on <= $1",
    "referrals: ART waits": "SELECT count(*) FROM referrals.art_wait WHERE due_at <= now() AND ended_at IS NULL",
    "referrals: past due": (
        "SELECT count(*) FROM referrals.referral WHERE due_by < $1 AND status IN ('requested', 'accepted')"
    ),
}


async def timer_work(admin_url: str, today: date) -> dict[str, int]:
    """What the services' durable timers still have to do as of `today`."""
    conn = await asyncpg.connect(asyncpg_dsn(with_admin_database(admin_url, DATABASE)))
    try:
        return {name: await conn.fetchval(sql, *((today,) if "$1" in sql else ())) for name, sql in _TIMER_WORK.items()}
    finally:
        await conn.close()


async def wait_settled(
    bootstrap: str,
    admin_url: str,
    today: date,
    timeout_s: float = 300,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> tuple[float, dict[str, int]]:
    """Wait until no timer work is due (a backdated load leaves overdue tests, lost mothers and ART
    waits that the timers announce after it) and everything it caused is consumed; returns the
    seconds it took and what was still due if `timeout_s` ran out first (then it goes on)."""
    started = time.perf_counter()
    while True:
        due = await timer_work(admin_url, today)
        if on_progress:
            on_progress(due)
        if not any(due.values()) or time.perf_counter() - started > timeout_s:
            break
        await asyncio.sleep(2.0)
    await wait_caught_up(bootstrap, admin_url, timeout_s=timeout_s, on_progress=on_progress)
    return time.perf_counter() - started, {k: v for k, v in due.items() if v}


async def wait_caught_up(
    bootstrap: str,
    admin_url: str,
    groups: Iterable[str] = GROUPS,
    timeout_s: float = 600,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> float:
    """Wait until every outbox is published and every group has consumed everything (twice in a
    row: a handler may have just added to an outbox); returns the seconds it took."""
    started = time.perf_counter()
    groups = list(groups)
    quiet = 0
    while quiet < 2:
        remaining = {f"outbox:{k}": v for k, v in (await unpublished(admin_url)).items()}
        remaining.update(await lag(bootstrap, groups))
        if on_progress:
            on_progress(remaining)
        quiet = quiet + 1 if not any(remaining.values()) else 0
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"consumers still behind after {timeout_s:.0f}s: {remaining}")
        if quiet < 2:
            await asyncio.sleep(1.0 if quiet == 0 else 0.5)
    return time.perf_counter() - started


class Watcher:
    """Follows topics from their current end and notes when each message of interest appears:
    `pick(ce_type, payload) -> key or None` names what a message is the effect of."""

    def __init__(self, bootstrap: str, topics: Iterable[str], pick: Callable[[str, dict], str | None]) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.pick = pick
        self.seen: dict[str, float] = {}
        self.messages = 0
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        # a short fetch wait: the dev broker answers a waiting fetch late (a fifth of the wait on
        # average), so the default 500 ms would add ~100 ms to every measured latency
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the end now, before anything is posted
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    self.messages += 1
                    ce_type = header(r.headers or [], "ce_type") or ""
                    key = self.pick(ce_type, orjson.loads(r.value))
                    if key is not None and key not in self.seen:
                        self.seen[key] = now

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def clone(bootstrap: str, copies: int, topics: Iterable[str] = TOPICS) -> int:
    """Append `copies` copies of every message of `topics` to the same topics, each copy with
    every UUID (event ids, clients, infants, referrals) replaced by a fresh one, consistently,
    so each copy is another programme of the same shape. Returns how many were produced."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    produced = 0
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        ends = await consumer.end_offsets(tps)
        pending = {tp: end for tp, end in ends.items() if end > 0}
        consumer.assign(list(pending))
        await consumer.seek_to_beginning(*pending)
        renames = [dict[bytes, bytes]() for _ in range(copies)]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            futures = []
            for tp, records in batches.items():
                for r in records:
                    if r.offset >= pending[tp]:
                        continue
                    for fresh in renames:

                        def swap(m: re.Match, fresh: dict[bytes, bytes] = fresh) -> bytes:
                            return fresh.setdefault(m.group(0), str(uuid.uuid4()).encode())

                        futures.append(
                            await producer.send(
                                tp.topic,
                                value=_UUID.sub(swap, r.value),
                                key=_UUID.sub(swap, r.key) if r.key else None,
                                headers=[(k, _UUID.sub(swap, v)) for k, v in r.headers or []],
                            )
                        )
            await asyncio.gather(*futures)
            produced += len(futures)
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp]:
                    del pending[tp]
    finally:
        await consumer.stop()
        await producer.stop()
    return produced
