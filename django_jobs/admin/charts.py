"""Server-rendered SVG charts for the dashboard: no script, nothing fetched from elsewhere.

Colours come from classes styled in ``django_jobs/admin.css`` (series colours readable on light
and dark themes; axes and labels use the admin's own CSS variables).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Drawn about the size a dashboard panel shows them, so 12px text stays 12px.
WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 26


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at least ``value`` (1 for nothing)."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10 ** exponent
        if candidate >= value:
            return candidate
    return 10 ** (exponent + 1)


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[tuple], unit: str = "",
               counts: bool = True) -> SafeString:
    """Lines over shared x positions, with a y axis from 0, grid lines and a legend.

    ``series`` is ``[(name, values)]`` or ``[(name, values, colour index)]`` with one value
    per x label; the legend gives each series' total. With ``counts`` the axis stays on whole
    numbers.
    """
    series = [(s[0], s[1], s[2] if len(s) > 2 else i) for i, s in enumerate(series)]
    points = max(len(x_labels), 1)
    highest = max((max(values, default=0) for _, values, _ in series), default=0)
    if counts:  # four grid steps of a whole, round number
        peak = 4 * math.ceil(nice_ceiling(highest / 4))
    else:
        peak = nice_ceiling(highest)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (inner_w * i / (points - 1) if points > 1 else inner_w / 2)

    def y(v: float) -> float:
        return TOP + inner_h - inner_h * v / peak

    parts = [f'<svg class="jobs-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for k in range(5):  # grid and y labels at 0, 1/4 … peak
        value = peak * k / 4
        parts.append(f'<line class="jobs-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        parts.append(f'<text class="jobs-axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{_number(value)}{escape(unit)}</text>')
    step = max(1, math.ceil(points / 6))
    for i in range(0, len(x_labels), step):
        parts.append(f'<text class="jobs-axis" x="{x(i):.1f}" y="{HEIGHT - 8}" '
                     f'text-anchor="middle">{escape(x_labels[i])}</text>')
    for name, values, index in series:
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline class="jobs-line jobs-series-{index % 8}" points="{coords}">'
                     f"<title>{escape(name)}: {_number(sum(values))}</title></polyline>")
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="jobs-swatch jobs-series-{i % 8}"></span>{escape(name)} '
        f"<strong>{_number(sum(values))}</strong></li>"
        for name, values, i in series)
    return mark_safe(f'<figure class="jobs-figure">{"".join(parts)}'  # every piece escaped above
                     f'<figcaption><ul class="jobs-legend">{legend}</ul></figcaption></figure>')


def bar_chart(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
              unit: str = "s") -> SafeString:
    """Horizontal grouped bars: ``rows`` is ``[(group, [(bar name, value)])]``."""
    bars = sum(len(values) for _, values in rows) or 1
    bar_h, gap = 14, 10
    height = TOP + bars * bar_h + len(rows) * gap + BOTTOM
    label_w = 110
    inner_w = WIDTH - label_w - RIGHT - 90
    peak = nice_ceiling(max((v for _, values in rows for _, v in values), default=0))
    parts = [f'<svg class="jobs-chart" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    top = TOP
    for group, values in rows:
        parts.append(f'<text class="jobs-axis jobs-group" x="{label_w - 8}" '
                     f'y="{top + bar_h * len(values) / 2 + 4:.1f}" text-anchor="end">'
                     f"{escape(group)}</text>")
        for index, (name, value) in enumerate(values):
            width = inner_w * value / peak
            parts.append(f'<rect class="jobs-bar jobs-series-{index % 8}" x="{label_w}" '
                         f'y="{top}" width="{width:.1f}" height="{bar_h - 2}">'
                         f"<title>{escape(group)} {escape(name)}: {value:.3g}{unit}</title>"
                         f"</rect>")
            parts.append(f'<text class="jobs-axis" x="{label_w + width + 4:.1f}" '
                         f'y="{top + bar_h - 4}">{escape(name)} {value:.3g}{unit}</text>')
            top += bar_h
        top += gap
    parts.append("</svg>")
    return mark_safe(f'<figure class="jobs-figure">{"".join(parts)}</figure>')
