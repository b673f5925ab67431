"""Charts for the dashboard, drawn here as inline SVG: no JavaScript, no CDN, no vendored library,
so the page works offline and prints as it looks."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

BAR_COLOUR = "#2b6cb0"
LINE_COLOUR = "#c05621"
GRID_COLOUR = "#e2e8f0"
TEXT_COLOUR = "#2d3748"


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def cascade_chart(stages: Sequence[tuple[str, int]], width: int = 1100, height: int = 300) -> Markup:
    """Vertical bars, one per cascade stage, each labelled with its count."""
    top, bottom, side = 24, 56, 12
    plot_h = height - top - bottom
    slot = (width - 2 * side) / max(len(stages), 1)
    biggest = max((v for _, v in stages), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="PMTCT cascade" class="chart" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f'<line x1="{side}" y1="{top + plot_h}" x2="{width - side}" y2="{top + plot_h}" stroke="{GRID_COLOUR}"/>',
    ]
    for index, (label, value) in enumerate(stages):
        bar_h = plot_h * value / biggest
        x = side + index * slot + slot * 0.15
        w = slot * 0.7
        y = top + plot_h - bar_h
        centre = x + w / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" fill="{BAR_COLOUR}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        parts.append(
            f'<text x="{centre:.1f}" y="{y - 6:.1f}" text-anchor="middle" font-size="13" '
            f'fill="{TEXT_COLOUR}" font-weight="bold">{value}</text>'
        )
        parts.append(
            f'<text x="{centre:.1f}" y="{top + plot_h + 18}" text-anchor="middle" font-size="11" '
            f'fill="{TEXT_COLOUR}">{_wrap(label, centre, top + plot_h + 18)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _wrap(label: str, x: float, y: float) -> str:
    """Two lines for a long label: SVG text does not wrap by itself."""
    words = label.split()
    if len(label) <= 12 or len(words) == 1:
        return escape(label)
    half = (len(words) + 1) // 2
    first, second = " ".join(words[:half]), " ".join(words[half:])
    return f'<tspan x="{x:.1f}" y="{y}">{escape(first)}</tspan><tspan x="{x:.1f}" dy="14">{escape(second)}</tspan>'


def trend_chart(points: Sequence[tuple[str, float | None]], title: str, width: int = 370, height: int = 220) -> Markup:
    """A line of percentages by month; a month with no denominator is a gap, not a zero."""
    top, bottom, left, right = 20, 40, 40, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [v for _, v in points if v is not None]
    ceiling = 100.0 if not known or max(known) > 20 else 20.0
    step = plot_w / max(len(points) - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        return left + index * step, top + plot_h - plot_h * min(value, ceiling) / ceiling

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" class="chart" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h - plot_h * fraction
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="{TEXT_COLOUR}">'
            f"{_fmt(ceiling * fraction)}%</text>"
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for index, (label, value) in enumerate(points):
        if index % 2 == len(points) % 2 or len(points) <= 6:
            parts.append(
                f'<text x="{left + index * step:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="10" fill="{TEXT_COLOUR}">{escape(label)}</text>'
            )
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x, y = xy(index, value)
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{LINE_COLOUR}">'
            f"<title>{escape(label)}: {_fmt(value)}%</title></circle>"
        )
    if segment:
        segments.append(segment)
    for line in segments:
        if len(line) > 1:
            parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2"/>')
    if not known:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" font-size="12" '
            f'fill="{TEXT_COLOUR}">no data in these months</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
