"""The dashboard's charts are our own inline SVG."""

from reporting.charts import cascade_chart, trend_chart


def test_the_cascade_draws_one_labelled_bar_per_stage() -> None:
    svg = str(cascade_chart([("ANC1", 10), ("Known status", 8), ("HIV-positive", 0)]))
    assert svg.count('class="bar"') == 3
    assert ">10<" in svg and ">8<" in svg and "Known status" in svg


def test_a_month_without_a_denominator_is_a_gap_not_a_zero() -> None:
    svg = str(trend_chart([("Sep", 10.0), ("Oct", 20.0), ("Nov", None), ("Dec", 5.0)], "MTCT"))
    assert svg.count('class="point"') == 3
    assert svg.count("<polyline") == 1  # Sep-Oct; Dec stands alone


def test_chart_text_is_escaped() -> None:
    svg = str(trend_chart([("<b>", 1.0)], "a & b"))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a &amp; b" in svg
