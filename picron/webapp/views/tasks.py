"""The task list (search, filter, sort, pages, bulk changes), a task's own page, and the
actions on a task (enable, disable, run now, clone, delete).

Server-rendered with ``base.render`` (every value escaped unless ``Raw``) so that the
page works without JavaScript. State changes answer 303 See Other, with ``?done=`` naming
what was done (the page shows it as a notice).
"""
from __future__ import annotations

import threading
from urllib.parse import urlencode

from picron.errors import AlreadyRunning, ValidationError
from picron.records import RunningRun, Task
from picron.schedule import get_zone, upcoming
from picron.storage import TASK_SORTS, TASK_STATES
from picron.webapp.background import default_node, start_manual_run
from picron.webapp.base import Raw, Request, Response, html_response, redirect, render, template
from picron.webapp.context import Context
from picron.webapp.filters import list_filters
from picron.webapp.layout import TASKS_PER_PAGE, csrf_field, page, reading, status_badge
from picron.webapp.views.api import actor
from picron.webapp.views.history import audit_table, run_table

UPCOMING = 5
MAX_CACHED_ROWS = 4000
_CSRF_MARK = "\x00csrf\x00"  # never in a real token (URL-safe base64)
_ROWS: dict[tuple, str] = {}
_ROWS_LOCK = threading.Lock()
TASK_RUNS = 20
MAX_BULK = 1000

_LIST = template("tasks_list.html")
_PAGER = template("tasks_pager.html")
_TABLE = template("tasks_table.html")
_ROW = template("tasks_row.html")
_NODE = template("tasks_node.html")
_SWITCH = template("tasks_switch.html")
_DELETE = template("tasks_delete.html")
_RUNNING = template("tasks_running.html")
_PAGE = template("tasks_page.html")
_SORT_LABELS = {"order": "run order", "name": "name", "module": "module",
                "next": "next run", "updated": "last change"}

# -- the list ---------------------------------------------------------------------------


