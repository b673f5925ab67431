"""Producer, consumer and topic creation with the platform's settings."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pmtct_events import dlq_topic

from .settings import ServiceSettings

log = logging.getLogger(__name__)


def producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
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
