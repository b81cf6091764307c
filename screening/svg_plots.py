"""Small plots drawn on the server as SVG: no JavaScript and nothing from a CDN.

One kind is enough for the performance page: a rate per row (reader, model version,
programme) as a dot with its confidence interval as a whisker, so small numbers are seen
with their uncertainty.
"""

from __future__ import annotations

from html import escape

from django.utils.safestring import SafeString, mark_safe

ROW = 26
LABEL_WIDTH = 150
PLOT_WIDTH = 360
PAD = 8


def interval_plot(
    title: str, rows: list[tuple[str, dict]], *, upper: float | None = None, unit: str = ""
) -> SafeString:
    """rows: (label, proportion dict with value/low/high/k/n); upper: the axis end (default: the largest bound)."""
    shown = [(label, p) for label, p in rows if p.get("value") is not None]
    top = upper or max([p["high"] or p["value"] for _, p in shown] + [1e-9]) * 1.1
    height = PAD * 2 + ROW * (len(shown) + 1)
    width = LABEL_WIDTH + PLOT_WIDTH + 110

    def x(value: float) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * min(value, top) / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<line x1="{LABEL_WIDTH}" y1="{PAD}" x2="{LABEL_WIDTH}" y2="{height - PAD}" stroke="#999"/>',
        f'<text x="{LABEL_WIDTH}" y="{height - PAD}" font-size="11" fill="#555">0</text>',
        f'<text x="{LABEL_WIDTH + PLOT_WIDTH}" y="{height - PAD}" font-size="11" fill="#555" '
        f'text-anchor="end">{top:.3g}{escape(unit)}</text>',
    ]
    if not shown:
        parts.append(f'<text x="{LABEL_WIDTH + 8}" y="{PAD + ROW / 2}" font-size="12">no data</text>')
    for i, (label, p) in enumerate(shown):
        y = PAD + ROW * i + ROW / 2
        low, high = p["low"] if p["low"] is not None else p["value"], p["high"] if p["high"] is not None else p["value"]
        parts += [
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 4}" font-size="12" text-anchor="end">{escape(label)}</text>',
            f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="#446" stroke-width="2"/>',
            f'<circle cx="{x(p["value"]):.1f}" cy="{y}" r="4" fill="#c33"/>',
            f'<text x="{LABEL_WIDTH + PLOT_WIDTH + 6}" y="{y + 4}" font-size="11" fill="#333">'
            f"{p['value']:.3g}{escape(unit)} ({p['k']}/{p['n']})</text>",
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label is escaped above
