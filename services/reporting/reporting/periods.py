"""Reporting periods: a month (`2026-11`), a quarter (`2026Q4`) or a year (`2026`).

The read model counts every fact in one calendar month, so a period is just the list of months it
covers and its value is the sum over them. DHIS2 spells the same periods `202611`, `2026Q4`, `2026`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class PeriodKind(StrEnum):
    month = "month"
    quarter = "quarter"
    year = "year"


class PeriodError(ValueError):
    """A period that is not `YYYY-MM`, `YYYYMM`, `YYYYQn` or `YYYY`."""


_MONTH = re.compile(r"^(\d{4})-?(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


def add_months(day: date, months: int) -> date:
    """The first of the month `months` after (or before, if negative) `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    #: first day of the first month
    start: date
    #: number of months covered
    length: int

    @property
    def end(self) -> date:
        """First day after the period (exclusive bound)."""
        return add_months(self.start, self.length)

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.end.toordinal() - 1)

    @property
    def months(self) -> list[date]:
        return [add_months(self.start, i) for i in range(self.length)]

    @property
    def id(self) -> str:
        if self.kind is PeriodKind.month:
            return f"{self.start.year}-{self.start.month:02d}"
        if self.kind is PeriodKind.quarter:
            return f"{self.start.year}Q{(self.start.month - 1) // 3 + 1}"
        return str(self.start.year)

    @property
    def dhis2(self) -> str:
        return self.id.replace("-", "")

    def shifted(self, months: int) -> Period:
        return Period(self.kind, add_months(self.start, months), self.length)

    def previous_months(self, count: int) -> list[Period]:
        """The `count` calendar months ending with this period's last month (for trends)."""
        last = add_months(self.end, -1)
        return [month_of(add_months(last, -i)) for i in reversed(range(count))]


def month_of(day: date) -> Period:
    return Period(PeriodKind.month, date(day.year, day.month, 1), 1)


def parse_period(text: str) -> Period:
    """`2026-11` or `202611` (month), `2026Q4` (quarter), `2026` (year)."""
    value = text.strip().upper()
    if m := _MONTH.match(value):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"{text!r} has no month {month}")
        return Period(PeriodKind.month, date(year, month, 1), 1)
    if m := _QUARTER.match(value):
        return Period(PeriodKind.quarter, date(int(m[1]), (int(m[2]) - 1) * 3 + 1, 1), 3)
    if m := _YEAR.match(value):
        return Period(PeriodKind.year, date(int(m[1]), 1, 1), 12)
    raise PeriodError(f"{text!r} is not a period: use 2026-11 (or 202611), 2026Q4 or 2026")
