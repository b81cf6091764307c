"""Monitoring plots drawn on the server as SVG (like screening.svg_plots): lines over time.

The page embeds them; the API returns the same SVG text beside the numbers it is drawn from.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

from screening.svg_plots import AXIS, MUTED, TEXT

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 130, 22, 28
# Readable on the dark theme (portal.css), like screening.svg_plots.
COLOURS = ("#ff7a59", "#5fa8ff", "#5ccf8a", "#f2c14e", "#c792ea", "#4dd0e1", "#e3e6ea", "#ff9e80")
THRESHOLD = "#ff6b6b"  # --error
REFERENCE = "#9aa3ad"  # --muted
WINDOW = "#ff7a59"  # --flag


def line_plot(
    title: str,
    series: dict[str, list[tuple[datetime, float | None]]],
    *,
    threshold: float | None = None,
    upper: float | None = None,
) -> SafeString:
    """One line per series over time (None values are gaps); an optional dashed threshold line."""
    points = [(t, v) for values in series.values() for t, v in values if v is not None]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{escape(title)}</title>',
        f'<text x="{LEFT}" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{LEFT + 8}" y="{HEIGHT / 2}" font-size="12" fill="{TEXT}">no runs yet</text></svg>')
        return mark_safe("".join(parts))
    times = sorted({t for t, _ in points})
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    top = upper or max([v for _, v in points] + [threshold or 0.0]) * 1.15 or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: datetime) -> float:
        return LEFT + (plot_w * (t.timestamp() - t0) / (t1 - t0) if t1 > t0 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(max(v, 0.0), top) / top)

    parts += [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="{AXIS}"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="{AXIS}"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" font-size="10" fill="{MUTED}" text-anchor="end">{top:.3g}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" font-size="10" fill="{MUTED}" text-anchor="end">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10" fill="{MUTED}">{times[0]:%Y-%m-%d}</text>',
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" font-size="10" fill="{MUTED}" text-anchor="end">'
        f"{times[-1]:%Y-%m-%d}</text>",
    ]
    if threshold is not None and threshold <= top:
        parts.append(
            f'<line x1="{LEFT}" y1="{y(threshold):.1f}" x2="{LEFT + plot_w}" y2="{y(threshold):.1f}" '
            f'stroke="{THRESHOLD}" stroke-dasharray="4 3"/><text x="{LEFT + plot_w + 4}" y="{y(threshold) + 4:.1f}" '
            f'font-size="10" fill="{THRESHOLD}">threshold {threshold:.3g}</text>'
        )
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        segment: list[str] = []
        segments = []
        for t, v in values:
            if v is None:
                segments.append(segment)
                segment = []
            else:
                segment.append(f"{x(t):.1f},{y(v):.1f}")
        segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(seg)}"/>')
            for p in seg:
                cx, cy = p.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
        label_y = TOP + 10 + 13 * i
        if label_y < HEIGHT - BOTTOM + 10:
            parts.append(
                f'<text x="{LEFT + plot_w + 8}" y="{label_y}" font-size="10" fill="{colour}">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label is escaped above


def shares_plot(title: str, bins: list[list]) -> SafeString:
    """Reference (grey) and window (red) share per bin, side by side: [label, reference, window] per bin."""
    row = 18
    label_w, bar_w = 170, 300
    height = TOP + row * max(len(bins), 1) + 10
    width = label_w + bar_w + 120
    top = max([max(r, w) for _, r, w in bins] + [1e-9])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="6" y="14" font-size="12" fill="{TEXT}">{escape(title)} '
        f'<tspan fill="{REFERENCE}">reference</tspan> / <tspan fill="{WINDOW}">window</tspan></text>',
    ]
    for i, (label, ref, win) in enumerate(bins):
        y0 = TOP + row * i
        parts += [
            f'<text x="{label_w - 6}" y="{y0 + 12}" font-size="10" fill="{TEXT}" text-anchor="end">'
            f"{escape(str(label))[:32]}</text>",
            f'<rect x="{label_w}" y="{y0 + 2}" width="{bar_w * ref / top:.1f}" height="6" fill="{REFERENCE}"/>',
            f'<rect x="{label_w}" y="{y0 + 9}" width="{bar_w * win / top:.1f}" height="6" fill="{WINDOW}"/>',
            f'<text x="{label_w + bar_w + 6}" y="{y0 + 12}" font-size="10" fill="{TEXT}">{ref:.0%} / {win:.0%}</text>',
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label is escaped above
