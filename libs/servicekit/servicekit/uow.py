"""The unit of work: one transaction, the repositories that work in it, and the events it raises.

Every write of a service goes through one: an HTTP request, a consumer's batch of messages, a
timer pass. Its shape, in the order things happen:

1. `async with uow.begin(sessions, ServiceUnit) as uow:` opens a session and a transaction.
2. Code loads aggregates through the unit's repositories. A repository remembers what it loaded
   (an identity map: `seen`); `get_many` loads several in one statement and later gets are
   answered from memory, so a consumer batch can load its subjects up front (`ConsumerSpec.preload`)
   and its handlers still just ask the repository.
3. Aggregates change themselves and record the events they raise (`Aggregate.raise_event`).
   While a consumed message is handled (`uow.handling(ce)`), the events raised are tagged with it
   as their cause.
4. `await uow.commit()`, explicitly, at the request or message boundary, and nowhere else:
   a. each repository writes its changed aggregates, in bulk (`Repository.flush`), in the order the
      repositories were registered;
   b. the collected events go to the outbox, each with the correlation and causation of the message
      that caused it;
   c. the `on_finish` hooks, then `finish(envelopes)`, run last, for writes that must follow every
      other one (the referral feed takes its positions here, so its counter lock is held only until
      COMMIT);
   d. the transaction commits.
   Leaving the block without `commit()` (an exception, or a read-only use) rolls back;
   `await uow.rehearse()` does every step of `commit` but ends in ROLLBACK (a dry run).

No SQLAlchemy session hooks and no state stashed on the session: what is written, and when, is
this module and the repositories' `flush`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pmtct_events import CloudEvent, Event

from . import outbox
from .telemetry import current_traceparent


@dataclass(slots=True)
class Aggregate:
    """A consistency boundary that records the events its changes raise until its unit of work
    collects them. Subclasses are (slotted) dataclasses; the field is keyword-only, so it goes
    after theirs."""

    new_events: list[Event] = field(default_factory=list, kw_only=True, repr=False, compare=False)
    #: where the aggregate announces that it has new events: its repository's `raised` list, so a
    #: unit collects from the aggregates that raised something, not from every one it holds
    raised_into: list[Aggregate] | None = field(default=None, kw_only=True, repr=False, compare=False)

    def raise_event(self, *events: Event) -> None:
        if not events:
            return
        if not self.new_events and self.raised_into is not None:
            self.raised_into.append(self)
        self.new_events.extend(events)

    def pull_events(self) -> list[Event]:
        events, self.new_events = self.new_events, []
        return events


K = TypeVar("K")
A = TypeVar("A")


class Repository(Generic[K, A]):
    """Loads and stores one kind of aggregate in one unit of work. A subclass implements `_load`
    (the aggregates of some keys, in one statement or a few; missing keys are left out) and `flush`
    (write what changed, in bulk); `add` makes a new aggregate known."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        #: every aggregate this unit of work loaded or added, by key (`remember` puts them there)
        self.seen: dict[K, A] = {}
        #: the seen aggregates with events not collected yet, in the order they first raised one
        self.raised: list[Aggregate] = []

    async def _load(self, keys: list[K]) -> dict[K, A]:
        raise NotImplementedError

    async def flush(self) -> None:
        """Write the changed aggregates (called once, by `UnitOfWork.commit`)."""

    async def get_many(self, keys: Iterable[K]) -> dict[K, A]:
        """The aggregates of `keys` that exist; those not seen yet are loaded together."""
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in self.seen]
        if missing:
            for key, aggregate in (await self._load(missing)).items():
                self.remember(key, aggregate)
        return {k: self.seen[k] for k in wanted if k in self.seen}

    async def get(self, key: K) -> A | None:
        return (await self.get_many([key])).get(key)

    def add(self, key: K, aggregate: A) -> A:
        """A new aggregate, or one the repository loaded itself, known from now on."""
        return self.remember(key, aggregate)

    def remember(self, key: K, aggregate: A) -> A:
        self.seen[key] = aggregate
        if isinstance(aggregate, Aggregate):
            aggregate.raised_into = self.raised
            if aggregate.new_events:
                self.raised.append(aggregate)
        return aggregate

    def take_raised(self) -> list[Aggregate]:
        raised, self.raised[:] = list(self.raised), []
        return raised


R = TypeVar("R", bound=Repository[Any, Any])
U = TypeVar("U", bound="UnitOfWork")


