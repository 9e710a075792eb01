"""Charts as inline SVG drawn here: no JavaScript, no external assets (the product runs air-gapped)."""

from __future__ import annotations

import math
from html import escape

from sovstack.assess.results import DrillResult, LayerFinding

LABEL_COLOURS = {"Control": "#1a7f37", "Steer": "#bf8700", "Depend": "#cf222e", "Not assessed": "#8c959f"}


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def radar(values: dict[str, float | None], titles: dict[str, str], size: int = 360) -> str:
    """A radar of 0–100 values, one axis per key; a missing value is drawn at the centre and marked n/a."""
    c, r = size / 2, size / 2 - 70
    keys = list(values)
    n = len(keys)
    angle = [(-math.pi / 2 + 2 * math.pi * i / n) for i in range(n)]
    parts = [f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             'role="img" aria-label="Pressure radar">']
    for ring in (25, 50, 75, 100):
        pts = " ".join(f"{_fmt(c + r * ring / 100 * math.cos(a))},{_fmt(c + r * ring / 100 * math.sin(a))}"
                       for a in angle)
        parts.append(f'<polygon points="{pts}" fill="none" stroke="#d0d7de"/>')
    for key, a in zip(keys, angle, strict=True):
        x, y = c + r * math.cos(a), c + r * math.sin(a)
        lx, ly = c + (r + 14) * math.cos(a), c + (r + 14) * math.sin(a)
        anchor = "middle" if abs(math.cos(a)) < 0.3 else ("start" if math.cos(a) > 0 else "end")
        value = values[key]
        shown = "n/a" if value is None else f"{value:.0f}"
        parts.append(f'<line x1="{_fmt(c)}" y1="{_fmt(c)}" x2="{_fmt(x)}" y2="{_fmt(y)}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{_fmt(lx)}" y="{_fmt(ly)}" font-size="11" text-anchor="{anchor}">'
                     f'{escape(titles.get(key, key))} ({shown})</text>')
    pts = " ".join(f"{_fmt(c + r * (values[k] or 0) / 100 * math.cos(a))},"
                   f"{_fmt(c + r * (values[k] or 0) / 100 * math.sin(a))}" for k, a in zip(keys, angle, strict=True))
    parts.append(f'<polygon points="{pts}" fill="#0969da" fill-opacity="0.25" stroke="#0969da" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def layer_bars(layers: dict[str, LayerFinding], width: int = 520) -> str:
    """One horizontal bar per layer: its mean points, coloured by Control / Steer / Depend."""
    row, left = 26, 90
    height = row * len(layers) + 10
    span = width - left - 140
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="Per-layer points">']
    for i, (name, finding) in enumerate(layers.items()):
        y = 5 + i * row
        value = finding.points.value or 0.0
        colour = LABEL_COLOURS[finding.label]
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{span}" height="16" fill="#f6f8fa"/>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{_fmt(span * value / 100)}" height="16" fill="{colour}"/>')
        shown = "–" if finding.points.value is None else f"{value:.0f}"
        parts.append(f'<text x="{left + span + 6}" y="{y + 15}" font-size="12">'
                     f'{shown} · {escape(finding.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def drill_timeline(drill: DrillResult, width: int = 520, height: int = 150) -> str:
    """Residual service (0–100 %) over days after the shock, as a step line."""
    left, bottom, top = 40, height - 25, 10
    last = max([s.day for s in drill.timeline] + [1.0])
    horizon = last * 1.2
    span_x, span_y = width - left - 10, bottom - top

    def x(day: float) -> float:
        return left + span_x * day / horizon

    def y(share: float) -> float:
        return bottom - span_y * share

    points: list[str] = []
    for i, step in enumerate(drill.timeline):
        if i:
            points.append(f"{_fmt(x(step.day))},{_fmt(y(drill.timeline[i - 1].residual))}")
        points.append(f"{_fmt(x(step.day))},{_fmt(y(step.residual))}")
    points.append(f"{_fmt(x(horizon))},{_fmt(y(drill.timeline[-1].residual))}")
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="Residual service over time: {escape(drill.scenario)}">',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#8c959f"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#8c959f"/>',
             f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">100%</text>',
             f'<text x="{left - 4}" y="{bottom}" font-size="10" text-anchor="end">0%</text>',
             f'<text x="{left}" y="{height - 8}" font-size="10">day 0</text>',
             f'<text x="{width - 10}" y="{height - 8}" font-size="10" text-anchor="end">day {horizon:.0f}</text>',
             f'<polyline points="{" ".join(points)}" fill="none" stroke="#0969da" stroke-width="2"/>']
    for step in drill.timeline[1:]:
        parts.append(f'<circle cx="{_fmt(x(step.day))}" cy="{_fmt(y(step.residual))}" r="3" fill="#0969da"/>')
    parts.append("</svg>")
    return "".join(parts)
