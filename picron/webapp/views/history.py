"""The run history (filters, pages beyond the newest 100), one run with its whole output,
and the audit log."""
from __future__ import annotations

from urllib.parse import urlencode

from picron.records import AuditEntry, Run
from picron.webapp.base import Raw, Request, Response, render, template
from picron.webapp.context import Context
from picron.webapp.filters import RUN_STATUSES, TRIGGERS, run_filters
from picron.webapp.layout import page, status_badge

HISTORY_LIMIT = 100
MESSAGE_PREVIEW = 300  # characters of output in a history row; the run's page has it all

_HISTORY = template("history_history.html")
_RUN = template("history_run.html")
_RUN_PAGE = template("history_run_page.html")


def history(ctx: Context, req: Request) -> Response:
    """The runs that match, newest first, 100 a page; "Older runs" pages on by run id, so
    the page costs the same whatever the number of tasks and runs."""
    filters = run_filters(req)
    minute = ctx.now.replace(second=0, microsecond=0)  # the relative times change with it
    runs = ctx.cached("runs", tuple(sorted(filters.items())),
                      lambda: ctx.store.find_runs(limit=HISTORY_LIMIT + 1, **filters))
    more = len(runs) > HISTORY_LIMIT
    runs = runs[:HISTORY_LIMIT]
    query = {k: v for k, v in (("task", filters["text"]), ("status", filters["status"]),
                               ("node", filters["node"]), ("trigger", filters["trigger"]),
                               ("task_id", filters["task_id"])) if v}
    links = []
    if filters["before"] is not None:
        links.append(render('<a class="button" href="$u">Newest runs</a>',
                            u="/history?" + urlencode(query) if query else "/history"))
    if more:
        links.append(render('<a class="button" href="$u" rel="next">Older runs →</a>',
                            u="/history?" + urlencode({**query, "before": runs[-1].id})))
    if runs:
        content = ctx.cached("run-rows", (*sorted(filters.items()), minute, str(ctx.view_zone)),
                             lambda: run_table(ctx, runs, with_task=True))
    elif query or filters["before"]:
        content = Raw('<p class="empty">No run matches. <a href="/history">Show all runs</a>.'
                      '</p>')
    else:
        content = Raw('<p class="empty">No runs recorded yet.</p>')
    body = render(_HISTORY, task=filters["text"], node=filters["node"], content=content,
                  statuses=_choices(RUN_STATUSES, filters["status"]),
                  triggers=_choices(TRIGGERS, filters["trigger"]),
                  task_id=render('<input type="hidden" name="task_id" value="$v">',
                                 v=filters["task_id"]) if filters["task_id"] else Raw(""),
                  clear=Raw(' <a class="button" href="/history">Clear</a>') if query
                  else Raw(""),
                  pager=render('<nav class="pager" aria-label="Pages of runs">$l</nav>',
                               l=Raw(" ".join(links))) if links else Raw(""))
    return page(ctx, req, "History", body)


def _choices(values, selected: str) -> Raw:
    return Raw("".join(render('<option$sel>$v</option>', v=value,
                              sel=Raw(" selected" if value == selected else ""))
                       for value in values))


def run_table(ctx: Context, runs: list[Run], *, with_task: bool) -> Raw:
    """Runs as a table: start (links to the run), task, node, trigger, status, duration,
    the start of the output (scrollable, reachable by keyboard)."""
    if not runs:
        return Raw('<p class="empty">No runs recorded yet.</p>')
    rows = Raw("".join(render(
        _RUN, id=r.id, running=Raw(' class="running" data-refresh' if r.status == "running"
                                   else ""),
        start=ctx.when(r.start), task=_task_link(r.task, r.task_id) if with_task else r.task,
        node=r.node, trigger=r.trigger, status=status_badge(r.status),
        duration="…" if r.duration is None else f"{r.duration:.1f} s",
        message=_preview(r)) for r in runs))
    return render('<table class="runs"><thead><tr><th>Start</th><th>Task</th>'
                  '<th>Node</th><th>Trigger</th><th>Status</th><th>Duration</th>'
                  '<th>Output</th></tr></thead>\n<tbody>\n$rows</tbody></table>', rows=rows)


