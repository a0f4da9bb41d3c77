"""The HTML pages: task list, task forms, history, audit log and monitoring stats.

Server-rendered with ``webcore.render`` (every value escaped unless ``Raw``) so that the
page works without JavaScript; ``/static/app.js`` only adds the live interval preview.
Handlers are ``(app, req, **params) -> Response``; ``picron.web`` routes them, checks
the login and the CSRF token. State changes answer 303 See Other.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from picron.webapp.views import task_form as taskform
from picron.webapp.views.api import actor
from picron.webapp.charts import line_chart
from picron.errors import NotFound, ValidationError
from picron.webapp.layout import (TASKS_PER_PAGE, csrf_field, error_page, layout, page, reading,
                           status_badge, task_anchor, task_zone, time_tag)
from picron.records import Task
from picron.webapp.base import Raw, Request, Response, redirect, render

__all__ = ["ROUTES", "layout", "error_page"]
HISTORY_LIMIT = 100

# -- task list ---------------------------------------------------------------------

_LIST = """<div class="title-row"><h1>Tasks</h1>
<a class="button primary" href="/tasks/new">New task</a></div>
$content$pager"""
_PAGER = """<nav class="pager" aria-label="Pages of tasks">$previous
<span>Tasks $first–$last of $total</span>$next</nav>"""
_TABLE = """<table class="tasks">
<thead><tr><th>Active</th><th>Order</th><th>Name</th><th>Module</th><th>Interval</th>
<th>Runs per node</th><th><span class="sr-only">Actions</span></th></tr></thead>
<tbody>
$rows</tbody>
</table>"""
_ROW = """<tr id="task-$id"$inactive>
<td data-label="Active">$switch</td>
<td data-label="Order" class="num">$ordering</td>
<td data-label="Name" class="name"><a href="/tasks/$id/edit">$name</a></td>
<td data-label="Module"><code>$module</code></td>
<td data-label="Interval"><code>$interval</code>$reading</td>
<td data-label="Runs per node">$nodes</td>
<td class="actions"><a class="button" href="/tasks/$id/edit">Edit</a>
<form method="post" action="/tasks/$id/run">$csrf<button>Run now</button></form>
<a class="button danger" href="/tasks/$id/delete">Delete</a></td>
</tr>
"""
_NODE = """<div class="node-run">
<div class="node-head"><span class="node">$node</span> $status$streak</div>
<div class="when"><span class="label">next</span> $next$paused</div>
<div class="when"><span class="label">last</span> $last</div></div>
"""
_SWITCH = """<form method="post" action="/tasks/$id/$action">$csrf<button class="switch $state" \
aria-pressed="$pressed" title="$hint">$text</button></form>"""


def task_list(app, req: Request) -> Response:
    """The task list in run order, with every node's next and last run and status."""
    number = _page_number(req)
    tasks = app.store.list_tasks(limit=TASKS_PER_PAGE, offset=(number - 1) * TASKS_PER_PAGE)
    if not tasks:
        content = Raw('<p class="empty">No tasks yet. <a href="/tasks/new">Create the first '
                      'one</a>, or add one with <code>picron task add</code>.</p>')
    else:
        content = render(_TABLE, rows=Raw("".join(_task_row(app, req, t) for t in tasks)))
    pager = _pager(number, len(tasks), app.store.count_tasks()) if tasks else Raw("")
    return page(app, req, "Tasks", render(_LIST, content=content, pager=pager))


