"""Durable timers: InfantTestDue, InfantTestOverdue, ClientViralLoadDue/Overdue, ClientLostToFollowUp
and the deadline final outcome, each announced exactly once.

There is no in-memory timer to lose. Every subject row carries `next_timer_on`, the earliest day it
has timer work (indexed). A pass claims the rows whose day has come with `FOR UPDATE SKIP LOCKED`,
ticks their cases, and commits the new item statuses together with the events in the outbox, in
one transaction. Hence:

- exactly once: a transition is a change of the stored status; a pass that dies before its commit
  leaves nothing behind, and the next pass (this process after a restart, or another replica)
  redoes it; a committed pass is never redone, because the status has moved on;
- several replicas: `SKIP LOCKED` hands each row to one of them; the others skip it, never wait;
- nothing for a satisfied item: the pass reads the item under the same row lock that the POST
  and the consumer take to apply a result, so it sees the result or runs before it;
- the same lock order as the use cases (the subject row, then its items): no deadlocks.

Backfill ordering: a delivery dated ten weeks ago has a six-week window that is already past.
Its infant's timers wait `timer_settle_s` after the infant's last input (`settle_until`), so the
results an EMR posts in the same burst (right after the delivery's infant ids come back) are
applied first and the overdue is never raised; with no result it is raised as soon as the burst has
settled. A result that arrives later still is applied normally and corrects the record (the
tracing referral the overdue opened is closed by the result).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from datetime import date
from uuid import UUID

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pmtct_events import CloudEvent
from servicekit import uow
from servicekit.app import Runtime

from . import repository as repo
from .settings import Settings

log = logging.getLogger(__name__)

ANNOUNCED = Counter("pmtct_followup_announcements_total", "Timer announcements committed", ["event_type"])
PASS_SECONDS = Histogram(
    "pmtct_followup_timer_pass_seconds", "Duration of one durable-timer pass", buckets=(0.01, 0.05, 0.1, 0.5, 1, 5)
)


async def run(rt: Runtime[Settings]) -> None:
    """The background loop (`create_app(background=...)`): a pass, then a pause unless work remains."""
    settings = rt.settings
    if settings.timers_paused:
        log.warning("durable timers paused (PMTCT_TIMERS_PAUSED): nothing is announced until it is off")
        await asyncio.Event().wait()
    while True:
        handled = await fire(rt.sessions, settings)
        if handled < settings.timer_batch_size:
            await asyncio.sleep(settings.timer_interval_s)


async def fire(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    today: date | None = None,
    only: Sequence[UUID] | None = None,
) -> int:
    """One pass over infants, then mothers, as of `today` (the local date by default); `only`
    restricts it to some subjects (tests). Returns the largest number of subjects one batch handled."""
    today = today or settings.clock.today()
    silence = settings.lost_to_follow_up_days
    started = time.perf_counter()
    async with uow.begin(sessions, repo.FollowupUnit) as unit:
        ids = await repo.claim_due_infants(unit.session, today, settings.timer_batch_size, only)
        cases = await unit.infants.lock(ids, settings.timezone)
        for case in cases.values():
            case.announce(case.tick(today, settings.eid, silence), settings.clock)
            unit.infants.save(case, case.next_wakeup(settings.eid, silence), None)
        out = await unit.commit()
    _count(out)
    infants_handled = len(ids)
    async with uow.begin(sessions, repo.FollowupUnit) as unit:
        ids = await repo.claim_due_mothers(unit.session, today, settings.timer_batch_size, only)
        mothers = await unit.mothers.get_many(sorted(ids))
        for mother in mothers.values():
            mother.announce(mother.tick(today, silence), settings.clock)
            unit.mothers.touch(mother, mother.next_wakeup(silence), None)
        out = await unit.commit()
    _count(out)
    PASS_SECONDS.observe(time.perf_counter() - started)
    if infants_handled or ids:
        log.info("timers: %d infants, %d mothers handled as of %s", infants_handled, len(ids), today)
    return max(infants_handled, len(ids))


def _count(envelopes: list[CloudEvent]) -> None:
    """Counted after the commit: what the metric shows was announced."""
    for event_name, n in collections.Counter(ce.event_name for ce in envelopes).items():
        ANNOUNCED.labels(event_name).inc(n)  # a label lookup per type, not per event: a pass may announce thousands
