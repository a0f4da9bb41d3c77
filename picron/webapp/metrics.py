"""``/metrics``: picron's state in the Prometheus text exposition format (version 0.0.4)."""
from __future__ import annotations

from datetime import datetime


def render_metrics(store, now: datetime) -> str:
    """Tasks, runs by status, last tick age per node, counters and the latest stats values."""
    tasks = store.list_tasks()
    lines: list[str] = []
    _family(lines, "picron_tasks", "Periodic tasks defined.", [({}, len(tasks))])
    _family(lines, "picron_tasks_active", "Periodic tasks that are active.",
            [({}, sum(task.active for task in tasks))])
    _family(lines, "picron_runs", "Runs in the run history, by status.",
            [({"status": status}, count) for status, count in sorted(store.run_counts().items())])
    _family(lines, "picron_task_failure_streak", "Failed runs in a row, per task and node.",
            [({"task": task.name, "node": node}, streak)
             for task in tasks for node, streak in sorted(task.failure_streak.items())])
    _family(lines, "picron_last_tick_age_seconds",
            "Seconds since run_scheduled was last invoked, per node.",
            [({"node": node}, round((now - at).total_seconds(), 3))
             for node, at in sorted(store.last_ticks().items())])
    _family(lines, "picron_counter", "Event counters.",
            [({"name": name}, value) for name, value in store.list_counters().items()])
    _family(lines, "picron_stat", "The latest value of each monitoring stats key.",
            [({"key": key}, value) for key, value in sorted(store.latest_stats().items())])
    return "".join(line + "\n" for line in lines)


def _family(lines: list[str], name: str, help_text: str,
            samples: list[tuple[dict[str, str], float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for labels, value in samples:
        text = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
        lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")


def escape_label(value: str) -> str:
    """A label value with backslash, double quote and line feed escaped (as Prometheus wants)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
