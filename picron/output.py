"""Text output for people: aligned tables and local times (the CLI's presentation)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, tzinfo
from typing import Iterable

from picron.records import Run, Task
from picron.runner import RunResult


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
    """``2026-03-29 03:00 CEST``: a time in the server zone, readable at a glance."""
    if instant is None:
        return "-"
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    rows = [[_one_line(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _one_line(value: object) -> str:
    text = str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 60 else text[:59] + "…"


def task_table(tasks: list[Task], node: str, zone: tzinfo, registry) -> str:
    from picron.tasks import mask_options, module_or_none  # not on the idle tick's path

    if not tasks:
        return "no tasks defined (add one with 'picron task add')"
    rows = []
    for task in tasks:
        shown = mask_options(task.options, module_or_none(registry, task.taskmodule))
        options = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        next_run = task.next_runs.get(node) or min(task.next_runs.values())
        rows.append(["yes" if task.active else "no", task.id, task.name, task.interval,
                     task.taskmodule, ",".join(task.nodes), options or "-",
                     format_time(next_run, zone)])
    return table(["active", "id", "name", "interval", "module", "nodes", "options", "next run"],
                 rows)


def run_table(runs: list[Run], zone: tzinfo) -> str:
    if not runs:
        return "no runs recorded"
    return table(["id", "task", "node", "trigger", "status", "start", "duration", "message"],
                 [[run.id, run.task, run.node, run.trigger, run.status,
                   format_time(run.start, zone),
                   "-" if run.duration is None else f"{run.duration:.1f}s",
                   run.message.splitlines()[0] if run.message else ""] for run in runs])


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


def next_table(tasks: list[Task], node: str | None, count: int, zone: tzinfo) -> str:
    from picron.schedule import get_zone, upcoming

    blocks = []
    for task in tasks:
        task_zone = get_zone(task.timezone, zone)
        for task_node in [node] if node else task.nodes:
            if task_node not in task.next_runs:
                continue
            first = task.next_runs[task_node]
            times = [first, *upcoming(task.interval, first, task_zone, count - 1)]
            blocks.append(f"{task.name} on {task_node}:\n" +
                          "\n".join(f"  {format_time(t, zone)}" for t in times))
    return "\n".join(blocks) or "no tasks"


def describe_result(result: RunResult) -> str:
    text = f"{result.task} on {result.node}: {result.status} ({result.duration:.1f}s)"
    if result.message and not result.ok:
        text += f": {result.message.splitlines()[0]}"
    return text
