"""The referrals service's durable timers, run as one background loop beside the consumers: ART
waits that are over open ART-initiation referrals, referrals past their due-by date expire.

Their state is in the database (ART waits, due-by dates), so a restart loses nothing, and their
rows are claimed with FOR UPDATE SKIP LOCKED, so several replicas can run them side by side. Each
pass is a unit of work (`repository.ReferralsUnit`), committed once; see repository.py for why
the ART timer reads its subjects unlocked and the expiry timer holds only what it expires.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pmtct_events.followup import SubjectType
from pmtct_events.referrals import ReferralService
from servicekit import uow
from servicekit.app import Runtime

from . import repository, stream
from .repository import NeedAlreadyOpen, ReferralsUnit
from .rules import Action
from .settings import Settings

log = logging.getLogger(__name__)


async def run(rt: Runtime[Settings]) -> None:
    settings = rt.settings
    assert isinstance(settings, Settings)
    if settings.timers_paused:
        log.warning("referral timers paused (PMTCT_TIMERS_PAUSED): no ART wait ends, nothing expires until it is off")
        await asyncio.Event().wait()
    while True:
        opened = await open_due_art_referrals(rt.sessions, settings)
        expired = await expire_past_due(rt.sessions, settings, settings.clock.today())
        if opened or expired:
            log.info("timers: %d ART wait(s) ended, %d referral(s) expired", opened, expired)
        await asyncio.sleep(settings.timer_interval_s)


async def open_due_art_referrals(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Open an ART-initiation referral for every wait that is over; returns how many waits ended."""
    done, clashes = 0, 0
    while True:
        try:
            taken = await _open_due_art_referrals(sessions, settings)
        except NeedAlreadyOpen as exc:
            # somebody referred her by hand since we read her: the next pass sees that referral
            clashes += 1
            if clashes > 3:
                raise
            log.info("timers: an ART referral was opened meanwhile for %s; taking the waits again", exc)
            continue
        done += taken
        if taken < settings.timer_batch_size:
            return done


async def _open_due_art_referrals(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    clock = settings.clock
    async with uow.begin(sessions, ReferralsUnit) as unit:
        waits = await repository.lock_due_art_waits(unit.session, clock.now(), settings.timer_batch_size)
        subjects = await unit.subjects.peek_many(w.client_id for w in waits)
        for w in waits:
            # the diagnosis that started the wait is the cause of the referral it ends in
            cause = w.cause_event_id
            with unit.caused_by(cause, w.correlation_id) if cause is not None else nullcontext():
                await stream.open_automatic(
                    unit,
                    subject_type=SubjectType.client,
                    subject_id=w.client_id,
                    client_id=w.client_id,
                    facility_id=w.facility_id,
                    service=ReferralService.art_initiation,
                    reason_code=w.reason_code,
                    due_by=clock.today() + timedelta(days=settings.art_initiation_due_days),
                    clock=clock,
                )
            subjects[w.client_id].wait_over = True
        await unit.commit()
    return len(waits)


async def expire_past_due(sessions: async_sessionmaker[AsyncSession], settings: Settings, today: date) -> int:
    """Expire every open referral whose due-by date is before `today`; each exactly once, even
    with several replicas (see repository.lock_past_due)."""
    expired = 0
    while True:
        async with uow.begin(sessions, ReferralsUnit) as unit:
            batch = await repository.lock_past_due(unit.session, today, settings.timer_batch_size)
            moment = settings.clock.now()
            for subject in unit.subjects.hold(batch):
                for r in subject.open_of():
                    subject.act(r, Action.expire, at=moment, actor=stream.SYSTEM)
            await unit.commit()
        expired += len(batch)
        if len(batch) < settings.timer_batch_size:
            return expired
