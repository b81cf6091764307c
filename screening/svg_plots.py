"""Small plots drawn on the server as SVG: no JavaScript and nothing from a CDN.

One kind is enough for the performance page: a rate per row (reader, model version,
programme) as a dot with its confidence interval as a whisker, so small numbers are seen
with their uncertainty. Each plot carries its title, a value axis with ticks, and the axis
name with its unit, drawn in the portal's dark-theme colours (static/screening/portal.css):
light text on the dark page, never the SVG default black.
"""

from __future__ import annotations

import math
from html import escape

from django.utils.safestring import SafeString, mark_safe

# The dark theme's colours (portal.css :root), each readable on --bg and --panel (contrast >= 4.5:1).
TEXT = "#e3e6ea"  # --text
MUTED = "#9aa3ad"  # --muted
GRID = "#2c3138"  # --line
AXIS = "#9aa3ad"
WHISKER = "#5fa8ff"  # --accent
DOT = "#ff7a59"  # --flag

ROW = 26
LABEL_WIDTH = 160
PLOT_WIDTH = 360
VALUE_WIDTH = 130
TOP = 30  # the title's band
BOTTOM = 44  # tick labels and the axis name
FONT = 'font-family="system-ui, sans-serif"'


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top` (steps of 1, 2 or 5 times a power of ten)."""
    raw = top / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, *, width: int = 1, cls: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return (
        f'<line{css} x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"/>'
    )


def _number(value: float, scale: float, unit: str) -> str:
    return f"{value * scale:.3g}{unit}"


def interval_plot(
    title: str,
    rows: list[tuple[str, dict]],
    *,
    axis: str,
    upper: float | None = None,
    unit: str = "",
    scale: float = 1.0,
) -> SafeString:
    """rows: (label, proportion dict with value/low/high/k/n); axis: what the value axis measures (its name, shown
    under it with the unit); upper: the axis end in the values' own units (default: a round number above the
    largest bound); scale and unit: how values are written (scale=100, unit="%" for a proportion)."""
    shown = [(label, p) for label, p in rows if p.get("value") is not None]
    largest = max([p["high"] if p.get("high") is not None else p["value"] for _, p in shown] + [1e-9])
    ticks = nice_ticks(upper if upper else largest * 1.05)
    top = ticks[-1]
    body = ROW * max(len(shown), 1)
    height = TOP + body + BOTTOM
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    base = TOP + body  # the value axis

    def x(value: float) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * min(max(value, 0.0), top) / top

    axis_name = f"{axis} ({unit.strip()})" if unit.strip() else axis
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}: {escape(axis_name)}, 95% intervals">'
        f"<title>{escape(title)}</title>",
        f'<text class="plot-title" x="0" y="18" font-size="14" font-weight="600" fill="{TEXT}" {FONT}>'
        f"{escape(title)}</text>",
        f'<text x="{width}" y="18" font-size="11" fill="{MUTED}" text-anchor="end" {FONT}>'
        "dot: value · bar: 95% interval · (k/n)</text>",
    ]
    for tick in ticks:
        tx = x(tick)
        parts += [
            _line(tx, TOP, tx, base, GRID),
            _line(tx, base, tx, base + 4, AXIS),
            f'<text class="tick" x="{tx:.1f}" y="{base + 16}" font-size="11" fill="{MUTED}" text-anchor="middle" '
            f"{FONT}>{escape(_number(tick, scale, unit))}</text>",
        ]
    parts += [
        _line(LABEL_WIDTH, base, LABEL_WIDTH + PLOT_WIDTH, base, AXIS, cls="axis"),
        _line(LABEL_WIDTH, TOP, LABEL_WIDTH, base, AXIS, cls="axis"),
        f'<text class="axis-name" x="{LABEL_WIDTH + PLOT_WIDTH / 2}" y="{base + 36}" font-size="12" fill="{TEXT}" '
        f'text-anchor="middle" {FONT}>{escape(axis_name)}</text>',
    ]
    if not shown:
        parts.append(
            f'<text x="{LABEL_WIDTH + 8}" y="{TOP + ROW / 2 + 4}" font-size="12" fill="{MUTED}" {FONT}>'
            "no data yet</text>"
        )
    for i, (label, p) in enumerate(shown):
        y = TOP + ROW * i + ROW / 2
        low = p["low"] if p.get("low") is not None else p["value"]
        high = p["high"] if p.get("high") is not None else p["value"]
        parts += [
            f'<text class="row" x="{LABEL_WIDTH - 8}" y="{y + 4}" font-size="12" fill="{TEXT}" text-anchor="end" '
            f"{FONT}>{escape(label)}</text>",
            _line(x(low), y, x(high), y, WHISKER, width=2),
            _line(x(low), y - 4, x(low), y + 4, WHISKER, width=2),
            _line(x(high), y - 4, x(high), y + 4, WHISKER, width=2),
            f'<circle cx="{x(p["value"]):.1f}" cy="{y}" r="4" fill="{DOT}"/>',
            f'<text class="value" x="{LABEL_WIDTH + PLOT_WIDTH + 8}" y="{y + 4}" font-size="11" fill="{TEXT}" '
            f"{FONT}>{escape(_number(p['value'], scale, unit))} ({p.get('k', '?')}/{p.get('n', '?')})</text>",
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label is escaped above


def curve_plot(title: str, series: list[tuple[str, list]], *, x_axis: str, y_axis: str, size: int = 300) -> SafeString:
    """Curves in the unit square (ROC, reliability): series of (label, [[x, y], ...]); the diagonal dashed."""
    margin, top = 48, 28
    side = size - margin - 12

    def xy(x: float, y: float) -> tuple[float, float]:
        return margin + side * min(max(x, 0.0), 1.0), top + side * (1 - min(max(y, 0.0), 1.0))

    colours = [DOT, WHISKER, "#7fb3ff", "#c2a3ff"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{size}" height="{size + 24}" '
        f'viewBox="0 0 {size} {size + 24}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text class="plot-title" x="0" y="16" font-size="13" font-weight="600" fill="{TEXT}" {FONT}>'
        f"{escape(title)}</text>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        gx, gy = xy(tick, tick)
        parts += [
            _line(gx, top, gx, top + side, GRID),
            _line(margin, gy, margin + side, gy, GRID),
            f'<text x="{gx:.1f}" y="{top + side + 14}" font-size="10" fill="{MUTED}" text-anchor="middle" {FONT}>'
            f"{tick:g}</text>",
            f'<text x="{margin - 6}" y="{gy + 3:.1f}" font-size="10" fill="{MUTED}" text-anchor="end" {FONT}>'
            f"{tick:g}</text>",
        ]
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    parts += [
        f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{MUTED}" stroke-dasharray="4 4"/>',
        _line(margin, top + side, margin + side, top + side, AXIS, cls="axis"),
        _line(margin, top, margin, top + side, AXIS, cls="axis"),
        f'<text class="axis-name" x="{margin + side / 2}" y="{top + side + 30}" font-size="11" fill="{TEXT}" '
        f'text-anchor="middle" {FONT}>{escape(x_axis)}</text>',
        f'<text class="axis-name" x="12" y="{top + side / 2}" font-size="11" fill="{TEXT}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + side / 2})" {FONT}>{escape(y_axis)}</text>',
    ]
    for i, (label, points) in enumerate(series):
        colour = colours[i % len(colours)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in (xy(p[0], p[1]) for p in points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(
            f'<text x="{margin + side - 4}" y="{top + side - 8 - 14 * i}" font-size="11" fill="{colour}" '
            f'text-anchor="end" {FONT}>{escape(label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text inside is escaped
