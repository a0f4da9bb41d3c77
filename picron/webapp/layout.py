"""The page skeleton and the small fragments every page shares (times, badges, readings).

``layout`` wraps a page body in the header and navigation and, given the context, the
dead-runner banner; ``error_page`` is the HTML answer to any refused page request.
"""
from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from picron.describe import describe_interval
from picron.output import format_time
from picron.records import Task
from picron.schedule import get_zone, to_db
from picron.health import check_ticks
from picron.webapp.base import template, Raw, Request, Response, html_response, render

if TYPE_CHECKING:  # annotations only: the context imports the login page, which uses this
    from picron.webapp.context import Context

TASKS_PER_PAGE = 100  # on the task list: 1,000 rows are hard to read and slow to build

NAV = (("/", "Tasks"), ("/history", "History"), ("/stats", "Stats"), ("/audit", "Audit"))

_PAGE = template("layout_page.html")


def layout(req: Request, title: str, body: Raw, ctx=None) -> Raw:
    """The page skeleton: header, navigation, and (given ``ctx``) the dead-runner banner."""
    section = "/" + req.path.strip("/").split("/")[0]
    section = "/" if section == "/tasks" else section
    nav = Raw("".join(
        render('<a href="$href"$current>$label</a>', href=href, label=label,
               current=Raw(' aria-current="page"' if href == section else ""))
        for href, label in NAV))
    logout = render('<form class="logout" method="post" action="/logout">$csrf'
                    '<button class="link">Log out</button></form>', csrf=csrf_field(req)) \
        if req.user is not None else Raw("")
    return render(_PAGE, title=title, nav=nav, logout=logout, body=body,
                  banner=_banner(ctx) if ctx is not None else Raw(""))


def _banner(ctx) -> Raw:
    ok, message = check_ticks(ctx.store, ctx.config.node, ctx.clock())
    if ok:
        return Raw("")
    return render('<p class="banner" role="alert"><strong>Tasks are not running.</strong> '
                  '$message</p>\n', message=message)


def error_page(req: Request, status: int, message: str) -> Response:
    """A tidy HTML error page with a way back."""
    body = render('<h1>$title</h1>\n<p class="error-message">$message</p>\n'
                  '<p><a class="button" href="/">Back to the tasks</a></p>',
                  title=_STATUS_TITLES.get(status, "Something went wrong"), message=message)
    return html_response(layout(req, f"Error {status}", body), status)


_STATUS_TITLES = {400: "Invalid request", 401: "Please log in", 403: "Not allowed",
                  404: "Not found", 405: "Method not allowed", 409: "Conflict",
                  413: "Request too large", 429: "Too many requests", 500: "Internal error",
                  503: "Service unavailable"}


def csrf_field(req: Request) -> Raw:
    return render('<input type="hidden" name="csrf_token" value="$token">',
                  token=req.csrf_token)


def page(ctx: Context, req: Request, title: str, body: Raw, status: int = 200) -> Response:
    return html_response(layout(req, title, body, ctx), status)


def task_zone(ctx, task: Task | None = None, name: str | None = None) -> tzinfo:
    """The zone a task's times are shown in: its own, else the server's."""
    return get_zone(task.timezone if task else name, ctx.zone)


def time_tag(instant: datetime | None, zone: tzinfo) -> Raw:
    if instant is None:
        return Raw('<span class="muted">never</span>')
    return render('<time datetime="$iso">$text</time>', iso=to_db(instant),
                  text=format_time(instant, zone))


def reading(interval: str) -> Raw:
    """The plain-words reading under an interval (nothing if it would only repeat it)."""
    words = describe_interval(interval)
    if words == interval:
        return Raw("")
    return render('<div class="reading">$words</div>', words=words)


def status_badge(status: str | None) -> Raw:
    if status is None:
        return Raw('<span class="badge none">no runs yet</span>')
    return render('<span class="badge $status">$status</span>', status=status)


def task_anchor(ctx, task: Task) -> str:
    """The address of ``task``'s row on the task list (on the page that shows it)."""
    number = ctx.store.task_position(task) // TASKS_PER_PAGE + 1
    return f"/?page={number}#task-{task.id}" if number > 1 else f"/#task-{task.id}"
