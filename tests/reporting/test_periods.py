"""Reporting periods: month, quarter and year, in our spelling and DHIS2's."""

from datetime import date

import pytest

from reporting.periods import PeriodError, PeriodKind, last_complete, parse_period


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


@pytest.mark.parametrize(
    "text, kind, start, end, ours, dhis2",
    [
        # PEPFAR FY2027 runs from October 2026 to September 2027; DHIS2's FinancialOct period 2026Oct
        ("FY2027", PeriodKind.fiscal_year, date(2026, 10, 1), date(2027, 10, 1), "FY2027", "2026Oct"),
        ("2026Oct", PeriodKind.fiscal_year, date(2026, 10, 1), date(2027, 10, 1), "FY2027", "2026Oct"),
        # its first quarter is October-December 2026, the calendar quarter 2026Q4 in DHIS2
        ("FY2027Q1", PeriodKind.fiscal_quarter, date(2026, 10, 1), date(2027, 1, 1), "FY2027Q1", "2026Q4"),
        ("fy2027q4", PeriodKind.fiscal_quarter, date(2027, 7, 1), date(2027, 10, 1), "FY2027Q4", "2027Q3"),
    ],
)
def test_pepfar_fiscal_years_and_quarters(text, kind, start, end, ours, dhis2) -> None:
    period = parse_period(text)
    assert (period.kind, period.start, period.end, period.id, period.dhis2) == (kind, start, end, ours, dhis2)


@pytest.mark.parametrize(
    "today, kind, expected",
    [
        (date(2026, 12, 2), PeriodKind.month, "2026-11"),
        (date(2027, 1, 1), PeriodKind.month, "2026-12"),
        (date(2026, 12, 2), PeriodKind.quarter, "2026Q3"),
        (date(2026, 12, 2), PeriodKind.fiscal_quarter, "FY2026Q4"),
        (date(2026, 12, 2), PeriodKind.fiscal_year, "FY2026"),
        (date(2026, 10, 1), PeriodKind.fiscal_year, "FY2026"),
        (date(2026, 9, 30), PeriodKind.fiscal_year, "FY2025"),
    ],
)
def test_the_last_complete_period_ended_before_today(today, kind, expected) -> None:
    assert last_complete(today, kind).id == expected
