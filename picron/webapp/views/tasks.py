"""The task list and the actions on a task (enable, disable, run now, delete).

Server-rendered with ``base.render`` (every value escaped unless ``Raw``) so that the
page works without JavaScript. State changes answer 303 See Other.
"""
from __future__ import annotations

from picron.records import Task
from picron.webapp.background import start_manual_run
from picron.webapp.base import template, Raw, Request, Response, redirect, render
from picron.webapp.context import Context
from picron.webapp.layout import (TASKS_PER_PAGE, csrf_field, page, reading, status_badge,
                                  task_anchor, task_zone, time_tag)
from picron.webapp.views.api import actor

# -- task list ---------------------------------------------------------------------

_LIST = template("tasks_list.html")
_PAGER = template("tasks_pager.html")
_TABLE = template("tasks_table.html")
_ROW = template("tasks_row.html")
_NODE = template("tasks_node.html")
_SWITCH = template("tasks_switch.html")


def task_list(ctx: Context, req: Request) -> Response:
    """The task list in run order, with every node's next and last run and status."""
    number = _page_number(req)
    tasks = ctx.store.list_tasks(limit=TASKS_PER_PAGE, offset=(number - 1) * TASKS_PER_PAGE)
    if not tasks:
        content = Raw('<p class="empty">No tasks yet. <a href="/tasks/new">Create the first '
                      'one</a>, or add one with <code>picron task add</code>.</p>')
    else:
        content = render(_TABLE, rows=Raw("".join(_task_row(ctx, req, t) for t in tasks)))
    pager = _pager(number, len(tasks), ctx.store.count_tasks()) if tasks else Raw("")
    return page(ctx, req, "Tasks", render(_LIST, content=content, pager=pager))


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


def _task_row(ctx: Context, req: Request, task: Task) -> Raw:
    zone = task_zone(ctx, task)
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

def _task(ctx, task_id: str) -> Task:
    return ctx.store.get_task(int(task_id))


def enable_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.set_active(task.id, True, ctx.clock(), actor=actor(req))
    return redirect(task_anchor(ctx, task))


def disable_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.set_active(task.id, False, ctx.clock(), actor=actor(req))
    return redirect(task_anchor(ctx, task))


def run_task(ctx: Context, req: Request, task_id: str) -> Response:
    """Run now on this node: claimed here (a refusal is answered at once), run in the
    background; the browser goes to the task's history, which reloads until it ends."""
    task = _task(ctx, task_id)
    start_manual_run(ctx, task.id)
    return redirect(f"/history?task={task.id}")


_DELETE = template("tasks_delete.html")


def confirm_delete(ctx: Context, req: Request, task_id: str) -> Response:
    """Asks before deleting (a GET changes nothing); the form posts the deletion."""
    task = _task(ctx, task_id)
    return page(ctx, req, f"Delete {task.name}",
                render(_DELETE, name=task.name, id=task.id, csrf=csrf_field(req)))


def delete_task(ctx: Context, req: Request, task_id: str) -> Response:
    task = _task(ctx, task_id)
    ctx.store.delete_task(task.id, ctx.clock(), actor=actor(req))
    return redirect("/")
