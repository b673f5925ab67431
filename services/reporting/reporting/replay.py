"""`pmtct replay reporting`: rebuild the read model from the topics.

Reads every partition of the three topics from the beginning up to the end offsets seen at the
start, and applies each event with the live consumer's own decode, inbox claim and handlers, in
ONE transaction that first empties the read model and the consumer's inbox entries. Readers keep
seeing the old numbers until the commit; a failure leaves them untouched. The live consumer's
writes wait for the rebuild (EXCLUSIVE table locks), then its inbox skips everything the rebuild
applied and it carries on past the end offsets, so it is safe to run while the service runs.

Because the merge rules do not depend on arrival order, the rebuild gives the same numbers as the
live read model, although it reads the partitions in a different interleaving. Before it commits,
it counts every (facility, month) cell afresh from the rebuilt facts and refuses to commit if the
cells kept subject by subject disagree.

The topics must keep every event for this to rebuild everything (`retention.ms=-1` in production).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import TOPICS
from servicekit.consumer import Decoded, EventConsumer
from servicekit.db import create_engine, sessionmaker

from . import repository
from .handlers import HANDLERS
from .indicators import CLIENT_INTERACTIONS_COUNT
from .settings import Settings

log = logging.getLogger(__name__)

#: the live consumer group: the rebuild claims events in its name so that it skips them afterwards
CONSUMER = "reporting"


@dataclass
class ReplayResult:
    read: int = 0
    applied: int = 0
    #: other services' events, or types this version does not know
    not_ours: int = 0
    #: bad envelopes or contracts, and events whose handler failed: the live consumer dead-letters these
    failed: int = 0


async def _open_partitions(bootstrap: str) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """Every partition of the three topics, at its beginning, with the end offset the broker reports."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=1000)
    await consumer.start()
    existing = await consumer.topics()  # also loads the partitions of every topic into the metadata
    partitions = [
        TopicPartition(topic, p)
        for topic in TOPICS
        if topic in existing
        for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    if not partitions:
        return consumer, {}
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer, await consumer.end_offsets(partitions)


async def _apply(session: AsyncSession, ec: EventConsumer, items: list[Decoded], result: ReplayResult) -> None:
    """A batch in a savepoint; if anything in it fails, again one by one, skipping what fails."""
    work = [i for i in items if i.error is None and i.event is not None]
    result.not_ours += sum(1 for i in items if i.error is None and i.event is None)
    result.failed += sum(1 for i in items if i.error is not None)
    try:
        async with session.begin_nested():
            for item in work:
                result.applied += await ec.apply(session, item)
        return
    except Exception:
        log.info("replay batch failed; applying one by one")
    for item in work:
        try:
            async with session.begin_nested():
                result.applied += await ec.apply(session, item)
        except Exception as exc:
            result.failed += 1
            r = item.record
            log.warning("replay: %s[%d]@%d failed: %r", r.topic, r.partition, r.offset, exc)


async def rebuild(settings: Settings, sized: Callable[[int], None], advanced: Callable[[int], None]) -> ReplayResult:
    """Rebuild the read model; `sized(total)` as the work becomes known, `advanced(n)` as it goes."""
    engine = create_engine(settings.database_url, settings.schema, pool_size=1)
    sessions = sessionmaker(engine)
    # the consumer's own decoding and inbox claim; it never dead-letters here, so it needs no producer
    ec = EventConsumer(settings, CONSUMER, list(TOPICS), HANDLERS, sessions, producer=None)  # type: ignore[arg-type]
    consumer, reported_end = await _open_partitions(settings.kafka_bootstrap_servers)
    result = ReplayResult()
    # The end of a partition is the larger of the end offset listed at the start and the high watermark
    # of the first fetch from it: the dev broker (Tansu) under-reports the listed end of batched writes.
    ends: dict[TopicPartition, int] = {}
    pending = set(reported_end)
    sized(sum(reported_end.values()))
    try:
        async with sessions() as session, session.begin():
            await repository.lock_and_empty_read_model(session, CONSUMER)
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=1000)
                for tp in pending:
                    high = consumer.highwater(tp)
                    if tp not in ends and high is not None:
                        ends[tp] = max(high, reported_end[tp])
                        sized(sum(ends.get(t, e) for t, e in reported_end.items()))
                for tp, records in batches.items():
                    records = [r for r in records if tp not in ends or r.offset < ends[tp]]
                    await _apply(session, ec, [ec.decode(r) for r in records], result)
                    result.read += len(records)
                    advanced(len(records))
                for tp in list(pending):
                    if tp in ends and await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            await _check_cells(session)
    finally:
        await consumer.stop()
        await engine.dispose()
    return result


class CountsDisagree(Exception):
    """The cells kept subject by subject differ from a fresh count: the rebuild is rolled back."""


async def _check_cells(session: AsyncSession) -> None:
    """Before committing, count every cell afresh from the rebuilt facts and compare."""

    def nonzero(cells: repository.Cells) -> dict:
        return {
            (cell, key): value
            for cell, counts in cells.items()
            for key, value in counts.items()
            if value and key != CLIENT_INTERACTIONS_COUNT.key
        }

    kept, counted = nonzero(await repository.all_cells(session)), nonzero(await repository.cells_from_facts(session))
    if kept != counted:
        differ = sorted(set(kept.items()) ^ set(counted.items()), key=str)[:10]
        raise CountsDisagree(f"monthly counts differ from a fresh count, e.g. {differ}")


def postgres_socket_url(data_dir: Path) -> str:
    """The admin URL of the local runner's embedded PostgreSQL, read from its postmaster.pid
    (line 4: port, line 5: socket directory)."""
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return f"postgresql://postgres@/postgres?host={lines[4].strip()}&port={lines[3].strip()}"


def main(data_dir: Path | None = None, bootstrap_servers: str | None = None, console: Console | None = None) -> int:
    """The `pmtct replay reporting` command. Connection settings come from the environment as for
    the service (PMTCT_DATABASE_URL, PMTCT_KAFKA_BOOTSTRAP_SERVERS), or from a running local
    runner's data directory (`pmtct dev --data-dir DIR`, broker on 127.0.0.1:9092 unless given)."""
    from servicekit import bootstrap

    console = console or Console()
    overrides: dict[str, str] = {}
    if data_dir is not None:
        overrides["database_url"] = bootstrap.service_url(postgres_socket_url(data_dir), "reporting")
        overrides["kafka_bootstrap_servers"] = "127.0.0.1:9092"
    if bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = bootstrap_servers
    settings = Settings(**overrides)
    with Progress(
        TextColumn("[bold]rebuilding reporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("replay", total=None)
        result = asyncio.run(
            rebuild(
                settings,
                sized=lambda total: progress.update(task, total=total),
                advanced=lambda n: progress.advance(task, n),
            )
        )
    console.print(
        f"read {result.read} events: {result.applied} applied, {result.not_ours} not for reporting, "
        f"{result.failed} failed"
    )
    if result.failed:
        console.print("[yellow]failed events were skipped, as the live consumer dead-letters them (pmtct dlq)")
    return 0
