"""One clock for the platform: what time it is, and what day an instant fell on.

Clinical registers record days, and a programme runs in one time zone: a test sampled at 00:30
local time on 3 March happened on 3 March, whatever offset the EMR stamped it with and whatever UTC
says. Every service therefore turns an instant into a day the same way, `Clock.local_day`, in the
programme's zone (`PMTCT_TIMEZONE`, `ServiceSettings.timezone`), and reads "now" from the same
place, `Clock.now()`.

The real clock reads UTC wall time. A test injects a fixed or shifted one
(`settings.use_clock(Clock.fixed(...))` or `Clock.shifted(...)`), so that no test depends on the
calendar date it runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["Clock", "zone_of"]


def zone_of(name: str) -> tzinfo:
    """The time zone named `name` (IANA, e.g. `Africa/Johannesburg`); `UTC` needs no tz database."""
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The programme's time zone and a source of "now" (UTC, timezone-aware)."""

    __slots__ = ("_now", "zone")

    def __init__(self, zone: str | tzinfo = "UTC", now: Callable[[], datetime] = _wall_clock) -> None:
        self.zone: tzinfo = zone_of(zone) if isinstance(zone, str) else zone
        self._now = now

    @classmethod
    def fixed(cls, at: datetime, zone: str | tzinfo = "UTC") -> Clock:
        """A clock that always reads `at` (timezone-aware)."""
        _require_aware(at)
        instant = at.astimezone(UTC)
        return cls(zone, lambda: instant)

    @classmethod
    def shifted(cls, by: timedelta, zone: str | tzinfo = "UTC") -> Clock:
        """The wall clock moved by `by`: time still passes, on another calendar day."""
        return cls(zone, lambda: _wall_clock() + by)

    def with_zone(self, zone: str | tzinfo) -> Clock:
        return Clock(zone, self._now)

    def now(self) -> datetime:
        """The current instant, in UTC."""
        return self._now()

    def local_day(self, instant: datetime) -> date:
        """The programme-local calendar day `instant` fell on, whatever offset it carries."""
        _require_aware(instant)
        return instant.astimezone(self.zone).date()

    def local_midnight(self, day: date) -> datetime:
        """The first instant of the programme-local `day` (aware, in the programme's zone)."""
        return datetime.combine(day, time.min, tzinfo=self.zone)

    def today(self) -> date:
        """The programme-local day it is now."""
        return self.local_day(self.now())

    def __repr__(self) -> str:
        return f"Clock(zone={self.zone!s})"


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant!r} has no UTC offset: the day it fell on is ambiguous")