def _preview(run: Run) -> Raw:
    if not run.message:
        return Raw("")
    text = run.message[:MESSAGE_PREVIEW]
    more = render(' <a href="/runs/$id">whole output</a>', id=run.id) \
        if len(run.message) > MESSAGE_PREVIEW else Raw("")
    return render('<pre tabindex="0" aria-label="Output of run $id">$text</pre>$more',
                  id=run.id, text=text, more=more)


def _task_link(name: str, task_id: int | None) -> Raw:
    """The task's name, linking to the task's page while the task exists."""
    if task_id is None:
        return render('$name <span class="muted">(deleted)</span>', name=name)
    return render('<a href="/tasks/$id">$name</a>', id=task_id, name=name)


def run_page(ctx: Context, req: Request, run_id: str) -> Response:
    """One run with its whole output; it reloads itself (with JavaScript) while running."""
    run = ctx.store.get_run(int(run_id))
    body = render(_RUN_PAGE, id=run.id, task=_task_link(run.task, run.task_id),
                  status=status_badge(run.status), node=run.node, trigger=run.trigger,
                  start=ctx.when(run.start), end=ctx.when(run.end, never="not yet"),
                  duration="…" if run.duration is None else f"{run.duration:.1f} s",
                  message=run.message or "(no output)",
                  running=Raw(" data-refresh" if run.status == "running" else ""))
    return page(ctx, req, f"Run {run.id}", body)


_EVENT = """<tr><td data-label="Time">$at</td><td data-label="Event">$event</td>
<td data-label="Task">$task</td><td data-label="Node">$node</td>
<td data-label="Failures" class="num">$streak</td>
<td data-label="Delivered">$delivered</td><td data-label="Detail" class="message">$detail</td></tr>
"""


def events(ctx: Context, req: Request) -> Response:
    """Down/up notification events (SPEC §7), newest first, and whether they went out."""
    found = ctx.store.list_events(HISTORY_LIMIT)
    if not found:
        content = Raw('<p class="empty">No events yet: a task that fails on a node is '
                      '"down" there, and "up" again at its next success.</p>')
    else:
        rows = Raw("".join(render(
            _EVENT, at=ctx.when(e.at),
            event=render('<span class="badge $kind">$event</span>', event=e.event,
                         kind="failed" if e.event == "down" else "success"),
            task=render('<a href="/tasks/$id">$name</a>', id=e.task_id, name=e.task_name)
            if e.task_id else e.task_name,
            node=e.node, streak=e.failure_streak,
            delivered="yes" if e.delivered else "no", detail=e.detail) for e in found))
        content = render('<table class="events"><thead><tr><th>Time</th><th>Event</th>'
                         '<th>Task</th><th>Node</th><th>Failures</th><th>Delivered</th>'
                         '<th>Detail</th></tr></thead>\n<tbody>\n$rows</tbody></table>',
                         rows=rows)
    return page(ctx, req, "Events", render("<h1>Events</h1>\n$content", content=content))


def audit(ctx: Context, req: Request) -> Response:
    """Every change of a task: when, who, what (an edit names what it changed)."""
    entries = ctx.store.list_audit(HISTORY_LIMIT)
    return page(ctx, req, "Audit log", render("<h1>Audit log</h1>\n$content",
                                              content=audit_table(ctx, entries)))


def audit_table(ctx: Context, entries: list[AuditEntry]) -> Raw:
    if not entries:
        return Raw('<p class="empty">No changes recorded yet.</p>')
    rows = Raw("".join(render(
        '<tr><td data-label="Time">$at</td><td data-label="Who">$actor</td>'
        '<td data-label="What">$action</td><td data-label="Task and change">$task</td></tr>\n',
        at=ctx.when(e.at), actor=e.actor, action=e.action,
        task=render('<a href="/tasks/$id">#$id</a> $detail', id=e.task_id, detail=e.detail)
        if e.task_id and e.action != "delete" else e.detail) for e in entries))
    return render('<table class="audit"><thead><tr><th>Time</th><th>Who</th>'
                  '<th>What</th><th>Task and change</th></tr></thead>\n<tbody>\n$rows</tbody>'
                  '</table>', rows=rows)
