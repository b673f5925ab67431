"""Event handlers of the reporting service: every applied event stores its facts (reporting.facts)
and moves the counts of the subjects they touch.

Every topic feeds it. The read model keeps only platform ids, facility ids, dates and coded facts:
no personal data. The consumer's inbox makes each event count once; the derivations in the
repository make the result independent of arrival order.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from servicekit.consumer import Handler

from . import repository
from .facts import APPLIED, facts_of


async def apply_event(session: AsyncSession, ce: CloudEvent, event: Event) -> None:
    repository.apply(session, facts_of(ce, event))


HANDLERS: dict[type[Event], Handler] = dict.fromkeys(APPLIED, apply_event)
