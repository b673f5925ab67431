"""Event handlers of the reporting service: every applied event stores its facts (reporting.facts)
and moves the counts of the subjects they touch.

Every topic feeds it. The read model keeps only platform ids, facility ids, dates and coded facts:
no personal data. The consumer's inbox makes each event count once; the derivations in the
repository make the result independent of arrival order.
"""

from __future__ import annotations

from pmtct_events import Event
from servicekit.consumer import Handler

from .facts import APPLIED, facts_of
from .repository import ReportingUnit
from .settings import Settings


def build(settings: Settings) -> dict[type[Event], Handler]:
    """The handler of every applied event, dating facts on the programme's clock."""
    clock = settings.clock

    async def apply_event(event: Event, uow: ReportingUnit) -> None:
        assert uow.cause is not None
        uow.read_model.add_facts(facts_of(uow.cause, event, clock))

    return dict.fromkeys(APPLIED, apply_event)
