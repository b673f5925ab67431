"""The one consumer loop: inbox dedupe in the handlers' unit of work, explicit offset commits
after the database commit, bounded retries with backoff, dead letters, rebalance safety.

A poll's records (of every partition it returned) are first applied in one unit of work
(`servicekit.uow`), their inbox rows with it, claimed in one statement; the unit commits once, at
the end of the batch. If anything in it fails, the batch is rolled back and replayed message by
message, each in a unit of its own, so one failing message costs retries for itself only and the
messages behind it still go through; a message that can never apply (bad envelope or contract) is
dead-lettered before the batch.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from uuid import UUID

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pmtct_events import BY_CE_TYPE, CloudEvent, EnvelopeError, Event, dlq_topic

from . import metrics
from .guard import failure_kind, is_unavailable, safe_reason
from .kafka import consumer as kafka_consumer
from .settings import ServiceSettings
from .telemetry import context_from, tracer
from .uow import UnitOfWork, begin

log = logging.getLogger(__name__)

#: `handler(event, uow)`: apply one consumed event; `uow.cause` is its envelope
Handler = Callable[[Event, UnitOfWork], Awaitable[None]]
#: Runs once per unit of work before its handlers, with the events about to be applied (new to the
#: inbox), so a service can load into its repositories, in one statement, the aggregates its
#: handlers will ask for (`Repository.get_many`); the handlers get them from memory. Only an
#: optimisation: a handler asks its repository the same way with or without it.
Preload = Callable[[UnitOfWork, Sequence[Event]], Awaitable[None]]

_CLAIM = text("INSERT INTO inbox (consumer, event_id) VALUES (:consumer, :event_id) ON CONFLICT DO NOTHING RETURNING 1")
#: a whole batch's claims in one round trip (one per message was a fifth to a third of a
#: consumer's statements); returns the ids that were not in the inbox yet
_CLAIM_MANY = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:event_ids AS uuid[]))"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(value: bytes, limit: int) -> int:
    """How deep `value`'s JSON nests, counted without parsing it (strings skipped); stops counting
    once past `limit`. The number of brackets bounds the depth, so most records take one scan in C."""
    if value.count(b"{") + value.count(b"[") <= limit:
        return 0
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(value):
        t = token.group()
        if t in (b"{", b"["):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif t in (b"}", b"]"):
            depth -= 1
    return deepest


class PoisonMessage(Exception):
    """A message that can never succeed (bad envelope or contract): dead-lettered without retries."""


@dataclass(slots=True)
class Decoded:
    record: ConsumerRecord
    ce: CloudEvent | None
    event: Event | None
    handler: Handler | None
    error: PoisonMessage | None = None


class EventConsumer:
    def __init__(
        self,
        settings: ServiceSettings,
        name: str,
        topics: Sequence[str],
        handlers: dict[type[Event], Handler],
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        preload: Preload | None = None,
        unit_of_work: Callable[[AsyncSession], UnitOfWork] = UnitOfWork,
    ) -> None:
        self.settings = settings
        self.preload = preload
        self.unit_of_work = unit_of_work
        self.name = name
        self.topics = list(topics)
        self.handlers = {model.ce_type(): h for model, h in handlers.items()}
        self.models = {model.ce_type(): model for model in handlers}
        self.sessions = sessions
        self.producer = producer
        self._consumer = None
        self._lag_reported: set[TopicPartition] = set()
        self._meter_cache: dict[str, tuple] = {}
        #: the group's committed offset of each assigned partition, as this consumer knows it
        self._committed: dict[TopicPartition, int] = {}
        #: when this consumer last finished a poll (processed and committed it): see `stalled`
        self.last_progress = time.monotonic()

    def stalled(self, now: float | None = None) -> bool:
        """Not making progress: no poll finished for `consumer_stall_s` (stuck in a handler, or
        crashing and restarting on the same record). A consumer waiting on an idle topic finishes
        a poll every half second, so it is never stalled."""
        return ((now if now is not None else time.monotonic()) - self.last_progress) > self.settings.consumer_stall_s

    def decode(self, record: ConsumerRecord) -> Decoded:
        """Bounded decoding: a record too large or nested too deep is refused before any parser
        recurses into it, and whatever else a record makes the decoder or the contract raise is a
        dead letter with its reason, never a crash of the consumer (a crash replays the same record
        forever and the partition never moves on)."""
        try:
            return self._decode(record)
        except Exception as exc:  # RecursionError, MemoryError-like surprises from a parser, a validator's bug
            return Decoded(record, None, None, None, PoisonMessage(f"undecodable: {type(exc).__name__}"))

    def _decode(self, record: ConsumerRecord) -> Decoded:
        size = len(record.value or b"")
        if size > self.settings.consumer_max_record_bytes:
            limit = self.settings.consumer_max_record_bytes
            return Decoded(record, None, None, None, PoisonMessage(f"too large: {size} bytes (limit {limit})"))
        depth = json_depth(record.value or b"", self.settings.consumer_max_json_depth)
        if depth > self.settings.consumer_max_json_depth:
            limit = self.settings.consumer_max_json_depth
            return Decoded(record, None, None, None, PoisonMessage(f"nested too deep: over {limit} levels"))
        try:
            ce = CloudEvent.from_kafka(record.key, record.value, record.headers or [])
        except EnvelopeError as exc:
            return Decoded(record, None, None, None, PoisonMessage(f"envelope: {exc}"))
        model = self.models.get(ce.type) or BY_CE_TYPE.get(ce.type)
        if model is None:
            # a newer type this version does not know: not ours to judge, nor to apply
            return Decoded(record, ce, None, None)
        # Every record of a type the contract knows is validated by it, whether this consumer
        # applies the type or not: every consumer of a topic treats the same record the same way
        # (a record its contract refuses is a dead letter of each of them, with the same reason).
        try:
            event = model.model_validate(ce.data)
        except ValidationError as exc:
            return Decoded(record, ce, None, None, PoisonMessage(f"contract: {exc.errors(include_url=False)}"))
        handler = self.handlers.get(ce.type)
        if handler is None:
            return Decoded(record, ce, None, None)  # another consumer's event: valid, not ours to apply
        return Decoded(record, ce, event, handler)

    async def claim(self, session: AsyncSession, items: Sequence[Decoded]) -> set[UUID]:
        """Record messages in the inbox in the caller's transaction; the ids that were new."""
        ids = [item.ce.id for item in items if item.ce is not None]
        rows = await session.execute(_CLAIM_MANY, {"consumer": self.name, "event_ids": ids})
        return {row[0] for row in rows}

    async def apply(self, uow: UnitOfWork, item: Decoded, claimed: bool | None = None) -> bool:
        """Apply one message in the caller's unit of work. False when the inbox already had it.
        `claimed`: whether `claim` found it new; None claims it here."""
        assert item.ce is not None and item.event is not None and item.handler is not None
        if claimed is None:
            claimed = (
                await uow.session.execute(_CLAIM, {"consumer": self.name, "event_id": item.ce.id})
            ).first() is not None
            if claimed and self.preload is not None:
                await self.preload(uow, [item.event])
        if not claimed:
            metrics.EVENTS_PROCESSED.labels(self.name, item.ce.event_name, "duplicate").inc()
            return False
        carrier = {"traceparent": item.ce.traceparent} if item.ce.traceparent else {}
        started = time.perf_counter()
        with (
            tracer().start_as_current_span(
                f"{item.ce.event_name} process",
                context=context_from(carrier),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": item.record.topic,
                    "messaging.consumer.group.name": self.name,
                    "messaging.message.id": str(item.ce.id),
                    "messaging.kafka.partition": item.record.partition,
                    "messaging.kafka.offset": item.record.offset,
                },
            ),
            uow.handling(item.ce),
        ):
            await item.handler(item.event, uow)
        latency, applied = self._meters(item.ce.event_name)
        latency.observe(time.perf_counter() - started)
        applied.inc()
        return True

    def _meters(self, event_name: str):
        """This consumer's latency histogram and applied counter for one event type (looked up
        once: `labels()` on every event showed in profiles)."""
        found = self._meter_cache.get(event_name)
        if found is None:
            found = self._meter_cache[event_name] = (
                metrics.HANDLER_LATENCY.labels(self.name, event_name),
                metrics.EVENTS_PROCESSED.labels(self.name, event_name, "applied"),
            )
        return found

    async def process_batch(self, records: list[ConsumerRecord]) -> None:
        """Apply records (one poll's, of any of this consumer's partitions, each partition's in offset
        order); returns when every one is applied, skipped or dead-lettered. A message that can never
        apply is dead-lettered first; it is never applied, so the others need not wait behind it."""
        items = [self.decode(r) for r in records]
        for item in items:
            if item.error is not None:
                await self.dead_letter(item, item.error, attempts=1)
        work = [i for i in items if i.event is not None and i.error is None]
        if len(work) > 1:
            try:
                async with self._unit() as uow:
                    new = await self.claim(uow.session, work)
                    fresh = [i.event for i in work if i.ce is not None and i.event is not None and i.ce.id in new]
                    if self.preload is not None and fresh:
                        await self.preload(uow, fresh)
                    for item in work:
                        assert item.ce is not None
                        # a message twice in one batch: the first is new, the second a duplicate
                        is_new = item.ce.id in new
                        new.discard(item.ce.id)
                        await self.apply(uow, item, claimed=is_new)
                    await uow.commit()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # the reason without the error's message: a database error's carries the records' values
                log.warning("%s: batch of %d failed (%s); applying one by one", self.name, len(work), failure_kind(exc))
        for item in work:
            await self.process_one(item)

    async def process_one(self, item: Decoded) -> None:
        """Apply one message, retried with backoff; dead-lettered after `consumer_max_attempts`
        failures of its own. A database or broker that cannot be reached (restarting, down: the
        record is not at fault) costs no attempt: the consumer waits for it, and reads as stalled
        (not ready) if that lasts. (The fault suite's PostgreSQL restart dead-lettered records that
        were fine.)"""
        delay = self.settings.consumer_backoff_initial_s
        attempt = 0
        r = item.record
        while True:
            try:
                async with self._unit() as uow:
                    await self.apply(uow, item)
                    await uow.commit()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.EVENTS_PROCESSED.labels(self.name, item.ce.event_name, "failed").inc()  # type: ignore[union-attr]
                if is_unavailable(exc):
                    log.warning(
                        "%s: %s[%d]@%d waits for its database or broker: %s",
                        self.name,
                        r.topic,
                        r.partition,
                        r.offset,
                        failure_kind(exc),
                    )
                else:
                    attempt += 1
                    if attempt >= self.settings.consumer_max_attempts:
                        await self.dead_letter(item, exc, attempts=attempt)
                        return
                    log.warning(
                        "%s: attempt %d/%d on %s[%d]@%d failed: %s",
                        self.name,
                        attempt,
                        self.settings.consumer_max_attempts,
                        r.topic,
                        r.partition,
                        r.offset,
                        failure_kind(exc),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.consumer_backoff_max_s)

    def _unit(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return begin(self.sessions, self.unit_of_work)

    async def dead_letter(self, item: Decoded, error: Exception, attempts: int) -> None:
        r = item.record
        extra = [
            ("dlq_error", safe_reason(error)[:2000].encode()),
            ("dlq_error_type", type(error).__name__.encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_original_topic", r.topic.encode()),
            ("dlq_original_partition", str(r.partition).encode()),
            ("dlq_original_offset", str(r.offset).encode()),
            ("dlq_time", str(int(time.time() * 1000)).encode()),
        ]
        headers = [(k, v) for k, v in (r.headers or []) if not k.startswith("dlq_")] + extra
        fut = await self.producer.send(dlq_topic(r.topic), value=r.value, key=r.key, headers=headers)
        await fut
        metrics.DLQ_MESSAGES.labels(self.name, r.topic).inc()
        log.error(
            "%s: dead-lettered %s[%d]@%d after %d attempt(s): %s",
            self.name,
            r.topic,
            r.partition,
            r.offset,
            attempts,
            failure_kind(error),
        )

    async def run(self) -> None:
        """Consume until cancelled."""
        consumer = kafka_consumer(self.settings, self.name, self.topics)
        self._consumer = consumer
        lag: asyncio.Task | None = None
        try:
            # not reset here: a consumer crashing on a record and restarted by its supervisor starts
            # again and again, and must still read as stalled
            await consumer.start()
            # lag is reported beside the loop, so a loop stuck on a record still shows its lag growing
            lag = asyncio.create_task(self._report_lag(consumer))
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_batch_size)
                # revoked while we fetched: the new owner will read it
                owned = {tp: records for tp, records in batches.items() if records and tp in consumer.assignment()}
                if owned:
                    # One transaction for the whole poll (a commit per partition was most of the
                    # commits under load), then one offset commit for every partition in it.
                    await self.process_batch([r for records in owned.values() for r in records])
                    await self._commit(consumer, {tp: records[-1].offset + 1 for tp, records in owned.items()})
                self.last_progress = time.monotonic()
        finally:
            if lag is not None:
                lag.cancel()
                await asyncio.gather(lag, return_exceptions=True)
            await consumer.stop()

    async def _report_lag(self, consumer, every_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self._observe_lag(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a rebalance or a broker hiccup: next time
                log.debug("%s: lag not observed: %r", self.name, exc)

    async def _commit(self, consumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Rebalanced away: the new owner re-reads from the last commit and the inbox skips repeats.
            log.info("%s: commit of %s skipped: %s", self.name, offsets, exc)
        except KafkaError as exc:
            log.warning("%s: commit of %s failed: %s", self.name, offsets, exc)

    async def _observe_lag(self, consumer) -> None:
        """Lag from the committed offsets (what is applied and will not be read again), not from
        the fetch position, which runs ahead of a consumer stuck on a record it fetched."""
        assigned = consumer.assignment()
        for tp in self._lag_reported - assigned:
            # lost in a rebalance: its new owner reports it now
            metrics.CONSUMER_LAG.remove(self.name, tp.topic, str(tp.partition))
        for tp in set(self._committed) - assigned:
            del self._committed[tp]
        self._lag_reported = set()
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                continue
            committed = self._committed.get(tp)
            if committed is None:
                try:
                    committed = self._committed[tp] = await consumer.committed(tp) or 0
                except KafkaError:
                    continue
            metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(high - committed, 0))
            self._lag_reported.add(tp)
