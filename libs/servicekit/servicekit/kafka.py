"""Producer, consumer and topic creation with the platform's settings."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner, murmur2

from pmtct_events import dlq_topic

from .settings import ServiceSettings

log = logging.getLogger(__name__)


class KeyPartitioner:
    """aiokafka's default partitioner (a key's murmur2 hash, as the Java client, so a key goes to
    the same partition), with each key's hash remembered: aiokafka's murmur2 is pure Python, and a
    service publishes the same aggregates' keys again and again (it was 2 % of follow-up's CPU)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()
            found = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[found % len(all_partitions)]


def producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        partitioner=KeyPartitioner(),
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=5,
        max_batch_size=256 * 1024,
        client_id=f"pmtct-{settings.service_name}",
    )


def consumer(settings: ServiceSettings, group_id: str, topics: list[str]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        client_id=f"pmtct-{settings.service_name}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
        max_poll_records=settings.consumer_batch_size,
        # Kafka answers a waiting fetch as soon as data arrives; the dev broker (Tansu) answers late, a
        # fifth of the wait on average and half of it at worst (measured), so aiokafka's 500 ms default
        # added ~100 ms, up to 250 ms, to every hop between services
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
    )


async def ensure_topics(settings: ServiceSettings, topics: list[str], with_dlq: bool = True) -> None:
    """Create the topics (and their dead-letter topics) that do not exist yet."""
    wanted = list(topics) + ([dlq_topic(t) for t in topics] if with_dlq else [])
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(wanted) if t not in existing]
        if not missing:
            return

        def configs(topic: str) -> dict[str, str]:
            dlq = topic.endswith(".dlq")
            out = {"retention.ms": str(settings.kafka_dlq_retention_ms if dlq else settings.kafka_retention_ms)}
            if settings.kafka_replication_factor > 1:
                out["min.insync.replicas"] = str(settings.kafka_min_insync_replicas)
            return out

        new = [
            NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor, topic_configs=configs(t))
            for t in missing
        ]
        try:
            await admin.create_topics(new)
        except Exception as exc:  # a concurrent replica may have created them first
            log.info("topic creation: %s", exc)
        log.info("created topics %s", missing)
    finally:
        await admin.close()
