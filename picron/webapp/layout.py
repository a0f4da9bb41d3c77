"""The page skeleton and the small fragments every page shares (times, badges, readings).

``layout`` wraps a page body in the header and navigation and, given the context, the
dead-runner banner; ``error_page`` is the HTML answer to any refused page request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from picron.describe import describe_interval
from picron.webapp.base import Raw, Request, Response, html_response, render, template
from picron.webapp.times import relative

if TYPE_CHECKING:  # annotations only: the context imports the login page, which uses this
    from picron.webapp.context import Context

TASKS_PER_PAGE = 100  # on the task list: 1,000 rows are hard to read and slow to build
TICK_LATE_MINUTES = 15  # as ``picron check``: older ticks mean cron stopped calling

NAV = (("/", "Tasks"), ("/history", "History"), ("/events", "Events"), ("/stats", "Stats"),
       ("/audit", "Audit"))
NOTICES = {"created": "Task created.", "saved": "Task saved.", "enabled": "Task enabled.",
           "disabled": "Task disabled.", "deleted": "Task deleted.",
           "started": "Run started.", "zone": "Times are now shown in the chosen zone.",
           "bulk": "Done: the chosen tasks were changed."}

_PAGE = template("layout_page.html")
_DASHBOARD = template("layout_dashboard.html")
_FOOTER = template("layout_footer.html")


def layout(req: Request, title: str, body: Raw, ctx: Context | None = None) -> Raw:
    """The page skeleton: skip link, header, and once logged in the navigation, the
    dashboard line (given ``ctx``), a notice of what was just done, the zone chooser."""
    section = "/" + req.path.strip("/").split("/")[0]
    section = "/" if section in ("/tasks", "/runs") and req.path != "/runs" else section
    logged_in = req.user is not None
    nav = render('<nav aria-label="Sections">$links</nav>', links=Raw("".join(
        render('<a href="$href"$current>$label</a>', href=href, label=label,
               current=Raw(' aria-current="page"' if href == section else ""))
        for href, label in NAV))) if logged_in else Raw("")
    logout = render('<form class="logout" method="post" action="/logout">$csrf'
                    '<button class="link">Log out</button></form>', csrf=csrf_field(req)) \
        if logged_in else Raw("")
    notice = NOTICES.get(req.arg("done") or "")
    footer = render(_FOOTER, next=quote(req.path), zone=str(ctx.view_zone)) \
        if logged_in and ctx is not None else Raw("")
    return render(_PAGE, title=title, nav=nav, logout=logout, body=body, footer=footer,
                  banner=dashboard(ctx) if logged_in and ctx is not None else Raw(""),
                  notice=render('<p class="notice" role="status">$text</p>\n', text=notice)
                  if notice else Raw(""))


def dashboard(ctx: Context) -> Raw:
    """The line at the top: tasks failing, retrying, running; the last tick per node, and
    a warning when this node's cron stopped calling ``run_scheduled``."""
    now = ctx.now
    counts = ctx.cached("dashboard", (now.replace(second=0, microsecond=0),), lambda: {
        state: ctx.store.find_tasks(now, state=state, limit=0)[1]
        for state in ("failing", "retrying", "running")})
    ticks = ctx.store.last_ticks()
    tick_list = Raw(", ".join(render("$node $when", node=node, when=ctx.when(at))
                              for node, at in sorted(ticks.items()))) or Raw("never")
    line = render(_DASHBOARD, ticks=tick_list,
                  failing_class="bad" if counts["failing"] else "",
                  retrying_class="bad" if counts["retrying"] else "",
                  **{state: f"{count:,}" for state, count in counts.items()})
    last = ticks.get(ctx.config.node)
    if last is not None and (now - last).total_seconds() <= TICK_LATE_MINUTES * 60:
        return line
    why = (f"run_scheduled has never been invoked on node {ctx.config.node}: is the cron "
           "entry (cron.d/picron) installed?") if last is None else (
        f"run_scheduled last ran on node {ctx.config.node} {relative(last, now)}: "
        "check the cron entry.")
    return render('$line<p class="banner" role="alert"><strong>Tasks are not running.'
                  '</strong> $why</p>\n', line=line, why=why)


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
