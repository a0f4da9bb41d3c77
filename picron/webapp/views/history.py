"""The run history and the audit log."""
from __future__ import annotations

import re

from picron.errors import ValidationError
from picron.webapp.context import Context
from picron.webapp.base import template, Raw, Request, Response, render
from picron.webapp.layout import page, status_badge, time_tag

HISTORY_LIMIT = 100

_HISTORY = template("history_history.html")
_RUN = template("history_run.html")


def history(ctx: Context, req: Request) -> Response:
    """The newest runs with their messages, optionally of one task (``?task=ID``)."""
    selected = req.arg("task") or ""
    if selected and not re.fullmatch(r"[0-9]{1,18}", selected):
        raise ValidationError("task: must be a task id", field="task")
    tasks = ctx.store.list_tasks()
    options = Raw("".join(render('<option value="$id"$sel>$name</option>', id=t.id,
                                 name=t.name, sel=Raw(" selected" if str(t.id) == selected
                                                      else ""))
                          for t in tasks))
    runs = ctx.store.list_runs(int(selected) if selected else None, HISTORY_LIMIT)
    if not runs:
        content = Raw('<p class="empty">No runs recorded yet.</p>')
    else:
        rows = Raw("".join(render(
            _RUN, running=Raw(' class="running" data-running' if r.status == "running" else ""),
            start=time_tag(r.start, ctx.zone), task=_run_task(r.task, r.task_id, selected),
            node=r.node, trigger=r.trigger,
            status=status_badge(r.status),
            duration="…" if r.duration is None else f"{r.duration:.1f} s",
            message=r.message) for r in runs))
        content = render('<table class="runs"><thead><tr><th>Start</th><th>Task</th>'
                         '<th>Node</th><th>Trigger</th><th>Status</th><th>Duration</th>'
                         '<th>Message</th></tr></thead>\n<tbody>\n$rows</tbody></table>',
                         rows=rows)
    return page(ctx, req, "History", render(_HISTORY, options=options, content=content))


def _run_task(name: str, task_id: int | None, selected: str) -> Raw:
    """The task's name, linking to its own history unless that is the page shown."""
    if task_id is None or str(task_id) == selected:
        return render("$name", name=name)
    return render('<a href="/history?task=$id">$name</a>', id=task_id, name=name)


def audit(ctx: Context, req: Request) -> Response:
    """Every change of a task: when, who, what."""
    entries = ctx.store.list_audit(HISTORY_LIMIT)
    if not entries:
        content = Raw('<p class="empty">No changes recorded yet.</p>')
    else:
        rows = Raw("".join(render(
            '<tr><td data-label="Time">$at</td><td data-label="Who">$actor</td>'
            '<td data-label="What">$action</td><td data-label="Task">$task</td></tr>\n',
            at=time_tag(e.at, ctx.zone), actor=e.actor, action=e.action,
            task=f"{e.detail} (#{e.task_id})" if e.task_id else e.detail) for e in entries))
        content = render('<table class="audit"><thead><tr><th>Time</th><th>Who</th>'
                         '<th>What</th><th>Task</th></tr></thead>\n<tbody>\n$rows</tbody>'
                         '</table>', rows=rows)
    return page(ctx, req, "Audit log", render("<h1>Audit log</h1>\n$content", content=content))
