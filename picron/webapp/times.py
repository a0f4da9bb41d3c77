"""Times on the page, by one rule: in the viewer's zone (default: the server's), the zone
named, read relative to now ("in 4 min", "3 h ago") with the exact time on hover.

The CLI has its own formatting (``picron.output``); the web formats only here.
"""
from __future__ import annotations

from datetime import datetime, tzinfo

from picron.schedule import to_db
from picron.webapp.base import Raw, render

_STEPS = ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600), (float("inf"), "days", 86400))


def exact(instant: datetime, zone: tzinfo) -> str:
    """``2026-03-29 03:00 CEST``: the wall clock of ``zone``, its zone named."""
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def relative(instant: datetime, now: datetime) -> str:
    """``in 4 min``, ``3 h ago``, ``in < 1 min``, ``just now``: how far ``instant`` is from
    ``now``, rounded down."""
    seconds = (instant - now).total_seconds()
    size = abs(seconds)
    if size < 60:
        return "in < 1 min" if seconds > 0 else "just now"
    for limit, unit, per in _STEPS:
        if size < limit:
            amount = int(size // per)
            break
    if unit == "days" and amount == 1:
        unit = "day"
    return f"in {amount} {unit}" if seconds > 0 else f"{amount} {unit} ago"


def time_tag(instant: datetime | None, zone: tzinfo, now: datetime | None = None,
             never: str = "never") -> Raw:
    """A ``<time>`` element: relative text (given ``now``) with the exact time as its title,
    else the exact time."""
    if instant is None:
        return render('<span class="muted">$never</span>', never=never)
    if now is None:
        return render('<time datetime="$iso">$text</time>', iso=to_db(instant),
                      text=exact(instant, zone))
    return render('<time datetime="$iso" title="$exact">$text</time>', iso=to_db(instant),
                  exact=exact(instant, zone), text=relative(instant, now))
