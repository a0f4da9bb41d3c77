"""Text output for people: aligned tables and local times (the CLI's presentation)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, tzinfo
from typing import Iterable

from picron.records import FAILURE_STATUSES, Run, Task, message_tail
from picron.runner import RunResult
from picron.schedule import UTC, get_zone, upcoming


def print_json(value) -> None:
    """An object indented for reading; an array one element per line (see below)."""
    if isinstance(value, list):
        print_json_array([json.dumps(item, ensure_ascii=False) for item in value])
    else:
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def print_json_array(texts: list[str]) -> None:
    """A JSON array of already encoded elements, one per line.

    Not ``json.dumps(..., indent=2)``: ``indent`` switches json to its pure-Python encoder,
    three times slower for 10,000 tasks.
    """
    sys.stdout.write("[\n" + ",\n".join(texts) + "\n]\n" if texts else "[]\n")


def format_time(instant: datetime | None, zone: tzinfo) -> str:
    """``2026-03-29 03:00 CEST``: a time in ``zone``, named, readable at a glance."""
    if instant is None:
        return "-"
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def table(headers: list[str], rows: Iterable[list[str]], last_width: int = 60) -> str:
    """Left-aligned columns separated by two spaces, with a header line.

    Cells are cut at 60 characters, the last column at ``last_width``.
    """
    rows = [[_one_line(cell, last_width if i == len(headers) - 1 else 60)
             for i, cell in enumerate(row)] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _one_line(value: object, width: int = 60) -> str:
    text = str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[:width - 1] + "…"


def brief_message(message: str, failed: bool) -> str:
    """A run's message on one line: its first line, and for a failure the tail of the rest.

    At most 200 characters; ``--json`` has the whole message.
    """
    first, _, rest = message.strip().partition("\n")
    tail = message_tail(rest, 3, 117) if failed else ""
    if tail and tail not in first:
        first = f"{_one_line(first, 80)} | {tail}"
    return _one_line(first, 200)


def task_zone(task: Task, zone: tzinfo, utc: bool = False) -> tzinfo:
    """The zone to show a task's times in: its own, else ``zone``; UTC if asked for."""
    return UTC if utc else get_zone(task.timezone, zone)


def task_table(tasks: list[Task], node: str, zone: tzinfo, registry, utc: bool = False) -> str:
    """The ``list`` table; times in each task's zone (named), or all in UTC."""
    from picron.tasks import mask_options, module_or_none  # not on the idle tick's path

    if not tasks:
        return "no tasks defined (add one with 'picron task add')"
    rows = []
    for task in tasks:
        shown = mask_options(task.options, module_or_none(registry, task.taskmodule))
        options = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        next_run = task.next_runs.get(node) or min(task.next_runs.values())
        in_zone = task_zone(task, zone, utc)
        attempt = task.last_attempts.get(node)
        rows.append(["yes" if task.active else "no", task.id, task.name, task.interval,
                     task.taskmodule, ",".join(task.nodes), options or "-",
                     format_time(next_run, in_zone), task.last_status.get(node, "-"),
                     format_time(attempt, in_zone)])
    return table(["active", "id", "name", "interval", "module", "nodes", "options", "next run",
                  "last status", "last attempt"], rows)


def run_table(runs: list[Run], zone: tzinfo) -> str:
    if not runs:
        return "no runs recorded"
    return table(["id", "task", "node", "trigger", "status", "start", "duration", "message"],
                 [[run.id, run.task, run.node, run.trigger, run.status,
                   format_time(run.start, zone),
                   "-" if run.duration is None else f"{run.duration:.1f}s",
                   brief_message(run.message, run.status in FAILURE_STATUSES)]
                  for run in runs], last_width=200)


def module_table(registry) -> str:
    blocks = []
    for module in registry:
        lines = [f"{module.identifier} - {module.description}"]
        for name, option in module.options.items():
            extra = " (required)" if option.required else (
                f" (default {option.default})" if option.default is not None else "")
            lines.append(f"    {name} ({option.type}){extra}: {option.description}")
        if not module.options:
            lines.append("    no options")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) or "no task modules installed"


def next_table(tasks: list[Task], node: str | None, count: int, zone: tzinfo,
               utc: bool = False) -> str:
    """The ``next`` list; times in each task's zone (named), or all in UTC."""
    blocks = []
    for task in tasks:
        schedule_zone = get_zone(task.timezone, zone)
        shown = task_zone(task, zone, utc)
        for task_node in [node] if node else task.nodes:
            if task_node not in task.next_runs:
                continue
            first = task.next_runs[task_node]
            times = [first, *upcoming(task.interval, first, schedule_zone, count - 1)]
            blocks.append(f"{task.name} on {task_node}:\n" +
                          "\n".join(f"  {format_time(t, shown)}" for t in times))
    return "\n".join(blocks) or "no tasks"


def describe_result(result: RunResult) -> str:
    text = f"{result.task} on {result.node}: {result.status} ({result.duration:.1f}s)"
    if result.message and not result.ok:
        text += f": {brief_message(result.message, True)}"
    return text
