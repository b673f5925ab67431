"""Reporting periods: a month (`2026-11`), a quarter (`2026Q4`), a calendar year (`2026`), a PEPFAR
fiscal year (`FY2027`: October 2026 to September 2027) and a fiscal-year quarter (`FY2027Q1`:
October to December 2026).

The read model counts every fact in one calendar month, so a period is just the list of months it
covers and its value is the sum over them. DHIS2 spells them `202611`, `2026Q4`, `2026` and, for the
fiscal year, its FinancialOct period `2026Oct` (the year starting in October 2026); a fiscal quarter
is sent as the calendar quarter of the same months (`FY2027Q1` = `2026Q4`), DHIS2 having no
fiscal-quarter period type. Either spelling is accepted.
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
    fiscal_year = "fiscal_year"
    fiscal_quarter = "fiscal_quarter"


#: PEPFAR's fiscal year starts in October (FY2027 = October 2026 - September 2027)
FISCAL_START_MONTH = 10


class PeriodError(ValueError):
    """A period that is not `YYYY-MM`, `YYYYMM`, `YYYYQn`, `YYYY`, `FYYYYY`, `YYYYOct` or `FYYYYYQn`."""


_MONTH = re.compile(r"^(\d{4})-?(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_FISCAL_YEAR = re.compile(r"^FY(\d{4})$")
_FINANCIAL_OCT = re.compile(r"^(\d{4})OCT$")
_FISCAL_QUARTER = re.compile(r"^FY(\d{4})Q([1-4])$")


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
        if self.kind is PeriodKind.fiscal_year:
            return f"FY{self.start.year + 1}"
        if self.kind is PeriodKind.fiscal_quarter:
            fiscal_year = self.start.year + (1 if self.start.month >= FISCAL_START_MONTH else 0)
            index = (self.start.month - FISCAL_START_MONTH) % 12 // 3 + 1
            return f"FY{fiscal_year}Q{index}"
        return str(self.start.year)

    @property
    def dhis2(self) -> str:
        """The DHIS2 period id: `202611`, `2026Q4`, `2026`, `2026Oct` (FinancialOct)."""
        if self.kind is PeriodKind.fiscal_year:
            return f"{self.start.year}Oct"
        if self.kind is PeriodKind.fiscal_quarter:
            return f"{self.start.year}Q{(self.start.month - 1) // 3 + 1}"
        return self.id.replace("-", "")

    def shifted(self, months: int) -> Period:
        return Period(self.kind, add_months(self.start, months), self.length)

    def previous_months(self, count: int) -> list[Period]:
        """The `count` calendar months ending with this period's last month (for trends)."""
        last = add_months(self.end, -1)
        return [month_of(add_months(last, -i)) for i in reversed(range(count))]


def month_of(day: date) -> Period:
    return Period(PeriodKind.month, date(day.year, day.month, 1), 1)


#: the years a period may name: the intake's range of dates (servicekit.intake.PostedEvent), so a
#: period's neighbours (the month after it, a trend's months before it) stay real dates
YEARS = range(1900, 3000)


def parse_period(text: str) -> Period:
    """`2026-11` or `202611` (month), `2026Q4` (quarter), `2026` (year)."""
    value = text.strip().upper()
    year_text = value[:4]
    if year_text.isdigit() and int(year_text) not in YEARS:
        raise PeriodError(f"{text!r} is outside the years {YEARS.start}-{YEARS.stop - 1}")
    if m := _MONTH.match(value):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"{text!r} has no month {month}")
        return Period(PeriodKind.month, date(year, month, 1), 1)
    if m := _QUARTER.match(value):
        return Period(PeriodKind.quarter, date(int(m[1]), (int(m[2]) - 1) * 3 + 1, 1), 3)
    if m := _YEAR.match(value):
        return Period(PeriodKind.year, date(int(m[1]), 1, 1), 12)
    if m := _FISCAL_YEAR.match(value):
        return Period(PeriodKind.fiscal_year, date(int(m[1]) - 1, FISCAL_START_MONTH, 1), 12)
    if m := _FINANCIAL_OCT.match(value):
        return Period(PeriodKind.fiscal_year, date(int(m[1]), FISCAL_START_MONTH, 1), 12)
    if m := _FISCAL_QUARTER.match(value):
        start = add_months(date(int(m[1]) - 1, FISCAL_START_MONTH, 1), (int(m[2]) - 1) * 3)
        return Period(PeriodKind.fiscal_quarter, start, 3)
    raise PeriodError(
        f"{text!r} is not a period: use 2026-11 (or 202611), 2026Q4, 2026, FY2027 (or 2026Oct) or FY2027Q1"
    )


def containing(day: date, kind: PeriodKind) -> Period:
    """The period of `kind` that `day` falls in."""
    if kind is PeriodKind.month:
        return month_of(day)
    if kind is PeriodKind.quarter:
        return Period(kind, date(day.year, (day.month - 1) // 3 * 3 + 1, 1), 3)
    if kind is PeriodKind.year:
        return Period(kind, date(day.year, 1, 1), 12)
    fiscal_start = date(day.year if day.month >= FISCAL_START_MONTH else day.year - 1, FISCAL_START_MONTH, 1)
    if kind is PeriodKind.fiscal_year:
        return Period(kind, fiscal_start, 12)
    months = (day.year * 12 + day.month) - (fiscal_start.year * 12 + fiscal_start.month)
    return Period(kind, add_months(fiscal_start, months // 3 * 3), 3)


def last_complete(today: date, kind: PeriodKind = PeriodKind.month) -> Period:
    """The latest period of `kind` that ended before `today` (the dashboard opens on it)."""
    return containing(today, kind).shifted(-containing(today, kind).length)
