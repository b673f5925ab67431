"""A mother's enrolment episodes, derived from her facts: what the mother indicators count.

A woman can enrol more than once with the same platform `client_id`: a new pregnancy after a
delivery opens a new episode (a new ANC1); a transfer to another facility does not (`transfer_in`:
her ANC1 was counted where she first enrolled, and her later tests and ART still belong to that
pregnancy). Each test and ART start belongs to the episode whose enrolment day is the latest on or
before its own day (clinical registers record days; a fact's day is the programme-local day it
happened on, `on`, fixed when the fact was stored).

The episodes are a pure function of the set of facts, recomputed whenever a fact arrives, so the
result never depends on the order the facts arrived in (MER counts each pregnancy at ANC1 once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Enrolled:
    occurred_at: datetime
    #: the programme-local day it happened on (`occurred_on` of its fact)
    on: date
    facility_id: str
    status_at_enrolment: str
    hiv_status: str
    on_art: bool
    transfer_in: bool


@dataclass(frozen=True, slots=True)
class HivTest:
    """A conclusive (positive or negative) HIV test of the mother."""

    occurred_at: datetime
    on: date
    result: str
    setting: str


@dataclass(frozen=True, slots=True)
class ArtStart:
    occurred_at: datetime
    on: date


MotherFact = Enrolled | HivTest | ArtStart


@dataclass(frozen=True, slots=True)
class Episode:
    client_id: UUID
    facility_id: str
    enrolled_on: date
    status_at_enrolment: str
    hiv_status_at_enrolment: str
    on_art_at_enrolment: bool
    #: her earliest conclusive HIV test in the episode
    first_test_result: str | None
    first_test_setting: str | None
    first_positive_on: date | None
    art_started_on: date | None


F = TypeVar("F", HivTest, ArtStart)


def _first(facts: Iterable[F], key: Callable[[F], Any]) -> F | None:
    return min(facts, key=key, default=None)


def episodes(client_id: UUID, facts: Iterable[MotherFact]) -> list[Episode]:
    """One episode per enrolment that is not a transfer in, in date order."""
    facts = list(facts)
    # same-day enrolments: the earliest in the day opens the episode (ties by facility, deterministic)
    starts = sorted(
        (f for f in facts if isinstance(f, Enrolled) and not f.transfer_in),
        key=lambda f: (f.on, f.occurred_at, f.facility_id),
    )
    opened: dict[date, Enrolled] = {}
    for start in starts:
        opened.setdefault(start.on, start)
    days = sorted(opened)
    result: list[Episode] = []
    for index, day in enumerate(days):
        until = days[index + 1] if index + 1 < len(days) else date.max
        inside = [f for f in facts if not isinstance(f, Enrolled) and day <= f.on < until]
        tests = [f for f in inside if isinstance(f, HivTest)]
        first_test = _first(tests, key=lambda t: (t.occurred_at, t.result, t.setting))
        first_positive = _first((t for t in tests if t.result == "positive"), key=lambda t: t.occurred_at)
        first_art = _first((f for f in inside if isinstance(f, ArtStart)), key=lambda a: a.occurred_at)
        start = opened[day]
        result.append(
            Episode(
                client_id=client_id,
                facility_id=start.facility_id,
                enrolled_on=day,
                status_at_enrolment=start.status_at_enrolment,
                hiv_status_at_enrolment=start.hiv_status,
                on_art_at_enrolment=start.on_art,
                first_test_result=first_test.result if first_test else None,
                first_test_setting=first_test.setting if first_test else None,
                first_positive_on=first_positive.on if first_positive else None,
                art_started_on=first_art.on if first_art else None,
            )
        )
    return result
