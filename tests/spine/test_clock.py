"""The one clock (servicekit.clock): an instant's day is the programme-local day, whatever offset the
EMR stamped it with; "now" is injectable, so no test depends on the date it runs on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from servicekit.clock import Clock
from servicekit.settings import ServiceSettings

JOHANNESBURG = "Africa/Johannesburg"  # UTC+2, no daylight saving


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        # one moment, 3 March 00:30 in Johannesburg, posted with four different offsets
        (datetime(2026, 3, 3, 0, 30, tzinfo=tz(2)), date(2026, 3, 3)),
        (datetime(2026, 3, 2, 22, 30, tzinfo=UTC), date(2026, 3, 3)),
        (datetime(2026, 3, 2, 17, 30, tzinfo=tz(-5)), date(2026, 3, 3)),
        (datetime(2026, 3, 3, 3, 30, tzinfo=tz(5)), date(2026, 3, 3)),
        # the last minute of 2 March there, whichever way it is written
        (datetime(2026, 3, 2, 23, 59, tzinfo=tz(2)), date(2026, 3, 2)),
        (datetime(2026, 3, 2, 21, 59, tzinfo=UTC), date(2026, 3, 2)),
        (datetime(2026, 3, 3, 1, 59, tzinfo=tz(4)), date(2026, 3, 2)),
        # the first instant of the day, and the new year
        (datetime(2026, 3, 2, 22, 0, tzinfo=UTC), date(2026, 3, 3)),
        (datetime(2025, 12, 31, 22, 0, tzinfo=UTC), date(2026, 1, 1)),
        (datetime(2025, 12, 31, 21, 59, 59, tzinfo=UTC), date(2025, 12, 31)),
    ],
)
def test_an_instant_falls_on_its_programme_local_day(instant: datetime, day: date) -> None:
    assert Clock(JOHANNESBURG).local_day(instant) == day


def test_near_midnight_instants_in_different_offsets_share_one_programme_day() -> None:
    clock = Clock(JOHANNESBURG)
    at = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 00:30 on the 3rd in Johannesburg
    same_moment = [at.astimezone(tz(h)) for h in (-11, -5, 0, 2, 5.5, 14)]
    assert {clock.local_day(m) for m in same_moment} == {date(2026, 3, 3)}
    assert {m.date() for m in same_moment} != {date(2026, 3, 3)}, "the posted offsets alone disagree"


def test_local_midnight_is_the_first_instant_of_the_programme_day() -> None:
    clock = Clock(JOHANNESBURG)
    midnight = clock.local_midnight(date(2026, 3, 3))
    assert midnight.astimezone(UTC) == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    assert clock.local_day(midnight) == date(2026, 3, 3)
    assert clock.local_day(midnight - timedelta(microseconds=1)) == date(2026, 3, 2)


def test_a_day_of_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        Clock().local_day(datetime(2026, 3, 3, 0, 30))


def test_today_and_now_come_from_an_injected_clock() -> None:
    at = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)
    fixed = Clock.fixed(at, JOHANNESBURG)
    assert (fixed.now(), fixed.today()) == (at, date(2026, 3, 3))
    assert Clock.fixed(at).today() == date(2026, 3, 2), "in UTC it is still the 2nd"
    ahead = Clock.shifted(timedelta(days=1)).now() - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < ahead <= timedelta(days=1)


def test_every_service_reads_one_zone_and_can_be_given_a_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMTCT_TIMEZONE", JOHANNESBURG)
    settings = ServiceSettings()
    assert str(settings.clock.zone) == JOHANNESBURG
    assert settings.clock.now().tzinfo is UTC
    at = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)
    settings.use_clock(Clock.fixed(at))  # the injected "now" keeps the programme's zone
    assert (settings.clock.now(), settings.clock.today()) == (at, date(2026, 3, 3))


def test_a_copy_of_the_settings_in_another_zone_reads_its_days_there() -> None:
    """The clock is made once and kept; a copy with another `timezone` (a test, a per-country
    settings object) must not keep the clock made for the original's zone."""
    at = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)
    settings = ServiceSettings().use_clock(Clock.fixed(at))
    assert settings.clock.today() == date(2026, 3, 2), "made (and kept) in UTC"
    local = settings.model_copy(update={"timezone": JOHANNESBURG})
    assert str(local.clock.zone) == JOHANNESBURG
    assert (local.clock.now(), local.clock.today()) == (at, date(2026, 3, 3)), "the injected now, its own zone"
    assert settings.clock.today() == date(2026, 3, 2), "the original keeps its own"


def test_an_unknown_time_zone_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMTCT_TIMEZONE", "Africa/Atlantis")
    with pytest.raises(ValueError, match="unknown time zone"):
        ServiceSettings()
