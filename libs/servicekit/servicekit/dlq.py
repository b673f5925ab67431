"""Dead letters: list what consumers gave up on, and replay it to the original topic.

A consumer dead-letters a message to `<topic>.dlq` after its retries (`servicekit.consumer`), with
`dlq_*` headers that say which consumer failed, where the message came from and why. The failed
message was not recorded in that consumer's inbox, so once the cause is fixed, replaying it to its
original topic (same `ce_id`, same key, original headers) applies it there once, and every consumer
that already had it skips it on its inbox.

A dead-letter topic is an append-only log, so a replay is remembered in it: before republishing,
`replay` writes a marker record (header `dlq_replay_of=<ce_id>`, same key, hence same partition as
the dead letters of that event). A dead letter followed by a marker is `replayed`; one that fails
again after its replay is dead-lettered again behind the marker and shows as `pending` once more.
Ordering within one partition is exact, so no clock is compared.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from pmtct_events import dlq_topic

from . import kafka
from .settings import ServiceSettings

log = logging.getLogger(__name__)

DLQ_SUFFIX = dlq_topic("")
REPLAY_MARKER = "dlq_replay_of"

PENDING = "pending"
REPLAYED = "replayed"
UNREPLAYABLE = "unreplayable"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, with what its `dlq_*` headers say."""

    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    ce_id: str | None
    ce_type: str | None
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    consumer: str | None
    attempts: int | None
    error: str | None
    error_type: str | None
    dead_lettered_at: datetime | None
    replayed_at: datetime | None = None

    @property
    def status(self) -> str:
        if self.ce_id is None:
            return UNREPLAYABLE  # not a CloudEvent of ours: nothing to deduplicate a replay on
        return REPLAYED if self.replayed_at is not None else PENDING

    @property
    def event_name(self) -> str | None:
        """`org.pmtct.enrolment.ClientEnrolled.v1` -> `ClientEnrolled`."""
        if not self.ce_type:
            return None
        parts = self.ce_type.split(".")
        return parts[-2] if len(parts) >= 2 else self.ce_type

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original message's headers: everything the consumer added (`dlq_*`) removed."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "ce_id": self.ce_id,
            "type": self.ce_type,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "consumer": self.consumer,
            "attempts": self.attempts,
            "error_type": self.error_type,
            "error": self.error,
            "dead_lettered_at": _iso(self.dead_lettered_at),
            "replayed_at": _iso(self.replayed_at),
            "dlq": f"{self.dlq_topic}[{self.partition}]@{self.offset}",
        }


def dlq_name(topic: str) -> str:
    """Accept either a topic or its dead-letter topic."""
    return topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)


def _header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name and v is not None:
            return v.decode("utf-8", "replace")
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _ms_time(value: str | int | None) -> datetime | None:
    ms = _int(value) if isinstance(value, str) else value
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _ce_id(raw: str | None) -> str | None:
    try:
        return str(UUID(raw)) if raw else None
    except ValueError:
        return None


def dead_letter(record: ConsumerRecord) -> DeadLetter:
    headers = tuple((k, v) for k, v in (record.headers or ()) if v is not None)
    return DeadLetter(
        dlq_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=headers,
        ce_id=_ce_id(_header(headers, "ce_id")),
        ce_type=_header(headers, "ce_type"),
        original_topic=_header(headers, "dlq_original_topic") or record.topic.removesuffix(DLQ_SUFFIX),
        original_partition=_int(_header(headers, "dlq_original_partition")),
        original_offset=_int(_header(headers, "dlq_original_offset")),
        consumer=_header(headers, "dlq_consumer"),
        attempts=_int(_header(headers, "dlq_attempts")),
        error=_header(headers, "dlq_error"),
        error_type=_header(headers, "dlq_error_type"),
        dead_lettered_at=_ms_time(_header(headers, "dlq_time")) or _ms_time(record.timestamp),
    )


