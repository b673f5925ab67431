"""The referrals service's durable timers, run as one background loop beside the consumers.

Their state is in the database (ART waits, due-by dates), so a restart loses nothing, and their
rows are claimed with FOR UPDATE SKIP LOCKED, so several replicas can run them side by side.
"""

from __future__ import annotations

import asyncio
import logging

from servicekit.app import Runtime

from . import service
from .settings import Settings

log = logging.getLogger(__name__)


async def run(rt: Runtime) -> None:
    settings = rt.settings
    assert isinstance(settings, Settings)
    while True:
        opened = await service.open_due_art_referrals(rt.sessions, settings)
        expired = await service.expire_past_due(rt.sessions, settings, settings.clock.today())
        if opened or expired:
            log.info("timers: %d ART wait(s) ended, %d referral(s) expired", opened, expired)
        await asyncio.sleep(settings.timer_interval_s)
