"""A mother's enrolment episodes: a new pregnancy is a new ANC1, a transfer in is not."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

from pmtct_events import CloudEvent
from pmtct_events.enrolment import ClientEnrolled
from reporting.episodes import ArtStart, Delivered, Enrolled, HivTest, PregnancyEnded, episodes
from reporting.facts import facts_of
from servicekit.clock import Clock

CLIENT = uuid.uuid4()


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def when(day: str, hour: int = 9) -> tuple[datetime, date]:
    """A fact's instant and its programme-local day (UTC here)."""
    return at(day, hour), at(day, hour).date()


def enrolled(day: str, facility: str = "FAC-A", status: str = "pregnant", hiv: str = "unknown", **kw) -> Enrolled:
    return Enrolled(*when(day), facility, status, hiv, kw.get("on_art", False), kw.get("transfer_in", False))


def test_tests_and_art_belong_to_the_pregnancy_they_fall_in() -> None:
    facts = [
        enrolled("2025-01-10"),
        HivTest(*when("2025-01-10", 11), "negative", "anc"),
        Delivered(*when("2025-07-20")),
        enrolled("2026-03-01"),
        HivTest(*when("2026-03-01"), "positive", "anc"),
        ArtStart(*when("2026-03-02")),
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
        HivTest(*when("2026-10-02"), "positive", "anc"),
        ArtStart(*when("2026-10-03")),
    ]
    (only,) = episodes(CLIENT, facts)
    assert (only.facility_id, only.first_test_result, only.art_started_on) == ("FAC-A", "positive", date(2026, 10, 3))


def test_a_transfer_in_posted_before_her_first_enrolment_is_a_transfer_in_by_the_facts() -> None:
    """Posted first, enrolment could not know it was a transfer (transfer_in false): her enrolments,
    deliveries and losses say so (`transfers_in`), so she has one episode, where she first enrolled."""
    for later_status, between, episodes_expected in (
        ("pregnant", [], [("FAC-A", date(2026, 9, 1))]),
        ("postnatal", [Delivered(*when("2026-12-20"))], [("FAC-A", date(2026, 9, 1))]),
        # a loss ended that pregnancy: a pregnant enrolment elsewhere after it is a new pregnancy
        ("pregnant", [PregnancyEnded(*when("2026-09-20"))], [("FAC-A", date(2026, 9, 1)), ("FAC-B", date(2027, 1, 5))]),
    ):
        facts = [enrolled("2026-09-01", "FAC-A"), *between, enrolled("2027-01-05", "FAC-B", later_status)]
        found = [(e.facility_id, e.enrolled_on) for e in episodes(CLIENT, facts)]
        assert found == episodes_expected, (later_status, between)
    # the same facility again in the same pregnancy: enrolment accepts it only as a return after a
    # transfer out (already_enrolled otherwise), a transfer in; after a delivery, a new pregnancy
    assert len(episodes(CLIENT, [enrolled("2026-09-01"), enrolled("2027-01-05")])) == 1
    assert len(episodes(CLIENT, [enrolled("2026-09-01"), Delivered(*when("2026-12-20")), enrolled("2027-06-05")])) == 2


def test_the_first_conclusive_test_decides_whatever_order_the_facts_came_in() -> None:
    facts = [
        enrolled("2026-11-02"),
        HivTest(*when("2026-11-20"), "positive", "labour_delivery"),
        HivTest(*when("2026-11-02", 10), "negative", "anc"),
        ArtStart(*when("2026-11-21")),
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
    assert episodes(CLIENT, [HivTest(*when("2026-11-02"), "positive", "anc")]) == []


def test_a_fact_just_after_local_midnight_counts_on_its_programme_day_and_month() -> None:
    """An enrolment at 00:30 on 1 November in Johannesburg is 22:30 UTC on 31 October: its fact, its
    episode and the month it is an interaction in are November's, whatever offset it was posted with."""
    clock = Clock("Africa/Johannesburg")
    instant = datetime(2026, 10, 31, 22, 30, tzinfo=UTC)
    for posted in (instant, instant.astimezone(timezone(timedelta(hours=-3)))):
        event = ClientEnrolled(
            client_id=CLIENT,
            facility_id="FAC-A",
            occurred_at=posted,
            status_at_enrolment="pregnant",
            age_years=25,
            hiv_status="unknown",
            on_art=False,
        )
        mother, interaction = facts_of(CloudEvent.from_event(event), event, clock)
        assert mother.row["occurred_on"] == date(2026, 11, 1)
        assert interaction.row["month"] == date(2026, 11, 1)
        row = mother.row
        (episode,) = episodes(
            CLIENT, [Enrolled(row["occurred_at"], row["occurred_on"], "FAC-A", "pregnant", "unknown", False, False)]
        )
        assert episode.enrolled_on == date(2026, 11, 1)
