"""`pmtct replay reporting`: rebuild the read model from the topics.

Reads every partition of the three topics from the beginning up to its end as first seen, decodes
each record as the live consumer does, and takes its facts from the same place (reporting.facts).
Facts are bulk-copied, then every subject and every (facility, month) count is derived at once by
the same definitions the live consumer uses one subject at a time; every applied event is claimed
in the consumer's inbox. All of it in ONE transaction that first empties the read model and the
consumer's inbox entries: readers keep seeing the old numbers until the commit, and a failure
leaves them untouched. The live consumer's writes wait for the rebuild (EXCLUSIVE table locks),
then its inbox skips everything the rebuild applied and it carries on past that point, so it is
safe to run while the service runs.

The read model is a function of the set of events, not of their order, so the rebuild gives the
same numbers as the live read model although it reads the partitions in another interleaving.

The topics must keep every event for this to rebuild everything (`retention.ms=-1` in production).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pmtct_events import TOPICS
from pmtct_events.envelope import header
from servicekit import uow
from servicekit.consumer import EventConsumer
from servicekit.db import create_engine, sessionmaker

from . import repository
from .facts import APPLIED, Fact, facts_of
from .handlers import build
from .settings import Settings

#: the live consumer group: the rebuild claims events in its name so that it skips them afterwards
CONSUMER = "reporting"


#: decoding, which never waits, lets the staging task go on this often (in applied events): each of
#: its statements needs the loop once, and PostgreSQL runs it while the decoding goes on
YIELD_EVERY = 200


@dataclass
class ReplayResult:
    read: int = 0
    applied: int = 0
    #: other services' events, or types this version does not know
    not_ours: int = 0
    #: bad envelopes or contracts: the live consumer dead-letters these
    failed: int = 0
    #: seconds reading, decoding and staging the events; then deriving and writing the read model
    read_s: float = 0.0
    load_s: float = 0.0


async def _open_partitions(bootstrap: str) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """Every partition of the three topics, at its beginning, with the end offset the broker reports."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
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


async def rebuild(settings: Settings, sized: Callable[[int], None], advanced: Callable[[int], None]) -> ReplayResult:
    """Rebuild the read model; `sized(total)` as the work becomes known, `advanced(n)` as it goes."""
    engine = create_engine(settings.database_url, settings.schema, pool_size=1)
    sessions = sessionmaker(engine)
    # the live consumer's own decoding (envelope, contract, which types it applies); nothing is dead-lettered
    # here, so it needs no producer
    decoder = EventConsumer(settings, CONSUMER, list(TOPICS), build(settings), sessions, producer=None)  # type: ignore[arg-type]
    consumer, reported_end = await _open_partitions(settings.kafka_bootstrap_servers)
    result = ReplayResult()
    # The end of a partition is the larger of the end offset listed at the start and the high watermark
    # of the first fetch from it: the dev broker (Tansu) under-reports the listed end of batched writes.
    ends: dict[TopicPartition, int] = {}
    pending = set(reported_end)
    sized(sum(reported_end.values()))
    facts: list[Fact] = []
    applied: list[UUID] = []
    applied_types = {model.ce_type() for model in APPLIED}
    clock = settings.clock
    # Nothing the rebuild holds is in a reference cycle, but with up to `replay_stage_rows` facts alive the cyclic
    # collector's passes over them cost a tenth of its time, most of it triggered by the Kafka client's
    # record objects: it is off while the events are read, and the young generations are collected
    # (what cycles a library left behind) after each stage is handed over.
    gc.freeze()
    gc.disable()
    started = time.perf_counter()
    # Staging copies run while the next events are decoded (PostgreSQL takes them in on the other
    # core); one at a time, as they share the transaction's connection.
    staging: asyncio.Task | None = None
    try:
        async with uow.begin(sessions) as unit:
            session = unit.session
            await repository.lock_and_empty_read_model(session, CONSUMER)
            await repository.create_staging(session)
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
                for tp in pending:
                    high = consumer.highwater(tp)
                    if tp not in ends and high is not None:
                        ends[tp] = max(high, reported_end[tp])
                        sized(sum(ends.get(t, e) for t, e in reported_end.items()))
                for tp, records in batches.items():
                    for record in records:
                        if tp in ends and record.offset >= ends[tp]:
                            continue
                        result.read += 1
                        if header(record.headers or [], "ce_type") not in applied_types:
                            result.not_ours += 1  # not decoded at all: most of a rebuild's time is decoding
                            continue
                        item = decoder.decode(record)
                        if item.error is not None:
                            result.failed += 1
                        elif item.event is None or item.ce is None:
                            result.not_ours += 1
                        else:
                            facts += facts_of(item.ce, item.event, clock)
                            applied.append(item.ce.id)
                            result.applied += 1
                            if staging is not None and not result.applied % YIELD_EVERY:
                                await asyncio.sleep(0)  # the staging task sends its next statement
                    advanced(len(records))
                if len(facts) + len(applied) >= settings.replay_stage_rows:
                    if staging is not None:
                        await staging
                    staging = asyncio.create_task(repository.stage(session, facts, applied))
                    facts, applied = [], []
                    gc.collect(1)
                for tp in list(pending):
                    if tp in ends and await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            if staging is not None:
                await staging
            await repository.stage(session, facts, applied)
            loading = time.perf_counter()
            result.read_s = loading - started
            await repository.load_staged(session, CONSUMER)
            await unit.commit()
        result.load_s = time.perf_counter() - loading
    finally:
        if staging is not None and not staging.done():
            staging.cancel()
        gc.enable()
        gc.unfreeze()
        await consumer.stop()
        await engine.dispose()
    return result


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
        overrides["database_url"] = bootstrap.service_url(
            postgres_socket_url(data_dir), "reporting", password=bootstrap.local_role_password(data_dir, "reporting")
        )
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
        f"{result.failed} failed (read in {result.read_s:.1f} s, read model written in {result.load_s:.1f} s)"
    )
    if result.failed:
        console.print("[yellow]failed events were skipped, as the live consumer dead-letters them (pmtct dlq)")
    return 0
