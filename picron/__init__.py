"""picron: periodic tasks for small deployments (privacyIDEA's Periodic Tasks, standalone)."""
from __future__ import annotations

__version__ = "0.1.0"


def increase_counter(name: str, by: int = 1, database: str | None = None) -> int:
    """Increase event counter ``name`` (see ``picron.counters``); returns the new value."""
    from picron.counters import increase_counter as increase

    return increase(name, by, database)


def decrease_counter(name: str, by: int = 1, database: str | None = None) -> int:
    """Decrease event counter ``name`` (see ``picron.counters``); returns the new value."""
    from picron.counters import decrease_counter as decrease

    return decrease(name, by, database)