class UnitOfWork:
    """One transaction and what works in it. A service subclasses it to register its repositories
    (`self.things = self.track(ThingRepository(session))`) and, if it must, `finish`."""

    #: the correlation id of events raised outside any consumed message (an HTTP batch sets its own)
    correlation_id: str | UUID | None

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repositories: list[Repository[Any, Any]] = []
        self.correlation_id = None
        #: the consumed message being applied (`handling`), if any
        self.cause: CloudEvent | None = None
        #: (causation id, correlation id) of what is raised now (`handling`, `caused_by`)
        self._because: tuple[UUID, str | UUID] | None = None
        #: what was raised, as the outbox writes it: (event, correlation, causation, the span it was
        #: raised in, which its envelope continues)
        self._raised: list[outbox.Raised] = []
        #: CloudEvent ids drawn before the outbox is written, by `id()` of the event (`envelope_id`)
        self._envelope_ids: dict[int, UUID] = {}
        #: the events of `_envelope_ids`, kept alive so that their `id()` stays theirs
        self._drawn_for: list[Event] = []
        #: writes that need the envelopes, run just before `finish` (`on_finish`)
        self._finishing: list[Callable[[list[tuple[CloudEvent, Event]]], Awaitable[None]]] = []
        self.committed = False

    def track(self, repository: R) -> R:
        self.repositories.append(repository)
        return repository

    @contextmanager
    def handling(self, ce: CloudEvent) -> Iterator[None]:
        """Apply a consumed message: what is raised meanwhile is caused by it."""
        self.cause = ce
        try:
            with self.caused_by(ce.id, ce.correlation_id or ce.id):
                yield
        finally:
            self.cause = None

    @contextmanager
    def caused_by(self, causation_id: UUID, correlation_id: str | UUID | None) -> Iterator[None]:
        """What is raised meanwhile is caused by the event `causation_id`, in its correlation (a
        timer acting on what an earlier event started keeps that event as the cause)."""
        self.collect_new_events()
        self._because = (causation_id, correlation_id or causation_id)
        try:
            yield
            self.collect_new_events()
        finally:
            self._because = None

    @property
    def causation(self) -> tuple[UUID, str | UUID] | None:
        """(causation id, correlation id) of what is raised now, inside `handling` / `caused_by`."""
        return self._because

    def envelope_id(self, event: Event) -> UUID:
        """The CloudEvent id `event` will be published with, drawn now (the same on every call): a
        row written before the outbox can name it (enrolment keeps it as the event's `published_ids`
        in the row it inserts, not in a second write of that row once the outbox is written)."""
        if id(event) not in self._envelope_ids:
            self._drawn_for.append(event)
            self._envelope_ids[id(event)] = uuid4()
        return self._envelope_ids[id(event)]

    def publish(self, *events: Event) -> None:
        """Events that belong to no aggregate of this service (announcements of a pass, tests)."""
        self._raised.extend(self._tagged(events))

    def _tagged(self, events: Iterable[Event]) -> Iterator[outbox.Raised]:
        because, tp = self._because, current_traceparent()
        if because is None:
            return ((e, self.correlation_id, None, tp) for e in events)
        return ((e, because[1], because[0], tp) for e in events)

    def collect_new_events(self) -> None:
        """Take the events the seen aggregates raised since the last call, in the order of the
        repositories and of their aggregates."""
        for repository in self.repositories:
            if repository.raised:
                for aggregate in repository.take_raised():
                    self._raised.extend(self._tagged(aggregate.pull_events()))

    def on_finish(self, hook: Callable[[list[tuple[CloudEvent, Event]]], Awaitable[None]]) -> None:
        """Run `hook(envelopes)` before COMMIT, once the outbox is written, before `finish` (the
        intake remembers there which CloudEvent ids each accepted EMR event published)."""
        self._finishing.append(hook)

    async def finish(self, envelopes: list[tuple[CloudEvent, Event]]) -> None:
        """The last writes before COMMIT, with the envelopes the outbox holds (override)."""

    async def commit(self) -> list[CloudEvent]:
        """Flush the repositories, write the events to the outbox, `finish`, COMMIT; in that order."""
        written = await self._write()
        await self.session.commit()
        self.committed = True
        self._raised, self._envelope_ids, self._drawn_for = [], {}, []
        return written

    async def rehearse(self) -> list[CloudEvent]:
        """Everything `commit` does, then ROLLBACK instead of COMMIT: a dry run. The repositories
        flush and the outbox is written, so every constraint the real commit meets is checked (none
        is deferred), and the rollback discards all of it: the rows, the outbox rows and their
        NOTIFY (PostgreSQL sends a notification only on COMMIT, so no relay hears of it). Only
        sequences keep the values it drew. Returns the envelopes that would have been published."""
        written = await self._write()
        await self.session.rollback()
        self._raised, self._envelope_ids, self._drawn_for = [], {}, []
        return written

    async def _write(self) -> list[CloudEvent]:
        self.collect_new_events()
        for repository in self.repositories:
            await repository.flush()
        self.collect_new_events()  # a flush may raise (an aggregate created as it is written)
        written = await outbox.add_each(self.session, self._raised, self._envelope_ids)
        envelopes = [(ce, r[0]) for ce, r in zip(written, self._raised, strict=True)]
        for hook in self._finishing:
            await hook(envelopes)
        self._finishing = []
        await self.finish(envelopes)
        return written


@asynccontextmanager
async def begin(
    sessions: async_sessionmaker[AsyncSession],
    unit: Callable[[AsyncSession], U] = UnitOfWork,  # type: ignore[assignment]
) -> AsyncIterator[U]:
    """A new unit of work (`unit(session)`) in a new transaction; rolled back unless committed."""
    async with sessions() as session:
        await session.begin()
        uow = unit(session)
        try:
            yield uow
        finally:
            if not uow.committed:
                await session.rollback()