def fold(records: Sequence[ConsumerRecord]) -> list[DeadLetter]:
    """Dead letters in log order, each marked replayed when a replay marker for its `ce_id` follows
    it in the same partition. Marker records themselves are not dead letters."""
    letters: list[DeadLetter] = []
    by_partition: dict[tuple[str, int], list[ConsumerRecord]] = {}
    for r in records:
        by_partition.setdefault((r.topic, r.partition), []).append(r)
    for _, recs in sorted(by_partition.items()):
        partition_letters: list[DeadLetter] = []
        for r in sorted(recs, key=lambda r: r.offset):
            replay_of = _ce_id(_header(r.headers or (), REPLAY_MARKER))
            if replay_of is None:
                partition_letters.append(dead_letter(r))
                continue
            replayed_at = _ms_time(r.timestamp)
            partition_letters = [
                replace(d, replayed_at=replayed_at) if d.ce_id == replay_of and d.replayed_at is None else d
                for d in partition_letters
            ]
        letters.extend(partition_letters)
    return sorted(letters, key=lambda d: (d.dead_lettered_at or datetime.min.replace(tzinfo=UTC), d.dlq_topic))


async def dlq_topics(bootstrap_servers: str) -> list[str]:
    """Every dead-letter topic on the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        return sorted(t for t in await consumer.topics() if t.endswith(DLQ_SUFFIX))
    finally:
        await consumer.stop()


async def read(bootstrap_servers: str, topics: Sequence[str] | None = None, idle_s: float = 2.0) -> list[DeadLetter]:
    """Every dead letter of `topics` (topics or their `.dlq` names; default: all dead-letter topics),
    read from the beginning without a consumer group, so reading never moves anyone's offsets.

    The end is where a fetch waits `idle_s` and gets nothing: end offsets are not used, because the
    dev broker (Tansu) reports them in batches rather than records."""
    wanted = [dlq_name(t) for t in topics] if topics else await dlq_topics(bootstrap_servers)
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for topic in dict.fromkeys(wanted):
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # aiokafka has no public refresh
                partitions = consumer.partitions_for_topic(topic)
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions or ()))
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        while batch := await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000):
            for recs in batch.values():
                records.extend(recs)
        return fold(records)
    finally:
        await consumer.stop()


async def _started_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    producer = kafka.producer(settings)
    try:
        await producer.start()
        return producer
    except KafkaError:
        await producer.stop()
        if not settings.kafka_idempotent_producer:
            raise
    log.info("the broker refused an idempotent producer; replaying without (consumers skip repeats by ce_id)")
    producer = kafka.producer(settings.model_copy(update={"kafka_idempotent_producer": False}))
    await producer.start()
    return producer


def select(
    letters: Iterable[DeadLetter],
    ce_id: str | None = None,
    consumer: str | None = None,
    include_replayed: bool = False,
) -> list[DeadLetter]:
    """The dead letters a replay would resend: one per `ce_id` (an event several consumers gave up on
    is republished once; each of them gets it). An explicit `ce_id` is replayed even if it was before."""
    chosen: dict[str, DeadLetter] = {}
    for d in letters:
        if d.ce_id is None or (ce_id is not None and d.ce_id != ce_id):
            continue
        if consumer is not None and d.consumer != consumer:
            continue
        if d.status == REPLAYED and not include_replayed and ce_id is None:
            continue
        chosen.setdefault(d.ce_id, d)
    return list(chosen.values())


async def replay(settings: ServiceSettings, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Republish each dead letter to its original topic with its own key, value and original headers
    (so its `ce_id`, trace and correlation ids), after marking it replayed in its dead-letter topic.
    Returns what was republished, in order; stops at the first failure.

    On a broker without idempotent producers (the dev broker, Tansu, has no InitProducerId) it
    publishes without: a replay may then repeat a record, which the consumers' inboxes skip (ce_id)."""
    producer = await _started_producer(settings)
    done: list[DeadLetter] = []
    try:
        for d in letters:
            assert d.ce_id is not None
            now_ms = int(time.time() * 1000)
            marker = json.dumps({"replay_of": d.ce_id, "to": d.original_topic}).encode()
            await (
                await producer.send(
                    d.dlq_topic,
                    value=marker,
                    key=d.key,
                    headers=[(REPLAY_MARKER, d.ce_id.encode()), ("dlq_time", str(now_ms).encode())],
                )
            )
            await (await producer.send(d.original_topic, value=d.value, key=d.key, headers=d.replay_headers()))
            done.append(d)
    finally:
        await producer.stop()
    return done
