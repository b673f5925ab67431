"""A mother's enrolment episodes: a new pregnancy is a new ANC1, a transfer in is not."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime

from reporting.episodes import ArtStart, Enrolled, HivTest, episodes

CLIENT = uuid.uuid4()


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def enrolled(day: str, facility: str = "FAC-A", status: str = "pregnant", hiv: str = "unknown", **kw) -> Enrolled:
    return Enrolled(at(day), facility, status, hiv, kw.get("on_art", False), kw.get("transfer_in", False))


def test_tests_and_art_belong_to_the_pregnancy_they_fall_in() -> None:
    facts = [
        enrolled("2025-01-10"),
        HivTest(at("2025-01-10", 11), "negative", "anc"),
        enrolled("2026-03-01"),
        HivTest(at("2026-03-01"), "positive", "anc"),
        ArtStart(at("2026-03-02")),
    ]
    first, second = episodes(CLIENT, facts)
    assert (first.enrolled_on, first.first_test_result, first.first_positive_on, first.art_started_on) == (
        date(2025, 1, 10),
        "negative",
        None,
        None,
    )
    assert (second.enrolled_on, second.first_test_result, second.first_positive_on, second.art_started_on) == (
        date(2026, 3, 1),
        "positive",
        date(2026, 3, 1),
        date(2026, 3, 2),
    )


def test_a_transfer_in_opens_no_episode_and_her_later_facts_stay_with_her_pregnancy() -> None:
    facts = [
        enrolled("2026-09-01", "FAC-A"),
        enrolled("2026-10-01", "FAC-B", transfer_in=True),
        HivTest(at("2026-10-02"), "positive", "anc"),
        ArtStart(at("2026-10-03")),
    ]
    (only,) = episodes(CLIENT, facts)
    assert (only.facility_id, only.first_test_result, only.art_started_on) == ("FAC-A", "positive", date(2026, 10, 3))


def test_the_first_conclusive_test_decides_whatever_order_the_facts_came_in() -> None:
    facts = [
        enrolled("2026-11-02"),
        HivTest(at("2026-11-20"), "positive", "labour_delivery"),
        HivTest(at("2026-11-02", 10), "negative", "anc"),
        ArtStart(at("2026-11-21")),
    ]
    results = {tuple(episodes(CLIENT, order)) for order in itertools.permutations(facts)}
    assert len(results) == 1
    (episode,) = results.pop()
    assert (episode.first_test_result, episode.first_test_setting, episode.first_positive_on) == (
        "negative",
        "anc",
        date(2026, 11, 20),
    )


def test_without_an_enrolment_there_is_no_episode() -> None:
    assert episodes(CLIENT, [HivTest(at("2026-11-02"), "positive", "anc")]) == []
