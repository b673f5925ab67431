"""The unit of work (`servicekit.uow`): what a handler changes is written when, and only when, the
unit commits, in one fixed order; the events aggregates raise reach the outbox with their cause."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from servicekit import uow
from servicekit.uow import Aggregate, Repository, UnitOfWork


@dataclass(slots=True)
class Stream(Aggregate):
    """A scratch aggregate: the last seq seen on one key."""

    key: str
    last: int = -1
    dirty: bool = False

    def ping(self, event_type: type[Event], seq: int) -> None:
        self.last, self.dirty = seq, True
        self.raise_event(event_type(facility_id="FAC-ZA-001", occurred_at=datetime.now(UTC), stream=self.key, seq=seq))


class Streams(Repository[str, Stream]):
    """Keeps its rows in the spine's `applied` table (key, seq); counts its loads and flushes."""

    def __init__(self, session: AsyncSession, journal: list[str]) -> None:
        super().__init__(session)
        self.journal = journal
        self.loads: list[list[str]] = []

    async def _load(self, keys: list[str]) -> dict[str, Stream]:
        self.loads.append(keys)
        rows = await self.session.execute(
            text("SELECT key, max(seq) FROM applied WHERE key = ANY(:keys) GROUP BY key"), {"keys": keys}
        )
        found = {k: Stream(k, last) for k, last in rows}
        return {k: found.get(k, Stream(k)) for k in keys}

    async def flush(self) -> None:
        self.journal.append("flush")
        for s in self.seen.values():
            if s.dirty:
                await self.session.execute(
                    text("INSERT INTO applied (event_id, key, seq) VALUES (:e, :k, :s)"),
                    {"e": uuid4(), "k": s.key, "s": s.last},
                )


class Unit(UnitOfWork):
    journal: list[str]

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.journal = []
        self.streams = self.track(Streams(session, self.journal))

    async def finish(self, envelopes: list[tuple[CloudEvent, Event]]) -> None:
        outbox_rows = (await self.session.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        self.journal.append(f"finish after {outbox_rows} outbox rows, {len(envelopes)} envelopes")


async def _outbox(spine) -> list[dict]:
    async with spine.sessions() as session:
        rows = await session.execute(text("SELECT event_type, aggregate_id, headers, payload FROM outbox ORDER BY id"))
        return [dict(r._mapping) for r in rows]


async def test_commit_flushes_then_writes_the_raised_events_with_their_cause_then_finishes(spine) -> None:
    cause = CloudEvent.from_event(spine.event("cause", 0), correlation_id="batch-7")
    async with uow.begin(spine.sessions, Unit) as unit:
        with unit.handling(cause):
            stream = await unit.streams.get("a")
            assert stream is not None
            stream.ping(spine.Event, 1)
            stream.ping(spine.Event, 2)
        (await unit.streams.get("b")).ping(spine.Event, 1)  # raised outside any consumed message
        unit.correlation_id = "request-9"
        assert await _outbox(spine) == [], "nothing is written before the commit"
        written = await unit.commit()
        journal = unit.journal

    assert journal == ["flush", "finish after 3 outbox rows, 3 envelopes"]
    rows = await _outbox(spine)
    assert [(r["aggregate_id"], r["payload"]["seq"]) for r in rows] == [("a", 1), ("a", 2), ("b", 1)]
    caused = [r["headers"] for r in rows[:2]]
    assert all(h["ce_causationid"] == str(cause.id) and h["ce_correlationid"] == "batch-7" for h in caused)
    assert "ce_causationid" not in rows[2]["headers"]
    assert rows[2]["headers"]["ce_correlationid"] == "request-9"
    assert [str(ce.id) for ce in written] == [r["headers"]["ce_id"] for r in rows]
    assert sorted((k, s) for _, k, s in await spine.applied()) == [("a", 2), ("b", 1)]


async def test_a_unit_left_without_commit_writes_nothing(spine) -> None:
    with pytest.raises(RuntimeError):
        async with uow.begin(spine.sessions, Unit) as unit:
            (await unit.streams.get("a")).ping(spine.Event, 1)
            await unit.session.execute(
                text("INSERT INTO applied (event_id, key, seq) VALUES (:e, 'direct', 0)"), {"e": uuid4()}
            )
            raise RuntimeError("the handler failed")
    async with uow.begin(spine.sessions, Unit) as unit:
        (await unit.streams.get("a")).ping(spine.Event, 1)
        journal = unit.journal  # a read-only use: leaves without commit
    assert journal == [], "no flush without a commit"
    assert await spine.applied() == []
    assert await _outbox(spine) == []


async def test_the_identity_map_loads_a_batch_once_and_answers_later_gets_from_memory(spine) -> None:
    async with uow.begin(spine.sessions, Unit) as unit:
        many = await unit.streams.get_many(["a", "b", "a"])
        again = await unit.streams.get("b")
        more = await unit.streams.get_many(["b", "c"])
        loads = unit.streams.loads
    assert list(many) == ["a", "b"]
    assert again is many["b"], "the same object: changes made through one get are seen by the next"
    assert list(more) == ["b", "c"]
    assert loads == [["a", "b"], ["c"]], "one load per batch of keys not seen yet"


async def test_a_timer_acting_on_an_earlier_event_keeps_it_as_the_cause(spine) -> None:
    diagnosis, correlation = uuid4(), "emr-batch-3"
    async with uow.begin(spine.sessions, Unit) as unit:
        with unit.caused_by(diagnosis, correlation):
            (await unit.streams.get("a")).ping(spine.Event, 1)
        (await unit.streams.get("a")).ping(spine.Event, 2)
        await unit.commit()

    first, second = (r["headers"] for r in await _outbox(spine))
    assert (first["ce_causationid"], first["ce_correlationid"]) == (str(diagnosis), correlation)
    assert "ce_causationid" not in second, "raised after the block: no cause"
