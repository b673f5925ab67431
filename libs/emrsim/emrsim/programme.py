"""A synthetic Mentor Mother programme: many mothers at many facilities over some months.

`generate(params)` is a pure function of its parameters (seed included): the same parameters give
the same events, byte for byte, in the same order. Posting them is `emrsim.posting`'s business.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from .events import EmrEvent, Outcome
from .journeys import Chart, Journey
from .rates import Rates

#: one simulated month, for turning `months` into days
MONTH = timedelta(days=30.44)


@dataclass(frozen=True, slots=True)
class ProgrammeParams:
    #: facility ids of the registry the platform runs with
    facilities: tuple[str, ...]
    #: mothers enrolled over the period (a transfer-in is the same mother, not a new one)
    clients: int
    #: the period ends the day before `anchor`, `months` long; enrolments spread evenly over it
    months: int
    seed: int
    anchor: date
    rates: Rates = field(default_factory=Rates)

    def __post_init__(self) -> None:
        if not self.facilities:
            raise ValueError("at least one facility is needed")
        if self.clients < 0 or self.months < 1:
            raise ValueError("clients must be >= 0 and months >= 1")


def generate(params: ProgrammeParams) -> list[EmrEvent]:
    """Every EMR event of the programme, in the order the clinics post them (by arrival)."""
    rng = random.Random(f"emrsim:{params.seed}")
    end = datetime.combine(params.anchor, time(0), tzinfo=UTC)
    start = end - params.months * MONTH
    facilities = list(params.facilities)
    # facility sizes vary: a referral hospital books many more women than a health post
    weights = [rng.uniform(0.5, 2.0) for _ in facilities]
    spells = {f: offline_spells(rng, params.rates, start, end) for f in facilities}
    period_days = max(1, (end - start).days)

    events: list[EmrEvent] = []
    for index in range(params.clients):
        client_rng = random.Random(f"emrsim:{params.seed}:{index}")
        facility = client_rng.choices(facilities, weights)[0]
        elsewhere = client_rng.choice([f for f in facilities if f != facility] or facilities)
        journey = Journey(client_rng, params.rates, params.anchor, spells)
        enrol_day = (start + timedelta(days=index * period_days / max(1, params.clients))).date()
        chart = Chart(facility, f"S{params.seed}-{index:07d}")
        journey.mother(index, params.seed, chart, elsewhere, enrol_day)
        events.extend(journey.events)
        events.extend(resends(client_rng, params.rates, journey.events, end))
    events.sort(key=lambda e: (e.arrives_at, e.occurred_at))
    return events


def offline_spells(rng: random.Random, rates: Rates, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """A facility's offline spells (1-4 weeks, about one every four months at a facility with a
    poor connection): the EMR keeps working, and posts everything when the connection is back."""
    if not rng.random() < rates.offline_facility:
        return []
    spells = []
    begins = start + timedelta(days=rng.randrange(0, 120))
    while begins < end:
        length = timedelta(days=rng.randrange(7, 29))
        spells.append((begins, min(begins + length, end)))
        begins += length + timedelta(days=rng.randrange(60, 180))
    return spells


def resends(rng: random.Random, rates: Rates, posted: Iterable[EmrEvent], end: datetime) -> list[EmrEvent]:
    """Events the EMR sends again, as after a reply lost to a network drop: same event, later."""
    again = []
    for event in posted:
        if event.expect != "accepted" or not rng.random() < rates.duplicate:
            continue
        arrives = event.arrives_at + timedelta(hours=rng.randrange(1, 72))
        if arrives < end:
            again.append(EmrEvent(event.service, event.body, event.occurred_at, arrives, "duplicate", "resend"))
    return again


def intended(events: Iterable[EmrEvent]) -> Counter[Outcome]:
    """How many events should be accepted, answered as duplicates, or rejected."""
    return Counter(e.expect for e in events)
