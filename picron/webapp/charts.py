"""Line charts of monitoring stats as inline SVG, drawn on the server (no chart library).

The SVG scales with the page through its ``viewBox``; every label goes through
``base.render``, so a stats key or value can never inject markup.
"""
from __future__ import annotations

import math
from datetime import datetime, tzinfo

from picron.webapp.base import Raw, render, template
from picron.webapp.times import exact

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 52
Y_TICKS = 5
MAX_POINTS = 1000  # more are thinned out evenly: the line cannot show them anyway
MAX_X_TICKS = 6
TIME_STEPS = (60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
              2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 365 * 86400)

_SVG = template("charts_svg.html")


def line_chart(series: list[tuple[datetime, int]], zone: tzinfo, key: str) -> Raw:
    """An SVG line chart of ``(time, value)`` points, oldest first, with labelled axes."""
    if not series:
        return Raw('<p class="empty">No values to draw.</p>')
    series = distinct_points(series)
    caption = _caption(series, zone, key)
    if len(series) > MAX_POINTS:
        stride = math.ceil(len(series) / MAX_POINTS)
        series = series[-1::-stride][::-1]  # keeps the latest value
    times = [at.timestamp() for at, _ in series]
    values = [value for _, value in series]
    low, high, step = nice_scale(min(values), max(values))
    first, last = times[0], times[-1]
    span_x = (last - first) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (plot_w / 2 if last == first else (t - first) / span_x * plot_w)

    def y(v: float) -> float:
        return TOP + plot_h - (v - low) / (high - low) * plot_h

    grid, labels = [], []
    tick = low
    while tick <= high + step / 2:
        grid.append(render('<line x1="$x1" y1="$y" x2="$x2" y2="$y"/>', x1=LEFT,
                           x2=WIDTH - RIGHT, y=f"{y(tick):.1f}"))
        labels.append(render('<text x="$x" y="$y" text-anchor="end">$text</text>',
                             x=LEFT - 8, y=f"{y(tick) + 4:.1f}", text=_number(tick)))
        tick += step
    for t, text in time_ticks(first, last, zone):
        grid.append(render('<line x1="$x" y1="$y1" x2="$x" y2="$y2"/>', x=f"{x(t):.1f}",
                           y1=TOP, y2=HEIGHT - BOTTOM))
        labels.append(render('<text x="$x" y="$y" text-anchor="middle">$text</text>',
                             x=f"{x(t):.1f}", y=HEIGHT - BOTTOM + 20, text=text))
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values))
    dots = [render('<circle cx="$cx" cy="$cy" r="3"><title>$label</title></circle>',
                   cx=f"{x(t):.1f}", cy=f"{y(v):.1f}",
                   label=f"{exact(at, zone)}: {v}")
            for (at, v), t in zip(series, times)] if len(series) <= 200 else []
    return render(
        _SVG, width=WIDTH, height=HEIGHT, title=f"{key} over time", grid=Raw("".join(grid)),
        labels=Raw("".join(labels)), points=points, dots=Raw("".join(dots)), left=LEFT,
        right=WIDTH - RIGHT, top=TOP, bottom=HEIGHT - BOTTOM,
        middle=LEFT + plot_w // 2, middle_y=TOP + plot_h // 2, x_title_y=HEIGHT - 10,
        x_title=f"time ({exact(series[-1][0], zone).rsplit(' ', 1)[-1]})",
        caption=caption)


def _caption(series: list[tuple[datetime, int]], zone: tzinfo, key: str) -> str:
    values = [value for _, value in series]
    return (f"{len(series)} value{'s' if len(series) != 1 else ''} of {key}, from "
            f"{exact(series[0][0], zone)} to {exact(series[-1][0], zone)}; "
            f"lowest {min(values)}, highest {max(values)}, latest {values[-1]}.")


def distinct_points(series: list[tuple[datetime, int]]) -> list[tuple[datetime, int]]:
    """The series without repeats: the same value within the same minute is one point
    (a stats task on two nodes records each value twice; the values carry no node)."""
    kept: list[tuple[datetime, int]] = []
    for at, value in series:
        if kept and kept[-1][1] == value and \
                kept[-1][0].replace(second=0, microsecond=0) == at.replace(second=0,
                                                                          microsecond=0):
            continue
        kept.append((at, value))
    return kept


def time_ticks(first: float, last: float, zone: tzinfo) -> list[tuple[float, str]]:
    """Round times between ``first`` and ``last`` (POSIX seconds) for the x axis, at most
    ``MAX_X_TICKS``, on whole minutes, hours or days of ``zone``, with short labels."""
    if last == first:
        at = datetime.fromtimestamp(first, zone)
        return [(first, f"{at:%m-%d %H:%M}")]
    span = last - first
    step = next((s for s in TIME_STEPS if span / s <= MAX_X_TICKS), TIME_STEPS[-1])
    start = datetime.fromtimestamp(first, zone)
    offset = start.utcoffset().total_seconds() if start.utcoffset() else 0
    tick = math.ceil((first + offset) / step) * step - offset  # round in local time
    ticks = []
    while tick <= last and len(ticks) <= MAX_X_TICKS:
        at = datetime.fromtimestamp(tick, zone)
        ticks.append((tick, f"{at:%m-%d}" if step >= 86400 else
                      f"{at:%H:%M}" if span < 86400 else f"{at:%m-%d %H:%M}"))
        tick += step
    return ticks


def nice_scale(low: float, high: float, ticks: int = Y_TICKS) -> tuple[float, float, float]:
    """A y range that contains ``low..high`` with round tick steps (1, 2 or 5 × 10ⁿ, never
    below 1: the values are counts)."""
    if low == high:
        low, high = low - 1, high + 1
    raw = (high - low) / (ticks - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(1, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"