def task_list(ctx: Context, req: Request) -> Response:
    """The tasks that match the filters, a page of 100 at a time, with their state per node."""
    filters = list_filters(req)
    number = _page_number(req)
    minute = ctx.now.replace(second=0, microsecond=0)  # "retrying" depends on the time
    tasks, total = ctx.cached("tasks", (tuple(sorted(filters.items())), number, minute),
                              lambda: ctx.store.find_tasks(
                                  ctx.now, limit=TASKS_PER_PAGE,
                                  offset=(number - 1) * TASKS_PER_PAGE, **filters))
    pages = max(1, -(-total // TASKS_PER_PAGE))
    query = {"q": filters["text"], **{k: filters[k] for k in ("module", "node", "state")},
             "sort": filters["sort"] if filters["sort"] != "order" else ""}
    query = {k: v for k, v in query.items() if v}
    if tasks:
        rows = ctx.cached("list-rows", (tuple(sorted(filters.items())), number, minute,
                                        str(ctx.view_zone)),
                          lambda: _rows(ctx, tasks))
        content = render(_TABLE, csrf=csrf_field(req),
                         rows=Raw(rows.replace(_CSRF_MARK, req.csrf_token)))
    elif total:
        content = render('<p class="empty">There is no page $n: the tasks fill $pages '
                         'page$s. <a href="$last">Go to the last page</a>.</p>', n=number,
                         pages=pages, s="" if pages == 1 else "s",
                         last=_list_url(query, pages))
    elif query.keys() - {"sort"}:
        content = render('<p class="empty">No task matches. <a href="/">Show all tasks</a>.'
                         '</p>')
    else:
        content = Raw('<p class="empty">No tasks yet. <a href="/tasks/new">Create the first '
                      'one</a>, or add one with <code>picron task add</code>.</p>')
    pager = _pager(query, number, pages, len(tasks), total, "top")
    body = render(_LIST, q=filters["text"], content=content, pager=pager,
                  bottom_pager=_pager(query, number, pages, len(tasks), total, "bottom")
                  if tasks else Raw(""),
                  modules=_options(sorted(m.identifier for m in ctx.registry),
                                   filters["module"]),
                  nodes=_options(_known_nodes(ctx), filters["node"]),
                  states=_options(TASK_STATES, filters["state"]),
                  sorts=_options(TASK_SORTS, filters["sort"], _SORT_LABELS),
                  clear=Raw(' <a class="button" href="/">Clear</a>') if query else Raw(""))
    return page(ctx, req, "Tasks", body)


def _rows(ctx: Context, tasks: list[Task]) -> str:
    running = _running(ctx)
    return "".join(_cached_row(ctx, task, running) for task in tasks)


def _known_nodes(ctx: Context) -> list[str]:
    return sorted({ctx.config.node, *ctx.config.known_nodes, *ctx.store.last_ticks()})


def _options(values, selected: str, labels: dict | None = None) -> Raw:
    return Raw("".join(render('<option value="$v"$sel>$label</option>', v=value,
                              label=(labels or {}).get(value, value),
                              sel=Raw(" selected" if value == selected else ""))
                       for value in values))


def _page_number(req: Request) -> int:
    text = req.arg("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 10**6 else 1


def _list_url(query: dict, number: int) -> str:
    params = {**query, "page": number} if number > 1 else query
    return "/?" + urlencode(params) if params else "/"


def _pager(query: dict, number: int, pages: int, shown: int, total: int, where: str) -> Raw:
    """"Tasks 101–200 of 1,000 · page 2 of 10" with links; also for a page past the end."""
    if shown:
        first = (number - 1) * TASKS_PER_PAGE + 1
        text = f"Tasks {first:,}–{first + shown - 1:,} of {total:,}"
        if pages > 1:
            text += f" · page {number:,} of {pages:,}"
    elif total:
        text = f"Page {number:,} of {pages:,}: no tasks here ({total:,} in all)"
    else:
        return Raw("")
    previous = render(' <a class="button" href="$u" rel="prev">← Previous</a>',
                      u=_list_url(query, min(number - 1, pages))) if number > 1 else Raw("")
    following = render(' <a class="button" href="$u" rel="next">Next →</a>',
                       u=_list_url(query, number + 1)) if number < pages else Raw("")
    return render(_PAGER, previous=previous, text=text, next=following,
                  label=f"Pages of tasks ({where})")


def _running(ctx: Context) -> dict[tuple[int | None, str], RunningRun]:
    """The runs in progress by (task id, node)."""
    return {(run.task_id, run.node): run for run in ctx.store.running_runs()}


def node_state(ctx: Context, task: Task, node: str,
               running: dict[tuple[int | None, str], RunningRun]) -> tuple[Raw, str]:
    """A node's state in words, and its kind (``running``, ``retrying``, ``failing``,
    ``inactive``, ``ok``): "retrying at every cron call — 134 failures since …"."""
    run = running.get((task.id, node))
    if run is not None:
        return render('running since $since (<a href="/runs/$id">see the run</a>)',
                      since=ctx.when(run.start), id=run.id), "running"
    streak = task.failure_streak.get(node, 0)
    attempt = task.last_attempts.get(node)
    next_run = task.next_runs.get(node)
    failures = f"{streak:,} failure{'s' if streak != 1 else ''}"
    if not task.active:
        return render("inactive; last attempt $last", last=ctx.when(attempt)), "inactive"
    if streak and next_run is not None and next_run <= ctx.now:
        return render("retrying at every cron call: $failures since $since, last attempt "
                      "$last", failures=failures, since=ctx.when(next_run),
                      last=ctx.when(attempt)), "retrying"
    if streak:
        return render("$failures in a row, last attempt $last; next run $next",
                      failures=failures, last=ctx.when(attempt),
                      next=ctx.when(next_run)), "failing"
    return render("next run $next; last attempt $last", next=ctx.when(next_run),
                  last=ctx.when(attempt)), "ok"


def _cached_row(ctx: Context, task: Task,
                running: dict[tuple[int | None, str], RunningRun]) -> str:
    """A task's row, built once per state of the task and minute of the clock (relative
    times change by the minute): building rows was 40 % of the list page's time. The
    cached HTML carries a mark where the viewer's CSRF token goes."""
    key = (task.id, task.last_update, task.name, task.active, task.ordering, task.interval,
           task.nodes, task.taskmodule, *(tuple(sorted(state.items())) for state in (
               task.next_runs, task.last_status, task.failure_streak, task.last_attempts)),
           tuple(running.get((task.id, node)) for node in task.nodes),
           ctx.now.replace(second=0, microsecond=0), ctx.view_zone, ctx.config.node)
    row = _ROWS.get(key)
    if row is None:
        row = _task_row(ctx, Request("GET", "/", csrf_token=_CSRF_MARK), task, running)
        with _ROWS_LOCK:
            if len(_ROWS) >= MAX_CACHED_ROWS:
                _ROWS.pop(next(iter(_ROWS)))
            _ROWS[key] = row
    return row


def _task_row(ctx: Context, req: Request, task: Task,
              running: dict[tuple[int | None, str], RunningRun]) -> Raw:
    nodes = []
    for node in task.nodes:
        words, kind = node_state(ctx, task, node, running)
        status = task.last_status.get(node)
        nodes.append(render(_NODE, node=node, words=words, state_class=f" {kind}",
                            status=status_badge("running" if kind == "running" else status)))
    classes = " ".join(c for c in ("inactive" if not task.active else "",
                                   "running" if any((task.id, n) in running
                                                    for n in task.nodes) else "") if c)
    refresh = " data-refresh" if "running" in classes else ""
    return render(_ROW, id=task.id,
                  classes=Raw((f' class="{classes}"' if classes else "") + refresh),
                  switch=_switch(req, task), ordering=task.ordering, name=task.name,
                  module=task.taskmodule, interval=task.interval,
                  reading=reading(task.interval), nodes=Raw("".join(nodes)),
                  csrf=csrf_field(req), run_node=default_node(ctx, task)[0])


def _switch(req: Request, task: Task) -> Raw:
    return render(_SWITCH, id=task.id, csrf=csrf_field(req),
                  action="disable" if task.active else "enable",
                  state="on" if task.active else "off",
                  pressed="true" if task.active else "false",
                  hint=f"On: {task.name} is active, press to disable" if task.active else
                  f"Off: {task.name} is inactive, press to enable",
                  text="On" if task.active else "Off")


# -- a task's own page ------------------------------------------------------------------


def task_page(ctx: Context, req: Request, task_id: str) -> Response:
    """One task: its state per node, next runs, recent runs with output, actions, changes."""
    task = _task(ctx, task_id)
    running = _running(ctx)
    zone = get_zone(task.timezone, ctx.zone)
    rows = []
    for node in task.nodes:
        words, kind = node_state(ctx, task, node, running)
        rows.append(render(
            '<tr class="$kind"><td data-label="Node">$node</td><td data-label="State">$words'
            '</td><td data-label="Last status">$status</td><td data-label="Last attempt">'
            '$attempt</td><td data-label="Next run">$next</td></tr>\n', kind=kind, node=node,
            words=words, status=status_badge(task.last_status.get(node)),
            attempt=ctx.when(task.last_attempts.get(node)),
            next=ctx.when(task.next_runs.get(node)) if task.active
            else Raw('<span class="muted">inactive</span>')))
    default, why = default_node(ctx, task)
    nodes = [*task.nodes, *(n for n in _known_nodes(ctx) if n not in task.nodes)]
    times = upcoming(task.interval, ctx.now, zone, UPCOMING)
    body = render(
        _PAGE, id=task.id, name=task.name, interval=task.interval, module=task.taskmodule,
        reading_text=reading(task.interval), task_zone=str(zone), switch=_switch(req, task),
        csrf=csrf_field(req), node_rows=Raw("".join(rows)), default_node=default,
        refresh=Raw(" data-refresh" if any((task.id, n) in running for n in task.nodes)
                    else ""),
        default_why=why,
        node_options=_options(nodes, default, {n: f"{n} (not assigned)" for n in nodes
                                               if n not in task.nodes}),
        upcoming=Raw("".join(render("<li>$t</li>", t=ctx.when(at)) for at in times))
        if task.active else Raw('<li class="muted">none: the task is inactive</li>'),
        runs=run_table(ctx, ctx.store.find_runs(task_id=task.id, limit=TASK_RUNS),
                       with_task=False),
        audit=audit_table(ctx, ctx.store.list_audit(TASK_RUNS, task_id=task.id)))
    return page(ctx, req, task.name, body)


# -- actions on a task -------------------------------------------------------------------

def _task(ctx: Context, task_id: str) -> Task:
    return ctx.store.get_task(int(task_id))


def enable_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.set_active(task.id, True, ctx.clock(), actor=actor(req))
    return redirect(back_to(req, task, "enabled"))


def disable_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.set_active(task.id, False, ctx.clock(), actor=actor(req))
    return redirect(back_to(req, task, "disabled"))


def back_to(req: Request, task: Task, done: str) -> str:
    """Where a change of ``task`` returns to: the page it was made on (its ``Referer``
    when that is this site's task list), else the task's page; with the notice."""
    referer = req.headers.get("referer", "")
    host = req.headers.get("host", "")
    local = referer.split(host, 1)[1] if host and f"//{host}/" in referer else ""
    target = local if local.startswith("/") and (local == "/" or local.startswith("/?")) \
        else f"/tasks/{task.id}"
    target = target.split("#")[0]
    params = [p for p in target.partition("?")[2].split("&") if p and
              not p.startswith("done=")]
    path = target.partition("?")[0]
    return f"{path}?{'&'.join([*params, 'done=' + done])}" + (
        f"#task-{task.id}" if path == "/" else "")


def run_task(ctx: Context, req: Request, task_id: str) -> Response:
    """Run now, on the chosen node (field ``node``) or the default one; run in the
    background; the browser goes to the run's page, which reloads until it ends. A
    task already running there gets a page linking the running run (409)."""
    task = _task(ctx, task_id)
    node = (req.field("node") or "").strip() or default_node(ctx, task)[0]
    try:
        run = start_manual_run(ctx, task.id, node)
    except AlreadyRunning:
        current = _running(ctx).get((task.id, node))
        if current is None:
            raise
        body = render(_RUNNING, name=task.name, node=node, since=ctx.when(current.start),
                      run_id=current.id, id=task.id)
        return html_response(page_html(ctx, req, f"{task.name} is running", body), 409)
    return redirect(f"/runs/{run.id}?done=started")


def page_html(ctx: Context, req: Request, title: str, body: Raw) -> bytes:
    return page(ctx, req, title, body).body.decode("utf-8")


def confirm_delete(ctx: Context, req: Request, task_id: str) -> Response:
    """Asks before deleting (a GET changes nothing); the form posts the deletion."""
    task = _task(ctx, task_id)
    return page(ctx, req, f"Delete {task.name}", render(
        _DELETE, what=f"task “{task.name}”", names="", action=f"/tasks/{task.id}/delete",
        csrf=csrf_field(req), ids=Raw("")))


def delete_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.delete_task(task.id, ctx.clock(), actor=actor(req))
    return redirect("/?done=deleted")


def bulk(ctx: Context, req: Request) -> Response:
    """POST /tasks/bulk: enable, disable or (after a confirmation page) delete the chosen
    tasks (fields ``ids`` and ``action``), all in one go; 400 for no or unknown tasks."""
    action = req.field("action") or ""
    if action not in ("enable", "disable", "delete"):
        raise ValidationError("action: enable, disable or delete", field="action")
    texts = req.form.get("ids", [])
    if not texts:
        raise ValidationError("ids: choose at least one task", field="ids")
    if len(texts) > MAX_BULK or not all(t.isdigit() and len(t) <= 18 for t in texts):
        raise ValidationError("ids: task ids", field="ids")
    tasks = [ctx.store.get_task(int(text)) for text in dict.fromkeys(texts)]
    if action == "delete" and not req.field("confirmed"):
        ids = Raw("".join(render('<input type="hidden" name="ids" value="$id">', id=t.id)
                          for t in tasks)) + Raw('<input type="hidden" name="action" '
                                                 'value="delete">')
        return page(ctx, req, "Delete tasks", render(
            _DELETE, what=f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}",
            names=", ".join(t.name for t in tasks), action="/tasks/bulk",
            csrf=csrf_field(req), ids=Raw(ids)))
    with ctx.store.transaction():
        for task in tasks:
            if action == "delete":
                ctx.store.delete_task(task.id, ctx.clock(), actor=actor(req))
            else:
                ctx.store.set_active(task.id, action == "enable", ctx.clock(),
                                     actor=actor(req))
    return redirect("/?done=bulk")