def _page_number(req: Request) -> int:
    text = req.arg("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 10**6 else 1


def _pager(number: int, shown: int, total: int) -> Raw:
    if total <= TASKS_PER_PAGE:
        return Raw("")
    first = (number - 1) * TASKS_PER_PAGE + 1
    previous = (render(' <a class="button" href="/?page=$n" rel="prev">← Previous</a>',
                       n=number - 1) if number > 1 else Raw(""))
    following = (render(' <a class="button" href="/?page=$n" rel="next">Next →</a>',
                        n=number + 1) if first + shown - 1 < total else Raw(""))
    return render(_PAGER, previous=previous, first=f"{first:,}",
                  last=f"{first + shown - 1:,}", total=f"{total:,}", next=following)


def _task_row(app, req: Request, task: Task) -> Raw:
    zone = task_zone(app, task)
    switch = render(_SWITCH, id=task.id, csrf=csrf_field(req),
                    action="disable" if task.active else "enable",
                    state="on" if task.active else "off",
                    pressed="true" if task.active else "false",
                    hint="Active: click to disable" if task.active else
                    "Inactive: click to enable",
                    text="On" if task.active else "Off")
    nodes = Raw("".join(render(
        _NODE, node=node, status=status_badge(task.last_status.get(node)),
        streak=_streak(task.failure_streak.get(node, 0)),
        next=time_tag(task.next_runs.get(node), zone),
        paused=Raw("" if task.active else ' <span class="muted">(inactive)</span>'),
        last=time_tag(task.last_runs.get(node), zone)) for node in task.nodes))
    return render(_ROW, id=task.id, inactive=Raw("" if task.active else ' class="inactive"'),
                  switch=switch, ordering=task.ordering, name=task.name,
                  module=task.taskmodule, interval=task.interval,
                  reading=reading(task.interval), nodes=nodes, csrf=csrf_field(req))


def _streak(count: int) -> Raw:
    if not count:
        return Raw("")
    return render(' <span class="streak">$text</span>',
                  text=f"{count} failure{'s' if count != 1 else ''} in a row")


# -- actions on a task -------------------------------------------------------------

def _task(app, task_id: str) -> Task:
    return app.store.get_task(int(task_id))


def enable_task(app, req: Request, task_id: str) -> Response:
    task = _task(app, task_id)
    app.store.set_active(task.id, True, app.clock(), actor=actor(req))
    return redirect(task_anchor(app, task))


def disable_task(app, req: Request, task_id: str) -> Response:
    task = _task(app, task_id)
    app.store.set_active(task.id, False, app.clock(), actor=actor(req))
    return redirect(task_anchor(app, task))


def run_task(app, req: Request, task_id: str) -> Response:
    """Run now on this node: claimed here (a refusal is answered at once), run in the
    background; the browser goes to the task's history, which reloads until it ends."""
    from picron.webapp.background import start_manual_run

    task = _task(app, task_id)
    start_manual_run(app, task.id)
    return redirect(f"/history?task={task.id}")


_DELETE = """<h1>Delete task “$name”?</h1>
<p>The task stops running on every node. Its run history is kept.</p>
<form method="post" action="/tasks/$id/delete" class="confirm">$csrf
<button class="danger">Delete task</button> <a class="button" href="/">Cancel</a></form>"""


def confirm_delete(app, req: Request, task_id: str) -> Response:
    """Asks before deleting (a GET changes nothing); the form posts the deletion."""
    task = _task(app, task_id)
    return page(app, req, f"Delete {task.name}",
                render(_DELETE, name=task.name, id=task.id, csrf=csrf_field(req)))


def delete_task(app, req: Request, task_id: str) -> Response:
    task = _task(app, task_id)
    app.store.delete_task(task.id, app.clock(), actor=actor(req))
    return redirect("/")


# -- history, audit, stats ---------------------------------------------------------

_HISTORY = """<h1>Run history</h1>
<form method="get" action="/history" class="filter">
<label for="task-filter">Task</label>
<select id="task-filter" name="task"><option value="">all tasks</option>$options</select>
<button>Show</button></form>
$content"""
_RUN = """<tr$running>
<td data-label="Start">$start</td><td data-label="Task">$task</td>
<td data-label="Node">$node</td><td data-label="Trigger">$trigger</td>
<td data-label="Status">$status</td><td data-label="Duration" class="num">$duration</td>
<td data-label="Message" class="message"><pre>$message</pre></td></tr>
"""


def history(app, req: Request) -> Response:
    """The newest runs with their messages, optionally of one task (``?task=ID``)."""
    selected = req.arg("task") or ""
    if selected and not re.fullmatch(r"[0-9]{1,18}", selected):
        raise ValidationError("task: must be a task id", field="task")
    tasks = app.store.list_tasks()
    options = Raw("".join(render('<option value="$id"$sel>$name</option>', id=t.id,
                                 name=t.name, sel=Raw(" selected" if str(t.id) == selected
                                                      else ""))
                          for t in tasks))
    runs = app.store.list_runs(int(selected) if selected else None, HISTORY_LIMIT)
    if not runs:
        content = Raw('<p class="empty">No runs recorded yet.</p>')
    else:
        rows = Raw("".join(render(
            _RUN, running=Raw(' class="running" data-running' if r.status == "running" else ""),
            start=time_tag(r.start, app.zone), task=_run_task(r.task, r.task_id, selected),
            node=r.node, trigger=r.trigger,
            status=status_badge(r.status),
            duration="…" if r.duration is None else f"{r.duration:.1f} s",
            message=r.message) for r in runs))
        content = render('<table class="runs"><thead><tr><th>Start</th><th>Task</th>'
                         '<th>Node</th><th>Trigger</th><th>Status</th><th>Duration</th>'
                         '<th>Message</th></tr></thead>\n<tbody>\n$rows</tbody></table>',
                         rows=rows)
    return page(app, req, "History", render(_HISTORY, options=options, content=content))


def _run_task(name: str, task_id: int | None, selected: str) -> Raw:
    """The task's name, linking to its own history unless that is the page shown."""
    if task_id is None or str(task_id) == selected:
        return render("$name", name=name)
    return render('<a href="/history?task=$id">$name</a>', id=task_id, name=name)


def audit(app, req: Request) -> Response:
    """Every change of a task: when, who, what."""
    entries = app.store.list_audit(HISTORY_LIMIT)
    if not entries:
        content = Raw('<p class="empty">No changes recorded yet.</p>')
    else:
        rows = Raw("".join(render(
            '<tr><td data-label="Time">$at</td><td data-label="Who">$actor</td>'
            '<td data-label="What">$action</td><td data-label="Task">$task</td></tr>\n',
            at=time_tag(e.at, app.zone), actor=e.actor, action=e.action,
            task=f"{e.detail} (#{e.task_id})" if e.task_id else e.detail) for e in entries))
        content = render('<table class="audit"><thead><tr><th>Time</th><th>Who</th>'
                         '<th>What</th><th>Task</th></tr></thead>\n<tbody>\n$rows</tbody>'
                         '</table>', rows=rows)
    return page(app, req, "Audit log", render("<h1>Audit log</h1>\n$content", content=content))


def stats_index(app, req: Request) -> Response:
    """The monitoring stats keys (each links to its chart) and the event counters."""
    latest = app.store.latest_stats()
    keys = Raw("".join(render('<li><a href="/stats/$href">$key</a> <span class="muted">'
                              'latest $value</span></li>\n', href=quote(key, safe=""),
                              key=key, value=latest.get(key, "-"))
                       for key in app.store.stat_keys()))
    counters = Raw("".join(render('<tr><td>$name</td><td class="num">$value</td></tr>\n',
                                  name=name, value=value)
                           for name, value in app.store.list_counters().items()))
    body = render(
        "<h1>Monitoring stats</h1>\n$keys\n<h2>Event counters</h2>\n$counters",
        keys=render('<ul class="keys">\n$items</ul>', items=keys) if keys else
        Raw('<p class="empty">No stats recorded yet: a <code>simplestats</code> or '
            '<code>eventcounter</code> task writes them.</p>'),
        counters=render('<table class="counters"><thead><tr><th>Counter</th><th>Value</th>'
                        '</tr></thead>\n<tbody>\n$rows</tbody></table>', rows=counters)
        if counters else Raw('<p class="empty">No event counters yet.</p>'))
    return page(app, req, "Stats", body)


def stats_key(app, req: Request, key: str) -> Response:
    """One key's time series as an SVG chart, and its latest values; 404 for no values."""
    series = app.store.get_stats(key)
    if not series:
        raise NotFound(f"no monitoring stats under key {key!r}", field="key")
    rows = Raw("".join(render('<tr><td>$at</td><td class="num">$value</td></tr>\n',
                              at=time_tag(at, app.zone), value=value)
                       for at, value in reversed(series[-20:])))
    body = render('<p class="crumbs"><a href="/stats">Stats</a> /</p>\n<h1>$key</h1>\n$chart\n'
                  '<h2>Latest values</h2>\n<table class="values"><thead><tr><th>Time</th>'
                  '<th>Value</th></tr></thead>\n<tbody>\n$rows</tbody></table>',
                  key=key, chart=line_chart(series, app.zone, key), rows=rows)
    return page(app, req, f"Stats: {key}", body)


_ID = r"(?P<task_id>[0-9]{1,18})"
ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in (
    ("GET", r"/", task_list),
    ("GET", r"/tasks/new", taskform.new_task),
    ("POST", r"/tasks", taskform.create_task),
    ("GET", rf"/tasks/{_ID}/edit", taskform.edit_task),
    ("POST", rf"/tasks/{_ID}", taskform.save_task),
    ("GET", rf"/tasks/{_ID}/delete", confirm_delete),
    ("POST", rf"/tasks/{_ID}/delete", delete_task),
    ("POST", rf"/tasks/{_ID}/enable", enable_task),
    ("POST", rf"/tasks/{_ID}/disable", disable_task),
    ("POST", rf"/tasks/{_ID}/run", run_task),
    ("GET", r"/history", history),
    ("GET", r"/audit", audit),
    ("GET", r"/stats", stats_index),
    ("GET", r"/stats/(?P<key>.+)", stats_key),
)]
