"""Reporting periods: month, quarter and year, in our spelling and DHIS2's."""

from datetime import date

import pytest

from reporting.periods import PeriodError, PeriodKind, parse_period


@pytest.mark.parametrize(
    "text, kind, start, end, dhis2",
    [
        ("2026-11", PeriodKind.month, date(2026, 11, 1), date(2026, 12, 1), "202611"),
        ("202611", PeriodKind.month, date(2026, 11, 1), date(2026, 12, 1), "202611"),
        ("2026-12", PeriodKind.month, date(2026, 12, 1), date(2027, 1, 1), "202612"),
        ("2026Q4", PeriodKind.quarter, date(2026, 10, 1), date(2027, 1, 1), "2026Q4"),
        ("2026q1", PeriodKind.quarter, date(2026, 1, 1), date(2026, 4, 1), "2026Q1"),
        ("2026", PeriodKind.year, date(2026, 1, 1), date(2027, 1, 1), "2026"),
    ],
)
def test_a_period_covers_whole_calendar_months(text, kind, start, end, dhis2) -> None:
    period = parse_period(text)
    assert (period.kind, period.start, period.end, period.dhis2) == (kind, start, end, dhis2)
    assert period.months[0] == start and len(period.months) == period.length


@pytest.mark.parametrize("text", ["2026-13", "26Q4", "2026Q5", "Nov 2026", ""])
def test_a_malformed_period_is_refused(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_period(text)


def test_the_final_outcome_cohort_period_is_24_months_earlier() -> None:
    assert parse_period("2026Q4").shifted(-24) == parse_period("2024Q4")
    assert parse_period("2026").shifted(-24).id == "2024"


def test_trend_months_end_with_the_periods_last_month() -> None:
    months = parse_period("2026Q4").previous_months(4)
    assert [m.id for m in months] == ["2026-09", "2026-10", "2026-11", "2026-12"]
